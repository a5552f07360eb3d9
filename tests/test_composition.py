"""Every subset of {relu, dropout, batchnorm} crossed with {none, xavier, he}, through the installed plugins."""

import itertools

import pytest
import torch

from mnist_trainer import UserError, registry, testing
from mnist_trainer.pipeline import compose

MODEL = ("relu", "dropout", "batchnorm")
SELECTIONS = [list(subset) + init
              for size in range(len(MODEL) + 1) for subset in itertools.combinations(MODEL, size)
              for init in ([], ["xavier"], ["he"])]
SETTINGS = testing.settings(hidden=(24, 16), batch_size=20)


def trained(plugins):
    manager = registry.make_manager()
    registry.load(manager, plugins)
    network, losses = testing.train_steps(manager, SETTINGS, steps=3, data=DATA)
    return network, losses, compose(manager, SETTINGS)


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
    for order in itertools.islice(itertools.permutations(reversed(plugins)), 1, 3):
        again, again_losses, _ = trained(list(order))
        assert again_losses == losses
        assert all(torch.equal(a, b) for a, b in zip(network.state_dict().values(), again.state_dict().values()))
    assert network.eval()(DATA.test.images).shape == (len(DATA.test), 10)


def test_he_brings_relu_and_says_so():
    manager = registry.make_manager()
    reasons = registry.load(manager, ["batchnorm", "he"])
    lines = dict(compose(manager, SETTINGS, reasons).describe(SETTINGS.hidden))
    assert "ReLU [relu (required by he)]" in lines["model"] and "BatchNorm1d" in lines["model"]
    assert lines["init"].endswith("[he]")


def test_two_init_plugins_are_refused():
    manager = registry.make_manager()
    registry.load(manager, ["xavier", "he"])
    with pytest.raises(UserError, match="plugins 'he' and 'xavier' both fill the init slot"):
        compose(manager, SETTINGS)
