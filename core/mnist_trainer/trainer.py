"""Building, training and evaluating the composed network on tensors that live on the device."""

from __future__ import annotations

import time
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from .data import Dataset, Split
from .errors import UserError
from .model import Network
from .pipeline import Pipeline
from .settings import Settings
from .stages import InitContext

EVAL_CHUNK = 1024


def resolve_device(text: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for an absent CUDA device is a user error."""
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UserError(f"invalid --device {text!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"invalid --device {text!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise UserError(f"--device {text} asked for CUDA, but no CUDA device is available; use --device cpu")
        if device.index is not None and device.index >= count:
            raise UserError(f"--device {text}: only {count} CUDA device(s) here (cuda:0 to cuda:{count - 1})")
    return device


def build(pipeline: Pipeline, settings: Settings, dataset: Dataset, device: torch.device,
          report: Callable[..., None] = lambda stage, **values: None) -> tuple[Network, torch.optim.Optimizer]:
    """Seed, build the network on `device`, run the init stage, build the optimizer."""
    torch.manual_seed(settings.seed)
    network = Network(settings.hidden, pipeline.block).to(device)
    pipeline.init[1].apply(network, InitContext(dataset.train.images, settings.seed, report))
    return network, pipeline.optimizer[1].build(network.parameters())


def train_epoch(network: Network, optimizer: torch.optim.Optimizer, split: Split, batch_size: int,
                generator: torch.Generator, penalties, wrap: Callable[[range], Iterable[int]] = iter) -> float:
    """One pass over the shuffled split in full mini-batches; returns the mean training loss."""
    network.train()
    order = torch.randperm(len(split), generator=generator, device=generator.device, dtype=torch.int32)
    order = order.to(split.labels.device)
    total = torch.zeros((), device=split.labels.device)
    batches = len(split) // batch_size
    for batch in wrap(range(batches)):
        index = order[batch * batch_size : (batch + 1) * batch_size]
        images, labels = split.images.index_select(0, index), split.labels.index_select(0, index)
        total += step(network, optimizer, images, labels, penalties)
    return total.item() / batches


def step(network: Network, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
         penalties) -> torch.Tensor:
    """One optimisation step on one mini-batch; returns its loss, detached, without a host sync."""
    loss = F.cross_entropy(network(images), labels)
    for penalty in penalties:
        loss = loss + penalty(network)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def evaluate(network: Network, split: Split, pipeline: Pipeline) -> dict[str, float]:
    """Every metric of the evaluation stage on the whole split, in one batched pass."""
    network.eval()
    with torch.inference_mode():
        logits = torch.empty(len(split), network.output.out_features, device=split.images.device)
        for start in range(0, len(split), EVAL_CHUNK):  # chunks bound the activations' memory
            logits[start : start + EVAL_CHUNK] = network(split.images[start : start + EVAL_CHUNK])
        values = torch.stack([metric.compute(logits, split.labels).float() for _, metric in pipeline.metrics])
    return dict(zip(pipeline.metric_names, values.tolist()))


def fit(network: Network, optimizer: torch.optim.Optimizer, pipeline: Pipeline, settings: Settings,
        dataset: Dataset, on_epoch: Callable[[dict], None] = lambda row: None,
        wrap: Callable[[int], Callable[[range], Iterable[int]]] = lambda epoch: iter) -> list[dict]:
    """Train for ``settings.epochs``; each epoch's row (train loss, metrics, seconds) goes to `on_epoch`."""
    generator = torch.Generator(device=dataset.train.labels.device).manual_seed(settings.seed)
    rows = []
    for epoch in range(1, settings.epochs + 1):
        started = time.perf_counter()
        row = {"epoch": epoch}
        row["train_loss"] = train_epoch(network, optimizer, dataset.train, settings.batch_size, generator,
                                        pipeline.penalties, wrap(epoch))
        trained = time.perf_counter()
        row.update({f"test_{k}": v for k, v in evaluate(network, dataset.test, pipeline).items()})
        if settings.eval_train:
            row.update({f"train_eval_{k}": v for k, v in evaluate(network, dataset.train, pipeline).items()})
        now = time.perf_counter()
        row["eval_seconds"] = round(now - trained, 4)
        row["seconds"] = round(now - started, 4)
        rows.append(row)
        on_epoch(row)
    return rows
