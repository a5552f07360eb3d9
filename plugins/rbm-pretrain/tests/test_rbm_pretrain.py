"""rbm-pretrain alone, on small synthetic data: learning, free energy, and the copied weights."""

import pytest
import torch

import mnist_trainer_rbm_pretrain as rbm_pretrain
from mnist_trainer import InitContext, UserError, testing
from mnist_trainer.testing import build_options
from mnist_trainer.weights import layers

FAST = rbm_pretrain.RbmOptions(epochs=6, batch_size=20)


@pytest.fixture(scope="module")
def images():
    return testing.sample_images(1000)


def trained(images, options=FAST, seed=0):
    errors = []
    rbm = rbm_pretrain.train_rbm(images, 64, options, torch.Generator().manual_seed(seed),
                                 lambda epoch, error: errors.append(error))
    return rbm, errors


@pytest.fixture(scope="module")
def fast(images):
    """One RBM trained with FAST on the images, seed 0, and its reconstruction error per epoch: read, never changed."""
    return trained(images)


def test_reconstruction_error_falls_across_epochs(fast):
    _, errors = fast
    assert len(errors) == FAST.epochs
    assert errors[-1] < 0.5 * errors[0]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))


def test_training_images_get_lower_free_energy_than_noise(images, fast):
    rbm, _ = fast
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(1))
    assert rbm.free_energy(images).mean() < rbm.free_energy(noise).mean() - 10
    assert (rbm.free_energy(images[:100]) < rbm.free_energy(noise[:100]).min()).float().mean() > 0.9


def test_same_seed_same_rbm(images):
    one_epoch = rbm_pretrain.RbmOptions(epochs=1, batch_size=20)  # 50 steps of CD-1 draw plenty from the generator
    first, second = trained(images, one_epoch, seed=4)[0], trained(images, one_epoch, seed=4)[0]
    assert torch.equal(first.weight, second.weight) and torch.equal(first.hidden_bias, second.hidden_bias)
    assert not torch.equal(first.weight, trained(images, one_epoch, seed=5)[0].weight)


def test_copies_each_rbm_into_its_hidden_linear_and_reports(images):
    settings = testing.settings(FAST, hidden=(48, 24))
    default = testing.build(testing.plugin_manager(), settings)
    network = testing.build(testing.plugin_manager(), settings)
    reports = []
    initializer = testing.compose(testing.plugin_manager(rbm_pretrain), settings).init[1]
    context = InitContext(layers(network), 1.0, images, 0, lambda stage, **values: reports.append((stage, values)))
    initializer.apply(network, context)
    for pretrained, fresh in zip(layers(network)[:-1], layers(default)[:-1]):
        assert pretrained.weight.shape == fresh.weight.shape
        assert not torch.allclose(pretrained.weight, fresh.weight)
        assert not torch.allclose(pretrained.bias, fresh.bias)
    assert torch.equal(layers(network)[-1].weight, layers(default)[-1].weight)  # the output layer keeps its init
    assert [values["layer"] for _, values in reports[:-1]] == [1] * FAST.epochs + [2] * FAST.epochs
    assert {stage for stage, _ in reports} == {"rbm-pretrain"} and reports[-1][1]["seconds"] > 0


def test_images_outside_the_unit_interval_are_refused():
    network = testing.build(testing.plugin_manager(), testing.settings(hidden=(8,)))
    initializer = testing.compose(testing.plugin_manager(rbm_pretrain), testing.settings()).init[1]
    with pytest.raises(UserError, match=r"needs training images in \[0, 1\]"):
        initializer.apply(network, InitContext(layers(network), 1.0, torch.randn(50, 784), 0,
                                               lambda stage, **values: None))


@pytest.mark.parametrize("values",
                         [{"k": "0"}, {"lr": "-1"}, {"momentum": "1"}, {"epochs": "1.5"}, {"weight_decay": "-1"}])
def test_bad_options(values):
    with pytest.raises(UserError, match=f"rbm-pretrain.{next(iter(values))}"):
        build_options("rbm-pretrain", rbm_pretrain.RbmOptions, values)


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property
                                 for check in testing.check_plugin(rbm_pretrain, options={"epochs": "1"})]
