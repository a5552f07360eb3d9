"""mnist-tune in one process: a study over settings, plugin options and slots, scored on a validation split; its files;
the best trial repeated by its command; pruning; refused values; Ctrl-C and SIGTERM; one-line mistakes."""

import csv
import json
import shlex

import pytest
import torch

from mnist_trainer import cli, tune_cli
from tests.test_cli import assert_user_error

TINY = ["--dataset", "synthetic:600", "--val", "100", "--epochs", "2", "--batch-size", "50", "--hidden", "16",
        "--device", "cpu"]
PICKY = """
import attrs
from mnist_trainer import Initializer, UserError, hookimpl, number, option, options_hook

@attrs.frozen
class PickyOptions:
    x: float = option(0.0, converter=number, help="a number")

mnist_trainer_options = options_hook(PickyOptions)

@hookimpl
def mnist_trainer_init(options):
    if options.x > 0.5:
        raise UserError(f"picky refuses x above 0.5 (got {options.x:.3f})")
    return Initializer("as it was", lambda network, context: None)
"""
SIGNALS_ITSELF = """
import os, signal
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_epoch_end(run):
    if os.environ.get("SIGNAL_AT") == f"{run.folder.name}:{run.epoch}":
        os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))
"""

SLOW_START = """
import time
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_run_start(run):
    time.sleep(2.5)  # beyond the test's --timeout 2, within which even a busy machine starts the first trial
"""


def tune(run_cli, *args):
    return run_cli(*args, command=tune_cli.tune)


@pytest.fixture
def no_pictures(monkeypatch):
    """Studies whose pictures no test looks at skip drawing them (matplotlib takes seconds)."""
    monkeypatch.setattr("mnist_trainer.tune.draw", lambda *args: [])


def trials(folder):
    return list(csv.DictReader((folder / "trials.csv").open()))


def summary(folder):
    return json.loads((folder / "config.json").read_text())["summary"]


def test_a_study_over_lr_and_init_records_its_trials_and_the_command_that_repeats_the_best(run_cli, tmp_path):
    out = tmp_path / "study"
    result = tune(run_cli, "-p", "relu", "--space", "lr=1e-4..1e-1:log", "--space", "init=xavier|he|none", *TINY,
                  "--trials", "6", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    best, table = json.loads(result.stdout), trials(out)
    assert [int(row["number"]) for row in table] == list(range(6))
    assert all(row["init"] in ("xavier", "he", "none") and 1e-4 <= float(row["lr"]) <= 1e-1 for row in table)
    assert len({row["init"] for row in table}) > 1 and len({row["lr"] for row in table}) == 6
    complete = [row for row in table if row["state"] == "complete"]
    assert best["value"] == max(float(row["value"]) for row in complete) and best["trial"] in range(6)
    written = json.loads((out / "best.json").read_text())
    assert written == {key: value for key, value in best.items() if key not in ("out", "interrupted", "status")}
    folder = out / f"trial-{best['trial']:04d}"  # an ordinary run folder: its record holds the value
    assert best["run"] == str(folder) and summary(folder)["saved"]["val_accuracy"] == best["value"]
    threads, *command = shlex.split(best["command"])
    assert threads == f"OMP_NUM_THREADS={torch.get_num_threads()}" and command[0] == "mnist-run"
    again = run_cli(*command[1:], "--out", tmp_path / "again", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["saved"]["val_accuracy"] == best["value"]  # exactly
    lines = [line for line in result.stderr.splitlines() if line.startswith("trial ")]
    assert len(lines) == 6 and all(" lr=" in line and " init=" in line and "best: trial" in line for line in lines)
    assert (out / "history.png").is_file() and (out / "importances.png").is_file()


def test_a_study_where_some_learning_rates_are_hopeless_prunes_them(run_cli, tmp_path, no_pictures):
    out = tmp_path / "study"
    epochs = ["3" if flag == "--epochs" else arg for flag, arg in zip([None, *TINY], TINY)]
    result = tune(run_cli, "-p", "relu", "--space", "lr=1e-6..1e-1:log", *epochs, "--trials", "8", "--out", out)
    assert result.exit_code == 0, result.output
    pruned = [row for row in trials(out) if row["state"] == "pruned"]
    assert pruned, trials(out)
    for row in pruned:  # stopped by the pruner, said so in its run record, and in its line
        record = summary(out / f"trial-{int(row['number']):04d}")
        assert record["status"] == "stopped" and record["reason"].startswith(f"pruned at epoch {row['epochs']}:")
        assert int(row["epochs"]) < 3 and record["epochs"] == int(row["epochs"])
        assert f"trial {row['number']}  pruned at epoch {row['epochs']}" in result.stdout


def test_a_trial_whose_values_a_plugin_refuses_fails_with_its_line_and_the_study_goes_on(run_cli, fake_plugin, tmp_path,
                                                                                       no_pictures):
    fake_plugin("picky", PICKY)
    out = tmp_path / "study"
    result = tune(run_cli, "-p", "picky", "--space", "picky.x=0..1", *TINY, "--trials", "5", "--out", out)
    assert result.exit_code == 0, result.output
    table = trials(out)
    failed = [row for row in table if row["state"] == "failed"]
    assert failed and len(table) == 5 and all(float(row["picky.x"]) > 0.5 for row in failed)
    assert all(row["reason"] == f"picky refuses x above 0.5 (got {float(row['picky.x']):.3f})" for row in failed)
    assert all(float(row["picky.x"]) <= 0.5 for row in table if row["state"] == "complete")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("signal, code, name", [("SIGINT", 130, "Ctrl-C"), ("SIGTERM", 143, "SIGTERM")])
def test_ctrl_c_and_sigterm_stop_with_the_best_so_far_and_the_same_command_adds_trials(run_cli, fake_plugin, tmp_path,
                                                                                      monkeypatch, no_pictures, signal,
                                                                                      code, name):
    fake_plugin("signals", SIGNALS_ITSELF)
    monkeypatch.setenv("SIGNAL_AT", "trial-0002:2")
    monkeypatch.setenv("SIGNAL", signal)
    out = tmp_path / "study"
    args = ["-p", "relu", "-p", "signals", "--space", "lr=1e-3..1e-1:log", *TINY, "--trials", "4", "--out", out]
    result = tune(run_cli, *args)
    assert result.exit_code == code, result.output
    best = json.loads((out / "best.json").read_text())
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"interrupted ({name}); best so far: trial {best['trial']}, val_accuracy {best['value']:.4f}")
    assert [(row["number"], row["state"]) for row in trials(out)] == [("0", "complete"), ("1", "complete"),
                                                                     ("2", "failed")]
    stopped = out / "trial-0002"
    assert summary(stopped)["status"] == "interrupted" and trials(out)[2]["reason"] == "interrupted during epoch 2"
    if signal == "SIGTERM":
        return
    monkeypatch.delenv("SIGNAL_AT")
    more = tune(run_cli, *args[:-4], "--trials", "2", "--out", out)  # the same study: two more trials
    assert more.exit_code == 0, more.output
    assert [row["number"] for row in trials(out)] == ["0", "1", "2", "3", "4"]
    resumed = run_cli("--resume", stopped, "--json")  # each trial is a run: the interrupted one resumes
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["status"] == "completed", resumed.output
    evaluated = run_cli(out / "trial-0000", "--json", command=cli.evaluate)
    assert json.loads(evaluated.stdout)["val_metrics"]["accuracy"] == float(trials(out)[0]["value"])


def test_ctrl_c_before_a_trials_first_epoch_marks_it_interrupted_not_lost(run_cli, tmp_path, monkeypatch, no_pictures):
    from mnist_trainer import build, tune_trial

    calls = []

    def select(*args, **kwargs):  # Ctrl-C while the second trial's pipeline is composed
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return build.select(*args, **kwargs)

    monkeypatch.setattr(tune_trial, "select", select)
    out = tmp_path / "study"
    result = tune(run_cli, "-p", "relu", "--space", "lr=1e-3..1e-1:log", *TINY, "--trials", "3", "--out", out)
    assert result.exit_code == 130, result.output
    assert [(row["state"], row["reason"]) for row in trials(out)] == [("complete", ""), (
        "failed", "interrupted before its first epoch")]


def test_without_a_validation_split_score_on_test_scores_trials_on_the_test_split(run_cli, tmp_path, no_pictures):
    out = tmp_path / "study"
    no_val = [arg for flag, arg in zip([None, *TINY], TINY) if arg != "--val" and flag != "--val"]
    result = tune(run_cli, "-p", "relu", "--space", "lr=1e-3..1e-1:log", *no_val, "--trials", "2", "--score-on-test",
                  "--out", out, "--json")
    assert result.exit_code == 0, result.output
    best = json.loads(result.stdout)
    assert best["metric"] == "test_accuracy" and best["trials"]["complete"] == 2
    assert summary(out / f"trial-{best['trial']:04d}")["saved"]["test_accuracy"] == best["value"]


def test_timeout_starts_no_trial_after_it_and_the_running_one_finishes(run_cli, fake_plugin, tmp_path, no_pictures):
    fake_plugin("slow-start", SLOW_START)
    out = tmp_path / "study"
    result = tune(run_cli, "-p", "slow-start", "--space", "lr=1e-3..1e-1:log", *TINY, "--trials", "5", "--timeout", "2",
                  "--out", out)
    assert result.exit_code == 0, result.output
    assert [(row["number"], row["state"], row["epochs"]) for row in trials(out)] == [("0", "complete", "2")]
    assert "--timeout 2 s passed: 1 of the 5 trials ran" in result.stdout


SPACE = ["--space", "lr=1e-4..1e-1:log"]


@pytest.mark.parametrize("args, words", [
    (SPACE[:], ["scores trials on a validation split: give --val N", "--score-on-test"]),
    ([*SPACE, "--val", "100", "--metric", "test_accuracy"], ["--metric test_accuracy scores trials on the test split"]),
    (["--val", "100"], ["give at least one --space"]),
    (["--val", "100", "--space", "lr"], ["--space 'lr'", "NAME=LOW..HIGH"]),
    (["--val", "100", "--space", "lrr=1e-4..1e-1"], ["'lrr' is neither a setting", "did you mean 'lr'?"]),
    (["--val", "100", "--space", "seed=1|2"], ["seed cannot be searched"]),
    (["--val", "100", "--space", "init=1..3"], ["init takes choices (A|B|...), not a range"]),
    (["--val", "100", "--space", "lr=0.1..0.01"], ["the range is empty"]),
    (["--val", "100", "--space", "lr=0..0.1:log"], ["a log scale needs a range above 0"]),
    (["--val", "100", "--space", "epochs=1.5..3"], ["epochs is a whole number"]),
    (["--val", "100", "--space", "batch_size=0|50"], ["--batch-size 0"]),
    (["--val", "100", "--space", "init=xavier|hee"], ["--space init=xavier|hee: with init=hee", "'hee'"]),
    (["--val", "100", "--space", "init=xavier|relu"], ["plugin 'relu' does not fill the init slot"]),
    (["--val", "100", "-p", "xavier", "--space", "init=he|none"], ["--plugin xavier already fills the init slot"]),
    (["--val", "100", "-p", "dropout", "--space", "dropout.q=0..0.5"], ["dropout has no option 'q'"]),
    (["--val", "100", "-p", "dropout", "--space", "dropout.p=0..1"], ["invalid value for -o dropout.p=1"]),
    (["--val", "100", "--space", "dropout.p=0..0.5"], ["plugin 'dropout' is not selected in any trial"]),
    (["--val", "100", "--lr", "0.01", *SPACE], ["lr is also fixed by --lr"]),
    (["--val", "100", "--metric", "val_top5", *SPACE], ["--metric val_top5 is not recorded by these runs"]),
    (["--val", "100", "--storage", "nosuch://host/db", *SPACE], ["--storage nosuch://host/db: cannot use it"]),
    (["--val", "100", "--storage", "journal:/nonexistent/folder/study.log", *SPACE], ["no folder /nonexistent/folder"]),
    (["--val", "100", "--jobs", "999", *SPACE], ["--jobs 999 starts more workers than this machine's"]),
])
def test_mistakes_are_one_line_before_any_work(run_cli, tmp_path, args, words):
    assert_user_error(tune(run_cli, *args, "--dataset", "synthetic:600", "--out", tmp_path / "study"), words)
    assert not (tmp_path / "study").exists()


def test_a_folder_of_another_study_is_refused(run_cli, tmp_path):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "notes.txt").write_text("mine")
    assert_user_error(tune(run_cli, *SPACE, "--val", "100", "--out", tmp_path / "study"),
                      ["already holds files and no study"])


def test_a_study_takes_more_trials_only_of_the_same_search(run_cli, tmp_path, no_pictures):
    out = tmp_path / "study"
    args = ["-p", "relu", *SPACE, *TINY, "--epochs", "1", "--trials", "1", "--out", out]
    assert tune(run_cli, *args).exit_code == 0
    assert_user_error(tune(run_cli, *args, "--space", "init=xavier|he"),
                      ["study 'mnist-tune' in sqlite:///", "was started with other space", "--study NAME"])
    assert_user_error(tune(run_cli, *args[:-4], "--epochs", "2", "--trials", "1", "--out", out),
                      ["was started with other settings"])
    assert_user_error(tune(run_cli, *args, "--study", "another"),
                      [f"--out {out} holds study 'mnist-tune' in its own study.db"])
    assert [row["number"] for row in trials(out)] == ["0"]
