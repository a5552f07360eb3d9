"""mixup (Zhang et al. 2018): train on convex combinations of pairs of images and of their labels.

Each training mini-batch is mixed with a shuffled copy of itself, ``lam * x + (1 - lam) * x[perm]``, and its
labels alike as class probabilities, with one ``lam ~ Beta(alpha, alpha)`` per mini-batch. The network learns
to behave linearly between examples, a regulariser that costs one gather and two lerps per mini-batch on the
device. Every draw comes from the generator the core hands the transform, so runs are reproducible and resume
bitwise; torch's ``Beta`` distribution takes no generator, so Beta is drawn here from Gamma draws made with it.
"""

import math

import attrs
import torch
import torch.nn.functional as F
from attrs.validators import gt

from mnist_trainer import Regularizer, hookimpl, number, option, options_hook

CANDIDATES = 16  # each accepted with probability above 0.95: all 16 rejected below 0.05**16, about 1.5e-21


@attrs.frozen
class MixupOptions:
    alpha: float = option(0.2, converter=number, validator=gt(0.0), help="a number above 0")


mnist_trainer_options = options_hook(MixupOptions)


def log_gamma_draws(shape: float, count: int, generator: torch.Generator) -> torch.Tensor:
    """The logs of `count` Gamma(shape, 1) draws, in float64 on the generator's device, with no host sync.

    Marsaglia and Tsang (2000) draw Gamma(shape + 1) by rejection; here every draw gets CANDIDATES proposals at
    once and keeps the first accepted one. Gamma(shape) is then Gamma(shape + 1) * U**(1 / shape), taken in logs
    so that a small shape cannot underflow to 0.
    """
    d = shape + 1 - 1 / 3
    c = 1 / math.sqrt(9 * d)
    options = dict(generator=generator, device=generator.device, dtype=torch.float64)
    x = torch.randn(count, CANDIDATES, **options)
    v = (1 + c * x) ** 3
    log_v = torch.log(v.clamp_min(1e-300))
    accepted = (v > 0) & (torch.log(1 - torch.rand(count, CANDIDATES, **options)) < 0.5 * x * x + d - d * v + d * log_v)
    first = accepted.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first accepted proposal
    return math.log(d) + log_v.gather(1, first).squeeze(1) + torch.log(1 - torch.rand(count, **options)) / shape


def beta_draws(alpha: float, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` draws of Beta(alpha, alpha), float64 on the generator's device: X / (X + Y) for X, Y ~ Gamma(alpha)."""
    log_x, log_y = log_gamma_draws(alpha, 2 * count, generator).view(2, count)
    return torch.sigmoid(log_x - log_y)


def mix(images, labels, alpha, generator, classes=10):
    """The mini-batch mixed with a shuffled copy of itself by one lam ~ Beta(alpha, alpha): images, probabilities."""
    lam = beta_draws(alpha, 1, generator).to(images.dtype)
    order = torch.randperm(images.shape[0], generator=generator, device=images.device)
    targets = labels if labels.is_floating_point() else F.one_hot(labels, classes).to(images.dtype)
    return torch.lerp(images[order], images, lam), torch.lerp(targets[order], targets, lam.to(targets.dtype))


@hookimpl
def mnist_trainer_regularizer(options, data):
    alpha = options.alpha
    return Regularizer(
        f"mixup, lam ~ Beta({alpha}, {alpha}) per mini-batch, images and labels (training batches)",
        transform=lambda images, labels, generator: mix(images, labels, alpha, generator, data.classes),
    )
