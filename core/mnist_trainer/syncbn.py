"""Batch norm over the global batch of every process under torchrun.

A norm answer says how its modules synchronise (`Norm.sync`); the batchnorm plugin
hands `sync_batch_norm`, which picks torch's `SyncBatchNorm` on CUDA and, on the CPU
(where torch has no kernels for it and DDP refuses it), `CpuSyncBatchNorm`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over the processes, differentiable: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        gradient = gradient.clone()
        dist.all_reduce(gradient)
        return gradient


class CpuSyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch on the CPU, where torch's `SyncBatchNorm` has no kernels (and DDP refuses it).

    The global batch's sums of x and x² come from one differentiable sum over the processes, in
    double, then ``x * scale + shift``: the statistics and the form `F.batch_norm` uses on one process.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-d input (got {input.dim()}-d)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(input)
        self._check_input_dim(input)
        dims, shape = [0, *range(2, input.dim())], [1, -1] + [1] * (input.dim() - 2)
        # in double, as F.batch_norm accumulates on the CPU: one pass loses nothing to cancellation
        wide = input.double()
        local = wide.new_tensor([input.numel() // input.shape[1]])
        if int(local) * dist.get_world_size() < 2:
            raise ValueError("Expected more than 1 value per channel when training, got a global batch of 1")
        totals = _SumOverRanks.apply(torch.cat([wide.sum(dims), wide.square().sum(dims), local]))  # one collective
        count = totals[-1]
        mean, variance = totals[: self.num_features] / count, totals[self.num_features : -1] / count
        variance = (variance - mean.square()).clamp(min=0)
        scale = torch.rsqrt(variance + self.eps)
        if self.affine:
            scale = scale * self.weight
        shift = (self.bias if self.affine else 0) - mean * scale
        output = input * scale.to(input.dtype).view(shape) + shift.to(input.dtype).view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.to(input.dtype), factor)
                self.running_var.lerp_((variance * count / (count - 1)).to(input.dtype), factor)
        return output


def sync_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` (one of torch's batch norms) made to use the global batch's statistics: same parameters and state_dict.

    torch's own `SyncBatchNorm` on CUDA; on the CPU a `CpuSyncBatchNorm` of the same configuration.
    """
    if type(module) not in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):  # a subclass's forward would be lost
        raise TypeError(f"sync_batch_norm synchronises torch's own batch norms (BatchNorm1d, 2d, 3d), not "
                        f"{type(module).__name__}; give your norm a sync of its own")
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    synced = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
    synced.load_state_dict(module.state_dict())
    return synced.train(module.training)
