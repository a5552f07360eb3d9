"""mnist-compare loses nothing: Ctrl-C and SIGTERM stop the whole comparison and --resume continues it to what an
uninterrupted one gives; --out and --score-on are checked before any training; a full disk is one line."""

import errno
import json
import os

import pytest

from mnist_trainer import cli, records
from tests.conftest import console
from tests.test_cli import SAMPLE, assert_user_error
from tests.test_compare import SMALL, epoch_rows, run_compare

SIGNALS_ITSELF = """
import os, signal
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_epoch_end(run):
    if os.environ.get("SIGNAL_AT") == f"{'+'.join(run.settings.plugins)}:{run.settings.seed}:{run.epoch}":
        os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))
"""
ARMS = ["relu", "core", "-p", "signals", "--seeds", "2"]  # trained as relu 777, core 777, relu 778, core 778


BASELINE: dict = {}  # the uninterrupted comparison's runs, trained once for every signal


def runs(folder):
    """Each arm and seed's epoch rows without their timings, from a comparison's own record of its runs."""
    comparison = json.loads((folder / "comparison.json").read_text())
    return {(arm["name"], run["seed"]): epoch_rows(folder / run["out"])
            for arm in comparison["arms"] for run in arm["runs"]}


@pytest.mark.parametrize("signal, code", [("SIGINT", 130), ("SIGTERM", 143), ("SIGKILL", -9)])
def test_a_signal_stops_the_whole_comparison_and_resume_ends_it_as_if_uninterrupted(run_cli, fake_plugin, tmp_path,
                                                                                    signal, code):
    site = fake_plugin("signals", SIGNALS_ITSELF)
    whole, stopped, killed = tmp_path / "whole", tmp_path / "stopped", signal == "SIGKILL"
    if not BASELINE:
        run_compare(run_cli, *ARMS, "--out", whole)
        BASELINE.update(runs(whole))
    ended = console("mnist-compare", *ARMS, *SMALL, "--out", stopped,
                    env={"PYTHONPATH": str(site), "SIGNAL_AT": "relu+signals:778:2", "SIGNAL": signal})
    assert ended.returncode == code, ended.stderr
    name = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM"}.get(signal)
    assert killed or ended.stderr.strip().splitlines()[-1] == (
        f"interrupted ({name}) during relu, seed 778; the finished runs are in {stopped / 'comparison.json'}; "
        f"mnist-compare --resume {stopped} trains the rest and writes the comparison")
    recorded = json.loads((stopped / "comparison.json").read_text())
    assert recorded["status"] == ("running" if killed else "interrupted")
    assert {(arm["name"], run["seed"]): run["status"] for arm in recorded["arms"] for run in arm["runs"]} == {
        ("relu", 777): "completed", ("core", 777): "completed", ("relu", 778): "pending" if killed else "interrupted",
        ("core", 778): "pending"}
    summary = json.loads((stopped / "relu" / "seed-778" / "config.json").read_text()).get("summary")
    assert killed or (summary["status"], summary["checkpoint"], summary["saved"]["epoch"]) == ("interrupted", 1, 1)
    assert (stopped / "relu" / "seed-778" / "checkpoint.pt").is_file() and not (stopped / "core" / "seed-778").exists()
    first_run = json.loads((stopped / "relu" / "seed-777" / "config.json").read_text())["run_id"]
    resumed = run_cli("--resume", stopped, "--json", command=cli.compare)
    assert resumed.exit_code == 0, resumed.output
    assert "[3/4] continuing relu, seed 778" in resumed.stderr and "[4/4] training core, seed 778" in resumed.stderr
    assert "[1/4]" not in resumed.stderr  # the finished runs are not trained again
    assert json.loads((stopped / "relu" / "seed-777" / "config.json").read_text())["run_id"] == first_run
    assert runs(stopped) == BASELINE and len(BASELINE) == 4
    assert json.loads(resumed.stdout)["status"] == "completed" and (stopped / "curves.png").is_file()


def test_resume_refuses_what_would_change_the_comparison_and_what_is_not_one(run_cli, tmp_path):
    assert_user_error(run_cli("--resume", tmp_path, "--epochs", "3", command=cli.compare),
                      ["--epochs cannot be given with --resume", "comparison.json"])
    assert_user_error(run_cli("relu", "--resume", tmp_path, command=cli.compare),
                      ["an ARM cannot be given with --resume"])
    assert_user_error(run_cli("--resume", tmp_path, command=cli.compare), ["comparison.json is missing"])
    (tmp_path / "comparison.json").write_text('{"plan": {"arms": "relu"}}')
    assert_user_error(run_cli("--resume", tmp_path, command=cli.compare),
                      ["its plan is damaged", "start a new comparison"])


def test_out_is_a_new_folder_or_the_same_comparison_which_is_continued(run_cli, tmp_path):
    run_compare(run_cli, "relu", "--out", tmp_path / "cmp")
    run_id = json.loads((tmp_path / "cmp" / "relu" / "seed-777" / "config.json").read_text())["run_id"]
    again, result = run_compare(run_cli, "relu", "--out", tmp_path / "cmp")  # the same arms and settings: continued
    assert "training" not in result.stderr and again["status"] == "completed"
    assert json.loads((tmp_path / "cmp" / "relu" / "seed-777" / "config.json").read_text())["run_id"] == run_id
    assert_user_error(run_cli("relu", "core", *SMALL, "--out", tmp_path / "cmp", command=cli.compare),
                      [f"--out {tmp_path / 'cmp'} holds a comparison of other arms", "mnist-compare --resume"])
    assert_user_error(run_cli("relu", *SMALL, "--epochs", "3", "--out", tmp_path / "cmp", command=cli.compare),
                      ["holds a comparison of other settings"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert_user_error(run_cli("relu", *SMALL, "--out", tmp_path / "other", command=cli.compare),
                      ["already holds files and no comparison", "choose a new folder"])
    assert sorted(path.name for path in (tmp_path / "other").iterdir()) == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    run_compare(run_cli, "relu", "--out", tmp_path / "empty")


@pytest.mark.parametrize("damage, words", [
    ("no test set", ["--score-on", "no MNIST-format files in", "t10k-images-idx3-ubyte"]),
    ("a truncated test set", ["--score-on", "t10k-labels-idx1-ubyte.gz", "replace it with an intact copy"]),
])
def test_score_on_is_checked_before_any_arm_trains(run_cli, tmp_path, damage, words):
    folder = tmp_path / "scores"
    folder.mkdir()
    if damage == "a truncated test set":
        for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            (folder / name).write_bytes((SAMPLE / name).read_bytes()[: 100 if "labels" in name else None])
    result = run_cli("relu", *SMALL, "--score-on", folder, "--out", tmp_path / "cmp", command=cli.compare)
    assert_user_error(result, words)
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("name", ["comparison.json", "comparison.csv", "curves.png"])
def test_a_full_disk_while_writing_the_comparison_is_one_line_and_resume_writes_it(run_cli, tmp_path, monkeypatch,
                                                                                   name):
    out, write = tmp_path / "cmp", records.atomic_write
    run = out / "relu" / "seed-777"

    def full_once_trained(path, *args, **kwargs):
        if path.name == name and "summary" in records.recorded(run):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(path, *args, **kwargs)

    monkeypatch.setattr(records, "atomic_write", full_once_trained)
    ended = run_cli("relu", *SMALL, "--out", out, command=cli.compare)
    assert ended.exit_code == 2 and "Traceback" not in ended.stderr, ended.output
    said = ended.stderr.splitlines()[-1]
    assert said.startswith(f"Error: cannot write {out / name}: No space left on device; the ")
    assert said.endswith(f"mnist-compare --resume {out} " + ("draws it" if "png" in name else "writes it"))
    assert records.recorded(run)["summary"]["status"] == "completed" and len(epoch_rows(run)) == 2  # the arm's record
    assert not [path.name for path in out.iterdir() if path.name.startswith(".")]
    monkeypatch.setattr(records, "atomic_write", write)
    resumed = run_cli("--resume", out, command=cli.compare)
    assert resumed.exit_code == 0 and "training" not in resumed.stderr, resumed.output
    assert (out / name).is_file() and json.loads((out / "comparison.json").read_text())["status"] == "completed"


def test_a_folder_in_the_way_of_a_picture_is_one_line(run_cli, tmp_path):
    run_compare(run_cli, "relu", "--out", tmp_path / "cmp")
    (tmp_path / "cmp" / "curves.png").unlink()
    (tmp_path / "cmp" / "curves.png").mkdir()
    ended = run_cli("--resume", tmp_path / "cmp", command=cli.compare)
    assert ended.exit_code == 2 and "Traceback" not in ended.stderr, ended.output
    in_the_way = tmp_path / "cmp" / "curves.png"
    assert ended.stderr.splitlines()[-1].startswith(f"Error: cannot write {in_the_way}: Is a directory")
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["status"] == "completed"


def test_help_imports_no_torch(tmp_path):
    for command in ("compare", "plot"):
        code = (f"import sys\nfrom mnist_trainer import cli\ntry:\n    cli.{command}(['--help'])\n"
                "except SystemExit:\n    pass\n"
                "print('torch imported' if 'torch' in sys.modules else 'torch not imported')")
        out = console("python", "-c", code)
        assert out.returncode == 0 and out.stdout.strip().endswith("torch not imported"), out
        assert "--resume" in out.stdout or command == "plot"
