"""Where a study lives, and what keeps it usable when a worker dies: Optuna's storages, heartbeats and samplers.

The default storage is a SQLite file in the study folder (no server); any Optuna storage URL (PostgreSQL, MySQL,
or ``journal:FILE``, Optuna's journal file on a shared file system) lets workers on several machines join one study.
A trial whose worker stops sending heartbeats for a grace period is failed by the next worker that looks: through
Optuna's own heartbeat on a database, through a ``heartbeat`` trial attribute on a journal file, which has none.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import JournalStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from .environment import bounded
from .errors import UserError
from .records import to_json

DATABASE, JOURNAL = "study.db", "journal:"
STORAGE_HELP = "give sqlite:///FILE, postgresql://USER@HOST/DB, mysql://USER@HOST/DB or journal:FILE"
HEARTBEAT, GRACE_BEATS = "MNIST_TRAINER_HEARTBEAT", 3  # a trial silent for 3 heartbeats is failed
WORKER, STATUS, REASON, RUN, COMMAND, BEAT = "worker", "status", "reason", "run", "command", "heartbeat"
LostCallback = Callable[[optuna.Study, FrozenTrial], None]


def heartbeat() -> int:
    """Seconds between a running trial's heartbeats (``MNIST_TRAINER_HEARTBEAT``, default 10)."""
    return max(1, round(bounded(HEARTBEAT, 10.0, ceiling=3600.0)))


def shown(url: str) -> str:
    """The storage URL as it may be printed and recorded: without its password."""
    if url.startswith(JOURNAL):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def default_url(folder: Path) -> str:
    return f"sqlite:///{(Path(folder) / DATABASE).resolve()}"


def open_storage(url: str, on_lost: LostCallback):
    """The Optuna storage `url` names, with heartbeats (a database's own; see `beating` for a journal file)."""
    interval = heartbeat()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)
            if url.startswith(JOURNAL):
                return _journal(url.removeprefix(JOURNAL))
            callback = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in
                        inspect.signature(RDBStorage).parameters else "failed_trial_callback")  # Optuna < 4.9
            engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
            return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=interval,
                              grace_period=interval * GRACE_BEATS, **{callback: on_lost})
    except UserError:
        raise
    except Exception as error:
        raise cannot_open(url, error) from None


def _journal(path: str) -> JournalStorage:
    from optuna.storages.journal import JournalFileBackend

    if not path or not Path(path).parent.is_dir():
        raise UserError(f"--storage journal:{path}: no folder {Path(path).parent} for the journal file; give "
                        "journal:FILE in an existing folder (on a file system every worker sees)")
    return JournalStorage(JournalFileBackend(path))


def cannot_open(url: str, error: BaseException) -> UserError:
    said = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return UserError(f"--storage {shown(url)}: cannot use it ({type(error).__name__}: {said}); {STORAGE_HELP}")


def load_study(storage, url: str, name: str, direction: str, seed: int, prune: bool) -> optuna.Study:
    """The study `name` in `storage`, created if it is not there yet (by whichever worker comes first)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial is reported by mnist-tune's own line
    pruner = optuna.pruners.MedianPruner() if prune else optuna.pruners.NopPruner()
    try:
        return optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True,
                                   sampler=TrialSeeded(seed), pruner=pruner)
    except Exception as error:
        raise cannot_open(url, error) from None


def check_plan(study: optuna.Study, plan: dict, url: str) -> None:
    """Record what decides the study's trials (the space, fixed settings, metric) or refuse a worker that differs."""
    plan = json.loads(to_json(plan))
    recorded = study.user_attrs.get("plan")
    if recorded is None:
        study.set_user_attr("plan", plan)
    elif recorded != plan:
        differ = ", ".join(key for key in plan if recorded.get(key) != plan[key])
        raise UserError(f"study {study.study_name!r} in {shown(url)} was started with other {differ}; give the same "
                        "ones to add trials to it, or --study NAME (or another --out) for a new study")


class TrialSeeded(optuna.samplers.BaseSampler):
    """TPE whose random draws for trial N come from (seed, N): one worker's study is the same on every run, and
    workers sharing a study never draw the same first points (TPE samplers given one seed would)."""

    def __init__(self, seed: int):
        self.seed, self.tpe = seed, optuna.samplers.TPESampler(seed=seed)

    def before_trial(self, study, trial) -> None:
        digest = hashlib.sha256(f"{self.seed}:{trial.number}".encode()).digest()
        self.tpe = optuna.samplers.TPESampler(seed=int.from_bytes(digest[:4], "big"))
        self.tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.tpe.after_trial(study, trial, state, values)


@contextlib.contextmanager
def beating(trial: optuna.Trial, storage) -> Iterator[None]:
    """While the trial runs, its time in the ``heartbeat`` attribute every interval, where the storage keeps no
    heartbeat of its own (a journal file); a database's is Optuna's, started by ``study.optimize``."""
    if isinstance(storage, RDBStorage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat()):
            trial.set_user_attr(BEAT, time.time())

    trial.set_user_attr(BEAT, time.time())
    thread = threading.Thread(target=beat, name=f"heartbeat of trial {trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_stale(study: optuna.Study, storage, on_lost: LostCallback) -> None:
    """Fail the running trials whose heartbeat stopped a grace period ago (their worker died), calling `on_lost`."""
    if isinstance(storage, RDBStorage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # calls on_lost, given to the storage
        return
    grace = heartbeat() * GRACE_BEATS
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last = trial.user_attrs.get(BEAT, trial.datetime_start.timestamp() if trial.datetime_start else time.time())
        if time.time() - last > grace:
            fail(study, trial, on_lost)


def fail(study: optuna.Study, trial: FrozenTrial, on_lost: LostCallback) -> None:
    """Mark a running trial whose worker is gone failed; `on_lost` says so."""
    on_lost(study, study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True))


def launched_by(trial: FrozenTrial, launch: str, worker: int | None = None) -> bool:
    tag = trial.user_attrs.get(WORKER) or {}
    return tag.get("launch") == launch and (worker is None or tag.get("index") == worker)


def tally(study: optuna.Study, launch: str) -> tuple[int, int]:
    """This launch's trials that ended (complete, pruned, or failed on their own: a trial lost with its worker is
    not counted, so another worker runs one in its place) and those running."""
    mine = [trial for trial in study.get_trials(deepcopy=False) if launched_by(trial, launch)]
    ended = sum(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or
                (trial.state == TrialState.FAIL and STATUS in trial.user_attrs) for trial in mine)
    return ended, sum(trial.state == TrialState.RUNNING for trial in mine)


def lost(trial: FrozenTrial) -> bool:
    """A trial that failed because its worker stopped, not because of its values."""
    return trial.state == TrialState.FAIL and STATUS not in trial.user_attrs
