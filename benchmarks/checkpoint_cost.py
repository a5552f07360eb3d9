"""What a resumable checkpoint every epoch costs, beside the epoch it follows.

    python benchmarks/checkpoint_cost.py             # 60,000 images: Fashion-MNIST when installed, else synthetic
    python benchmarks/checkpoint_cost.py --record    # ... and append the output to benchmarks/RESULTS.md
    python benchmarks/checkpoint_cost.py --tiny      # a seconds-long smoke run (the test suite's), no target

For the MLP (relu + xavier) and the CNN (cnn + relu): the median epoch through the project's
loop, and the median of 15 writes of the checkpoint (`checkpoint.pt`, written and fsynced
atomically, as the record writer does at each epoch's end). Target: at most 5% of the epoch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from epoch_speed import FASHION, RESULTS, record, target  # noqa: E402


def measure(plugins: tuple[str, ...], dataset: str, epochs: int) -> tuple[float, float, float]:
    """(median epoch seconds, median checkpoint seconds, checkpoint MiB) for one run of `plugins`."""
    from mnist_trainer import checkpoint, trainer
    from mnist_trainer.build import build, load_data, select
    from mnist_trainer.distributed import World
    from mnist_trainer.records import STATE, RunFolder
    from mnist_trainer.run import Run
    from mnist_trainer.session import Output

    settings, pipeline = select(list(plugins), [], dataset=dataset, epochs=epochs, device="cpu")
    data = load_data(pipeline, settings, torch.device("cpu"), Output(say=print, warn=print))
    run = Run(settings, data, torch.device("cpu"), None, World())
    loop = build(pipeline, run)
    rows = []

    def epoch_end(row: dict) -> bool:
        rows.append(row["seconds"])
        return False  # never stop early

    trainer.fit(loop, data, epochs, trainer.Callbacks(epoch_end=epoch_end))
    folder = RunFolder.claim(Path(tempfile.mkdtemp()) / "run")
    writes = []
    for _ in range(15):
        started = time.perf_counter()
        folder.save_state(checkpoint.take(run, "benchmark"))
        writes.append(time.perf_counter() - started)
    return statistics.median(rows[1:] or rows), statistics.median(writes), (folder.path / STATE).stat().st_size / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="synthetic:1200, 2 epochs, no target")
    parser.add_argument("--record", action="store_true", help=f"append the output to {RESULTS}")
    args = parser.parse_args()
    dataset = "synthetic:1200" if args.tiny else ("fashion-mnist" if (FASHION / "train-images-idx3-ubyte.gz").exists()
                                                 else "synthetic:60000")
    lines = [f"checkpoint cost on {dataset}: median epoch after the first, median of 15 checkpoint writes"]
    for plugins in (("relu", "xavier"), ("cnn", "relu")):
        epoch, write, size = measure(plugins, dataset, 2 if args.tiny else 3)
        lines.append(f"{'+'.join(plugins):<12} epoch {epoch:7.3f} s  checkpoint {write * 1000:6.1f} ms "
                     f"({size:.2f} MiB)  {write / epoch:6.2%} of the epoch")
        if not args.tiny:
            lines.append(target(f"{'+'.join(plugins)}: a checkpoint every epoch costs at most 5% of it",
                                write / epoch <= 0.05))
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(text)


if __name__ == "__main__":
    main()
