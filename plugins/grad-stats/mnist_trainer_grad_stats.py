"""Gradient and weight RMS of every weight layer, averaged over each epoch's steps: the vanishing gradient, in numbers.

After every optimizer step it adds each weight layer's gradient RMS and weight RMS to sums
kept on the device, without waiting for it; at each epoch's end it adds their averages to
the epoch row as ``grad_rms_1``, ``weight_rms_1``, ... (layer 1 is the input layer), so the
record, the table and any other plugin see them.
"""

import torch

from mnist_trainer import hookimpl
from mnist_trainer.weights import layers

NAME = "grad-stats"  # the entry-point name, and this plugin's key in run.stash


def weights(run) -> list[torch.Tensor]:
    return [layer.weight for layer in layers(run.network)]


@hookimpl
def mnist_trainer_run_start(run):
    roots = torch.tensor([w.numel() for w in weights(run)], device=run.device, dtype=torch.float32).sqrt().repeat(2)
    # a resumed run keeps its own sums
    run.stash.setdefault(NAME, {"sums": torch.zeros(roots.numel(), device=run.device), "roots": roots, "steps": 0})


@hookimpl
@torch.no_grad()  # the weights require gradients: without this every step would grow an autograd graph
def mnist_trainer_step_end(run):
    state, tensors = run.stash[NAME], weights(run)
    grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in tensors]
    # one fused norm over every tensor (as torch.nn.utils.clip_grad_norm_ takes them); RMS = norm / sqrt(count)
    state["sums"] += torch.stack(torch._foreach_norm(grads + tensors)) / state["roots"]
    state["steps"] += 1


@hookimpl
def mnist_trainer_epoch_end(run):
    state = run.stash[NAME]
    grads, weight_rms = (state["sums"] / max(state["steps"], 1)).view(2, -1).tolist()  # one wait for the device per epoch
    for index, (grad, weight) in enumerate(zip(grads, weight_rms), 1):
        run.row[f"grad_rms_{index}"], run.row[f"weight_rms_{index}"] = grad, weight
    state["sums"].zero_()
    state["steps"] = 0
