"""Clip the global gradient norm before every optimizer step, so one bad mini-batch cannot throw the weights far.

All gradients are scaled together by ``max_norm / norm`` when their joint norm exceeds ``max_norm``
(``torch.nn.utils.clip_grad_norm_``), which keeps the step's direction. Each epoch's row says how
large the norm was before clipping and how often clipping bit, so ``max_norm`` can be chosen from
a run rather than guessed. Under torchrun every process clips: each steps its own copy of the weights.
"""

import math

import attrs
import torch
from attrs.validators import ge, gt

from mnist_trainer import PluginState, every_rank, hookimpl, number, option, options_hook, state_hook


def norm_type(value) -> float:
    """A p-norm's p: a finite number, or ``inf`` for the largest absolute value (which `number` refuses)."""
    return math.inf if str(value).strip().lower() in ("inf", "infinity") else number(value)


@attrs.frozen
class GradClipOptions:
    max_norm: float = option(1.0, converter=number, validator=gt(0.0), help="a number above 0")
    norm_type: float = option(2.0, converter=norm_type, validator=ge(1.0), help="a number, 1 or more, or inf")


@attrs.define
class Clipping(PluginState):
    """The epoch so far, summed on the device so that no step waits for the host."""

    norms: torch.Tensor | None = None  # sum of the global norms before clipping
    clipped: torch.Tensor | None = None  # steps whose norm exceeded max_norm
    steps: int = 0


mnist_trainer_options = options_hook(GradClipOptions)
mnist_trainer_state = state_hook(Clipping)


@hookimpl
def mnist_trainer_columns():
    return ("grad_norm", "clipped")


@hookimpl
@every_rank  # the gradients are averaged over the processes already; each process must step with them clipped
def mnist_trainer_before_step(run):
    options, clipping = run.settings.options(GradClipOptions), run.state(Clipping)
    norm = torch.nn.utils.clip_grad_norm_(run.network.parameters(), options.max_norm, options.norm_type)
    exceeded = (norm > options.max_norm).to(norm.dtype)
    if clipping.steps == 0:
        clipping.norms, clipping.clipped = norm.detach().clone(), exceeded
    else:
        clipping.norms += norm.detach()
        clipping.clipped += exceeded
    clipping.steps += 1


@hookimpl
@every_rank  # every process starts the next epoch's sums afresh (only rank 0's row is recorded)
def mnist_trainer_epoch_end(run):
    clipping = run.state(Clipping)
    run.row["grad_norm"] = clipping.norms / clipping.steps
    run.row["clipped"] = clipping.clipped / clipping.steps
    clipping.norms, clipping.clipped, clipping.steps = None, None, 0
