"""Every Linear and Conv2d weight drawn from N(mean, std^2) with ``torch.nn.init.normal_``; biases untouched.

With the defaults (mean 0, std 1) this is the course lab's baseline before it
introduces Xavier: far too large for a 784-input layer, which is the point.
"""

import attrs
import torch
from attrs.validators import gt

from mnist_trainer import Initializer, hookimpl, number, option, options_hook


@attrs.frozen
class NormalInitOptions:
    mean: float = option(0.0, converter=number, help="a number")
    std: float = option(1.0, converter=number, validator=gt(0.0), help="a number above 0")


mnist_trainer_options = options_hook(NormalInitOptions)


@hookimpl
def mnist_trainer_init(options):
    def apply(network, context):
        with torch.no_grad():
            for layer in context.weights:
                torch.nn.init.normal_(layer.weight, options.mean, options.std)

    return Initializer(f"normal_(mean={options.mean}, std={options.std}), biases untouched", apply)
