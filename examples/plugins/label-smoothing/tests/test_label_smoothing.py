"""Tested the way a third-party author would: the pytest fixtures that mnist-trainer installs."""

import math

import pytest
import torch
import torch.nn.functional as F

import mnist_trainer_label_smoothing as label_smoothing
from mnist_trainer import testing

EPS = [0.0, 0.05, 0.1, 0.5, 0.9]


def loss_of(manager, settings):
    """The loss as the core composes it (guarded, named)."""
    name, loss = testing.compose(manager, settings).loss
    assert name == "label-smoothing"
    return loss.compute


@pytest.mark.parametrize("eps", EPS)
def test_the_composed_loss_is_the_smoothed_cross_entropy(mnist_manager, mnist_settings, mnist_data, eps):
    manager = mnist_manager(label_smoothing)
    settings = mnist_settings(label_smoothing.LabelSmoothingOptions(eps=eps))
    network, _ = testing.train_steps(manager, settings, 20, mnist_data)
    with torch.no_grad():
        logits = network.eval()(mnist_data.test.images)
    labels = mnist_data.test.labels
    loss = loss_of(manager, settings)(logits, labels)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=eps).item(), rel=1e-6)
    assert (loss.item() == pytest.approx(F.cross_entropy(logits, labels).item())) == (eps == 0.0)


def test_it_takes_class_probabilities_too(mnist_manager, mnist_settings):
    """A transform (mixup) may hand the loss soft labels: smoothing then mixes them with the uniform distribution."""
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(3))
    soft = torch.softmax(torch.randn(8, 10, generator=torch.Generator().manual_seed(4)), dim=1)
    loss = loss_of(mnist_manager(label_smoothing), mnist_settings())(logits, soft)  # eps=0.1
    expected = -(((1 - 0.1) * soft + 0.1 / 10) * F.log_softmax(logits, dim=1)).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_training_with_it_gives_finite_losses_that_fall(mnist_manager, mnist_settings, mnist_data):
    settings = mnist_settings(label_smoothing.LabelSmoothingOptions(eps=0.2), lr=0.01)
    _, losses = testing.train_steps(mnist_manager(label_smoothing), settings, 40, mnist_data)
    assert all(math.isfinite(loss) for loss in losses)
    assert sum(losses[-10:]) < 0.9 * sum(losses[:10])


def test_options_are_checked():
    for bad in ("1", "1.5", "-0.1", "nan", "much"):
        with pytest.raises(ValueError):
            label_smoothing.LabelSmoothingOptions(eps=bad)
    assert label_smoothing.LabelSmoothingOptions(eps="0").eps == 0.0


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(label_smoothing)]
