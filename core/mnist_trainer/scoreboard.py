"""What a comparison reports: each run's final and best value of every metric, each arm's mean and spread over its
seeds and its status, the printed table and ``comparison.csv``.

Every metric the runs recorded counts, a plugin's too (``top2`` gives ``final_test_top2`` and
``best_test_top2``); best is the largest value, or the smallest for a metric whose name holds
``loss``. Seeds may end at different epochs (a plugin stopped one, another diverged): each run's
final value is that of its own last epoch.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Callable

from . import records
from .errors import UserError
from .readback import finite, number

FIRST = ("accuracy", "loss")  # the core's metrics lead the table; plugins' follow in the order the rows hold them


def run_result(rows: list[dict]) -> dict[str, Any]:
    """A run's numbers from its epoch rows: per test metric its final and best value, and the mean epoch seconds."""
    result: dict[str, Any] = {"epochs": len(rows)}
    for metric in _ordered(key.removeprefix("test_") for row in rows for key in row if key.startswith("test_")):
        values = [number(row.get(f"test_{metric}")) for row in rows]
        if values[-1] is not None:
            result[f"final_test_{metric}"] = values[-1]
        usable = [value for value in values if value is not None and math.isfinite(value)]
        if usable:
            result[f"best_test_{metric}"] = (min if "loss" in metric else max)(usable)
    seconds = [value for row in rows if (value := finite(row.get("seconds"))) is not None]
    if seconds:
        result["seconds_per_epoch"] = sum(seconds) / len(seconds)
    return result


def _ordered(names) -> list[str]:
    """Each name once, the core's metrics first, the others in the order first seen."""
    unique = list(dict.fromkeys(names))
    return sorted(unique, key=lambda name: FIRST.index(name) if name in FIRST else len(FIRST))


def columns(runs: list[dict]) -> list[str]:
    """The columns any of `runs` has, in the table's order: final and best of each metric, seconds, scored metrics."""
    present = {key for run in runs for key in run}
    tested = _ordered(key.split("_test_", 1)[1] for key in present if key.startswith(("final_test_", "best_test_")))
    scored = _ordered(key.removeprefix("scored_") for key in present if key.startswith("scored_"))
    order = [f"{kind}_test_{metric}" for metric in tested for kind in ("final", "best")]
    order += ["seconds_per_epoch", *(f"scored_{metric}" for metric in scored)]
    return [column for column in order if column in present]


def spread(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Per column, the mean and (population) standard deviation over the runs that have it."""
    found = {}
    for column in columns(runs):
        values = [run[column] for run in runs if column in run]
        mean = sum(values) / len(values)
        found[column] = {"mean": mean, "std": math.sqrt(sum((value - mean) ** 2 for value in values) / len(values))}
    return found


def status(runs: list[dict]) -> str:
    """An arm's status: its runs' one status, or each seed's where they differ (``777 completed, 778 diverged``)."""
    statuses = {run["status"] for run in runs}
    return statuses.pop() if len(statuses) == 1 else ", ".join(f"{run['seed']} {run['status']}" for run in runs)


def table(comparison: dict) -> list[str]:
    """The printed table: one row per arm, mean ± standard deviation over seeds, and the arm's status; then a line
    for each run that did not complete, with its reason."""
    arms = comparison["arms"]
    names = columns(arms)
    rows = [["arm", *(name.replace("_", " ") for name in names), "status"]]
    rows += [[arm["name"], *(_cell(arm.get(name)) for name in names), arm["status"]] for arm in arms]
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    lines = [f"{comparison['dataset']}, seeds {', '.join(map(str, comparison['seeds']))}"]
    for row in rows:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:-1])), row[-1]]
        lines.append("  ".join(cells))
    lines += [f"{arm['name']}, seed {run['seed']}: {run['status']}: {run['reason']}"
              for arm in arms for run in arm["runs"] if run["status"] not in ("completed", "pending")]
    return lines


def _cell(value: dict | None) -> str:
    return f"{value['mean']:.4f} ± {value['std']:.4f}" if value else ""


def write(folder: Path, comparison: dict, with_csv: bool = True) -> None:
    """``comparison.json`` (and ``comparison.csv``), each written atomically; a failure is one line saying the arms'
    records are intact and how to write these again."""
    _write_file(folder, "comparison.json", lambda file: file.write(records.to_json(comparison, indent=2)))
    if not with_csv:
        return
    names = columns(comparison["arms"])

    def rows(file) -> None:
        writer = csv.writer(file)
        writer.writerow(["arm", "plugins", "status", *(f"{name}_{stat}" for name in names for stat in ("mean", "std"))])
        for arm in comparison["arms"]:
            writer.writerow([arm["name"], "+".join(arm["plugins"]) or "core", arm["status"],
                             *(arm[name][stat] if name in arm else "" for name in names for stat in ("mean", "std"))])

    _write_file(folder, "comparison.csv", rows)


def _write_file(folder: Path, name: str, write: Callable) -> None:
    try:
        records.atomic_write(folder / name, write)
    except OSError as error:
        raise UserError(f"cannot write {folder / name}: {error.strerror or error}; the arms' records are intact: free "
                        f"some space (or move what is in the way), then mnist-compare --resume {folder} writes it"
                        ) from None
