"""Which device a run uses, what it is, and how much memory it has free."""

from __future__ import annotations

import os
import platform

import torch

from .errors import UserError


def resolve_device(text: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for an absent CUDA device is a user error."""
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UserError(f"invalid --device {text!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index not in (None, 0)):
        raise UserError(f"invalid --device {text!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise UserError(f"--device {text} asked for CUDA, but no CUDA device is available; use --device cpu")
        if device.index is not None and device.index >= count:
            raise UserError(f"--device {text}: only {count} CUDA device(s) here (cuda:0 to cuda:{count - 1})")
    return device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device}: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def refuse_oversize(what: str, needed: int, device: torch.device, advice: str) -> None:
    """A user error, before anything is allocated, when `needed` bytes would not fit in the device's free memory."""
    available = available_bytes(device)
    if available is not None and needed > 0.8 * available:
        raise UserError(f"{what} needs about {needed / 2**30:.1f} GiB, and {available / 2**30:.1f} GiB of memory "
                        f"is free on {device}; {advice}")


def available_bytes(device: torch.device) -> int | None:
    """Free memory where tensors on `device` live: the GPU's, or the system's (MemAvailable); None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
