"""What ``mnist-compare`` is asked to train: its arms (plugin sets, each with its own options) and its seeds.

Parsed and checked before anything is loaded, so a mistake is one line naming the arm or
the seed before any data or training time is spent.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import attrs

from .errors import UserError
from .settings import SEED_MAX

MAX_SEEDS = 1000
ARM_HELP = "an arm is plugins joined by +, each with options in brackets if it likes, e.g. relu+sgd[momentum=0.9]"
OPTION_START = re.compile(r",(?=\s*[\w.-]+\s*=)")  # a comma that starts key=value: values may hold commas (32,64)
PART = re.compile(r"([^\[\]]+?)\s*(?:\[(.*)\])?", re.DOTALL)


@attrs.frozen
class Arm:
    """One plugin set to train: ``relu+sgd[momentum=0.9]``; ``core`` is no plugin at all.

    `name` is the text as given (``#2`` added to a repeated one), `plugins` include ``-p``'s,
    `options` are the arm's own (``{"sgd": {"momentum": "0.9"}}``) and `folder` names its runs' folder.
    """

    name: str
    plugins: tuple[str, ...]
    options: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)
    folder: str = ""

    def assignments(self, given: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
        """``-o``'s options (`given`) with the arm's own over them: an arm's option wins for that arm."""
        merged = {name: dict(values) for name, values in given.items()}
        for name, values in self.options.items():
            merged.setdefault(name, {}).update(values)
        return merged


def parse_arms(texts: Sequence[str], extra: Sequence[str] = ()) -> list[Arm]:
    """Each ARM text as an `Arm`, with the ``-p`` plugins (`extra`) added; a repeated arm gets ``#2``, ``#3``."""
    if not texts:
        raise UserError(f"give at least one arm to compare, e.g. mnist-compare core relu ({ARM_HELP})")
    arms: list[Arm] = []
    folders: set[str] = set()
    for text in texts:
        plugins, options = _parse_arm(text)
        name, count = text, 1
        while any(arm.name == name for arm in arms):
            count += 1
            name = f"{text}#{count}"
        folder = _folder(name, folders)
        folders.add(folder)
        arms.append(Arm(name, tuple(sorted(set(plugins) | set(extra))), options, folder))
    return arms


def _parse_arm(text: str) -> tuple[tuple[str, ...], dict[str, dict[str, str]]]:
    if text == "core":
        return (), {}
    plugins, options = [], {}
    for part in _split(text):
        match = PART.fullmatch(part)
        if not part:
            raise UserError(f"arm {text!r} has an empty plugin name; {ARM_HELP}")
        if match is None:
            raise UserError(f"arm {text!r} is malformed at {part!r}; {ARM_HELP}")
        name, inside = match.group(1).strip(), match.group(2)
        plugins.append(name)
        if inside is not None:
            options[name] = _arm_options(text, name, inside, options.get(name, {}))
    return tuple(plugins), options


def _split(text: str) -> list[str]:
    """`text` split at each ``+`` outside brackets; unbalanced brackets are refused."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            break
        if char == "+" and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    if depth != 0:
        raise UserError(f"arm {text!r} has unbalanced or nested brackets; {ARM_HELP}")
    return [*parts, text[start:].strip()]


def _arm_options(arm: str, plugin: str, inside: str, earlier: Mapping[str, str]) -> dict[str, str]:
    """``momentum=0.9,nesterov=true`` for `plugin` -> ``{"momentum": "0.9", "nesterov": "true"}``, each key once."""
    values = dict(earlier)
    for assignment in OPTION_START.split(inside):
        key, equals, value = (part.strip() for part in assignment.partition("="))
        if not (key and equals):
            raise UserError(f"arm {arm!r}: cannot read {plugin}[{inside}]; write {plugin}[KEY=VALUE,KEY=VALUE], "
                            "e.g. sgd[momentum=0.9,nesterov=true]")
        if key in values:
            raise UserError(f"arm {arm!r} gives {plugin}'s option {key} twice; give each option once")
        values[key] = value
    return values


def _folder(name: str, taken: set[str]) -> str:
    """A folder name for the arm's runs: its name with characters a shell or file system would trip on replaced."""
    base = re.sub(r"[^A-Za-z0-9._+=#-]+", "_", name).strip("._") or "arm"
    folder, count = base, 1
    while folder in taken:
        count += 1
        folder = f"{base}#{count}"
    return folder


def parse_seeds(text: str, first: int) -> list[int]:
    """``777,1,2`` -> those seeds; ``3`` -> three seeds from `first` (``--seed``)."""
    parts = [part.strip() for part in text.split(",")]
    if not all(re.fullmatch(r"\d{1,4000}", part) for part in parts):  # int() refuses more digits than that
        raise UserError(f"--seeds {text!r}: give a count (3) or comma-separated seeds (777,1,2)")
    if len(parts) > 1:
        return check_seeds([int(part) for part in parts])
    count = int(parts[0])
    if not 1 <= count <= MAX_SEEDS:
        raise UserError(f"--seeds {text}: a count is 1 to {MAX_SEEDS}; for one particular seed S give --seeds 1 "
                        "--seed S, or list seeds with commas (777,1,2)")
    if first + count - 1 > SEED_MAX:
        raise UserError(f"--seeds {count} from --seed {first} would pass {SEED_MAX}, the largest seed; give a "
                        "smaller --seed or list the seeds")
    return list(range(first, first + count))


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """Every seed in ``--seed``'s range (0 to 2**63 - 2), each once."""
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
            raise UserError(f"--seeds: seed {seed} is not a whole number from 0 to {SEED_MAX} (as --seed takes)")
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise UserError(f"--seeds: seed {repeated[0]} is given twice; give each seed once")
    if not seeds:
        raise UserError("--seeds: no seed given; give a count (3) or comma-separated seeds (777,1,2)")
    return list(seeds)
