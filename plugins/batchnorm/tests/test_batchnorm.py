"""Batch norm alone: its slot, running statistics, and batch-independence in evaluation mode."""

import pytest
import torch
from torch import nn

import mnist_trainer_batchnorm as batchnorm
from mnist_trainer import UserError, testing
from mnist_trainer.testing import build_options


def built(**options):
    return testing.build(testing.plugin_manager(batchnorm), testing.settings(batchnorm.BatchNormOptions(**options)))


def test_after_each_hidden_linear_and_before_the_activation():
    network = built(momentum=0.2, eps=1e-3)
    for block in network.blocks:
        assert list(dict(block.named_children())) == ["linear", "norm", "activation"]
        assert isinstance(block.norm, nn.BatchNorm1d) and block.norm.num_features == block.linear.out_features
        assert (block.norm.momentum, block.norm.eps) == (0.2, 1e-3)


def test_training_moves_the_running_statistics():
    network, _ = testing.train_steps(testing.plugin_manager(batchnorm), steps=3)
    norm = network.blocks[0].norm
    assert norm.num_batches_tracked.item() == 3
    assert not torch.allclose(norm.running_mean, torch.zeros_like(norm.running_mean))
    assert not torch.allclose(norm.running_var, torch.ones_like(norm.running_var))


def test_in_evaluation_a_sample_scores_the_same_alone_or_in_any_batch():
    network, _ = testing.train_steps(testing.plugin_manager(batchnorm), steps=5)
    images = testing.tiny_data().test.images
    network.eval()
    with torch.no_grad():
        alone = network(images[:1])
        for batch in (images[:2], images[:50], torch.cat([images[:1], images[50:]])):
            assert torch.allclose(network(batch)[:1], alone, atol=1e-6)
    network.train()
    with torch.no_grad():
        assert not torch.allclose(network(images[:2])[:1], network(images[:50])[:1], atol=1e-3)


@pytest.mark.parametrize("values, words", [({"momentum": "0"}, "momentum=0"), ({"eps": "-1"}, "eps=-1"),
                                           ({"momentum": "fast"}, "momentum=fast")])
def test_bad_options(values, words):
    with pytest.raises(UserError, match=words):
        build_options("batchnorm", batchnorm.BatchNormOptions, values)


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(batchnorm)]
