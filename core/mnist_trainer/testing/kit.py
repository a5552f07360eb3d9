"""The test kit's helpers: managers, settings, data, and runs made exactly as ``mnist-run`` makes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from .. import registry
from ..hookspecs import hookimpl
from ..registry import make_manager
from ..settings import Settings
from ..stages import Model

plugin_manager = make_manager
"""A fresh, verified plugin manager holding the core defaults plus the given plugins (modules or objects).

Plugins that yours requires are not loaded: register them, or stand-ins, yourself."""



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
            return nn.Sequential(nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, first, 5), slots.activation(),
                                 nn.MaxPool2d(2), nn.Conv2d(first, second, 3), slots.activation(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(second * 5 * 5, 10))

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

    from ..data import load_dataset

    return load_dataset(f"synthetic:{size}", None, torch.device(device))


def sample_images(count: int = 1000):
    """The first `count` training digits of the shipped mnist-sample, as float rows in [0, 1] on the CPU."""
    import torch

    from ..data import load_dataset

    return load_dataset("mnist-sample", None, torch.device("cpu")).train.images[:count]


def compose(manager, run_settings: Settings | None = None):
    """The `Pipeline` that `manager`'s plugins compose: per stage, ``(plugin name, answer)``; ``.describe()``."""
    from ..pipeline import compose as compose_pipeline

    return compose_pipeline(manager, run_settings or settings())


def build(manager, run_settings: Settings | None = None, data=None):
    """The composed network, initialised by the init stage, on the CPU."""
    return _prepare(manager, run_settings, data)[1].network


def train_steps(manager, run_settings: Settings | None = None, steps: int = 5, data=None):
    """Build, then train `steps` random mini-batches (transforms and penalties apply); returns the network and each
    loss."""
    import torch

    from ..trainer import step

    run_settings = run_settings or settings()
    pipeline, run, loop = _prepare(manager, run_settings, data)
    generator = torch.Generator().manual_seed(run_settings.seed)
    run.network.train()
    losses = []
    for _ in range(steps):
        index = torch.randint(0, len(run.dataset.train), (run_settings.batch_size,), generator=generator)
        losses.append(step(loop, run.dataset.train.images[index], run.dataset.train.labels[index]).item())
    return run.network, losses


def fit(manager, run_settings: Settings | None = None, data=None, *, listeners: tuple = (), out=None):
    """Train whole epochs exactly as ``mnist-run`` does: run events, built-ins and record (in `out`, or a temporary
    folder removed afterwards), so a plugin that passes here passes in a run.

    Returns the finished `Run`: ``run.history`` holds the per-epoch rows, ``run.status`` and
    ``run.reason`` how it ended, ``run.network`` the trained network; a plugin's failure is raised,
    as a run raises it. `listeners` are plugin objects attached for this run only (e.g. one
    recording the events it sees).
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mnist-trainer-") as temporary:
        return fit_with(manager, run_settings or settings(), data, listeners, Path(out or Path(temporary) / "run"))


def fit_with(manager, run_settings: Settings, data, listeners: tuple, out: Path):
    """`fit` into the folder `out`."""
    from ..config import config_of
    from ..distributed import World
    from ..pipeline import compose as compose_pipeline
    from ..records import RunFolder
    from ..run import Run
    from ..session import Output, conduct

    names = tuple(name for name, _ in manager.list_name_plugin() if not registry.is_core(name))
    run_settings = attrs.evolve(run_settings, plugins=names)  # recorded, as a run records what it selected
    for index, listener in enumerate(listeners):
        manager.register(listener, name=f"listener{index}")
    try:
        pipeline = compose_pipeline(manager, run_settings)
        world = World(device=_device(run_settings))
        dataset = data or _data(pipeline, run_settings)
        run = Run(run_settings, dataset, world.device, out, world)
        folder = RunFolder.claim(out)
        try:
            config = config_of(run_settings, pipeline, dataset, world)
            folder.write_config(config)
            conduct(pipeline, run, config, folder, Output(say=lambda line: None, warn=lambda line: None))
        finally:
            folder.close()
        return run
    finally:
        for listener in listeners:
            manager.unregister(listener)


def evaluate(manager, network, split, run_settings: Settings | None = None) -> dict[str, float]:
    """Every metric `manager`'s plugins compose, on `split` (e.g. ``data.test``), as a run evaluates each epoch."""
    from ..trainer import evaluate as evaluate_split

    pipeline = compose(manager, run_settings)
    return evaluate_split(network, split, [(metric.name, metric.compute) for _, metric in pipeline.metrics])


def _data(pipeline, run_settings: Settings):
    """The dataset stage's answer (a dataset plugin's, or the core's for ``settings.dataset``), as a run loads it."""
    from ..build import load_data
    from ..session import Output

    quiet = Output(say=lambda line: None, warn=lambda line: None)
    return load_data(pipeline, run_settings, _device(run_settings), quiet)


def _device(run_settings: Settings):
    from ..devices import resolve_device

    return resolve_device(run_settings.device)


def _prepare(manager, run_settings: Settings | None, data):
    from ..build import build as build_loop
    from ..distributed import World
    from ..pipeline import compose as compose_pipeline
    from ..run import Run

    run_settings = run_settings or settings()
    pipeline = compose_pipeline(manager, run_settings)
    world = World(device=_device(run_settings))
    run = Run(run_settings, data or _data(pipeline, run_settings), world.device, None, world)
    return pipeline, run, build_loop(pipeline, run)
