"""The run's settings, declared once: the command line's flags, the record and every rebuild derive from `Settings`.

Each field says its flag, help, type and whether a resumed run may change it; `mnist-run`'s
options are made from those declarations, `to_record` writes the settings into
``config.json`` and ``model.pt``, and `from_record` reads them back with the same checks, so
there is one encoding. Plugin options go through the same round trip (see `options`).
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, TypeVar

import attrs
import click

from .errors import UserError

T = TypeVar("T")
SEED_MAX = 2**63 - 2


def parse_hidden(value: Any) -> tuple[int, ...]:
    """``"256,256"`` (or a sequence, as a record holds it) -> ``(256, 256)``; every width a positive integer."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        widths = tuple(int(part) if isinstance(part, str) or type(part) is int else int("?") for part in parts)
    except (TypeError, ValueError):
        widths = ()
    if not widths or min(widths) < 1:
        raise UserError(f"--hidden {value!r}: give comma-separated positive widths, e.g. --hidden 256,256")
    return widths


class _Finite(click.ParamType):
    """A finite number above 0, or (when `optional`) none."""

    name = "number"

    def convert(self, value: Any, param, ctx) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
            self.fail(f"{value!r} is not a finite number above 0", param, ctx)
        return number


class _Holdout(click.ParamType):
    """A count of images (a whole number, 1 or more) or a fraction of them (above 0, below 1)."""

    name = "N|FRACTION"

    def convert(self, value: Any, param, ctx) -> int | float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a count of images nor a fraction", param, ctx)
        if (isinstance(value, bool) or not math.isfinite(number) or number <= 0
                or (number >= 1 and number != int(number))):
            self.fail(f"{value!r}: give a whole number of images (1 or more) or a fraction (above 0, below 1)",
                      param, ctx)
        return int(number) if number >= 1 else number


class _Widths(click.ParamType):
    name = "W,W,..."

    def convert(self, value: Any, param, ctx) -> tuple[int, ...]:
        try:
            return parse_hidden(value)
        except UserError as error:
            self.fail(error.message.split(": ", 1)[1], param, ctx)


def setting(default: Any, *, flag: str, kind: type | tuple, type: click.ParamType | None = None, help: str,
            resumable: bool = False, optional: bool = False, show: str | None = None) -> Any:
    """A field of `Settings` with its command-line flag: `kind` is what the record holds (checked on reading it back),
    `type` parses and checks the value (the flag's and the record's alike); `resumable` lets ``--resume`` change it."""
    metadata = {"flag": flag, "kind": kind, "type": type, "help": help, "resumable": resumable, "optional": optional,
                "show": show}
    return attrs.field(default=default, metadata=metadata)


@attrs.frozen
class Settings:
    """Everything that decides a run; built once from the command line (or a record), never mutated.

    `plugins` are the selected plugins' names, `plugin_options` each plugin's options instance.
    """

    plugins: tuple[str, ...] = attrs.field(default=(), converter=lambda names: tuple(sorted(set(names))))
    plugin_options: tuple[tuple[str, Any], ...] = ()
    epochs: int = setting(15, flag="--epochs", kind=int, type=click.IntRange(min=1), resumable=True,
                          help="Epochs to train (with --resume: a larger number extends a finished run).")
    batch_size: int = setting(100, flag="--batch-size", kind=int, type=click.IntRange(min=1),
                              help="Mini-batch size (the global batch under torchrun).")
    lr: float | None = setting(None, flag="--lr", kind=(float, int), type=_Finite(), optional=True,
                               show="the optimizer's conventional rate",
                               help="Learning rate of whichever optimizer is selected.")
    hidden: tuple[int, ...] | None = setting(None, flag="--hidden", kind=list, type=_Widths(), optional=True,
                                             show="256,256",
                                             help="Hidden layer widths of the core's MLP; "
                                                  "a model plugin has its own options.")
    seed: int = setting(777, flag="--seed", kind=int, type=click.IntRange(0, SEED_MAX),
                        help="Seed of every random draw.")
    device: str = setting("auto", flag="--device", kind=str, type=click.STRING, resumable=True,
                          help="auto, cpu, cuda or cuda:N (with --resume: where to go on; "
                               "the checkpoint loads anywhere).")
    dataset: str = setting("auto", flag="--dataset", kind=str, type=click.STRING,
                           help="auto, mnist, mnist-sample, fashion-mnist, synthetic:N, or an installed dataset "
                                "plugin's name; auto uses MNIST when cached or downloadable, else mnist-sample.")
    data_dir: str | None = setting(None, flag="--data-dir", kind=str, type=click.Path(file_okay=False), optional=True,
                                   show="$MNIST_TRAINER_DATA or ~/.cache/mnist-trainer",
                                   help="Folder with MNIST-format IDX files, "
                                        "or where mnist/fashion-mnist are downloaded.")
    val: int | float | None = setting(None, flag="--val", kind=(int, float), type=_Holdout(), optional=True,
                                      show="none",
                                      help="Hold out N training images (or a fraction, e.g. 0.1) as a "
                                           "validation split, chosen by --seed: val_* columns each epoch, "
                                           "for early stopping and tuning.")
    eval_train: bool = setting(False, flag="--eval-train", kind=bool, type=click.BOOL,
                               help="Also evaluate on the training split each epoch.")
    checkpoint_every: int = setting(1, flag="--checkpoint-every", kind=int, type=click.IntRange(min=1),
                                    help="Epochs between resumable checkpoints (checkpoint.pt in the run folder).")

    def options(self, cls: type[T]) -> T:
        """The options instance of class `cls` (its defaults when none were given)."""
        for _, value in self.plugin_options:
            if type(value) is cls:
                return value
        return cls()

    def options_dict(self) -> dict[str, dict[str, Any]]:
        return {name: options_record(value) for name, value in self.plugin_options}

    def to_record(self) -> dict[str, Any]:
        """The settings as ``config.json`` and ``model.pt`` hold them: plain JSON values, plugin options by plugin."""
        record: dict[str, Any] = {"plugins": list(self.plugins), "options": self.options_dict()}
        for field in declared():
            value = getattr(self, field.name)
            record[field.name] = list(value) if isinstance(value, tuple) else value
        return record


def options_record(options: Any) -> dict[str, Any]:
    """A plugin's options as the run record holds them: JSON values (a tuple becomes a list)."""
    return json.loads(json.dumps(attrs.asdict(options, recurse=False), default=str))


def declared() -> list[attrs.Attribute]:
    """The fields a flag sets, in the order ``--help`` lists them."""
    return [field for field in attrs.fields(Settings) if "flag" in field.metadata]


def convert(field: attrs.Attribute, value: Any, where: str) -> Any:
    """`value` for `field` as its flag's type checks it, from the record's JSON; a one-line `UserError` naming
    `where`."""
    meta = field.metadata
    if value is None and meta["optional"]:
        return None
    kind = meta["kind"]
    if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
        raise UserError(f"{where} is {value!r}, which is not what mnist-trainer records there; the record is damaged")
    try:
        return meta["type"].convert(value, None, None)
    except click.BadParameter as error:
        raise UserError(f"{where} is {value!r}: {error.message}; the record is damaged") from None


def from_record(record: Any,
                where: str = "settings") -> tuple[tuple[str, ...], dict[str, dict[str, Any]], dict[str, Any]]:
    """A record's settings, checked field by field: the plugin names, their raw options and the other fields."""
    if not isinstance(record, Mapping):
        raise UserError(f"{where} is {record!r}, not the settings of a run; the record is damaged")
    plugins, options = record.get("plugins"), record.get("options")
    if not (isinstance(plugins, list) and all(isinstance(name, str) for name in plugins)):
        raise UserError(f"{where}.plugins is {plugins!r}, not a list of plugin names; the record is damaged")
    if not (isinstance(options, Mapping) and all(isinstance(values, Mapping) for values in options.values())):
        raise UserError(f"{where}.options is {options!r}, not each plugin's options; the record is damaged")
    fields = {}
    for field in declared():
        if field.name not in record:
            raise UserError(f"{where}.{field.name} is missing; the record is damaged")
        fields[field.name] = convert(field, record[field.name], f"{where}.{field.name}")
    return tuple(plugins), {name: dict(values) for name, values in options.items()}, fields


def flag_of(name: str) -> str:
    return attrs.fields_dict(Settings)[name].metadata["flag"]

