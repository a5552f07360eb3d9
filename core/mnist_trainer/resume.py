"""Resuming a run from its checkpoint (``mnist-run --resume``).

It rebuilds the run from its record through the same plugins and settings, and refuses, in
one line, a record that is damaged, belongs to another run, or was written by other versions.
"""

from __future__ import annotations

from pathlib import Path

from . import registry
from .build import load_data, select
from .devices import resolve_device
from .distributed import World
from .errors import UserError
from .records import RunFolder, read_config, read_model, read_state, recorded
from .run import Run
from .session import Output, check_batch, check_shares, conduct, say_data, say_pipeline
from .settings import from_record

RESUMING = {
    "completed": "extending a completed run",
    "stopped": "resuming a run a plugin stopped; it may stop it again",
    "interrupted": "resuming an interrupted run",
    "failed": "resuming a failed run from its last checkpoint",
    "diverged": "resuming a diverged run: with the same settings it will likely diverge again",
}
FINISHED = ("completed", "stopped")


def resume(path: Path, epochs: int | None, device: str | None, output: Output, trace: bool = False,
           world: World | None = None, manager=None) -> dict:
    """Continue the run recorded in `path` from its last checkpoint, with its own settings (`epochs`, to extend it;
    `device`, to go on elsewhere).

    A run whose last checkpoint is its final epoch but whose record was never finished (killed
    in between) is finished without training. Under torchrun rank 0 reads the record and hands it
    to the others; the checkpoint holds nothing that depends on the number of processes. `manager`
    (the test kit's) holds the plugins instead of their installed distributions.
    """
    opened: list[RunFolder] = []

    def read() -> tuple[dict, dict]:
        folder = RunFolder.reopen(path)  # locked: no other process may use it until this one ends
        opened.append(folder)
        config = _read_config(path)
        return config, read_state(path, config["run_id"], folder.rows)

    try:
        config, saved = world.from_leader(read) if world else read()
        folder = opened[0] if opened else None
        return _resume(path, folder, config, saved, epochs, device, output, trace, world, manager)
    finally:
        for folder in opened:
            folder.close()


def recorded_device(path: Path) -> str:
    """The --device a recorded run trains on, or ``auto`` when its record cannot be read here (rank 0 then says why)."""
    device = recorded(path).get("settings", {})
    return device.get("device") if isinstance(device, dict) and isinstance(device.get("device"), str) else "auto"


def _read_config(path: Path) -> dict:
    config = read_config(path)
    if config["mnist_trainer"] != registry.core_version():
        raise UserError(f"{path} was recorded by mnist-trainer {config['mnist_trainer']}, and this is "
                        f"{registry.core_version()}; resume it with that version")
    return config


def _resume(path: Path, folder: RunFolder | None, config: dict, saved: dict, epochs: int | None, device: str | None,
            output: Output, trace: bool, world: World | None, manager) -> dict:
    plugins, options, fields = from_record(config["settings"], f"{path}/config.json: settings")
    ended = config.get("summary", {}).get("status")
    wanted = epochs or fields["epochs"]
    finishing = saved["epoch"] >= wanted or (saved.get("stop") is not None and ended is None)
    if finishing and ended in FINISHED:
        raise UserError(f"{path} has {saved['epoch']} finished epochs; give --epochs with more than that to extend it")
    if manager is None:
        refuse_missing_plugins(path, plugins)
    settings, pipeline = select(plugins, options, trace=trace, manager=manager,
                                **{**fields, "epochs": wanted, "device": device or fields["device"]})
    if manager is None:
        _refuse_other_versions(path, config)
    if epochs and epochs != fields["epochs"] and pipeline.schedules:
        raise UserError(f"{path}'s learning-rate schedule was built for {fields['epochs']} epochs and would not "
                        "stretch to another number; start a new run with --epochs instead")
    world = world or World(device=resolve_device(settings.device))
    check_shares(settings, world)
    dataset = load_data(pipeline, settings, world.device, output)
    _refuse_other_data(path, config, dataset)
    check_batch(settings, dataset)
    if ended in RESUMING:
        (output.warn if ended == "diverged" else output.note)(f"{path}: {RESUMING[ended]}")
    say_pipeline(pipeline, output)
    what = "finishing the record at" if finishing else "from"
    output.say(f"{'resume':<12} {what} epoch {saved['epoch']} of {settings.epochs}, in {path}")
    say_data(dataset, world, output)
    config = {**{key: value for key, value in config.items() if key != "summary"}, "settings": settings.to_record(),
              "world": world.describe()}
    if folder is not None:
        folder.keep_until(saved["epoch"])
        folder.model_epoch = _model_epoch(path)
    if not finishing:
        saved = {**saved, "stop": None}  # a stopped run resumed by hand trains on
    run = Run(settings, dataset, world.device, folder and folder.path, world)
    return conduct(pipeline, run, config, folder, output, saved)


def _model_epoch(path: Path) -> int | None:
    """The epoch of the weights a folder's model.pt holds, or None when it holds none readable."""
    try:
        return read_model(path)["epoch"]
    except UserError:
        return None


def _refuse_other_versions(path: Path, config: dict) -> None:
    installed = registry.installed_plugins()
    for plugin in config["plugins"]:
        now = installed[plugin["name"]].version if plugin["name"] in installed else None
        if now != plugin["version"]:
            raise UserError(f"{path} was recorded with plugin {plugin['name']!r} {plugin['version']}, and {now} is "
                            f"installed; pip install {plugin['distribution']}=={plugin['version']} to resume it")


def _refuse_other_data(path: Path, config: dict, dataset) -> None:
    now = {"name": dataset.name, "test_size": len(dataset.test), "fingerprint": dataset.fingerprints["data"],
           "val": dataset.held_out}
    differs = [key for key, value in now.items() if config["dataset"].get(key) != value]
    if differs:
        raise UserError(f"{path} was trained on other data ({', '.join(differs)} differ: it was "
                        f"{config['dataset']['name']}, and is now {dataset.name}); resume it with the same data")


def refuse_missing_plugins(run: Path, names) -> None:
    """A saved run whose plugins are gone says which distribution to install, from its config.json."""
    installed = registry.installed_plugins()
    missing = [name for name in names if name not in installed]
    if not missing:
        return
    plugins = recorded(run).get("plugins")
    sources = ({plugin.get("name"): plugin for plugin in plugins if isinstance(plugin, dict)}
               if isinstance(plugins, list) else {})
    name = missing[0]
    source = sources.get(name, {"distribution": f"mnist-trainer-{name}", "version": None})
    pin = f"=={source['version']}" if source.get("version") else ""
    raise UserError(f"{run} was trained with plugin {name!r}, which is not installed; "
                    f"pip install {source['distribution']}{pin}")
