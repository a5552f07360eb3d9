"""Seconds per epoch of mnist-trainer beside a plain PyTorch loop and the course lab's loop.

    python benchmarks/epoch_speed.py                  # 60,000 images, prints the table and checks the targets
    python benchmarks/epoch_speed.py --record         # ... and appends the output to benchmarks/RESULTS.md
    python benchmarks/epoch_speed.py --scaling        # also synthetic 60,000 vs 240,000 through mnist-trainer
    python benchmarks/epoch_speed.py --cnn            # also Lab 11's CNN, by hand and as --plugin cnn --plugin relu
    python benchmarks/epoch_speed.py --optimizer rmsprop  # every loop with --plugin rmsprop's optimizer
    python benchmarks/epoch_speed.py --tiny           # a seconds-long smoke run of everything (the test suite's)

Each variant runs in its own process, on the same data, model (784-256-256-10 ReLU,
Xavier uniform; or the CNN) and settings (batch 100, Adam, lr 0.001, test-split
evaluation every epoch), and reports the median epoch after a warm-up epoch and its
peak resident memory. With ``--optimizer NAME`` the plain loops build the torch class,
rate and arguments (implementation included) that ``--plugin NAME`` builds, and
mnist-trainer runs with ``--plugin NAME``; then no targets are checked (they are Adam's).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

FASHION = Path("/usr/share/datasets/fashion-mnist")
RESULTS = Path(__file__).with_name("RESULTS.md")
WIDTHS = (784, 256, 256, 10)
BATCH = 100


# ----- the three loops -------------------------------------------------------------------------

def mlp() -> torch.nn.Sequential:
    """The course lab's model: three Linear layers with ReLU, Xavier-uniform weights."""
    layers = []
    for fan_in, fan_out in zip(WIDTHS, WIDTHS[1:]):
        linear = torch.nn.Linear(fan_in, fan_out)
        torch.nn.init.xavier_uniform_(linear.weight)
        layers += [linear, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def lab11_cnn() -> torch.nn.Sequential:
    """The course lab's CNN, as `--plugin cnn --plugin relu` builds it: two conv blocks, then a Linear."""
    nn = torch.nn
    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                         nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 10))


def make_optimizer(parameters, name: str | None) -> torch.optim.Optimizer:
    """Adam with its defaults (lr 0.001), or what ``--plugin NAME`` builds: its class, rate and arguments."""
    if name is None:
        return torch.optim.Adam(parameters)
    plugin = optimizer_plugin(name)
    return (plugin.build_as or getattr(torch.optim, plugin.torch_class))(parameters, lr=plugin.lr,
                                                                           **plugin.arguments(plugin.options(), "cpu"))


def optimizer_plugin(name: str):
    import mnist_trainer_optimizers

    if name not in mnist_trainer_optimizers.FAMILY:
        raise SystemExit(f"--optimizer {name!r}: choose one of {', '.join(mnist_trainer_optimizers.FAMILY)}")
    return mnist_trainer_optimizers.FAMILY[name]


def step(optimizer: torch.optim.Optimizer, loss_of) -> torch.Tensor:
    """One optimizer step; `loss_of()` is the mini-batch's forward pass and loss, which LBFGS evaluates repeatedly."""

    def closure():
        optimizer.zero_grad()
        cost = loss_of()
        cost.backward()
        return cost

    if isinstance(optimizer, torch.optim.LBFGS):
        return optimizer.step(closure)
    cost = closure()
    optimizer.step()
    return cost


def course_loop(dataset: str, epochs: int, optimizer: str | None = None) -> list[tuple[float, float]]:
    """The lab's pattern: a torchvision dataset, ToTensor per sample, DataLoader, Adam(lr=0.001)."""
    from torchvision import datasets, transforms

    root = torchvision_root(dataset)
    train = datasets.FashionMNIST(root, train=True, transform=transforms.ToTensor())
    test = datasets.FashionMNIST(root, train=False, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(train, batch_size=BATCH, shuffle=True, drop_last=True)
    model = mlp()
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = make_optimizer(model.parameters(), optimizer)
    timings = []
    for _ in range(epochs):
        started = time.perf_counter()
        avg_cost = 0
        for X, Y in loader:
            X = X.view(-1, 28 * 28)
            cost = step(optimizer, lambda: criterion(model(X), Y))
            avg_cost += cost / len(loader)
        trained = time.perf_counter()
        with torch.no_grad():
            X_test = test.data.view(-1, 28 * 28).float() / 255
            (model(X_test).argmax(1) == test.targets).float().mean().item()  # the accuracy the lab prints
        timings.append((time.perf_counter() - started, time.perf_counter() - trained))
    return timings


def plain_loop(dataset: str, epochs: int, optimizer: str | None = None, model=mlp) -> list[tuple[float, float]]:
    """By hand over preloaded float tensors, shuffled with randperm; Adam with its defaults."""
    data = load(dataset)
    X, Y, X_test, Y_test = data.train.images, data.train.labels, data.test.images, data.test.labels
    model = model()
    optimizer = make_optimizer(model.parameters(), optimizer)
    batches = len(Y) // BATCH
    timings = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        perm = torch.randperm(len(Y))
        avg_cost = 0
        for i in range(batches):
            index = perm[i * BATCH : (i + 1) * BATCH]
            cost = step(optimizer, lambda: torch.nn.functional.cross_entropy(model(X[index]), Y[index]))
            avg_cost += cost.detach() / batches
        trained = time.perf_counter()
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(X_test[i : i + 1000]) for i in range(0, len(Y_test), 1000)])
            (logits.argmax(1) == Y_test).float().mean().item()  # the accuracy the lab prints
        timings.append((time.perf_counter() - started, time.perf_counter() - trained))
    return timings


def mnist_trainer_run(dataset: str, epochs: int, optimizer: str | None = None,
                      plugins=("relu", "xavier")) -> list[tuple[float, float]]:
    """The same run through the project's public API: --plugin relu --plugin xavier (or cnn's plugins), and the
    optimizer's plugin."""
    from mnist_trainer.build import select
    from mnist_trainer.session import Output, train

    selected = [*plugins, optimizer] if optimizer else list(plugins)
    settings, pipeline = select(selected, [], dataset=dataset, epochs=epochs, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        quiet = Output(say=lambda line: None, warn=lambda line: None)
        train(settings, pipeline, Path(folder, "run"), quiet)
        collected = [json.loads(line) for line in Path(folder, "run", "metrics.jsonl").read_text().splitlines()]
    return [(row["seconds"], row["eval_seconds"]) for row in collected if row["stage"] == "epoch"]


MLP_VARIANTS = {"course loop": course_loop, "plain loop": plain_loop, "mnist-trainer": mnist_trainer_run}
CNN_VARIANTS = {"plain cnn loop": functools.partial(plain_loop, model=lab11_cnn),
                "mnist-trainer cnn": functools.partial(mnist_trainer_run, plugins=("cnn", "relu"))}
VARIANTS = {**MLP_VARIANTS, **CNN_VARIANTS}


# ----- data ----------------------------------------------------------------------------------

def load(dataset: str):
    from mnist_trainer.data import load_dataset

    return load_dataset(dataset, None, torch.device("cpu"))


def torchvision_root(dataset: str) -> str:
    """A folder in torchvision's FashionMNIST layout holding `dataset` as uncompressed IDX files."""
    from mnist_trainer.data import FILES

    root = Path(tempfile.mkdtemp(prefix="epoch-speed-"))
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    if dataset == "fashion-mnist":
        for name in (n for pair in FILES.values() for n in pair):
            (raw / name).write_bytes(gzip.decompress((FASHION / f"{name}.gz").read_bytes()))
        return str(root)
    data = load(dataset)
    for split, part in (("train", data.train), ("test", data.test)):
        images = part.images.mul(255).round().to(torch.uint8).reshape(-1, 28, 28)
        write_idx(raw / FILES[split][0], images)
        write_idx(raw / FILES[split][1], part.labels.to(torch.uint8))
    return str(root)


def write_idx(path: Path, array: torch.Tensor) -> None:
    header = bytes([0, 0, 8, array.dim()]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.contiguous().numpy().tobytes())


# ----- measuring -----------------------------------------------------------------------------

def run_variant(name: str, dataset: str, epochs: int, optimizer: str | None = None) -> dict:
    """Run one variant in a fresh process; its epoch and evaluation seconds after the warm-up, and peak memory."""
    chosen = ["--optimizer", optimizer] if optimizer else []
    out = subprocess.run([sys.executable, __file__, "--variant", name, "--dataset", dataset, "--epochs", str(epochs),
                          *chosen], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def run_rounds(names: list[tuple[str, str]], epochs: int, rounds: int,
               optimizer: str | None = None) -> dict[tuple[str, str], dict]:
    """Each (variant, dataset) `rounds` times, alternating, so that a slow spell of a shared machine hits all alike.

    Returns per pair: the median epoch and evaluation seconds over every round's epochs after
    its warm-up, the median peak memory, and each round's own numbers.
    """
    runs = {pair: [] for pair in names}
    for _ in range(rounds):
        for pair in names:
            runs[pair].append(run_variant(*pair, epochs, optimizer))
    return {pair: {
        "epoch_seconds": statistics.median(t for r in rs for t in r["epochs"]),
        "eval_seconds": statistics.median(t for r in rs for t in r["evals"]),
        "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in rs),
        "rounds": rs,
    } for pair, rs in runs.items()}


def child(name: str, dataset: str, epochs: int, optimizer: str | None) -> None:
    timings = VARIANTS[name](dataset, epochs, optimizer)
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


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return (f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help="default: fashion-mnist when installed, else synthetic:60000")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is a warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each variant")
    parser.add_argument("--tiny", action="store_true",
                        help="synthetic:1200, 2 epochs, every part (with --optimizer: the MLP's), no targets")
    parser.add_argument("--scaling", action="store_true", help="also time mnist-trainer on synthetic 60,000 and 240,000")
    parser.add_argument("--cnn", action="store_true", help="also time Lab 11's CNN by hand and through mnist-trainer")
    parser.add_argument("--cnn-dataset", help="the CNN's data (default: --dataset); its epochs are ~20x the MLP's on a CPU")
    parser.add_argument("--optimizer", metavar="NAME", help="every loop with this optimizer plugin's optimizer")
    parser.add_argument("--record", action="store_true", help=f"append the output to {RESULTS}")
    args = parser.parse_args()
    if args.variant:
        return child(args.variant, args.dataset, args.epochs, args.optimizer)
    if args.tiny:
        args.dataset, args.epochs, args.rounds = "synthetic:1200", 2, 1
    dataset = args.dataset or ("fashion-mnist" if (FASHION / "train-images-idx3-ubyte.gz").exists() else "synthetic:60000")
    checks, optimizer = not (args.tiny or args.optimizer), args.optimizer
    lines = [optimizer_line(optimizer), *report(dataset, args.epochs, args.rounds, checks, optimizer)]
    if args.cnn or (args.tiny and not optimizer):
        lines += cnn_report(args.cnn_dataset or dataset, args.epochs, args.rounds, checks, optimizer)
    if args.scaling:
        lines += scaling(args.epochs, args.rounds)
    text = "\n".join(lines)
    print(text)
    if args.record:
        command = " ".join(["python", "benchmarks/epoch_speed.py", *sys.argv[1:]])
        with RESULTS.open("a") as file:
            file.write(f"\n## {time.strftime('%Y-%m-%d')}: `{command}`\n\nMachine: {machine()}\n\n```\n{text}\n```\n")


def optimizer_line(name: str | None) -> str:
    if name is None:
        return "optimizer: Adam at 0.001 (the loops by hand: torch's default implementation; mnist-trainer: fused)"
    plugin = optimizer_plugin(name)
    arguments = ", ".join(f"{key}={value}" for key, value in plugin.arguments(plugin.options(), "cpu").items())
    return f"optimizer: {plugin.torch_class}(lr={plugin.lr}, {arguments}) in every loop (--plugin {name})"


def report(dataset: str, epochs: int, rounds: int, checks: bool, optimizer: str | None = None) -> list[str]:
    data = load(dataset)
    train_size, test_size = len(data.train), len(data.test)
    del data
    measured = run_rounds([(name, dataset) for name in MLP_VARIANTS], epochs, rounds, optimizer)
    results = {name: measured[name, dataset] for name in MLP_VARIANTS}
    flops = epoch_flops(train_size, test_size)
    floor = flops / matmul_rate()
    plain, course = results["plain loop"]["epoch_seconds"], results["course loop"]["epoch_seconds"]
    lines = [
        f"data: {dataset} ({train_size} train, {test_size} test images); {rounds} alternating rounds of {epochs} "
        "epochs per variant; medians of the epochs after each round's first",
        f"{'variant':<14} {'s/epoch':>8} {'vs plain':>9} {'vs course':>9} {'eval share':>10} {'peak RSS':>10}  rounds (s/epoch)",
    ]
    for name, result in results.items():
        seconds = result["epoch_seconds"]
        lines.append(f"{name:<14} {seconds:>8.3f} {seconds / plain:>8.2f}x {seconds / course:>8.2f}x "
                     f"{result['eval_seconds'] / seconds:>9.1%} {result['peak_rss_mib']:>6.0f} MiB  {per_round(result)}")
    lines.append(f"matmul floor: {floor:.3f} s/epoch ({flops / 1e9:.1f} GFLOP at "
                 f"{flops / floor / 1e9:.0f} GFLOP/s measured at these shapes)")
    if checks:
        ours = results["mnist-trainer"]
        lines += [
            target("mnist-trainer at most 0.85x the plain loop", ours["epoch_seconds"] / plain <= 0.85),
            target("mnist-trainer at least 4x faster than the course loop", course / ours["epoch_seconds"] >= 4),
            target("evaluation under 10% of the epoch", ours["eval_seconds"] / ours["epoch_seconds"] < 0.10),
            target("peak resident memory under 1.2 GiB", ours["peak_rss_mib"] < 1.2 * 1024),
        ]
    return lines


def cnn_report(dataset: str, epochs: int, rounds: int, checks: bool, optimizer: str | None = None) -> list[str]:
    """Lab 11's CNN by hand (preloaded tensors, randperm, default Adam) against --plugin cnn --plugin relu."""
    measured = run_rounds([(name, dataset) for name in CNN_VARIANTS], epochs, rounds, optimizer)
    results = {name: measured[name, dataset] for name in CNN_VARIANTS}
    plain = results["plain cnn loop"]["epoch_seconds"]
    lines = [
        f"cnn: {dataset}, Lab 11's network (conv 32, conv 64, Linear); {rounds} alternating rounds of {epochs} epochs",
        f"{'variant':<18} {'s/epoch':>8} {'vs plain':>9} {'eval share':>10} {'peak RSS':>10}  rounds (s/epoch)",
    ]
    for name, result in results.items():
        seconds = result["epoch_seconds"]
        lines.append(f"{name:<18} {seconds:>8.3f} {seconds / plain:>8.2f}x {result['eval_seconds'] / seconds:>9.1%} "
                     f"{result['peak_rss_mib']:>6.0f} MiB  {per_round(result)}")
    if checks:
        ratio = results["mnist-trainer cnn"]["epoch_seconds"] / plain
        lines.append(target("mnist-trainer cnn at most 0.9x the plain cnn loop", ratio <= 0.9))
    return lines


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
