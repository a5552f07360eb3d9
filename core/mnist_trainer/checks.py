"""Every check of what a plugin hands the core, in one table, applied in one place.

Composing checks each stage answer's type and wraps each of its factories through
`guard`: an exception inside a factory, or a value of the wrong kind returned, becomes a
`PluginError` naming the plugin and the hook instead of an anonymous traceback somewhere
in the training loop. A dataset's splits are checked as they are converted
(`data.to_split`). What runs once per mini-batch (a transform, a penalty, the loss) is
checked on its first call only, so checking costs nothing measurable after it. Values
handlers add to the epoch row or report are checked where they are set (`recordable`), so
the error names the handler that set them.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import sys
from typing import Any, Callable

import attrs

from . import stages
from .errors import PluginError, UserError

Check = Callable[..., "str | None"]  # (what the factory returned, what it was given, the data's classes) -> the problem


def describe(value: Any) -> str:
    """A value's kind in a few words, for error messages: ``a function``, ``a float (0.5)``,
    ``a tensor of shape (3,)``."""
    if callable(value) and not isinstance(value, type) and not hasattr(value, "forward"):
        return f"a function ({getattr(value, '__qualname__', type(value).__name__)})"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, tuple):
        return f"a tuple ({', '.join(describe(item) for item in value)})"
    if isinstance(value, (int, float, str)):
        return f"a {type(value).__name__} ({value!r})"
    return f"a {type(value).__module__}.{type(value).__qualname__}" if value is not None else "None"


def _is(kind: str, test: Callable[[Any], bool]) -> Check:
    return lambda value, args, classes: None if test(value) else f"returned {describe(value)}, expected {kind}"


def _batch(value: Any, args: tuple, classes: int) -> str | None:
    """A transform returns ``(images, labels)``: images shaped and typed as given, and one label per image, either a
    class index (int64, shape (N,)) or class probabilities (float, shape (N, classes))."""
    import torch

    images = args[0]
    if not (isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, torch.Tensor) for v in value)):
        return f"returned {describe(value)}, expected a pair (images, labels) of tensors"
    out, labels = value
    if out.shape[1:] != images.shape[1:] or out.dtype != images.dtype:
        return (f"returned images {describe(out)}, expected (N, {', '.join(map(str, images.shape[1:]))}) and "
                f"{images.dtype} as given")
    indices = labels.dtype == torch.int64 and labels.shape == (out.shape[0],)
    soft = labels.is_floating_point() and labels.shape == (out.shape[0], classes)
    if not (indices or soft):
        return (f"returned labels {describe(labels)}, expected class indices (int64, shape ({out.shape[0]},)) or class "
                f"probabilities (float, shape ({out.shape[0]}, {classes}))")
    return None


def _module(value: Any) -> bool:
    from torch import nn

    return isinstance(value, nn.Module)


def _optimizer(value: Any, args: tuple, classes: int, closure: bool) -> str | None:
    from torch.optim import Optimizer

    if not isinstance(value, Optimizer):
        return f"returned {describe(value)}, expected a torch.optim.Optimizer"
    if not closure and not _steps_alone(value):
        return (f"built a {type(value).__name__}, whose step() needs a closure; say so in its answer "
                "(Optimizer(..., closure=True)) and the core passes one")
    return None


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


@attrs.frozen
class Rule:
    """How one factory's result is checked: `check` (None: anything), and whether only its first call is
    (`per_step`)."""

    check: Check | None
    per_step: bool = False


SCALAR = _is("a 0-d tensor", _scalar)
MODULE = _is("a torch.nn.Module", _module)
RULES: dict[tuple[type, str], Rule] = {
    (stages.Activation, "build"): Rule(MODULE),
    (stages.Model, "build"): Rule(MODULE),
    (stages.Norm, "build"): Rule(MODULE),
    (stages.Norm, "build2d"): Rule(MODULE),
    (stages.Norm, "sync"): Rule(MODULE),
    (stages.Regularizer, "dropout"): Rule(MODULE),
    (stages.Regularizer, "penalty"): Rule(SCALAR, per_step=True),
    (stages.Regularizer, "transform"): Rule(_batch, per_step=True),
    (stages.Loss, "compute"): Rule(SCALAR, per_step=True),
    (stages.Initializer, "apply"): Rule(None),
    (stages.Optimizer, "build"): Rule(None),  # checked with the answer's `closure`, below
    (stages.Schedule, "build"): Rule(_is("a scheduler whose step() takes no arguments (ReduceLROnPlateau's needs a "
                                         "metric)", _steps_alone)),
    (stages.Metric, "compute"): Rule(SCALAR),
}


def check_answer(plugin: str, hook: str, answer: Any, expected: type, many: bool, classes: int) -> Any:
    """`answer` checked to be a `expected` (each item, when `many`), with its factories guarded; `classes` is the
    data's, which soft labels must match."""
    if not isinstance(answer, expected):
        kind = f"mnist_trainer.{expected.__name__}" + (" items in a sequence" if many else "")
        raise PluginError(plugin, hook, f"returned {describe(answer)}, expected {kind} (see docs/plugin_hooks.md)")
    return guard(plugin, hook, answer, classes)


def guard(plugin: str, hook: str, answer: Any, classes: int = 10) -> Any:
    """`answer` with each of its factories wrapped to name `plugin` and `hook` when it fails or returns the wrong
    kind."""
    wrapped = {}
    for field in attrs.fields(type(answer)):
        function, rule = getattr(answer, field.name), RULES.get((type(answer), field.name))
        if rule is None or function is None:
            continue
        check = rule.check
        if isinstance(answer, stages.Optimizer):
            check = functools.partial(_optimizer, closure=answer.closure)
        wrapped[field.name] = _guarded(plugin, f"{hook} ({field.name})", function, check, rule.per_step, classes)
    return attrs.evolve(answer, **wrapped)


def _guarded(plugin: str, where: str, function: Callable, check: Check | None, per_step: bool,
             classes: int) -> Callable:
    unchecked = [check] if check is not None else []

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            result = function(*args, **kwargs)
        except UserError:
            raise
        except Exception as error:
            raise PluginError.from_exception(plugin, where, error) from error
        if unchecked:
            problem = unchecked[0](result, args, classes)
            if problem:
                raise PluginError(plugin, where, problem)
            if per_step:
                unchecked.clear()
        return result

    return call


def recordable(key: Any, value: Any) -> Any:
    """`value` as the record holds it: a number, text, a bool or None; a 0-d tensor or a numpy scalar becomes its
    number.

    Anything else raises a `TypeError` in the frame that set it, so the error names that plugin.
    """
    if not isinstance(key, str):
        raise TypeError(f"a row or report key must be text, not {describe(key)}")
    if isinstance(value, (str, bool, type(None))) or (isinstance(value, numbers.Real)
                                                      and type(value).__module__ == "builtins"):
        return value
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "shape", None) in ((), []) and callable(item):
        plain = item()
        if isinstance(plain, (bool, int, float)):
            return plain
    raise TypeError(f"{key!r} = {describe(value)} cannot be recorded; give a number or text (a 0-d tensor or a "
                    "numpy scalar is taken as its number)")
