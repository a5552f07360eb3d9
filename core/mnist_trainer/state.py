"""A plugin's own state across epochs: declared as a class, one instance per run, checkpointed under the plugin's name.

One plugin module serves every run in a process (a comparison trains many), so state
cannot live in the module. A plugin declares a class (``state_hook(MyState)``); each run
makes an instance, saves its ``state_dict()`` in every checkpoint (checked to hold only what
a checkpoint can, when it is saved) and gives it back through ``load_state_dict(state)``,
tensors on the run's device, when the run resumes.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from .errors import PluginError
from .hookspecs import hookimpl

PLAIN = (bool, int, float, str, type(None))


class PluginState:
    """A convenient base for an attrs class of state: its fields are its ``state_dict()``, restored as they are."""

    def state_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in attrs.fields(type(self))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def state_hook(cls: type) -> Callable[[], type]:
    """The whole ``mnist_trainer_state`` hook in one line: ``mnist_trainer_state = state_hook(MyState)``."""
    return hookimpl(specname="mnist_trainer_state")(lambda: cls)


def make(plugin: str, cls: Any) -> Any:
    """The run's instance of `plugin`'s state class, checked to have the two methods a checkpoint needs."""
    if not isinstance(cls, type) or not all(callable(getattr(cls, name, None))
                                            for name in ("state_dict", "load_state_dict")):
        raise PluginError(plugin, "mnist_trainer_state", f"returned {cls!r}; return a class with state_dict() and "
                          "load_state_dict(state) methods (subclass mnist_trainer.PluginState)")
    try:
        return cls()
    except Exception as error:
        raise PluginError.from_exception(plugin, "mnist_trainer_state (making it)", error) from error


def saved(plugin: str, instance: Any) -> dict[str, Any]:
    """`instance.state_dict()`, refused in one line naming the plugin and the key when a checkpoint could not hold
    it."""
    try:
        state = instance.state_dict()
    except Exception as error:
        raise PluginError.from_exception(plugin, "state_dict", error) from error
    if not isinstance(state, dict):
        raise PluginError(plugin, "state_dict", f"returned {type(state).__name__}; return a dict")
    for key, value in state.items():
        problem = _unsaveable(value)
        if problem:
            raise PluginError(plugin, "state_dict", f"its state[{key!r}] holds {problem}, which a checkpoint cannot "
                              "hold (it is loaded without running code); keep tensors, numbers, text, None, and "
                              "lists, tuples and dicts of them")
    return state


def restored(plugin: str, instance: Any, state: dict[str, Any], device: Any) -> None:
    """Hand a checkpoint's `state` back to `instance`, every tensor moved onto `device`."""
    try:
        instance.load_state_dict(on_device(state, device))
    except Exception as error:
        raise PluginError.from_exception(plugin, "load_state_dict", error) from error


def on_device(value: Any, device: Any) -> Any:
    """`value` with every tensor in it moved to `device`."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: on_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_device(item, device) for item in value)
    return value


def _unsaveable(value: Any) -> str | None:
    """What in `value` a weights-only checkpoint cannot hold, in a few words; None when all of it can."""
    import torch

    if isinstance(value, torch.Tensor) or type(value) in PLAIN:
        return None
    if isinstance(value, (list, tuple)):
        return next(filter(None, map(_unsaveable, value)), None)
    if isinstance(value, dict):
        bad_key = next((key for key in value if not isinstance(key, (str, int))), None)
        if bad_key is not None:
            return f"a dict key of type {type(bad_key).__name__}"
        return next(filter(None, map(_unsaveable, value.values())), None)
    return f"a {type(value).__module__}.{type(value).__qualname__}"
