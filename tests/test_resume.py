"""Checkpoints and exact resume: a run killed part-way and resumed ends bitwise equal to the run done in one go."""

import json
import os

import pytest
import torch

from tests.conftest import console
from tests.test_cli import FAST, assert_user_error

STOPS_ITSELF = """
import os
import signal
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_step_end(run, loss):
    if run.step == int(os.environ.get("STOP_AT_STEP", "-1")):
        os.kill(os.getpid(), getattr(signal, os.environ["STOP_WITH"]))
"""
# 5 epochs of 12 steps (600 images, batch 50)
RUN = ["5" if flag == "--epochs" else arg for flag, arg in zip([None, *FAST], FAST)]


def epochs(out):
    """The per-epoch rows without their timings, which differ from run to run."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in rows if row["stage"] == "epoch"]


def weights(out):
    return torch.load(out / "model.pt", weights_only=True)["state_dict"]


def trained(run_cli, *args):
    """``mnist-run ARGS`` in this process, which must end well: only the runs that are killed need processes of their
    own (the processes share this one's thread budget: the same sums, bitwise)."""
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result


def assert_same_run(one, other):
    assert epochs(one) == epochs(other) and len(epochs(one)) == 5
    assert all(torch.equal(a, b) for a, b in zip(weights(one).values(), weights(other).values()))


@pytest.mark.parametrize("plugins", [["relu"], ["relu", "dropout", "batchnorm"]], ids="+".join)
def test_a_run_killed_in_epoch_3_and_resumed_equals_the_run_in_one_go(run_cli, fake_plugin, tmp_path, plugins):
    site = fake_plugin("stops", STOPS_ITSELF)
    flags = ["--plugin", "stops", *(arg for name in plugins for arg in ("--plugin", name)), *RUN]
    env = {"PYTHONPATH": str(site)}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    trained(run_cli, *flags, "--out", whole)
    died = console("mnist-run", *flags, "--out", killed, env={**env, "STOP_AT_STEP": "30", "STOP_WITH": "SIGKILL"})
    assert died.returncode == -9 and len(epochs(killed)) == 2  # killed in the middle of epoch 3
    assert not [p.name for p in killed.iterdir() if p.name.startswith(".")]
    resumed = trained(run_cli, "--resume", killed)
    assert "resume       from epoch 2 of 5" in resumed.stdout
    assert_same_run(killed, whole)


def test_sigterm_records_the_run_says_how_to_resume_it_and_exits_143(run_cli, fake_plugin, tmp_path):
    site = fake_plugin("stops", STOPS_ITSELF)
    flags = ["--plugin", "stops", "--plugin", "relu", *RUN]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    trained(run_cli, *flags, "--out", whole)
    ended = console("mnist-run", *flags, "--out", stopped,
                    env={"PYTHONPATH": str(site), "STOP_AT_STEP": "40", "STOP_WITH": "SIGTERM"})
    assert ended.returncode == 143
    assert ended.stderr.strip().splitlines()[-1] == (
        f"interrupted (SIGTERM); model.pt holds epoch 3; mnist-run --resume {stopped} goes on from epoch 3")
    assert json.loads((stopped / "config.json").read_text())["summary"]["status"] == "interrupted"
    trained(run_cli, "--resume", stopped)
    assert_same_run(stopped, whole)


def test_epochs_extends_a_finished_run_as_if_it_had_been_asked_for_at_first(run_cli, tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    assert run_cli("--plugin", "relu", *FAST, "--out", short).exit_code == 0  # 2 epochs
    assert run_cli("--plugin", "relu", *RUN, "--out", long).exit_code == 0
    extended = run_cli("--resume", short, "--epochs", "5", "--json")
    assert extended.exit_code == 0, extended.output
    assert json.loads(extended.stdout)["epochs"] == 5
    assert_same_run(short, long)


def test_what_cannot_be_resumed_is_one_line(run_cli, tmp_path):
    out = tmp_path / "run"
    run_cli("--plugin", "relu", *FAST, "--out", out)
    assert_user_error(run_cli("--resume", out),
                      [f"{out} has 2 finished epochs; give --epochs with more than that to extend it"])
    assert_user_error(run_cli("--resume", out, "--lr", "0.1"), ["--lr cannot be changed when resuming"])
    assert_user_error(run_cli("--resume", out, "--plugin", "dropout"), ["--plugin cannot be changed when resuming"])
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "mnist_trainer": "0.0.1"}))
    assert_user_error(run_cli("--resume", out, "--epochs", "3"),
                      ["recorded by mnist-trainer 0.0.1", "resume it with that version"])
    (out / "config.json").write_text(json.dumps({**config, "dataset": {**config["dataset"], "test_size": 10000}}))
    assert_user_error(run_cli("--resume", out, "--epochs", "3"),
                      ["was trained on other data (test_size differ", "same data"])
    (out / "config.json").write_text(json.dumps({**config, "dataset": {**config["dataset"], "fingerprint": "0" * 64}}))
    assert_user_error(run_cli("--resume", out, "--epochs", "3"), ["was trained on other data (fingerprint differ"])
    (out / "config.json").write_text(json.dumps(config))
    (out / "checkpoint.pt").unlink()
    assert_user_error(run_cli("--resume", out, "--epochs", "3"), ["has no checkpoint.pt to resume from"])
    (tmp_path / ".model.pt.mine").write_text("a file of the user's, named like a temporary")
    assert_user_error(run_cli("--resume", tmp_path, "--epochs", "3"), ["holds no readable run record"])
    assert (tmp_path / ".model.pt.mine").is_file()  # a folder that is not a run's is left alone


def test_checkpoint_every_thins_the_checkpoints(run_cli, tmp_path, monkeypatch):
    from mnist_trainer import records

    saved = []
    monkeypatch.setattr(records.RunFolder, "save_state", lambda self, state: saved.append(state["epoch"]))
    assert run_cli("--plugin", "relu", *RUN, "--checkpoint-every", "2", "--out", tmp_path / "run").exit_code == 0
    assert saved == [2, 4, 5]  # every second epoch, and the end so that --epochs can extend it


def test_sigkill_at_seeded_steps_leaves_a_valid_record_that_resumes_to_the_same_run(run_cli, fake_plugin, tmp_path):
    """Each kill lands at a step drawn from a seeded generator, past the first checkpoint, by the process itself: every
    planned kill is checked, and a kill that did not land fails the test."""
    import random

    site = fake_plugin("stops", STOPS_ITSELF)
    env = {"PYTHONPATH": str(site)}
    flags = ["--plugin", "stops", "--plugin", "relu", "--plugin", "dropout", *RUN]
    whole = tmp_path / "whole"
    trained(run_cli, *flags, "--out", whole)
    # 12 steps an epoch: after the first checkpoint, before the end (two kills: every one resumes from a checkpoint
    # as the others do, only the step differs)
    steps = random.Random(2026).sample(range(13, 60), 2)
    checked = []
    for step in steps:
        out = tmp_path / f"killed-at-{step}"
        died = console("mnist-run", *flags, "--out", out,
                       env={**env, "STOP_AT_STEP": str(step), "STOP_WITH": "SIGKILL"})
        assert died.returncode == -9, f"the kill at step {step} did not land: {died.stderr}"
        json.loads((out / "config.json").read_text())  # every visible file is whole
        assert len(epochs(out)) == (step - 1) // 12
        trained(run_cli, "--resume", out)
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file remains
        assert_same_run(out, whole)
        checked.append(step)
    assert checked == steps


def test_ctrl_c_on_a_terminal_records_the_run_and_exits_130(tmp_path):
    import pty
    import select
    import signal

    from tests.conftest import BIN

    out = tmp_path / "run"
    pid, terminal = pty.fork()
    if pid == 0:  # the child: mnist-run with the pseudo-terminal as its controlling terminal
        os.execv(BIN / "mnist-run", ["mnist-run", "--plugin", "relu", "--dataset", "synthetic:1200", "--epochs", "1000",
                                     "--hidden", "32", "--device", "cpu", "--out", str(out)])
    seen, status = b"", None
    try:
        while b"\n      2 " not in seen:  # the table's second epoch: one epoch is finished
            ready, _, _ = select.select([terminal], [], [], 60)
            assert ready, seen.decode(errors="replace")
            seen += os.read(terminal, 4096)
        os.write(terminal, b"\x03")  # Ctrl-C, as typed
        while True:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # the child has gone
                break
            if not chunk:
                break
            seen += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        if status is None:  # the test failed before the run ended: it must not train on, unwatched
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 130
    assert (b"interrupted (Ctrl-C); model.pt holds epoch" in seen
            and f"mnist-run --resume {out} goes on".encode() in seen)
    assert json.loads((out / "config.json").read_text())["summary"]["status"] == "interrupted"


CLAIMS = """
import sys, time
from mnist_trainer.errors import UserError
from mnist_trainer.records import RunFolder
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time() - 0.05))  # asleep until just before the instant, then spinning to it
while time.time() < start:
    pass
try:
    RunFolder.claim(sys.argv[1])
    print("won")
except UserError:
    print("lost")
"""


def test_two_processes_claiming_one_folder_at_the_same_instant_never_share_it(tmp_path):
    import subprocess
    import sys
    import time

    for attempt in range(5):
        start = time.time() + 1.0
        processes = [subprocess.Popen([sys.executable, "-c", CLAIMS, str(tmp_path / f"shared{attempt}"), str(start)],
                                      stdout=subprocess.PIPE, text=True) for _ in range(2)]
        assert sorted(process.communicate(timeout=60)[0].strip() for process in processes) == ["lost", "won"]


DRAWS = """
import torch
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_columns(run):
    return ("draw",)

@hookimpl
def mnist_trainer_run_start(run):
    run.generators["draws"] = torch.Generator().manual_seed(5)

@hookimpl
def mnist_trainer_epoch_end(run):
    run.row["draw"] = torch.rand((), generator=run.generators["draws"]).item()
"""


def test_a_plugins_own_generator_is_restored_by_resume(run_cli, fake_plugin, tmp_path):
    site = fake_plugin("stops", STOPS_ITSELF)
    fake_plugin("draws", DRAWS)
    flags = ["--plugin", "stops", "--plugin", "draws", "--plugin", "relu", *RUN]
    env = {"PYTHONPATH": str(site)}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    trained(run_cli, *flags, "--out", whole)
    assert console("mnist-run", *flags, "--out", killed,
                   env={**env, "STOP_AT_STEP": "30", "STOP_WITH": "SIGKILL"}).returncode == -9
    trained(run_cli, "--resume", killed)
    assert [row["draw"] for row in epochs(killed)] == [row["draw"] for row in epochs(whole)]
    assert_same_run(killed, whole)


def test_a_folder_in_use_is_refused_and_a_schedule_is_not_stretched(run_cli, tmp_path):
    from mnist_trainer.records import RunFolder

    out = tmp_path / "run"
    run_cli("--plugin", "relu", *FAST, "--out", out)
    holder = RunFolder.reopen(out)  # as another process resuming it would
    assert_user_error(run_cli("--resume", out, "--epochs", "3"), [f"{out} is in use by another mnist-run"])
    holder.close()
    assert run_cli("--resume", out, "--epochs", "3").exit_code == 0
    scheduled = tmp_path / "scheduled"
    run_cli("--plugin", "relu", "--plugin", "cosine", *FAST, "--out", scheduled)
    assert_user_error(run_cli("--resume", scheduled, "--epochs", "4"), ["schedule was built for 2 epochs"])


def test_an_interrupt_before_the_first_epoch_says_there_is_nothing_to_resume(run_cli, fake_plugin, tmp_path):
    fake_plugin("early", "from mnist_trainer import hookimpl\n"
                         "@hookimpl\ndef mnist_trainer_run_start(run):\n    raise KeyboardInterrupt\n")
    result = run_cli("--plugin", "early", *FAST, "--out", tmp_path / "run")
    assert result.exit_code == 130
    assert "before its first checkpoint: nothing to resume; start it again" in result.stderr.strip().splitlines()[-1]
