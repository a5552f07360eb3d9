"""Datasets as tensors on the device: a dataset answer's splits loaded once, checked, converted, and a validation
split held out.

A dataset is loaded once, converted on the device (uint8 -> float32 / 255, flattened to rows)
and then only indexed: no per-sample Python work, no DataLoader.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from typing import TYPE_CHECKING, Any

import attrs

from .errors import PluginError, UserError

if TYPE_CHECKING:
    import torch

    from .stages import Data


class DataNotice(UserWarning):
    """Something a user should know about the data actually used, e.g. a fallback."""


@attrs.frozen
class Split:
    """Images as float32 rows in [0, 1] and int64 labels, on one device."""

    images: "torch.Tensor"
    labels: "torch.Tensor"

    def __len__(self) -> int:
        return self.labels.shape[0]


@attrs.frozen
class Dataset:
    """A loaded dataset: `train` is None when only evaluation data was asked for, `val` when none is held out.

    `shape` is an image's (channels, height, width), `classes` the number of labels."""

    name: str
    source: str
    train: Split | None
    test: Split
    shape: tuple[int, int, int] = (1, 28, 28)
    classes: int = 10
    val: Split | None = None
    held_out: dict | None = None  # the validation split's record: count, seed, fingerprint of its indices
    fingerprints: dict = attrs.Factory(dict)  # of all the data loaded ("data") and of the test split alone ("test")


def materialise(plugin: str, answer: "Data", device: "torch.device", *, train: bool = True) -> Dataset:
    """`answer`'s splits loaded onto `device` (the test split always, the training split when `train`), each checked
    against the answer's shape and classes; what is wrong with them is one line naming `plugin`."""
    from .datasets import Fallback

    splits = ("train", "test") if train else ("test",)
    try:
        loaded = _loaded(plugin, answer, splits)
    except Fallback as fallback:
        warnings.warn(fallback.reason, DataNotice)
        answer = fallback.instead
        loaded = _loaded(plugin, answer, splits)
    converted = {split: to_split(plugin, answer, split, *loaded[split], device) for split in splits}
    train_split, test = converted.get("train"), converted["test"]
    prints = {"data": fingerprint(train_split, test), "test": fingerprint(test)}
    return Dataset(answer.name, answer.source, train_split, test, answer.shape, answer.classes, fingerprints=prints)


def _loaded(plugin: str, answer: "Data", splits: tuple[str, ...]) -> dict:
    from .datasets import Fallback

    try:
        loaded = answer.load(splits)
    except (UserError, Fallback):
        raise
    except OSError as error:  # a name too long, a folder without search permission, ...
        raise UserError(f"cannot read {error.filename or answer.source}: {error.strerror}; check the data's folder and "
                        "its permissions") from None
    except Exception as error:
        raise PluginError.from_exception(plugin, "mnist_trainer_dataset (load)", error) from error
    if not isinstance(loaded, dict) or not set(splits) <= set(loaded):
        raise PluginError(plugin, "mnist_trainer_dataset (load)", f"returned {type(loaded).__name__} without "
                          f"{', '.join(splits)}; return {{split: (images, labels)}} for each split asked for")
    return loaded


def to_split(plugin: str, answer: "Data", split: str, images: Any, labels: Any, device: "torch.device") -> Split:
    """One split's images (uint8, or float in [0, 1]; (N, C, H, W), or (N, H, W) with one channel, or rows) and labels
    (N integers below the classes) as a `Split` of float rows on `device`, converted there."""
    import torch

    from .devices import refuse_oversize

    where = f"mnist_trainer_dataset (load, {split} split)"
    pixels = math.prod(answer.shape)
    if not (isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)):
        raise PluginError(plugin, where, "give tensors: (images, labels)")
    if images.shape[0] != labels.shape[0] or labels.dim() != 1 or math.prod(images.shape[1:]) != pixels:
        raise PluginError(plugin, where, f"images of shape {tuple(images.shape)} and labels of shape "
                          f"{tuple(labels.shape)}; expected N images of {answer.shape} and N labels")
    if images.dtype != torch.uint8 and not (images.is_floating_point() and 0 <= images.min() and images.max() <= 1):
        raise PluginError(plugin, where, f"{images.dtype} images; give uint8 pixels, or floats in [0, 1]")
    if labels.is_floating_point() or len(labels) == 0 or int(labels.min()) < 0 or int(labels.max()) >= answer.classes:
        raise PluginError(plugin, where, f"labels must be integers from 0 to {answer.classes - 1}, one per image")
    refuse_oversize(f"the {split} split of {answer.name}", len(labels) * (pixels * 4 + 8), device, "choose less data")
    rows = images.to(device).reshape(len(labels), pixels)
    rows = rows.to(torch.float32).div_(255) if rows.dtype == torch.uint8 else rows.to(torch.float32)
    return Split(rows, labels.to(device=device, dtype=torch.int64))


def hold_out(dataset: Dataset, val: float | None, seed: int) -> Dataset:
    """`dataset` with `val` training images (a count, or a fraction of them) held out as a validation split, chosen by
    a generator seeded with `seed`: the same split for the same seed, another for another."""
    import torch

    if not val:
        return dataset
    total = len(dataset.train)
    count = int(val) if val >= 1 else round(val * total)
    if not 1 <= count < total:
        raise UserError(f"--val {val} holds out {count} of the {total} training images of {dataset.name}; keep at "
                        f"least one to train on and hold out at least one (a count below {total}, or a fraction)")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed)).to(dataset.train.labels.device)
    held, kept = order[:count].sort().values, order[count:].sort().values
    split = dataset.train
    record = {"count": count, "seed": seed, "fingerprint": hashlib.sha256(held.cpu().numpy().tobytes()).hexdigest()}
    return attrs.evolve(dataset, train=Split(split.images[kept], split.labels[kept]),
                        val=Split(split.images[held], split.labels[held]), held_out=record)


def fingerprint(*splits: Split | None) -> str:
    """A SHA-256 of the labels and of about a thousand evenly spaced images per split: other data, same sizes,
    differ."""
    digest = hashlib.sha256()
    for split in splits:
        if split is not None:
            step = max(len(split) // 1000, 1)
            digest.update(split.labels.cpu().numpy().tobytes())
            digest.update(split.images[::step].cpu().numpy().tobytes())
    return digest.hexdigest()


def load_dataset(name: str, data_dir: str | None, device: "torch.device", *, train: bool = True) -> Dataset:
    """The core's dataset `name` (see ``--dataset``) on `device`, as a run loads it; `train=False` skips the training
    split."""
    from .datasets import builtin

    return materialise("core", builtin(name, data_dir), device, train=train)
