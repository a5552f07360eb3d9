"""Datasets as tensors on the device: IDX reading, the providers behind ``--dataset``.

A dataset is loaded once, converted on the device (uint8 -> float32 / 255, flattened
to 784 columns) and then only indexed: no per-sample Python work, no DataLoader.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import warnings
import zlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from .errors import UserError

if TYPE_CHECKING:
    import torch

DATASETS = ("auto", "mnist", "mnist-sample", "fashion-mnist", "synthetic")
SIDE = 28
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
SYNTHETIC_DEFAULT_SIZE = 6000
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ALTERNATIVES = (
    "use --dataset mnist-sample (5,000 real digits shipped with mnist-trainer), "
    "--dataset synthetic, or --data-dir DIR holding the four MNIST IDX files"
)


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
    """A loaded dataset; `train` is None when only evaluation data was asked for."""

    name: str
    source: str
    train: Split | None
    test: Split


def fingerprint(dataset: Dataset) -> str:
    """A SHA-256 of the labels and of about a thousand evenly spaced images per split: other data, same sizes, differ."""
    import hashlib

    digest = hashlib.sha256()
    for split in (dataset.train, dataset.test):
        if split is not None:
            step = max(len(split) // 1000, 1)
            digest.update(split.labels.cpu().numpy().tobytes())
            digest.update(split.images[::step].cpu().numpy().tobytes())
    return digest.hexdigest()


def default_data_dir() -> Path:
    configured = os.environ.get("MNIST_TRAINER_DATA")
    if configured and Path(configured).exists() and not Path(configured).is_dir():
        raise UserError(f"MNIST_TRAINER_DATA={configured} is a file; point it at a folder (or unset it)")
    return Path(configured or Path.home() / ".cache" / "mnist-trainer")


def load_dataset(name: str, data_dir: str | None, device: "torch.device", *, train: bool = True) -> Dataset:
    """Load dataset `name` (see ``--dataset``) onto `device`; `train=False` skips the training split."""
    try:
        return _load(name, data_dir, device, train)
    except OSError as error:  # a name too long, a folder without search permission, ...
        raise UserError(f"cannot read {error.filename or data_dir}: {error.strerror}; check --data-dir and its permissions") from None


def _load(name: str, data_dir: str | None, device: "torch.device", train: bool) -> Dataset:
    splits = ("train", "test") if train else ("test",)
    if data_dir is not None and (name.startswith("synthetic") or name == "mnist-sample"):
        raise UserError(f"--data-dir is not read with --dataset {name}; drop it, or use --dataset auto to read that folder")
    if name.startswith("synthetic"):
        return _synthetic(name, device, splits)
    if name == "mnist-sample":
        folder = resources.files("mnist_trainer") / "sample"
        return _from_folder("mnist-sample", Path(str(folder)), device, splits)
    if data_dir is not None and name == "auto":
        found = _idx_folder(Path(data_dir), "MNIST")
        if found is None:
            raise UserError(f"no MNIST-format files in --data-dir {data_dir}: expected {_expected(splits)}; {ALTERNATIVES}")
        return _from_folder(f"idx:{data_dir}", found, device, splits)
    if name == "fashion-mnist" and data_dir is None and _idx_folder(FASHION_SYSTEM_DIR, "") is not None:
        return _from_folder("fashion-mnist", FASHION_SYSTEM_DIR, device, splits)
    if name in ("auto", "mnist", "fashion-mnist"):
        return _torchvision(name, Path(data_dir) if data_dir else default_data_dir(), device, splits)
    raise UserError(f"unknown --dataset {name!r}: choose from {', '.join(DATASETS)} (synthetic:N for N images)")


def read_idx(path: Path) -> "torch.Tensor":
    """Read one IDX file of unsigned bytes (gzipped or not) as a uint8 tensor of its shape."""
    import torch

    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise UserError(f"cannot read {path}: {error}; replace it with an intact copy") from None
    if len(raw) < 4 or raw[:3] != b"\0\0\x08" or not 1 <= raw[3] <= 3:
        raise UserError(f"{path} is not an IDX file of unsigned bytes; replace it with an intact copy")
    header = 4 + 4 * raw[3]
    if len(raw) < header:
        raise UserError(f"{path} is truncated (its header is incomplete); replace it with an intact copy")
    shape = struct.unpack(f">{raw[3]}I", raw[4:header])
    if len(raw) - header != math.prod(shape):
        raise UserError(
            f"{path} is truncated or corrupt: {len(raw) - header} data bytes where its header promises "
            f"{math.prod(shape)}; replace it with an intact copy"
        )
    if math.prod(shape) == 0:
        raise UserError(f"{path} holds no data (its shape is {shape}); replace it with an intact copy")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=header).reshape(shape)


def to_split(images: "torch.Tensor", labels: "torch.Tensor", device: "torch.device") -> Split:
    """uint8 images (N, 28, 28) and labels (N,) -> a `Split` on `device`, converted there."""
    import torch

    pixels = images.to(device).reshape(images.shape[0], -1).to(torch.float32).div_(255)
    return Split(pixels, labels.to(device=device, dtype=torch.int64))


def _expected(splits) -> str:
    return ", ".join(f"{f}[.gz]" for split in splits for f in FILES[split])


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_folder(folder: Path, torchvision_name: str) -> Path | None:
    """The folder holding IDX files: `folder` itself, or torchvision's `<name>/raw` under it."""
    for candidate in (folder, folder / torchvision_name / "raw"):
        if _find(candidate, FILES["test"][0]) or _find(candidate, FILES["train"][0]):
            return candidate
    return None


def _from_folder(name: str, folder: Path, device, splits) -> Dataset:
    loaded = {}
    for split in splits:
        images_stem, labels_stem = FILES[split]
        paths = [_find(folder, images_stem), _find(folder, labels_stem)]
        for stem, path in zip(FILES[split], paths):
            if path is None:
                raise UserError(f"missing {folder / stem}[.gz]; put the four MNIST IDX files in {folder}")
        images, labels = (read_idx(path) for path in paths)
        if images.dim() != 3 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
            raise UserError(
                f"{paths[0]} and {paths[1]} do not match: {tuple(images.shape)} images, "
                f"{tuple(labels.shape)} labels; expected (N, 28, 28) and (N,)"
            )
        if images.shape[1:] != (SIDE, SIDE):
            raise UserError(f"{paths[0]} holds {images.shape[1]}x{images.shape[2]}-pixel images; MNIST-format images are "
                            f"{SIDE}x{SIDE}: convert them, or use another --data-dir")
        if int(labels.max()) > 9:
            raise UserError(f"{paths[1]} holds labels above 9; MNIST-format labels are 0-9")
        loaded[split] = to_split(images, labels, device)
    return Dataset(name, str(folder), loaded.get("train"), loaded["test"])


def _torchvision(name: str, root: Path, device, splits) -> Dataset:
    """MNIST or Fashion-MNIST as torchvision downloads and caches it under `root` (see `download`)."""
    from .download import fetch

    dataset_name = "fashion-mnist" if name == "fashion-mnist" else "mnist"
    raw = root / ("FashionMNIST" if name == "fashion-mnist" else "MNIST") / "raw"
    if not all(_find(raw, stem) for split in splits for stem in FILES[split]):
        try:
            fetch(dataset_name, raw)
        except UserError as error:
            if name != "auto":
                raise UserError(f"{error.message}; {ALTERNATIVES}") from None
            warnings.warn(
                f"MNIST is not cached in {root} and could not be downloaded ({error.message}); using mnist-sample "
                "(5,000 real digits shipped with mnist-trainer) instead",
                DataNotice,
            )
            return load_dataset("mnist-sample", None, device, train="train" in splits)
    return _from_folder(dataset_name, raw, device, splits)


def _synthetic(name: str, device, splits) -> Dataset:
    """``synthetic[:N]``: N training and N // 6 test images of 10 separable classes, always the same."""
    _, _, size_text = name.partition(":")
    try:
        size = int(size_text) if size_text else SYNTHETIC_DEFAULT_SIZE
    except ValueError:
        size = 0
    if name.split(":")[0] != "synthetic" or size < 10:
        raise UserError(f"invalid --dataset {name!r}: write synthetic or synthetic:N with N >= 10 training images")
    sizes = {"train": size, "test": max(size // 6, 10)}
    from .devices import refuse_oversize

    refuse_oversize(f"--dataset {name}", sum(sizes.values()) * (SIDE * SIDE * 4 + 8), device, "choose a smaller N")
    seeds = {"train": 0, "test": 1}
    loaded = {split: synthetic_split(sizes[split], seeds[split], device) for split in splits}
    return Dataset(f"synthetic:{size}", "generated", loaded.get("train"), loaded["test"])


def synthetic_split(count: int, seed: int, device: "torch.device", chunk: int = 4096) -> Split:
    """`count` 28x28 images of 10 classes: a fixed smooth prototype per class plus noise, on the 1/255 grid.

    Generated chunk by chunk straight into the result, so memory is the result plus one chunk.
    """
    import torch
    import torch.nn.functional as F

    prototypes = F.interpolate(
        torch.rand(10, 1, 7, 7, generator=torch.Generator().manual_seed(12345)), size=(28, 28), mode="bilinear"
    ).reshape(10, 28 * 28)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (count,), generator=generator)
    images = torch.empty(count, 28 * 28)
    noise = torch.empty(chunk, 28 * 28)
    for start in range(0, count, chunk):
        rows = images[start : start + chunk]
        torch.index_select(prototypes, 0, labels[start : start + chunk], out=rows)
        rows.add_(torch.randn(rows.shape, generator=generator, out=noise[: rows.shape[0]]), alpha=0.35)
        rows.clamp_(0, 1).mul_(255).round_().div_(255)
    return Split(images.to(device), labels.to(device))
