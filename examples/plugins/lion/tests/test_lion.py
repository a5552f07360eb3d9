"""Tested the way a third-party author would: the pytest fixtures that mnist-trainer installs."""

import pytest
import torch

import mnist_trainer_lion as lion
from mnist_trainer import UserError, testing
from mnist_trainer.testing import build_options


def test_one_step_moves_each_weight_by_the_rate_along_the_sign_and_keeps_the_momentum():
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    weight.grad = torch.tensor([0.5, -0.25, 0.0])
    optimizer = lion.Lion([weight], lr=0.1, betas=(0.9, 0.99), weight_decay=0.1)
    optimizer.step()
    assert torch.allclose(weight.detach(), torch.tensor([0.99 - 0.1, -1.98 + 0.1, 0.495]))
    assert torch.allclose(optimizer.state_dict()["state"][0]["momentum"], torch.tensor([0.005, -0.0025, 0.0]))


def test_the_pipeline_names_it_at_its_conventional_rate(mnist_manager, mnist_settings):
    lines = dict(testing.compose(mnist_manager(lion), mnist_settings(lion.LionOptions(beta2=0.98))).describe())
    assert lines["optimizer"].startswith(
        "Lion (by hand): beta1=0.9, beta2=0.98, weight_decay=0.0 [lion], lr=0.0001 (its")


def test_training_with_it_lowers_the_loss(mnist_manager, mnist_settings, mnist_data):
    run = testing.fit(mnist_manager(lion), mnist_settings(epochs=3, hidden=(32,), lr=3e-3), mnist_data)
    assert isinstance(run.optimizer, lion.Lion)
    losses = [row["train_loss"] for row in run.history]
    assert losses[-1] < 0.5 * losses[0] and run.history[-1]["test_accuracy"] > 0.9


def test_options_arrive_as_strings():
    values = {"beta1": "0.95", "beta2": "0.98", "weight_decay": "1e-2"}
    assert (build_options("lion", lion.LionOptions, values)
            == lion.LionOptions(beta1=0.95, beta2=0.98, weight_decay=0.01))


@pytest.mark.parametrize("key, value", [("beta1", "1"), ("beta2", "-0.1"), ("weight_decay", "-1"), ("beta1", "nan")])
def test_bad_values_are_refused(key, value):
    with pytest.raises(UserError, match=f"invalid value for -o lion.{key}={value}"):
        build_options("lion", lion.LionOptions, {key: value})


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(lion)]
