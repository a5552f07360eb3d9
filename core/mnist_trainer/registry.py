"""The one place that knows pluggy and entry points: discovering, loading and asking plugins.

Plugins are discovered from entry-point metadata without importing them; only the
ones named with ``--plugin`` (and the plugins they require) are imported.
"""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points, version
from typing import Any, Iterable

import attrs
import pluggy

from . import defaults, hookspecs
from .errors import UserError

GROUP = hookspecs.PROJECT
CORE = "core"


@attrs.frozen
class PluginInfo:
    """An installed plugin as its distribution's metadata describes it; nothing imported."""

    name: str
    distribution: str
    version: str
    summary: str


def installed_plugins() -> dict[str, PluginInfo]:
    """Every plugin registered in the ``mnist_trainer`` entry-point group, by name."""
    found = {}
    for point in entry_points(group=GROUP):
        dist = point.dist
        meta = dist.metadata if dist else {}
        found[point.name] = PluginInfo(
            point.name,
            meta.get("Name", "?") if dist else "?",
            dist.version if dist else "?",
            meta.get("Summary", "") if dist else "",
        )
    return dict(sorted(found.items()))


def core_version() -> str:
    return version("mnist-trainer")


def make_manager(*plugins: Any, **named: Any) -> pluggy.PluginManager:
    """A fresh plugin manager holding the core defaults and the given plugin objects."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(defaults, name=CORE)
    for plugin in plugins:
        manager.register(plugin)
    for name, plugin in named.items():
        manager.register(plugin, name=name)
    return manager


def load(manager: pluggy.PluginManager, names: Iterable[str]) -> dict[str, str]:
    """Import the named plugins and, transitively, those they require.

    Returns each loaded name with why it was loaded (``"selected"`` or ``"required by X"``).
    """
    installed = installed_plugins()
    reasons = {name: "selected" for name in names}
    requires: dict[str, tuple[str, ...]] = {}
    pending = list(reasons)
    while pending:
        name = pending.pop(0)
        if name not in installed:
            raise UserError(_not_installed(name, reasons[name], installed))
        try:
            manager.load_setuptools_entrypoints(GROUP, name=name)
        except Exception as error:
            info = installed[name]
            raise UserError(
                f"plugin {name!r} ({info.distribution} {info.version}) failed to load: "
                f"{type(error).__name__}: {error}; reinstall or fix it, or run without --plugin {name}"
            ) from None
        requires[name] = tuple(ask(manager, name, "mnist_trainer_requires") or ())
        for needed in requires[name]:
            if needed not in reasons:
                reasons[needed] = f"required by {name}"
                pending.append(needed)
    _refuse_cycles(requires)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        raise UserError(f"plugin {error.plugin!r} is broken: {error}") from None
    return reasons


def ask(manager: pluggy.PluginManager, plugin: str, hook: str, **kwargs: Any) -> Any:
    """One plugin's answer to `hook`, or None when it does not implement it."""
    for impl in getattr(manager.hook, hook).get_hookimpls():
        if impl.plugin_name == plugin:
            return _call(impl, kwargs)
    return None


def every(manager: pluggy.PluginManager, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Every plugin's non-None answer to `hook`, as ``(plugin name, answer)`` in name order, core last."""
    answers = [(impl.plugin_name, _call(impl, kwargs)) for impl in _impls(manager, hook)]
    return [(name, answer) for name, answer in answers if answer is not None]


def exclusive(manager: pluggy.PluginManager, hook: str, slot: str, **kwargs: Any) -> tuple[str, Any]:
    """The one selected plugin answering `hook`, else the core default's answer.

    Two selected plugins answering is an error naming both: never first-wins.
    """
    impls = _impls(manager, hook)
    answers = [(impl.plugin_name, _call(impl, kwargs)) for impl in impls if impl.plugin_name != CORE]
    answers = [(name, answer) for name, answer in answers if answer is not None]
    if len(answers) > 1:
        names = " and ".join(repr(name) for name, _ in answers)
        raise UserError(f"plugins {names} both fill the {slot} slot, which takes one; select only one of them")
    if answers:
        return answers[0]
    return CORE, ask(manager, CORE, hook, **kwargs)


def option_classes(manager: pluggy.PluginManager) -> dict[str, type]:
    """Each plugin's options class, by plugin name."""
    return dict(every(manager, "mnist_trainer_options"))


def _impls(manager: pluggy.PluginManager, hook: str) -> list:
    return sorted(getattr(manager.hook, hook).get_hookimpls(), key=lambda impl: (impl.plugin_name == CORE, impl.plugin_name))


def _call(impl, kwargs: dict[str, Any]) -> Any:
    return impl.function(*(kwargs[name] for name in impl.argnames))


def _not_installed(name: str, reason: str, installed: dict[str, PluginInfo]) -> str:
    listing = f"installed plugins: {', '.join(installed) or 'none'}"
    if reason != "selected":
        return f"plugin {name!r} ({reason}) is not installed; pip install mnist-trainer-{name} ({listing})"
    close = difflib.get_close_matches(name, list(installed), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown plugin {name!r}; {hint}{listing}"


def _refuse_cycles(requires: dict[str, tuple[str, ...]]) -> None:
    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise UserError(f"circular plugin requirement: {' -> '.join(path[path.index(name):] + (name,))}")
        for needed in requires.get(name, ()):
            visit(needed, path + (name,))

    for name in requires:
        visit(name, ())
