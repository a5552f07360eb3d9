"""One trial of a study: its sampled values selected and trained as an ordinary run (``STUDY/trial-0007``), the
watched metric reported to Optuna each epoch by a built-in plugin, which stops a trial the pruner prunes.

A trial whose values a plugin refuses, or whose run fails or diverges, is failed with that run's one line; a
mistake that would fail every trial (a metric the runs do not record) ends the study instead.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import attrs
import optuna

from .build import load_data, select
from .builtins import Builtin
from .devices import resolve_device
from .errors import UserError
from .hookspecs import hookimpl
from .session import Output, train
from .tune_space import Dimension, arguments, command
from .tune_storage import COMMAND, REASON, RUN, STATUS, WORKER, beating


class TrialFailed(Exception):
    """The trial ended without a value (refused, failed or diverged); the study goes on."""


class StudyMistake(UserError):
    """A mistake every trial would make: the study stops with its one line."""


@attrs.frozen
class Job:
    """What a worker needs to run a study's trials; plain values, so it travels to a worker process."""

    plugins: tuple[str, ...]
    assignments: tuple[str, ...]
    fields: dict = attrs.field(eq=False)
    dimensions: tuple[Dimension, ...]
    metric: str
    direction: str
    prune: bool
    out: str
    storage: str
    study: str
    trials: int
    launch: str
    jobs: int = 1
    worker: int = 0
    deadline: float | None = None
    as_json: bool = False


class Watch(Builtin):
    """The trial's built-in plugin: reports the metric to Optuna at each epoch's end, after the plugins' handlers
    (so a plugin's column may be watched) and before the record is written, and stops a pruned trial there."""

    def __init__(self, trial: optuna.Trial, metric: str, prune: bool):
        self.trial, self.metric, self.prune = trial, metric, prune
        self.pruned: int | None = None

    @hookimpl
    def mnist_trainer_run_start(self, run) -> None:
        if self.metric not in run.columns:
            raise StudyMistake(f"--metric {self.metric} is not recorded by these runs; they record "
                               f"{', '.join(run.columns)}")

    @hookimpl(trylast=True)
    def mnist_trainer_epoch_end(self, run) -> None:
        value = run.row[self.metric]
        self.trial.report(float(value), run.epoch)
        if self.prune and self.trial.should_prune():
            self.pruned = run.epoch
            run.stop(f"pruned at epoch {run.epoch}: {self.metric} {value:.4g} is worse than the median of the earlier "
                     "trials at that epoch")


class Objective:
    """Runs one trial as ``study.optimize`` asks; the data is loaded once per worker and shared by its trials."""

    def __init__(self, job: Job, storage, threads: int, output: Output):
        self.job, self.storage, self.threads, self.output = job, storage, threads, output
        self.data: dict = {}

    def __call__(self, trial: optuna.Trial, claim) -> float:
        trial.set_user_attr(WORKER, {"launch": self.job.launch, "index": self.job.worker, "threads": self.threads,
                                     "host": socket.gethostname()})
        claim.release()  # tagged: the other workers count this trial from now on
        try:
            with beating(trial, self.storage):
                params = {dimension.name: dimension.suggest(trial) for dimension in self.job.dimensions}
                watch = Watch(trial, self.job.metric, self.job.prune)
                summary = self._train(trial, params, watch)
        except KeyboardInterrupt:  # before its run trained (composing, loading data): not a lost worker's trial
            _ended(trial, "interrupted", "interrupted before its first epoch")
            raise
        return self._value(trial, summary, watch)

    def _train(self, trial: optuna.Trial, params: dict, watch: Watch) -> dict:
        job = self.job
        plugins, assignments, fields = arguments(job.dimensions, params, job.plugins, job.assignments, job.fields)
        folder = Path(job.out) / f"trial-{trial.number:04d}"
        trial.set_user_attr(RUN, str(folder))
        try:
            settings, pipeline = select(plugins, assignments, only_selected=True, **fields)
            trial.set_user_attr(COMMAND, self._command(plugins, assignments, fields, pipeline))
            return train(settings, pipeline, folder, self.output, dataset=self._data(settings, pipeline),
                         extras={"tune": watch})
        except StudyMistake:
            raise
        except UserError as error:  # refused values, or a run that failed: the trial's, not the study's
            _ended(trial, "failed", error.message)
            raise TrialFailed(error.message) from None

    def _command(self, plugins, assignments, fields, pipeline) -> str:
        """The mnist-run command of this trial; on the CPU with this worker's threads, which decide the sums' order."""
        text = command(plugins, assignments, fields, list(pipeline.reasons))
        cpu = resolve_device(fields.get("device", "auto")).type == "cpu"
        return f"OMP_NUM_THREADS={self.threads} {text}" if cpu else text

    def _data(self, settings, pipeline):
        """The dataset stage's data, loaded once for every trial that selects the same."""
        owner, answer = pipeline.data
        key = (owner, answer.name, json.dumps(settings.options_dict().get(owner), sort_keys=True))
        if key not in self.data:
            self.data[key] = load_data(pipeline, settings, resolve_device(settings.device), self.output)
        return self.data[key]

    def _value(self, trial: optuna.Trial, summary: dict, watch: Watch) -> float:
        status, why = summary["status"], summary["reason"]
        trial.set_user_attr("epochs", summary["epochs"])
        if status == "interrupted":
            _ended(trial, status, why)
            raise KeyboardInterrupt
        row = summary["saved"] or summary["final"]
        if watch.pruned is not None:
            _ended(trial, "pruned", why)
            raise optuna.TrialPruned(why)
        if status not in ("completed", "stopped") or row is None:
            _ended(trial, status, why if row is not None else f"{why}: no epoch finished")
            raise TrialFailed(why)
        _ended(trial, status, why)
        return float(row[self.job.metric])


def _ended(trial: optuna.Trial, status: str, reason: Any) -> None:
    trial.set_user_attr(STATUS, status)
    trial.set_user_attr(REASON, str(reason))
