"""Xavier alone: empirical weight variance against Glorot's formula, for several shapes."""

import math

import pytest
import torch

import mnist_trainer_xavier as xavier
from mnist_trainer import UserError, testing
from mnist_trainer.settings import build_options

HIDDEN = (512, 128)  # weights 784x512, 512x128 and 128x10
TOLERANCE = 0.04


def built(**options):
    settings = testing.settings(xavier.XavierOptions(**options), hidden=HIDDEN)
    return testing.build(testing.plugin_manager(xavier), settings)


def glorot_variance(weight, gain):
    fan_out, fan_in = weight.shape
    return gain**2 * 2.0 / (fan_in + fan_out)


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_variance_matches_glorot(distribution, gain):
    network = built(distribution=distribution, gain=gain)
    for linear in network.hidden_linears:
        weight = linear.weight
        expected = glorot_variance(weight, gain)
        assert weight.var().item() == pytest.approx(expected, rel=TOLERANCE)
        fan_out, fan_in = weight.shape
        # the tolerance is tight enough to reject the usual mistakes
        for wrong in (gain**2 / fan_in, gain**2 / fan_out, expected / gain**2 if gain != 1 else 2 * expected):
            assert abs(wrong / expected - 1) > 2 * TOLERANCE
    output = network.output.weight
    assert output.var().item() == pytest.approx(glorot_variance(output, gain), rel=0.25)


def test_uniform_stays_inside_the_bound():
    for linear in built(distribution="uniform").hidden_linears:
        bound = math.sqrt(3 * glorot_variance(linear.weight, 1.0))
        assert linear.weight.abs().max().item() <= bound
        assert linear.weight.abs().max().item() > 0.99 * bound


def test_biases_are_untouched():
    torch.manual_seed(0)
    default = testing.build(testing.plugin_manager(), testing.settings(hidden=HIDDEN))
    initialised = built()
    for a, b in zip(default.hidden_linears, initialised.hidden_linears):
        assert torch.equal(a.bias, b.bias)
        assert not torch.equal(a.weight, b.weight)


def test_gain_can_name_the_active_activation():
    network = built(gain="activation")  # the core's sigmoid: gain 1
    assert network.hidden_linears[0].weight.var().item() == pytest.approx(
        glorot_variance(network.hidden_linears[0].weight, 1.0), rel=TOLERANCE)
    tanh = built(gain="tanh")
    assert tanh.hidden_linears[0].weight.var().item() == pytest.approx(
        glorot_variance(tanh.hidden_linears[0].weight, 5 / 3), rel=TOLERANCE)


@pytest.mark.parametrize("values, words", [
    ({"gain": "steep"}, "neither a number nor one of"),
    ({"gain": "0"}, "above 0"),
    ({"distribution": "cauchy"}, "uniform, normal"),
])
def test_bad_options(values, words):
    with pytest.raises(UserError, match=words):
        build_options("xavier", xavier.XavierOptions, values)
