"""Data as a stage: a dataset plugin reaches a run as the core's own datasets do, the record names it and mnist-eval and
--resume rebuild it, and a validation split is held out by a seeded generator."""

import json

import pytest
import torch

from mnist_trainer import cli
from mnist_trainer.build import load_data, select
from mnist_trainer.session import Output
from tests.conftest import console
from tests.test_cli import assert_user_error
from tests.test_data import make_idx_folder

# Written from docs/plugin_hooks.md alone: 16x16 images of 5 classes, a bright square whose corner is the class.
SQUARES = """
import attrs
import torch
from mnist_trainer import Data, hookimpl, option, options_hook

@attrs.frozen
class SquaresOptions:
    count: int = option(300, converter=int, help="training images, a whole number")

mnist_trainer_options = options_hook(SquaresOptions)

def images(count, seed):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (count,), generator=generator)
    pixels = torch.randint(0, 60, (count, 16, 16), generator=generator, dtype=torch.uint8)
    for label in range(5):
        row, column = divmod(label * 3, 16)
        pixels[labels == label, row : row + 4, column : column + 4] = 255
    return pixels, labels

@hookimpl
def mnist_trainer_dataset(options):
    def load(splits):
        sizes = {"train": (options.count, 0), "test": (options.count // 5, 1)}
        return {split: images(*sizes[split]) for split in splits}
    return Data(f"squares:{options.count}", load, shape=(1, 16, 16), classes=5, source="generated")
"""
STEPS = """
import attrs
from mnist_trainer import PluginState, hookimpl, state_hook

@attrs.define
class Steps(PluginState):
    taken: int = 0

mnist_trainer_state = state_hook(Steps)

@hookimpl
def mnist_trainer_columns(run):
    return ("steps", "last_lr")

@hookimpl
def mnist_trainer_epoch_start(run):
    run.state(Steps).taken = 0

@hookimpl
def mnist_trainer_step_end(run, loss):
    run.state(Steps).taken += 1

@hookimpl
def mnist_trainer_epoch_end(run):
    run.row["steps"] = run.state(Steps).taken
    run.row["last_lr"] = run.optimizer.param_groups[0]["lr"]
"""


def rows(out):
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in lines if row["stage"] == "epoch"]


def test_a_third_party_dataset_trains_records_evaluates_and_resumes(run_cli, fake_plugin, tmp_path):
    fake_plugin("squares", SQUARES)
    fake_plugin("steps", STEPS)
    flags = ["--dataset", "squares", "-o", "squares.count=400", "-p", "relu", "-p", "cosine", "-o", "cosine.per=batch",
             "-o", "cosine.eta_min=0.0001", "-p", "steps", "--epochs", "3", "--batch-size", "40", "--hidden", "32",
             "--device", "cpu"]
    whole = tmp_path / "whole"
    result = run_cli(*flags, "--out", whole)
    assert result.exit_code == 0, result.output
    assert "dataset      squares:400: 16x16 images, 5 classes [squares]" in result.stdout
    assert "256-32-5 MLP" in result.stdout  # the model learnt the data's shape and classes
    config = json.loads((whole / "config.json").read_text())
    assert (config["dataset"]["name"], config["dataset"]["plugin"], config["dataset"]["version"]) == (
        "squares:400", "squares", "0.0.1")
    assert config["settings"]["options"]["squares"] == {"count": 400} and "squares" in config["settings"]["plugins"]
    epochs = rows(whole)
    assert [row["steps"] for row in epochs] == [10, 10, 10]  # run.steps_per_epoch is the steps taken: 400 // 40
    assert epochs[-1]["last_lr"] == pytest.approx(0.0001)  # a per-batch schedule ends at its floor on the last step
    assert epochs[-1]["test_accuracy"] > 0.6  # learns: chance is 0.2
    evaluated = run_cli(whole, "--device", "cpu", "--json", command=cli.evaluate)
    assert json.loads(evaluated.stdout)["metrics"]["accuracy"] == config["summary"]["saved"]["test_accuracy"]
    killed = tmp_path / "killed"
    stops = {"PYTHONPATH": str(fake_plugin("stops", STOPS_AT)), "STOP_AT": "15"}  # killed: a process of its own
    assert console("mnist-run", *flags, "-p", "stops", "--out", killed, env=stops).returncode == -9
    assert run_cli("--resume", killed).exit_code == 0
    assert rows(killed) == epochs


STOPS_AT = """
import os, signal
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_step_end(run, loss):
    if run.step == int(os.environ.get("STOP_AT", "-1")):
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_dataset_plugin_and_another_dataset_are_refused_together(run_cli, fake_plugin, tmp_path):
    fake_plugin("squares", SQUARES)
    assert_user_error(run_cli("-p", "squares", "--dataset", "mnist-sample", "--out", tmp_path / "run"),
                      ["plugin 'squares' supplies the data, and --dataset mnist-sample names other data"])
    assert not (tmp_path / "run").exists()


def held_out(seed, val=1000):
    settings, pipeline = select([], [], dataset="mnist-sample", val=val, seed=seed, device="cpu")
    return load_data(pipeline, settings, torch.device("cpu"), Output(say=print, warn=print))


def test_val_holds_out_images_disjoint_from_training_the_same_for_a_seed_and_others_for_another():
    data, again, other = held_out(777), held_out(777), held_out(5)
    assert (len(data.train), len(data.val), len(data.test)) == (3000, 1000, 1000)
    train_rows = {tuple(row.tolist()) for row in data.train.images}
    assert not any(tuple(row.tolist()) in train_rows for row in data.val.images)  # disjoint (no digit is twice)
    assert torch.equal(data.val.images, again.val.images) and data.held_out == again.held_out
    assert (not torch.equal(data.val.images, other.val.images)
            and data.held_out["fingerprint"] != other.held_out["fingerprint"])
    assert data.held_out["count"] == 1000 and data.held_out["seed"] == 777
    assert len(held_out(777, 0.1).val) == 400


def test_early_stop_picks_its_epoch_by_validation_accuracy_by_default(run_cli, tmp_path):
    out = tmp_path / "run"
    result = run_cli("-p", "relu", "-p", "early-stop", "-o", "early-stop.patience=2", "--dataset", "mnist-sample",
                     "--val", "1000", "--epochs", "8", "--lr", "0.02", "--device", "cpu", "--json", "--out", out)
    assert result.exit_code == 0, result.output
    epochs = rows(out)
    best = max(epochs, key=lambda row: row["val_accuracy"])
    verdict = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
               if json.loads(line)["stage"] == "early-stop"]
    assert verdict == [{"stage": "early-stop", "best_epoch": best["epoch"], "val_accuracy": best["val_accuracy"]}]
    assert json.loads(result.stdout)["saved"]["epoch"] == best["epoch"]


@pytest.mark.parametrize("data", ["mnist-sample", "synthetic:600", "idx"])
def test_mnist_eval_rebuilds_the_data_a_run_used_without_touching_anything_else(run_cli, tmp_path, monkeypatch, data):
    flags = ["--dataset", data] if data != "idx" else ["--data-dir", tmp_path / "idx"]
    if data == "idx":
        make_idx_folder(tmp_path / "idx", count=200)
    out = tmp_path / "run"
    assert run_cli("-p", "relu", *flags, "--val", "50", "--epochs", "2", "--batch-size", "50", "--hidden", "16",
                   "--device", "cpu", "--out", out).exit_code == 0
    monkeypatch.setenv("MNIST_TRAINER_DATA", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    from mnist_trainer import download

    monkeypatch.setattr(download, "fetch", lambda *args: pytest.fail("must not download"))
    result = run_cli(out, "--device", "cpu", "--json", command=cli.evaluate)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())["summary"]["saved"]
    evaluated = json.loads(result.stdout)
    assert evaluated["metrics"] == {"loss": saved["test_loss"], "accuracy": saved["test_accuracy"]}
    assert evaluated["val_metrics"] == {"loss": saved["val_loss"], "accuracy": saved["val_accuracy"]}
    assert not list((tmp_path / "empty").iterdir())


def test_mnist_eval_refuses_changed_data_and_evaluates_elsewhere_when_asked(run_cli, tmp_path):
    make_idx_folder(tmp_path / "idx", count=200)
    out = tmp_path / "run"
    assert run_cli("-p", "relu", "--data-dir", tmp_path / "idx", "--epochs", "1", "--batch-size", "50",
                   "--hidden", "16", "--device", "cpu", "--out", out).exit_code == 0
    make_idx_folder(tmp_path / "idx", count=150)  # the files changed since
    assert_user_error(run_cli(out, "--device", "cpu", command=cli.evaluate),
                      ["is not what it was trained on", "evaluate elsewhere with --dataset or --data-dir"])
    elsewhere = run_cli(out, "--dataset", "mnist-sample", "--device", "cpu", command=cli.evaluate)
    assert elsewhere.exit_code == 0, elsewhere.output
    assert "not on the idx:" in elsewhere.stderr and "on mnist-sample (1000 test images)" in elsewhere.stdout
