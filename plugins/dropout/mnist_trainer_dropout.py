"""Dropout in the dropout slot of every hidden block (after the activation)."""

import attrs
from attrs.validators import ge, lt
from torch import nn

from mnist_trainer import Regularizer, hookimpl, number, option, options_hook


@attrs.frozen
class DropoutOptions:
    p: float = option(0.3, converter=number, validator=[ge(0.0), lt(1.0)], help="a probability in [0, 1)")


mnist_trainer_options = options_hook(DropoutOptions)


@hookimpl
def mnist_trainer_regularizer(options):
    p = options.p
    return Regularizer(f"Dropout(p={p})", dropout=lambda: nn.Dropout(p))
