"""What a plugin returns from a stage hook: small frozen descriptions, built into modules later.

Hooks run while the pipeline is composed, before any data is loaded or weights exist,
so every answer is a description plus a factory. That lets the core print the
pipeline and reject conflicts before spending any time, and keeps these classes
free of torch imports.
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

    `nonlinearity` and `param` name it for `torch.nn.init.calculate_gain`, so that
    init plugins can use the gain of whatever activation is active.
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
    """A module for the dropout slot of every hidden block, a loss penalty, or both."""

    summary: str
    dropout: Callable[[], "torch.nn.Module"] | None = None
    penalty: Callable[["Network"], "torch.Tensor"] | None = None


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
    """`build(parameters)` returns the `torch.optim.Optimizer` that trains the network."""

    summary: str
    build: Callable[[Any], "torch.optim.Optimizer"]


@attrs.frozen
class Metric:
    """An evaluation metric: `compute(logits, labels)` over a whole split gives a 0-d tensor."""

    name: str
    compute: Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
