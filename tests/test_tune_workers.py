"""mnist-tune's workers: two on one SQLite study (--jobs 2), two commands on one journal file, a worker killed
mid-trial (tests of several processes: pytest -m processes); and the command without optuna, and its --help, which
imports neither torch nor optuna."""

import os
import subprocess
import sys
import time

import pytest
import torch

from mnist_trainer import tune_cli
from mnist_trainer.environment import cores
from mnist_trainer.tune_report import LOST
from tests.conftest import BIN, console
from tests.test_tune import TINY, trials

KILLS_ITSELF = """
import os, signal
from mnist_trainer import hookimpl

RUNS = []

@hookimpl
def mnist_trainer_run_start(run):
    RUNS.append(run.folder.name)

@hookimpl
def mnist_trainer_epoch_end(run):
    if run.epoch == 1 and (run.folder.name == os.environ.get("KILL_IN") or str(len(RUNS)) == os.environ.get("KILL_AT")):
        os.kill(os.getpid(), signal.SIGKILL)
"""
SPACE = ["-p", "relu", "-p", "killer", "--space", "lr=1e-3..1e-1:log", *TINY]


@pytest.fixture
def site(fake_plugin, tmp_path):
    """The killer plugin installed, and matplotlib hidden: these studies' pictures take seconds no test looks at."""
    folder = fake_plugin("killer", KILLS_ITSELF)
    (folder / "matplotlib").mkdir()
    (folder / "matplotlib" / "__init__.py").write_text("raise ImportError(\"No module named 'matplotlib'\")\n")
    return str(folder)


@pytest.mark.processes
@pytest.mark.skipif(cores() < 2, reason="--jobs 2 needs 2 cores")
def test_two_workers_on_one_sqlite_study_finish_the_trials_though_one_is_killed_mid_trial(site, tmp_path):
    out = tmp_path / "study"
    result = console("mnist-tune", *SPACE, "--trials", "5", "--jobs", "2", "--out", out,
                     env={"PYTHONPATH": site, "KILL_IN": "trial-0002"})
    assert result.returncode == 0, result.stderr
    assert "warning: no pictures of the study: pip install 'mnist-trainer[plot]'" in result.stderr
    table = trials(out)
    assert [row["number"] for row in table] == [str(number) for number in range(6)]  # each number once
    assert [row["state"] for row in table].count("failed") == 1 and table[2]["state"] == "failed"
    assert table[2]["reason"] == LOST and "during trial 2" in result.stderr and "(SIGKILL)" in result.stderr
    assert sum(row["state"] in ("complete", "pruned") for row in table) == 5  # the other worker made up for it
    assert {row["worker"].rsplit("#")[1] for row in table} == {"0", "1"}
    assert {row["threads"] for row in table} == {str(max(1, min(torch.get_num_threads(), cores() // 2)))}
    assert sorted(path.name for path in out.glob("trial-*")) == [f"trial-{n:04d}" for n in range(6)]


@pytest.mark.processes
def test_two_commands_on_one_journal_file_share_the_study_and_a_killed_ones_trial_fails(site, tmp_path, run_cli,
                                                                                       monkeypatch):
    out, journal = tmp_path / "study", tmp_path / "study.log"
    args = [*SPACE, "--storage", f"journal:{journal}", "--out", out, "--trials", "3"]
    killed = subprocess.Popen([str(BIN / "mnist-tune"), *map(str, args)], env={**os.environ, "PYTHONPATH": site,
                                                                              "KILL_AT": "2"},
                              stdout=subprocess.DEVNULL)
    while not (out / "trial-0000").exists() and killed.poll() is None:  # its trials have begun: this one joins them
        time.sleep(0.1)
    other = run_cli(*args, command=tune_cli.tune)  # in this process, beside the other command
    assert killed.wait(timeout=600) == -9 and other.exit_code == 0, other.output
    died = time.time()
    monkeypatch.setenv("MNIST_TRAINER_HEARTBEAT", "1")  # so it is missed after 3 seconds
    time.sleep(max(0.0, died + 3.5 - time.time()))
    again = run_cli(*args[:-1], "1", command=tune_cli.tune)
    assert again.exit_code == 0, again.output
    table = trials(out)
    assert [row["number"] for row in table] == [str(number) for number in range(6)]  # each number once
    lost = [row for row in table if row["state"] == "failed"]
    assert len(lost) == 1 and lost[0]["reason"] == LOST and f"trial {lost[0]['number']} failed: {LOST}" in again.stdout
    assert sum(row["state"] in ("complete", "pruned") for row in table) == 1 + 3 + 1 and len(table) == 6


def test_help_imports_neither_torch_nor_optuna():
    code = ("import sys; from click.testing import CliRunner; from mnist_trainer.tune_cli import tune; "
            "result = CliRunner().invoke(tune, ['--help']); assert result.exit_code == 0, result.output; "
            "assert '--space' in result.output; print([name for name in ('torch', 'optuna') if name in sys.modules])")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert shown.stdout.strip() == "[]", shown.stderr


def test_without_optuna_it_says_how_to_get_it(tmp_path):
    shadow = tmp_path / "shadow" / "optuna"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'optuna'\", name='optuna')\n")
    result = console("mnist-tune", "--space", "lr=1e-4..1e-1", "--val", "100", "--out", tmp_path / "study",
                     env={"PYTHONPATH": str(shadow.parent)})
    assert result.returncode == 2 and not (tmp_path / "study").exists()
    assert result.stderr.strip() == ("Error: mnist-tune needs optuna: pip install 'mnist-trainer[tune]' "
                                     "(No module named 'optuna')")
