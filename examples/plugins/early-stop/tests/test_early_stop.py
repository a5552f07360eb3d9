"""Tested the way a third-party author would: the pytest fixtures that mnist-trainer installs.

On the fixtures' synthetic data with a small (32, 32) sigmoid MLP and the kit's seed,
lr=0.01 improves test_loss every epoch, while lr=0.05 diverges to chance after
epoch 2 (test_loss best at epoch 2, then worse).
"""

import pytest

import mnist_trainer_early_stop as early_stop
from mnist_trainer import UserError, hookimpl, testing

IMPROVING, DIVERGING = 0.01, 0.05
HIDDEN = (32, 32)  # the small sigmoid MLP these rates were chosen for


class Reports:
    """A listener keeping every `run.report` line."""

    def __init__(self):
        self.lines = []

    @hookimpl
    def mnist_trainer_report(self, stage, values):
        self.lines.append((stage, values))


def fit(mnist_manager, mnist_settings, data, lr, epochs=10, listeners=(), **options):
    settings = mnist_settings(early_stop.EarlyStopOptions(**options), epochs=epochs, lr=lr, hidden=HIDDEN)
    return testing.fit(mnist_manager(early_stop), settings, data, listeners=listeners)


def test_a_run_that_stops_improving_stops_at_best_epoch_plus_patience(mnist_manager, mnist_settings, mnist_data):
    reports = Reports()
    run = fit(mnist_manager, mnist_settings, mnist_data, DIVERGING, patience=2, listeners=(reports,))
    losses = [row["test_loss"] for row in run.history]
    best_epoch = losses.index(min(losses)) + 1
    assert best_epoch == 2
    assert run.status == "stopped" and run.reason == "stopped early at epoch 4, best epoch 2"
    assert len(run.history) == best_epoch + 2
    assert reports.lines == [("early-stop", {"best_epoch": 2, "test_loss": losses[1]})]


def test_the_saved_model_holds_the_best_epochs_weights(mnist_manager, mnist_settings, mnist_data, tmp_path):
    import torch

    settings = mnist_settings(early_stop.EarlyStopOptions(patience=2), epochs=10, lr=DIVERGING, hidden=HIDDEN)
    run = testing.fit(mnist_manager(early_stop), settings, mnist_data, out=tmp_path / "run")
    best, last = run.history[1], run.history[-1]
    assert (best["test_loss"], best["test_accuracy"]) != (last["test_loss"], last["test_accuracy"])
    model = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert model["epoch"] == 2
    run.network.load_state_dict(model["state_dict"])
    metrics = testing.evaluate(mnist_manager(early_stop), run.network, mnist_data.test)
    assert metrics == {"loss": best["test_loss"], "accuracy": best["test_accuracy"]}


def test_a_run_that_keeps_improving_completes(mnist_manager, mnist_settings, mnist_data):
    reports = Reports()
    run = fit(mnist_manager, mnist_settings, mnist_data, IMPROVING, epochs=6, patience=1, listeners=(reports,))
    assert run.status == "completed" and run.reason == "trained 6 epochs" and len(run.history) == 6
    assert reports.lines == [("early-stop", {"best_epoch": 6, "test_loss": run.history[-1]["test_loss"]})]


def test_an_improvement_must_exceed_min_delta(mnist_manager, mnist_settings, mnist_data):
    run = fit(mnist_manager, mnist_settings, mnist_data, IMPROVING, epochs=4, patience=1, min_delta=0.2)
    first, second = (row["test_loss"] for row in run.history)
    assert 0 < first - second < 0.2  # better, but by less than min_delta: not an improvement
    assert run.reason == "stopped early at epoch 2, best epoch 1"


def test_accuracy_is_maximised_unless_mode_says_otherwise(mnist_manager, mnist_settings, mnist_data):
    run = fit(mnist_manager, mnist_settings, mnist_data, IMPROVING, patience=2, metric="test_accuracy")
    accuracies = [row["test_accuracy"] for row in run.history]
    assert accuracies[4] > accuracies[5] < accuracies[6]  # a dip shorter than patience is waited out
    assert accuracies.index(max(accuracies)) + 1 == 7
    assert run.reason == "stopped early at epoch 9, best epoch 7"
    run = fit(mnist_manager, mnist_settings, mnist_data, IMPROVING, patience=2, metric="test_accuracy", mode="min")
    assert run.history[1]["test_accuracy"] > run.history[0]["test_accuracy"]
    assert run.reason == "stopped early at epoch 3, best epoch 1"


def test_mode_max_on_a_loss_treats_every_decrease_as_worse(mnist_manager, mnist_settings, mnist_data):
    run = fit(mnist_manager, mnist_settings, mnist_data, IMPROVING, patience=3, mode="max")
    assert run.history[3]["test_loss"] < run.history[0]["test_loss"]
    assert run.reason == "stopped early at epoch 4, best epoch 1"


def test_an_unknown_metric_names_the_available_ones(mnist_manager, mnist_settings, mnist_data):
    with pytest.raises(UserError) as raised:
        fit(mnist_manager, mnist_settings, mnist_data, IMPROVING, epochs=2, metric="val_loss")
    assert raised.value.message == (
        "-o early-stop.metric=val_loss is not a metric of the epoch row; "
        "choose one of: train_loss, test_loss, test_accuracy"
    )
    with pytest.raises(UserError, match="-o early-stop.metric=lr is not a metric"):
        fit(mnist_manager, mnist_settings, mnist_data, IMPROVING, epochs=2, metric="lr")


def test_patience_running_out_at_the_last_epoch_is_a_completed_run(mnist_manager, mnist_settings, mnist_data):
    run = fit(mnist_manager, mnist_settings, mnist_data, DIVERGING, epochs=4, patience=2)  # best epoch 2, then 2 worse
    assert (run.status, len(run.history), run.kept[0]) == ("completed", 4, 2)


@pytest.mark.parametrize("field, value",
                         [("patience", "0"), ("patience", "1.5"), ("min_delta", "-0.1"), ("mode", "median")])
def test_bad_options_are_refused(field, value):
    with pytest.raises(ValueError):
        early_stop.EarlyStopOptions(**{field: value})


def test_runs_on_one_manager_share_no_state(mnist_manager, mnist_settings, mnist_data):
    manager = mnist_manager(early_stop)
    first = testing.fit(manager, mnist_settings(epochs=10, lr=IMPROVING, hidden=HIDDEN), mnist_data)
    second = testing.fit(manager, mnist_settings(epochs=10, lr=DIVERGING, hidden=HIDDEN), mnist_data)
    assert (first.status == "completed"
            and min(row["test_loss"] for row in second.history) > first.history[-1]["test_loss"])
    assert second.reason == "stopped early at epoch 5, best epoch 2"  # its own best, not the first run's


def test_it_keeps_the_plugin_contract():
    checked = testing.check_plugin(early_stop)
    assert ([check.detail for check in checked if check.property == "state on the run's device"]
            != ["0 state tensors on cpu"])
