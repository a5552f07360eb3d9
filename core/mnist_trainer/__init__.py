"""mnist-trainer: train an MLP on MNIST-format data, one stage at a time from plugins.

The public API for plugin authors: `hookimpl`, the stage answers in `stages`,
`option`/`choice` for options classes, `Settings`, and `UserError`;
`mnist_trainer.weights` (imports torch) fills weights for init plugins.
"""

from .errors import UserError
from .hookspecs import hookimpl
from .settings import Settings, choice, option
from .stages import Activation, Initializer, InitContext, Metric, Norm, Optimizer, Regularizer

__all__ = [
    "Activation", "InitContext", "Initializer", "Metric", "Norm", "Optimizer", "Regularizer",
    "Settings", "UserError", "choice", "hookimpl", "option",
]
