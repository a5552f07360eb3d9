"""Data-parallel training under torchrun (gloo, on this CPU): the same run as one process, one record, clear errors.

Most tests start real processes through torch's own launcher, so these are the slowest tests of
the suite and are marked `processes` (pytest -m processes), but for one two-process run that the
default suite keeps; each keeps to a few seconds of training on synthetic data. The one-process
runs they are compared with train in the test's own process, on the launched processes' threads.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from mnist_trainer import cli
from mnist_trainer.distributed import World
from mnist_trainer.syncbn import CpuSyncBatchNorm, sync_batch_norm
from tests.conftest import console

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="this torch has no gloo backend")

ENV = {"OMP_NUM_THREADS": "1", "MNIST_TRAINER_DIST_TIMEOUT": "60"}
RUN = ["--dataset", "synthetic", "--epochs", "3", "--device", "cpu"]
SHORT = ["--dataset", "synthetic:1200", "--epochs", "4", "--batch-size", "50", "--hidden", "64,64", "--device", "cpu"]
LOSS_RTOL = 1e-5
STOPS_ITSELF = """
import os
import signal
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_step_end(run, loss):
    if run.step == int(os.environ.get("STOP_AT_STEP", "-1")):
        os.kill(os.getppid(), signal.SIGKILL)  # torchrun, then rank 0 itself: kill -9, with no time to record anything
        os.kill(os.getpid(), signal.SIGKILL)
"""


def torchrun(*args, nproc=2, env=None, launcher=("--standalone",), timeout=300):
    """``torchrun --nproc-per-node N -m mnist_trainer ARGS``, in its own process group."""
    command = [sys.executable, "-m", "torch.distributed.run", *launcher, "--nproc-per-node", str(nproc),
               "-m", "mnist_trainer", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **ENV, **(env or {})},
                          timeout=timeout, start_new_session=True)


def one_process(*args, command=cli.main, env=None, threads=int(ENV["OMP_NUM_THREADS"])):
    """A command run alone, in this process, on `threads` threads (as many as ENV gives each process torchrun starts,
    unless told), with `env` added to the environment: click's result."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return CliRunner().invoke(command, [str(arg) for arg in args], env=env)
    finally:
        torch.set_num_threads(before)


def epochs(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in rows if row["stage"] == "epoch"]


def weights(out):
    return torch.load(out / "model.pt", weights_only=True)["state_dict"]


def assert_same_training(one, other, atol=1e-5):
    """Every epoch's loss and metrics within 1e-5 relative; the final weights allclose(rtol=1e-4, atol)."""
    rows, others = epochs(one), epochs(other)
    assert [row["epoch"] for row in rows] == [row["epoch"] for row in others] and rows
    for row, twin in zip(rows, others):
        for key, value in row.items():
            if key not in ("stage", "epoch"):
                assert twin[key] == pytest.approx(value, rel=LOSS_RTOL), (row["epoch"], key)
    ours, theirs = weights(one), weights(other)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.allclose(ours[key].float(), theirs[key].float(), rtol=1e-4, atol=atol), \
            (key, float((ours[key].float() - theirs[key].float()).abs().max()))


def errors(result):
    """The lines our processes printed as errors (torchrun adds its own report of failed workers)."""
    return [line for line in result.stderr.splitlines() if line.startswith("Error: ")]


def test_shares_split_a_count_into_contiguous_parts_in_rank_order():
    for count, size in [(100, 2), (10, 3), (7, 4), (2, 3)]:
        parts = [World(rank=rank, size=size).share(count) for rank in range(size)]
        assert parts[0][0] == 0 and parts[-1][1] == count
        assert all(stop == start for (_, stop), (start, _) in zip(parts, parts[1:]))
        assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1


def largest_difference(one, other):
    ours, theirs = weights(one), weights(other)
    return max(float((ours[key].float() - theirs[key].float()).abs().max()) for key in ours)


def test_torchs_batch_norms_synchronise_with_their_state_and_a_subclass_is_refused():
    class Custom(torch.nn.BatchNorm1d):
        def forward(self, input):
            return super().forward(input) * 2

    norm = torch.nn.BatchNorm1d(3, momentum=0.3)
    norm(torch.randn(8, 3))  # running statistics of its own
    synced = sync_batch_norm(norm, torch.device("cpu"))
    assert type(synced) is CpuSyncBatchNorm and synced.momentum == 0.3 and synced.training
    assert all(torch.equal(synced.state_dict()[key], value) for key, value in norm.state_dict().items())
    inputs = torch.randn(8, 3)
    assert torch.equal(synced(inputs),
                       torch.nn.functional.batch_norm(inputs, None, None, training=True, weight=synced.weight,
                                                      bias=synced.bias))  # on one process: torch's own
    with pytest.raises(TypeError, match="not Custom"):
        sync_batch_norm(Custom(3), torch.device("cpu"))


@pytest.mark.parametrize("plugins", [["relu", "xavier"],
                                     pytest.param(["batchnorm", "he"], marks=pytest.mark.processes)], ids="+".join)
def test_two_processes_train_as_one_does(tmp_path, plugins):
    flags = [arg for name in plugins for arg in ("--plugin", name)] + RUN
    alone = one_process(*flags, "--out", tmp_path / "one")
    assert alone.exit_code == 0, alone.output
    two = torchrun(*flags, "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    assert ("processes    2 over gloo" in two.stdout
            and two.stdout.count("done: test accuracy") == 1)  # rank 0 alone speaks
    atol = 1e-5
    if "batchnorm" in plugins:
        # With batch norm, one process on 2 threads instead of 1 (sums in another order, nothing else) already ends up
        # to 4e-5 away on some first-layer weights after 540 Adam steps: below that floor no implementation can agree,
        # so two processes are held to twice the distance between those two single-process runs, and never looser than
        # 1e-5.
        threads = one_process(*flags, "--out", tmp_path / "threads", threads=2)
        assert threads.exit_code == 0, threads.output
        atol = max(atol, 2 * largest_difference(tmp_path / "one", tmp_path / "threads"))
    assert_same_training(tmp_path / "one", tmp_path / "two", atol=atol)
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert (config["world"]["size"] == 2 and config["world"]["backend"] == "gloo"
            and len(config["world"]["devices"]) == 2)
    assert config["summary"]["status"] == "completed"
    assert sorted(path.name for path in (tmp_path / "two").iterdir()) == [
        "checkpoint.pt", "config.json", "metrics.jsonl", "model.pt"
    ]


@pytest.mark.processes
def test_lbfgs_line_searches_see_the_global_batchs_loss_on_every_process(tmp_path):
    """Each process's line search must see one loss, the global batch's, or they evaluate the closure different numbers
    of times and their collectives part: the run died so before the closure's loss was averaged. (It does not end
    bitwise where one process does: the search's cubic interpolation magnifies the loss's last digits, which another
    order of sums changes, so two runs part by ~1e-2 within a few steps.)"""
    out = tmp_path / "lbfgs"
    result = torchrun("--plugin", "relu", "--plugin", "lbfgs", "--dataset", "synthetic:600", "--epochs", "2",
                      "--batch-size", "50", "--hidden", "32", "--device", "cpu", "--out", out)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["summary"]["status"] == "completed"
    assert epochs(out)[-1]["test_accuracy"] > 0.9


@pytest.mark.processes
def test_every_rank_starts_from_the_same_pretrained_weights_as_one_process(tmp_path):
    flags = ["--plugin", "rbm-pretrain", "-o", "rbm-pretrain.epochs=1", *SHORT[:3], "2", *SHORT[4:]]  # 2 epochs
    one = one_process(*flags, "--out", tmp_path / "one")
    two = torchrun(*flags, "--out", tmp_path / "two")
    assert one.exit_code == 0 and two.returncode == 0, one.output + two.stderr
    reports = [line for line in one.stdout.splitlines() if line.startswith("rbm-pretrain ") and "seconds=" not in line]
    assert reports and [line for line in two.stdout.splitlines()
                        if line.startswith("rbm-pretrain ") and "seconds=" not in line] == reports  # rank 0's only
    assert_same_training(tmp_path / "one", tmp_path / "two")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.processes
def test_two_nodes_through_a_c10d_rendezvous_train_as_one_process_does(tmp_path):
    flags = ["--plugin", "relu", *SHORT]
    assert one_process(*flags, "--out", tmp_path / "one").exit_code == 0
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank),
         "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "test",
         "-m", "mnist_trainer", *flags, "--out", tmp_path / "two"],
        env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert sum(stdout.count("done: test accuracy") for stdout, _ in outputs) == 1
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world"]["size"] == 2
    assert_same_training(tmp_path / "one", tmp_path / "two")


@pytest.mark.processes
def test_a_killed_two_process_run_resumes_on_one_or_two_processes_as_if_never_killed(fake_plugin, tmp_path):
    site = fake_plugin("stops", STOPS_ITSELF)
    env = {"PYTHONPATH": str(site)}
    flags = ["--plugin", "stops", "--plugin", "relu", *SHORT]
    assert torchrun(*flags, "--out", tmp_path / "whole", env=env).returncode == 0
    killed = torchrun(*flags, "--out", tmp_path / "killed", env={**env, "STOP_AT_STEP": "60"})  # in epoch 3 of 4
    assert killed.returncode == -signal.SIGKILL and len(epochs(tmp_path / "killed")) == 2
    shutil.copytree(tmp_path / "killed", tmp_path / "killed-again")
    alone = one_process("--resume", tmp_path / "killed")
    assert alone.exit_code == 0, alone.output
    assert "resume       from epoch 2 of 4" in alone.stdout
    pair = torchrun("--resume", tmp_path / "killed-again", env=env)
    assert pair.returncode == 0, pair.stderr
    assert_same_training(tmp_path / "whole", tmp_path / "killed")
    assert_same_training(tmp_path / "whole", tmp_path / "killed-again")
    assert json.loads((tmp_path / "killed" / "config.json").read_text())["world"]["size"] == 1


RANK_ONE_FAILS = """
from mnist_trainer import every_rank, hookimpl

@hookimpl
@every_rank
def mnist_trainer_epoch_end(run):
    if run.world.rank == 1 and run.epoch == 2:
        raise ValueError("no room left on rank 1")
"""
RANK_ZERO_STOPS = """
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_epoch_end(run):
    assert run.world.leader  # a plain handler runs on rank 0 alone
    if run.epoch == 2:
        run.stop("enough")
"""
RANK_ONE_STOPS = """
from mnist_trainer import every_rank, hookimpl

@hookimpl
@every_rank
def mnist_trainer_epoch_end(run):
    if run.world.rank == 1 and run.epoch == 2:
        run.stop("rank 1 had enough")
"""
RANK_ZERO_FAILS_AT_THE_END = """
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_run_end(run):
    raise ValueError("cannot upload the report")
"""


@pytest.mark.processes
def test_a_rank_failing_gives_one_line_per_process_and_rank_0_records_the_cause(fake_plugin, tmp_path):
    site = fake_plugin("fails", RANK_ONE_FAILS)
    ended = torchrun("--plugin", "fails", "--plugin", "relu", *SHORT, "--out", tmp_path / "run",
                     env={"PYTHONPATH": str(site)})
    assert ended.returncode != 0
    lines = errors(ended)
    assert (len(lines) == 2
            and "[rank" not in ended.stderr.replace("[rank0]:[W", "")), ended.stderr  # no traceback from us
    assert "Error: plugin 'fails' failed in mnist_trainer_epoch_end: ValueError: no room left on rank 1" in lines
    assert "Error: rank 0: stopped, because rank 1 failed: plugin 'fails' failed in mnist_trainer_epoch_end: " \
           "ValueError: no room left on rank 1" in lines
    summary = json.loads((tmp_path / "run" / "config.json").read_text())["summary"]
    assert summary["status"] == "failed" and "rank 1 failed" in summary["reason"]


@pytest.mark.processes
@pytest.mark.parametrize("source, reason", [(RANK_ZERO_STOPS, "enough"), (RANK_ONE_STOPS, "rank 1 had enough")],
                         ids=["asked-on-rank-0", "asked-on-rank-1"])
def test_a_stop_asked_on_any_rank_stops_every_rank_together_with_its_reason(fake_plugin, tmp_path, source, reason):
    site = fake_plugin("stopper", source)
    ended = torchrun("--plugin", "stopper", "--plugin", "relu", *SHORT, "--checkpoint-every", "3",
                     "--out", tmp_path / "run", env={"PYTHONPATH": str(site)})
    assert ended.returncode == 0, ended.stderr
    summary = json.loads((tmp_path / "run" / "config.json").read_text())["summary"]
    assert summary["status"] == "stopped" and summary["reason"] == reason and summary["epochs"] == 2
    # the checkpoint is the stopped epoch's, to extend it
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 2


RANK_ONE_FAILS_AT_THE_END = """
from mnist_trainer import every_rank, hookimpl

@hookimpl
@every_rank
def mnist_trainer_run_end(run):
    if run.world.rank == 1:
        raise ValueError("cannot upload the report")
"""


@pytest.mark.processes
def test_rank_1_failing_at_run_end_makes_the_record_failed_before_rank_0_finishes_it(fake_plugin, tmp_path):
    site = fake_plugin("endfail", RANK_ONE_FAILS_AT_THE_END)
    ended = torchrun("--plugin", "endfail", "--plugin", "relu", *SHORT, "--out", tmp_path / "run",
                     env={"PYTHONPATH": str(site)})
    assert ended.returncode != 0 and "done: test accuracy" not in ended.stdout, ended.stdout
    assert sorted(errors(ended)) == [
        "Error: plugin 'endfail' failed in mnist_trainer_run_end: ValueError: cannot upload the report",
        "Error: rank 0: stopped, because rank 1 failed: plugin 'endfail' failed in mnist_trainer_run_end: "
        "ValueError: cannot upload the report"]
    summary = json.loads((tmp_path / "run" / "config.json").read_text())["summary"]
    assert summary["status"] == "failed" and summary["reason"].startswith("rank 1 failed: plugin 'endfail'")


@pytest.mark.processes
def test_rank_0_failing_after_the_last_epoch_stops_the_others_with_one_line(fake_plugin, tmp_path):
    site = fake_plugin("endfail", RANK_ZERO_FAILS_AT_THE_END)
    ended = torchrun("--plugin", "endfail", "--plugin", "relu", *SHORT, "--out", tmp_path / "run",
                     env={"PYTHONPATH": str(site)})
    assert (ended.returncode != 0 and "[rank" not in ended.stderr
            and "Exception ignored" not in ended.stderr), ended.stderr
    assert sorted(errors(ended)) == [
        "Error: plugin 'endfail' failed in mnist_trainer_run_end: ValueError: cannot upload the report",
        "Error: rank 1: stopped, because rank 0 failed: plugin 'endfail' failed in mnist_trainer_run_end: "
        "ValueError: cannot upload the report"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["summary"]["status"] == "failed"


@pytest.mark.processes
def test_mnist_run_nproc_starts_the_processes_through_torchrun_and_exits_as_they_do(tmp_path):
    started = console("mnist-run", "--nproc", "2", "--plugin", "relu", *SHORT, "--out", tmp_path / "run", env=ENV)
    assert started.returncode == 0 and started.stderr == "", started.stderr  # the launcher adds nothing
    assert "processes    2 over gloo" in started.stdout and started.stdout.count("done: test accuracy") == 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["world"]["size"] == 2
    nested = one_process("--nproc", "2", "--plugin", "relu", env={"WORLD_SIZE": "2", "RANK": "0"})
    assert (nested.exit_code == 2
            and nested.stderr == "Error: --nproc starts torchrun itself; under torchrun, leave --nproc out\n")
    comparing = one_process("relu", "core", command=cli.compare, env={"WORLD_SIZE": "2", "RANK": "0"})
    assert (comparing.exit_code == 2
            and comparing.stderr.startswith("Error: mnist-compare trains its arms one after another"))


@pytest.mark.processes
def test_what_cannot_work_across_processes_is_one_line_per_process(tmp_path):
    uneven = console("mnist-run", "--nproc", "2", "--plugin", "relu", *SHORT[:4], "--batch-size", "49", "--out",
                     tmp_path / "uneven", env=ENV)
    assert uneven.returncode == 2 and uneven.stdout == ""
    assert errors(uneven) == ["Error: --batch-size 49 does not split evenly over 2 processes; give a multiple of 2 "
                              "(it is the global batch: each process takes an equal share)"] * 2
    nccl = torchrun("--plugin", "relu", *SHORT, "--backend", "nccl", "--out", tmp_path / "nccl")
    assert errors(nccl) == [
        "Error: --backend nccl needs CUDA devices, and this run trains on cpu; use --backend gloo (or auto)"
    ] * 2


def test_a_missing_or_unreachable_rendezvous_is_one_line_not_a_hang(tmp_path):
    alone = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", **ENV, "MNIST_TRAINER_DIST_TIMEOUT": "3"}
    without = one_process("--plugin", "relu", *SHORT, env={**alone, "MASTER_ADDR": None, "MASTER_PORT": None,
                                                           "TORCH_CPP_LOG_LEVEL": None})  # as it was, afterwards
    assert (without.exit_code == 2
            and without.stderr.startswith("Error: WORLD_SIZE is set but MASTER_ADDR/MASTER_PORT are not"))
    nobody = console("mnist-run", "--plugin", "relu", *SHORT, timeout=60,
                     env={**alone, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())})
    assert nobody.returncode == 2 and len(nobody.stderr.strip().splitlines()) == 1, nobody.stderr
    assert nobody.stderr.startswith("Error: rank 1: cannot join the other 1 process(es) at 127.0.0.1:")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices for nccl (each process has its own)")
def test_two_gpus_over_nccl_train_as_one_gpu_does(tmp_path):
    flags = ["--plugin", "batchnorm", "--plugin", "he", *RUN[:-2], "--device", "cuda"]
    one = console("mnist-run", *flags, "--out", tmp_path / "one", env=ENV)
    two = torchrun(*flags, "--out", tmp_path / "two")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    world = json.loads((tmp_path / "two" / "config.json").read_text())["world"]
    assert (world["backend"] == "nccl"
            and [device.split(":")[:2] for device in world["devices"]] == [["cuda", "0"], ["cuda", "1"]])
    for row, twin in zip(epochs(tmp_path / "one"), epochs(tmp_path / "two"), strict=True):  # GPU kernels: not bitwise
        assert all(twin[key] == pytest.approx(value, rel=1e-4)
                   for key, value in row.items() if key not in ("stage", "epoch"))
