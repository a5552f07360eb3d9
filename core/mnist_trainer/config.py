"""What a run's record says of it: ``config.json`` as a run begins (who, what, with what, on what data) and the summary
of how it ended.

The settings recorded are resolved first (`resolved`), so that a resume or ``mnist-eval`` rebuilds the same run
whatever the environment then.
"""

from __future__ import annotations

import platform
import sys
import time
import uuid
from importlib.metadata import PackageNotFoundError, version

import attrs
import torch

from . import registry
from .builtins import LastGood
from .data import Dataset
from .devices import describe_device
from .distributed import World
from .download import default_data_dir
from .pipeline import Pipeline
from .records import RunFolder
from .run import Run
from .settings import Settings


def resolved(settings: Settings, pipeline: Pipeline, dataset: Dataset) -> Settings:
    """The settings as the record keeps them, so that a resume or mnist-eval rebuilds this data and no other, whatever
    the environment then: ``--dataset auto`` resolved to the data it found (MNIST, or the sample it fell back to),
    and the data dir a download or its cache was read from (``$MNIST_TRAINER_DATA``'s, say) made explicit."""
    changes: dict = {}
    core = pipeline.data[0] == registry.CORE
    if core and settings.dataset == "auto" and settings.data_dir is None:
        changes["dataset"] = dataset.name
    home = str(default_data_dir().resolve())
    if settings.data_dir is None and (not core or dataset.source.startswith(home)):
        changes["data_dir"] = home
    return attrs.evolve(settings, **changes)


def summary(run: Run, config: dict, folder: RunFolder | None, last_good: LastGood) -> dict:
    """How a run ended, for ``config.json`` and ``--json``: status, reason, the last epoch's row, the row of the
    weights ``model.pt`` holds (``saved``) and the epoch a resume starts from (``checkpoint``)."""
    final = last_good.final(run)
    saved = folder.model_epoch if folder is not None else (final[0] if final and run.status != "failed" else None)
    return {
        "out": str(run.folder) if run.folder else None,
        "status": run.status,
        "reason": run.reason,
        "dataset": config["dataset"],
        "device": str(run.device),
        "plugins": config["plugins"],
        "epochs": len(run.history),
        "final": dict(run.history[-1]) if run.history else None,
        "saved": run.row_of(saved),
        "checkpoint": folder.checkpoint_epoch if folder is not None else None,
        "seconds": run.seconds,
    }


def config_of(settings: Settings, pipeline: Pipeline, dataset: Dataset, world: World) -> dict:
    """A new run's ``config.json``, before any epoch: who it is, what it trains, with what, on what."""
    installed = registry.installed_plugins()
    return {
        "mnist_trainer": registry.core_version(),
        "run_id": uuid.uuid4().hex,
        "settings": settings.to_record(),
        "plugins": [
            {"name": name, "distribution": installed[name].distribution if name in installed else "(not installed)",
             "version": installed[name].version if name in installed else "0", "reason": reason}
            for name, reason in sorted(pipeline.reasons.items())
        ],
        "pipeline": dict(pipeline.describe()),
        "lr": pipeline.lr,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": _version("torchvision")},
        "device": {"name": str(world.device), "description": describe_device(world.device)},
        "world": world.describe(),
        "dataset": dataset_record(pipeline, dataset, installed),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
    }


def dataset_record(pipeline: Pipeline, dataset: Dataset, installed: dict) -> dict:
    """The data as the record keeps it: what it is, who supplied it (its options are in the settings), its sizes and
    fingerprints, and the validation split held out of it."""
    plugin = pipeline.data[0]
    version = (registry.core_version() if plugin == registry.CORE
               else installed[plugin].version if plugin in installed else None)
    return {
        "name": dataset.name, "source": dataset.source, "plugin": plugin, "version": version,
        "train_size": len(dataset.train) + (len(dataset.val) if dataset.val is not None else 0),
        "test_size": len(dataset.test), "fingerprint": dataset.fingerprints["data"],
        "test_fingerprint": dataset.fingerprints["test"], "val": dataset.held_out,
    }


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
