"""Seconds per epoch on one process against several under torchrun, on the same data and settings.

    python benchmarks/processes.py                     # fashion-mnist when installed, else synthetic:60000
    python benchmarks/processes.py --record            # and append the result to RESULTS.md

Times three ways of spending this machine's cores on one run: one process with 1 thread,
one process with as many threads as processes, and N processes (gloo) with 1 thread each.
The communication share is the part of the N-process epoch beyond an even split of the
1-thread work: all-reduces, waiting for the slower process, and what each process repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
FASHION = Path("/usr/share/datasets/fashion-mnist")


def epoch_seconds(command: list[str], out: Path, threads: int) -> float:
    """The median epoch of a run after its first (a warm-up), from its record."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run([*command, "--out", str(out)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(row["seconds"] for row in rows if row["stage"] == "epoch" and row["epoch"] > 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is a warm-up")
    parser.add_argument("--plugins", default="relu,xavier", help="comma-separated, e.g. batchnorm,he")
    parser.add_argument("--record", action="store_true", help=f"append the output to {RESULTS.name}")
    args = parser.parse_args()
    data = (["--data-dir", str(FASHION)] if (FASHION / "train-images-idx3-ubyte.gz").exists()
            else ["--dataset", "synthetic:60000"])
    run = ["-m", "mnist_trainer", *(f"--plugin={name}" for name in args.plugins.split(",")), *data,
           "--epochs", str(args.epochs), "--device", "cpu"]
    n = args.processes
    with tempfile.TemporaryDirectory() as folder:
        one_thread = epoch_seconds([sys.executable, *run], Path(folder) / "one-thread", 1)
        threads = epoch_seconds([sys.executable, *run], Path(folder) / "threads", n)
        processes = epoch_seconds([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                   "--nproc-per-node", str(n), *run],
                                  Path(folder) / "processes", 1)
    share = max(0.0, 1 - one_thread / n / processes)
    lines = [
        f"{' '.join(data)}, --plugin {' --plugin '.join(args.plugins.split(','))}, batch 100, "
        f"median of epochs 2-{args.epochs}:",
        f"  1 process  x 1 thread : {one_thread:.3f} s/epoch",
        f"  1 process  x {n} threads: {threads:.3f} s/epoch ({one_thread / threads:.2f}x the 1-thread speed)",
        f"  {n} processes x 1 thread: {processes:.3f} s/epoch ({one_thread / processes:.2f}x the 1-thread speed); "
        f"communication and waiting: {share:.0%} of the epoch",
    ]
    print("\n".join(lines))
    if args.record:
        with RESULTS.open("a") as results:
            results.write(f"\n## {time.strftime('%Y-%m-%d')}: "
                          f"`python benchmarks/processes.py {' '.join(sys.argv[1:])}`\n\n"
                          f"On {os.cpu_count()} CPU cores.\n\n```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
