"""The CUDA path, on one device: each test is marked `cuda` and skips without one (CI has none; a GPU machine runs
``pytest -m cuda``)."""

import json

import pytest
import torch

from mnist_trainer import cli
from tests.conftest import console
from tests.test_distributed import torchrun

pytestmark = pytest.mark.cuda
FAST = ["--dataset", "synthetic:600", "--epochs", "2", "--batch-size", "50", "--hidden", "32,32"]
STOPS = """
import os, signal
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_step_end(run, loss):
    if run.step == int(os.environ.get("STOP_AT_STEP", "-1")):
        os.kill(os.getpid(), signal.SIGKILL)
"""


def rows(out):
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in lines if row["stage"] == "epoch"]


def test_one_epoch_trains_on_cuda(run_cli, tmp_path):
    out = tmp_path / "run"
    result = run_cli("-p", "batchnorm", "-p", "he", *FAST, "--epochs", "1", "--device", "cuda", "--out", out)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["device"]["name"].startswith("cuda") and config["summary"]["final"]["test_accuracy"] > 0.3


def test_a_run_with_grad_stats_and_early_stop_resumes_on_cuda_as_if_never_killed(fake_plugin, tmp_path):
    env = {"PYTHONPATH": str(fake_plugin("stops", STOPS))}
    flags = ["-p", "stops", "-p", "relu", "-p", "grad-stats", "-p", "early-stop", *FAST, "--epochs", "4",
             "--device", "cuda"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert console("mnist-run", *flags, "--out", whole, env=env).returncode == 0
    assert console("mnist-run", *flags, "--out", killed, env={**env, "STOP_AT_STEP": "30"}).returncode == -9
    resumed = console("mnist-run", "--resume", killed, env=env)
    assert resumed.returncode == 0, resumed.stderr  # grad-stats' sums came back on the GPU, not the CPU
    assert rows(killed) == rows(whole)


def test_a_cuda_run_evaluates_on_the_cpu_and_a_cpu_run_on_cuda(run_cli, tmp_path):
    for trained, evaluated in (("cuda", "cpu"), ("cpu", "cuda")):
        out = tmp_path / trained
        assert run_cli("-p", "relu", *FAST, "--device", trained, "--out", out).exit_code == 0
        result = run_cli(out, "--dataset", "synthetic:600", "--device", evaluated, "--json", command=cli.evaluate)
        assert result.exit_code == 0, result.output
        saved = json.loads((out / "config.json").read_text())["summary"]["saved"]
        assert json.loads(result.stdout)["metrics"]["accuracy"] == pytest.approx(saved["test_accuracy"], abs=0.02)


def test_one_process_under_torchrun_over_nccl(tmp_path):
    if not torch.distributed.is_available() or not torch.distributed.is_nccl_available():
        pytest.skip("this torch has no nccl backend")
    result = torchrun("-p", "relu", *FAST, "--device", "cuda", "--backend", "nccl", "--out", tmp_path / "run", nproc=1)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["summary"]["status"] == "completed"


CUDA_IMPLEMENTATIONS = {"sgd": "fused", "adadelta": "foreach", "adagrad": "fused", "adamax": "foreach",
                        "asgd": "foreach", "lbfgs": "for-loop", "rmsprop": "foreach", "rprop": "foreach",
                        "adamw": "fused", "nadam": "foreach", "radam": "foreach"}


@pytest.mark.parametrize("optimizer", CUDA_IMPLEMENTATIONS)
def test_each_optimizer_plugin_trains_on_cuda_in_the_implementation_it_names(run_cli, tmp_path, optimizer):
    out = tmp_path / optimizer
    result = run_cli("-p", "relu", "-p", optimizer, *FAST, "--device", "cuda", "--out", out)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("optimizer "))
    assert f"({CUDA_IMPLEMENTATIONS[optimizer]}): " in line
    assert json.loads((out / "config.json").read_text())["summary"]["status"] == "completed"
