"""The run folder: config, per-epoch metrics and checkpoint, each written atomically.

`RecordWriter` is the core's built-in plugin that writes it from the run events.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from .errors import PluginError, UserError, one_line
from .guards import describe
from .hookspecs import hookimpl

CONFIG, METRICS, CHECKPOINT, STATE = "config.json", "metrics.jsonl", "model.pt", "checkpoint.pt"
CHECKPOINT_FORMAT = 1


def default_out(plugins: tuple[str, ...], root: Path = Path("runs"), stem: str | None = None) -> Path:
    """``runs/<timestamp>-<plugins>`` (or ``runs/<stem>``), made unique when two start in the same second, and
    created: `os.mkdir` claims a name atomically, so two runs never share one."""
    stem = stem or time.strftime("%Y%m%d-%H%M%S") + "-" + ("-".join(sorted(plugins)) or "core")
    path, suffix = root / stem, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            suffix += 1
            path = root / f"{stem}.{suffix}"
        except OSError as error:
            raise _cannot_write(path, error) from None


def to_json(value: Any, **options: Any) -> str:
    """Strict JSON (RFC 8259): a float that is not finite is written as the string "nan", "inf" or "-inf"."""
    return json.dumps(_finite(value), allow_nan=False, default=str, **options)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _lock(path: Path) -> int:
    """An exclusive lock on the run folder (flock on its directory): one process uses a run folder at a time."""
    import fcntl

    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise UserError(f"{path} is in use by another mnist-run (training or resuming it); wait for it to end") from None
    return descriptor


def _cannot_write(path: Path, error: OSError) -> UserError:
    """A file-system error as one line naming the path and the cause."""
    return UserError(f"cannot write {path}: {error.strerror or error}; free some space, fix its permissions or "
                     "choose another --out (what was written before is intact)")


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
    """One run's record: `claim` a new one before any training time is spent, or `reopen` one to resume."""

    def __init__(self, path: Path, rows: list[dict]):
        self.path, self.rows = Path(path), rows
        self.lock = _lock(self.path)  # held while this process lives: released by any exit, a kill included

    @classmethod
    def claim(cls, path: Path) -> "RunFolder":
        """Claim `path` by creating its ``metrics.jsonl`` exclusively (``O_EXCL``): of two runs given one
        folder at the same instant, one gets it and the other a one-line error."""
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _cannot_write(path, error) from None
        try:
            os.close(os.open(path / METRICS, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            raise UserError(f"--out {path} already holds a run; choose a new folder so no earlier run is overwritten, "
                            f"or continue it with mnist-run --resume {path}") from None
        except OSError as error:
            raise UserError(f"cannot write the run record to {path}: {error.strerror}; choose another --out") from None
        if len(list(path.iterdir())) > 1:
            (path / METRICS).unlink()
            raise UserError(f"--out {path} already holds files; choose a new folder so no earlier run is overwritten")
        return cls(path, [])

    @classmethod
    def reopen(cls, path: Path) -> "RunFolder":
        """A recorded run's folder, to resume it: refused while another process uses it.

        A run killed while writing leaves the temporary file of that write behind; it goes now.
        """
        if not Path(path).is_dir():
            raise UserError(f"--resume {path}: no such folder; give the folder of an mnist-run")
        folder = cls(path, [])
        try:
            folder.rows = [json.loads(line) for line in (folder.path / METRICS).read_text().splitlines()]
        except (OSError, ValueError):
            folder.close()
            raise UserError(f"{folder.path} holds no readable run record ({folder.path / METRICS} is missing or damaged); "
                            "give the folder of an mnist-run") from None
        for name in (CONFIG, METRICS, CHECKPOINT, STATE):  # only once the folder is known to be a run's
            for temporary in folder.path.glob(f".{name}.*"):
                temporary.unlink()
        return folder

    def close(self) -> None:
        """Release the folder for another process (or a later resume in this one)."""
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None

    def keep_until(self, epoch: int) -> None:
        """Drop the metrics recorded after `epoch`, the checkpoint a resumed run continues from."""
        ends = [index for index, row in enumerate(self.rows) if row.get("stage") == "epoch" and row.get("epoch") == epoch]
        self.rows = self.rows[: ends[-1] + 1] if ends else self.rows

    def save_state(self, state: dict) -> None:
        """Write the resumable ``checkpoint.pt`` (see `Run.state`)."""
        import torch

        self._write(STATE, lambda file: torch.save(state, file), mode="wb")

    def write_config(self, config: dict) -> None:
        self._write(CONFIG, lambda file: file.write(to_json(config, indent=2)))

    def append_metrics(self, row: dict) -> None:
        """Add one JSON line to metrics.jsonl, rewriting it whole so a reader never sees half a line."""
        self.rows.append(row)
        self._write(METRICS, lambda file: file.writelines(to_json(r) + "\n" for r in self.rows))

    def save_checkpoint(self, checkpoint: dict) -> str:
        """Write ``model.pt``; returns its SHA-256, which ``config.json`` records so mnist-eval can verify it."""
        import torch

        self._write(CHECKPOINT, lambda file: torch.save(checkpoint, file), mode="wb")
        return hashlib.sha256((self.path / CHECKPOINT).read_bytes()).hexdigest()

    def _write(self, name: str, write: Callable[[Any], None], mode: str = "w") -> None:
        try:
            atomic_write(self.path / name, write, mode)
        except RuntimeError as error:  # torch.save reports a full disk as "unexpected pos ..."
            raise UserError(f"cannot write {self.path / name}: {error}; free some space or choose another --out "
                            "(what was written before is intact)") from None
        except OSError as error:
            raise _cannot_write(self.path / name, error) from None


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
        last = run.epoch == run.settings.epochs or run.stop_requested is not None  # so that --epochs can extend it
        if run.epoch % run.settings.checkpoint_every == 0 or last:
            self.folder.save_state(run.state())

    @hookimpl(wrapper=True)
    def mnist_trainer_run_end(self, run):
        try:
            yield
        except Exception as error:
            if run.status != "failed":
                blamed = run.events.blame(error, "mnist_trainer_run_end")
                run.status, run.reason = "failed", one_line(blamed)
            raise
        finally:
            self.finish(run)

    def finish(self, run) -> None:
        if run.status != "failed" and run.history:
            self.config["model_sha256"] = self.folder.save_checkpoint({
                "format": CHECKPOINT_FORMAT,
                "plugins": list(run.settings.plugins),
                "options": run.settings.options_dict(),
                "hidden": list(run.settings.hidden) if run.settings.hidden else None,
                "state_dict": run.network.state_dict(),
            })
        self.folder.write_config({**self.config, "summary": summary(run, self.config)})


CHECKPOINT_KEYS = {"format", "plugins", "options", "hidden", "state_dict"}


CONFIG_KEYS = {"mnist_trainer", "settings", "plugins", "dataset"}
SETTINGS_KEYS = {"plugins", "options", "epochs", "batch_size", "lr", "hidden", "seed", "device", "dataset", "data_dir",
                 "eval_train", "checkpoint_every"}
STATE_KEYS = {"epoch": int, "network": dict, "optimizer": dict, "generators": dict, "history": list, "stash": dict}


def recorded(path: Path) -> dict:
    """A run folder's config.json as a dict; empty when it is missing, damaged or not a regular file."""
    file = Path(path) / CONFIG
    try:
        config = json.loads(file.read_text()) if file.is_file() else {}
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def read_config(path: Path) -> dict:
    """A run folder's config.json, to resume it: checked to hold what resuming reads."""
    config = recorded(path)
    if not (CONFIG_KEYS <= set(config) and isinstance(config["settings"], dict) and SETTINGS_KEYS <= set(config["settings"])):
        raise UserError(f"{path} holds no readable run record ({Path(path) / CONFIG} is missing or damaged); "
                        "give the folder of an mnist-run")
    return config


def read_state(path: Path) -> dict:
    """A run folder's resumable checkpoint, loaded without running code from it."""
    import torch

    file = Path(path) / STATE
    if not file.is_file():
        raise UserError(f"{path} has no {STATE} to resume from (no epoch finished); start the run again with a new --out")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"{file} is not a readable checkpoint ({type(error).__name__}); start the run again") from None
    if not (isinstance(state, dict) and all(isinstance(state.get(key), kind) for key, kind in STATE_KEYS.items())):
        raise UserError(f"{file} is not an mnist-trainer checkpoint (it lacks {', '.join(STATE_KEYS)}); start the run again")
    return state


def read_checkpoint(path: Path) -> dict:
    """A finished run's checkpoint, verified against the SHA-256 its config.json records; loaded without
    running any code in it (``weights_only``)."""
    import torch

    path, file = Path(path), Path(path) / CHECKPOINT
    if not file.exists():
        raise UserError(f"{path} is not a finished mnist-run record: {file} is missing")
    if not file.is_file():  # a device such as /dev/zero would never end
        raise UserError(f"{file} is not an mnist-trainer checkpoint: it is not a regular file; restore it, or train again")
    expected = recorded(path).get("model_sha256")
    if expected and hashlib.sha256(file.read_bytes()).hexdigest() != expected:
        raise UserError(f"{file} is not the file its run saved (its SHA-256 differs from config.json's): it was changed "
                        "or damaged; restore it from a copy, or train again")
    try:
        with warnings.catch_warnings():  # torch warns about some foreign files before refusing them: one line is enough
            warnings.simplefilter("ignore")
            checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch's own messages advise weights_only=False, which would run the file's code
        raise UserError(f"{file} is not a readable mnist-trainer checkpoint ({type(error).__name__}); "
                        "restore it from a copy, or train again") from None
    if not (isinstance(checkpoint, dict) and CHECKPOINT_KEYS <= set(checkpoint)
            and isinstance(checkpoint["plugins"], list) and all(isinstance(p, str) for p in checkpoint["plugins"])
            and isinstance(checkpoint["options"], dict) and isinstance(checkpoint["state_dict"], dict)
            and (checkpoint["hidden"] is None or (isinstance(checkpoint["hidden"], list)
                                                  and all(isinstance(w, int) and w > 0 for w in checkpoint["hidden"])))):
        raise UserError(f"{file} is not an mnist-trainer checkpoint (it lacks {', '.join(sorted(CHECKPOINT_KEYS))}, "
                        "or holds them in other forms)")
    return checkpoint

