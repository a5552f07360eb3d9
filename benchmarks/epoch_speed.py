"""Seconds per epoch of mnist-trainer beside loops written by hand: the one a user writes, one from mnist-trainer's own
parts, and the course lab's.

    python benchmarks/epoch_speed.py                  # 60,000 images, prints the table and checks the targets
    python benchmarks/epoch_speed.py --record         # ... and appends the output to benchmarks/RESULTS.md
    python benchmarks/epoch_speed.py --listeners      # also mnist-trainer with one step_end / before_step listener
    python benchmarks/epoch_speed.py --scaling        # also synthetic 60,000 vs 240,000 through mnist-trainer
    python benchmarks/epoch_speed.py --cnn            # also Lab 11's CNN, by hand and as --plugin cnn --plugin relu
    python benchmarks/epoch_speed.py --optimizer rmsprop  # every loop with --plugin rmsprop's optimizer
    python benchmarks/epoch_speed.py --device cuda    # on a GPU: loops by hand and mnist-trainer, data on the device
    python benchmarks/epoch_speed.py --tiny           # a seconds-long smoke run of everything (the test suite's)

Each variant runs in its own process, on the same data, model (784-256-256-10 ReLU,
Xavier uniform; or the CNN) and settings (batch 100, Adam, lr 0.001, test-split
evaluation every epoch), and reports the median epoch after a warm-up epoch and its
peak resident memory; the variants alternate round by round, so that a slow spell of
this shared machine falls on all of them alike. The loops are in loops.py. With
``--optimizer NAME`` the loops by hand build the torch class, rate and arguments
(implementation included) that ``--plugin NAME`` builds, and mnist-trainer runs with
``--plugin NAME``; then the course loop is left out and the targets against the plain loop are not checked (they are
Adam's).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from loops import (  # noqa: E402
    BATCH,
    FASHION,
    WIDTHS,
    course_loop,
    dispatch_seconds,
    lab11_cnn,
    load,
    mnist_trainer_run,
    optimizer_plugin,
    plain_loop,
    same_parts_loop,
)

RESULTS = Path(__file__).with_name("RESULTS.md")
MLP_VARIANTS = {"course loop": course_loop, "plain loop": plain_loop, "same-parts loop": same_parts_loop,
                "mnist-trainer": mnist_trainer_run}
LISTENERS = {"+ step_end": functools.partial(mnist_trainer_run, listen="step_end"),
             "+ before_step": functools.partial(mnist_trainer_run, listen="before_step")}
CNN_VARIANTS = {"plain cnn loop": functools.partial(plain_loop, model=lab11_cnn),
                "same-parts cnn loop": functools.partial(same_parts_loop, model=lab11_cnn),
                "mnist-trainer cnn": functools.partial(mnist_trainer_run, plugins=("cnn", "relu"))}
VARIANTS = {**MLP_VARIANTS, **LISTENERS, **CNN_VARIANTS}


# ----- measuring -----------------------------------------------------------------------------

def run_variant(name: str, dataset: str, epochs: int, optimizer: str | None = None, device: str = "cpu") -> dict:
    """Run one variant in a fresh process; its epoch and evaluation seconds after the warm-up, and peak memory."""
    chosen = ["--optimizer", optimizer] if optimizer else []
    out = subprocess.run([sys.executable, __file__, "--variant", name, "--dataset", dataset, "--epochs", str(epochs),
                          "--device", device, *chosen], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def run_rounds(names: list[tuple[str, str]], epochs: int, rounds: int, optimizer: str | None = None,
               device: str = "cpu") -> dict[tuple[str, str], dict]:
    """Each (variant, dataset) `rounds` times, alternating, so that a slow spell of a shared machine hits all alike.

    Each round starts one variant further along the list, so that none always runs first or last. Returns per pair:
    the median epoch and evaluation seconds over every round's epochs after its warm-up, the median peak memory, and
    each round's own numbers.
    """
    runs = {pair: [] for pair in names}
    for number in range(rounds):
        for pair in names[number % len(names):] + names[: number % len(names)]:
            runs[pair].append(run_variant(*pair, epochs, optimizer, device))
    return {pair: {
        "epoch_seconds": statistics.median(t for r in rs for t in r["epochs"]),
        "eval_seconds": statistics.median(t for r in rs for t in r["evals"]),
        "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in rs),
        "rounds": rs,
    } for pair, rs in runs.items()}


def child(name: str, dataset: str, epochs: int, optimizer: str | None, device: str) -> None:
    timings = VARIANTS[name](dataset, epochs, optimizer, device)
    after_warmup = timings[1:] or timings
    print(json.dumps({
        "epochs": [t for t, _ in after_warmup],
        "evals": [e for _, e in after_warmup],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def epoch_flops(train_size: int, test_size: int) -> float:
    """Forward and backward of the three Linear layers for an epoch, plus the test forward pass."""
    pairs = list(zip(WIDTHS, WIDTHS[1:]))
    forward = sum(2 * i * o for i, o in pairs)
    backward = forward + sum(2 * i * o for i, o in pairs[1:])  # weight grads everywhere, input grads above layer 1
    return (train_size // BATCH) * BATCH * (forward + backward) + test_size * forward


def matmul_rate(seconds: float = 2.0) -> float:
    """FLOP/s of this machine's torch at the epoch's own GEMM shapes (forward, weight and input grads)."""
    pairs = list(zip(WIDTHS, WIDTHS[1:]))
    xs = {i: torch.rand(BATCH, i) for i in WIDTHS}
    ws = {(i, o): torch.rand(o, i) for i, o in pairs}
    flops = sum(2 * BATCH * i * o for i, o in pairs) * 2 + sum(2 * BATCH * i * o for i, o in pairs[1:])

    def one_batch():
        for i, o in pairs:
            torch.mm(xs[i], ws[i, o].T)
            torch.mm(xs[o].T, xs[i])
        for i, o in pairs[1:]:
            torch.mm(xs[o], ws[i, o])

    for _ in range(20):
        one_batch()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        one_batch()
        count += 1
    return count * flops / (time.perf_counter() - started)


def machine(device: str = "cpu") -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    gpu = f"; {torch.cuda.get_device_name(0)}" if device.startswith("cuda") and torch.cuda.is_available() else ""
    return (f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads{gpu}; Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def main() -> None:
    args = arguments()
    if args.variant:
        return child(args.variant, args.dataset, args.epochs, args.optimizer, args.device)
    if args.tiny:
        args.dataset, args.epochs, args.rounds = "synthetic:1200", 2, 1
    dataset = args.dataset or ("fashion-mnist" if (FASHION / "train-images-idx3-ubyte.gz").exists()
                               else "synthetic:60000")
    checks = not args.tiny
    lines = [optimizer_line(args.optimizer, args.device)]
    lines += report(dataset, args.epochs, args.rounds, checks, args.optimizer, args.device, args.listeners or args.tiny)
    if args.cnn or (args.tiny and not args.optimizer):
        lines += cnn_report(args.cnn_dataset or dataset, args.epochs, args.rounds, checks, args.optimizer, args.device)
    if args.scaling:
        lines += scaling(args.epochs, args.rounds)
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(text, args.device)


def record(text: str, device: str = "cpu") -> None:
    """Append a benchmark's output to RESULTS.md under today's date, the command as it was given, and the machine."""
    command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    with RESULTS.open("a") as file:
        file.write(f"\n## {time.strftime('%Y-%m-%d')}: `{command}`\n\nMachine: {machine(device)}\n\n```\n{text}\n```\n")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help="default: fashion-mnist when installed, else synthetic:60000")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is a warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each variant")
    parser.add_argument("--tiny", action="store_true",
                        help="synthetic:1200, 2 epochs, every part (with --optimizer: the MLP's), no targets")
    parser.add_argument("--listeners", action="store_true", help="also mnist-trainer with one do-nothing listener of "
                                                                 "step_end, and of before_step")
    parser.add_argument("--scaling", action="store_true",
                        help="also time mnist-trainer on synthetic 60,000 and 240,000")
    parser.add_argument("--cnn", action="store_true", help="also time Lab 11's CNN by hand and through mnist-trainer")
    parser.add_argument("--cnn-dataset",
                        help="the CNN's data (default: --dataset); its epochs are ~20x the MLP's on a CPU")
    parser.add_argument("--optimizer", metavar="NAME", help="every loop with this optimizer plugin's optimizer")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: the loops by hand and mnist-trainer (not the "
                                                        "course loop, which is CPU-bound by design) train there")
    parser.add_argument("--record", action="store_true", help=f"append the output to {RESULTS}")
    args = parser.parse_args()
    if args.rounds < 1 or args.epochs < 1:
        parser.error("--rounds and --epochs must be at least 1")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):
        parser.error(f"--device {args.device!r}: choose cpu, cuda or cuda:N")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch sees no CUDA device; use --device cpu")
    if args.optimizer:
        import mnist_trainer_optimizers

        if args.optimizer not in mnist_trainer_optimizers.FAMILY:
            parser.error(f"--optimizer {args.optimizer!r}: choose one of {', '.join(mnist_trainer_optimizers.FAMILY)}")
    return args


def optimizer_line(name: str | None, device: str) -> str:
    if name is None:
        return ("optimizer: Adam at 0.001 (the plain and course loops: torch's default implementation; the same-parts "
                "loop and mnist-trainer: fused)")
    plugin = optimizer_plugin(name)
    arguments = ", ".join(f"{key}={value}" for key, value in plugin.arguments(plugin.options(), device).items())
    return f"optimizer: {plugin.torch_class}(lr={plugin.lr}, {arguments}) in every loop (--plugin {name})"


def report(dataset: str, epochs: int, rounds: int, checks: bool, optimizer: str | None = None, device: str = "cpu",
           listeners: bool = False) -> list[str]:
    train_size, test_size = (len(part) for part in load(dataset)[1::2])
    course = device == "cpu" and optimizer is None  # the course loop's data path is on the CPU; its target, Adam's
    names = [name for name in MLP_VARIANTS if course or name != "course loop"]
    names += list(LISTENERS) if listeners else []
    measured = run_rounds([(name, dataset) for name in names], epochs, rounds, optimizer, device)
    results = {name: measured[name, dataset] for name in names}
    ours = results["mnist-trainer"]
    lines = [f"data: {dataset} ({train_size} train, {test_size} test images) on {device}; {rounds} alternating rounds "
             f"of {epochs} epochs per variant; s/epoch: median of the epochs after each round's first; vs: median of "
             "the rounds' ratios"]
    lines += table(results, results["plain loop"], ours)
    if listeners:
        steps = train_size // BATCH
        for name in LISTENERS:
            cost = dispatch_seconds(name[2:])
            lines.append(f"{name[2:]} dispatch, timed in one process: {cost * 1e6:.1f} us per step, "
                         f"{cost * steps * 1e3:.1f} ms per epoch of {steps} steps, "
                         f"{cost * steps / ours['epoch_seconds']:.2%} of mnist-trainer's epoch")
    if device == "cpu":
        flops = epoch_flops(train_size, test_size)
        floor = flops / matmul_rate()
        lines.append(f"matmul floor: {floor:.3f} s/epoch ({flops / 1e9:.1f} GFLOP at "
                     f"{flops / floor / 1e9:.0f} GFLOP/s measured at these shapes)")
    return lines + (targets(results, optimizer is None) if checks else [])


def targets(results: dict, adam: bool) -> list[str]:
    """What the project holds itself to: its own overhead against the same parts by hand, and against what a user
    writes (Adam's targets: with another optimizer both loops build the same implementation)."""
    ours = results["mnist-trainer"]
    seconds = ours["epoch_seconds"]
    lines = [target("mnist-trainer within 3% of the same-parts loop", paired(ours, results["same-parts loop"]) <= 1.03)]
    if adam:
        lines.append(target("mnist-trainer at most 0.85x the plain loop", paired(ours, results["plain loop"]) <= 0.85))
    if adam and "course loop" in results:
        lines.append(target("mnist-trainer at least 4x faster than the course loop",
                            paired(results["course loop"], ours) >= 4))
    for name in LISTENERS:
        if name in results:
            lines.append(target(f"one {name[2:]} listener costs at most 2% of the epoch",
                                paired(results[name], ours) <= 1.02))
    return lines + [target("evaluation under 10% of the epoch", ours["eval_seconds"] / seconds < 0.10),
                    target("peak resident memory under 1.2 GiB", ours["peak_rss_mib"] < 1.2 * 1024)]


def cnn_report(dataset: str, epochs: int, rounds: int, checks: bool, optimizer: str | None = None,
               device: str = "cpu") -> list[str]:
    """Lab 11's CNN by hand (preloaded tensors, randperm, default Adam; and from mnist-trainer's parts) against
    --plugin cnn --plugin relu."""
    measured = run_rounds([(name, dataset) for name in CNN_VARIANTS], epochs, rounds, optimizer, device)
    results = {name: measured[name, dataset] for name in CNN_VARIANTS}
    ours = results["mnist-trainer cnn"]
    lines = [f"cnn: {dataset} on {device}, Lab 11's network (conv 32, conv 64, Linear); {rounds} alternating rounds "
             f"of {epochs} epochs"]
    lines += table(results, results["plain cnn loop"], ours)
    if checks:
        lines.append(target("mnist-trainer cnn within 3% of the same-parts cnn loop",
                            paired(ours, results["same-parts cnn loop"]) <= 1.03))
    return lines


def table(results: dict, plain: dict, ours: dict) -> list[str]:
    width = max(map(len, results))
    lines = [f"{'variant':<{width}} {'s/epoch':>8} {'vs plain':>9} {'vs ours':>8} {'eval share':>10} "
             f"{'peak RSS':>10}  rounds (s/epoch)"]
    for name, result in results.items():
        seconds = result["epoch_seconds"]
        lines.append(f"{name:<{width}} {seconds:>8.3f} {paired(result, plain):>8.2f}x {paired(result, ours):>7.3f}x "
                     f"{result['eval_seconds'] / seconds:>9.1%} {result['peak_rss_mib']:>6.0f} MiB  "
                     f"{per_round(result)}")
    return lines


def paired(result: dict, reference: dict) -> float:
    """The median over rounds of `result`'s epoch over `reference`'s in the same round: a slow spell of the machine
    that lasts a round moves both."""
    return statistics.median(statistics.median(r["epochs"]) / statistics.median(q["epochs"])
                             for r, q in zip(result["rounds"], reference["rounds"]))


def per_round(result: dict) -> str:
    return " ".join(f"{statistics.median(r['epochs']):.2f}" for r in result["rounds"])


def scaling(epochs: int, rounds: int) -> list[str]:
    """mnist-trainer on synthetic 60,000 and 240,000 images."""
    sizes = (60000, 240000)
    measured = run_rounds([("mnist-trainer", f"synthetic:{n}") for n in sizes], epochs, rounds)
    seconds = {n: measured["mnist-trainer", f"synthetic:{n}"]["epoch_seconds"] for n in sizes}
    peaks = {n: measured["mnist-trainer", f"synthetic:{n}"]["peak_rss_mib"] for n in sizes}
    ratio = seconds[240000] / seconds[60000]
    tensors_mib = (240000 - 60000) * (1 + 1 / 6) * (784 * 4 + 8) / 2**20  # train + test images and labels
    growth = peaks[240000] - peaks[60000]
    return [
        f"scaling, mnist-trainer on synthetic, {rounds} alternating rounds: 60000 -> 240000 images: "
        f"{seconds[60000]:.3f} -> {seconds[240000]:.3f} s/epoch ({ratio:.2f}x); peak RSS {peaks[60000]:.0f} -> "
        f"{peaks[240000]:.0f} MiB (+{growth:.1f} MiB; the added dataset tensors are {tensors_mib:.1f} MiB)",
        target("time per epoch within 15% of 4x", abs(ratio / 4 - 1) <= 0.15),
        target("peak memory grows by no more than the dataset's tensors", growth <= tensors_mib),
    ]


def target(text: str, met: bool) -> str:
    return f"target {'met' if met else 'MISSED'}: {text}"


if __name__ == "__main__":
    main()
