"""The loops epoch_speed.py times, each returning (epoch seconds, evaluation seconds) per epoch.

- the course loop: the course lab's pattern, a torchvision dataset, ``ToTensor`` per sample, a DataLoader (CPU only);
- the plain loop: what a user writes by hand over preloaded tensors, ``randperm`` and the optimizer's defaults;
- the same-parts loop: by hand from the parts mnist-trainer trains with (the fused or foreach optimizer, one
  seeded ``randperm`` of int32 indices and ``index_select`` per epoch, evaluation in chunks under
  ``inference_mode``), so that against it mnist-trainer's time is its own overhead;
- mnist-trainer itself, through its public API, alone or with one do-nothing run-event listener.

The model is the course's 784-256-256-10 ReLU MLP with Xavier-uniform weights (or Lab 11's CNN), batch 100, and
Adam at 0.001 unless an optimizer plugin's name is given.
"""

from __future__ import annotations

import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

FASHION = Path("/usr/share/datasets/fashion-mnist")
WIDTHS = (784, 256, 256, 10)
MLP_PLUGINS = ("relu", "xavier")  # the MLP through mnist-trainer: --plugin relu --plugin xavier
BATCH = 100
CHUNK = 1024


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


def make_optimizer(parameters, name: str | None, device: str = "cpu", same_parts: bool = False):
    """Adam at 0.001 (torch's default implementation, or its fused one with `same_parts`, as mnist-trainer's), or what
    ``--plugin NAME`` builds on `device`: its class, rate and arguments, implementation included."""
    if name is None:
        return torch.optim.Adam(parameters, lr=0.001, fused=True) if same_parts else torch.optim.Adam(parameters)
    plugin = optimizer_plugin(name)
    return (plugin.build_as or getattr(torch.optim, plugin.torch_class))(parameters, lr=plugin.lr,
                                                                           **plugin.arguments(plugin.options(), device))


def optimizer_plugin(name: str):
    import mnist_trainer_optimizers

    return mnist_trainer_optimizers.FAMILY[name]


def step(optimizer: torch.optim.Optimizer, loss_of) -> torch.Tensor:
    """One optimizer step; `loss_of()` is the mini-batch's forward pass and loss, which LBFGS evaluates repeatedly."""

    def closure():
        optimizer.zero_grad(set_to_none=True)
        cost = loss_of()
        cost.backward()
        return cost

    if isinstance(optimizer, torch.optim.LBFGS):
        return optimizer.step(closure)
    cost = closure()
    optimizer.step()
    return cost


def course_loop(dataset: str, epochs: int, optimizer: str | None = None, device: str = "cpu") -> list:
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


def plain_loop(dataset: str, epochs: int, optimizer: str | None = None, device: str = "cpu", model=mlp) -> list:
    """By hand over preloaded float tensors on `device`, shuffled with randperm; the optimizer's default arguments."""
    X, Y, X_test, Y_test = load(dataset, device)
    model = model().to(device)
    optimizer = make_optimizer(model.parameters(), optimizer, device)
    batches = len(Y) // BATCH
    timings = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        perm = torch.randperm(len(Y), device=device)
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


def same_parts_loop(dataset: str, epochs: int, optimizer: str | None = None, device: str = "cpu", model=mlp) -> list:
    """By hand from mnist-trainer's own parts: what it would cost without its events, rows, records and checkpoints."""
    X, Y, X_test, Y_test = load(dataset, device)
    model = model().to(device)
    optimizer = make_optimizer(model.parameters(), optimizer, device, same_parts=True)
    generator = torch.Generator(device=device).manual_seed(777)
    batches = len(Y) // BATCH
    timings = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(Y), generator=generator, device=device, dtype=torch.int32)
        total = torch.zeros((), device=device)
        for i in range(batches):
            index = order[i * BATCH : (i + 1) * BATCH]
            x, y = X.index_select(0, index), Y.index_select(0, index)
            total += step(optimizer, lambda: torch.nn.functional.cross_entropy(model(x), y)).detach()
        (total / batches).item()  # the epoch's loss, as mnist-trainer reads it: one wait for the device
        trained = time.perf_counter()
        model.eval()
        with torch.inference_mode():
            logits = torch.cat([model(X_test[i : i + CHUNK]) for i in range(0, len(Y_test), CHUNK)])
            torch.stack([torch.nn.functional.cross_entropy(logits, Y_test),
                         (logits.argmax(1) == Y_test).float().mean()]).tolist()
        timings.append((time.perf_counter() - started, time.perf_counter() - trained))
    return timings


class Listener:
    """A run-event plugin that does the least a listener can: what one costs is the dispatch itself."""

    def __init__(self, event: str):
        from mnist_trainer import hookimpl

        self.calls = 0

        def count(run) -> None:
            self.calls += 1

        setattr(self, f"mnist_trainer_{event}", hookimpl(count))


def dispatch_seconds(event: str, calls: int = 60000) -> float:
    """Seconds per call of `event` as the loop emits it, with `Listener` and the MLP's plugins registered: the whole
    of what one listener adds to a step, timed in one process, where a shared machine's slow spells cannot hide it."""
    from mnist_trainer import registry

    manager = registry.make_manager(listener=Listener(event))
    registry.load(manager, list(MLP_PLUGINS))
    events, name, loss = registry.Events(manager), f"mnist_trainer_{event}", torch.zeros(())
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            events.emit(name, run=None, loss=loss)
        rounds.append((time.perf_counter() - started) / calls)
    return statistics.median(rounds)


def mnist_trainer_run(dataset: str, epochs: int, optimizer: str | None = None, device: str = "cpu",
                      plugins=MLP_PLUGINS, listen: str | None = None) -> list:
    """The same run through the project's public API: --plugin relu --plugin xavier (or cnn's), the optimizer's plugin,
    and with `listen` a do-nothing plugin on that run event."""
    from mnist_trainer import registry
    from mnist_trainer.build import select
    from mnist_trainer.session import Output, train

    selected = [*plugins, optimizer] if optimizer else list(plugins)
    manager = registry.make_manager(**({"listener": Listener(listen)} if listen else {}))
    registry.load(manager, selected)
    settings, pipeline = select(selected, [], manager=manager, dataset=dataset, epochs=epochs, device=device)
    with tempfile.TemporaryDirectory() as folder:
        quiet = Output(say=lambda line: None, warn=lambda line: None)
        train(settings, pipeline, Path(folder, "run"), quiet)
        collected = [json.loads(line) for line in Path(folder, "run", "metrics.jsonl").read_text().splitlines()]
    return [(row["seconds"], row["eval_seconds"]) for row in collected if row["stage"] == "epoch"]


def load(dataset: str, device: str = "cpu") -> tuple:
    """The training and test images and labels of `dataset`, on `device`, as mnist-trainer loads them."""
    from mnist_trainer.data import load_dataset

    data = load_dataset(dataset, None, torch.device(device))
    return data.train.images, data.train.labels, data.test.images, data.test.labels


def torchvision_root(dataset: str) -> str:
    """A folder in torchvision's FashionMNIST layout holding `dataset` as uncompressed IDX files."""
    from mnist_trainer.data import load_dataset
    from mnist_trainer.idx import FILES

    root = Path(tempfile.mkdtemp(prefix="epoch-speed-"))
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    if dataset == "fashion-mnist":
        for name in (n for pair in FILES.values() for n in pair):
            (raw / name).write_bytes(gzip.decompress((FASHION / f"{name}.gz").read_bytes()))
        return str(root)
    data = load_dataset(dataset, None, torch.device("cpu"))
    for split, part in (("train", data.train), ("test", data.test)):
        images = part.images.mul(255).round().to(torch.uint8).reshape(-1, 28, 28)
        write_idx(raw / FILES[split][0], images)
        write_idx(raw / FILES[split][1], part.labels.to(torch.uint8))
    return str(root)


def write_idx(path: Path, array: torch.Tensor) -> None:
    header = bytes([0, 0, 8, array.dim()]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.contiguous().numpy().tobytes())
