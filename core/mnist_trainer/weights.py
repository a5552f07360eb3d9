"""What init plugins share: the weight layers of any model, their fans, and filling a weight from a standard deviation.

Xavier, He and similar schemes differ only in the standard deviation they ask for;
the uniform variant draws from ``U(-sqrt(3) * std, sqrt(3) * std)``, which has that
standard deviation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DISTRIBUTIONS = ("uniform", "normal")
WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)


def layers(network: nn.Module) -> tuple[nn.Module, ...]:
    """Every `nn.Linear` and `nn.Conv2d` of `network` in module order (input to output): what init stages are given."""
    return tuple(module for module in network.modules() if isinstance(module, WEIGHT_LAYERS))


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)``: for a Linear (out, in), ``(in, out)``; a convolution multiplies both by its kernel
    area."""
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


@torch.no_grad()
def fill(weight: torch.Tensor, std: float, distribution: str) -> torch.Tensor:
    """Fill `weight` in place from the global RNG with zero mean and standard deviation `std`."""
    if distribution == "uniform":
        bound = math.sqrt(3.0) * std
        return weight.uniform_(-bound, bound)
    if distribution == "normal":
        return weight.normal_(0.0, std)
    raise ValueError(f"unknown distribution {distribution!r}; use one of {', '.join(DISTRIBUTIONS)}")
