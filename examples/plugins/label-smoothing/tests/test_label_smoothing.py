"""Tested the way a third-party author would: the pytest fixtures that mnist-trainer installs."""

import math

import pytest
import torch
import torch.nn.functional as F

import mnist_trainer_label_smoothing as label_smoothing
from mnist_trainer import testing

EPS = [0.0, 0.05, 0.1, 0.5, 0.9]


def penalty_of(manager, settings):
    """The penalty as the core composes it (guarded, named)."""
    (name, regularizer), = testing.compose(manager, settings).regularizers
    assert name == "label-smoothing" and regularizer.transform is None and regularizer.dropout is None
    return regularizer.penalty


def assert_smoothed(total, logits, labels, eps):
    expected = F.cross_entropy(logits, labels, label_smoothing=eps)
    assert total.dim() == 0
    assert total.item() == pytest.approx(expected.item(), abs=1e-6, rel=1e-6)


@pytest.mark.parametrize("eps", EPS)
@pytest.mark.parametrize("rows, classes, scale", [(1, 10, 1.0), (100, 10, 3.0), (7, 2, 10.0), (64, 100, 0.1)])
def test_cross_entropy_plus_penalty_is_the_smoothed_cross_entropy(rows, classes, scale, eps):
    generator = torch.Generator().manual_seed(rows * classes)
    logits = scale * torch.randn(rows, classes, generator=generator)
    labels = torch.randint(0, classes, (rows,), generator=generator)
    total = F.cross_entropy(logits, labels) + label_smoothing.smoothing_penalty(logits, labels, eps)
    assert_smoothed(total, logits, labels, eps)


@pytest.mark.parametrize("eps", EPS)
def test_the_composed_penalty_on_a_trained_networks_logits(mnist_manager, mnist_settings, mnist_data, eps):
    manager = mnist_manager(label_smoothing)
    settings = mnist_settings(label_smoothing.LabelSmoothingOptions(eps=eps))
    network, _ = testing.train_steps(manager, settings, 20, mnist_data)
    network.eval()
    with torch.no_grad():
        logits = network(mnist_data.test.images)
    labels = mnist_data.test.labels
    penalty = penalty_of(manager, settings)(network, logits, labels)
    assert_smoothed(F.cross_entropy(logits, labels) + penalty, logits, labels, eps)
    assert (penalty.item() == 0.0) == (eps == 0.0)


def test_gradients_are_those_of_the_smoothed_loss(mnist_manager, mnist_settings):
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(3), requires_grad=True)
    labels = torch.arange(50) % 10
    manager, settings = mnist_manager(label_smoothing), mnist_settings()  # eps=0.1
    penalty = penalty_of(manager, settings)(testing.build(manager, settings), logits, labels)
    (ours,) = torch.autograd.grad(F.cross_entropy(logits, labels) + penalty, logits)
    (theirs,) = torch.autograd.grad(F.cross_entropy(logits, labels, label_smoothing=0.1), logits)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


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
