"""The benchmarks' tiny modes run and report every variant (the full runs live in benchmarks/); each starts a process
per variant, so the epoch-speed, checkpoint and tuning-workers runs are slow tests (pytest -m slow)."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

ROW = re.compile(r"(course loop|plain loop|same-parts loop|mnist-trainer|\+ step_end|\+ before_step)\s+([\d.]+)\s+"
                 r"([\d.]+)x\s+([\d.]+)x\s+([\d.]+)%\s+(\d+) MiB")


@pytest.mark.slow
def test_epoch_speed_tiny_mode_reports_every_loop_and_listener():
    out = subprocess.run([sys.executable, ROOT / "benchmarks" / "epoch_speed.py", "--tiny"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = {}
    for line in out.stdout.splitlines():
        match = ROW.match(line)
        if match:
            rows[match[1]] = [float(value) for value in match.groups()[1:]]
    assert set(rows) == {"course loop", "plain loop", "same-parts loop", "mnist-trainer", "+ step_end",
                         "+ before_step"}, out.stdout
    assert rows["plain loop"][1] == 1.0 and rows["mnist-trainer"][2] == 1.0
    assert all(seconds > 0 and 0 <= share < 100 and rss > 0 for seconds, _, _, share, rss in rows.values())
    assert "same-parts cnn loop" in out.stdout and "mnist-trainer cnn" in out.stdout
    floor = re.search(r"matmul floor: ([\d.]+) s/epoch \(([\d.]+) GFLOP", out.stdout)
    assert floor and float(floor[1]) > 0 and float(floor[2]) == 1.6  # 1,200 images: 1.6 GFLOP per epoch
    assert "target" not in out.stdout  # the tiny mode checks no targets
    dispatch = re.findall(r"^(step_end|before_step) dispatch, timed in one process: ([\d.]+) us per step", out.stdout,
                          flags=re.M)
    assert [event for event, _ in dispatch] == ["step_end", "before_step"] and all(float(us) > 0 for _, us in dispatch)


def test_a_ratio_is_the_median_of_the_rounds_ratios_not_a_ratio_of_pooled_medians():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from epoch_speed import paired

    ours = {"rounds": [{"epochs": [1.0, 1.0]}, {"epochs": [3.0, 3.0]}, {"epochs": [3.0]}]}  # rounds 2, 3: slow spells
    other = {"rounds": [{"epochs": [1.2, 1.2]}, {"epochs": [1.0, 1.0]}, {"epochs": [3.3]}]}  # round 2: a quiet one
    assert paired(ours, other) == pytest.approx(1 / 1.1)  # rounds: 0.83, 3.0, 0.91 (pooled medians: 3.0 / 1.2)
    assert paired(other, ours) == pytest.approx(1.1)


@pytest.mark.slow
def test_epoch_speed_times_every_mlp_loop_with_an_optimizer_plugins_optimizer():
    out = subprocess.run([sys.executable, ROOT / "benchmarks" / "epoch_speed.py", "--tiny", "--optimizer", "lbfgs"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("optimizer: LBFGS(lr=1.0, max_iter=2, max_eval=5,") and "--plugin lbfgs" in lines[0]
    rows = {line.split()[0] for line in lines if ROW.match(line)}
    assert rows == {"plain", "same-parts", "mnist-trainer", "+"} and "cnn" not in out.stdout  # the course loop: Adam
    assert "target" not in out.stdout


@pytest.mark.slow
def test_checkpoint_cost_tiny_mode_measures_both_models():
    out = subprocess.run([sys.executable, ROOT / "benchmarks" / "checkpoint_cost.py", "--tiny"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = re.findall(r"^(\S+)\s+epoch\s+([\d.]+) s\s+checkpoint\s+([\d.]+) ms \(([\d.]+) MiB\)", out.stdout,
                      flags=re.M)
    assert [row[0] for row in rows] == ["relu+xavier", "cnn+relu"], out.stdout
    assert all(float(epoch) > 0 and float(ms) > 0 and float(mib) > 0 for _, epoch, ms, mib in rows)
    assert "target" not in out.stdout


def test_startup_times_every_command_that_answers_without_training():
    out = subprocess.run([sys.executable, ROOT / "benchmarks" / "startup.py", "--rounds", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    timed = re.findall(r"^(mnist-\w+ --[\w-]+)\s+fastest ([\d.]+)\s+median ([\d.]+)$", out.stdout, flags=re.M)
    assert [command for command, _, _ in timed] == ["mnist-run --help", "mnist-run --list-plugins", "mnist-eval --help",
                                                    "mnist-compare --help", "mnist-plot --help"]
    assert all(0 < float(fastest) <= float(median) for _, fastest, median in timed)


@pytest.mark.slow
def test_tune_jobs_times_every_variant_and_records_each_workers_threads():
    out = subprocess.run([sys.executable, ROOT / "benchmarks" / "tune_jobs.py", "--rounds", "1", "--trials", "2",
                          "--epochs", "1", "--dataset", "synthetic:1200"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = dict(re.findall(r"^(--jobs \d(?:, OMP_NUM_THREADS=1)?)\s+wall .* threads: (.*?)  rounds'", out.stdout,
                           flags=re.M))
    assert list(rows) == ["--jobs 1", "--jobs 1, OMP_NUM_THREADS=1", "--jobs 2"], out.stdout
    threads = {name: [int(count) for count in re.findall(r"worker \d: (\d+)", text)] for name, text in rows.items()}
    assert len(threads["--jobs 1"]) == 1 and threads["--jobs 1, OMP_NUM_THREADS=1"] == [1]
    assert len(set(threads["--jobs 2"])) == 1 and 2 * threads["--jobs 2"][0] <= max(2, os.cpu_count())
    assert re.search(r"^--jobs 2 against --jobs 1: [\d.]+x the wall time, [\d.]+x the epochs per second$", out.stdout,
                     flags=re.M)


@pytest.mark.parametrize("flags, said", [(["--rounds", "0"], "--rounds and --epochs must be at least 1"),
                                         (["--optimizer", "nope"], "--optimizer 'nope': choose one of sgd,"),
                                         (["--device", "tpu"], "--device 'tpu': choose cpu, cuda or cuda:N")])
def test_epoch_speed_refuses_bad_flags_before_timing_anything(flags, said):
    out = subprocess.run([sys.executable, ROOT / "benchmarks" / "epoch_speed.py", *flags],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and said in out.stderr.splitlines()[-1] and not out.stdout, out.stderr
