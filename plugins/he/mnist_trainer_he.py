"""He (Kaiming) initialisation: std = gain / sqrt(fan), with the gain of the active activation.

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
        gain = network.spec.activation.gain
        layers = [(linear, gain) for linear in network.hidden_linears] + [(network.output, 1.0)]
        for linear, layer_gain in layers:
            fan = fans(linear.weight)[use_fan_out]
            fill(linear.weight, layer_gain / math.sqrt(fan), options.distribution)

    return Initializer(f"He {options.distribution}, {options.mode}, gain of the activation; output layer gain 1", apply)
