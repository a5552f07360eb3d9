"""Tests with the pytest fixtures mnist-trainer installs: mnist_manager, mnist_settings, mnist_data."""

import pytest
{%- if cookiecutter.stage in ("init", "regularizer", "loss", "optimizer", "activation", "model") %}
import torch
{%- endif %}
{%- if cookiecutter.stage == "loss" %}
import torch.nn.functional as F
{%- endif %}

import {{ cookiecutter.__module }} as plugin
from mnist_trainer import UserError, testing
from mnist_trainer.testing import build_options
{%- if cookiecutter.stage == "init" %}
from mnist_trainer.weights import layers
{%- endif %}

Options = plugin.{{ cookiecutter.__options }}
{% if cookiecutter.stage == "events" %}
BAD = ("smoothing", "1")


def test_the_column_is_the_smoothed_training_loss(mnist_manager, mnist_settings, mnist_data):
    settings = mnist_settings(Options(smoothing=0.5), epochs=3, hidden=(32,), lr=0.01)
    run = testing.fit(mnist_manager(plugin), settings, mnist_data)
    expected = run.history[0]["train_loss"]
    for row in run.history:
        expected = 0.5 * expected + 0.5 * row["train_loss"]  # the first epoch's value is its own loss
        assert row["smoothed_train_loss"] == pytest.approx(expected, rel=1e-12)
    assert run.history[-1]["smoothed_train_loss"] > run.history[-1]["train_loss"]  # the loss falls: the average lags
{% elif cookiecutter.stage == "init" %}
BAD = ("scale", "0")


def test_every_weight_is_drawn_uniformly_within_scale(mnist_manager, mnist_settings):
    network = testing.build(mnist_manager(plugin), mnist_settings(Options(scale=0.02), hidden=(64,)))
    weights = torch.cat([layer.weight.flatten() for layer in layers(network)])
    assert weights.abs().max().item() <= 0.02
    assert weights.std().item() == pytest.approx(0.02 / 3**0.5, rel=0.02)  # U(-a, a) has std a / sqrt(3)
{% elif cookiecutter.stage == "regularizer" %}
BAD = ("std", "0")


def test_training_images_get_noise_of_the_asked_std(mnist_manager, mnist_settings, mnist_data):
    (name, regularizer), = testing.compose(mnist_manager(plugin), mnist_settings(Options(std=0.3))).regularizers
    images, labels = mnist_data.train.images, mnist_data.train.labels
    noisy, same = regularizer.transform(images, labels, torch.Generator().manual_seed(0))
    assert torch.equal(same, labels) and noisy.shape == images.shape
    assert (noisy - images).std().item() == pytest.approx(0.3, rel=0.01)
{% elif cookiecutter.stage == "loss" %}
BAD = ("temperature", "0")


def test_the_loss_is_the_cross_entropy_of_scaled_logits(mnist_manager, mnist_settings, mnist_data):
    name, loss = testing.compose(mnist_manager(plugin), mnist_settings(Options(temperature=2.0))).loss
    logits, labels = torch.randn(50, 10, generator=torch.Generator().manual_seed(0)), mnist_data.train.labels[:50]
    assert loss.compute(logits, labels).item() == pytest.approx(F.cross_entropy(logits / 2, labels).item(), rel=1e-6)
    assert loss.compute(logits, labels).item() != pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-3)
{% elif cookiecutter.stage == "optimizer" %}
BAD = ("momentum", "1")


def test_training_with_it_lowers_the_loss(mnist_manager, mnist_settings, mnist_data):
    run = testing.fit(mnist_manager(plugin), mnist_settings(Options(momentum=0.5), epochs=3, lr=0.5, hidden=(32,)),
                      mnist_data)
    assert isinstance(run.optimizer, torch.optim.SGD) and run.optimizer.param_groups[0]["momentum"] == 0.5
    losses = [row["train_loss"] for row in run.history]
    assert losses[-1] < 0.5 * losses[0]
{% elif cookiecutter.stage == "schedule" %}
BAD = ("gamma", "0")


def test_each_epoch_starts_at_lr_times_gamma_to_the_epochs_before(mnist_manager, mnist_settings, mnist_data):
    settings = mnist_settings(Options(gamma=0.5), epochs=3, lr=0.01, hidden=(16,))
    run = testing.fit(mnist_manager(plugin), settings, mnist_data)
    assert [row["lr"] for row in run.history] == pytest.approx([0.01, 0.005, 0.0025], rel=1e-9)
{% elif cookiecutter.stage == "metrics" %}
BAD = ("k", "11")


def test_top_k_accuracy_is_at_least_accuracy_and_top_10_is_everything(mnist_manager, mnist_settings, mnist_data):
    manager = mnist_manager(plugin)
    run = testing.fit(manager, mnist_settings(epochs=2, hidden=(32,)), mnist_data)
    last = run.history[-1]
    assert last["test_accuracy"] < last["test_top3_accuracy"] <= 1
    assert testing.evaluate(manager, run.network, mnist_data.test, mnist_settings(Options(k=10)))["top10_accuracy"] == 1
{% elif cookiecutter.stage == "activation" %}
BAD = ("negative_slope", "-1")


def test_every_hidden_block_has_the_leaky_relu(mnist_manager, mnist_settings):
    network = testing.build(mnist_manager(plugin), mnist_settings(Options(negative_slope=0.25), hidden=(16, 16)))
    activations = [module for module in network.modules() if isinstance(module, torch.nn.LeakyReLU)]
    assert len(activations) == 2
    assert activations[0](torch.tensor([-2.0, 3.0])).tolist() == [-0.5, 3.0]
{% elif cookiecutter.stage == "model" %}
BAD = ("width", "0")


def test_it_maps_images_to_ten_logits_with_the_asked_width(mnist_manager, mnist_settings):
    network = testing.build(mnist_manager(plugin), mnist_settings(Options(width=20)))
    assert network(torch.rand(5, 784)).shape == (5, 10)
    assert sum(parameter.numel() for parameter in network.parameters()) == 784 * 20 + 20 + 20 * 10 + 10
{% endif %}

def test_a_bad_value_is_refused_in_one_line_naming_the_option():
    key, value = BAD
    with pytest.raises(UserError, match=f"invalid value for -o {{ cookiecutter.name }}.{key}={value}") as raised:
        build_options("{{ cookiecutter.name }}", Options, {key: value})
    assert "\n" not in raised.value.message


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(plugin)]
