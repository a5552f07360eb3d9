"""The one object every run event receives: the run as it stands.

| field | what |
| --- | --- |
| `settings` | the run's frozen `Settings` (``settings.options(MyOptions)`` gives a plugin its options) |
| `pipeline` | the composed pipeline as printed: ``(stage, text)`` lines |
| `dataset` | the loaded `Dataset`: `name`, `train` and `test` splits (``len(run.dataset.train)``) on `device` |
| `device` | the `torch.device` training runs on (this process's, under torchrun) |
| `world` | this process's place: `rank`, `size` (1 unless under torchrun), `leader` (rank 0, which alone records) |
| `folder` | the run folder (a `Path`), or None when nothing is recorded (the test kit's runs) |
| `network`, `optimizer`, `scheduler` | the parts being trained, set before `run_start` (`scheduler` None for a constant rate) |
| `steps_per_epoch` | optimizer steps in one epoch |
| `epoch`, `step` | the current epoch (0 before the first) and the optimizer steps taken so far |
| `columns` | the keys every epoch row will hold, known from `run_start` on |
| `row` | the current epoch's metrics (at `epoch_end`: epoch, lr, train_loss, test_*, seconds); add to it to record more |
| `history` | every finished epoch's row, oldest first |
| `weights_epoch` | the epoch whose weights `network` holds at the end: set it (to a finished epoch) when you restore an earlier one |
| `status`, `reason` | at `run_end`: completed, stopped, interrupted, diverged or failed, and why |
| `generators` | the run's `torch.Generator`s by name (`shuffle`, `transform`): add yours, so a resumed run draws as the uninterrupted one |
| `stash` | a dict for plugins' own per-run state, keyed by plugin name: plain data (numbers, text, lists, dicts, tensors), since it is checkpointed |

`report(stage, **values)` prints a line and records it; `stop(reason)` ends the run after this epoch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .settings import Settings

if TYPE_CHECKING:
    import torch

    from .data import Dataset
    from .registry import Events
    from .world import World

@attrs.define(eq=False)
class Run:
    """The run as run events see it; see the module docstring for every field."""

    settings: Settings
    dataset: "Dataset"
    device: "torch.device"
    folder: Path | None
    events: "Events" = attrs.field(repr=False)
    pipeline: list = attrs.Factory(list)
    network: "torch.nn.Module | None" = None
    optimizer: "torch.optim.Optimizer | None" = None
    scheduler: Any = None
    steps_per_epoch: int = 0
    columns: tuple[str, ...] = ()
    epoch: int = 0
    step: int = 0
    row: dict = attrs.Factory(dict)
    history: list[dict] = attrs.Factory(list)
    weights_epoch: int | None = attrs.field(default=None)
    status: str | None = None
    reason: str | None = None
    generators: dict = attrs.Factory(dict)
    stash: dict = attrs.Factory(dict)
    started: float = attrs.Factory(time.perf_counter)
    ended: float | None = None
    stop_requested: str | None = None
    world: "World" = attrs.Factory(lambda run: _alone(run.device), takes_self=True)

    @weights_epoch.validator
    def _finished(self, _attribute, epoch: int | None) -> None:
        finished = [row["epoch"] for row in self.history]
        if epoch is not None and epoch not in finished:
            raise ValueError(f"run.weights_epoch = {epoch!r} names no finished epoch (finished: {finished or 'none'})")

    def report(self, stage: str, **values: Any) -> None:
        """Print ``stage key=value ...`` and append ``{"stage": stage, **values}`` to the record."""
        self.events.emit("mnist_trainer_report", run=self, stage=stage, values=values)

    def stop(self, reason: str) -> None:
        """Ask the run to stop after this epoch; it ends with status ``stopped`` and this reason."""
        self.stop_requested = reason

    def state(self) -> dict:
        """Everything a resumed run needs to go on exactly as this one would: its checkpoint."""
        import torch

        return {
            "epoch": self.epoch,
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "generators": {name: generator.get_state() for name, generator in self.generators.items()},
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "history": self.history,
            "stash": self.stash,
        }

    def restore(self, state: dict) -> None:
        """Continue from `state`, a checkpoint of `state()`: parts, history and plugins' stash (see `restore_generators`)."""
        from .errors import UserError

        try:
            self.network.load_state_dict(state["network"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"the checkpoint does not fit the network its plugins build now "
                            f"({str(error).strip().splitlines()[0]}); start the run again") from None
        self.epoch, self.history, self.stash = state["epoch"], list(state["history"]), dict(state["stash"])
        self.step = self.epoch * self.steps_per_epoch

    def restore_generators(self, state: dict) -> None:
        """Every generator's state, the global ones last: called once run_start has let plugins add theirs."""
        import torch

        for name, generator in self.generators.items():
            if name in state["generators"]:
                generator.set_state(state["generators"][name])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    @property
    def saved(self) -> dict | None:
        """The row of the epoch whose weights the network holds: `weights_epoch`'s, else the last epoch's."""
        if self.weights_epoch is not None:
            return self.history[[row["epoch"] for row in self.history].index(self.weights_epoch)]
        return self.history[-1] if self.history else None

    @property
    def seconds(self) -> float:
        """Seconds since the run started, or that it took once it has ended."""
        return round((self.ended or time.perf_counter()) - self.started, 3)


def _alone(device: "torch.device") -> "World":
    from .world import World

    return World(device=device)
