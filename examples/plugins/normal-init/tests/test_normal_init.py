"""Tested the way a third-party author would: the pytest fixtures that mnist-trainer installs."""

import pytest
import torch

import mnist_trainer_normal_init as normal_init
from mnist_trainer import testing
from mnist_trainer.weights import layers


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (0.5, 0.1)])
def test_weights_have_the_asked_mean_and_std(mnist_manager, mnist_settings, mean, std):
    options = normal_init.NormalInitOptions(mean=mean, std=std)
    network = testing.build(mnist_manager(normal_init), mnist_settings(options, hidden=(256,)))
    weight = layers(network)[0].weight
    assert weight.mean().item() == pytest.approx(mean, abs=0.01)
    assert weight.std().item() == pytest.approx(std, rel=0.02)


def test_biases_keep_pytorchs_initialisation(mnist_manager, mnist_settings):
    bias = layers(testing.build(mnist_manager(normal_init), mnist_settings(hidden=(64,))))[-1].bias
    assert bias.abs().max().item() <= 1 / 64**0.5  # PyTorch's own U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert torch.any(bias != 0)


def test_it_is_the_init_stage_of_the_pipeline(mnist_manager, mnist_settings):
    name, initializer = testing.compose(mnist_manager(normal_init), mnist_settings()).init
    assert name == "normal-init" and "std=1.0" in initializer.summary


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(normal_init)]
