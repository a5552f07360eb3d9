"""The core's built-in terminal plugins: the stage lines, the epoch table, the closing line, the progress bar."""

from __future__ import annotations

import sys
from typing import Any, Callable

import click

from .hookspecs import hookimpl


def fmt(value: Any) -> str:
    """Four decimals, or three significant digits where four decimals would hide the value (a small rate)."""
    if not isinstance(value, float):
        return str(value)
    return f"{value:.4f}" if value == 0 or abs(value) >= 0.001 else f"{value:.3g}"


class Terminal:
    """Prints reports as ``stage key=value``, one table row per epoch, and how the run ended.

    Prints after every other handler of an event (a wrapper acting once they return), so the
    table shows what other plugins add to ``run.row`` and the last line the weights they keep.
    """

    def __init__(self, say: Callable[[str], None]):
        self.say, self.columns = say, None

    @hookimpl(trylast=True)
    def mnist_trainer_report(self, stage: str, values: dict) -> None:
        self.say(f"{stage:<12} " + "  ".join(f"{k}={fmt(v)}" for k, v in values.items()))

    @hookimpl(wrapper=True)
    def mnist_trainer_epoch_end(self, run):
        yield
        if self.columns is None:
            self.columns = list(run.row)
            self.say("  ".join(f"{c:>{max(len(c), 7)}}" for c in self.columns))
        self.say("  ".join(f"{fmt(run.row.get(c, '')):>{max(len(c), 7)}}" for c in self.columns))

    @hookimpl(wrapper=True)
    def mnist_trainer_run_end(self, run):
        yield
        if run.status == "failed" or not run.history:
            return
        where = f"; record in {run.folder}" if run.folder else ""
        accuracy = run.saved.get("test_accuracy")
        result = f"test accuracy {accuracy:.4f} " if isinstance(accuracy, float) else ""
        if run.saved is not run.history[-1]:
            result += f"(the weights of epoch {run.saved['epoch']}) "
        head = "done" if run.status == "completed" else run.reason
        self.say(f"{head}: {result}after {len(run.history)} epochs in {run.seconds:.2f} s{where}")


class Progress:
    """A progress bar per epoch on stderr; attached only when stderr is a terminal."""

    def __init__(self):
        self.bar = None

    @hookimpl
    def mnist_trainer_epoch_start(self, run) -> None:
        self.bar = click.progressbar(length=run.steps_per_epoch, label=f"epoch {run.epoch}", file=sys.stderr)
        self.bar.__enter__()

    @hookimpl
    def mnist_trainer_step_end(self, run, loss) -> None:
        self.bar.update(1)

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
