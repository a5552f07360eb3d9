"""Lion, an optimizer torch does not ship, written by hand and put in the optimizer slot.

Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms") keeps one momentum per weight and moves
every weight by exactly the rate, in the direction of the sign of a blend of momentum and gradient. What it shows an
author: a ``torch.optim.Optimizer`` subclass keeps its per-weight state in ``self.state``, so the core's checkpoints
hold it and a resumed run goes on bitwise; the plugin only says which class, at which conventional rate.
"""

import attrs
import torch
from attrs.validators import ge, lt

from mnist_trainer import Optimizer, hookimpl, number, option, options_hook


class Lion(torch.optim.Optimizer):
    """``w -= lr * (sign(beta1 * m + (1 - beta1) * g) + weight_decay * w)``, then
    ``m = beta2 * m + (1 - beta2) * g``."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for weight in group["params"]:
                if weight.grad is None:
                    continue
                state = self.state[weight]
                if not state:  # its first step: the momentum starts at zero
                    state["momentum"] = torch.zeros_like(weight)
                momentum = state["momentum"]
                weight.mul_(1 - group["lr"] * group["weight_decay"])  # decoupled weight decay, as AdamW's
                weight.add_(torch.sign(momentum.mul(beta1).add_(weight.grad, alpha=1 - beta1)), alpha=-group["lr"])
                momentum.lerp_(weight.grad, 1 - beta2)


@attrs.frozen
class LionOptions:
    beta1: float = option(0.9, converter=number, validator=[ge(0.0), lt(1.0)], help="a number in [0, 1)")
    beta2: float = option(0.99, converter=number, validator=[ge(0.0), lt(1.0)], help="a number in [0, 1)")
    weight_decay: float = option(0.0, converter=number, validator=ge(0.0), help="a number, 0 or more")


mnist_trainer_options = options_hook(LionOptions)


@hookimpl
def mnist_trainer_optimizer(options):
    def build(parameters, lr):
        return Lion(parameters, lr=lr, betas=(options.beta1, options.beta2), weight_decay=options.weight_decay)

    summary = f"Lion (by hand): beta1={options.beta1}, beta2={options.beta2}, weight_decay={options.weight_decay}"
    return Optimizer(summary, build, lr=1e-4)  # the paper: 3-10x below AdamW's rate (1e-3)
