"""Reading run and comparison records back for ``mnist-plot`` and a comparison's summary, trusting nothing in them.

A record may be half-written, copied, moved, edited by hand or not a record at all: every
problem is one line naming the file and what is wrong. Values stay as the record holds them
(non-finite floats are the strings ``"nan"``, ``"inf"``, ``"-inf"``: `records.to_json`);
`number` reads one as a float.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from .errors import UserError
from .records import CONFIG, METRICS

COMPARISON = "comparison.json"
Seeds = list[list[dict]]  # one arm's epoch rows, one list per seed


def number(value: Any) -> float | None:
    """A recorded value as a float: a number, or the strings a non-finite float is recorded as; else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if value in ("nan", "inf", "-inf", "Infinity", "-Infinity", "NaN"):
        return float(value)
    return None


def finite(value: Any) -> float | None:
    """`number`, or None when it is not finite (a point a curve or a mean cannot use)."""
    converted = number(value)
    return converted if converted is not None and math.isfinite(converted) else None


def read_json(file: Path, what: str) -> dict:
    """A JSON object from `file`, or one line naming the file and why it is not `what`."""
    try:
        value = json.loads(file.read_text())
    except FileNotFoundError:
        raise UserError(f"{file} is missing: the folder holds no {what}; give the folder of an intact record") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{file} is not readable JSON ({getattr(error, 'strerror', None) or error}): it is damaged; "
                        "restore it from a copy") from None
    if not isinstance(value, dict):
        raise UserError(f"{file} holds {type(value).__name__}, not the {what} mnist-trainer writes; restore it from "
                        "a copy")
    return value


def epochs(folder: Path) -> list[dict]:
    """A run's epoch rows from its metrics.jsonl, each checked to be a row with an epoch number."""
    file = Path(folder) / METRICS
    try:
        lines = file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {file}: {getattr(error, 'strerror', None) or error}; give the folder of an "
                        "intact mnist-run record") from None
    rows = []
    for index, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError as error:
            raise UserError(f"{file} line {index} is not JSON ({error}): half-written or damaged; restore the record, "
                            "or delete that line to use the epochs before it") from None
        if not isinstance(row, dict) or not isinstance(row.get("stage"), str):
            raise UserError(f"{file} line {index} is not a row mnist-trainer writes; restore the record")
        if row["stage"] == "epoch":
            if not isinstance(row.get("epoch"), int) or isinstance(row["epoch"], bool):
                raise UserError(f"{file} line {index} has no epoch number; restore the record")
            rows.append(row)
    return rows


def plugins_of(folder: Path) -> str:
    """A run's plugin set as an arm is named (``relu+xavier``; ``core`` for none), from its config.json."""
    file = Path(folder) / CONFIG
    settings = read_json(file, "run record (config.json)").get("settings")
    plugins = settings.get("plugins") if isinstance(settings, dict) else None
    if not isinstance(plugins, list) or not all(isinstance(name, str) for name in plugins):
        raise UserError(f"{file} has no list of plugins under settings: it is damaged; restore it from a copy")
    return "+".join(plugins) or "core"


def comparison_runs(folder: Path) -> list[tuple[str, list[Path]]]:
    """Each arm of the comparison in `folder` with its runs' folders (those that trained), from comparison.json.

    A run's ``out`` is relative to the comparison's folder, so a moved or copied comparison still reads.
    """
    file = Path(folder) / COMPARISON
    arms = read_json(file, "comparison").get("arms")
    if not isinstance(arms, list):
        raise UserError(f"{file} has no list of arms: it is damaged; restore it, or mnist-compare --resume {folder}")
    found = []
    for index, arm in enumerate(arms):
        if not _is_arm(arm):
            raise UserError(f"{file}: arms[{index}] is not an arm with a name and runs: it is damaged; restore it")
        paths = [_run_folder(folder, run["out"]) for run in arm["runs"] if run.get("status") != "pending"]
        found.append((arm["name"], paths))
    return found


def _is_arm(arm: Any) -> bool:
    return (isinstance(arm, dict) and isinstance(arm.get("name"), str) and isinstance(arm.get("runs"), list)
            and all(isinstance(run, dict) and isinstance(run.get("out"), str) for run in arm["runs"]))


def _run_folder(folder: Path, out: str) -> Path:
    path = Path(folder) / out
    if not path.is_dir() and Path(out).is_dir():  # written before runs were recorded relative to the comparison
        path = Path(out)
    if not path.is_dir():
        raise UserError(f"{Path(folder) / COMPARISON} names the run {out}, which is not in {folder}; copy the "
                        "comparison with its run folders")
    return path


def load(paths: list[Path]) -> dict[str, Seeds]:
    """Every record's arms with their per-seed epoch rows, for mnist-plot: a comparison gives its arms, a run one.

    Two arms of one name (the same plugins in two runs, say) are told apart by their record's folder.
    """
    entries: list[tuple[str, Path, Seeds]] = []
    for path in map(Path, paths):
        if (path / COMPARISON).exists():
            entries += [(name, path, [epochs(run) for run in runs]) for name, runs in comparison_runs(path)]
        elif (path / METRICS).exists() or (path / CONFIG).exists():
            entries.append((plugins_of(path), path, [epochs(path)]))
        else:
            raise UserError(f"{path} is neither a run ({METRICS}) nor a comparison ({COMPARISON}); give an mnist-run "
                            "or mnist-compare folder")
    return dict(zip(unique_labels([(name, path) for name, path, _ in entries]), (seeds for _, _, seeds in entries)))


def unique_labels(entries: list[tuple[str, Path]]) -> list[str]:
    """Each entry's name, with its folder's name (or whole path, or a count) added where names would be the same."""
    labels = [name for name, _ in entries]
    for widen in (lambda name, path: f"{name} ({path.name})", lambda name, path: f"{name} ({path})"):
        repeated = {label for label, count in Counter(labels).items() if count > 1}
        labels = [widen(name, path) if label in repeated else label for label, (name, path) in zip(labels, entries)]
    seen: Counter = Counter()
    unique = []
    for label in labels:
        seen[label] += 1
        unique.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return unique
