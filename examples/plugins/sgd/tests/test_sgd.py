"""Tested the way a third-party author would: the pytest fixtures that mnist-trainer installs."""

import pytest
import torch

import mnist_trainer_sgd as sgd
from mnist_trainer import UserError, testing
from mnist_trainer.testing import build_options


@pytest.mark.parametrize("options, expected", [
    (sgd.SgdOptions(), dict(momentum=0.9, nesterov=False, weight_decay=0.0)),
    (sgd.SgdOptions(momentum=0.5, nesterov=True, weight_decay=1e-4), dict(momentum=0.5, nesterov=True, weight_decay=1e-4)),
    (sgd.SgdOptions(momentum=0.0), dict(momentum=0.0, nesterov=False, weight_decay=0.0)),
])
def test_builds_torch_sgd_at_the_runs_lr_with_the_options(mnist_manager, mnist_settings, options, expected):
    optimizer = testing.compose(mnist_manager(sgd), mnist_settings(options, lr=0.05)).optimizer[1].build(
        torch.nn.Linear(3, 2).parameters(), 0.05)
    assert type(optimizer) is torch.optim.SGD
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.05
    assert {key: group[key] for key in expected} == expected


def test_training_with_it_lowers_the_loss(mnist_manager, mnist_settings, mnist_data):
    run = testing.fit(mnist_manager(sgd), mnist_settings(epochs=3, lr=0.5, hidden=(32,)), mnist_data)
    assert isinstance(run.optimizer, torch.optim.SGD)
    losses = [row["train_loss"] for row in run.history]
    assert losses[-1] < 0.25 * losses[0]
    assert run.history[-1]["test_accuracy"] > 0.9


def test_the_pipeline_names_it(mnist_manager, mnist_settings):
    options = sgd.SgdOptions(momentum=0.8, nesterov=True)
    lines = dict(testing.compose(mnist_manager(sgd), mnist_settings(options, lr=0.03)).describe())
    assert lines["optimizer"].startswith("SGD(momentum=0.8, nesterov=True, weight_decay=0.0) [sgd], lr=0.03 (--lr)")


def test_options_arrive_as_strings():
    values = {"momentum": "0.5", "nesterov": "yes", "weight_decay": "1e-3"}
    assert build_options("sgd", sgd.SgdOptions, values) == sgd.SgdOptions(momentum=0.5, nesterov=True, weight_decay=0.001)


def test_nesterov_without_momentum_is_refused():
    with pytest.raises(ValueError, match="nesterov=true needs momentum above 0"):
        sgd.SgdOptions(momentum=0.0, nesterov=True)
    with pytest.raises(UserError, match="invalid options for sgd: nesterov=true needs momentum above 0"):
        build_options("sgd", sgd.SgdOptions, {"momentum": "0", "nesterov": "true"})


@pytest.mark.parametrize("key, value", [("momentum", "-0.1"), ("momentum", "1"), ("momentum", "inf"), ("weight_decay", "-1"),
                                        ("weight_decay", "inf"), ("nesterov", "maybe"), ("momentum", "lots")])
def test_bad_values_are_refused(key, value):
    with pytest.raises(UserError, match=f"invalid value for -o sgd.{key}={value}"):
        build_options("sgd", sgd.SgdOptions, {key: value})


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(sgd)]
