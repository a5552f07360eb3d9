"""The stages of training, as pluggy hook specifications.

Every stage hook takes the run's frozen `Settings` and returns a description from
`mnist_trainer.stages` (or None to decline). Exclusive hooks may be answered by one
selected plugin at most; the core's default answers when none does. A plugin reads
its own options with `settings.options(TheOptionsClass)`.
"""

from __future__ import annotations

import pluggy

PROJECT = "mnist_trainer"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mnist_trainer_options():
    """Declare the plugin's options.

    Return a frozen `attrs` class whose fields all have defaults; `-o NAME.KEY=VALUE`
    values arrive as strings and pass through each field's converter and validator.
    Not exclusive: every plugin declares its own.
    """


@hookspec
def mnist_trainer_requires():
    """Name the plugins this one needs (entry-point names, e.g. ``("relu",)``).

    The registry loads them too, transitively. Not exclusive.
    """


@hookspec
def mnist_trainer_activation(settings):
    """Model stage, activation slot: return an `Activation` for every hidden block.

    Exclusive: one selected plugin at most. Core default: sigmoid.
    """


@hookspec
def mnist_trainer_norm(settings):
    """Model stage, norm slot (between Linear and activation): return a `Norm`.

    Exclusive: one selected plugin at most. Core default: no norm.
    """


@hookspec
def mnist_trainer_init(settings):
    """Init stage: return an `Initializer` that sets the weights before training.

    Exclusive: one selected plugin at most. Core default: PyTorch's own initialisation.
    """


@hookspec
def mnist_trainer_regularizer(settings):
    """Regularizer stage: return a `Regularizer` (dropout-slot module and/or loss penalty).

    Not exclusive: every selected regularizer applies, dropout modules in plugin-name order.
    """


@hookspec
def mnist_trainer_optimizer(settings):
    """Optimizer stage: return an `Optimizer` that builds the optimizer from the parameters.

    Exclusive: one selected plugin at most. Core default: Adam with ``--lr``.
    """


@hookspec
def mnist_trainer_metrics(settings):
    """Evaluation stage: return a sequence of `Metric`, computed on each evaluation split.

    Not exclusive: all apply; metric names must not collide. Core default: loss, accuracy.
    """
