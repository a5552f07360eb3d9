"""Every subset of {relu, dropout, batchnorm} crossed with {none, xavier, he}, in the core's MLP and in cnn, and every
optimizer under a schedule, through the installed plugins."""

import itertools
import math

import pytest
import torch

import mnist_trainer_cnn as cnn
from mnist_trainer import UserError, registry, testing
from mnist_trainer.pipeline import compose

MODEL = ("relu", "dropout", "batchnorm")
SELECTIONS = [list(subset) + init
              for size in range(len(MODEL) + 1) for subset in itertools.combinations(MODEL, size)
              for init in ([], ["xavier"], ["he"])]
SETTINGS = testing.settings(hidden=(24, 16), batch_size=20)
CNN_SETTINGS = testing.settings(cnn.CnnOptions(channels=(4, 8)), batch_size=20)


def trained(plugins, settings=SETTINGS):
    manager = registry.make_manager()
    registry.load(manager, plugins)
    network, losses = testing.train_steps(manager, settings, steps=3, data=DATA)
    return network, losses, compose(manager, settings)


def same_for_every_flag_order(plugins, network, losses, settings=SETTINGS):
    for order in itertools.islice(itertools.permutations(reversed(plugins)), 1, 3):
        again, again_losses, _ = trained(list(order), settings)
        assert again_losses == losses
        assert all(torch.equal(a, b) for a, b in zip(network.state_dict().values(), again.state_dict().values()))


DATA = testing.tiny_data(200)


@pytest.mark.parametrize("plugins", SELECTIONS, ids=lambda p: "+".join(p) or "core")
def test_builds_trains_and_ignores_flag_order(plugins):
    network, losses, pipeline = trained(plugins)
    assert all(torch.isfinite(torch.tensor(losses)))
    blocks = [list(dict(block.named_children())) for block in network.blocks]
    expected = ["linear"] + ["norm"] * ("batchnorm" in plugins) + ["activation"] + ["dropout"] * ("dropout" in plugins)
    assert blocks == [expected, expected]
    relu = "relu" in plugins or "he" in plugins
    assert pipeline.activation[0] == ("relu" if relu else "core")
    same_for_every_flag_order(plugins, network, losses)
    assert network.eval()(DATA.test.images).shape == (len(DATA.test), 10)


@pytest.mark.parametrize("plugins", SELECTIONS, ids=lambda p: "+".join(["cnn", *p]))
def test_the_cnn_model_slot_takes_every_slot_and_init_plugin(plugins):
    network, losses, pipeline = trained(["cnn", *plugins], CNN_SETTINGS)
    assert all(torch.isfinite(torch.tensor(losses))) and pipeline.model[0] == "cnn"
    activation = "ReLU" if "relu" in plugins or "he" in plugins else "Sigmoid"
    block = ["Conv2d"] + ["BatchNorm2d"] * ("batchnorm" in plugins) + [activation, "MaxPool2d"]
    expected = ["Unflatten", *block, *block, "Flatten"] + ["Dropout"] * ("dropout" in plugins) + ["Linear"]
    assert [type(module).__name__ for module in network] == expected
    assert pipeline.init[0] == next((name for name in ("xavier", "he") if name in plugins), "core")
    same_for_every_flag_order(["cnn", *plugins], network, losses, CNN_SETTINGS)
    assert network.eval()(DATA.test.images).shape == (len(DATA.test), 10)


def test_he_brings_relu_and_says_so():
    manager = registry.make_manager()
    reasons = registry.load(manager, ["batchnorm", "he"])
    lines = dict(compose(manager, SETTINGS, reasons).describe())
    assert "ReLU [relu (required by he)]" in lines["model"] and "BatchNorm(momentum=0.1" in lines["model"]
    assert lines["init"].endswith("[he]")


def test_plugins_a_model_cannot_use_are_refused_when_composing():
    manager = registry.make_manager()
    registry.load(manager, ["cnn", "rbm-pretrain"])
    with pytest.raises(UserError, match="plugin 'rbm-pretrain' initialises only the mlp model, but the model of plugin "
                                        "'cnn' is a cnn; select one of them, not both"):
        compose(manager, testing.settings())
    with pytest.raises(UserError,
                       match=r"--hidden sets the widths of the core's MLP, and plugin 'cnn' builds its own network"):
        compose(registry.make_manager(cnn), testing.settings(hidden=(8,)))
    conv_only = testing.plugin_manager(model=testing.ConvModel())
    registry.load(conv_only, ["dropout"])
    with pytest.raises(UserError, match="plugin 'dropout' fills the dropout slot, "
                                        "which the model of plugin 'model' does not have"):
        compose(conv_only, testing.settings())


def test_two_init_plugins_are_refused():
    manager = registry.make_manager()
    registry.load(manager, ["xavier", "he"])
    with pytest.raises(UserError, match="plugins 'he' and 'xavier' both fill the init slot"):
        compose(manager, SETTINGS)


RATES = {"sgd": 0.01, "adadelta": 1.0, "adagrad": 0.01, "adamax": 0.002, "asgd": 0.01, "lbfgs": 1.0, "rmsprop": 0.001,
         "rprop": 0.01, "adamw": 0.001, "nadam": 0.002, "radam": 0.001}  # each optimizer's conventional rate


@pytest.mark.parametrize("optimizer", RATES)
def test_cosine_anneals_each_optimizers_own_rate_and_the_record_follows_it(optimizer):
    manager = registry.make_manager()
    registry.load(manager, ["cosine", optimizer])
    run = testing.fit(manager, testing.settings(epochs=4, hidden=(16,)), DATA)
    expected = [RATES[optimizer] * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in range(4)]
    assert [row["lr"] for row in run.history] == pytest.approx(expected, rel=1e-12)
    assert all(math.isfinite(row["train_loss"]) for row in run.history)
