"""Dropout alone: rate, scaling, evaluation-mode identity, and its slot in every block."""

import pytest
import torch

import mnist_trainer_dropout as dropout
from mnist_trainer import UserError, testing
from mnist_trainer.testing import build_options


def built(p=0.3, hidden=(64, 64, 64)):
    return testing.build(testing.plugin_manager(dropout), testing.settings(dropout.DropoutOptions(p), hidden=hidden))


@pytest.mark.parametrize("p", [0.1, 0.3, 0.6])
def test_training_mode_zeroes_about_p_and_scales_survivors(p):
    network = built(p)
    network.train()
    torch.manual_seed(0)
    out = network.blocks[0].dropout(torch.ones(200, 500))
    assert (out == 0).float().mean().item() == pytest.approx(p, abs=0.01)
    assert torch.allclose(out[out != 0], torch.full_like(out[out != 0], 1 / (1 - p)))


def test_evaluation_mode_is_the_identity():
    network = built(0.5)
    network.eval()
    x = torch.rand(10, 64)
    assert torch.equal(network.blocks[1].dropout(x), x)


def test_in_the_dropout_slot_of_every_hidden_block():
    network = built(hidden=(32, 16, 8))
    assert [list(dict(block.named_children())) for block in network.blocks] == [["linear", "activation", "dropout"]] * 3
    assert all(block.dropout.p == 0.3 for block in network.blocks)


def test_default_is_the_course_labs_rate():
    assert dropout.DropoutOptions().p == 0.3


@pytest.mark.parametrize("value", ["1", "-0.1", "half"])
def test_p_must_be_a_probability_below_one(value):
    with pytest.raises(UserError, match=f"dropout.p={value}"):
        build_options("dropout", dropout.DropoutOptions, {"p": value})


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(dropout)]
