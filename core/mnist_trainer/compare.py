"""Plugin sets trained side by side on the same data, seeds and settings: what ``mnist-compare`` does.

Every arm is selected (and so checked) before anything trains; the data is loaded once;
each arm and seed is an ordinary run record in the comparison's folder. With one seed,
every arm starts from the same generator state and sees the same mini-batches, so two
arms differ only by their plugins.
"""

from __future__ import annotations

import csv
import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import attrs

from .build import load_data, select
from .devices import resolve_device
from .errors import UserError
from .options import parse_assignments
from .readback import load
from .records import METRICS, default_out, to_json
from .resume import evaluate_run
from .session import Output, train

COLUMNS = ("final_test_accuracy", "best_test_accuracy", "final_test_loss", "seconds_per_epoch", "scored_accuracy")
PLOT_HINT = "pip install 'mnist-trainer[plot]' (matplotlib) for the plots"


@attrs.frozen
class Arm:
    """One plugin set to train: ``relu+xavier``; ``core`` is no plugin at all."""

    name: str
    plugins: tuple[str, ...]


def parse_arms(texts: Sequence[str], extra: Sequence[str] = ()) -> list[Arm]:
    """``relu+xavier`` -> Arm("relu+xavier", ("relu", "xavier", *extra)); a repeated arm gets ``#2``, ``#3``."""
    if not texts:
        raise UserError("give at least one arm to compare, e.g. mnist-compare core relu (an arm is plugins joined by +)")
    arms: list[Arm] = []
    for text in texts:
        plugins = () if text == "core" else tuple(part for part in text.split("+"))
        if not all(plugins):
            raise UserError(f"arm {text!r} has an empty plugin name; join plugin names with +, e.g. relu+xavier")
        name, count = text, sum(arm.name.split("#")[0] == text for arm in arms)
        arms.append(Arm(f"{name}#{count + 1}" if count else name, tuple(sorted(set(plugins) | set(extra)))))
    return arms


def parse_seeds(text: str, first: int) -> list[int]:
    """``777,1,2`` -> those seeds; ``3`` -> three seeds from `first` (``--seed``)."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise UserError(f"--seeds {text!r}: give a count (3) or comma-separated seeds (777,1,2)")
    return seeds if "," in text else list(range(first, first + seeds[0]))


def compare(arms: list[Arm], seeds: list[int], assignments: Sequence[str], fields: dict[str, Any], out: Path | None,
            score_on: str | None, output: Output) -> dict:
    """Train every arm with every seed; write and return the comparison (per arm: means and spreads over seeds)."""
    raw = parse_assignments(assignments)
    chosen = {(arm, seed): select(arm.plugins, raw, only_selected=True, **{**fields, "seed": seed})
              for seed in seeds for arm in arms}
    used = {name for _, pipeline in chosen.values() for name in pipeline.reasons}
    for name in raw:
        if name not in used:
            raise UserError(f"option -o {name}.{next(iter(raw[name]))}=... is for plugin {name!r}, which no arm selects")
    first = next(iter(chosen.values()))[0]
    device = resolve_device(first.device)
    dataset = load_data(first, device, output)
    folder = Path(out) if out else default_out((), stem=f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    quiet = attrs.evolve(output, say=lambda line: None, progress=False)
    results: dict[str, list[dict]] = {arm.name: [] for arm in arms}
    for index, ((arm, seed), (settings, pipeline)) in enumerate(chosen.items(), 1):
        output.note(f"[{index}/{len(chosen)}] training {arm.name}, seed {seed}")
        path = folder / arm.name / f"seed-{seed}"
        summary = train(settings, pipeline, path, quiet, dataset=dataset)
        rows = [row for row in _rows(path) if row["stage"] == "epoch"]
        result = {"seed": seed, "out": str(path), "final_test_accuracy": rows[-1]["test_accuracy"],
                  "best_test_accuracy": max(row["test_accuracy"] for row in rows),
                  "final_test_loss": rows[-1]["test_loss"],
                  "seconds_per_epoch": statistics.mean(row["seconds"] for row in rows), "status": summary["status"]}
        if score_on:
            result["scored_accuracy"] = evaluate_run(path, "auto", score_on, settings.device, quiet)["metrics"]["accuracy"]
        results[arm.name].append(result)
    comparison = {
        "dataset": dataset.name, "seeds": seeds, "score_on": score_on,
        "settings": {key: value for key, value in fields.items() if key != "seed"},
        "arms": [{"name": arm.name, "plugins": list(arm.plugins), "runs": results[arm.name],
                  **_spread(results[arm.name])} for arm in arms],
    }
    _write(folder, comparison)
    for line in table(comparison):
        output.say(line)
    _plot(folder, comparison, output)
    output.say(f"comparison in {folder}")
    return {**comparison, "out": str(folder)}


def table(comparison: dict) -> list[str]:
    """The printed table: one row per arm, mean ± standard deviation over seeds."""
    columns = [c for c in COLUMNS if any(c in arm for arm in comparison["arms"])]
    width = max(len(arm["name"]) for arm in comparison["arms"])
    lines = [f"{comparison['dataset']}, seeds {', '.join(map(str, comparison['seeds']))}",
             f"{'arm':<{width}}  " + "  ".join(f"{c.replace('_', ' '):>22}" for c in columns)]
    for arm in comparison["arms"]:
        cells = [f"{arm[c]['mean']:.4f} ± {arm[c]['std']:.4f}" if c in arm else "" for c in columns]
        lines.append(f"{arm['name']:<{width}}  " + "  ".join(f"{cell:>22}" for cell in cells))
    return lines


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / METRICS).read_text().splitlines()]


def _spread(runs: list[dict]) -> dict[str, dict[str, float]]:
    return {column: {"mean": statistics.mean(values), "std": statistics.pstdev(values)}
            for column in COLUMNS if (values := [run[column] for run in runs if column in run])}


def _write(folder: Path, comparison: dict) -> None:
    from .records import atomic_write

    atomic_write(folder / "comparison.json", lambda file: file.write(to_json(comparison, indent=2)))

    def rows(file) -> None:
        writer = csv.writer(file)
        writer.writerow(["arm", "plugins", *(f"{c}_{stat}" for c in COLUMNS for stat in ("mean", "std"))])
        for arm in comparison["arms"]:
            writer.writerow([arm["name"], "+".join(arm["plugins"]) or "core",
                             *(arm[c][stat] if c in arm else "" for c in COLUMNS for stat in ("mean", "std"))])

    atomic_write(folder / "comparison.csv", rows)


def _plot(folder: Path, comparison: dict, output: Output) -> None:
    try:
        from . import plots
    except ImportError:
        output.warn(f"no plots: {PLOT_HINT}")
        return
    runs = load([folder])
    plots.save(plots.curves(runs), folder / "curves.png")
    figure = plots.gradients(runs)
    if figure is not None:
        plots.save(figure, folder / "gradients.png")

