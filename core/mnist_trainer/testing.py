"""Helpers for testing one plugin alone: no entry points, no installation, tiny data.

    manager = plugin_manager(my_plugin)
    network = build(manager, settings(MyOptions(p=0.5)))

The same helpers are pytest fixtures through the ``mnist_trainer`` pytest plugin.
"""

from __future__ import annotations

from typing import Any

from .registry import make_manager
from .settings import Settings

plugin_manager = make_manager
"""A fresh plugin manager holding the core defaults plus the given plugin objects."""


def settings(*options: Any, **fields: Any) -> Settings:
    """Small, fast `Settings` on the CPU; `options` are plugin options instances."""
    defaults = dict(epochs=1, batch_size=50, hidden=(32, 32), device="cpu", dataset="synthetic:600")
    named = tuple((type(value).__name__, value) for value in options)
    return Settings(plugin_options=named, **{**defaults, **fields})


def tiny_data(size: int = 600, device: str = "cpu"):
    """A deterministic synthetic `Dataset` of `size` training images (and size // 6 test images)."""
    import torch

    from .data import load_dataset

    return load_dataset(f"synthetic:{size}", None, torch.device(device))


def sample_images(count: int = 1000):
    """The first `count` training digits of the shipped mnist-sample, as float rows in [0, 1] on the CPU."""
    import torch

    from .data import load_dataset

    return load_dataset("mnist-sample", None, torch.device("cpu")).train.images[:count]


def compose(manager, run_settings: Settings | None = None):
    """The `Pipeline` that `manager`'s plugins compose."""
    from .pipeline import compose as compose_pipeline

    return compose_pipeline(manager, run_settings or settings())


def build(manager, run_settings: Settings | None = None, data=None):
    """The composed network, initialised by the init stage, on the CPU."""
    return _build(manager, run_settings or settings(), data)[0]


def train_steps(manager, run_settings: Settings | None = None, steps: int = 5, data=None):
    """Build, then train `steps` random mini-batches; returns the network and each step's loss."""
    import torch

    from .trainer import step

    run_settings = run_settings or settings()
    network, optimizer, pipeline, data = _build(manager, run_settings, data)
    generator = torch.Generator().manual_seed(run_settings.seed)
    network.train()
    losses = []
    for _ in range(steps):
        index = torch.randint(0, len(data.train), (run_settings.batch_size,), generator=generator)
        losses.append(step(network, optimizer, data.train.images[index], data.train.labels[index], pipeline.penalties).item())
    return network, losses


def _build(manager, run_settings: Settings, data):
    import torch

    from . import trainer

    pipeline = compose(manager, run_settings)
    data = data or tiny_data()
    network, optimizer = trainer.build(pipeline, run_settings, data, torch.device("cpu"))
    return network, optimizer, pipeline, data
