"""He (Kaiming) initialisation of every Linear and Conv2d weight: std = gain / sqrt(fan), gain of the active activation.

A convolution's fan is its channels times its kernel area; the output layer takes gain 1.

He initialisation is derived for ReLU-family activations, so this plugin requires
`relu`; a leaky slope set with ``-o relu.negative_slope`` enters the gain.
"""

import math

import attrs

from mnist_trainer import Initializer, choice, hookimpl, option, options_hook
from mnist_trainer.weights import DISTRIBUTIONS, fans, fill

MODES = ("fan_in", "fan_out")


@attrs.frozen
class HeOptions:
    distribution: str = option("uniform", converter=choice(*DISTRIBUTIONS), help="uniform or normal")
    mode: str = option("fan_in", converter=choice(*MODES),
                       help="fan_in (keeps forward variance) or fan_out (keeps backward variance)")


mnist_trainer_options = options_hook(HeOptions)


@hookimpl
def mnist_trainer_requires():
    return ("relu",)


@hookimpl
def mnist_trainer_init(options):
    use_fan_out = options.mode == "fan_out"

    def apply(network, context):
        for layer in context.weights:
            gain = 1.0 if layer is context.output else context.gain
            fill(layer.weight, gain / math.sqrt(fans(layer.weight)[use_fan_out]), options.distribution)

    return Initializer(f"He {options.distribution}, {options.mode}, gain of the activation; output layer gain 1", apply)
