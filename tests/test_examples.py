"""The recipes in examples/ run as documented (on tiny data here), and the example plugins compose as installed."""

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch

from mnist_trainer import cli
from tests.conftest import BIN, ROOT, T10K, console, requires_t10k

TINY = ["--dataset", "synthetic:300", "--epochs", "1", "--batch-size", "50", "--hidden", "16", "--device", "cpu"]


def test_sigmoid_vs_relu_prints_one_line_per_activation():
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([ROOT / "examples" / "sigmoid-vs-relu.sh", *TINY], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["sigmoid", "relu"]
    accuracy = float(lines[1].split()[3])
    assert 0.0 <= accuracy <= 1.0 and Path(lines[2].split()[-1], "relu", "model.pt").is_file()


def test_lab9_is_one_mnist_compare_of_its_five_configurations(tmp_path):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([ROOT / "examples" / "lab9.sh", *TINY, "--seeds", "1", "--out", tmp_path / "lab9", "--json"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    arms = json.loads(out.stdout)["arms"]
    assert [arm["name"] for arm in arms] == ["relu+normal-init", "relu+xavier", "relu+he", "relu+xavier+dropout",
                                             "batchnorm+he"]
    assert all("grad-stats" in arm["plugins"] and 0 <= arm["final_test_accuracy"]["mean"] <= 1 for arm in arms)
    assert (tmp_path / "lab9" / "curves.png").is_file() and (tmp_path / "lab9" / "gradients.png").is_file()


@requires_t10k
def test_optimizers_is_one_mnist_compare_of_adam_and_every_optimizer_plugin_scored_on_the_official_digits(tmp_path):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MNIST_T10K": str(T10K)}
    out = subprocess.run([ROOT / "examples" / "optimizers.sh", *TINY, "--seeds", "1", "--out", tmp_path / "optimizers",
                          "--json"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    arms = json.loads(out.stdout)["arms"]
    assert [arm["name"] for arm in arms] == ["core", "sgd", "sgd[momentum=0.9]", "adadelta", "adagrad", "adamax",
                                             "asgd", "lbfgs", "rmsprop", "rprop", "adamw", "nadam", "radam"]
    assert all({"he", "relu"} <= set(arm["plugins"]) and 0 <= arm["scored_accuracy"]["mean"] <= 1 for arm in arms)
    assert (tmp_path / "optimizers" / "curves.png").is_file()


def run_json(run_cli, *args, out):
    """``mnist-run ... --json`` in this process, the plugins found as installed: (summary, stderr lines, metrics.jsonl
    rows)."""
    result = run_cli(*args, "--device", "cpu", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return json.loads(result.stdout), result.stderr.splitlines(), rows


def evaluate_json(run_cli, *args):
    """``mnist-eval ... --json`` in this process: its JSON."""
    result = run_cli(*args, "--device", "cpu", "--json", command=cli.evaluate)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_example_plugins_compose_in_one_run_with_first_party_ones(run_cli, tmp_path):
    plugins = ["relu", "sgd", "cosine", "shift", "label-smoothing", "early-stop"]
    summary, lines, rows = run_json(run_cli, *(arg for name in plugins for arg in ("--plugin", name)), "--lr", "0.001",
                                    "-o", "sgd.momentum=0.9", "--dataset", "mnist-sample", "--hidden", "32",
                                    out=tmp_path / "run")
    pipeline = {line.split()[0]: line for line in lines[:8]}
    assert "ReLU [relu]" in pipeline["model"]
    assert "[label-smoothing]" in pipeline["loss"] and "[shift]" in pipeline["regularizer"]
    assert pipeline["optimizer"].split()[1:3] == ["SGD", "(fused):"] and "momentum=0.9" in pipeline["optimizer"]
    assert "[sgd], lr=0.001 (--lr); cosine" in pipeline["optimizer"] and pipeline["optimizer"].endswith("[cosine]")
    assert "early-stop (run_start, epoch_end, run_end)" in pipeline["events"]
    epochs = [row for row in rows if row["stage"] == "epoch"]
    expected = [0.001 * (1 + math.cos(math.pi * (row["epoch"] - 1) / 15)) / 2 for row in epochs]
    assert [row["lr"] for row in epochs] == pytest.approx(expected, rel=1e-9)
    verdict = [row for row in rows if row["stage"] == "early-stop"]
    assert len(verdict) == 1 and verdict[0]["best_epoch"] == summary["saved"]["epoch"]
    assert (summary["status"] == "completed"
            and summary["final"]["epoch"] == len(epochs) == 15)  # SGD at 0.001 keeps improving


def test_early_stop_keeps_the_best_epoch_and_mnist_eval_reproduces_it(run_cli, tmp_path):
    out = tmp_path / "run"
    summary, lines, rows = run_json(run_cli, "--plugin", "relu", "--plugin", "early-stop", "-o",
                                    "early-stop.patience=2", "--lr", "0.02", "--dataset", "mnist-sample", "--hidden",
                                    "32", out=out)
    best = min((row for row in rows if row["stage"] == "epoch"), key=lambda row: row["test_loss"])
    stopped_at = best["epoch"] + 2
    assert summary["status"] == "stopped" and summary["epochs"] == stopped_at < 15
    assert summary["reason"] == f"stopped early at epoch {stopped_at}, best epoch {best['epoch']}"
    assert summary["saved"] == {key: value for key, value in best.items() if key != "stage"}
    assert summary["final"]["epoch"] == stopped_at
    assert json.loads((out / "config.json").read_text())["summary"]["reason"] == summary["reason"]
    assert f"(the weights of epoch {best['epoch']})" in lines[-1]
    evaluated = evaluate_json(run_cli, out, "--dataset", "mnist-sample")
    assert evaluated["metrics"] == {"loss": best["test_loss"], "accuracy": best["test_accuracy"]}


ALL = ["relu", "he", "grad-clip", "ema", "mixup", "cosine"]
# kept small: 3 epochs of 12 steps (1,200 synthetic images, batch 100) of a 32-unit MLP; the kill lands in epoch 3,
# after epoch 2's checkpoint
SMALL = ["--dataset", "synthetic:1200", "--epochs", "3", "--hidden", "32"]


def test_grad_clip_ema_mixup_and_cosine_compose_evaluate_exactly_and_resume_bitwise(run_cli, fake_plugin, tmp_path):
    """The three run-event and transform examples with relu, he and cosine: mnist-eval reproduces the saved row, and
    the run SIGKILLed after epoch 2 (in a process of its own) and resumed ends as the run done in one go (rows and
    model.pt)."""
    from tests.test_resume import STOPS_ITSELF, epochs, weights

    flags = [arg for name in ALL for arg in ("--plugin", name)]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    summary, lines, _ = run_json(run_cli, *flags, *SMALL, out=whole)
    pipeline = {line.split()[0]: line for line in lines[:8]}
    assert "ReLU [relu]" in pipeline["model"] and "[he]" in pipeline["init"] and "[mixup]" in pipeline["regularizer"]
    assert pipeline["optimizer"].endswith("[cosine]")
    assert "ema (" in pipeline["events"] and "grad-clip (" in pipeline["events"]
    assert summary["status"] == "completed" and summary["saved"] == summary["final"] and summary["final"]["epoch"] == 3
    assert evaluate_json(run_cli, whole, *SMALL[:2])["metrics"] == {"loss": summary["saved"]["test_loss"],
                                                                    "accuracy": summary["saved"]["test_accuracy"]}
    env = {"PYTHONPATH": str(fake_plugin("stops", STOPS_ITSELF))}
    died = console("mnist-run", "--plugin", "stops", *flags, *SMALL, "--device", "cpu", "--out", killed,
                   env={**env, "STOP_AT_STEP": "30", "STOP_WITH": "SIGKILL"})
    assert died.returncode == -9 and len(epochs(killed)) == 2
    resumed = run_cli("--resume", killed)
    assert resumed.exit_code == 0, resumed.output
    assert epochs(killed) == epochs(whole) and len(epochs(whole)) == 3
    assert all(torch.equal(a, b) for a, b in zip(weights(killed).values(), weights(whole).values(), strict=True))
    assert all(row["clipped"] >= 0 and row["grad_norm"] > 0 for row in epochs(whole))
