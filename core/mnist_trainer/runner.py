"""A whole run, from plugin names to a written record; and evaluating a saved run again.

The command line calls these; they speak through the `Output` they are given. The
run-time behaviour (record, table, progress bar) is built-in plugins on the run
events, attached for the run's duration.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Sequence

import attrs
import torch

from . import registry, trainer
from .data import DataNotice, Dataset, fingerprint, load_dataset
from .errors import PluginError, UserError, one_line
from .pipeline import Pipeline, compose
from .records import (CHECKPOINT_FORMAT, RecordWriter, RunFolder, default_out, read_checkpoint, read_config, read_state,
                      recorded, summary)
from .reporters import Progress, Terminal, fmt
from .run import Run
from .settings import Settings, build_options, parse_assignments
from .stages import InitContext
from .weights import layers
from .world import RankFailed, StopTogether, World, describe_device, explain, replicate, resolve_device

TRANSFORM_SEED_OFFSET = 1  # transforms draw from their own generator, so adding one leaves the shuffle unchanged


@attrs.frozen
class Output:
    """Where a run speaks: `say` for lines a person reads, `warn` for notices, `note` for progress (stderr);
    `progress` shows a bar per epoch."""

    say: Callable[[str], None]
    warn: Callable[[str], None]
    progress: bool = False
    note: Callable[[str], None] = lambda line: None


def select(plugins: Sequence[str], assignments: Sequence[str] | dict, *, trace: bool = False, only_selected: bool = False,
           **fields: Any) -> tuple[Settings, Pipeline]:
    """Load the named plugins, validate their options, build the settings and compose the pipeline.

    With `only_selected`, options for plugins that are not loaded are left out instead of refused
    (a comparison's ``-o`` applies to every arm that selects the plugin).
    """
    raw = parse_assignments(assignments) if not isinstance(assignments, dict) else assignments
    manager = registry.make_manager()
    if trace or registry.tracing_requested():
        registry.trace(manager)
    reasons = registry.load(manager, plugins)
    for name in list(raw):
        if name == registry.CORE:
            raise UserError(f"-o {name}.{next(iter(raw[name]))}=...: the core takes no -o options; use its flags (see mnist-run --help)")
        if name not in reasons and only_selected:
            raw = {key: value for key, value in raw.items() if key != name}
        elif name not in reasons:
            raise UserError(f"option -o {name}.{next(iter(raw[name]))}=... is for plugin {name!r}, which is not selected; add --plugin {name}")
    classes = registry.option_classes(manager)
    options = tuple(
        (name, build_options(name, classes.get(name), raw.get(name, {})))
        for name in sorted(reasons)
        if name in classes or name in raw
    )
    settings = Settings(plugins=tuple(sorted(set(plugins))), plugin_options=options, **fields)
    return settings, compose(manager, settings, reasons)


def load_data(settings: Settings, device: torch.device, output: Output, *, train: bool = True) -> Dataset:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataNotice)
        dataset = load_dataset(settings.dataset, settings.data_dir, device, train=train)
    for notice in caught:
        if issubclass(notice.category, DataNotice):
            output.warn(str(notice.message))
    return dataset


def build_network(pipeline: Pipeline) -> torch.nn.Module:
    """The model stage's network with its slots filled: the one way training, mnist-eval and the test kit build it.

    Checked on two blank images in eval mode (which changes no state and draws no random number) to map
    (N, 784) images to (N, 10) logits, so a model's mistake is named before any training.
    """
    owner, model = pipeline.model
    network = model.build(pipeline.slots)
    try:
        with torch.no_grad():
            shape = tuple(network.eval()(torch.zeros(2, 784)).shape)
    except Exception as error:
        raise PluginError.from_exception(owner, "mnist_trainer_model (build)", error) from error
    if shape != (2, 10):
        raise PluginError(owner, "mnist_trainer_model (build)", f"its network maps (2, 784) images to {shape}, not (2, 10) logits")
    return network.train()


def fast_layout(network: torch.nn.Module) -> torch.nn.Module:
    """Convolution weights channels-last, where oneDNN's kernels run 20-40% faster on a CPU; a no-op for the MLP.

    Applied after the init stage (so seeded weights are those of the usual layout) and again by mnist-eval,
    since the layout decides the order of the sums and the metrics must come out the same.
    """
    return network.to(memory_format=torch.channels_last)


def build(pipeline: Pipeline, run: Run, state: dict | None = None) -> trainer.Loop:
    """Seed, build the network on the run's device, run the init stage, build optimizer and schedule.

    Given a checkpoint's `state`, the run continues from it instead of being initialised.
    """
    settings, device = run.settings, run.device
    torch.manual_seed(settings.seed)
    network = build_network(pipeline).to(device)
    if state is None:
        context = InitContext(layers(network), pipeline.activation[1].gain, run.dataset.train.images, settings.seed,
                              run.report)
        pipeline.init[1].apply(network, context)
    network = fast_layout(network)
    replica = replicate(network, run.world)  # under torchrun: every rank starts from rank 0's weights
    optimizer = pipeline.optimizer[1].build(network.parameters())
    rates = sorted({float(group["lr"]) for group in optimizer.param_groups})
    if rates != [settings.lr]:
        raise PluginError(pipeline.optimizer[0], "mnist_trainer_optimizer (build)", f"built an optimizer with learning rate "
                          f"{', '.join(map(str, rates))}, not --lr {settings.lr}; build it with settings.lr")
    run.steps_per_epoch = len(run.dataset.train) // settings.batch_size
    schedule = pipeline.schedule[1]
    scheduler = schedule.build(optimizer, run.steps_per_epoch, settings.epochs) if schedule else None
    run.network, run.optimizer, run.scheduler = network, optimizer, scheduler
    run.columns = trainer.columns(pipeline.metric_names, settings.eval_train)
    run.generators = {"shuffle": _generator(device, settings.seed),
                      "transform": _generator(device, settings.seed + TRANSFORM_SEED_OFFSET)}
    if state is not None:
        run.restore(state)
    return trainer.Loop(
        network=network,
        optimizer=optimizer,
        batch_size=settings.batch_size,
        generator=run.generators["shuffle"],
        transform_generator=run.generators["transform"],
        metrics=[(metric.name, metric.compute) for _, metric in pipeline.metrics],
        penalties=pipeline.penalties,
        transforms=pipeline.transforms,
        scheduler=scheduler,
        per_batch=schedule is not None and schedule.per == "batch",
        world=run.world,
        replica=replica,
    )


def execute(pipeline: Pipeline, run: Run, builtins: dict[str, Any], state: dict | None = None) -> None:
    """Build and train `run`, emitting the run events; `run.status` says how it ended, whatever happens.

    Ctrl-C ends the run as ``interrupted``, and a non-finite training loss as ``diverged``, each
    with the weights of its last complete epoch; a failure is re-raised once every run-end
    handler has seen it, and when a handler fails at run end after an earlier failure, the
    earlier one is what is reported.
    """
    events, world = pipeline.events, run.world
    events.rank_zero = world.leader
    run.pipeline = pipeline.describe()
    kept: dict[str, Any] = {}
    with events.attached(builtins):
        try:
            loop = build(pipeline, run, state)
            events.emit("mnist_trainer_run_start", run=run)
            if state is not None:  # after run_start, where plugins add their generators
                run.restore_generators(state)
                kept["weights"] = _copy_weights(run.network)
            trainer.fit(loop, run.dataset, run.settings.epochs, _callbacks(run, events, kept), first_epoch=run.epoch + 1,
                        eval_train=run.settings.eval_train)
        except (KeyboardInterrupt, trainer.Diverged) as ended:
            cause = explain(world, ended)  # torchrun stops every process when one fails
            if cause is not ended:
                _finish(run, events, "failed", cause.message)
                raise cause from None
            if kept:
                run.network.load_state_dict(kept["weights"])
            if isinstance(ended, trainer.Diverged):
                _finish(run, events, "diverged", _diverged(run, ended))
            else:
                _finish(run, events, "interrupted", f"interrupted during epoch {run.epoch}")
            return
        except Exception as error:
            cause = explain(world, error)  # a process gone mid-collective: name why it went
            try:
                _finish(run, events, "failed", one_line(cause))
            except Exception:
                pass  # a handler failing at run end too: the record says failed, and the first failure is the one to report
            if cause is error:
                raise
            raise cause from None
        if run.stop_requested:
            _finish(run, events, "stopped", run.stop_requested)
        else:
            _finish(run, events, "completed", f"trained {len(run.history)} epochs")


def train(settings: Settings, pipeline: Pipeline, out: Path | None, output: Output, dataset: Dataset | None = None,
          world: World | None = None) -> dict:
    """Train as `settings` and `pipeline` say, record it in `out`, and return the summary.

    `dataset`, when given, is the data already loaded on the device (a comparison loads it once).
    Under torchrun (`world`), rank 0 alone claims the folder and records.
    """
    world = world or World(device=resolve_device(settings.device))
    _check_shares(settings, world)
    _say_pipeline(pipeline, output)
    dataset = dataset or load_data(settings, world.device, output)
    _check_batch(settings, dataset)
    _say_data(dataset, world, output)
    config = _config(settings, pipeline, dataset, world)
    folder = world.leader_does(lambda: RunFolder.claim(out or default_out(settings.plugins)))
    try:
        if folder is not None:
            folder.write_config(config)
        run = Run(settings, dataset, world.device, folder and folder.path, pipeline.events, world=world)
        execute(pipeline, run, _builtins(folder, config, output, world))
        return summary(run, config)
    finally:
        if folder is not None:
            folder.close()


def resume(path: Path, epochs: int | None, output: Output, trace: bool = False, world: World | None = None) -> dict:
    """Continue the run recorded in `path` from its last checkpoint, with its own settings (and `epochs`, to extend it).

    Refused in one line when mnist-trainer, a plugin's version or the data differ from the record's. Under
    torchrun rank 0 reads the record and hands it to the others; the checkpoint holds nothing that depends
    on the number of processes, so a run resumes on any number of them.
    """
    opened: list[RunFolder] = []

    def read() -> tuple[dict, dict]:
        opened.append(RunFolder.reopen(path))  # locked: no other process may use it until this one ends
        return _read_resumable(path, epochs)

    try:
        config, state = world.from_leader(read) if world else read()
        return _resume(path, opened[0] if opened else None, config, state, epochs, output, trace, world)
    finally:
        for folder in opened:
            folder.close()


def recorded_device(path: Path) -> str:
    """The --device a recorded run trains on, or ``auto`` when its record cannot be read here (rank 0 then says why)."""
    try:
        return str(recorded(path)["settings"]["device"])
    except (KeyError, TypeError, OSError, ValueError):
        return "auto"


RESUMING = {
    "completed": "extending a completed run",
    "stopped": "resuming a run a plugin stopped; it may stop it again",
    "interrupted": "resuming an interrupted run",
    "failed": "resuming a failed run from its last checkpoint",
    "diverged": "resuming a diverged run: with the same settings it will likely diverge again",
}


def _read_resumable(path: Path, epochs: int | None) -> tuple[dict, dict]:
    """The run's config and last checkpoint, refused when this mnist-trainer did not write them or nothing is left to train."""
    config = read_config(path)
    if config["mnist_trainer"] != registry.core_version():
        raise UserError(f"{path} was recorded by mnist-trainer {config['mnist_trainer']}, and this is "
                        f"{registry.core_version()}; resume it with that version")
    state = read_state(path)
    wanted = epochs or config["settings"]["epochs"]
    if state["epoch"] >= wanted:
        raise UserError(f"{path} has {state['epoch']} finished epochs; give --epochs with more than that to extend it")
    return config, state


def _resume(path: Path, folder: RunFolder | None, config: dict, state: dict, epochs: int | None, output: Output, trace: bool,
            world: World | None) -> dict:
    recorded = dict(config["settings"])
    plugins, options = recorded.pop("plugins"), recorded.pop("options")
    recorded["hidden"] = tuple(recorded["hidden"]) if recorded["hidden"] else None
    _refuse_missing_plugins(path, plugins)
    settings, pipeline = select(plugins, options, trace=trace, **{**recorded, "epochs": epochs or recorded["epochs"]})
    installed = registry.installed_plugins()
    for plugin in config["plugins"]:
        now = installed[plugin["name"]].version if plugin["name"] in installed else None
        if now != plugin["version"]:
            raise UserError(f"{path} was recorded with plugin {plugin['name']!r} {plugin['version']}, and {now} is installed; "
                            f"pip install {plugin['distribution']}=={plugin['version']} to resume it")
    if epochs and epochs != recorded["epochs"] and pipeline.schedule[1] is not None:
        raise UserError(f"{path}'s learning-rate schedule was built for {recorded['epochs']} epochs and would not stretch "
                        "to another number; start a new run with --epochs instead")
    world = world or World(device=resolve_device(settings.device))
    _check_shares(settings, world)
    dataset = load_data(settings, world.device, output)
    now = {"name": dataset.name, "train_size": len(dataset.train), "test_size": len(dataset.test), "fingerprint": fingerprint(dataset)}
    differs = [key for key, value in now.items() if config["dataset"].get(key) != value]
    if differs:
        raise UserError(f"{path} was trained on other data ({', '.join(differs)} differ: it was {config['dataset']['name']}, "
                        f"{config['dataset']['train_size']} images, and is now {dataset.name}, {len(dataset.train)}); "
                        "resume it with the same data")
    _check_batch(settings, dataset)
    status = config.get("summary", {}).get("status")
    if status in RESUMING:
        (output.warn if status == "diverged" else output.note)(f"{path}: {RESUMING[status]}")
    _say_pipeline(pipeline, output)
    output.say(f"{'resume':<12} from epoch {state['epoch']} of {settings.epochs}, in {path}")
    _say_data(dataset, world, output)
    config = {**{key: value for key, value in config.items() if key != "summary"}, "settings": _settings_record(settings),
              "world": world.describe()}
    if folder is not None:
        folder.keep_until(state["epoch"])
    run = Run(settings, dataset, world.device, folder and folder.path, pipeline.events, world=world)
    execute(pipeline, run, _builtins(folder, config, output, world), state)
    return summary(run, config)


def _builtins(folder: RunFolder | None, config: dict, output: Output, world: World) -> dict[str, Any]:
    """The run-time built-in plugins: the record, table and progress bar on rank 0, and under torchrun the stop agreement
    (registered first, so it acts inside the record writer's wrapper)."""
    builtins: dict[str, Any] = {"ranks": StopTogether()} if world.size > 1 else {}
    if folder is not None:
        builtins.update(record=RecordWriter(folder, config), terminal=Terminal(output.say))
    if folder is not None and output.progress:
        builtins["progress"] = Progress()
    return builtins


def evaluate_run(run: Path, dataset: str, data_dir: str | None, device: str, output: Output) -> dict:
    """Rebuild a saved run's network through the same plugins and evaluate it on another dataset."""
    checkpoint = read_checkpoint(run)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{run} was written by an incompatible mnist-trainer (checkpoint format {checkpoint.get('format')})")
    _refuse_missing_plugins(run, checkpoint["plugins"])
    hidden = tuple(checkpoint["hidden"]) if checkpoint["hidden"] else None
    settings, pipeline = select(checkpoint["plugins"], checkpoint["options"], hidden=hidden,
                                dataset=dataset, data_dir=data_dir, device=device)
    torch_device = resolve_device(device)
    data = load_data(settings, torch_device, output, train=False)
    network = build_network(pipeline)
    try:
        network.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[1:2] or [str(error)]
        raise UserError(f"{run}/model.pt does not fit the network its plugins build now ({first[0].strip()}); "
                        "was a plugin upgraded since? reinstall the versions in its config.json") from None
    metrics = trainer.evaluate(fast_layout(network.to(torch_device)), data.test, [(m.name, m.compute) for _, m in pipeline.metrics])
    status, saved = _recorded_ending(run)
    if status not in (None, "completed"):
        output.warn(f"{run} ended {status}; evaluating the weights it saved, those of epoch {saved}")
    output.say(f"{run} on {data.name} ({len(data.test)} test images): "
               + "  ".join(f"{k}={fmt(v)}" for k, v in metrics.items()))
    return {"run": str(run), "dataset": data.name, "test_size": len(data.test), "metrics": metrics}


def _recorded_ending(run: Path) -> tuple[str | None, int | None]:
    """How the recorded run ended, and the epoch of the weights it saved; (None, None) if its config says nothing."""
    try:
        ending = recorded(run)["summary"]
        return ending["status"], ending["saved"]["epoch"]
    except (KeyError, TypeError):
        return None, None


def _refuse_missing_plugins(run: Path, names: list[str]) -> None:
    """A saved run whose plugins are gone says which distribution to install, from its config.json."""
    installed = registry.installed_plugins()
    missing = [name for name in names if name not in installed]
    if not missing:
        return
    try:
        sources = {plugin["name"]: plugin for plugin in recorded(run)["plugins"]}
    except (KeyError, TypeError):
        sources = {}
    name = missing[0]
    source = sources.get(name, {"distribution": f"mnist-trainer-{name}", "version": None})
    pin = f"=={source['version']}" if source.get("version") else ""
    raise UserError(f"{run} was trained with plugin {name!r}, which is not installed; pip install {source['distribution']}{pin}")


def _callbacks(run: Run, events, kept: dict) -> trainer.Callbacks:
    """The loop's callbacks as run events; the step event only when some plugin listens, so it costs nothing otherwise.

    `kept["weights"]` is a copy of the weights at the end of the last complete epoch (a small copy, once an epoch).
    """

    world = run.world
    shared = any("step_end" in handled for handled in events.listeners().values())  # the same on every rank

    def epoch_start(epoch: int) -> None:
        run.epoch, run.row = epoch, {}
        if not world.leader:
            _reseed_follower(run, epoch)
        events.emit("mnist_trainer_epoch_start", run=run)

    def step_end(loss: torch.Tensor) -> None:
        run.step += 1
        events.emit("mnist_trainer_step_end", run=run, loss=world.mean(loss) if shared else loss)

    def epoch_end(row: dict) -> bool:
        if not events.listens("mnist_trainer_step_end"):
            run.step += run.steps_per_epoch
        run.row = row
        run.history.append(row)  # the epoch is finished: its row is history for every handler, and for the checkpoint
        events.emit("mnist_trainer_epoch_end", run=run)
        kept["weights"] = _copy_weights(run.network)
        return run.stop_requested is not None

    listening = events.listens("mnist_trainer_step_end")
    return trainer.Callbacks(epoch_start, step_end if listening else None, epoch_end)


def _copy_weights(network: torch.nn.Module) -> dict:
    return {key: value.detach().clone() for key, value in network.state_dict().items()}


def _say_pipeline(pipeline: Pipeline, output: Output) -> None:
    for stage, text in pipeline.describe():
        output.say(f"{stage:<12} {text}")


def _diverged(run: Run, diverged: trainer.Diverged) -> str:
    last = run.history[-1] if run.history else None
    before = f"last finite: {last['train_loss']:.4g} in epoch {last['epoch']}, whose weights are kept" if last else "no epoch finished"
    return f"{diverged} ({before}); lower --lr (it is {run.settings.lr}), or start from smaller weights (an init plugin)"


def _finish(run: Run, events, status: str, reason: str) -> None:
    """Set how the run ended and emit run_end.

    Under torchrun, an ending every rank reaches together (completed, stopped, diverged) is agreed
    first: ranks above 0 run their run_end handlers, and rank 0 records a failure of theirs as the
    run's before its own record is finished, then stops with it.
    """
    run.status, run.reason, run.ended = status, reason, time.perf_counter()
    world = run.world
    if world.size == 1 or status not in ("completed", "stopped", "diverged"):  # a peer may be gone: no collective
        events.emit("mnist_trainer_run_end", run=run)
        return
    failure = None
    if not world.leader:
        try:
            events.emit("mnist_trainer_run_end", run=run)
        except Exception as error:
            failure = error
    said = world.everyone(one_line(failure) if failure else None)
    failed = [f"rank {rank} failed: {message}" for rank, message in enumerate(said) if message]
    if failure is not None:
        raise failure
    if world.leader:
        if failed:
            run.status, run.reason = "failed", failed[0]
        events.emit("mnist_trainer_run_end", run=run)
        if failed:
            raise RankFailed(f"rank 0: stopped, because {failed[0]}")


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _reseed_follower(run: Run, epoch: int) -> None:
    """A rank above 0 draws dropout masks and transforms from (seed, rank, epoch): its own, and the same after a resume."""
    derived = hashlib.sha256(f"{run.settings.seed}:{run.world.rank}:{epoch}".encode()).digest()
    torch.manual_seed(int.from_bytes(derived[:8], "big") >> 1)
    run.generators["transform"].manual_seed(int.from_bytes(derived[8:16], "big") >> 1)


def _check_shares(settings: Settings, world: World) -> None:
    if settings.batch_size % world.size:
        raise UserError(f"--batch-size {settings.batch_size} does not split evenly over {world.size} processes; give a multiple "
                        f"of {world.size} (it is the global batch: each process takes an equal share)")


def _check_batch(settings: Settings, dataset: Dataset) -> None:
    if settings.batch_size > len(dataset.train):
        raise UserError(f"--batch-size {settings.batch_size} is larger than the {len(dataset.train)} training images of {dataset.name}; choose a smaller one")


def _say_data(dataset: Dataset, world: World, output: Output) -> None:
    output.say(f"{'data':<12} {dataset.name}: {len(dataset.train)} train, {len(dataset.test)} test images on {world.device}")
    if world.size > 1:
        output.say(f"{'processes':<12} {world.size} over {world.backend}, each with 1/{world.size} of every batch; rank 0 records")


def _config(settings: Settings, pipeline: Pipeline, dataset: Dataset, world: World) -> dict:
    installed = registry.installed_plugins()
    return {
        "mnist_trainer": registry.core_version(),
        "settings": _settings_record(settings),
        "plugins": [
            {"name": name, "distribution": installed[name].distribution, "version": installed[name].version, "reason": reason}
            for name, reason in sorted(pipeline.reasons.items())
        ],
        "pipeline": dict(pipeline.describe()),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "torchvision": _version("torchvision")},
        "device": {"name": str(world.device), "description": describe_device(world.device)},
        "world": world.describe(),
        "dataset": {"name": dataset.name, "source": dataset.source, "train_size": len(dataset.train),
                    "test_size": len(dataset.test), "fingerprint": fingerprint(dataset)},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
    }


def _settings_record(settings: Settings) -> dict:
    fields = attrs.asdict(settings, filter=lambda attribute, _: attribute.name != "plugin_options")
    return {**fields, "options": settings.options_dict()}


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
