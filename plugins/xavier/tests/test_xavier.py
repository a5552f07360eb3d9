"""Xavier alone: empirical weight variance against Glorot's formula, on Linear and Conv2d weights."""

import math

import pytest
import torch

import mnist_trainer_xavier as xavier
from mnist_trainer import UserError, testing
from mnist_trainer.testing import build_options
from mnist_trainer.weights import layers

HIDDEN = (512, 128)  # weights 784x512, 512x128 and 128x10
TOLERANCE = 0.04


def built(model=None, **options):
    manager = testing.plugin_manager(xavier, **({"model": model} if model else {}))
    return layers(testing.build(manager, testing.settings(xavier.XavierOptions(**options),
                                                          hidden=None if model else HIDDEN)))


def glorot_variance(weight, gain):
    fan_out, fan_in = weight.shape[:2]
    receptive = weight[0, 0].numel()  # a convolution's kernel area; 1 for a Linear
    return gain**2 * 2.0 / (fan_in * receptive + fan_out * receptive)


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_variance_matches_glorot(distribution, gain):
    *hidden, output = built(distribution=distribution, gain=gain)
    for linear in hidden:
        weight = linear.weight
        expected = glorot_variance(weight, gain)
        assert weight.var().item() == pytest.approx(expected, rel=TOLERANCE)
        fan_out, fan_in = weight.shape
        # the tolerance is tight enough to reject the usual mistakes
        for wrong in (gain**2 / fan_in, gain**2 / fan_out, expected / gain**2 if gain != 1 else 2 * expected):
            assert abs(wrong / expected - 1) > 2 * TOLERANCE
    assert output.weight.var().item() == pytest.approx(glorot_variance(output.weight, 1.0), rel=0.25)  # output: gain 1


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_convolutions_use_channels_times_kernel_area(distribution):
    first, second, output = built(testing.ConvModel((256, 128)), distribution=distribution, gain=2.0)
    for conv in (first, second):  # 6,400 and 294,912 weights
        measured = conv.weight.var().item()
        assert measured == pytest.approx(glorot_variance(conv.weight, 2.0), rel=0.06)
        # far below the variance with the kernel area forgotten
        assert measured < glorot_variance(conv.weight[:, :, 0, 0], 2.0) / 5
    assert output.weight.var().item() == pytest.approx(glorot_variance(output.weight, 1.0), rel=0.1)


def test_uniform_stays_inside_the_bound():
    for linear in built(distribution="uniform")[:-1]:
        bound = math.sqrt(3 * glorot_variance(linear.weight, 1.0))
        assert linear.weight.abs().max().item() <= bound
        assert linear.weight.abs().max().item() > 0.99 * bound


def test_biases_are_untouched():
    torch.manual_seed(0)
    default = layers(testing.build(testing.plugin_manager(), testing.settings(hidden=HIDDEN)))
    for a, b in zip(default, built()):
        assert torch.equal(a.bias, b.bias)
        assert not torch.equal(a.weight, b.weight)


def test_gain_can_name_the_active_activation():
    sigmoid = built(gain="activation")[0].weight  # the core's sigmoid: gain 1
    assert sigmoid.var().item() == pytest.approx(glorot_variance(sigmoid, 1.0), rel=TOLERANCE)
    tanh = built(gain="tanh")[0].weight
    assert tanh.var().item() == pytest.approx(glorot_variance(tanh, 5 / 3), rel=TOLERANCE)


@pytest.mark.parametrize("values, words", [
    ({"gain": "steep"}, "neither a number nor one of"),
    ({"gain": "0"}, "above 0"),
    ({"distribution": "cauchy"}, "uniform, normal"),
])
def test_bad_options(values, words):
    with pytest.raises(UserError, match=words):
        build_options("xavier", xavier.XavierOptions, values)


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(xavier)]
