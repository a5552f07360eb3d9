"""Evaluating a saved run again (``mnist-eval``): its network rebuilt through the same plugins and settings, on the
data it was trained on (checked to be that data) or, when asked, elsewhere."""

from __future__ import annotations

from pathlib import Path

from . import registry, trainer
from .build import build_network, in_layout, load_data, select
from .builtins import fmt
from .devices import resolve_device
from .errors import UserError
from .records import read_model, recorded
from .resume import refuse_missing_plugins
from .session import Output
from .settings import from_record


def evaluate_run(run: Path, dataset: str | None, data_dir: str | None, device: str, output: Output,
                 manager=None) -> dict:
    """Rebuild a saved run's network and evaluate it: on the test split of the data it was trained on (and its
    validation split, when it held one out), or on `dataset` / `data_dir` when given.

    `manager` (the test kit's) holds the plugins instead of their installed distributions."""
    model = read_model(run)
    plugins, options, fields = from_record(model["settings"], f"{run}/model.pt: settings")
    if manager is None:
        refuse_missing_plugins(run, plugins)
    elsewhere = dataset is not None or data_dir is not None
    settings, pipeline = _select(run, plugins, options, fields, dataset, data_dir, device, manager)
    torch_device = resolve_device(device)
    data = load_data(pipeline, settings, torch_device, output, train=not elsewhere and bool(settings.val))
    trained_on = recorded(run).get("dataset") if isinstance(recorded(run).get("dataset"), dict) else {}
    same = trained_on.get("test_fingerprint") in (None, data.fingerprints["test"])
    if not elsewhere and not same:
        raise UserError(f"the data rebuilt for {run} is not what it was trained on (the test split's fingerprint "
                        f"differs from config.json's): {data.source} changed; evaluate elsewhere with --dataset or "
                        "--data-dir")
    network = _network(run, model, pipeline, torch_device)
    metrics = [(m.name, m.compute) for _, m in pipeline.metrics]
    result = {"run": str(run), "dataset": data.name, "test_size": len(data.test), "epoch": model["epoch"],
              "metrics": trainer.evaluate(network, data.test, metrics)}
    if data.val is not None:
        result["val_metrics"] = trainer.evaluate(network, data.val, metrics)
    if elsewhere and not same:
        output.warn(f"evaluated {run} on {data.name}, not on the {trained_on.get('name', 'data')} it was trained on")
    _say(run, model, data, result, output)
    return result


def _select(run: Path, plugins, options, fields: dict, dataset: str | None, data_dir: str | None, device: str, manager):
    """The run's settings and pipeline, with its data, or with `dataset`/`data_dir` in place of its dataset plugin's."""
    if dataset is None and data_dir is None:
        return select(plugins, options, manager=manager, **{**fields, "device": device})
    fields = {**fields, "dataset": dataset or "auto", "data_dir": data_dir, "device": device, "val": None}
    supplier = select(plugins, options, manager=manager, **{**fields, "dataset": "auto", "data_dir": None})[1].data[0]
    if supplier != registry.CORE:  # evaluating elsewhere: the data comes from --dataset/--data-dir, not the plugin
        plugins = [name for name in plugins if name != supplier]
        options = {name: values for name, values in options.items() if name != supplier}
    return select(plugins, options, manager=manager, **fields)


def _network(run: Path, model: dict, pipeline, device):
    network = build_network(pipeline, device)
    try:
        network.load_state_dict(model["state_dict"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[1:2] or [str(error)]
        raise UserError(f"{run}/model.pt does not fit the network its plugins build now ({first[0].strip()}); "
                        "was a plugin upgraded since? reinstall the versions in its config.json") from None
    return in_layout(network.to(device), pipeline)


def _say(run: Path, model: dict, data, result: dict, output: Output) -> None:
    summary = recorded(run).get("summary")
    status = summary.get("status") if isinstance(summary, dict) else None
    if status not in (None, "completed"):
        output.warn(f"{run} ended {status}; evaluating the weights it saved, those of epoch {model['epoch']}")
    line = "  ".join(f"{k}={fmt(v)}" for k, v in result["metrics"].items())
    if "val_metrics" in result:
        line += "  " + "  ".join(f"val_{k}={fmt(v)}" for k, v in result["val_metrics"].items())
    output.say(f"{run} on {data.name} ({len(data.test)} test images): {line}")


