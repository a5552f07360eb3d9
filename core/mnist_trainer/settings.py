"""The run's frozen settings, and parsing of ``-o NAME.KEY=VALUE`` into plugin options."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence, TypeVar

import attrs

from .errors import UserError
from .hookspecs import hookimpl

T = TypeVar("T")
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def option(default: Any, *, help: str, converter: Callable | None = None, validator=None):
    """A plugin option field: `help` says the accepted values and appears in errors."""
    return attrs.field(default=default, converter=converter, validator=validator, metadata={"help": help})


def choice(*values: str) -> Callable[[Any], str]:
    """Converter accepting one of `values`; its error lists them."""

    def convert(value: Any) -> str:
        text = str(value)
        if text not in values:
            raise ValueError(f"{text!r} is not one of {', '.join(values)}")
        return text

    return convert


def number(value: Any) -> float:
    """Converter to a finite float: ``nan`` and ``inf`` are refused, as no option means them."""
    converted = float(value)
    if not math.isfinite(converted):
        raise ValueError(f"{value!r} is not a finite number")
    return converted


def boolean(value: Any) -> bool:
    """Converter accepting true/false, yes/no, on/off or 1/0 (any case), and bools."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE + FALSE:
        return text in TRUE
    raise ValueError(f"{value!r} is not one of true, false (or yes/no, on/off, 1/0)")


def options_hook(cls: type) -> Callable[[], type]:
    """The whole ``mnist_trainer_options`` hook in one line: ``mnist_trainer_options = options_hook(MyOptions)``.

    Stage hooks then receive the instance as their `options` argument.
    """
    return hookimpl(specname="mnist_trainer_options")(lambda: cls)


@attrs.frozen
class Settings:
    """Everything that decides a run; built once from the command line, never mutated."""

    plugins: tuple[str, ...] = ()
    plugin_options: tuple[tuple[str, Any], ...] = ()
    epochs: int = 15
    batch_size: int = 100
    lr: float = 0.001
    hidden: tuple[int, ...] | None = None  # the core MLP's widths; None: its default, 256,256
    seed: int = 777
    device: str = "auto"
    dataset: str = "auto"
    data_dir: str | None = None
    eval_train: bool = False
    checkpoint_every: int = 1  # epochs between resumable checkpoints

    def options(self, cls: type[T]) -> T:
        """The options instance of class `cls` (its defaults when none were given)."""
        for _, value in self.plugin_options:
            if type(value) is cls:
                return value
        return cls()

    def options_dict(self) -> dict[str, dict[str, Any]]:
        return {name: attrs.asdict(value) for name, value in self.plugin_options}


def parse_assignments(texts: Sequence[str]) -> dict[str, dict[str, str]]:
    """Split each ``NAME.KEY=VALUE`` into ``{NAME: {KEY: VALUE}}``."""
    parsed: dict[str, dict[str, str]] = {}
    for text in texts:
        target, eq, value = text.partition("=")
        name, dot, key = target.partition(".")
        if not (eq and dot and name and key):
            raise UserError(f"malformed option -o {text!r}: write -o NAME.KEY=VALUE, e.g. -o relu.negative_slope=0.01")
        name, key = name.strip(), key.strip()
        if key in parsed.get(name, {}):
            raise UserError(f"-o {name}.{key} is given twice; give each option once")
        parsed.setdefault(name, {})[key] = value.strip()
    return parsed


def build_options(name: str, cls: type[T] | None, values: Mapping[str, Any]) -> T | None:
    """Instantiate plugin `name`'s options class from `values`, with errors a user can act on."""
    if cls is None:
        if values:
            raise UserError(f"plugin {name!r} takes no options (got -o {name}.{next(iter(values))}=...)")
        return None
    fields = {field.name: field for field in attrs.fields(cls)}
    for key in values:
        if key not in fields:
            raise UserError(f"unknown option {name}.{key}; {name} accepts: {describe_fields(name, fields.values())}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as combined:
        for key, value in values.items():  # name the one value at fault, when one alone is
            try:
                cls(**{key: value})
            except (TypeError, ValueError) as error:
                help_text = fields[key].metadata.get("help", "see the plugin's README")
                raise UserError(f"invalid value for -o {name}.{key}={value}: {error} (accepted: {help_text})") from None
        raise UserError(f"invalid options for {name}: {combined}") from None


def describe_fields(name: str, fields) -> str:
    return ", ".join(f"{name}.{f.name} ({f.metadata.get('help', 'see README')})" for f in fields)


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"256,256"`` -> ``(256, 256)``; every width a positive integer."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise UserError(f"--hidden {text!r}: give comma-separated positive widths, e.g. --hidden 256,256")
    return widths
