"""The run folder: config, per-epoch metrics, the resumable checkpoint and the saved model, each written atomically.

Reading a folder back checks what it reads: ``config.json`` field by field, ``checkpoint.pt``
against the run it belongs to (its id, and the epoch rows ``metrics.jsonl`` holds), ``model.pt``
against the SHA-256 the config records. The built-in plugin writing the folder from the run
events is `builtins.RecordWriter`.
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
from typing import Any, Callable, Mapping

from .errors import UserError

CONFIG, METRICS, CHECKPOINT, STATE = "config.json", "metrics.jsonl", "model.pt", "checkpoint.pt"
FORMAT = 2  # of model.pt and checkpoint.pt
STATE_KEYS = {"run_id": str, "epoch": int, "network": dict, "optimizer": dict, "schedulers": dict, "generators": dict,
              "history": list, "plugins": dict}
MODEL_KEYS = {"run_id": str, "epoch": int, "settings": dict, "state_dict": dict}


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
            raise cannot_write(path, error) from None


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
        raise UserError(f"{path} is in use by another mnist-run (training or resuming it); "
                        "wait for it to end") from None
    return descriptor


def cannot_write(path: Path, error: OSError) -> UserError:
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
    """One run's record: `claim` a new one before any training time is spent, or `reopen` one to resume.

    `model_epoch` is the epoch of the weights ``model.pt`` holds (None while it holds none), so the
    record names the weights the folder really keeps.
    """

    def __init__(self, path: Path, rows: list[dict]):
        self.path, self.rows = Path(path), rows
        self.model_epoch: int | None = None
        self.checkpoint_epoch: int | None = None
        self.lock = _lock(self.path)  # held while this process lives: released by any exit, a kill included

    @classmethod
    def claim(cls, path: Path) -> "RunFolder":
        """Claim `path` by creating its ``metrics.jsonl`` exclusively (``O_EXCL``): of two runs given one
        folder at the same instant, one gets it and the other a one-line error."""
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise cannot_write(path, error) from None
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
            folder.rows = read_rows(folder.path)
        except UserError:
            folder.close()
            raise
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
        ends = [index for index, row in enumerate(self.rows)
                if row.get("stage") == "epoch" and row.get("epoch") == epoch]
        self.rows = self.rows[: ends[-1] + 1] if ends else self.rows
        self.checkpoint_epoch = epoch

    def save_state(self, state: dict) -> None:
        """Write the resumable ``checkpoint.pt``."""
        import torch

        self._write(STATE, lambda file: torch.save(state, file), mode="wb")
        self.checkpoint_epoch = state["epoch"]

    def write_config(self, config: dict) -> None:
        self._write(CONFIG, lambda file: file.write(to_json(config, indent=2)))

    def append_metrics(self, row: dict) -> None:
        """Add one JSON line to metrics.jsonl, rewriting it whole so a reader never sees half a line."""
        self.rows.append(row)
        self._write(METRICS, lambda file: file.writelines(to_json(r) + "\n" for r in self.rows))

    def save_model(self, model: dict) -> str:
        """Write ``model.pt`` (the weights with the epoch they are of, in one file); returns its SHA-256."""
        import torch

        self._write(CHECKPOINT, lambda file: torch.save(model, file), mode="wb")
        self.model_epoch = model["epoch"]
        return hashlib.sha256((self.path / CHECKPOINT).read_bytes()).hexdigest()

    def _write(self, name: str, write: Callable[[Any], None], mode: str = "w") -> None:
        try:
            atomic_write(self.path / name, write, mode)
        except RuntimeError as error:  # torch.save reports a full disk as "unexpected pos ..."
            raise UserError(f"cannot write {self.path / name}: {error}; free some space or choose another --out "
                            "(what was written before is intact)") from None
        except OSError as error:
            raise cannot_write(self.path / name, error) from None


def read_rows(path: Path) -> list[dict]:
    """A run's metrics.jsonl: its lines, each a JSON object."""
    file = Path(path) / METRICS
    try:
        rows = [json.loads(line) for line in file.read_text().splitlines()]
    except (OSError, ValueError) as error:
        raise UserError(f"{Path(path)} holds no readable run record ({file} is missing or damaged: "
                        f"{getattr(error, 'strerror', None) or error}); give the folder of an mnist-run") from None
    if not all(isinstance(row, dict) and isinstance(row.get("stage"), str) for row in rows):
        raise UserError(f"{file} holds a line that is not a record of mnist-trainer; give the folder of an mnist-run")
    return rows


def recorded(path: Path) -> dict:
    """A run folder's config.json as a dict; empty when it is missing, damaged or not a regular file."""
    file = Path(path) / CONFIG
    try:
        config = json.loads(file.read_text()) if file.is_file() else {}
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def read_config(path: Path) -> dict:
    """A run folder's config.json, to resume it: checked field by field, one line naming a damaged one."""
    config = recorded(path)
    if not config:
        raise UserError(f"{path} holds no readable run record ({Path(path) / CONFIG} is missing or damaged); "
                        "give the folder of an mnist-run")
    where = Path(path) / CONFIG
    _expect(config, {"mnist_trainer": str, "run_id": str, "settings": dict, "plugins": list, "dataset": dict}, where)
    _expect(config["dataset"], {"name": str, "train_size": int, "test_size": int, "fingerprint": str},
            f"{where}: dataset")
    for index, plugin in enumerate(config["plugins"]):
        if not isinstance(plugin, dict):
            raise UserError(f"{where}: plugins[{index}] is {plugin!r}, not a plugin's record; the record is damaged")
        _expect(plugin, {"name": str, "distribution": str, "version": str}, f"{where}: plugins[{index}]")
    if "summary" in config and not isinstance(config["summary"], dict):
        raise UserError(f"{where}: summary is {config['summary']!r}, not a run's summary; the record is damaged")
    return config


def _expect(record: Mapping, kinds: Mapping[str, type], where: Any) -> None:
    for key, kind in kinds.items():
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
            raise UserError(f"{where}: {key} is {value!r}, not the {kind.__name__} mnist-trainer records there; "
                            "the record is damaged")


def read_state(path: Path, run_id: str, rows: list[dict]) -> dict:
    """A run folder's resumable checkpoint, loaded without running code from it, and tied to its record:
    the run id `config.json` holds, and the epoch rows `metrics.jsonl` holds up to its epoch."""
    file = Path(path) / STATE
    if not file.is_file():
        raise UserError(f"{path} has no {STATE} to resume from (no checkpoint was written); start the run again with a "
                        "new --out")
    state = _load(file, STATE_KEYS, "start the run again")
    if state["run_id"] != run_id:
        raise UserError(f"{file} belongs to another run (its run id is not the one {CONFIG} records); put back "
                        "this run's own checkpoint, or start the run again")
    recorded_epochs = [row for row in rows if row.get("stage") == "epoch" and row.get("epoch", 0) <= state["epoch"]]
    if _as_recorded(recorded_epochs) != _as_recorded(state["history"]):
        raise UserError(f"{file} does not match {METRICS} (the epochs it holds differ from the ones recorded); "
                        "put back this run's own checkpoint and metrics, or start the run again")
    return state


def _as_recorded(rows: list) -> list:
    """Epoch rows as metrics.jsonl holds them, without their ``stage``: what a checkpoint's history must equal."""
    return json.loads(to_json([{key: value for key, value in row.items() if key != "stage"} for row in rows]))


def read_model(path: Path) -> dict:
    """A finished run's ``model.pt``, verified against the SHA-256 its config.json records; loaded without
    running any code in it (``weights_only``)."""
    path, file = Path(path), Path(path) / CHECKPOINT
    if not file.exists():
        raise UserError(f"{path} is not a finished mnist-run record: {file} is missing")
    if not file.is_file():  # a device such as /dev/zero would never end
        raise UserError(f"{file} is not an mnist-trainer checkpoint: it is not a regular file; "
                        "restore it, or train again")
    expected = recorded(path).get("model_sha256")
    if expected and hashlib.sha256(file.read_bytes()).hexdigest() != expected:
        raise UserError(f"{file} is not the file its run saved (its SHA-256 differs from config.json's): it was "
                        "changed or damaged; restore it from a copy, or train again")
    return _load(file, MODEL_KEYS, "restore it from a copy, or train again")


def _load(file: Path, keys: Mapping[str, type], advice: str) -> dict:
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about some foreign files before refusing them: one line is enough
            warnings.simplefilter("ignore")
            loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch's own messages advise weights_only=False, which would run the file's code
        raise UserError(f"{file} is not a readable mnist-trainer checkpoint ({type(error).__name__}); "
                        f"{advice}") from None
    if not isinstance(loaded, dict) or loaded.get("format") != FORMAT:
        found = loaded.get("format") if isinstance(loaded, dict) else None
        raise UserError(f"{file} is not a checkpoint of this mnist-trainer (format {found}, expected {FORMAT}); "
                        f"{advice}")
    for key, kind in keys.items():
        if not isinstance(loaded.get(key), kind):
            raise UserError(f"{file} is not an mnist-trainer checkpoint ({key} is missing or of another kind); "
                            f"{advice}")
    return loaded
