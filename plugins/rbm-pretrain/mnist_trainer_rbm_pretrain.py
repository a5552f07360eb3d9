"""Greedy layer-wise RBM pre-training as an init stage (Hinton, Osindero and Teh, 2006).

A Bernoulli-Bernoulli RBM is trained with contrastive divergence (CD-k) on the
training images; its hidden probabilities are the data for the next layer's RBM,
and so on up the stack. Each RBM's weights and hidden biases then initialise the
matching hidden Linear layer; the output layer keeps PyTorch's initialisation.
"""

from __future__ import annotations

import time

import attrs
import torch
import torch.nn.functional as F
from attrs.validators import ge, gt, lt

from mnist_trainer import Initializer, UserError, hookimpl, number, option, options_hook

MOMENTUM_SWITCH_EPOCH = 5  # Hinton's reference code raises the momentum after 5 epochs


@attrs.frozen
class RbmOptions:
    epochs: int = option(10, converter=int, validator=ge(1), help="an integer >= 1: passes over the data per layer")
    lr: float = option(0.1, converter=number, validator=gt(0.0), help="a learning rate above 0")
    k: int = option(1, converter=int, validator=ge(1), help="an integer >= 1: Gibbs steps of CD-k")
    batch_size: int = option(100, converter=int, validator=ge(1), help="an integer >= 1")
    momentum: float = option(0.5, converter=number, validator=[ge(0.0), lt(1.0)],
                             help=f"a number in [0, 1), used for the first {MOMENTUM_SWITCH_EPOCH} epochs")
    final_momentum: float = option(0.9, converter=number, validator=[ge(0.0), lt(1.0)],
                                   help=f"a number in [0, 1), used after epoch {MOMENTUM_SWITCH_EPOCH}")
    weight_decay: float = option(2e-4, converter=number, validator=ge(0.0), help="a number >= 0 (L2 weight cost)")


@attrs.frozen
class Rbm:
    """A trained RBM: weight (visible x hidden), visible and hidden biases."""

    weight: torch.Tensor
    visible_bias: torch.Tensor
    hidden_bias: torch.Tensor

    def hidden_probabilities(self, visible: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.addmm(self.hidden_bias, visible, self.weight))

    def visible_probabilities(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.addmm(self.visible_bias, hidden, self.weight.T))

    def free_energy(self, visible: torch.Tensor) -> torch.Tensor:
        """F(v) = -v.b - sum softplus(vW + c), one value per row: lower means more probable."""
        return -visible @ self.visible_bias - F.softplus(torch.addmm(self.hidden_bias, visible, self.weight)).sum(1)


@torch.no_grad()
def train_rbm(data: torch.Tensor, hidden: int, options: RbmOptions, generator: torch.Generator,
              report=lambda epoch, error: None) -> Rbm:
    """CD-k with momentum and weight decay on rows of `data` in [0, 1]; reports each epoch's error.

    The error is the mean over images of the summed squared difference between an image
    and its reconstruction from one Gibbs step (as in Hinton's reference code).
    """
    count, visible = data.shape
    weight = torch.randn(visible, hidden, generator=generator, device=data.device).mul_(0.01)
    rbm = Rbm(weight, torch.zeros(visible, device=data.device), torch.zeros(hidden, device=data.device))
    velocities = [torch.zeros_like(p) for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias)]
    batches = max(count // options.batch_size, 1)
    for epoch in range(1, options.epochs + 1):
        momentum = options.momentum if epoch <= MOMENTUM_SWITCH_EPOCH else options.final_momentum
        order = torch.randperm(count, generator=generator, device=data.device)
        error = torch.zeros((), device=data.device)
        for batch in range(batches):
            v0 = data[order[batch * options.batch_size : (batch + 1) * options.batch_size]]
            h0 = rbm.hidden_probabilities(v0)
            hk = h0
            for step in range(options.k):
                vk = rbm.visible_probabilities(torch.bernoulli(hk, generator=generator))
                hk = rbm.hidden_probabilities(vk)
                if step == 0:
                    error += (v0 - vk).square().sum() / v0.shape[0]
            scale = options.lr / v0.shape[0]
            gradients = (v0.T @ h0 - vk.T @ hk, (v0 - vk).sum(0), (h0 - hk).sum(0))
            for parameter, velocity, gradient, decay in zip(
                    (rbm.weight, rbm.visible_bias, rbm.hidden_bias), velocities, gradients, (True, False, False)):
                velocity.mul_(momentum).add_(gradient, alpha=scale)
                if decay:
                    velocity.add_(parameter, alpha=-options.lr * options.weight_decay)
                parameter.add_(velocity)
        report(epoch, error.item() / batches)
    return rbm


mnist_trainer_options = options_hook(RbmOptions)


@hookimpl
def mnist_trainer_init(options):
    def apply(network, context):
        images = context.train_images
        low, high = images.min().item(), images.max().item()
        if low < 0 or high > 1:
            raise UserError(f"rbm-pretrain needs training images in [0, 1], these span [{low:.3g}, {high:.3g}]; "
                            "use an MNIST-format dataset, or another init plugin")
        started = time.perf_counter()
        generator = torch.Generator(device=images.device).manual_seed(context.seed)
        visible = images
        for layer, linear in enumerate(context.weights[:-1], 1):  # the MLP's hidden Linear layers
            rbm = train_rbm(visible, linear.out_features, options, generator,
                            lambda epoch, error: context.report("rbm-pretrain", layer=layer, epoch=epoch,
                                                                reconstruction_error=round(error, 4)))
            with torch.no_grad():
                linear.weight.copy_(rbm.weight.T)
                linear.bias.copy_(rbm.hidden_bias)
            visible = rbm.hidden_probabilities(visible)
        context.report("rbm-pretrain", seconds=round(time.perf_counter() - started, 3))

    return Initializer(f"RBM pre-training, CD-{options.k}, {options.epochs} epochs per layer, lr {options.lr}", apply,
                       model="mlp", conflicts=("norm",))  # the hidden biases it trains are dropped before a norm
