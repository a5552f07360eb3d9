"""cnn alone: the network it builds, how the slots fill it, its options; other plugins are stood in for."""

import pytest
import torch
from torch import nn

import mnist_trainer_cnn as cnn
from mnist_trainer import Activation, Norm, Regularizer, UserError, hookimpl, testing
from mnist_trainer.testing import build_options


class Slots:
    """Stands in for relu, batchnorm and dropout, which cnn's tests must not import."""

    def __init__(self, norm2d=True):
        self.norm2d = norm2d

    @hookimpl
    def mnist_trainer_activation(self):
        return Activation("Tanh", nn.Tanh, "tanh")

    @hookimpl
    def mnist_trainer_norm(self):
        return Norm("BN", nn.BatchNorm1d, nn.BatchNorm2d if self.norm2d else None)

    @hookimpl
    def mnist_trainer_regularizer(self):
        return Regularizer("drop", dropout=lambda: nn.Dropout(0.25))


def manager(slots=None):
    return testing.plugin_manager(cnn, **({"slots": slots} if slots else {}))


def network(slots=None, **options):
    return testing.build(manager(slots), testing.settings(cnn.CnnOptions(**options)))


def test_the_default_is_lab_11s_network():
    layers = [type(module).__name__ for module in network()]
    assert layers == ["Unflatten", "Conv2d", "Sigmoid", "MaxPool2d", "Conv2d", "Sigmoid", "MaxPool2d", "Flatten",
                      "Linear"]
    convs = [module for module in network() if isinstance(module, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [(1, 32, (3, 3), (1, 1)),
                                                                                         (32, 64, (3, 3), (1, 1))]
    assert network()[-1].in_features == 64 * 7 * 7 and network()[-1].out_features == 10
    assert network().eval()(torch.rand(5, 784)).shape == (5, 10)


def test_the_slots_fill_every_block():
    layers = [type(module).__name__ for module in network(Slots())]
    assert layers == ["Unflatten", "Conv2d", "BatchNorm2d", "Tanh", "MaxPool2d", "Conv2d", "BatchNorm2d", "Tanh",
                      "MaxPool2d", "Flatten", "Dropout", "Linear"]
    norms = [module for module in network(Slots()) if isinstance(module, nn.BatchNorm2d)]
    assert [norm.num_features for norm in norms] == [32, 64]
    lines = dict(testing.compose(manager(Slots()), testing.settings()).describe())
    assert lines["model"] == ("CNN, 2 blocks: Conv2d 3x3 (32, 64 channels) -> BN [slots] -> Tanh [slots] -> "
                              "MaxPool2d 2x2; then drop [slots] -> Linear(3136, 10) [cnn]")


def test_a_norm_without_a_2d_form_is_refused():
    with pytest.raises(UserError,
                       match=r"has no 2-d norm \(Norm.build2d\) for the convolutions of the model of plugin 'cnn'"):
        testing.compose(manager(Slots(norm2d=False)), testing.settings())


@pytest.mark.parametrize("channels, features", [("16", 16 * 14 * 14), ("8,16,24", 24 * 3 * 3), ((4, 4, 4, 4), 4)])
def test_channels_set_the_blocks(channels, features):
    built = network(channels=channels)
    assert [m.out_channels for m in built if isinstance(m, nn.Conv2d)] == list(cnn.to_channels(channels))
    assert built[-1].in_features == features and built.eval()(torch.rand(2, 784)).shape == (2, 10)


@pytest.mark.parametrize("value", ["0,8", "a,b", "8,8,8,8,8", ""])
def test_bad_channels_are_refused(value):
    with pytest.raises(UserError, match=f"-o cnn.channels={value}"):
        build_options("cnn", cnn.CnnOptions, {"channels": value})


def test_options_read_back_from_a_saved_run():
    assert build_options("cnn", cnn.CnnOptions, {"channels": [16, 32]}) == cnn.CnnOptions(channels=(16, 32))


def test_it_learns():
    run = testing.fit(manager(Slots()), testing.settings(cnn.CnnOptions(channels="8,16"), epochs=3))
    losses = [row["train_loss"] for row in run.history]
    assert losses[-1] < 0.5 * losses[0] and run.history[-1]["test_accuracy"] > 0.9


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(cnn)]
