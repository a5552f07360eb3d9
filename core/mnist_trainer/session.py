"""One run executed: the built-ins attached, the run events emitted, one `Ending`, and the record finished.

How a run ends is decided in one place (`_settle`): every path out of training, an exception
or not, becomes an `Ending`, which is set on the run once before ``run_end`` and once more only
if a ``run_end`` handler fails. The command line calls `train` (and `resume.resume`); they speak
through the `Output` they are given.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable

import attrs
import torch

from . import checkpoint, registry, trainer
from .build import build, check_fits, load_data
from .builtins import LastGood, Progress, RecordWriter, StopTogether, Terminal
from .config import config_of, resolved, summary
from .data import Dataset
from .devices import resolve_device
from .distributed import RankFailed, World, explain, follower_seeds
from .errors import PluginError, UserError, one_line
from .pipeline import EVALUATION_WEIGHTS, Pipeline
from .records import RunFolder, default_out
from .run import Row, Run
from .settings import Settings
from .state import make

SHARED_ENDINGS = ("completed", "stopped", "diverged")  # endings every process reaches together under torchrun


@attrs.frozen
class Output:
    """Where a run speaks: `say` for lines a person reads, `warn` for notices, `note` for progress (stderr);
    `progress` shows a bar per epoch."""

    say: Callable[[str], None]
    warn: Callable[[str], None]
    progress: bool = False
    note: Callable[[str], None] = lambda line: None


@attrs.frozen
class Ending:
    """How a run ended: `status` (completed, stopped, interrupted, diverged, failed), `reason`, and for a failure
    the `error` to raise once the record is written."""

    status: str
    reason: str
    error: BaseException | None = None


def train(settings: Settings, pipeline: Pipeline, out: Path | None, output: Output, dataset: Dataset | None = None,
          world: World | None = None, extras: dict[str, Any] | None = None) -> dict:
    """Train as `settings` and `pipeline` say, record it in `out`, and return the summary.

    `dataset`, when given, is the data already loaded on the device (a comparison loads it once).
    Under torchrun (`world`), rank 0 alone claims the folder and records. `extras` are more built-in
    plugins for this run, by name (a tuning study's pruner), attached after the core's own.
    """
    world = world or World(device=resolve_device(settings.device))
    check_shares(settings, world)
    check_fits(pipeline, world.device)
    say_pipeline(pipeline, output)
    dataset = dataset or load_data(pipeline, settings, world.device, output)
    check_batch(settings, dataset)
    say_data(dataset, world, output)
    settings = resolved(settings, pipeline, dataset)
    config = config_of(settings, pipeline, dataset, world)
    folder = world.leader_does(lambda: RunFolder.claim(out or default_out(settings.plugins)))
    try:
        if folder is not None:
            folder.write_config(config)
        run = Run(settings, dataset, world.device, folder and folder.path, world)
        return conduct(pipeline, run, config, folder, output, extras=extras)
    finally:
        if folder is not None:
            folder.close()


def conduct(pipeline: Pipeline, run: Run, config: dict, folder: RunFolder | None, output: Output,
            saved: dict | None = None, extras: dict[str, Any] | None = None) -> dict:
    """Execute `run` with the built-ins a run has (its record in `folder` on rank 0), and `extras`, and return its
    summary. `saved`, a checkpoint, continues the run from it. A failure is raised once the record says so.
    """
    last_good = LastGood()

    def summarise(run: Run) -> dict:
        return summary(run, config, folder, last_good)

    builtins: dict[str, Any] = {"ranks": StopTogether()} if run.world.size > 1 else {}
    builtins["last-good"] = last_good
    if folder is not None:
        builtins.update(record=RecordWriter(folder, config, last_good, summarise),
                        terminal=Terminal(output.say, last_good))
    if folder is not None and output.progress:
        builtins["progress"] = Progress()
    builtins.update(extras or {})
    execute(pipeline, run, builtins, saved, output)
    return summarise(run)


def execute(pipeline: Pipeline, run: Run, builtins: dict[str, Any], saved: dict | None, output: Output) -> None:
    """Build and train `run`, emitting the run events, then end it; a failure is raised once every built-in has
    finished (the record written), and when a handler fails at run end after an earlier failure, the earlier
    one is what is raised."""
    events = pipeline.events
    events.serve(run.world.leader)
    run.pipeline = pipeline.describe()
    run.reporter = lambda stage, values: events.emit("mnist_trainer_report", run=run, stage=stage, values=values)
    with events.attached(builtins):
        ending = _train(pipeline, run, builtins, saved, output)
        ending = _end(run, events, ending)
        for builtin in builtins.values():
            if hasattr(builtin, "finish"):
                builtin.finish(run)
    if ending.error is not None:
        raise ending.error


def _train(pipeline: Pipeline, run: Run, builtins: dict[str, Any], saved: dict | None, output: Output) -> Ending:
    """Everything from building to the last epoch; whatever happens, how it ended."""
    events, world, last_good = pipeline.events, run.world, builtins["last-good"]
    try:
        loop = _prepare(pipeline, run, saved)
        events.emit("mnist_trainer_run_start", run=run)
        if saved is not None:  # after run_start, where plugins add their generators
            reseeded = checkpoint.restore_generators(run, saved)
            if reseeded:
                output.warn(f"the {', '.join(reseeded)} generator(s) were saved on another kind of device; they go on "
                            "from the seed, so this run will not equal the uninterrupted one bit for bit")
            last_good.capture(run)
        if run.epoch < run.settings.epochs and not run.stop_requested:
            trainer.fit(loop, run.dataset, run.settings.epochs, _callbacks(run, events, builtins.get("progress")),
                        first_epoch=run.epoch + 1, eval_train=run.settings.eval_train)
    except (KeyboardInterrupt, trainer.Diverged) as ended:
        cause = explain(world, ended)  # torchrun stops every process when one fails
        if cause is not ended:
            return Ending("failed", one_line(cause), cause)
        last_good.go_back(run)
        if isinstance(ended, trainer.Diverged):
            return Ending("diverged", _diverged(run, ended))
        return Ending("interrupted", f"interrupted during epoch {run.epoch}")
    except Exception as error:
        cause = explain(world, error)  # a process gone mid-collective: name why it went
        return Ending("failed", one_line(cause), cause)
    if run.stop_requested:
        return Ending("stopped", run.stop_requested)
    return Ending("completed", f"trained {len(run.history)} epochs")


def _prepare(pipeline: Pipeline, run: Run, saved: dict | None) -> trainer.Loop:
    """The loop, with the run's states, columns and evaluation weights set up, continued from `saved` if given."""
    loop = build(pipeline, run, resuming=saved is not None)
    run.states = {name: make(name, cls) for name, cls in pipeline.states.items()}
    run.columns = (*trainer.columns(pipeline.metric_names, run.settings.eval_train, run.dataset.val is not None),
                   *_declared(pipeline.events, run))
    run.row = Row(run.columns)
    if registry.implementers(pipeline.manager, EVALUATION_WEIGHTS):
        run.evaluated = _evaluation_weights(pipeline, run)
        loop = attrs.evolve(loop, evaluated=_evaluation_network(run))
    if saved is not None:
        checkpoint.restore(run, saved)
    return loop


def _declared(events: registry.Events, run: Run) -> list[str]:
    """The columns plugins declare they add to the row, after the core's; each name once."""
    declared: dict[str, str] = {}
    for name, columns in registry.every(events.manager, "mnist_trainer_columns", run=run):
        if isinstance(columns, str) or not all(isinstance(column, str) and column for column in columns):
            raise PluginError(name, "mnist_trainer_columns", f"returned {columns!r}; return a tuple of column names")
        for column in columns:
            if column in declared or column in run.columns:
                owner = declared.get(column, "the core")
                raise UserError(f"plugins {owner!r} and {name!r} both add the column {column!r}; "
                                "select only one of them")
            declared[column] = name
    return list(declared)


def _evaluation_weights(pipeline: Pipeline, run: Run) -> Callable[[], dict | None]:
    """What ``run.evaluated()`` asks: the one plugin supplying evaluation weights, in every process; its answer
    checked."""
    events, keys = pipeline.events, set(run.network.state_dict())
    supplier = registry.implementers(pipeline.manager, EVALUATION_WEIGHTS)[0]

    def weights() -> dict | None:
        answer = events.caller(EVALUATION_WEIGHTS, every_rank=True)(run=run)
        if answer is not None and (not isinstance(answer, dict) or set(answer) != keys):
            raise PluginError(supplier, EVALUATION_WEIGHTS,
                              "returned weights whose keys are not run.network.state_dict()'s; "
                              "return a state_dict of the network, or None")
        return answer

    return weights


def _evaluation_network(run: Run) -> Callable[[], torch.nn.Module]:
    """The module evaluated when a plugin supplies the weights: a copy of the network holding them."""
    shadow = copy.deepcopy(run.network)

    def network() -> torch.nn.Module:
        weights = run.evaluated()
        if weights is None:
            return run.network
        shadow.load_state_dict(weights)
        return shadow

    return network


def _end(run: Run, events: registry.Events, ending: Ending) -> Ending:
    """Settle how the run ended and emit run_end; a handler failing there makes it failed, unless it already was.

    Under torchrun, an ending every rank reaches together is agreed first: ranks above 0 run their
    run_end handlers, and rank 0 records a failure of theirs as the run's before its own record
    is finished, then stops with it.
    """
    _settle(run, ending)
    try:
        if run.world.size == 1 or ending.status not in SHARED_ENDINGS:  # a peer may be gone: no collective
            events.emit("mnist_trainer_run_end", run=run)
        else:
            _end_together(run, events)
    except Exception as error:
        if ending.status == "failed":
            return ending  # the first failure is the one to report
        failed = Ending("failed", run.reason if isinstance(error, RankFailed) else one_line(error), error)
        _settle(run, failed)
        return failed
    return ending


def _end_together(run: Run, events: registry.Events) -> None:
    world, failure = run.world, None
    if not world.leader:
        try:
            events.emit("mnist_trainer_run_end", run=run)
        except Exception as error:
            failure = error
    said = world.everyone(one_line(failure) if failure else None)
    if failure is not None:
        raise failure
    failed = [f"rank {rank} failed: {message}" for rank, message in enumerate(said) if message]
    if world.leader:
        if failed:
            _settle(run, Ending("failed", failed[0]))
        events.emit("mnist_trainer_run_end", run=run)
        if failed:
            raise RankFailed(f"rank 0: stopped, because {failed[0]}")


def _settle(run: Run, ending: Ending) -> None:
    """The one writer of how the run ended."""
    run.status, run.reason, run.ended = ending.status, ending.reason, time.perf_counter()


def _callbacks(run: Run, events: registry.Events, progress: Progress | None) -> trainer.Callbacks:
    """The loop's callbacks as run events; the per-step ones only when some plugin listens, so they cost nothing
    otherwise."""
    world = run.world
    mean_loss = bool(registry.implementers(events.manager, "mnist_trainer_step_end"))  # the same on every rank
    per_step = mean_loss or bool(registry.implementers(events.manager, "mnist_trainer_before_step"))

    def epoch_start(epoch: int) -> None:
        run.epoch, run.row = epoch, Row(run.columns)
        if not world.leader:
            dropout_seed, transform_seed = follower_seeds(run.settings.seed, world.rank, epoch)
            torch.manual_seed(dropout_seed)
            run.generators["transform"].manual_seed(transform_seed)
        events.emit("mnist_trainer_epoch_start", run=run)

    def before_step() -> None:
        events.emit("mnist_trainer_before_step", run=run)

    def step_end(loss: torch.Tensor) -> None:
        run.step += 1
        events.emit("mnist_trainer_step_end", run=run, loss=world.mean(loss) if mean_loss else loss)

    def epoch_end(row: dict) -> bool:
        if not per_step:
            run.step += run.steps_per_epoch
        run.row.update(row)
        # the epoch is finished: its row is history for every handler, and for the checkpoint
        run.history.append(run.row)
        events.emit("mnist_trainer_epoch_end", run=run)
        return run.stop_requested is not None

    return trainer.Callbacks(epoch_start, before_step if events.listens("mnist_trainer_before_step") else None,
                             step_end if per_step else None, epoch_end, progress.advance if progress else None)


def say_pipeline(pipeline: Pipeline, output: Output) -> None:
    for stage, text in pipeline.describe():
        output.say(f"{stage:<12} {text}")


def say_data(dataset: Dataset, world: World, output: Output) -> None:
    val = f", {len(dataset.val)} held out for validation" if dataset.val is not None else ""
    output.say(f"{'data':<12} {dataset.name}: {len(dataset.train)} train{val}, {len(dataset.test)} test images on "
               f"{world.device}")
    if world.size > 1:
        output.say(f"{'processes':<12} {world.size} over {world.backend}, each with 1/{world.size} of every batch; "
                   "rank 0 records")


def _diverged(run: Run, diverged: trainer.Diverged) -> str:
    last = run.history[-1] if run.history else None
    before = (f"last finite: {last['train_loss']:.4g} in epoch {last['epoch']}, whose weights are kept" if last
              else "no epoch finished")
    return f"{diverged} ({before}); lower --lr (it is {run.lr}), or start from smaller weights (an init plugin)"


def check_shares(settings: Settings, world: World) -> None:
    if settings.batch_size % world.size:
        raise UserError(f"--batch-size {settings.batch_size} does not split evenly over {world.size} processes; "
                        f"give a multiple of {world.size} (it is the global batch: each process takes an equal share)")


def check_batch(settings: Settings, dataset: Dataset) -> None:
    if settings.batch_size > len(dataset.train):
        raise UserError(f"--batch-size {settings.batch_size} is larger than the {len(dataset.train)} training images "
                        f"of {dataset.name}; choose a smaller one")
