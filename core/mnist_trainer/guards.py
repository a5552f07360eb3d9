"""Plugin factories wrapped so that a mistake inside one names the plugin and the hook.

Composing passes every callable a stage answer holds (``build``, ``apply``, ``penalty``,
``transform``, ``compute``, ...) through `guard`: an exception it raises, or a value of
the wrong kind it returns, becomes a `PluginError` instead of an anonymous traceback
somewhere inside the training loop.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import attrs

from . import stages
from .errors import PluginError, UserError

Check = Callable[[Any, tuple], "str | None"]  # (what the factory returned, what it was given) -> the problem


def describe(value: Any) -> str:
    """A value's kind in a few words, for error messages: ``a function``, ``a float (0.5)``, ``a tensor of shape (3,)``."""
    if callable(value) and not isinstance(value, type) and not hasattr(value, "forward"):
        return f"a function ({getattr(value, '__qualname__', type(value).__name__)})"
    if type(value).__name__ == "Tensor":
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, tuple):
        return f"a tuple ({', '.join(describe(item) for item in value)})"
    if isinstance(value, (int, float, str)):
        return f"a {type(value).__name__} ({value!r})"
    return f"a {type(value).__module__}.{type(value).__qualname__}" if value is not None else "None"


def _is(kind: str, test: Callable[[Any], bool]) -> Check:
    return lambda value, args: None if test(value) else f"returned {describe(value)}, expected {kind}"


def _batch(value: Any, args: tuple) -> str | None:
    """A transform returns ``(images, labels)``: images shaped and typed as it was given them, a label per row."""
    import torch

    images = args[0]
    if (isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, torch.Tensor) for v in value)
            and value[0].shape[1:] == images.shape[1:] and value[0].dtype == images.dtype
            and value[0].shape[0] == value[1].shape[0]):
        return None
    return (f"returned {describe(value)}, expected a pair (images, labels): images of shape (N, "
            f"{', '.join(map(str, images.shape[1:]))}) and {images.dtype} as given, one label per row")


def _module(value: Any) -> bool:
    from torch import nn

    return isinstance(value, nn.Module)


def _optimizer(value: Any) -> bool:
    from torch.optim import Optimizer

    return isinstance(value, Optimizer)


def _steps_alone(value: Any) -> bool:
    """Whether ``value.step()`` can be called with no arguments, as the training loop calls it."""
    try:
        inspect.signature(value.step).bind()
    except (AttributeError, TypeError, ValueError):
        return False
    return True


def _scalar(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor) and value.dim() == 0


CHECKS: dict[tuple[type, str], Check | None] = {
    (stages.Activation, "build"): _is("a torch.nn.Module", _module),
    (stages.Model, "build"): _is("a torch.nn.Module", _module),
    (stages.Norm, "build"): _is("a torch.nn.Module", _module),
    (stages.Norm, "build2d"): _is("a torch.nn.Module", _module),
    (stages.Regularizer, "dropout"): _is("a torch.nn.Module", _module),
    (stages.Regularizer, "penalty"): _is("a 0-d tensor", _scalar),
    (stages.Regularizer, "transform"): _batch,
    (stages.Initializer, "apply"): None,
    (stages.Optimizer, "build"): _is("a torch.optim.Optimizer whose step() needs no closure (LBFGS's does)",
                                     lambda value: _optimizer(value) and _steps_alone(value)),
    (stages.Schedule, "build"): _is("a scheduler whose step() takes no arguments (ReduceLROnPlateau's needs a metric)",
                                    _steps_alone),
    (stages.Metric, "compute"): _is("a 0-d tensor", _scalar),
}


def guard(plugin: str, hook: str, answer: Any) -> Any:
    """`answer` with each of its factories wrapped to name `plugin` and `hook` when it fails."""
    wrapped = {}
    for field in attrs.fields(type(answer)):
        function = getattr(answer, field.name)
        if (type(answer), field.name) in CHECKS and function is not None:
            wrapped[field.name] = _guarded(plugin, f"{hook} ({field.name})", function, CHECKS[type(answer), field.name])
    return attrs.evolve(answer, **wrapped)


def _guarded(plugin: str, where: str, function: Callable, check: Check | None) -> Callable:
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            result = function(*args, **kwargs)
        except UserError:
            raise
        except Exception as error:
            raise PluginError.from_exception(plugin, where, error) from error
        problem = check(result, args) if check is not None else None
        if problem:
            raise PluginError(plugin, where, problem)
        return result

    return call
