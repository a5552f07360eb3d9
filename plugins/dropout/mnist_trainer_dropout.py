"""Dropout in the dropout slot of every hidden block (after the activation)."""

import attrs
from torch import nn

from mnist_trainer import Regularizer, hookimpl, option


def below_one(instance, attribute, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"p must be in [0, 1), got {value}")


@attrs.frozen
class DropoutOptions:
    p: float = option(0.3, converter=float, validator=below_one, help="a probability in [0, 1)")


@hookimpl
def mnist_trainer_options():
    return DropoutOptions


@hookimpl
def mnist_trainer_regularizer(settings):
    p = settings.options(DropoutOptions).p
    return Regularizer(f"Dropout(p={p}) in every hidden block", dropout=lambda: nn.Dropout(p))
