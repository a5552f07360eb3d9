"""What a plugin returns from a stage hook: small frozen descriptions, built into modules later.

Hooks run while the pipeline is composed, before any data is loaded or weights exist,
so every answer is a description plus factories. That lets the core print the
pipeline and reject conflicts before spending any time, and keeps these classes
free of torch imports. Composing wraps every factory so that an exception or a
wrong return value inside it names the plugin and the hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import attrs

if TYPE_CHECKING:
    import torch

    from .model import Network


@attrs.frozen
class Activation:
    """The activation slot of every hidden block.

    `nonlinearity` and `param` name it for `torch.nn.init.calculate_gain` (checked when the
    pipeline is composed), so that init plugins can use the gain of whatever activation is active.
    """

    summary: str
    build: Callable[[], "torch.nn.Module"]
    nonlinearity: str
    param: float | None = None

    @property
    def gain(self) -> float:
        """The recommended init gain for this activation (``torch.nn.init.calculate_gain``)."""
        from torch.nn.init import calculate_gain

        return calculate_gain(self.nonlinearity, self.param)


@attrs.frozen
class Norm:
    """The norm slot of every hidden block: `build(width)` returns the module."""

    summary: str
    build: Callable[[int], "torch.nn.Module"]


@attrs.frozen
class Regularizer:
    """Any of: a module for the dropout slot, a loss penalty, a per-batch transform of the training data.

    - `dropout()` makes a module for the dropout slot of every hidden block.
    - `penalty(network, logits, labels)` returns a 0-d tensor added to each mini-batch's loss.
    - `transform(images, labels, generator)` returns the ``(images, labels)`` that train, on the
      device; it never sees evaluation data. `generator` is seeded from ``--seed``.
    """

    summary: str
    dropout: Callable[[], "torch.nn.Module"] | None = None
    penalty: Callable[["Network", "torch.Tensor", "torch.Tensor"], "torch.Tensor"] | None = None
    transform: Callable[["torch.Tensor", "torch.Tensor", "torch.Generator"], tuple] | None = None


@attrs.frozen
class InitContext:
    """What an initializer may use: the training images and a way to report progress.

    `report(stage, **values)` prints a line and appends it to the run's metrics record.
    """

    train_images: "torch.Tensor"
    seed: int
    report: Callable[..., None]


@attrs.frozen
class Initializer:
    """Sets the weights of a freshly built network in place, before training."""

    summary: str
    apply: Callable[["Network", InitContext], None]


@attrs.frozen
class Optimizer:
    """`build(parameters)` returns the `torch.optim.Optimizer` that trains the network (at ``settings.lr``)."""

    summary: str
    build: Callable[[Any], "torch.optim.Optimizer"]


@attrs.frozen
class Schedule:
    """`build(optimizer, steps_per_epoch, epochs)` returns a scheduler; the core calls its ``step()``.

    `per` is ``"batch"`` (after every optimizer step) or ``"epoch"`` (after every epoch). Any
    ``torch.optim.lr_scheduler`` fits; so does any object with ``step()``, ``state_dict()`` and
    ``load_state_dict()``.
    """

    summary: str
    build: Callable[[Any, int, int], Any]
    per: str = attrs.field(default="epoch", validator=attrs.validators.in_(("batch", "epoch")))


@attrs.frozen
class Metric:
    """An evaluation metric: `compute(logits, labels)` over a whole split gives a 0-d tensor."""

    name: str
    compute: Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
