"""The hooks plugins implement: declarations, stage hooks and run events.

Stage hooks are asked once per plugin while the pipeline is composed, before any
data is loaded or weights exist; each returns a description from
`mnist_trainer.stages` or None to decline. Whether a stage hook is exclusive is
declared here, once, by `stage(...)`: composing, the docstrings and the docs test
all read `STAGES`. Every stage hook may take `settings` (the run's frozen
`Settings`) and `options` (the answering plugin's own options instance, or None);
every one but the dataset's may take `data`, the composed dataset answer (its image
shape and classes).

Run events are called through pluggy while the run goes on, on every plugin that
implements them, in plugin-name order (pluggy's ``tryfirst``, ``trylast`` and ``wrapper``
apply first). Each receives the `Run` (see `mnist_trainer.run`).
"""

from __future__ import annotations

from typing import Callable, TypeVar

import attrs
import pluggy

from . import stages

PROJECT = "mnist_trainer"
F = TypeVar("F", bound=Callable)

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
EVERY_RANK = "mnist_trainer_every_rank"


def every_rank(handler: F) -> F:
    """Mark a run-event handler to run in every process under torchrun; unmarked ones run on rank 0 alone.

    Rank 0 holds the whole run's view (it prints and records); mark a handler that must act in
    each process, such as one changing the network every process trains. Stack it with `hookimpl`.
    """
    setattr(handler, EVERY_RANK, True)
    return handler


@attrs.frozen
class Stage:
    """A stage hook: the slot it fills, whether one plugin at most may fill it, and what it returns."""

    hook: str
    slot: str
    exclusive: bool
    answer: type
    many: bool = False  # the answer is a sequence of `answer`
    default: str = ""

    @property
    def rule(self) -> str:
        one = ("Exclusive: one selected plugin at most" if self.exclusive
               else "Not exclusive: every selected plugin's answer applies")
        return f"{one}. Core default: {self.default}."


STAGES: dict[str, Stage] = {}
EVENTS: list[str] = []


def stage(slot: str, answer: type, *, exclusive: bool, default: str, many: bool = False) -> Callable:
    """Declare a stage hook; its docstring gains the composition rule, read from this one declaration."""

    def declare(function: Callable) -> Callable:
        declared = Stage(function.__name__, slot, exclusive, answer, many, default)
        STAGES[declared.hook] = declared
        function.__doc__ = f"{function.__doc__.rstrip()}\n\n    {declared.rule}\n    "
        return hookspec(function)

    return declare


def event(function: Callable | None = None, *, firstresult: bool = False) -> Callable:
    """Declare a run event: called through pluggy on every plugin implementing it (`firstresult`: the first answer)."""

    def declare(declared: Callable) -> Callable:
        EVENTS.append(declared.__name__)
        return hookspec(firstresult=firstresult)(declared)

    return declare(function) if function is not None else declare


# ----- declarations ------------------------------------------------------------------------


@hookspec
def mnist_trainer_options():
    """Declare the plugin's options: return a frozen `attrs` class whose fields all have defaults.

    ``-o NAME.KEY=VALUE`` values arrive as strings and pass through each field's converter and
    validator. ``mnist_trainer_options = options_hook(MyOptions)`` writes this hook in one line.
    """


@hookspec
def mnist_trainer_requires():
    """Name the plugins this one needs: a tuple of entry-point names, e.g. ``("relu",)``.

    The registry loads them too, transitively.
    """


@hookspec
def mnist_trainer_state():
    """Declare the plugin's per-run state: return a class whose instances hold it, made with no arguments.

    Each run makes one instance (``run.state(MyState)`` gives it to the run events), saves its
    ``state_dict()`` in every checkpoint under the plugin's name and hands it back to
    ``load_state_dict(state)``, with its tensors on the run's device, when the run resumes.
    Subclass `mnist_trainer.PluginState` (an attrs class's fields, saved as they are) or write the
    two methods. ``mnist_trainer_state = state_hook(MyState)`` writes this hook in one line.
    """


@hookspec
def mnist_trainer_columns(run):
    """Name the columns your run-event handlers add to every epoch row: a tuple of strings.

    Asked once the network is built, before ``run_start``, so ``run.columns`` holds them from
    ``run_start`` on; a value added to ``run.row`` under any other name is refused.
    """


# ----- stage hooks -------------------------------------------------------------------------


@stage("dataset", stages.Data, exclusive=True,
       default="--dataset and --data-dir: auto (MNIST when cached or downloadable, else mnist-sample), mnist, "
               "fashion-mnist, mnist-sample, synthetic:N, or a folder of IDX files")
def mnist_trainer_dataset(settings, options):
    """Dataset stage: return a `Data` whose `load(splits)` gives each split's images and labels.

    Asked first: every other stage hook may take its answer as `data`.
    """


@stage("model", stages.Model, exclusive=True, default="the MLP 784-hidden-10 (--hidden, 256,256 unless given)")
def mnist_trainer_model(settings, options, data):
    """Model stage: return a `Model` whose `build(slots)` makes the whole network from the slot answers."""


@stage("activation", stages.Activation, exclusive=True, default="sigmoid")
def mnist_trainer_activation(settings, options, data):
    """Model stage, activation slot: return an `Activation` for every hidden block."""


@stage("norm", stages.Norm, exclusive=True, default="no norm")
def mnist_trainer_norm(settings, options, data):
    """Model stage, norm slot (between Linear and activation): return a `Norm`."""


@stage("init", stages.Initializer, exclusive=True, default="PyTorch's own initialisation")
def mnist_trainer_init(settings, options, data):
    """Init stage: return an `Initializer` that sets the weights before training."""


@stage("regularizer", stages.Regularizer, exclusive=False, default="none")
def mnist_trainer_regularizer(settings, options, data):
    """Regularizer stage: return a `Regularizer` (dropout-slot module, loss penalty, batch transform).

    Dropout modules, penalties and transforms apply in plugin-name order.
    """


@stage("loss", stages.Loss, exclusive=True, default="cross-entropy")
def mnist_trainer_loss(settings, options, data):
    """Loss stage: return a `Loss` whose `compute(logits, labels)` is each mini-batch's training loss.

    Penalties add to whichever loss is selected.
    """


@stage("optimizer", stages.Optimizer, exclusive=True, default="Adam (fused), conventional rate 0.001")
def mnist_trainer_optimizer(settings, options, data):
    """Optimizer stage: return an `Optimizer` whose `build(parameters, lr)` makes it at rate `lr`.

    `lr` is ``--lr`` when given, else the answer's own conventional rate.
    """


@stage("schedule", stages.Schedule, exclusive=False, default="a constant learning rate")
def mnist_trainer_schedule(settings, options, data):
    """Optimizer stage, schedule slot: return a `Schedule` that the core steps per batch or per epoch.

    Schedules chain, stepped in plugin-name order.
    """


@stage("metrics", stages.Metric, exclusive=False, many=True, default="loss, accuracy")
def mnist_trainer_metrics(settings, options, data):
    """Evaluation stage: return a sequence of `Metric`, computed on each evaluation split.

    Metric names must not collide.
    """


# ----- run events --------------------------------------------------------------------------


@event
def mnist_trainer_run_start(run):
    """The network is built and initialised, the optimizer made; no epoch has run (``run.epoch == 0``), or, in a
    resumed run, ``run.epoch`` is the epoch it resumes from (add your generators to ``run.generators`` here)."""


@event
def mnist_trainer_epoch_start(run):
    """Epoch ``run.epoch`` is about to train."""


@event
def mnist_trainer_before_step(run):
    """The mini-batch's gradients are computed (and, under torchrun, averaged); the optimizer has not yet stepped.

    Read or change the gradients here (``p.grad`` of ``run.network.parameters()``): clipping, statistics.
    With a closure-based optimizer (LBFGS) it comes after every gradient the optimizer asks for.
    Called once per mini-batch; with no plugin implementing it, the loop does not call it at all.
    """


@event
def mnist_trainer_step_end(run, loss):
    """An optimizer step has been taken; `loss` is that mini-batch's loss, a detached 0-d tensor.

    Called once per mini-batch: keep it cheap, and call ``loss.item()`` only when you must, since
    it waits for the device. With no plugin implementing it, the loop does not call it at all.
    """


@event
def mnist_trainer_epoch_end(run):
    """Epoch ``run.epoch`` is trained and evaluated; ``run.row`` holds its metrics.

    Values added to ``run.row`` here (numbers or text, under the names your plugin declares with
    ``mnist_trainer_columns``) are recorded and shown in the table; ``run.stop(reason)`` ends the run
    after this epoch. The core's record writer and table act after every other handler has returned.
    """


@event(firstresult=True)
def mnist_trainer_evaluation_weights(run):
    """Supply the weights that are evaluated, recorded and saved instead of the training weights: a state_dict
    of ``run.network`` (all its keys), or None for the training weights themselves.

    Asked before every evaluation and at the end of the run; the optimizer goes on training
    ``run.network``. One selected plugin at most may implement it. Under torchrun it is asked in
    every process, so the handler and the state it reads must be kept in every process (`every_rank`).
    """


@event
def mnist_trainer_run_end(run):
    """The run is over: ``run.status`` says how (completed, stopped, interrupted, diverged, failed), ``run.reason`` why.

    Called whatever the ending, before the record is finished, so a plugin may still choose the
    weights that are saved, with ``run.keep(epoch, weights)`` (early stopping keeps its best epoch's).
    After a failure, ``run.network`` may be None and ``run.history`` empty.
    """


@event
def mnist_trainer_report(run, stage, values):
    """A stage reported progress through ``report(stage, **values)``; the core prints and records it."""
