"""mnist-trainer: train a network on MNIST-format data, one stage at a time from plugins.

The public API for plugin authors: `hookimpl` (and `every_rank` for run events under torchrun); the stage answers in `stages`; `option`,
`number`, `choice`, `boolean` and `options_hook` for options; `Settings`; `UserError`. Run events
receive a `mnist_trainer.run.Run`. `mnist_trainer.weights` (imports torch) fills weights
for init plugins; `mnist_trainer.testing` tests a plugin alone.
"""

from .errors import PluginError, UserError
from .hookspecs import every_rank, hookimpl
from .settings import Settings, boolean, choice, number, option, options_hook
from .stages import Activation, Initializer, InitContext, Metric, Model, Norm, Optimizer, Regularizer, Schedule, Slots

__all__ = [
    "Activation", "InitContext", "Initializer", "Metric", "Model", "Norm", "Optimizer", "PluginError", "Regularizer",
    "Schedule", "Settings", "Slots", "UserError", "boolean", "choice", "every_rank", "hookimpl", "number", "option", "options_hook",
]
