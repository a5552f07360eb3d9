"""Helpers for testing one plugin alone: no installation, tiny data, the same code paths as a run.

    manager = plugin_manager(mnist_trainer_my_plugin)      # registered as "my-plugin", verified
    network = build(manager, settings(MyOptions(p=0.5)))
    run = fit(manager, settings(epochs=3))                # whole epochs, run events and all
    run.history                                           # the per-epoch rows
    check_plugin(mnist_trainer_my_plugin)                 # every property a plugin owes

`plugin_manager` registers a module ``mnist_trainer_<name>`` under its entry-point name
``<name>`` and verifies hooks with ``check_pending()`` exactly as ``mnist-run`` does, so a
misspelled hook fails in a test as in a run. Options given to `settings` are looked up by
their class, as in a run. The same helpers are pytest fixtures through the ``mnist_trainer``
pytest plugin (``mnist_manager``, ``mnist_settings``, ``mnist_data``).
"""

from ..options import build_options
from .check import Check, PluginCheckFailed, check_plugin
from .kit import (
    ConvModel,
    build,
    compose,
    evaluate,
    fit,
    plugin_manager,
    sample_images,
    settings,
    tiny_data,
    train_steps,
)

__all__ = ["Check", "ConvModel", "PluginCheckFailed", "build", "build_options", "check_plugin", "compose", "evaluate",
           "fit", "plugin_manager", "sample_images", "settings", "tiny_data", "train_steps"]
