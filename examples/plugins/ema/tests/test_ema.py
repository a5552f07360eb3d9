"""Tested the way a third-party author would: the pytest fixtures that mnist-trainer installs."""

import pytest
import torch

import mnist_trainer_ema as ema
from mnist_trainer import Norm, UserError, hookimpl, testing
from mnist_trainer.testing import build_options

SMALL = dict(hidden=(32,), lr=0.01)  # a small MLP at a rate that learns the fixtures' data in a few epochs


class StandInBatchNorm:
    """A norm plugin of this test's own, so that the average has running statistics to deal with."""

    @hookimpl
    def mnist_trainer_norm(self):
        return Norm("BatchNorm1d", lambda width: torch.nn.BatchNorm1d(width), min_batch=2)


class Steps:
    """The network's state_dict after every optimizer step."""

    def __init__(self):
        self.seen = []

    @hookimpl(trylast=True)
    def mnist_trainer_step_end(self, run):
        self.seen.append({key: tensor.clone() for key, tensor in run.network.state_dict().items()})


class StopInEpoch2:
    """Ctrl-C in the middle of the second epoch."""

    @hookimpl
    def mnist_trainer_step_end(self, run):
        if run.step == run.steps_per_epoch + run.steps_per_epoch // 2:
            raise KeyboardInterrupt


def debiased_average(values: list[torch.Tensor], decay: float) -> torch.Tensor:
    """sum_i (1 - decay) decay^(t-i) value_i / (1 - decay^t), in float64: the definition, not the plugin's recursion."""
    t = len(values)
    weights = torch.tensor([(1 - decay) * decay ** (t - i) for i in range(1, t + 1)], dtype=torch.float64)
    return torch.einsum("t,t...->...", weights, torch.stack(values).double()) / (1 - decay**t)


def saved(folder) -> dict:
    return torch.load(folder / "model.pt", weights_only=True)["state_dict"]


def test_the_saved_weights_and_running_statistics_are_the_debiased_average(mnist_manager, mnist_settings, mnist_data,
                                                                           tmp_path):
    steps, decay = Steps(), 0.9
    settings = mnist_settings(ema.EmaOptions(decay=decay), epochs=2, **SMALL)
    run = testing.fit(mnist_manager(ema, batchnorm=StandInBatchNorm()), settings, mnist_data, listeners=(steps,),
                      out=tmp_path / "run")
    average, training = saved(tmp_path / "run"), run.network.state_dict()
    assert len(steps.seen) == 24 and set(average) == set(training)
    assert {"running_mean", "running_var", "num_batches_tracked"} <= {key.rsplit(".", 1)[-1] for key in average}
    for key, tensor in average.items():
        if tensor.is_floating_point():
            expected = debiased_average([step[key] for step in steps.seen], decay)
            torch.testing.assert_close(tensor.double(), expected, rtol=1e-5, atol=1e-6)
            assert (tensor - training[key]).abs().max() > 1e-3  # the average is not the last step's weights
        else:
            assert tensor.item() == 24 and torch.equal(tensor, training[key])  # num_batches_tracked: a count, copied


def test_the_recorded_metrics_are_the_averages_and_evaluating_model_pt_reproduces_them(mnist_manager, mnist_settings,
                                                                                       mnist_data, tmp_path):
    manager, settings = mnist_manager(ema), mnist_settings(epochs=3, **SMALL)
    run = testing.fit(manager, settings, mnist_data, out=tmp_path / "run")
    recorded = {"loss": run.history[-1]["test_loss"], "accuracy": run.history[-1]["test_accuracy"]}
    assert recorded["accuracy"] > 0.5
    assert testing.evaluate(manager, run.network, mnist_data.test, settings)["loss"] != recorded["loss"]
    run.network.load_state_dict(saved(tmp_path / "run"))
    assert testing.evaluate(manager, run.network, mnist_data.test, settings) == recorded


def test_an_interrupted_run_saves_the_average_of_its_last_finished_epoch(mnist_manager, mnist_settings, mnist_data,
                                                                         tmp_path):
    manager, settings = mnist_manager(ema), mnist_settings(epochs=3, **SMALL)
    run = testing.fit(manager, settings, mnist_data, listeners=(StopInEpoch2(),), out=tmp_path / "run")
    assert run.status == "interrupted" and len(run.history) == 1
    run.network.load_state_dict(saved(tmp_path / "run"))
    epoch_1 = testing.evaluate(manager, run.network, mnist_data.test, settings)
    assert epoch_1 == {"loss": run.history[0]["test_loss"], "accuracy": run.history[0]["test_accuracy"]}


def test_decay_zero_evaluates_the_training_weights_exactly(mnist_manager, mnist_settings, mnist_data, tmp_path):
    settings = mnist_settings(ema.EmaOptions(decay=0.0), epochs=1, **SMALL)
    run = testing.fit(mnist_manager(ema), settings, mnist_data, out=tmp_path / "run")
    average, training = saved(tmp_path / "run"), run.network.state_dict()
    assert all(torch.equal(average[key], training[key]) for key in training)


def test_options_arrive_as_strings():
    assert build_options("ema", ema.EmaOptions, {"decay": "0.999"}) == ema.EmaOptions(decay=0.999)
    assert build_options("ema", ema.EmaOptions, {"decay": "0"}).decay == 0.0


@pytest.mark.parametrize("value", ["1", "1.5", "-0.1", "nan", "slow"])
def test_bad_values_are_refused_in_one_line_naming_the_option(value):
    with pytest.raises(UserError, match=f"invalid value for -o ema.decay={value}") as raised:
        build_options("ema", ema.EmaOptions, {"decay": value})
    assert "\n" not in raised.value.message


def test_it_keeps_the_plugin_contract():
    checks = {check.property: check.detail for check in testing.check_plugin(ema)}
    assert checks["resumes bitwise"] == "interrupted as epoch 2 began, resumed: rows and weights equal"
    assert checks["mnist-eval reproduces the record"].endswith("exactly")
    assert checks["state on the run's device"] == "4 state tensors on cpu"  # the core MLP's 2 weights and 2 biases
