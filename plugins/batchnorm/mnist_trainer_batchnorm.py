"""Batch normalisation in the norm slot: BatchNorm1d after each hidden Linear, BatchNorm2d after each convolution;
before the activation."""

import attrs
from attrs.validators import gt, le
from torch import nn

from mnist_trainer import Norm, hookimpl, number, option, options_hook
from mnist_trainer.syncbn import sync_batch_norm


@attrs.frozen
class BatchNormOptions:
    momentum: float = option(0.1, converter=number, validator=[gt(0.0), le(1.0)],
                             help="a number in (0, 1]: weight of each batch in the running statistics")
    eps: float = option(1e-5, converter=number, validator=gt(0.0), help="a number above 0 added to the variance")


mnist_trainer_options = options_hook(BatchNormOptions)


@hookimpl
def mnist_trainer_norm(options):
    return Norm(
        f"BatchNorm(momentum={options.momentum}, eps={options.eps})",
        lambda width: nn.BatchNorm1d(width, eps=options.eps, momentum=options.momentum),
        lambda channels: nn.BatchNorm2d(channels, eps=options.eps, momentum=options.momentum),
        min_batch=2,
        sync=sync_batch_norm,
    )
