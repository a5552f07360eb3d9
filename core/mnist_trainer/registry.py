"""The one place that knows pluggy and entry points: discovering, loading and asking plugins.

Plugins are discovered from entry-point metadata without importing them; only the
ones named with ``--plugin`` (and the plugins they require) are imported. Every
hook is called through pluggy: stage hooks one plugin at a time (composing needs
to know who answered what), run events once on every plugin through `Events`.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
import time
from importlib.metadata import entry_points, version
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator

import attrs
import pluggy

from . import defaults, hookspecs
from .errors import PluginError, UserError

GROUP = hookspecs.PROJECT
CORE = "core"
MODULE_PREFIX = "mnist_trainer_"
ORDER_OPTIONS = ("tryfirst", "trylast", "wrapper", "hookwrapper")


@attrs.frozen
class PluginInfo:
    """An installed plugin as its distribution's metadata describes it; nothing imported."""

    name: str
    distribution: str
    version: str
    summary: str
    value: str = ""  # what the entry point names: the plugin's module (or module:object)


def installed_plugins() -> dict[str, PluginInfo]:
    """Every plugin registered in the ``mnist_trainer`` entry-point group, by name (the first of a name; see
    `clashes`)."""
    found: dict[str, PluginInfo] = {}
    for info in _registered():
        found.setdefault(info.name, info)
    return dict(sorted(found.items()))


def clashes() -> dict[str, list[PluginInfo]]:
    """Names that more than one distribution registers: which one a run would load is not defined, so none is."""
    by_name: dict[str, list[PluginInfo]] = {}
    for info in _registered():
        by_name.setdefault(info.name, []).append(info)
    return {name: infos for name, infos in by_name.items() if len(infos) > 1}


_SCANNED: dict[tuple, list[PluginInfo]] = {}


def _registered() -> list[PluginInfo]:
    """Every entry point of the group, read from the installed distributions' metadata.

    Reading it parses every distribution's metadata (a quarter of a second in a large environment), so the
    result is kept for as long as the import path and the folders on it are unchanged: installing or
    removing a distribution changes a folder's modification time.
    """
    key = tuple((path, _modified(path)) for path in sys.path)
    if key not in _SCANNED:
        found = []
        for point in entry_points(group=GROUP):
            dist = point.dist
            meta = dist.metadata if dist else {}
            found.append(PluginInfo(point.name, meta.get("Name", "?") if dist else "?", dist.version if dist else "?",
                                    meta.get("Summary", "") if dist else "", point.value))
        _SCANNED.clear()
        _SCANNED[key] = found
    return _SCANNED[key]


def _modified(path: str) -> int | None:
    try:
        return os.stat(path or ".").st_mtime_ns
    except OSError:
        return None


def core_version() -> str:
    return version("mnist-trainer")


def plugin_name(plugin: Any) -> str | None:
    """The name a run gives a plugin module: the entry point naming it when installed, else its module name
    without the ``mnist_trainer_`` prefix (``mnist_trainer_early_stop`` -> ``early-stop``)."""
    if not isinstance(plugin, ModuleType):
        return None
    for info in _registered():
        if info.value == plugin.__name__:
            return info.name
    if plugin.__name__.startswith(MODULE_PREFIX):
        return plugin.__name__[len(MODULE_PREFIX):].replace("_", "-")
    return None


def make_manager(*plugins: Any, **named: Any) -> pluggy.PluginManager:
    """A fresh plugin manager holding the core defaults and the given plugin objects, verified as a run verifies.

    A module named ``mnist_trainer_<name>`` is registered under its entry-point name ``<name>``.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(defaults, name=CORE)
    for plugin in plugins:
        manager.register(plugin, name=plugin_name(plugin))
    for name, plugin in named.items():
        manager.register(plugin, name=name)
    if plugins or named:
        in_name_order(manager)
        verify(manager)
    return manager


def in_name_order(manager: pluggy.PluginManager) -> None:
    """Re-register the plugins so that pluggy calls their run-event handlers in plugin-name order.

    pluggy calls the last registered first (after tryfirst, before trylast), whatever order the
    plugins were loaded in; re-registering them in reverse name order makes the order a function of
    the names alone, the same for ``-p a -p b`` and ``-p b -p a``, and in a run and its resume.
    """
    plugins = sorted(((name, plugin) for name, plugin in manager.list_name_plugin() if name != CORE), reverse=True)
    for name, plugin in plugins:
        manager.unregister(plugin)
    for name, plugin in plugins:
        manager.register(plugin, name=name)


def load(manager: pluggy.PluginManager, names: Iterable[str]) -> dict[str, str]:
    """Import the named plugins and, transitively, those they require, then verify them.

    Returns each loaded name with why it was loaded (``"selected"`` or ``"required by X"``).
    """
    installed, ambiguous = installed_plugins(), clashes()
    reasons = {name: "selected" for name in names}
    requires: dict[str, tuple[str, ...]] = {}
    pending = list(reasons)
    while pending:
        name = pending.pop(0)
        if name == CORE:
            raise UserError(f"'{CORE}' is the core's own defaults, not a plugin to select; drop --plugin {CORE}")
        if name not in installed:
            raise UserError(_not_installed(name, reasons[name], installed))
        if name in ambiguous:
            both = " and ".join(f"{info.distribution} {info.version}" for info in ambiguous[name])
            raise UserError(f"plugin {name!r} is registered by both {both}; uninstall all but one of them")
        try:
            manager.load_setuptools_entrypoints(GROUP, name=name)
        except Exception as error:
            info = installed[name]
            raise UserError(
                f"plugin {name!r} ({info.distribution} {info.version}) failed to load: "
                f"{type(error).__name__}: {error}; reinstall or fix it, or run without --plugin {name}"
            ) from None
        requires[name] = required_by(manager, name)
        for needed in requires[name]:
            if needed not in reasons:
                reasons[needed] = f"required by {name}"
                pending.append(needed)
    _refuse_cycles(requires)
    in_name_order(manager)
    verify(manager)
    return reasons


def registered(manager: pluggy.PluginManager, names: Iterable[str]) -> dict[str, str]:
    """For a manager given its plugins directly (the test kit's): each registered plugin with why it is there,
    refusing a name asked for that is not."""
    present = {name for name, _ in manager.list_name_plugin() if not is_core(name)}
    missing = sorted(set(names) - present)
    if missing:
        raise UserError(f"plugin {missing[0]!r} is not registered with this plugin manager; "
                        "register it (or a stand-in)")
    return {name: "selected" for name in sorted(present)}


def verify(manager: pluggy.PluginManager) -> None:
    """What `load` checks after importing: hook names and arguments, and options stage hooks cannot honour."""
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        raise UserError(f"plugin {manager.get_name(error.plugin)!r} is broken: {error}") from None
    for hook in hookspecs.STAGES:
        for impl in getattr(manager.hook, hook).get_hookimpls():
            used = [option for option in ORDER_OPTIONS if getattr(impl, option)]
            if used:
                raise UserError(
                    f"plugin {impl.plugin_name!r}: {hook} is marked {', '.join(used)}, which a stage hook cannot "
                    "honour (each plugin is asked alone, in a fixed order); remove it, or use a run event"
                )


def required_by(manager: pluggy.PluginManager, name: str) -> tuple[str, ...]:
    """The plugin's answer to ``mnist_trainer_requires``, checked to be entry-point names."""
    answer = ask(manager, name, "mnist_trainer_requires")
    if answer is None:
        return ()
    if isinstance(answer, str) or not all(isinstance(item, str) for item in answer):
        raise PluginError(name, "mnist_trainer_requires",
                          f"returned {answer!r}; return a tuple of plugin names, e.g. ('relu',)")
    return tuple(answer)


def ask(manager: pluggy.PluginManager, plugin: str, hook: str, **kwargs: Any) -> Any:
    """One plugin's answer to `hook` (through pluggy), or None; an exception in it names the plugin."""
    target = manager.get_plugin(plugin)
    caller = getattr(manager.hook, hook)
    if not any(impl.plugin is target for impl in caller.get_hookimpls()):
        return None
    others = [other for other in manager.get_plugins() if other is not target]
    try:
        answers = manager.subset_hook_caller(hook, others)(**kwargs)
    except UserError:
        raise
    except Exception as error:
        raise PluginError.from_exception(plugin, hook, error) from error
    return answers[0] if answers else None


def implementers(manager: pluggy.PluginManager, hook: str) -> list[str]:
    """Names of the plugins implementing `hook`, in name order, core last."""
    names = {impl.plugin_name for impl in getattr(manager.hook, hook).get_hookimpls()}
    return sorted(names, key=lambda name: (name == CORE, name))


def every(manager: pluggy.PluginManager, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Every plugin's non-None answer to `hook`, as ``(plugin name, answer)`` in name order, core last."""
    answers = [(name, ask(manager, name, hook, **kwargs)) for name in implementers(manager, hook)]
    return [(name, answer) for name, answer in answers if answer is not None]


def option_classes(manager: pluggy.PluginManager) -> dict[str, type]:
    """Each plugin's options class, by plugin name."""
    return dict(every(manager, "mnist_trainer_options"))


class Events:
    """Calls run events through ``manager.hook``; an exception inside a plugin's handler names it.

    In a process other than rank 0 (`leader` False) only handlers marked `every_rank` are called.
    Each event's caller is made once and kept until a plugin is attached or detached, so an
    event costs pluggy's call and nothing more; one nobody handles is not called at all.
    """

    def __init__(self, manager: pluggy.PluginManager, leader: bool = True):
        self.manager, self.leader = manager, leader
        self.callers: dict[str, Callable[..., Any] | None] = {}

    def serve(self, leader: bool) -> None:
        """Emit as rank 0 does (`leader`) or as the other processes do, from now on."""
        self.leader = leader
        self.callers.clear()

    def emit(self, event: str, **kwargs: Any) -> Any:
        caller = self.caller(event)
        if caller is None:
            return None
        try:
            return caller(**kwargs)
        except (UserError, KeyboardInterrupt):
            raise
        except BaseException as error:  # a plugin's sys.exit too: its failure, not the run's exit
            blamed = self.blame(error, event)
            if blamed is error:
                raise
            raise blamed from error

    def caller(self, event: str, every_rank: bool = False) -> Callable[..., Any] | None:
        """The callable that emits `event` in this process (`every_rank`: whatever the marks), or None when nobody
        handles it."""
        key = f"{event}:all" if every_rank else event
        if key not in self.callers:
            self.callers[key] = self._make(event, every_rank)
        return self.callers[key]

    def _make(self, event: str, every_rank: bool) -> Callable[..., Any] | None:
        hook = getattr(self.manager.hook, event)
        impls = hook.get_hookimpls()
        if not impls:
            return None
        if self.leader or every_rank:
            return hook
        skipped = [impl.plugin for impl in impls if not getattr(impl.function, hookspecs.EVERY_RANK, False)]
        if len(skipped) == len(impls):
            return None
        return self.manager.subset_hook_caller(event, skipped) if skipped else hook

    def blame(self, error: BaseException, event: str) -> BaseException:
        """`error` as the `PluginError` of the plugin whose `event` handler raised it; as it is when it is the
        core's."""
        if isinstance(error, UserError):
            return error
        culprit = _culprit(error, getattr(self.manager.hook, event).get_hookimpls())
        if culprit is None or is_core(culprit):
            return error
        return PluginError.from_exception(culprit, event, error)

    def listens(self, event: str) -> bool:
        return self.caller(event) is not None

    def listeners(self) -> dict[str, list[str]]:
        """Each plugin outside the core that handles run events, with the events it handles."""
        found: dict[str, list[str]] = {}
        for event in hookspecs.EVENTS:
            for name in implementers(self.manager, event):
                if not is_core(name):
                    found.setdefault(name, []).append(event.removeprefix(MODULE_PREFIX))
        return found

    @contextlib.contextmanager
    def attached(self, plugins: dict[str, Any]) -> Iterator[None]:
        """Register the core's built-in run-time plugins (record, table, progress) for one run."""
        for name, plugin in plugins.items():
            self.manager.register(plugin, name=f"{CORE}:{name}")
        self.callers.clear()
        try:
            yield
        finally:
            for plugin in plugins.values():
                self.manager.unregister(plugin)
            self.callers.clear()


def trace(manager: pluggy.PluginManager,
          write: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> Callable[[], None]:
    """Print every hook call: hook, the plugins it reached in call order, and the time it took. Returns the undo
    function."""
    started: list[float] = []

    def before(hook: str, impls, kwargs) -> None:
        started.append(time.perf_counter())

    def after(outcome, hook: str, impls, kwargs) -> None:
        milliseconds = (time.perf_counter() - started.pop()) * 1000
        failed = " (raised)" if outcome.exception is not None else ""
        write(f"trace: {hook} [{', '.join(impl.plugin_name for impl in reversed(impls)) or 'no plugin'}] "
              f"{milliseconds:.3f} ms{failed}")

    return manager.add_hookcall_monitoring(before, after)


def is_core(name: str) -> bool:
    """The core's defaults (``core``) and its built-in run-time plugins (``core:record``, ...)."""
    return name == CORE or name.startswith(f"{CORE}:")


def tracing_requested() -> bool:
    return os.environ.get("MNIST_TRAINER_TRACE", "") not in ("", "0")


def _culprit(error: BaseException, impls) -> str | None:
    """The plugin whose hook function raised: the innermost of theirs on the traceback.

    Innermost, because an exception raised in one handler is thrown back through every
    wrapper around it (the core's record writer among them) on its way out.
    """
    codes = {getattr(getattr(impl.function, "__func__", impl.function), "__code__", None): impl.plugin_name
             for impl in impls}
    culprit, frame = None, error.__traceback__
    while frame is not None:
        culprit = codes.get(frame.tb_frame.f_code, culprit)
        frame = frame.tb_next
    return culprit


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
