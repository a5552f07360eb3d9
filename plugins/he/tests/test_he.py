"""He alone: empirical weight variance against Kaiming's formula, with the activation's gain."""

import math

import pytest
import torch
from torch import nn

import mnist_trainer_he as he
from mnist_trainer import Activation, hookimpl, testing
from mnist_trainer.weights import layers

HIDDEN = (512, 128)
TOLERANCE = 0.04


class LeakyActivation:
    """Stands in for the relu plugin, which he's tests must not import."""

    def __init__(self, slope):
        self.slope = slope

    @hookimpl
    def mnist_trainer_activation(self, settings):
        return Activation("LeakyReLU", lambda: nn.LeakyReLU(self.slope), "leaky_relu", self.slope)


def built(slope=0.0, model=None, **options):
    """The weight layers, input to output, as he initialised them."""
    manager = testing.plugin_manager(he, activation=LeakyActivation(slope), **({"model": model} if model else {}))
    return layers(testing.build(manager, testing.settings(he.HeOptions(**options), hidden=None if model else HIDDEN)))


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_variance_matches_kaiming(distribution, mode, slope):
    gain_squared = 2.0 / (1 + slope**2)
    for linear in built(slope, distribution=distribution, mode=mode)[:-1]:
        fan_out, fan_in = linear.weight.shape
        fan = fan_in if mode == "fan_in" else fan_out
        expected = gain_squared / fan
        assert linear.weight.var().item() == pytest.approx(expected, rel=TOLERANCE)
        wrong_fan = fan_out if mode == "fan_in" else fan_in
        for wrong in (gain_squared / wrong_fan, 1.0 / fan):  # the other mode; the gain forgotten
            assert abs(wrong / expected - 1) > 2 * TOLERANCE


def test_output_layer_uses_gain_one():
    output = built()[-1].weight
    assert output.var().item() == pytest.approx(1.0 / output.shape[1], rel=0.2)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_convolutions_use_channels_times_kernel_area(mode):
    first, second, output = built(model=testing.ConvModel((256, 128)), distribution="normal", mode=mode)
    for conv in (first, second):  # 6,400 and 294,912 weights
        out_channels, in_channels, height, width = conv.weight.shape
        fan = (in_channels if mode == "fan_in" else out_channels) * height * width
        measured = conv.weight.var().item()
        assert measured == pytest.approx(2.0 / fan, rel=0.06)
        assert measured < 2.0 / (fan / (height * width)) / 5  # far below the variance with the kernel area forgotten
    assert output.weight.var().item() == pytest.approx(1.0 / output.weight.shape[1 if mode == "fan_in" else 0], rel=0.1)


def test_uniform_stays_inside_the_bound():
    for linear in built(distribution="uniform")[:-1]:
        bound = math.sqrt(3 * 2.0 / linear.weight.shape[1])
        assert bound * 0.99 < linear.weight.abs().max().item() <= bound


def test_requires_relu():
    assert he.mnist_trainer_requires() == ("relu",)


def test_matches_torch_kaiming_for_the_same_random_state():
    weight = built(slope=0.1, distribution="normal")[0].weight
    reference = torch.empty_like(weight)
    nn.init.kaiming_normal_(reference, a=0.1, mode="fan_in", nonlinearity="leaky_relu")
    assert reference.std().item() == pytest.approx(weight.std().item(), rel=0.02)


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(he)]
