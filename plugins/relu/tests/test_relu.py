"""The relu plugin alone, through mnist_trainer.testing: nothing installed, no entry points."""

import pytest
import torch
from torch import nn

import mnist_trainer_relu as relu
from mnist_trainer import UserError, testing
from mnist_trainer.testing import build_options


def test_every_hidden_block_uses_relu():
    network = testing.build(testing.plugin_manager(relu), testing.settings(hidden=(16, 8, 4)))
    assert [type(block.activation) for block in network.blocks] == [nn.ReLU] * 3
    x = torch.linspace(-2, 2, 784).repeat(3, 1)
    assert torch.equal(network.blocks[0].activation(x), x.clamp(min=0))


def test_negative_slope_gives_leaky_relu_with_its_gain():
    options = relu.ReluOptions(negative_slope=0.2)
    pipeline = testing.compose(testing.plugin_manager(relu), testing.settings(options))
    _, activation = pipeline.activation
    assert (activation.nonlinearity, activation.param) == ("leaky_relu", 0.2)
    module = activation.build()
    assert torch.allclose(module(torch.tensor([-1.0, 3.0])), torch.tensor([-0.2, 3.0]))


def test_options_parse_from_text_and_reject_negative_slopes():
    assert build_options("relu", relu.ReluOptions, {"negative_slope": "0.01"}).negative_slope == 0.01
    with pytest.raises(UserError, match="relu.negative_slope=-0.5"):
        build_options("relu", relu.ReluOptions, {"negative_slope": "-0.5"})


def test_a_relu_network_learns_separable_data():
    manager = testing.plugin_manager(relu)
    network, losses = testing.train_steps(manager, testing.settings(batch_size=50), steps=100)
    assert losses[0] > 2.0 and losses[-1] < 0.6


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(relu)]
