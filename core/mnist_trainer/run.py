"""The one object every run event receives: the run as it stands.

| field | what |
| --- | --- |
| `settings` | the run's frozen `Settings` (``settings.options(MyOptions)`` gives a plugin its options) |
| `pipeline` | the composed pipeline as printed: ``(stage, text)`` lines |
| `dataset` | the loaded `Dataset`: `name`, `train` and `test` splits (``len(run.dataset.train)``) on `device` |
| `device` | the `torch.device` training runs on (this process's, under torchrun) |
| `world` | this process's place: `rank`, `size` (1 unless under torchrun), `leader` (rank 0, which alone records) |
| `folder` | the run folder (a `Path`), or None when nothing is recorded |
| `network`, `optimizer`, `schedulers` | the parts being trained, set before `run_start` (`schedulers` by plugin name) |
| `lr` | the learning rate the optimizer was built with (``--lr``, or its conventional rate) |
| `steps_per_epoch` | optimizer steps in one epoch |
| `epoch`, `step` | the current epoch (0 before the first) and the optimizer steps taken so far |
| `resumed` | whether this run continues a recorded one from its checkpoint |
| `columns` | the keys every epoch row holds (the core's, then those plugins declare), known from `run_start` on |
| `row` | this epoch's metrics (at `epoch_end`: epoch, lr, train_loss, test_*, seconds); add to it to record more |
| `history` | every finished epoch's row, oldest first |
| `status`, `reason` | at `run_end`: completed, stopped, interrupted, diverged or failed, and why |
| `generators` | `torch.Generator`s by name (`shuffle`, `transform`): add yours, so a resume draws as if uninterrupted |

`state(MyState)` gives a plugin its per-run state; `report(stage, **values)` prints a line and
records it; `stop(reason)` ends the run after this epoch; `weights()` gives the weights that are
evaluated and saved; `keep(epoch, weights)` chooses, at run end, the weights saved instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import attrs

from .checks import recordable
from .settings import Settings

if TYPE_CHECKING:
    import torch

    from .data import Dataset
    from .distributed import World

RESERVED_STAGES = ("epoch",)  # metrics.jsonl's own lines


class Row(dict):
    """An epoch's row: every value set is checked to be recordable, and its key to be a declared column.

    The check raises in the frame that sets the value, so the error names the plugin whose handler did.
    """

    def __init__(self, columns: Iterable[str] = (), values: dict | None = None):
        super().__init__()
        self.columns = frozenset(columns)
        self.update(values or {})

    def __setitem__(self, key: str, value: Any) -> None:
        if self.columns and key not in self.columns:
            raise KeyError(f"run.row[{key!r}]: {key!r} is not a column of this run; declare the columns your plugin "
                           "adds with mnist_trainer_columns")
        super().__setitem__(key, recordable(key, value))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]


class Generators(dict):
    """The run's random generators by name: each checked, where it is added, to be a `torch.Generator` (a checkpoint
    saves its state), so the error names the plugin that added something else."""

    def __init__(self, generators: dict | None = None):
        super().__init__()
        for name, generator in (generators or {}).items():
            self[name] = generator

    def __setitem__(self, name: str, generator: Any) -> None:
        import torch

        if not isinstance(name, str) or not isinstance(generator, torch.Generator):
            raise TypeError(f"run.generators[{name!r}] must be a torch.Generator (its state is checkpointed), not "
                            f"{type(generator).__name__}")
        super().__setitem__(name, generator)


def _is_row(run: "Run", attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, Row):
        raise TypeError("run.row is the core's: add to it (run.row[key] = value) instead of replacing it")


@attrs.define(eq=False)
class Run:
    """The run as run events see it; see the module docstring for every field."""

    settings: Settings
    dataset: "Dataset"
    device: "torch.device"
    folder: Path | None
    world: "World"
    pipeline: list = attrs.Factory(list)
    network: "torch.nn.Module | None" = None
    optimizer: "torch.optim.Optimizer | None" = None
    schedulers: dict = attrs.Factory(dict)
    lr: float | None = None
    steps_per_epoch: int = 0
    columns: tuple[str, ...] = ()
    epoch: int = 0
    step: int = 0
    resumed: bool = False
    row: Row = attrs.field(factory=Row, validator=_is_row)
    history: list[dict] = attrs.Factory(list)
    status: str | None = None
    reason: str | None = None
    generators: Generators = attrs.field(factory=Generators, converter=Generators)
    started: float = attrs.Factory(time.perf_counter)
    ended: float | None = None
    stop_requested: str | None = None
    kept: tuple[int, dict] | None = None
    states: dict[str, Any] = attrs.Factory(dict)
    reporter: Callable[[str, dict], None] = attrs.field(default=lambda stage, values: None, repr=False)
    evaluated: Callable[[], dict | None] = attrs.field(default=lambda: None, repr=False)

    def report(self, stage: str, **values: Any) -> None:
        """Print ``stage key=value ...`` and append ``{"stage": stage, **values}`` to the record."""
        if not isinstance(stage, str) or not stage.strip() or stage in RESERVED_STAGES:
            raise ValueError(f"run.report({stage!r}, ...): name the stage with text other than "
                             f"{', '.join(RESERVED_STAGES)}, which the record uses for its own lines")
        self.reporter(stage, {key: recordable(key, value) for key, value in values.items()})

    def stop(self, reason: str) -> None:
        """Ask the run to stop after this epoch; it ends with status ``stopped`` and this reason."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"run.stop({reason!r}): say why the run stops, in a few words")
        self.stop_requested = self.stop_requested or reason

    def state(self, cls: type) -> Any:
        """This run's instance of a plugin's state class (declared with ``mnist_trainer_state``)."""
        for instance in self.states.values():
            if type(instance) is cls:
                return instance
        raise LookupError(f"{cls.__name__} is not the state class of any plugin of this run; declare it with "
                          "mnist_trainer_state = state_hook(...)")

    def weights(self) -> dict:
        """The weights evaluated and saved now: a plugin's evaluation weights, else the network's own."""
        return self.evaluated() or self.network.state_dict()

    def keep(self, epoch: int, weights: dict) -> None:
        """At run end, save `weights` (a state_dict of the network), those of finished epoch `epoch`, instead of the
        last."""
        finished = [row["epoch"] for row in self.history]
        if epoch not in finished:
            raise ValueError(f"run.keep({epoch!r}, ...) names no finished epoch (finished: {finished or 'none'})")
        expected = set(self.network.state_dict())
        if not isinstance(weights, dict) or set(weights) != expected:
            raise ValueError(f"run.keep({epoch}, weights): weights must be a state_dict of run.network with its keys "
                             f"({', '.join(sorted(expected))})")
        self.kept = (epoch, weights)

    def row_of(self, epoch: int | None) -> dict | None:
        """The row of finished epoch `epoch`, or None."""
        return next((row for row in self.history if row["epoch"] == epoch), None)

    @property
    def seconds(self) -> float:
        """Seconds since the run started, or that it took once it has ended."""
        return round((self.ended or time.perf_counter()) - self.started, 3)
