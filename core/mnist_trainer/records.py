"""The run folder: config, per-epoch metrics and checkpoint, each written atomically.

`RecordWriter` is the core's built-in plugin that writes it from the run events.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .errors import PluginError, UserError
from .guards import describe
from .hookspecs import hookimpl

CONFIG, METRICS, CHECKPOINT = "config.json", "metrics.jsonl", "model.pt"
CHECKPOINT_FORMAT = 1


def default_out(plugins: tuple[str, ...], root: Path = Path("runs")) -> Path:
    """``runs/<timestamp>-<plugins>``, made unique when two runs start in the same second."""
    stem = time.strftime("%Y%m%d-%H%M%S") + "-" + ("-".join(sorted(plugins)) or "core")
    path, suffix = root / stem, 1
    while path.exists():
        suffix += 1
        path = root / f"{stem}.{suffix}"
    return path


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    """Write through `write(file)` into a temporary file beside `path`, then rename over it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(handle, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class RunFolder:
    """One run's record. Created (and proven writable) before any training time is spent."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict] = []
        if self.path.is_dir() and any(self.path.iterdir()):
            raise UserError(f"--out {self.path} already holds files; choose a new folder so no earlier run is overwritten")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path / METRICS, lambda file: None)
        except OSError as error:
            raise UserError(f"cannot write the run record to {self.path}: {error.strerror}; choose another --out") from None

    def write_config(self, config: dict) -> None:
        atomic_write(self.path / CONFIG, lambda file: json.dump(config, file, indent=2, default=str))

    def append_metrics(self, row: dict) -> None:
        """Add one JSON line to metrics.jsonl, rewriting it whole so a reader never sees half a line."""
        self.rows.append(row)
        atomic_write(self.path / METRICS, lambda file: file.writelines(json.dumps(r) + "\n" for r in self.rows))

    def save_checkpoint(self, checkpoint: dict) -> None:
        import torch

        atomic_write(self.path / CHECKPOINT, lambda file: torch.save(checkpoint, file), mode="wb")


def summary(run, config: dict) -> dict:
    """How a run ended, for ``config.json`` and ``--json``: status, reason, the last epoch's row, where it is."""
    return {
        "out": str(run.folder) if run.folder else None,
        "status": run.status,
        "reason": run.reason,
        "dataset": config["dataset"],
        "device": str(run.device),
        "plugins": config["plugins"],
        "epochs": len(run.history),
        "final": run.history[-1] if run.history else None,
        "saved": run.saved,
        "seconds": run.seconds,
    }


class RecordWriter:
    """Built-in plugin: appends each epoch and report to ``metrics.jsonl``; at run end, ``model.pt`` and ``config.json``.

    It writes after every other handler of an event has run (a wrapper that acts once they
    return), so the values other plugins add to ``run.row`` are recorded and the weights saved
    are those plugins leave at run end. At run end it writes whatever happened: a handler that
    raises makes the run ``failed``. A failed run, or one without a finished epoch, keeps no
    ``model.pt``.
    """

    def __init__(self, folder: RunFolder, config: dict):
        self.folder, self.config = folder, config

    @hookimpl(trylast=True)
    def mnist_trainer_report(self, stage: str, values: dict) -> None:
        self.folder.append_metrics({"stage": stage, **values})

    @hookimpl(wrapper=True)
    def mnist_trainer_epoch_end(self, run):
        yield
        unrecordable = [key for key, value in run.row.items() if not isinstance(value, (int, float, str, bool, type(None)))]
        if unrecordable:
            raise PluginError(", ".join(run.events.listeners()) or "?", "mnist_trainer_epoch_end",
                              f"run.row[{unrecordable[0]!r}] holds {describe(run.row[unrecordable[0]])}, which cannot be "
                              "recorded; add plain numbers or text (a tensor's .item())")
        self.folder.append_metrics({"stage": "epoch", **run.row})

    @hookimpl(wrapper=True)
    def mnist_trainer_run_end(self, run):
        try:
            yield
        except Exception as error:
            if run.status != "failed":
                blamed = run.events.blame(error, "mnist_trainer_run_end")
                run.status, run.reason = "failed", getattr(blamed, "message", f"{type(error).__name__}: {error}")
            raise
        finally:
            self.finish(run)

    def finish(self, run) -> None:
        if run.status != "failed" and run.history:
            self.folder.save_checkpoint({
                "format": CHECKPOINT_FORMAT,
                "plugins": list(run.settings.plugins),
                "options": run.settings.options_dict(),
                "hidden": list(run.settings.hidden) if run.settings.hidden else None,
                "state_dict": run.network.state_dict(),
            })
        self.folder.write_config({**self.config, "summary": summary(run, self.config)})


def read_checkpoint(path: Path) -> dict:
    """A finished run's checkpoint: the weights and what rebuilds the network around them."""
    import torch

    path = Path(path)
    try:
        return torch.load(path / CHECKPOINT, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path} is not a finished mnist-run record: {path / CHECKPOINT} is missing") from None
    except (OSError, ValueError, RuntimeError) as error:
        raise UserError(f"cannot read {path / CHECKPOINT}: {error}") from None
