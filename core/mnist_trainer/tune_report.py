"""What a study says of itself: a line per finished trial, ``trials.csv``, ``best.json`` (with the ``mnist-run``
command that repeats the best trial) and, with matplotlib, Optuna's optimisation history and parameter importances.

Everything is read from the study's storage, so any worker (on any machine) writes the whole study as it stands.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from .records import atomic_write, cannot_write, to_json
from .tune_storage import COMMAND, REASON, RUN, WORKER, lost, shown

TRIALS, BEST, HISTORY, IMPORTANCES = "trials.csv", "best.json", "history.png", "importances.png"
STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
          TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
LOST = "its worker stopped (killed, or its machine lost) before the trial ended"


def best(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or None while there is none."""
    return study.best_trial if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)) else None


def reason(trial: FrozenTrial) -> str:
    return LOST if lost(trial) else trial.user_attrs.get(REASON, "")


def params_text(trial: FrozenTrial) -> str:
    return " ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                    for name, value in trial.params.items())


def line(study: optuna.Study, trial: FrozenTrial, metric: str) -> str:
    """One finished trial: number, how it ended, value, params, seconds, and the best so far."""
    state = STATES.get(trial.state, trial.state.name.lower())
    value = f"{metric} {trial.value:.4f}" if trial.value is not None else ""
    how = {"pruned": f"pruned at epoch {max(trial.intermediate_values, default=0)}",
           "failed": f"failed ({reason(trial)})"}.get(state, state)
    seconds = f"{trial.duration.total_seconds():.1f} s" if trial.duration else ""
    leader = best(study)
    so_far = f"best: trial {leader.number}, {leader.value:.4f}" if leader else "best: none yet"
    parts = (f"trial {trial.number}", how, value, params_text(trial), seconds, so_far)
    return "  ".join(part for part in parts if part)


def counts(study: optuna.Study) -> dict[str, int]:
    found = {name: 0 for name in STATES.values()}
    for trial in study.get_trials(deepcopy=False):
        found[STATES.get(trial.state, "failed")] += 1
    return found


def rows(study: optuna.Study, names: Sequence[str]) -> list[dict]:
    """Each trial as ``trials.csv`` holds it: number, state, value, one column per searched name, and the run."""
    found = []
    for trial in study.get_trials(deepcopy=False):
        tag = trial.user_attrs.get(WORKER) or {}
        found.append({
            "number": trial.number, "state": STATES.get(trial.state, trial.state.name.lower()), "value": trial.value,
            **{name: trial.params.get(name) for name in names},
            "epochs": trial.user_attrs.get("epochs"),
            "seconds": round(trial.duration.total_seconds(), 3) if trial.duration else None,
            "threads": tag.get("threads"), "worker": f"{tag.get('host')}#{tag.get('index')}" if tag else None,
            "run": trial.user_attrs.get(RUN), "reason": reason(trial) if trial.state != TrialState.COMPLETE else "",
        })
    return found


def best_record(study: optuna.Study, url: str, metric: str) -> dict:
    """``best.json``: the best trial, its value and params, its run folder and the command that repeats it."""
    leader = best(study)
    record = {"study": study.study_name, "storage": shown(url), "metric": metric,
              "direction": study.direction.name.lower(), "trials": counts(study)}
    if leader is None:
        return {**record, "trial": None}
    tag = leader.user_attrs.get(WORKER) or {}
    return {**record, "trial": leader.number, "value": leader.value, "params": leader.params,
            "run": leader.user_attrs.get(RUN), "threads": tag.get("threads"),
            "command": leader.user_attrs.get(COMMAND)}


def write(folder: Path, study: optuna.Study, url: str, metric: str, names: Sequence[str]) -> dict:
    """Write ``trials.csv`` and ``best.json`` (each atomically: a reader never sees half of one); returns the best."""
    table = rows(study, names)
    header = ["number", "state", "value", *names, "epochs", "seconds", "threads", "worker", "run", "reason"]

    def write_csv(file) -> None:
        writer = csv.DictWriter(file, fieldnames=header)
        writer.writeheader()
        writer.writerows(table)

    record = best_record(study, url, metric)
    _write(folder / TRIALS, write_csv)
    _write(folder / BEST, lambda file: file.write(to_json(record, indent=2) + "\n"))
    return record


def _write(path: Path, write: Callable) -> None:
    try:
        atomic_write(path, write)
    except OSError as error:
        raise cannot_write(path, error) from None


def draw(folder: Path, study: optuna.Study, metric: str, warn: Callable[[str], None]) -> list[Path]:
    """Optuna's optimisation history and parameter importances as PNGs (with matplotlib); the pictures written."""
    try:
        from optuna.visualization import matplotlib as pictures

        from . import plots
    except ImportError:
        warn("no pictures of the study: pip install 'mnist-trainer[plot]' (matplotlib) for them")
        return []
    written = []
    complete = [trial for trial in study.get_trials(deepcopy=False) if trial.state == TrialState.COMPLETE]
    for name, draw_one, needs in ((HISTORY, lambda: pictures.plot_optimization_history(study, target_name=metric), 1),
                                  (IMPORTANCES, lambda: pictures.plot_param_importances(study), 2)):
        if len(complete) < needs:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's: its matplotlib pictures are "experimental"
            try:
                axes = draw_one()
            except Exception as error:  # e.g. importances of values that never varied
                warn(f"no {name}: Optuna could not draw it ({type(error).__name__}: {error})")
                continue
        written.append(_save(axes.figure, folder / name, plots))
    return written


def _save(figure, path: Path, plots) -> Path:
    import matplotlib.pyplot

    figure.set_size_inches(8, 5)
    figure.tight_layout()
    try:
        plots.save(figure, path)
    finally:
        matplotlib.pyplot.close(figure)
    return path


def best_lines(record: dict) -> list[str]:
    """The study's end as a person reads it: counts, the best trial and how to repeat it."""
    counted = ", ".join(f"{count} {state}" for state, count in record["trials"].items() if count)
    lines = [f"study {record['study']} in {record['storage']}: {counted or 'no trials'}"]
    if record["trial"] is None:
        return [*lines, "no trial completed yet: no best"]
    params = " ".join(f"{key}={value}" for key, value in record["params"].items())
    return [*lines, f"best: trial {record['trial']}, {record['metric']} {record['value']:.4f}: {params}",
            f"its run: {record['run']}", f"repeat it: {record['command']}"]
