"""Tested the way a third-party author would: the pytest fixtures that mnist-trainer installs."""

import math

import pytest
import torch

import mnist_trainer_mixup as mixup
from mnist_trainer import Loss, Metric, UserError, hookimpl, testing
from mnist_trainer.testing import build_options

# closed forms of Beta(alpha, alpha)'s CDF: arcsine, uniform, and 3x^2 - 2x^3
CDFS = {0.5: lambda x: 2 / math.pi * torch.asin(x.sqrt()), 1.0: lambda x: x, 2.0: lambda x: 3 * x**2 - 2 * x**3}


def transform_of(manager, settings):
    """The mixup transform as the core composes it (guarded, named)."""
    (name, regularizer), = testing.compose(manager, settings).regularizers
    assert name == "mixup" and regularizer.penalty is None and regularizer.dropout is None
    return regularizer.transform


def noise_batch(count, seed):
    """Noise images (no two alike, so each mixed image has one explanation) and random class indices."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 784, generator=generator), torch.randint(0, 10, (count,), generator=generator)


def explain(images, labels, mixed, soft):
    """Recover lam from the soft labels and, per image, the partner j with mixed = lam x + (1 - lam) x[j]."""
    row = ((soft > 0).sum(1) == 2).nonzero()[0, 0]  # an image whose partner has another class
    lam = soft[row, labels[row]]
    distances = torch.cdist((mixed - lam * images).double(), ((1 - lam) * images).double(),
                            compute_mode="donot_use_mm_for_euclid_dist")
    nearest, partner = distances.topk(2, dim=1, largest=False)
    assert (nearest[:, 0] < 1e-4).all() and (nearest[:, 1] > 1e-3).all()  # exactly one partner fits each image
    return lam, partner[:, 0]


@pytest.mark.parametrize("seed", range(4))
def test_the_mixed_batch_is_the_convex_combination_its_soft_labels_claim(mnist_manager, mnist_settings, seed):
    images, labels = noise_batch(64, seed)
    transform = transform_of(mnist_manager(mixup), mnist_settings(mixup.MixupOptions(alpha=1.0)))
    mixed, soft = transform(images, labels, torch.Generator().manual_seed(seed))
    assert mixed.shape == images.shape and mixed.dtype == images.dtype
    assert soft.shape == (64, 10) and soft.dtype == torch.float32
    lam, partner = explain(images, labels, mixed, soft)
    assert 0 < lam < 1 and sorted(partner.tolist()) == list(range(64))  # a permutation of the batch
    assert (partner != torch.arange(64)).sum() > 32
    one_hot = torch.eye(10)[labels]
    torch.testing.assert_close(mixed, lam * images + (1 - lam) * images[partner])
    torch.testing.assert_close(soft, lam * one_hot + (1 - lam) * one_hot[partner])
    torch.testing.assert_close(soft.sum(1), torch.ones(64))


def test_labels_already_mixed_are_mixed_again_as_probabilities(mnist_manager, mnist_settings):
    """An earlier transform may have mixed the labels: they mix with the same lam and partners as the images."""
    images, labels = noise_batch(64, 7)
    probabilities = torch.softmax(torch.randn(64, 10, generator=torch.Generator().manual_seed(8)), dim=1)
    transform = transform_of(mnist_manager(mixup), mnist_settings())
    lam, partner = explain(images, labels, *transform(images, labels, torch.Generator().manual_seed(9)))
    mixed, soft = transform(images, probabilities, torch.Generator().manual_seed(9))
    torch.testing.assert_close(mixed, lam * images + (1 - lam) * images[partner])
    torch.testing.assert_close(soft, lam * probabilities + (1 - lam) * probabilities[partner])


def test_same_seed_same_mixing_and_the_global_rng_plays_no_part(mnist_manager, mnist_settings, mnist_data):
    images, labels = mnist_data.train.images[:100], mnist_data.train.labels[:100]
    transform = transform_of(mnist_manager(mixup), mnist_settings())
    torch.manual_seed(0)
    first = transform(images, labels, torch.Generator().manual_seed(5))
    torch.manual_seed(1)
    again = transform(images, labels, torch.Generator().manual_seed(5))
    other = transform(images, labels, torch.Generator().manual_seed(6))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])


@pytest.mark.parametrize("alpha", sorted(CDFS))
def test_lam_follows_beta_alpha_alpha(alpha):
    """One-sample Kolmogorov-Smirnov against the closed-form CDF: 1.95 / sqrt(n) is its 0.1% critical value."""
    draws = torch.sort(mixup.beta_draws(alpha, 20000, torch.Generator().manual_seed(11))).values
    cdf, steps = CDFS[alpha](draws), torch.arange(1, 20001, dtype=torch.float64) / 20000
    assert torch.maximum(steps - cdf, cdf - (steps - 1 / 20000)).max() < 1.95 / math.sqrt(20000)


@pytest.mark.parametrize("alpha", [0.01, 0.2, 8.0])
def test_lam_has_beta_alpha_alphas_mean_and_variance_for_small_and_large_alpha(alpha):
    draws = mixup.beta_draws(alpha, 20000, torch.Generator().manual_seed(12))
    assert ((draws >= 0) & (draws <= 1)).all()
    assert draws.mean().item() == pytest.approx(0.5, abs=0.015)
    assert draws.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.02)  # Var Beta(a, a)


class Labels:
    """A loss and a metric of this test's own, recording the labels training and evaluation hand them."""

    def __init__(self):
        self.trained, self.evaluated = [], []

    @hookimpl
    def mnist_trainer_loss(self):
        def compute(logits, labels):
            self.trained.append(labels)
            return torch.nn.functional.cross_entropy(logits, labels)

        return Loss("cross-entropy, recorded", compute)

    @hookimpl
    def mnist_trainer_metrics(self):
        def compute(logits, labels):
            self.evaluated.append(labels)
            return torch.tensor(0.0)

        return [Metric("seen", compute)]


def test_training_sees_soft_labels_and_evaluation_never_mixed_data(mnist_manager, mnist_settings, mnist_data):
    labels, test_images = Labels(), mnist_data.test.images.clone()
    manager, settings = mnist_manager(mixup, recorder=labels), mnist_settings(epochs=2, hidden=(32,), lr=0.01)
    run = testing.fit(manager, settings, mnist_data)
    assert len(labels.trained) == 2 * run.steps_per_epoch and all(t.shape == (50, 10) for t in labels.trained)
    assert all(torch.equal(t, mnist_data.test.labels) for t in labels.evaluated) and len(labels.evaluated) >= 2
    assert torch.equal(mnist_data.test.images, test_images)
    untouched = testing.evaluate(manager, run.network, mnist_data.test, settings)
    last = run.history[-1]
    assert (untouched["loss"], untouched["accuracy"]) == (last["test_loss"], last["test_accuracy"])


def test_a_short_run_trains(mnist_manager, mnist_settings, mnist_data):
    run = testing.fit(mnist_manager(mixup), mnist_settings(epochs=4, hidden=(32,), lr=0.01), mnist_data)
    losses = [row["train_loss"] for row in run.history]
    assert losses[-1] < 0.7 * losses[0] and run.history[-1]["test_accuracy"] > 0.8


def test_options_arrive_as_strings():
    assert build_options("mixup", mixup.MixupOptions, {"alpha": "0.4"}) == mixup.MixupOptions(alpha=0.4)


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "some"])
def test_bad_values_are_refused_in_one_line_naming_the_option(value):
    with pytest.raises(UserError, match=f"invalid value for -o mixup.alpha={value}") as raised:
        build_options("mixup", mixup.MixupOptions, {"alpha": value})
    assert "\n" not in raised.value.message


def test_it_keeps_the_plugin_contract():
    checks = {check.property: check.detail for check in testing.check_plugin(mixup)}
    assert checks["resumes bitwise"] == "interrupted as epoch 2 began, resumed: rows and weights equal"
