"""Plugin options: declaring them, parsing ``-o NAME.KEY=VALUE``, and the round trip through the run record.

A plugin's options are a frozen attrs class. Values arrive as text from ``-o`` and as JSON
values from a record; both pass through the same converters and validators, and every set
of options is sent through the record and back when the pipeline is composed, so one that
would not resume is refused before any folder exists.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence, TypeVar

import attrs

from .errors import UserError
from .hookspecs import hookimpl
from .settings import options_record

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
    """Instantiate plugin `name`'s options class from `values` (text or recorded values), with errors a user can act on.

    Whatever a converter or validator raises is one line naming the plugin and the option.
    """
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
    except Exception as combined:
        for key, value in values.items():  # name the one value at fault, when one alone is
            try:
                cls(**{key: value})
            except Exception as error:
                help_text = fields[key].metadata.get("help", "see the plugin's README")
                raise UserError(f"invalid value for -o {name}.{key}={value}: {_said(error)} "
                                f"(accepted: {help_text})") from None
        raise UserError(f"invalid options for {name}: {_said(combined)}") from None


def round_trip(name: str, cls: type, options: Any) -> None:
    """Refuse options that would not come back equal from the record, naming the plugin and the option.

    A resumed run, ``mnist-eval`` and ``mnist-compare`` rebuild every plugin's options from the
    record; one whose converter cannot read back what it returned would fail only then.
    """
    record = options_record(options)
    try:
        again = build_options(name, cls, record)
    except UserError as error:
        raise UserError(f"plugin {name!r}'s options do not survive the run record: {error.message}; its converters "
                        "must accept the values they return, as the record holds them (JSON)") from None
    for field in attrs.fields(cls):
        if getattr(again, field.name) != getattr(options, field.name):
            raise UserError(f"plugin {name!r}: option {name}.{field.name}={getattr(options, field.name)!r} comes "
                            f"back from the run record as {getattr(again, field.name)!r}; its converter must give the "
                            "same value for what it returned (as JSON)")


def describe_fields(name: str, fields) -> str:
    return ", ".join(f"{name}.{f.name} ({f.metadata.get('help', 'see README')})" for f in fields)


def _said(error: BaseException) -> str:
    return str(error) if isinstance(error, (TypeError, ValueError)) else f"{type(error).__name__}: {error}"
