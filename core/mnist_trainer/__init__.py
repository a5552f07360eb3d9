"""mnist-trainer: train a network on MNIST-format data, one stage at a time from plugins.

The public API for plugin authors: `hookimpl` (and `every_rank` for run events under torchrun); the stage
answers (`Model`, `Activation`, `Norm`, `Initializer`, `Regularizer`, `Loss`, `Optimizer`, `Schedule`,
`Metric`); `option`, `number`, `choice`, `boolean` and `options_hook` for options; `PluginState` and
`state_hook` for per-run state; `Settings`; `UserError`. Run events receive a `mnist_trainer.run.Run`.
`mnist_trainer.weights` (imports torch) fills weights for init plugins, `mnist_trainer.syncbn` synchronises
batch norms under torchrun, `mnist_trainer.download.fetch_files` downloads a dataset's files and
`mnist_trainer.idx` reads them, and `mnist_trainer.testing` tests a plugin alone.
"""

from .errors import PluginError, UserError
from .hookspecs import every_rank, hookimpl
from .options import boolean, choice, number, option, options_hook
from .settings import Settings
from .stages import (
    Activation,
    Data,
    InitContext,
    Initializer,
    Loss,
    Metric,
    Model,
    Norm,
    Optimizer,
    Regularizer,
    Schedule,
    Slots,
)
from .state import PluginState, state_hook

__all__ = [
    "Activation", "Data", "InitContext", "Initializer", "Loss", "Metric", "Model", "Norm", "Optimizer", "PluginError",
    "PluginState", "Regularizer", "Schedule", "Settings", "Slots", "UserError", "boolean", "choice", "every_rank",
    "hookimpl", "number", "option", "options_hook", "state_hook",
]
