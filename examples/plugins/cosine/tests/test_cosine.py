"""Tested the way a third-party author would: the pytest fixtures that mnist-trainer installs."""

import math

import pytest
import torch

import mnist_trainer_cosine as cosine
from mnist_trainer import Optimizer, UserError, hookimpl, testing
from mnist_trainer.testing import build_options


class StandInSgd:
    """An optimizer plugin of this test's own, so that cosine is shown to anneal more than the core's Adam."""

    @hookimpl
    def mnist_trainer_optimizer(self):
        return Optimizer("SGD", lambda parameters, lr: torch.optim.SGD(parameters, lr=lr), lr=0.1)


class LrAfterEachStep:
    """A run listener recording the learning rate after every optimizer step."""

    def __init__(self):
        self.lrs = []

    @hookimpl
    def mnist_trainer_step_end(self, run):
        self.lrs.append(run.optimizer.param_groups[0]["lr"])


def annealed(lr, eta_min, done):
    """The cosine formula: the rate after `done`, a fraction of the run, has passed."""
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * done)) / 2


@pytest.mark.parametrize("others, optimizer", [((), torch.optim.Adam), ((StandInSgd(),), torch.optim.SGD)])
@pytest.mark.parametrize("eta_min", [0.0, 0.002])
def test_each_epoch_starts_at_the_cosine_rate(mnist_manager, mnist_settings, mnist_data, others, optimizer, eta_min):
    epochs, lr = 6, 0.01
    run = testing.fit(mnist_manager(cosine, *others),
                      mnist_settings(cosine.CosineOptions(eta_min=eta_min), epochs=epochs, lr=lr, hidden=(16,)),
                      mnist_data)
    assert isinstance(run.optimizer, optimizer)
    assert [row["epoch"] for row in run.history] == list(range(1, epochs + 1))
    for row in run.history:
        assert row["lr"] == pytest.approx(annealed(lr, eta_min, (row["epoch"] - 1) / epochs), rel=1e-9)
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(eta_min, abs=1e-12)


def test_per_batch_moves_the_rate_after_every_step(mnist_manager, mnist_settings, mnist_data):
    epochs, lr, eta_min = 3, 0.01, 0.001
    listener = LrAfterEachStep()
    run = testing.fit(mnist_manager(cosine),
                      mnist_settings(cosine.CosineOptions(eta_min=eta_min, per="batch"), epochs=epochs, lr=lr,
                                     hidden=(16,)),
                      mnist_data, listeners=(listener,))
    steps = run.steps_per_epoch * epochs
    assert run.steps_per_epoch == 12 and len(listener.lrs) == steps
    for step, seen in enumerate(listener.lrs, start=1):
        assert seen == pytest.approx(annealed(lr, eta_min, step / steps), rel=1e-9)
    for row in run.history:
        assert row["lr"] == pytest.approx(annealed(lr, eta_min, (row["epoch"] - 1) / epochs), rel=1e-9)


def test_the_pipeline_names_it(mnist_manager, mnist_settings):
    options = cosine.CosineOptions(eta_min=0.0001, per="batch")
    pipeline = testing.compose(mnist_manager(cosine), mnist_settings(options, epochs=4, lr=0.02))
    [(name, schedule)] = pipeline.schedules
    assert name == "cosine" and schedule.per == "batch"
    assert dict(pipeline.describe())["optimizer"] == (
        "Adam (fused) [core default], lr=0.02 (--lr); cosine to eta_min=0.0001 over 4 epochs, per batch [cosine]")


class WarmUp:
    """A warm-up schedule of this test's own: the rate rises linearly over the first two epochs (torch's LinearLR)."""

    @hookimpl
    def mnist_trainer_schedule(self):
        from mnist_trainer import Schedule

        return Schedule("warm-up over 2 epochs", lambda optimizer, steps, epochs: torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=0.25, total_iters=2))


def test_it_chains_after_a_warm_up_and_the_rate_used_is_recorded(mnist_manager, mnist_settings, mnist_data):
    epochs, lr = 6, 0.01
    run = testing.fit(mnist_manager(cosine, warm=WarmUp()), mnist_settings(epochs=epochs, lr=lr, hidden=(16,)),
                      mnist_data)
    warm = [min(1.0, 0.25 + 0.75 * epoch / 2) for epoch in range(epochs)]
    # chained as torch's ChainedScheduler chains them: each epoch's rate is the cosine rate times the warm-up factor
    expected = [annealed(lr, 0.0, epoch / epochs) * factor for epoch, factor in enumerate(warm)]
    assert [row["lr"] for row in run.history] == pytest.approx(expected, rel=1e-6)


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(cosine)]


def test_options_arrive_as_strings():
    assert (build_options("cosine", cosine.CosineOptions, {"eta_min": "1e-4", "per": "batch"})
            == cosine.CosineOptions(0.0001, "batch"))


@pytest.mark.parametrize("key, value", [("eta_min", "-0.1"), ("eta_min", "none"), ("per", "step")])
def test_bad_values_are_refused(key, value):
    with pytest.raises(UserError, match=f"invalid value for -o cosine.{key}={value}"):
        build_options("cosine", cosine.CosineOptions, {key: value})
