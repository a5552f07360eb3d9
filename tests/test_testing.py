"""The helpers plugin authors test with, used the way they use them: as pytest fixtures."""

import torch

from mnist_trainer import Norm, hookimpl, testing


class LayerNorm:
    @hookimpl
    def mnist_trainer_norm(self, settings):
        return Norm("LayerNorm", torch.nn.LayerNorm)


def test_fixtures_build_a_manager_settings_and_data(mnist_manager, mnist_settings, mnist_data):
    manager = mnist_manager(layernorm=LayerNorm())
    network = testing.build(manager, mnist_settings(hidden=(24,)), data=mnist_data)
    assert isinstance(network.blocks[0].norm, torch.nn.LayerNorm) and network.blocks[0].norm.normalized_shape == (24,)
    assert mnist_data.train.images.shape == (600, 784) and mnist_data.test.images.shape == (100, 784)
    assert testing.compose(manager).norm[0] == "layernorm"


def test_train_steps_is_deterministic(mnist_manager, mnist_settings):
    runs = [testing.train_steps(mnist_manager(), mnist_settings(), steps=3) for _ in range(2)]
    assert runs[0][1] == runs[1][1]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters()))
