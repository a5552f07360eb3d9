"""Helpers for testing one plugin alone: no installation, tiny data, the same code paths as a run.

    manager = plugin_manager(mnist_trainer_my_plugin)      # registered as "my-plugin", verified
    network = build(manager, settings(MyOptions(p=0.5)))
    run = fit(manager, settings(epochs=3))                # whole epochs, run events and all
    run.history                                           # the per-epoch rows

`plugin_manager` registers a module ``mnist_trainer_<name>`` under its entry-point name
``<name>`` and verifies hooks with ``check_pending()`` exactly as ``mnist-run`` does, so a
misspelled hook fails in a test as in a run. Options given to `settings` are looked up by
their class, as in a run. The same helpers are pytest fixtures through the ``mnist_trainer``
pytest plugin (``mnist_manager``, ``mnist_settings``, ``mnist_data``).
"""

from __future__ import annotations

from typing import Any

from .hookspecs import hookimpl
from .registry import make_manager
from .settings import Settings, build_options
from .stages import Model

plugin_manager = make_manager
"""A fresh, verified plugin manager holding the core defaults plus the given plugins (modules or objects).

Plugins that yours requires are not loaded: register them, or stand-ins, yourself."""

__all__ = ["ConvModel", "build", "build_options", "compose", "epoch_cost", "evaluate", "fit", "plugin_manager",
           "sample_images", "settings", "tiny_data", "train_steps"]


class ConvModel:
    """A stand-in model plugin with two convolutions (5x5 then 3x3) and a Linear output, for testing init
    plugins on `Conv2d` weights without depending on a model plugin: ``plugin_manager(init, model=ConvModel())``."""

    def __init__(self, channels: tuple[int, int] = (16, 32)):
        self.channels = channels

    @hookimpl
    def mnist_trainer_model(self):
        from torch import nn

        first, second = self.channels

        def build(slots):
            return nn.Sequential(nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, first, 5), slots.activation(), nn.MaxPool2d(2),
                                 nn.Conv2d(first, second, 3), slots.activation(), nn.MaxPool2d(2), nn.Flatten(),
                                 nn.Linear(second * 5 * 5, 10))

        return Model(f"test conv model {first}, {second} -> {{activation}}", build, uses=("activation",), kind="conv")


def settings(*options: Any, **fields: Any) -> Settings:
    """Small, fast `Settings` on the CPU (1 epoch, batch 50, synthetic:600); `options` are options instances.

    `hidden` is left to the model (the core's MLP: 256,256); set it only for the MLP.
    """
    defaults = dict(epochs=1, batch_size=50, device="cpu", dataset="synthetic:600")
    named = tuple((type(value).__name__, value) for value in options)
    return Settings(plugin_options=named, **{**defaults, **fields})


def tiny_data(size: int = 600, device: str = "cpu"):
    """A deterministic synthetic `Dataset` of `size` training images (and size // 6 test images): `.train`, `.test`
    splits with `.images` (float rows in [0, 1], 784 columns) and `.labels` (int64)."""
    import torch

    from .data import load_dataset

    return load_dataset(f"synthetic:{size}", None, torch.device(device))


def sample_images(count: int = 1000):
    """The first `count` training digits of the shipped mnist-sample, as float rows in [0, 1] on the CPU."""
    import torch

    from .data import load_dataset

    return load_dataset("mnist-sample", None, torch.device("cpu")).train.images[:count]


def compose(manager, run_settings: Settings | None = None):
    """The `Pipeline` that `manager`'s plugins compose: per stage, ``(plugin name, answer)``; ``.describe()``."""
    from .pipeline import compose as compose_pipeline

    return compose_pipeline(manager, run_settings or settings())


def build(manager, run_settings: Settings | None = None, data=None):
    """The composed network, initialised by the init stage, on the CPU."""
    return _prepare(manager, run_settings, data)[1].network


def train_steps(manager, run_settings: Settings | None = None, steps: int = 5, data=None):
    """Build, then train `steps` random mini-batches (transforms and penalties apply); returns the network and each loss."""
    import torch

    from .trainer import step

    run_settings = run_settings or settings()
    pipeline, run, loop = _prepare(manager, run_settings, data)
    generator = torch.Generator().manual_seed(run_settings.seed)
    run.network.train()
    losses = []
    for _ in range(steps):
        index = torch.randint(0, len(run.dataset.train), (run_settings.batch_size,), generator=generator)
        losses.append(step(loop, run.dataset.train.images[index], run.dataset.train.labels[index]).item())
    return run.network, losses


def fit(manager, run_settings: Settings | None = None, data=None, *, listeners: tuple = ()):
    """Train whole epochs as ``mnist-run`` does, run events included, without writing a record.

    Returns the finished `Run`: ``run.history`` holds the per-epoch rows, ``run.status`` and
    ``run.reason`` how it ended, ``run.network`` the trained network. `listeners` are plugin
    objects attached for this run only (e.g. one recording the events it sees).
    """
    from . import runner
    from .pipeline import compose as compose_pipeline
    from .run import Run

    run_settings = run_settings or settings()
    pipeline = compose_pipeline(manager, run_settings)
    run = Run(run_settings, data or _data(run_settings), _device(run_settings), None, pipeline.events)
    runner.execute(pipeline, run, {f"listener{index}": plugin for index, plugin in enumerate(listeners)})
    return run


def epoch_cost(manager, baseline, run_settings: Settings, data=None, turns: int = 6) -> float:
    """How much an epoch with `manager`'s plugins costs against one with `baseline`'s: the ratio of their cheapest
    epochs in CPU seconds on one thread. The runs alternate (ABBA), and each run's first epoch is a warm-up.

    CPU seconds on one thread measure the work itself; wall seconds on a busy machine measure its load.
    """
    import time

    import torch

    class CpuSeconds:
        @hookimpl
        def mnist_trainer_epoch_start(self, run):
            self.started = time.process_time()

        @hookimpl
        def mnist_trainer_epoch_end(self, run):
            run.stash["cpu_seconds"] = run.stash.get("cpu_seconds", []) + [time.process_time() - self.started]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cheapest = {"plugins": float("inf"), "baseline": float("inf")}
        for turn in range(turns):
            for name, chosen in sorted({"plugins": manager, "baseline": baseline}.items(), reverse=turn % 2 == 1):
                seconds = fit(chosen, run_settings, data, listeners=(CpuSeconds(),)).stash["cpu_seconds"]
                cheapest[name] = min(cheapest[name], *seconds[1:])
    finally:
        torch.set_num_threads(threads)
    return cheapest["plugins"] / cheapest["baseline"]


def evaluate(manager, network, split, run_settings: Settings | None = None) -> dict[str, float]:
    """Every metric `manager`'s plugins compose, on `split` (e.g. ``data.test``), as a run evaluates each epoch."""
    from .trainer import evaluate as evaluate_split

    pipeline = compose(manager, run_settings)
    return evaluate_split(network, split, [(metric.name, metric.compute) for _, metric in pipeline.metrics])


def _data(run_settings: Settings):
    from .data import load_dataset

    return load_dataset(run_settings.dataset, run_settings.data_dir, _device(run_settings))


def _device(run_settings: Settings):
    from .world import resolve_device

    return resolve_device(run_settings.device)


def _prepare(manager, run_settings: Settings | None, data):
    from . import runner
    from .pipeline import compose as compose_pipeline
    from .run import Run

    run_settings = run_settings or settings()
    pipeline = compose_pipeline(manager, run_settings)
    run = Run(run_settings, data or _data(run_settings), _device(run_settings), None, pipeline.events)
    return pipeline, run, runner.build(pipeline, run)
