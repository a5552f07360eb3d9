"""Cosine annealing of the learning rate from ``--lr`` down to ``eta_min`` over the whole run.

A large rate early and a small one at the end, with no extra knob to tune but the
floor. It only schedules: whichever optimizer fills the optimizer slot (the core's
Adam, or a plugin's) is annealed, through ``CosineAnnealingLR``.
"""

import attrs
import torch
from attrs.validators import ge

from mnist_trainer import Schedule, choice, hookimpl, number, option, options_hook


@attrs.frozen
class CosineOptions:
    eta_min: float = option(0.0, converter=number, validator=ge(0.0),
                            help="a number, 0 or more: the final learning rate")
    per: str = option("epoch", converter=choice("epoch", "batch"), help="epoch or batch: how often the rate moves")


mnist_trainer_options = options_hook(CosineOptions)


@hookimpl
def mnist_trainer_schedule(settings, options):
    def build(optimizer, steps_per_epoch, epochs):
        steps = epochs if options.per == "epoch" else steps_per_epoch * epochs
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=options.eta_min)

    summary = f"cosine to eta_min={options.eta_min} over {settings.epochs} epochs, per {options.per}"
    return Schedule(summary, build, per=options.per)
