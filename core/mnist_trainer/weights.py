"""Filling weight tensors from a standard deviation: the shared arithmetic of init plugins.

Xavier, He and similar schemes differ only in the standard deviation they ask for;
the uniform variant draws from ``U(-sqrt(3) * std, sqrt(3) * std)``, which has that
standard deviation.
"""

from __future__ import annotations

import math

import torch

DISTRIBUTIONS = ("uniform", "normal")


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a Linear weight of shape (out, in)."""
    fan_out, fan_in = weight.shape
    return fan_in, fan_out


@torch.no_grad()
def fill(weight: torch.Tensor, std: float, distribution: str) -> torch.Tensor:
    """Fill `weight` in place from the global RNG with zero mean and standard deviation `std`."""
    if distribution == "uniform":
        bound = math.sqrt(3.0) * std
        return weight.uniform_(-bound, bound)
    if distribution == "normal":
        return weight.normal_(0.0, std)
    raise ValueError(f"unknown distribution {distribution!r}; use one of {', '.join(DISTRIBUTIONS)}")
