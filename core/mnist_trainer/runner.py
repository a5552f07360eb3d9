"""A whole run, from plugin names to a written record; and evaluating a saved run again.

The command line calls these; they print through the `Output` they are given.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import attrs
import torch

from . import registry, trainer
from .data import DataNotice, Dataset, load_dataset
from .errors import UserError
from .model import Network
from .pipeline import Pipeline, compose
from .records import RunFolder, default_out, read_checkpoint
from .settings import Settings, build_options, parse_assignments

CHECKPOINT_FORMAT = 1


@attrs.frozen
class Output:
    """Where a run speaks: `say` for lines a person reads, `warn` for notices, `progress` per epoch."""

    say: Callable[[str], None]
    warn: Callable[[str], None]
    progress: Callable[[int], Callable[[range], Iterable[int]]] = lambda epoch: iter


def select(plugins: Sequence[str], assignments: Sequence[str] | dict, **fields: Any) -> tuple[Settings, Pipeline]:
    """Load the named plugins, validate their options, build the settings and compose the pipeline."""
    raw = parse_assignments(assignments) if not isinstance(assignments, dict) else assignments
    manager = registry.make_manager()
    reasons = registry.load(manager, plugins)
    for name in raw:
        if name not in reasons:
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


def train(settings: Settings, pipeline: Pipeline, out: Path | None, output: Output) -> dict:
    """Train as `settings` and `pipeline` say, record it in `out`, and return the summary."""
    device = trainer.resolve_device(settings.device)
    for stage, text in pipeline.describe(settings.hidden):
        output.say(f"{stage:<12} {text}")
    dataset = load_data(settings, device, output)
    if settings.batch_size > len(dataset.train):
        raise UserError(f"--batch-size {settings.batch_size} is larger than the {len(dataset.train)} training images of {dataset.name}; choose a smaller one")
    output.say(f"{'data':<12} {dataset.name}: {len(dataset.train)} train, {len(dataset.test)} test images on {device}")
    folder = RunFolder(out or default_out(settings.plugins))
    config = _config(settings, pipeline, dataset, device)
    folder.write_config(config)

    def report(stage: str, **values: Any) -> None:
        folder.append_metrics({"stage": stage, **values})
        output.say(f"{stage:<12} " + "  ".join(f"{k}={_fmt(v)}" for k, v in values.items()))

    started = time.perf_counter()
    network, optimizer = trainer.build(pipeline, settings, dataset, device, report)
    table = _Table(output.say)

    def on_epoch(row: dict) -> None:
        folder.append_metrics({"stage": "epoch", **row})
        table.row(row)

    rows = trainer.fit(network, optimizer, pipeline, settings, dataset, on_epoch, output.progress)
    folder.save_checkpoint({
        "format": CHECKPOINT_FORMAT,
        "plugins": list(settings.plugins),
        "options": settings.options_dict(),
        "hidden": list(settings.hidden),
        "state_dict": network.state_dict(),
    })
    summary = {
        "out": str(folder.path),
        "dataset": config["dataset"],
        "device": str(device),
        "plugins": config["plugins"],
        "final": rows[-1],
        "seconds": round(time.perf_counter() - started, 3),
    }
    folder.write_config({**config, "summary": summary})
    output.say(f"done: test accuracy {rows[-1]['test_accuracy']:.4f} after {settings.epochs} epochs "
               f"in {summary['seconds']:.2f} s; record in {folder.path}")
    return summary


def evaluate_run(run: Path, dataset: str, data_dir: str | None, device: str, output: Output) -> dict:
    """Rebuild a saved run's network through the same plugins and evaluate it on another dataset."""
    checkpoint = read_checkpoint(run)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{run} was written by an incompatible mnist-trainer (checkpoint format {checkpoint.get('format')})")
    settings, pipeline = select(checkpoint["plugins"], checkpoint["options"], hidden=tuple(checkpoint["hidden"]),
                                dataset=dataset, data_dir=data_dir, device=device)
    torch_device = trainer.resolve_device(device)
    data = load_data(settings, torch_device, output, train=False)
    network = Network(settings.hidden, pipeline.block)
    network.load_state_dict(checkpoint["state_dict"])
    metrics = trainer.evaluate(network.to(torch_device), data.test, pipeline)
    output.say(f"{run} on {data.name} ({len(data.test)} test images): "
               + "  ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()))
    return {"run": str(run), "dataset": data.name, "test_size": len(data.test), "metrics": metrics}


def _config(settings: Settings, pipeline: Pipeline, dataset: Dataset, device: torch.device) -> dict:
    installed = registry.installed_plugins()
    fields = attrs.asdict(settings, filter=lambda attribute, _: attribute.name != "plugin_options")
    return {
        "mnist_trainer": registry.core_version(),
        "settings": {**fields, "options": settings.options_dict()},
        "plugins": [
            {"name": name, "distribution": installed[name].distribution, "version": installed[name].version, "reason": reason}
            for name, reason in sorted(pipeline.reasons.items())
        ],
        "pipeline": dict(pipeline.describe(settings.hidden)),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "torchvision": _version("torchvision")},
        "device": {"name": str(device), "description": _describe_device(device)},
        "dataset": {"name": dataset.name, "source": dataset.source, "train_size": len(dataset.train), "test_size": len(dataset.test)},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
    }


def _describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class _Table:
    """One row per epoch under a header made from the first row's keys."""

    def __init__(self, say: Callable[[str], None]):
        self.say, self.columns = say, None

    def row(self, row: dict) -> None:
        if self.columns is None:
            self.columns = list(row)
            self.say("  ".join(f"{c:>{max(len(c), 7)}}" for c in self.columns))
        self.say("  ".join(f"{_fmt(row[c]):>{max(len(c), 7)}}" for c in self.columns))
