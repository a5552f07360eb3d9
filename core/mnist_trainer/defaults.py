"""The core's defaults, registered as the plugin ``core``; any selected plugin filling a slot overrides them."""

from __future__ import annotations

import math

from .hookspecs import hookimpl
from .stages import Activation, Initializer, Loss, Metric, Model, Optimizer

MLP_SUMMARY = "{widths} MLP (each hidden block: Linear -> {{norm}} -> {{activation}} -> {{dropout}})"
ADAM_LR = 0.001  # Kingma and Ba's, and torch's, default


@hookimpl
def mnist_trainer_dataset(settings):
    from .datasets import builtin

    return builtin(settings.dataset, settings.data_dir)


@hookimpl
def mnist_trainer_model(settings, data):
    from .model import DEFAULT_HIDDEN, MLP

    hidden = settings.hidden or DEFAULT_HIDDEN
    sizes = (math.prod(data.shape), *hidden, data.classes)
    widths = "-".join(str(width) for width in sizes)
    parameters = sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes, sizes[1:]))
    return Model(MLP_SUMMARY.format(widths=widths), lambda slots: MLP(sizes, slots),
                 uses=("activation", "norm", "dropout", "hidden"), kind="mlp", parameters=parameters)


@hookimpl
def mnist_trainer_activation(settings):
    from torch import nn

    return Activation("Sigmoid", nn.Sigmoid, "sigmoid")


@hookimpl
def mnist_trainer_init(settings):
    return Initializer("PyTorch's own initialisation", lambda network, context: None)


@hookimpl
def mnist_trainer_loss(settings):
    import torch.nn.functional as F

    return Loss("cross-entropy", F.cross_entropy)


@hookimpl
def mnist_trainer_optimizer(settings):
    return Optimizer("Adam (fused)", adam, lr=ADAM_LR)


@hookimpl
def mnist_trainer_metrics(settings):
    import torch.nn.functional as F

    return (
        Metric("loss", F.cross_entropy),
        Metric("accuracy", lambda logits, labels: (logits.argmax(1) == labels).float().mean()),
    )


def adam(parameters, lr: float):
    """Adam with PyTorch's fused kernel: one pass over all parameters per step, on CPU and CUDA alike."""
    import torch

    return torch.optim.Adam(parameters, lr=lr, fused=True)
