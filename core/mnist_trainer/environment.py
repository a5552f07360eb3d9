"""What the process's environment offers: numbers read from environment variables, bounded where they are read,
and the cores this process may run on.

A value such as ``inf``, ``1e400`` or ``nan`` would otherwise reach the socket or the process group
and fail there as a traceback (or wait forever); here it is one line naming the variable.
"""

from __future__ import annotations

import os

from .errors import UserError

DAY = 24 * 3600.0


def bounded(variable: str, default: float, *, unit: str = "seconds", ceiling: float = DAY) -> float:
    """`variable`'s value, or `default` when it is unset or empty; a `UserError` unless it is above 0 and at most
    `ceiling` (which also refuses ``nan``, ``inf`` and numbers too large for a float)."""
    text = os.environ.get(variable, "")
    if not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= ceiling:
        raise UserError(f"{variable}={text!r} is not a number of {unit} above 0 and at most {ceiling:g}; "
                        f"set one in that range, or unset it for the default of {default:g}")
    return value


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which taskset or a container's cpuset can narrow), which
    its workers and torch threads share out."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
