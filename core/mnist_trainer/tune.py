"""Hyperparameter search on Optuna: what ``mnist-tune`` does.

Everything checkable is checked before the first trial (the validation split, the metric, the space, the storage,
the study folder); then this process runs the trials itself (``--jobs 1``) or starts worker processes. Each trial
is an ordinary run folder in the study folder (``STUDY/trial-0007``), beside ``trials.csv``, ``best.json`` and the
pictures. The same command again, or on another machine with the same ``--storage``, adds trials to the study.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Callable

import attrs
import optuna

from . import registry, trainer
from .devices import resolve_device
from .distributed import launched
from .environment import cores
from .errors import UserError
from .records import atomic_write, cannot_write, default_out, to_json
from .session import Output
from .tune_report import best_lines, draw, write
from .tune_space import check, parse
from .tune_storage import check_plan, default_url, load_study, open_storage, shown, tally
from .tune_trial import Job
from .tune_worker import lost_line, spawn, threads, work

STUDY_FILE = "study.json"
HOLDOUT = ("choosing settings by the test split makes its test score optimistic: the choice fitted that very split")


@attrs.frozen
class Request:
    """The command line of ``mnist-tune``: the fixed run (`plugins`, `assignments`, `fields`, and `given`, the fields
    given as flags), what is searched (`spaces`) and how."""

    spaces: tuple[str, ...]
    plugins: tuple[str, ...]
    assignments: tuple[str, ...]
    fields: dict = attrs.field(eq=False)
    given: tuple[str, ...] = ()
    trials: int = 20
    timeout: float | None = None
    metric: str | None = None
    direction: str = "auto"
    score_on_test: bool = False
    prune: bool = True
    storage: str | None = None
    study: str = "mnist-tune"
    jobs: int = 1
    out: Path | None = None
    as_json: bool = False


def scored_by(request: Request) -> tuple[str, str]:
    """The metric trials are scored by, and its direction: a validation metric unless --score-on-test says so."""
    val = request.fields.get("val")
    if val is None and not request.score_on_test:
        raise UserError(f"mnist-tune scores trials on a validation split: give --val N (or a fraction, e.g. --val "
                        f"0.1), since {HOLDOUT}; add --score-on-test if you mean to")
    metric = request.metric or ("val_accuracy" if val is not None else "test_accuracy")
    if metric.startswith("test_") and not request.score_on_test:
        raise UserError(f"--metric {metric} scores trials on the test split, and {HOLDOUT}; watch a val_ metric "
                        "(with --val), or add --score-on-test if you mean to")
    if metric.startswith("val_") and val is None:
        raise UserError(f"--metric {metric} needs a validation split: give --val N (or a fraction)")
    direction = request.direction if request.direction != "auto" else "minimize" if "loss" in metric else "maximize"
    return metric, direction


def _check_metric(metric: str, pipelines: list, fields: dict) -> None:
    """The metric is a column of the trials' rows; a plugin's own column is checked when the first trial starts."""
    known = {column for pipeline in pipelines
             for column in trainer.columns(pipeline.metric_names, fields["eval_train"], fields["val"] is not None)}
    declares = any(not registry.is_core(name) for pipeline in pipelines
                   for name in registry.implementers(pipeline.manager, "mnist_trainer_columns"))
    if metric not in known and not declares:
        raise UserError(f"--metric {metric} is not recorded by these runs; they record {', '.join(sorted(known))}")


def _check_jobs(jobs: int) -> None:
    if launched():
        raise UserError("mnist-tune starts its own workers (--jobs N); run it without torchrun")
    if jobs > cores():
        raise UserError(f"--jobs {jobs} starts more workers than this machine's {cores()} cores, which would only "
                        "share them out; give at most that many (each gets cores // N threads)")


def claim(out: Path | None, storage: str | None, study: str) -> Path:
    """The study folder: new, or one that holds this study already (to add trials); anything else is refused."""
    identity = {"storage": shown(storage) if storage else None, "study": study}
    if out is None and storage is None:
        out = default_out((), stem=f"tune-{time.strftime('%Y%m%d-%H%M%S')}")
    folder = Path(out if out is not None else Path("runs") / f"tune-{study}")
    marker = folder / STUDY_FILE
    if not marker.exists():
        others = [path.name for path in folder.iterdir() if not path.name.startswith(".")] if folder.is_dir() else []
        if others:
            raise UserError(f"--out {folder} already holds files and no study; choose a new folder so nothing is "
                            "overwritten")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(marker, lambda file: file.write(to_json(identity, indent=2) + "\n"))
        except OSError as error:
            raise cannot_write(folder, error) from None
    recorded = _read_marker(marker)
    if recorded != identity:
        held = f"study {recorded.get('study')!r} in {recorded.get('storage') or 'its own study.db'}"
        raise UserError(f"--out {folder} holds {held}; give its --storage and --study to add trials to it, or "
                        "another --out")
    return folder


def _read_marker(marker: Path) -> dict:
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{marker} cannot be read ({error}); it is not a study folder mnist-tune wrote") from None
    return recorded if isinstance(recorded, dict) else {}


def _plan(request: Request, dimensions, metric: str, direction: str) -> dict:
    """What decides the study's trials, kept in the study: every worker must search the same."""
    fields = {key: value for key, value in request.fields.items() if key not in ("device", "data_dir")}
    return {"space": [dimension.text for dimension in dimensions], "plugins": sorted(set(request.plugins)),
            "options": sorted(request.assignments), "settings": fields, "metric": metric, "direction": direction}


def prepare(request: Request, output: Output) -> tuple[Job, Path, optuna.Study]:
    """Check everything, claim the study folder and join (or create) the study; the job its workers run."""
    metric, direction = scored_by(request)
    dimensions = parse(request.spaces, request.assignments, request.given)
    _check_jobs(request.jobs)
    resolve_device(request.fields["device"])
    storage = None  # a bad URL is one line before anything is composed or written
    if request.storage is not None:
        storage = open_storage(request.storage, lost_line(output.warn))
    dimensions, pipelines = check(dimensions, request.plugins, request.assignments, request.fields)
    _check_metric(metric, pipelines, request.fields)
    folder = claim(request.out, request.storage, request.study)
    url = request.storage or default_url(folder)
    storage = storage or open_storage(url, lost_line(output.warn))
    study = load_study(storage, url, request.study, direction, request.fields["seed"], request.prune)
    check_plan(study, _plan(request, dimensions, metric, direction), url)
    deadline = time.time() + request.timeout if request.timeout is not None else None
    job = Job(tuple(request.plugins), tuple(request.assignments), request.fields, dimensions, metric, direction,
              request.prune, str(folder.resolve()), url, request.study, request.trials, uuid.uuid4().hex,
              request.jobs, deadline=deadline, as_json=request.as_json)
    return job, folder, study


def tune(request: Request, output: Output, entry: Callable[[Job], None]) -> dict:
    """Run the study's trials (`entry` is a worker process's main, for ``--jobs`` above 1), then write and return
    what it found. The result's ``interrupted`` says whether Ctrl-C or SIGTERM stopped it; ``status`` is the exit
    status: 0, or that of a worker that failed before the trials were done."""
    job, folder, study = prepare(request, output)
    names = [dimension.name for dimension in job.dimensions]
    count = threads(job.jobs)
    workers = f"{job.jobs} workers" if job.jobs > 1 else "1 worker"
    output.say(f"study {job.study} in {shown(job.storage)}: searching {', '.join(names)} for the "
               f"{'lowest' if job.direction == 'minimize' else 'highest'} {job.metric}; {job.trials} trials on "
               f"{workers} of {count} thread{'s' if count > 1 else ''}{', median pruning' if job.prune else ''}; "
               f"runs in {folder}")
    interrupted, status = False, 0
    try:
        if job.jobs == 1:
            work(job, output)
        else:
            status = spawn(job, entry, output.warn)
    except KeyboardInterrupt:
        interrupted = True
    ended = tally(study, job.launch)[0]
    if ended < job.trials and not interrupted and job.deadline is not None and time.time() >= job.deadline:
        output.say(f"--timeout {request.timeout:g} s passed: {ended} of the {job.trials} trials ran")
    record = write(folder, study, job.storage, job.metric, names)
    pictures = [] if interrupted else draw(folder, study, job.metric, output.warn)
    for text in best_lines(record):
        output.say(text)
    output.say(f"wrote {', '.join(str(path) for path in [folder / 'trials.csv', folder / 'best.json', *pictures])}")
    return {**record, "out": str(folder), "interrupted": interrupted,
            "status": 0 if ended >= job.trials or interrupted else status}
