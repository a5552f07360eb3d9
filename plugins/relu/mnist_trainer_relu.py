"""ReLU in the activation slot of every hidden block; leaky when ``negative_slope > 0``."""

import attrs
from attrs.validators import ge
from torch import nn

from mnist_trainer import Activation, hookimpl, number, option, options_hook


@attrs.frozen
class ReluOptions:
    negative_slope: float = option(0.0, converter=number, validator=ge(0.0), help="a number >= 0; 0 is plain ReLU")


mnist_trainer_options = options_hook(ReluOptions)


@hookimpl
def mnist_trainer_activation(options):
    slope = options.negative_slope
    if slope == 0:
        return Activation("ReLU", nn.ReLU, "relu")
    return Activation(f"LeakyReLU(negative_slope={slope})", lambda: nn.LeakyReLU(slope), "leaky_relu", slope)
