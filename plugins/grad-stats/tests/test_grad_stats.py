"""grad-stats alone: its averages against a direct computation, the vanishing gradient it shows, the contract it
keeps."""

import math

import pytest
from torch import nn

import mnist_trainer_grad_stats as grad_stats
from mnist_trainer import Activation, hookimpl, testing
from mnist_trainer.weights import layers


class Direct:
    """Computes each step's gradient RMS per weight layer in plain Python, to check grad-stats against."""

    def __init__(self):
        self.sums, self.steps = None, 0

    @hookimpl
    def mnist_trainer_before_step(self, run):
        values = [math.sqrt(layer.weight.grad.pow(2).mean().item()) for layer in layers(run.network)]
        self.sums = values if self.sums is None else [a + b for a, b in zip(self.sums, values)]
        self.steps += 1


class Relu:
    """Stands in for the relu plugin, which grad-stats' tests must not import."""

    @hookimpl
    def mnist_trainer_activation(self):
        return Activation("ReLU", nn.ReLU, "relu")


def test_each_epoch_row_holds_the_average_rms_of_every_layer(mnist_manager, mnist_settings, mnist_data):
    direct = Direct()
    run = testing.fit(mnist_manager(grad_stats), mnist_settings(hidden=(32, 16), epochs=2), mnist_data,
                      listeners=(direct,))
    last = run.history[-1]
    assert [key for key in last if key.startswith(("grad_rms", "weight_rms"))] == [
        "grad_rms_1", "weight_rms_1", "grad_rms_2", "weight_rms_2", "grad_rms_3", "weight_rms_3"]
    first_epoch = [run.history[0][f"grad_rms_{i}"] for i in (1, 2, 3)]
    assert direct.steps == 24  # two epochs of 12 steps; the second epoch's sums started again from zero
    weights_now = [layer.weight.pow(2).mean().sqrt().item() for layer in layers(run.network)]
    # loosely: the weights drift within the epoch
    assert [last[f"weight_rms_{i}"] for i in (1, 2, 3)] == pytest.approx(weights_now, rel=0.05)
    assert all(value > 0 for value in first_epoch)
    total = [(run.history[0][f"grad_rms_{i}"] + last[f"grad_rms_{i}"]) * 12 for i in (1, 2, 3)]
    assert total == pytest.approx(direct.sums, rel=1e-5)


def test_no_autograd_graph_grows_from_step_to_step(mnist_manager, mnist_settings, mnist_data):
    class Sums:
        @hookimpl(trylast=True)
        def mnist_trainer_before_step(self, run):
            self.sums = run.state(grad_stats.GradStats).sums

    sums = Sums()
    testing.fit(mnist_manager(grad_stats), mnist_settings(hidden=(32,)), mnist_data, listeners=(sums,))
    assert sums.sums is not None and not sums.sums.requires_grad


def test_it_shows_the_vanishing_gradient_of_a_deep_sigmoid_network(mnist_manager, mnist_settings, mnist_data):
    settings = mnist_settings(hidden=(256,) * 5, epochs=1)
    sigmoid = testing.fit(mnist_manager(grad_stats), settings, mnist_data).history[0]
    relu = testing.fit(mnist_manager(grad_stats, relu=Relu()), settings, mnist_data).history[0]
    assert sigmoid["grad_rms_1"] < relu["grad_rms_1"] / 100
    assert sigmoid["grad_rms_1"] < sigmoid["grad_rms_6"] / 100  # and it shrinks from the output towards the input


def test_it_keeps_the_plugin_contract():
    checked = testing.check_plugin(grad_stats)
    assert [check.property for check in checked][-1] == "state on the run's device"
