"""The exceptions that end a run with one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import click


class UserError(click.ClickException):
    """Bad input, a missing file, an impossible request: said in one line, never a traceback."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # a value holding a newline must not make two lines


def one_line(error: BaseException) -> str:
    """An exception as the one line a record or another process gives: a `UserError`'s message, else ``Type: text``."""
    if isinstance(error, click.ClickException):
        return error.message
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class PluginError(UserError):
    """A plugin's mistake, named with the plugin and the hook; the original exception is the ``__cause__``.

    The command prints one line; ``--traceback`` (or ``MNIST_TRAINER_DEBUG=1``) also shows the
    cause's traceback, for the plugin's author.
    """

    def __init__(self, plugin: str, hook: str, problem: str):
        super().__init__(f"plugin {plugin!r} failed in {hook}: {problem}")
        self.plugin, self.hook = plugin, hook

    @classmethod
    def from_exception(cls, plugin: str, hook: str, error: BaseException) -> "PluginError":
        detail = error.message if isinstance(error, click.ClickException) else str(error)
        return cls(plugin, hook, f"{type(error).__name__}: {detail}" if detail else type(error).__name__)
