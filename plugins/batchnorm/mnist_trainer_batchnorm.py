"""Batch normalisation in the norm slot: BatchNorm1d after each hidden Linear, before the activation."""

import attrs
from attrs.validators import gt, le

from torch import nn

from mnist_trainer import Norm, hookimpl, option


@attrs.frozen
class BatchNormOptions:
    momentum: float = option(0.1, converter=float, validator=[gt(0.0), le(1.0)],
                             help="a number in (0, 1]: weight of each batch in the running statistics")
    eps: float = option(1e-5, converter=float, validator=gt(0.0), help="a number above 0 added to the variance")


@hookimpl
def mnist_trainer_options():
    return BatchNormOptions


@hookimpl
def mnist_trainer_norm(settings):
    options = settings.options(BatchNormOptions)
    return Norm(
        f"BatchNorm1d(momentum={options.momentum}, eps={options.eps})",
        lambda width: nn.BatchNorm1d(width, eps=options.eps, momentum=options.momentum),
    )
