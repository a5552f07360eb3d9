"""Gradient and weight RMS of every weight layer, averaged over each epoch's steps: the vanishing gradient, in numbers.

Before every optimizer step it adds each weight layer's gradient RMS and weight RMS to sums
kept on the device, without waiting for it; at each epoch's end it adds their averages to
the epoch row as ``grad_rms_1``, ``weight_rms_1``, ... (layer 1 is the input layer), so the
record, the table and any other plugin see them. The sums are this plugin's per-run state,
so a resumed run goes on with them.
"""

import attrs
import torch

from mnist_trainer import PluginState, hookimpl, state_hook
from mnist_trainer.weights import layers


@attrs.define
class GradStats(PluginState):
    """Per layer, the running sums of gradient RMS then weight RMS over this epoch's steps, and how many steps."""

    sums: torch.Tensor | None = None
    steps: int = 0


mnist_trainer_state = state_hook(GradStats)


def weights(run) -> list[torch.Tensor]:
    return [layer.weight for layer in layers(run.network)]


@hookimpl
def mnist_trainer_columns(run):
    count = len(weights(run))
    return tuple(f"{kind}_rms_{layer}" for layer in range(1, count + 1) for kind in ("grad", "weight"))


@hookimpl
@torch.no_grad()  # the weights require gradients: without this every step would grow an autograd graph
def mnist_trainer_before_step(run):
    state, tensors = run.state(GradStats), weights(run)
    grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in tensors]
    roots = torch.tensor([w.numel() for w in tensors], device=run.device, dtype=torch.float32).sqrt().repeat(2)
    # one fused norm over every tensor (as torch.nn.utils.clip_grad_norm_ takes them); RMS = norm / sqrt(count)
    rms = torch.stack(torch._foreach_norm(grads + tensors)) / roots
    state.sums = rms if state.sums is None else state.sums + rms
    state.steps += 1


@hookimpl
def mnist_trainer_epoch_end(run):
    state = run.state(GradStats)
    if state.sums is None:
        return
    grads, weight_rms = (state.sums / max(state.steps, 1)).view(2, -1).tolist()  # one wait for the device per epoch
    for index, (grad, weight) in enumerate(zip(grads, weight_rms), 1):
        run.row[f"grad_rms_{index}"], run.row[f"weight_rms_{index}"] = grad, weight
    state.sums, state.steps = None, 0
