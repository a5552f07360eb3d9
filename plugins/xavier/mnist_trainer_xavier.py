"""Xavier (Glorot) initialisation of every Linear and Conv2d weight: std = gain * sqrt(2 / (fan_in + fan_out)).

A convolution's fans are its channels times its kernel area. The output layer takes gain 1.
The defaults follow the course lab: ``xavier_uniform_`` with gain 1, biases untouched.
"""

import math

import attrs
from torch.nn.init import calculate_gain

from mnist_trainer import Initializer, choice, hookimpl, number, option, options_hook
from mnist_trainer.weights import DISTRIBUTIONS, fans, fill

GAIN_NAMES = ("activation", "linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu")


def to_gain(value) -> float | str:
    """A positive finite number, or a nonlinearity name (``activation`` = the active one)."""
    try:
        gain = number(value)
    except ValueError:
        if value in GAIN_NAMES:
            return value
        raise ValueError(f"{value!r} is neither a number nor one of {', '.join(GAIN_NAMES)}") from None
    if not gain > 0:
        raise ValueError(f"gain must be above 0, got {gain}")
    return gain


@attrs.frozen
class XavierOptions:
    distribution: str = option("uniform", converter=choice(*DISTRIBUTIONS), help="uniform or normal")
    gain: float | str = option(1.0, converter=to_gain,
                               help=f"a number above 0, or one of {', '.join(GAIN_NAMES)} "
                                    "(activation = the active one's gain)")


mnist_trainer_options = options_hook(XavierOptions)


@hookimpl
def mnist_trainer_init(options):
    def apply(network, context):
        hidden_gain = resolve_gain(options.gain, context.gain)
        for layer in context.weights:
            fan_in, fan_out = fans(layer.weight)
            gain = 1.0 if layer is context.output else hidden_gain
            fill(layer.weight, gain * math.sqrt(2.0 / (fan_in + fan_out)), options.distribution)

    return Initializer(f"Xavier {options.distribution}, gain {options.gain}; output layer gain 1; biases untouched",
                       apply)


def resolve_gain(gain, activation_gain: float) -> float:
    if gain == "activation":
        return activation_gain
    return calculate_gain(gain) if isinstance(gain, str) else gain
