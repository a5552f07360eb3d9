"""The same ``mnist-tune`` study with ``--jobs 1`` and with ``--jobs N`` (torch's own thread default in both, as a user
gets it), and with ``--jobs 1`` under ``OMP_NUM_THREADS=1``: which finishes its trials sooner here, and why.

    python benchmarks/tune_jobs.py                    # 3 alternating rounds of 8 trials x 3 epochs, mnist-sample
    python benchmarks/tune_jobs.py --record           # ... and appends the output to benchmarks/RESULTS.md

Every trial trains to the end (``--no-prune``), so each variant does the same work whatever the sampler draws (the
learning rate, the init and dropout's p change what is learnt, not the cost of an epoch). The variants alternate
round by round, so that a slow spell of this shared machine falls on all of them alike. For each: the command's wall
time (with its start: torch imported, and for N workers the worker processes started), the median epoch of every
trial (from the trials' records: N workers' epochs run side by side), the epochs the workers finish per second
together, and the torch threads each worker used (from trials.csv).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from epoch_speed import RESULTS, record  # noqa: E402

BIN = Path(sys.executable).parent
SPACE = ["-p", "relu", "-p", "dropout", "--space", "lr=1e-4..1e-1:log", "--space", "init=xavier|he",
         "--space", "dropout.p=0.0..0.6"]


def study(jobs: int, threads: int | None, out: Path, args: argparse.Namespace) -> dict:
    """One run of the study with `jobs` workers (under ``OMP_NUM_THREADS=threads`` if given): its wall time, its
    trials' median epoch, the threads each worker used, and the load average it ran under."""
    command = [BIN / "mnist-tune", *SPACE, "--dataset", args.dataset, "--val", "1000", "--epochs", str(args.epochs),
               "--trials", str(args.trials), "--no-prune", "--jobs", str(jobs), "--device", "cpu", "--out", out]
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update({"OMP_NUM_THREADS": str(threads)} if threads else {})  # else torch's own default, as a user gets
    started = time.perf_counter()
    done = subprocess.run(list(map(str, command)), capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))} failed:\n{done.stderr[-2000:]}")
    rows = list(csv.DictReader((out / "trials.csv").open()))
    records = [json.loads(line) for row in rows
               for line in (Path(row["run"]) / "metrics.jsonl").read_text().splitlines()]
    return {"wall": wall, "epoch": statistics.median(row["seconds"] for row in records if row["stage"] == "epoch"),
            "threads": {row["worker"].rsplit("#", 1)[1]: int(row["threads"]) for row in rows},
            "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="the workers compared with one")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--record", action="store_true", help=f"append the output to {RESULTS}")
    args = parser.parse_args()
    variants = {"--jobs 1": (1, None), "--jobs 1, OMP_NUM_THREADS=1": (1, 1), f"--jobs {args.jobs}": (args.jobs, None)}
    found: dict[str, list[dict]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for index, (name, (jobs, threads)) in enumerate(variants.items()):
                found[name].append(study(jobs, threads, Path(folder) / f"{round_}-{index}", args))
    text = "\n".join(report(found, variants, args))
    print(text)
    if args.record:
        record(text)


def report(found: dict[str, list[dict]], variants: dict, args: argparse.Namespace) -> list[str]:
    """A line per variant (medians over the rounds, then each round's wall), and --jobs N against --jobs 1."""
    lines = [f"{args.dataset} --val 1000, 784-256-256-10 relu + dropout, {args.trials} trials x {args.epochs} epochs "
             f"(--no-prune), {args.rounds} alternating rounds; medians over the rounds"]
    median = {name: {key: statistics.median(run[key] for run in runs) for key in ("wall", "epoch")}
              for name, runs in found.items()}
    for name, runs in found.items():
        jobs, epoch = variants[name][0], median[name]["epoch"]
        threads = ", ".join(f"worker {index}: {count}" for index, count in sorted(runs[0]["threads"].items()))
        lines.append(f"{name:<28} wall {median[name]['wall']:5.1f} s  median epoch {epoch:.3f} s  "
                     f"{jobs / epoch:4.2f} epochs/s together  threads: {threads}  rounds' wall (s): "
                     + " ".join(f"{run['wall']:.1f}" for run in runs) + "  load average after each: "
                     + " ".join(f"{run['load']:.1f}" for run in runs))
    one, many = median["--jobs 1"], median[f"--jobs {args.jobs}"]
    lines.append(f"--jobs {args.jobs} against --jobs 1: {many['wall'] / one['wall']:.2f}x the wall time, "
                 f"{args.jobs * one['epoch'] / many['epoch']:.2f}x the epochs per second")
    return lines


if __name__ == "__main__":
    main()
