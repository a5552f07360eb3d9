"""The core's defaults, registered as the plugin ``core``; any selected plugin filling a slot overrides them."""

from __future__ import annotations

from .data import refuse_oversize
from .hookspecs import hookimpl
from .stages import Activation, Initializer, Metric, Model, Optimizer

MLP_SUMMARY = "{widths} MLP (each hidden block: Linear -> {{norm}} -> {{activation}} -> {{dropout}})"


@hookimpl
def mnist_trainer_model(settings):
    from .model import CLASSES, DEFAULT_HIDDEN, INPUTS, MLP

    hidden = settings.hidden or DEFAULT_HIDDEN
    sizes = (INPUTS, *hidden, CLASSES)
    parameters = sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes, sizes[1:]))
    refuse_oversize(f"--hidden {','.join(map(str, hidden))}", parameters * 4 * 4, None,  # weights, gradients, two Adam moments
                    "choose smaller widths")
    widths = "-".join(str(width) for width in sizes)
    return Model(MLP_SUMMARY.format(widths=widths), lambda slots: MLP(hidden, slots),
                 uses=("activation", "norm", "dropout", "hidden"), kind="mlp")


@hookimpl
def mnist_trainer_activation(settings):
    from torch import nn

    return Activation("Sigmoid", nn.Sigmoid, "sigmoid")


@hookimpl
def mnist_trainer_init(settings):
    return Initializer("PyTorch's own initialisation", lambda network, context: None)


@hookimpl
def mnist_trainer_optimizer(settings):
    return Optimizer(f"Adam, lr={settings.lr}", lambda parameters: adam(parameters, settings.lr))


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
