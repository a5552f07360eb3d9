"""The training loop: plain parts in, epoch rows out. It knows nothing of plugins, records or the terminal.

Data stays on the device as tensors; each epoch is one seeded permutation gathered with
`index_select`, and nothing inside an epoch waits for the host unless a step callback asks.
Under torchrun (`world`), every process draws the same permutation and trains on its share
of each global batch through the network's replica; losses and metrics are those of the
global batch and the whole split, the same on every process.

Within a step: transforms, forward, loss, penalties, backward, `before_step`, the
optimizer's step, per-batch schedules, `step_end`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import attrs
import torch
import torch.nn.functional as F

from .data import Dataset, Split
from .distributed import World

EVAL_CHUNK = 1024
PROGRESS_TICKS = 50  # progress callbacks per epoch at most: a bar moves, no per-step call

Penalty = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Transform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
Metric = tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


@attrs.frozen
class Loop:
    """Everything one run trains with.

    `batch_schedulers` step after every optimizer step, `epoch_schedulers` after every epoch, in
    order. `generator` shuffles; `transform_generator` is handed to the transforms. `closure`: the
    optimizer's step takes a closure re-evaluating the mini-batch's loss (LBFGS). `replica` is
    what a step calls (the network's `DistributedDataParallel` under torchrun); `evaluated()`
    gives the module evaluated (the network itself unless given).
    """

    network: torch.nn.Module
    optimizer: torch.optim.Optimizer
    batch_size: int
    generator: torch.Generator
    transform_generator: torch.Generator
    metrics: Sequence[Metric]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
    penalties: Sequence[Penalty] = ()
    transforms: Sequence[Transform] = ()
    batch_schedulers: Sequence[Any] = ()
    epoch_schedulers: Sequence[Any] = ()
    closure: bool = False
    world: World = World()
    replica: torch.nn.Module | None = None
    evaluated: Callable[[], torch.nn.Module] | None = None

    @property
    def trained(self) -> torch.nn.Module:
        return self.replica if self.replica is not None else self.network

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


class Diverged(Exception):
    """An epoch's mean training loss was not a finite number: training cannot go on from there."""

    def __init__(self, epoch: int, loss: float):
        super().__init__(f"the training loss became {loss} in epoch {epoch}")
        self.epoch, self.loss = epoch, loss


@attrs.frozen
class Callbacks:
    """What the loop calls: `epoch_end(row)` returns True to stop; `before_step()`, `step_end(loss)` and
    `progress(steps_done)` (a few times an epoch) only when given."""

    epoch_start: Callable[[int], None] = lambda epoch: None
    before_step: Callable[[], None] | None = None
    step_end: Callable[[torch.Tensor], None] | None = None
    epoch_end: Callable[[dict], bool] = lambda row: False
    progress: Callable[[int], None] | None = None


def columns(metric_names: Sequence[str], eval_train: bool, val: bool = False) -> tuple[str, ...]:
    """The keys of every row `fit` returns, in order."""
    return ("epoch", "lr", "train_loss",
            *(f"{split}_{name}" for split in splits(eval_train, val) for name in metric_names),
            "eval_seconds", "seconds")


def splits(eval_train: bool, val: bool) -> tuple[str, ...]:
    """The splits evaluated each epoch: the validation split first, when there is one."""
    return ("val",) * val + ("test",) + ("train_eval",) * eval_train


def fit(loop: Loop, dataset: Dataset, epochs: int, callbacks: Callbacks = Callbacks(), *,
        first_epoch: int = 1, eval_train: bool = False) -> None:
    """Train and evaluate epoch after epoch until `epochs` or until `epoch_end` (given each row) asks to stop.

    Raises `Diverged` as soon as an epoch's training loss is not finite (checked once an epoch,
    where the loop waits for the host anyway).
    """
    for epoch in range(first_epoch, epochs + 1):
        callbacks.epoch_start(epoch)
        started = time.perf_counter()
        row = {"epoch": epoch, "lr": loop.lr}
        row["train_loss"] = train_epoch(loop, dataset.train, callbacks)
        if not math.isfinite(row["train_loss"]):
            raise Diverged(epoch, row["train_loss"])
        trained = time.perf_counter()
        network = loop.evaluated() if loop.evaluated is not None else loop.network
        parts = {"val": dataset.val, "test": dataset.test, "train_eval": dataset.train}
        for split in splits(eval_train, dataset.val is not None):
            row.update({f"{split}_{k}": v
                        for k, v in evaluate(network, parts[split], loop.metrics, loop.world).items()})
        now = time.perf_counter()
        row["eval_seconds"] = round(now - trained, 4)
        row["seconds"] = round(now - started, 4)
        for scheduler in loop.epoch_schedulers:
            scheduler.step()
        if callbacks.epoch_end(row):
            break


def train_epoch(loop: Loop, split: Split, callbacks: Callbacks = Callbacks()) -> float:
    """One pass over the shuffled split in full global mini-batches, this process's share of each; returns the mean
    training loss."""
    loop.network.train()
    generator = loop.generator
    order = torch.randperm(len(split), generator=generator, device=generator.device, dtype=torch.int32)
    order = order.to(split.labels.device)
    total = torch.zeros((), device=split.labels.device)
    batches = len(split) // loop.batch_size
    start, stop = loop.world.share(loop.batch_size)
    tick = max(batches // PROGRESS_TICKS, 1) if callbacks.progress is not None else 0
    for batch in range(batches):
        index = order[batch * loop.batch_size + start : batch * loop.batch_size + stop]
        loss = step(loop, split.images.index_select(0, index), split.labels.index_select(0, index),
                    callbacks.before_step)
        total += loss
        if callbacks.step_end is not None:
            callbacks.step_end(loss)
        if tick and (batch + 1) % tick == 0:
            callbacks.progress(batch + 1)
    return loop.world.mean(total).item() / batches


def step(loop: Loop, images: torch.Tensor, labels: torch.Tensor,
         before_step: Callable[[], None] | None = None) -> torch.Tensor:
    """One optimisation step on one mini-batch (this process's share); returns its loss, detached, without a host sync.

    With a closure-based optimizer the closure re-evaluates this mini-batch (same transforms, penalties) and gives
    the global batch's loss (one all-reduce under torchrun); the loss returned is the one the optimizer saw first: that
    of the weights before the step.
    """
    for transform in loop.transforms:
        images, labels = transform(images, labels, loop.transform_generator)

    def gradients() -> torch.Tensor:
        logits = loop.trained(images)
        loss = loop.loss(logits, labels)
        for penalty in loop.penalties:
            loss = loss + penalty(loop.network, logits, labels)
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if before_step is not None:
            before_step()
        return loss

    if loop.closure:  # under torchrun each process's line search must see the global batch's loss, or their paths part
        loss = loop.optimizer.step(lambda: loop.world.mean(gradients().detach()))
    else:
        loss = gradients()
        loop.optimizer.step()
    for scheduler in loop.batch_schedulers:
        scheduler.step()
    return loss.detach()


def evaluate(network: torch.nn.Module, split: Split, metrics: Sequence[Metric],
             world: World = World()) -> dict[str, float]:
    """Every metric on the whole split, in one batched pass in eval mode; each process computes its share's logits.

    The share goes in chunks, which bound the activations' memory (an empty share, one empty chunk).
    """
    network.eval()
    start, stop = world.share(len(split))
    with torch.inference_mode():
        chunks = [(begin, min(begin + EVAL_CHUNK, stop)) for begin in range(start, stop, EVAL_CHUNK)] or [(start, stop)]
        first = network(split.images[start : chunks[0][1]])
        logits = torch.empty(stop - start, first.shape[1], device=first.device, dtype=first.dtype)
        logits[: len(first)] = first
        for begin, end in chunks[1:]:
            logits[begin - start : end - start] = network(split.images[begin:end])
        logits = world.gather(logits, len(split))
        values = torch.stack([compute(logits, split.labels).float() for _, compute in metrics])
    return dict(zip([name for name, _ in metrics], values.tolist()))
