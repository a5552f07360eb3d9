"""What ``mnist-tune`` searches: ``--space NAME=VALUES`` texts, checked before any trial, and a trial's values as the
plugins, ``-o`` options and settings ``mnist-run`` is given (and as the ``mnist-run`` command that repeats it).

A NAME is a setting (``lr``, ``batch_size``), a plugin option (``dropout.p``) or a stage slot (``init``: which plugin
fills it, ``none`` for none). VALUES are a range, ``LOW..HIGH`` (``:log`` for a log scale; whole numbers for a whole-
number setting or option), or choices, ``A|B|C``. Everything that can be checked without training is checked here,
so a mistake is one line before the first trial.
"""

from __future__ import annotations

import difflib
import re
import shlex
from typing import Any, Sequence

import attrs
import click

from . import registry
from .build import select
from .errors import UserError
from .hookspecs import STAGES
from .options import build_options, parse_assignments
from .settings import declared

SPACE_HELP = "write NAME=LOW..HIGH (a range; add :log for a log scale) or NAME=A|B|C (choices)"
RANGE = re.compile(r"(?P<low>[^|]+?)\.\.(?P<high>[^|]+?)(?::(?P<log>log))?")
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
WHOLE = re.compile(r"[-+]?\d+")
NONE = "none"
SLOT_HOOKS = {stage.slot: hook for hook, stage in STAGES.items()}
FIXED = {  # settings every trial must share, and why
    "seed": "the seed is the same for every trial, so trials differ by what is searched alone",
    "val": "every trial is scored on the same validation split",
    "dataset": "every trial trains and is scored on the same data",
    "data_dir": "every trial trains and is scored on the same data",
    "device": "it does not change what is learnt; give --device",
    "checkpoint_every": "it does not change what is learnt; give --checkpoint-every",
}


@attrs.frozen
class Dimension:
    """One searched name: a `setting`, a plugin `option` or a `slot`; a range (`low`, `high`, `log`, `integer`) or
    `choices`. `text` is the ``--space`` text, as errors quote it."""

    name: str
    kind: str
    text: str
    choices: tuple = ()
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    integer: bool = False

    def suggest(self, trial) -> Any:
        """This dimension's value for an Optuna trial."""
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


def parse(texts: Sequence[str], assignments: Sequence[str] = (), given: Sequence[str] = ()) -> tuple[Dimension, ...]:
    """The ``--space`` texts as dimensions; settings checked here, plugin options and slots by `check`. `assignments`
    (``-o``) and `given` (settings fields given as flags) may not also be searched."""
    if not texts:
        raise UserError(f"give at least one --space to search, e.g. --space lr=1e-4..1e-1:log ({SPACE_HELP})")
    fixed_options = {f"{name}.{key}" for name, values in parse_assignments(assignments).items() for key in values}
    dimensions: list[Dimension] = []
    for text in texts:
        name, equals, values = (part.strip() for part in text.partition("="))
        if not (name and equals and values):
            raise UserError(f"--space {text!r}: {SPACE_HELP}, e.g. --space lr=1e-4..1e-1:log")
        dimension = _dimension(name, values, text)
        if any(known.name == dimension.name for known in dimensions):
            raise UserError(f"--space {text}: {dimension.name} is searched twice; give each name once")
        if dimension.name in fixed_options or dimension.name in given:
            flag = f"-o {dimension.name}=..." if dimension.kind == "option" else _flag(dimension.name)
            raise UserError(f"--space {text}: {dimension.name} is also fixed by {flag}; give one of them")
        dimensions.append(dimension)
    return tuple(dimensions)


def _flag(name: str) -> str:
    return next(field.metadata["flag"] for field in declared() if field.name == name)


def _dimension(name: str, values: str, text: str) -> Dimension:
    fields = {field.name: field for field in declared()}
    setting = name.replace("-", "_")
    if "." in name:
        return _shape(name, "option", values, text, numeric=True, integer=False)
    if setting in FIXED:
        raise UserError(f"--space {text}: {setting} cannot be searched: {FIXED[setting]}")
    if setting in fields:
        return _setting(fields[setting], values, text)
    if name in SLOT_HOOKS:
        return _shape(name, "slot", values, text, numeric=False, integer=False)
    names = [*(field for field in fields if field not in FIXED), *(slot for slot in SLOT_HOOKS if slot != "dataset")]
    near = difflib.get_close_matches(setting, names, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise UserError(f"--space {text}: {name!r} is neither a setting ({', '.join(n for n in names if n in fields)}), a "
                    f"plugin option (PLUGIN.KEY) nor a slot ({', '.join(n for n in names if n in SLOT_HOOKS)}){hint}")


def _setting(field: attrs.Attribute, values: str, text: str) -> Dimension:
    """A setting's dimension, every value checked as its flag checks it."""
    kind = field.metadata["kind"]
    numeric = kind in (int, (float, int))
    dimension = _shape(field.name, "setting", values, text, numeric=numeric, integer=kind is int)
    for value in dimension.choices or (dimension.low, dimension.high):
        try:
            field.metadata["type"].convert(str(value), None, None)
        except click.BadParameter as error:
            raise UserError(f"--space {text}: {field.metadata['flag']} {value}: {error.message}") from None
    return dimension


def _shape(name: str, kind: str, values: str, text: str, *, numeric: bool, integer: bool) -> Dimension:
    """The dimension `values` describe: a range (where `numeric` allows one) or choices."""
    if "|" in values or ".." not in values:
        choices = tuple(_value(part.strip()) for part in values.split("|"))
        if len(choices) < 2 or any(choice == "" for choice in choices):
            raise UserError(f"--space {text}: give two or more choices, or a range LOW..HIGH ({SPACE_HELP})")
        if len(set(map(str, choices))) < len(choices):
            raise UserError(f"--space {text}: a choice is given twice; give each once")
        return Dimension(name, kind, text, choices=choices)
    match = RANGE.fullmatch(values)
    if not numeric:
        raise UserError(f"--space {text}: {name} takes choices (A|B|...), not a range")
    if match is None or not (NUMBER.fullmatch(match["low"]) and NUMBER.fullmatch(match["high"])):
        raise UserError(f"--space {text}: cannot read the range; {SPACE_HELP}, e.g. {name}=0.1..0.5")
    low, high, log = _value(match["low"]), _value(match["high"]), match["log"] is not None
    if integer and not all(WHOLE.fullmatch(match[end]) for end in ("low", "high")):
        raise UserError(f"--space {text}: {name} is a whole number; give whole-number ends, e.g. {name}=1..5")
    if not low < high:
        raise UserError(f"--space {text}: the range is empty; give LOW below HIGH")
    if log and low <= 0:
        raise UserError(f"--space {text}: a log scale needs a range above 0")
    return Dimension(name, kind, text, low=low, high=high, log=log, integer=integer)


def _value(text: str) -> Any:
    """A choice or an end as Optuna keeps it: a number when it reads as one, else the text."""
    if WHOLE.fullmatch(text):
        return int(text)
    return float(text) if NUMBER.fullmatch(text) else text


def check(dimensions: Sequence[Dimension], plugins: Sequence[str], assignments: Sequence[str], fields: dict):
    """Load and compose what the trials may select, so that an unknown plugin or option, a plugin that does not fill
    its slot or a value an option refuses is one line now. Returns the dimensions (whole-number options marked) and
    the pipelines composed: the fixed plugins', then one per slot choice."""
    pipelines = [select(plugins, [*assignments], only_selected=True, **fields)[1]]
    for dimension in (dimension for dimension in dimensions if dimension.kind == "slot"):
        _free(dimension, pipelines[0], plugins)
        for choice in dimension.choices:
            pipeline = _compose(dimension, choice, plugins, assignments, fields)
            _fills(dimension, choice, pipeline)
            pipelines.append(pipeline)
    classes = {name: cls for pipeline in pipelines for name, cls in registry.option_classes(pipeline.manager).items()}
    selected = {name for pipeline in pipelines for name in pipeline.reasons}
    checked = tuple(_check_option(d, classes, selected) if d.kind == "option" else d for d in dimensions)
    for name, values in parse_assignments(assignments).items():
        if name not in selected:
            raise UserError(f"option -o {name}.{next(iter(values))}=... is for plugin {name!r}, which no trial "
                            f"selects; add --plugin {name}, or make it a choice of its slot")
    return checked, pipelines


def _compose(dimension: Dimension, choice: Any, plugins: Sequence[str], assignments: Sequence[str], fields: dict):
    """The pipeline of the fixed plugins with `choice` in the dimension's slot."""
    try:
        return select([*plugins, *([choice] if choice != NONE else [])], [*assignments], only_selected=True,
                      **fields)[1]
    except UserError as error:
        raise UserError(f"--space {dimension.text}: with {dimension.name}={choice}: {error.message}") from None


def _free(dimension: Dimension, pipeline, plugins: Sequence[str]) -> None:
    """No plugin given with ``-p`` fills the slot already (where it takes one plugin)."""
    taken = sorted(set(registry.implementers(pipeline.manager, SLOT_HOOKS[dimension.name])) & set(plugins))
    if taken and STAGES[SLOT_HOOKS[dimension.name]].exclusive:
        raise UserError(f"--space {dimension.text}: --plugin {taken[0]} already fills the {dimension.name} slot in "
                        f"every trial; drop --plugin {taken[0]} (or make it one of the choices)")


def _fills(dimension: Dimension, choice: Any, pipeline) -> None:
    if choice != NONE and choice not in registry.implementers(pipeline.manager, SLOT_HOOKS[dimension.name]):
        raise UserError(f"--space {dimension.text}: plugin {choice!r} does not fill the {dimension.name} slot; give "
                        f"plugins that do, or {NONE}")


def _check_option(dimension: Dimension, classes: dict, selected: set) -> Dimension:
    """A plugin option's dimension, checked: the plugin is selected in some trial, has the option, and accepts the
    values; a whole-number option is sampled in whole numbers."""
    plugin, _, key = dimension.name.partition(".")
    if plugin not in selected:
        raise UserError(f"--space {dimension.text}: plugin {plugin!r} is not selected in any trial; add --plugin "
                        f"{plugin}, or make it a choice of its slot (e.g. --space regularizer={plugin}|none)")
    fields = {field.name: field for field in attrs.fields(classes[plugin])} if plugin in classes else {}
    if key not in fields:
        raise UserError(f"--space {dimension.text}: {plugin} has no option {key!r}; its options: "
                        f"{', '.join(fields) or 'none'}")
    default = fields[key].default
    whole = type(default) is int
    if not dimension.choices and not (whole or type(default) is float):
        raise UserError(f"--space {dimension.text}: {dimension.name} takes choices (A|B|...), not a range")
    if not dimension.choices and whole and not all(isinstance(end, int) for end in (dimension.low, dimension.high)):
        raise UserError(f"--space {dimension.text}: {dimension.name} is a whole number; give whole-number ends")
    for value in dimension.choices or (dimension.low, dimension.high):
        try:
            build_options(plugin, classes[plugin], {key: str(value)})
        except UserError as error:
            raise UserError(f"--space {dimension.text}: {error.message}") from None
    return attrs.evolve(dimension, integer=whole and not dimension.choices)


def arguments(dimensions: Sequence[Dimension], params: dict, plugins: Sequence[str], assignments: Sequence[str],
              fields: dict) -> tuple[list[str], list[str], dict]:
    """A trial's `params` as ``mnist-run`` takes them: plugins, ``-o`` texts and the settings' fields."""
    plugins, assignments, fields = [*plugins], [*assignments], dict(fields)
    by_name = {field.name: field for field in declared()}
    for dimension in dimensions:
        value = params.get(dimension.name)
        if dimension.name not in params:
            continue
        if dimension.kind == "slot" and value != NONE:
            plugins.append(value)
        elif dimension.kind == "option":
            assignments.append(f"{dimension.name}={value}")
        elif dimension.kind == "setting":
            fields[dimension.name] = by_name[dimension.name].metadata["type"].convert(str(value), None, None)
    return plugins, assignments, fields


def command(plugins: Sequence[str], assignments: Sequence[str], fields: dict, selected: Sequence[str]) -> str:
    """The ``mnist-run`` command that trains what these arguments train: every setting away from its default, and
    the ``-o`` options of the `selected` plugins."""
    words = ["mnist-run"]
    for name in sorted(set(plugins)):
        words += ["--plugin", name]
    for text in assignments:
        if text.partition(".")[0] in selected:
            words += ["-o", text]
    for field in declared():
        value = fields.get(field.name, field.default)
        if value == field.default or value is None:
            continue
        if field.metadata["kind"] is bool:
            words.append(field.metadata["flag"])
        else:
            words += [field.metadata["flag"], ",".join(map(str, value)) if isinstance(value, tuple) else repr(value)
                      if isinstance(value, float) else str(value)]
    return shlex.join(words)
