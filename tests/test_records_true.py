"""The record never lies: what model.pt holds is what the record says, however the run ends, and resume checks what
it reads."""

import json
import shutil

import pytest
import torch

from mnist_trainer import cli
from tests.conftest import console
from tests.test_cli import FAST, assert_user_error

SIGNALS_ITSELF = """
import os, signal
from mnist_trainer import hookimpl

def maybe(event, run):
    if os.environ.get("SIGNAL_AT") == f"{event}:{run.epoch}":
        os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))
    if os.environ.get("FAIL_AT") == f"{event}:{run.epoch}":
        raise ValueError("failed on purpose")

@hookimpl
def mnist_trainer_epoch_start(run):
    maybe("epoch_start", run)

@hookimpl
def mnist_trainer_epoch_end(run):
    maybe("epoch_end", run)

@hookimpl
def mnist_trainer_run_end(run):
    maybe("run_end", run)
"""
SIX = ["--dataset", "synthetic:600", "--epochs", "6", "--batch-size", "100", "--hidden", "16", "--device", "cpu",
       "-p", "relu", "-p", "dropout", "-p", "signals"]


def epochs(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in rows if row["stage"] == "epoch"]


def evaluated(run_cli, out):
    """``mnist-eval OUT`` in this process: a run's record is read back from its files alone."""
    result = run_cli(out, "--dataset", "synthetic:600", "--device", "cpu", "--json", command=cli.evaluate)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def resumed(run_cli, out, *args):
    """``mnist-run --resume OUT ARGS`` in this process (only the runs that are signalled need processes of their own;
    they share this one's thread budget, so the sums are the same)."""
    result = run_cli("--resume", out, *args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def signals(fake_plugin):
    return {"PYTHONPATH": str(fake_plugin("signals", SIGNALS_ITSELF))}


@pytest.fixture
def whole(signals, run_cli, tmp_path):
    """The run done in one go, in this process."""
    out = tmp_path / "whole"
    result = run_cli(*SIX, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("moment, saved", [("epoch_end:5", 4), ("epoch_start:6", 5), ("epoch_end:6", 5)])
def test_sigterm_as_an_epoch_ends_records_exactly_what_model_pt_holds(run_cli, signals, whole, tmp_path, moment,
                                                                     saved):
    out = tmp_path / "stopped"
    ended = console("mnist-run", *SIX, "--out", out, env={**signals, "SIGNAL_AT": moment, "SIGNAL": "SIGTERM"})
    assert ended.returncode == 143, ended.stderr
    summary = json.loads((out / "config.json").read_text())["summary"]
    model = torch.load(out / "model.pt", weights_only=True)
    assert summary["status"] == "interrupted" and summary["saved"]["epoch"] == model["epoch"] == saved
    assert [row["epoch"] for row in epochs(out)] == list(range(1, saved + 1)) and summary["epochs"] == saved
    assert ended.stderr.strip().splitlines()[-1].endswith(f"model.pt holds epoch {saved}; mnist-run --resume {out} "
                                                          f"goes on from epoch {saved}")
    metrics = evaluated(run_cli, out)
    assert metrics["epoch"] == saved
    assert metrics["metrics"] == {"loss": summary["saved"]["test_loss"], "accuracy": summary["saved"]["test_accuracy"]}
    resumed(run_cli, out)
    assert epochs(out) == epochs(whole)
    assert all(torch.equal(a, b) for a, b in zip(torch.load(out / "model.pt")["state_dict"].values(),
                                                 torch.load(whole / "model.pt")["state_dict"].values()))


@pytest.mark.parametrize("signal", ["SIGTERM", "SIGKILL"])
def test_a_run_stopped_after_its_last_checkpoint_is_finished_by_resume_without_training(
        run_cli, signals, whole, tmp_path, signal):
    out = tmp_path / "ended"
    ended = console("mnist-run", *SIX, "--out", out, env={**signals, "SIGNAL_AT": "run_end:6", "SIGNAL": signal})
    assert ended.returncode == (143 if signal == "SIGTERM" else -9)
    assert not (out / "model.pt").exists() and "summary" not in json.loads((out / "config.json").read_text())
    assert "resume       finishing the record at epoch 6 of 6" in resumed(run_cli, out).stdout
    summary = json.loads((out / "config.json").read_text())["summary"]
    assert summary["status"] == "completed" and summary["saved"]["epoch"] == 6 and epochs(out) == epochs(whole)
    assert evaluated(run_cli, out)["metrics"]["accuracy"] == summary["saved"]["test_accuracy"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_an_interrupt_between_checkpoints_says_which_epoch_a_resume_starts_from(run_cli, signals, tmp_path):
    out = tmp_path / "sparse"
    flags = [*SIX, "--checkpoint-every", "5", "--out", out]
    ended = console("mnist-run", *flags, env={**signals, "SIGNAL_AT": "epoch_start:3", "SIGNAL": "SIGTERM"})
    assert ended.returncode == 143
    assert ended.stderr.strip().splitlines()[-1] == (
        "interrupted (SIGTERM); model.pt holds epoch 2, but no checkpoint was written yet (--checkpoint-every): "
        "nothing to resume; start it again")
    assert_user_error(run_cli("--resume", out), ["has no checkpoint.pt to resume from"])
    later = tmp_path / "later"
    ended = console("mnist-run", *SIX, "--checkpoint-every", "5", "--out", later,
                    env={**signals, "SIGNAL_AT": "epoch_start:6", "SIGNAL": "SIGTERM"})
    assert ended.stderr.strip().splitlines()[-1].endswith(f"model.pt holds epoch 5; mnist-run --resume {later} goes on "
                                                          "from epoch 5")


def test_a_checkpoint_from_another_run_is_refused(run_cli, tmp_path):
    one, other = tmp_path / "one", tmp_path / "other"
    for out in (one, other):
        assert run_cli("-p", "relu", *FAST, "--epochs", "3", "--checkpoint-every", "2", "--out", out).exit_code == 0
    shutil.copy(other / "checkpoint.pt", one / "checkpoint.pt")
    assert_user_error(run_cli("--resume", one, "--epochs", "4"), ["checkpoint.pt belongs to another run"])


@pytest.mark.parametrize("field, value, words", [
    ("summary", [], ["summary is [], not a run's summary"]),
    ("dataset", "x", ["dataset is 'x', not the dict"]),
    ("plugins", ["relu"], ["plugins[0] is 'relu', not a plugin's record"]),
    ("settings.plugins", None, ["settings.plugins is None, not a list of plugin names"]),
    ("settings.epochs", "2", ["settings.epochs is '2', which is not what mnist-trainer records there"]),
    ("settings.batch_size", 0, ["settings.batch_size is 0", "is not in the range x>=1"]),
    ("run_id", 7, ["run_id is 7, not the str"]),
])
def test_a_damaged_config_is_one_line_naming_the_field(run_cli, tmp_path, field, value, words):
    out = tmp_path / "run"
    assert run_cli("-p", "relu", *FAST, "--out", out).exit_code == 0
    config = json.loads((out / "config.json").read_text())
    *path, key = field.split(".")
    target = config
    for part in path:
        target = target[part]
    target[key] = value
    (out / "config.json").write_text(json.dumps(config))
    assert_user_error(run_cli("--resume", out, "--epochs", "3"), [*words, "the record is damaged"])


def test_a_run_recorded_on_cuda_resumes_on_the_cpu_when_asked(run_cli, tmp_path):
    out = tmp_path / "run"
    assert run_cli("-p", "relu", *FAST, "--out", out).exit_code == 0
    config = json.loads((out / "config.json").read_text())
    config["settings"]["device"] = "cuda"
    (out / "config.json").write_text(json.dumps(config))
    if not torch.cuda.is_available():
        assert_user_error(run_cli("--resume", out, "--epochs", "3"), ["asked for CUDA", "use --device cpu"])
    moved = run_cli("--resume", out, "--epochs", "3", "--device", "cpu")
    assert moved.exit_code == 0, moved.output
    assert json.loads((out / "config.json").read_text())["settings"]["device"] == "cpu"
    evaluated = run_cli(out, "--dataset", "synthetic:600", "--json", command=cli.evaluate)
    assert json.loads(evaluated.stdout)["epoch"] == 3


def test_a_resumed_run_that_fails_records_the_weights_model_pt_still_holds(run_cli, signals, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert run_cli(*[a if a != "6" else "2" for a in SIX], "--out", out).exit_code == 0
    monkeypatch.setenv("FAIL_AT", "epoch_end:3")
    failed = run_cli("--resume", out, "--epochs", "4")
    assert failed.exit_code == 2 and "plugin 'signals' failed in mnist_trainer_epoch_end" in failed.stderr
    monkeypatch.delenv("FAIL_AT")
    summary = json.loads((out / "config.json").read_text())["summary"]
    assert summary["status"] == "failed" and summary["saved"]["epoch"] == 2
    assert torch.load(out / "model.pt", weights_only=True)["epoch"] == 2
    assert evaluated(run_cli, out)["metrics"]["accuracy"] == summary["saved"]["test_accuracy"]
