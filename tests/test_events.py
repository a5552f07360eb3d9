"""Run events: called through pluggy, in order, with one run object; stopping, recording, ordering, tracing."""

import json

import pytest
import torch

from mnist_trainer import PluginError, Regularizer, UserError, hookimpl, testing
from mnist_trainer.checks import guard
from mnist_trainer.distributed import World
from mnist_trainer.pipeline import compose
from mnist_trainer.run import Run
from mnist_trainer.session import _callbacks
from tests.test_cli import FAST, assert_user_error

SETTINGS = testing.settings(epochs=3, batch_size=100, hidden=(16,))  # 600 images: 6 steps per epoch


class Recorder:
    """Notes every event with the run's epoch and step as it sees them."""

    def __init__(self):
        self.seen = []

    @hookimpl
    def mnist_trainer_run_start(self, run):
        self.seen.append(("run_start", run.epoch, run.step, run.network is not None and run.optimizer is not None))

    @hookimpl
    def mnist_trainer_epoch_start(self, run):
        self.seen.append(("epoch_start", run.epoch, run.step))

    @hookimpl
    def mnist_trainer_step_end(self, run, loss):
        self.seen.append(("step_end", run.epoch, run.step, loss.dim(), loss.requires_grad))

    @hookimpl
    def mnist_trainer_epoch_end(self, run):
        self.seen.append(("epoch_end", run.epoch, run.step, sorted(run.row), len(run.history)))

    @hookimpl
    def mnist_trainer_run_end(self, run):
        self.seen.append(("run_end", run.status, run.reason, len(run.history)))


def test_events_come_in_order_with_the_run_as_it_stands():
    recorder = Recorder()
    run = testing.fit(testing.plugin_manager(), SETTINGS, listeners=(recorder,))
    row_keys = sorted(["epoch", "lr", "train_loss", "test_loss", "test_accuracy", "eval_seconds", "seconds"])
    expected = [("run_start", 0, 0, True)]
    for epoch in (1, 2, 3):
        expected.append(("epoch_start", epoch, (epoch - 1) * 6))
        expected += [("step_end", epoch, (epoch - 1) * 6 + step, 0, False) for step in range(1, 7)]
        expected.append(("epoch_end", epoch, epoch * 6, row_keys, epoch))  # the finished epoch is history already
    expected.append(("run_end", "completed", "trained 3 epochs", 3))
    assert recorder.seen == expected
    assert [row["epoch"] for row in run.history] == [1, 2, 3] and run.status == "completed"


class StopsAtTwo:
    @hookimpl
    def mnist_trainer_columns(self, run):
        return ("doubled_loss",)

    @hookimpl
    def mnist_trainer_epoch_end(self, run):
        run.row["doubled_loss"] = 2 * run.row["train_loss"]
        if run.epoch == 2:
            run.stop("enough at epoch 2")


def test_a_plugin_stops_the_run_after_the_epoch_and_adds_to_its_row():
    run = testing.fit(testing.plugin_manager(stops=StopsAtTwo()), SETTINGS)
    assert (run.status, run.reason, len(run.history)) == ("stopped", "enough at epoch 2", 2)
    assert all(row["doubled_loss"] == 2 * row["train_loss"] for row in run.history)


STOPPER = """
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_columns(run):
    return ("twice_accuracy",)

@hookimpl
def mnist_trainer_epoch_end(run):
    run.row["twice_accuracy"] = 2 * run.row["test_accuracy"]
    run.report("stopper", looked_at=run.epoch)
    if run.epoch == 1:
        run.stop("stopper saw enough")
"""


def test_a_stopped_run_is_recorded_with_its_reason_and_added_columns(run_cli, fake_plugin, tmp_path):
    fake_plugin("stopper", STOPPER)
    out = tmp_path / "run"
    result = run_cli("--plugin", "stopper", *FAST, "--out", out)
    assert result.exit_code == 0, result.output
    assert "stopper (epoch_end)" in result.stdout and "stopper saw enough: test accuracy" in result.stdout
    summary = json.loads((out / "config.json").read_text())["summary"]
    assert (summary["status"], summary["reason"], summary["epochs"]) == ("stopped", "stopper saw enough", 1)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[0] == {"stage": "stopper", "looked_at": 1}
    assert lines[1]["stage"] == "epoch" and lines[1]["twice_accuracy"] == 2 * lines[1]["test_accuracy"]
    header = next(line for line in result.stdout.splitlines() if line.strip().startswith("epoch"))
    assert header.split()[-1] == "twice_accuracy" and "lr" in header.split()
    assert (out / "model.pt").is_file()


def order(log, name, **options):
    class Listener:
        @hookimpl(**options)
        def mnist_trainer_epoch_end(self, run):
            log.append(name)

    return Listener()


class Wrapper:
    def __init__(self, log):
        self.log = log

    @hookimpl(wrapper=True)
    def mnist_trainer_epoch_end(self, run):
        self.log.append("wrapper before")
        result = yield
        self.log.append(f"wrapper after, {run.row['seconds'] > 0}")
        return result


def test_event_hookimpls_honour_tryfirst_trylast_and_wrappers():
    log = []
    plugins = (order(log, "last", trylast=True), order(log, "first", tryfirst=True), order(log, "plain"), Wrapper(log))
    testing.fit(testing.plugin_manager(), testing.settings(epochs=1), listeners=plugins)
    assert log == ["wrapper before", "first", "plain", "last", "wrapper after, True"]


class WrapsInit:
    @hookimpl(wrapper=True)
    def mnist_trainer_init(self, settings):
        return (yield)


class FirstActivation:
    @hookimpl(tryfirst=True)
    def mnist_trainer_activation(self, settings):
        return None


@pytest.mark.parametrize("plugin, option", [(WrapsInit(), "wrapper"), (FirstActivation(), "tryfirst")])
def test_stage_hooks_refuse_ordering_options_at_load(plugin, option):
    with pytest.raises(UserError,
                       match=rf"plugin 'odd': mnist_trainer_\w+ is marked {option}, which a stage hook cannot honour"):
        testing.plugin_manager(odd=plugin)


def test_step_event_costs_nothing_without_a_listener():
    manager = testing.plugin_manager()
    pipeline = compose(manager, SETTINGS)
    run = Run(SETTINGS, testing.tiny_data(), "cpu", None, World())
    callbacks = _callbacks(run, pipeline.events, None)
    assert callbacks.step_end is None and callbacks.before_step is None and callbacks.progress is None
    listening = testing.plugin_manager(recorder=Recorder())
    assert _callbacks(run, compose(listening, SETTINGS).events, None).step_end is not None


def test_an_events_caller_is_made_once_per_rank_and_remade_when_plugins_change():
    events = compose(testing.plugin_manager(recorder=Recorder()), SETTINGS).events
    caller = events.caller("mnist_trainer_step_end")
    assert caller is not None and events.caller("mnist_trainer_step_end") is caller
    events.serve(leader=False)  # another rank calls only the every-rank handlers: its own caller
    assert events.caller("mnist_trainer_step_end") is not caller
    with events.attached({"extra": Recorder()}):
        assert events.caller("mnist_trainer_step_end") is not caller


def test_a_per_step_answer_is_checked_on_its_first_call_only():
    good, bad = torch.zeros(()), torch.zeros(2)
    results = iter([bad, good, bad])
    answer = guard("odd", "mnist_trainer_regularizer", Regularizer("odd", penalty=lambda *_: next(results)))
    with pytest.raises(PluginError, match="plugin 'odd'.*penalty.*0-d tensor"):
        answer.penalty(None, None, None)  # the first call is checked, and refused
    assert answer.penalty(None, None, None) is good
    assert answer.penalty(None, None, None) is bad  # once a first call passed, later calls run unchecked


def test_tracing_prints_every_hook_call_with_plugins_and_time(run_cli, fake_plugin, tmp_path, monkeypatch):
    fake_plugin("stopper", STOPPER)
    monkeypatch.setenv("MNIST_TRAINER_TRACE", "1")
    result = run_cli("--plugin", "stopper", "--plugin", "relu", *FAST, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    traced = [line for line in result.stderr.splitlines() if line.startswith("trace: ")]
    assert "trace: mnist_trainer_activation [relu]" in "\n".join(traced)
    # the built-in wrappers are entered first, act after the plugin
    assert any(line.startswith("trace: mnist_trainer_epoch_end [core:terminal, core:record, core:last-good, stopper] ")
               and line.endswith(" ms") for line in traced)
    assert any(line.startswith("trace: mnist_trainer_report [core:record, core:terminal]") for line in traced)
    assert not any(line.startswith("trace: mnist_trainer_run_end") for line in traced)  # nobody handles it: not called
    monkeypatch.delenv("MNIST_TRAINER_TRACE")
    quiet = run_cli("--plugin", "relu", *FAST, "--out", tmp_path / "quiet")
    assert "trace: " not in quiet.stderr
    flagged = run_cli("--plugin", "relu", *FAST, "--trace-plugins", "--out", tmp_path / "flagged")
    assert "trace: mnist_trainer_epoch_end [core:terminal, core:record, core:last-good]" in flagged.stderr


INTERRUPTS = """
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_step_end(run, loss):
    if run.epoch == 2 and run.step == run.steps_per_epoch + 3:
        raise KeyboardInterrupt
"""


def test_ctrl_c_keeps_the_last_finished_epoch_and_exits_130(run_cli, fake_plugin, tmp_path):
    from mnist_trainer import cli

    fake_plugin("ctrlc", INTERRUPTS)
    out = tmp_path / "run"
    result = run_cli("--plugin", "ctrlc", *FAST, "--epochs", "5", "--json", "--out", out)
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == (f"interrupted (Ctrl-C); model.pt holds epoch 1; "
                                                      f"mnist-run --resume {out} goes on from epoch 1")
    summary = json.loads(result.stdout)  # --json still prints the summary
    assert json.loads((out / "config.json").read_text())["summary"] == summary
    assert (summary["status"], summary["reason"], summary["epochs"]) == ("interrupted", "interrupted during epoch 2", 1)
    evaluated = run_cli(out, "--dataset", "synthetic:600", "--json", command=cli.evaluate)
    saved = summary["saved"]
    assert json.loads(evaluated.stdout)["metrics"] == {"loss": saved["test_loss"], "accuracy": saved["test_accuracy"]}


def test_the_boolean_option_helper():
    from mnist_trainer import boolean

    assert [boolean(v) for v in ("true", "Yes", "ON", "1", True)] == [True] * 5
    assert [boolean(v) for v in ("false", "no", "Off", "0", False)] == [False] * 5
    with pytest.raises(ValueError, match="'maybe' is not one of true, false"):
        boolean("maybe")


def test_a_repeated_option_is_refused(run_cli):
    assert_user_error(run_cli("--plugin", "relu", "-o", "relu.negative_slope=0.1", "-o", "relu.negative_slope=0.2"),
                      ["relu.negative_slope is given twice"])


TRYLAST_COLUMN = """
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_columns(run):
    return ("late",)

@hookimpl(trylast=True)
def mnist_trainer_epoch_end(run):
    run.row["late"] = run.epoch * 10

@hookimpl(trylast=True)
def mnist_trainer_run_end(run):
    weights = {key: value.clone() for key, value in run.network.state_dict().items()}
    weights["0.linear.weight"].fill_(0.5)
    run.keep(1, weights)
"""


def test_the_record_is_written_after_every_plugin_even_trylast_ones(run_cli, fake_plugin, tmp_path):
    import torch

    fake_plugin("late", TRYLAST_COLUMN)
    assert run_cli("--plugin", "late", *FAST, "--out", tmp_path / "run").exit_code == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["late"] for row in rows] == [10, 20]
    model = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert torch.all(model["state_dict"]["0.linear.weight"] == 0.5) and model["epoch"] == 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["summary"]["saved"]["epoch"] == 1
