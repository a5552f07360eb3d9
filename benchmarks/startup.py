"""How long the commands take to answer without training: ``--help`` and ``--list-plugins``, which import neither torch
nor any plugin (the test suite checks that; this measures the time).

    python benchmarks/startup.py            # 7 alternating rounds of each command, the fastest and the median
    python benchmarks/startup.py --record   # ... and appends the output to benchmarks/RESULTS.md

The commands alternate round by round, so that a slow spell of this shared machine falls on all of them alike;
the fastest of the rounds is what the command costs, the median what a user meets on a busy machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from epoch_speed import RESULTS, record, target  # noqa: E402

BIN = Path(sys.executable).parent
COMMANDS = (("mnist-run", "--help"), ("mnist-run", "--list-plugins"), ("mnist-eval", "--help"),
            ("mnist-compare", "--help"), ("mnist-plot", "--help"))
LIMIT = 0.5  # seconds: what answering a --help is worth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--record", action="store_true", help=f"append the output to {RESULTS}")
    args = parser.parse_args()
    walls: dict[tuple[str, str], list[float]] = {command: [] for command in COMMANDS}
    for _ in range(args.rounds):
        for command in COMMANDS:
            started = time.perf_counter()
            subprocess.run([BIN / command[0], command[1]], capture_output=True, check=True)
            walls[command].append(time.perf_counter() - started)
    lines = [f"{args.rounds} alternating rounds; seconds of wall time"]
    for command, seconds in walls.items():
        lines.append(f"{' '.join(command):<28} fastest {min(seconds):.3f}  median {statistics.median(seconds):.3f}")
    lines += [target(f"{' '.join(command)} under {LIMIT} s", min(seconds) < LIMIT)
              for command, seconds in walls.items()]
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(text)


if __name__ == "__main__":
    main()
