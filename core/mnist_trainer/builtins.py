"""The core's own run-time behaviour, as plugins on the run events: the record, the last finished epoch's weights,
the epoch table, the progress bar and, under torchrun, the agreement to stop.

They are attached for one run (`session`), under names starting ``core:``. The record writer,
the table and the weights keeper are wrappers that act once every plugin's handler has
returned, so they see what plugins add to the row and the weights they leave. After
``run_end`` the session calls each one's `finish`, in the order they were attached.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import click

from . import checkpoint, records
from .hookspecs import every_rank, hookimpl
from .records import RunFolder


def fmt(value: Any) -> str:
    """Four decimals, or three significant digits where four decimals would hide the value (a small rate)."""
    if not isinstance(value, float):
        return str(value)
    return f"{value:.4f}" if value == 0 or abs(value) >= 0.001 else f"{value:.3g}"


class Builtin:
    """A built-in plugin: hook implementations, and `finish`, called once the run's ending is settled."""

    def finish(self, run) -> None:
        """After ``run_end``: the run's status is final."""


class LastGood(Builtin):
    """Keeps the weights of the last finished epoch: the training weights, to go back to after an interrupt or a
    divergence, and the evaluated ones, which are saved unless a plugin keeps others (``run.keep``)."""

    def __init__(self):
        self.epoch: int | None = None
        self.training: dict | None = None
        self.evaluated: dict | None = None

    @hookimpl(wrapper=True)
    @every_rank
    def mnist_trainer_epoch_end(self, run):
        yield
        self.capture(run)

    def capture(self, run) -> None:
        self.epoch = run.epoch
        self.training = _copy(run.network.state_dict())
        given = run.evaluated()
        self.evaluated = _copy(given) if given is not None else self.training

    def go_back(self, run) -> None:
        """Back to the end of the last finished epoch: its training weights in the network, and no later row in the
        history (an epoch interrupted while its handlers ran is not finished)."""
        if self.training is not None and run.network is not None:
            run.network.load_state_dict(self.training)
        run.history[:] = [row for row in run.history if self.epoch is not None and row["epoch"] <= self.epoch]

    def final(self, run) -> tuple[int, dict] | None:
        """The epoch whose weights the run saves, and those weights; None before any epoch finished."""
        if run.kept is not None:
            return run.kept
        return (self.epoch, self.evaluated) if self.epoch is not None else None


def _copy(weights: dict) -> dict:
    return {key: value.detach().clone() for key, value in weights.items()}


class RecordWriter(Builtin):
    """Appends each epoch and report to ``metrics.jsonl`` and writes the checkpoint when it is due; at the end,
    ``model.pt`` (the saved weights and their epoch, in one file) and ``config.json`` with the summary.

    A failed run writes no ``model.pt``: the record names the weights the folder already holds, if any.
    Reports made while a resumed run starts again are printed, not recorded twice.
    """

    def __init__(self, folder: RunFolder, config: dict, last_good: LastGood, summary: Callable[[Any], dict]):
        self.folder, self.config, self.last_good, self.summary = folder, config, last_good, summary
        self.restarting = False

    @hookimpl(wrapper=True)
    def mnist_trainer_run_start(self, run):
        self.restarting = run.resumed
        try:
            return (yield)
        finally:
            self.restarting = False

    @hookimpl(trylast=True)
    def mnist_trainer_report(self, stage: str, values: dict) -> None:
        if not self.restarting:
            self.folder.append_metrics({"stage": stage, **values})

    @hookimpl(wrapper=True)
    def mnist_trainer_epoch_end(self, run):
        yield
        self.folder.append_metrics({"stage": "epoch", **run.row})
        last = run.epoch == run.settings.epochs or run.stop_requested is not None  # so that --epochs can extend it
        if run.epoch % run.settings.checkpoint_every == 0 or last:
            self.folder.save_state(checkpoint.take(run, self.config["run_id"]))

    def finish(self, run) -> None:
        final = self.last_good.final(run)
        if run.status != "failed" and final is not None:
            epoch, weights = final
            self.config["model_sha256"] = self.folder.save_model({
                "format": records.FORMAT, "run_id": self.config["run_id"], "epoch": epoch,
                "settings": run.settings.to_record(), "state_dict": weights,
            })
        self.folder.write_config({**self.config, "summary": self.summary(run)})


class Terminal(Builtin):
    """Prints reports as ``stage key=value``, one table row per epoch (the run's columns, declared up front), and,
    once the record is written, how the run ended."""

    def __init__(self, say: Callable[[str], None], last_good: LastGood):
        self.say, self.last_good, self.header = say, last_good, False

    @hookimpl(trylast=True)
    def mnist_trainer_report(self, stage: str, values: dict) -> None:
        self.say(f"{stage:<12} " + "  ".join(f"{k}={fmt(v)}" for k, v in values.items()))

    @hookimpl(wrapper=True)
    def mnist_trainer_epoch_end(self, run):
        yield
        if not self.header:
            self.header = True
            self.say("  ".join(f"{c:>{max(len(c), 7)}}" for c in run.columns))
        self.say("  ".join(f"{fmt(run.row.get(c, '')):>{max(len(c), 7)}}" for c in run.columns))

    def finish(self, run) -> None:
        final = self.last_good.final(run)
        if run.status == "failed" or final is None:
            return
        saved = run.row_of(final[0])
        where = f"; record in {run.folder}" if run.folder else ""
        accuracy = saved.get("test_accuracy")
        result = f"test accuracy {accuracy:.4f} " if isinstance(accuracy, float) else ""
        if saved is not run.history[-1]:
            result += f"(the weights of epoch {saved['epoch']}) "
        head = "done" if run.status == "completed" else run.reason
        self.say(f"{head}: {result}after {len(run.history)} epochs in {run.seconds:.2f} s{where}")


class Progress(Builtin):
    """A progress bar per epoch on stderr, moved by the loop a few times an epoch (no per-step event);
    attached only when stderr is a terminal."""

    def __init__(self):
        self.bar, self.done = None, 0

    @hookimpl
    def mnist_trainer_epoch_start(self, run) -> None:
        self.bar, self.done = click.progressbar(length=run.steps_per_epoch, label=f"epoch {run.epoch}",
                                                file=sys.stderr), 0
        self.bar.__enter__()

    def advance(self, steps: int) -> None:
        if self.bar is not None:
            self.bar.update(steps - self.done)
            self.done = steps

    @hookimpl(tryfirst=True)
    def mnist_trainer_epoch_end(self, run) -> None:
        self.close()

    @hookimpl(tryfirst=True)
    def mnist_trainer_run_end(self, run) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


class StopTogether(Builtin):
    """Under torchrun: once every other epoch_end handler has run, the ranks agree whether to stop.

    A stop asked in any process (rank 0's handlers, or an `every_rank` one elsewhere) stops all of
    them after this epoch, with the first asker's reason. It acts inside the record writer, so the
    final checkpoint is written for a stop asked on any rank.
    """

    @hookimpl(wrapper=True)
    @every_rank
    def mnist_trainer_epoch_end(self, run):
        yield
        asked = [reason for reason in run.world.everyone(run.stop_requested) if reason]
        run.stop_requested = run.stop_requested or (asked[0] if asked else None)

