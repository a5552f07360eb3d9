"""``torch.optim.SGD`` at ``--lr`` in the optimizer slot, in place of the core's Adam.

The course lab starts from plain SGD; momentum, Nesterov and weight decay are the
knobs it turns before reaching Adam, so they are options here.
"""

import attrs
import torch
from attrs.validators import ge, lt

from mnist_trainer import Optimizer, boolean, hookimpl, number, option, options_hook


@attrs.frozen
class SgdOptions:
    momentum: float = option(0.9, converter=number, validator=[ge(0.0), lt(1.0)], help="a number in [0, 1)")
    nesterov: bool = option(False, converter=boolean, help="true or false; true needs momentum above 0")
    weight_decay: float = option(0.0, converter=number, validator=ge(0.0), help="a number, 0 or more")

    def __attrs_post_init__(self):
        # torch would refuse this only when the optimizer is built; refusing it here names the option.
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=true needs momentum above 0")


mnist_trainer_options = options_hook(SgdOptions)


@hookimpl
def mnist_trainer_optimizer(options):
    def build(parameters, lr):
        return torch.optim.SGD(parameters, lr=lr, momentum=options.momentum,
                               nesterov=options.nesterov, weight_decay=options.weight_decay)

    summary = f"SGD(momentum={options.momentum}, nesterov={options.nesterov}, weight_decay={options.weight_decay})"
    return Optimizer(summary, build, lr=0.01)
