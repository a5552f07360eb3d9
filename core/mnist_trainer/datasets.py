"""The core's own datasets, the answers behind ``--dataset`` and ``--data-dir``: MNIST and Fashion-MNIST (cached or
downloaded), the shipped 4,000 + 1,000 digit sample, generated data, and any folder of MNIST-format IDX files.

Each is a `stages.Data` like a dataset plugin's; choosing among them reads only the file system,
so the pipeline is composed and printed before any download.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from . import idx
from .download import default_data_dir
from .errors import UserError
from .stages import Data

NAMES = ("auto", "mnist", "mnist-sample", "fashion-mnist", "synthetic")
SIDE = 28
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
SYNTHETIC_DEFAULT_SIZE = 6000
ALTERNATIVES = ("use --dataset mnist-sample (5,000 real digits shipped with mnist-trainer), --dataset synthetic, "
                "or --data-dir DIR holding the four MNIST IDX files")
DOWNLOADS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


class Fallback(Exception):
    """Raised by ``auto``'s loader when MNIST can be neither read nor downloaded: use `instead`, saying `reason`."""

    def __init__(self, reason: str, instead: Data):
        super().__init__(reason)
        self.reason, self.instead = reason, instead


def builtin(name: str, data_dir: str | None) -> Data:
    """The core's answer for ``--dataset name`` and ``--data-dir``; refused in one line when they cannot go together."""
    if data_dir is not None and (name.startswith("synthetic") or name == "mnist-sample"):
        raise UserError(f"--data-dir is not read with --dataset {name}; drop it, "
                        "or use --dataset auto to read that folder")
    if name.startswith("synthetic"):
        return synthetic(name)
    if name == "mnist-sample":
        return folder("mnist-sample", Path(str(resources.files("mnist_trainer") / "sample")))
    if data_dir is not None and name == "auto":
        return folder(f"idx:{data_dir}", Path(data_dir), torchvision_name="MNIST")
    if name == "fashion-mnist" and data_dir is None and idx.idx_folder(FASHION_SYSTEM_DIR) is not None:
        return folder("fashion-mnist", FASHION_SYSTEM_DIR)
    if name in ("auto", "mnist", "fashion-mnist"):
        return downloaded(name, Path(data_dir) if data_dir else None)
    raise UserError(f"unknown --dataset {name!r}: choose from {', '.join(NAMES)} (synthetic:N for N images), "
                    "or the name of an installed dataset plugin")


def folder(name: str, path: Path, torchvision_name: str = "") -> Data:
    """MNIST-format IDX files in `path` (or torchvision's `<name>/raw` under it)."""

    def load(splits):
        found = idx.idx_folder(path, torchvision_name)
        if found is None:
            expected = ", ".join(f"{stem}[.gz]" for split in splits for stem in idx.FILES[split])
            raise UserError(f"no MNIST-format files in --data-dir {path}: expected {expected}; {ALTERNATIVES}")
        return idx.read_folder(found, splits)

    return Data(name, load, source=str(path))


def downloaded(name: str, root: Path | None) -> Data:
    """MNIST or Fashion-MNIST as torchvision names and checksums it, read from the cache under `root` (the data dir)
    or downloaded into it first; ``auto`` falls back to the shipped sample when it can be neither."""
    dataset = "fashion-mnist" if name == "fashion-mnist" else "mnist"
    where = root or default_data_dir()
    raw = where / DOWNLOADS[dataset] / "raw"

    def load(splits):
        from .download import fetch

        if not idx.holds(raw, splits):
            try:
                fetch(dataset, raw)
            except UserError as error:
                if name != "auto":
                    raise UserError(f"{error.message}; {ALTERNATIVES}") from None
                raise Fallback(f"MNIST is not cached in {where} and could not be downloaded ({error.message}); using "
                               "mnist-sample (5,000 real digits shipped with mnist-trainer) instead",
                               builtin("mnist-sample", None)) from None
        return idx.read_folder(raw, splits)

    return Data(dataset, load, source=str(raw))


def synthetic(name: str) -> Data:
    """``synthetic[:N]``: N training and N // 6 test images of 10 separable classes, always the same."""
    _, _, size_text = name.partition(":")
    try:
        size = int(size_text) if size_text else SYNTHETIC_DEFAULT_SIZE
    except ValueError:
        size = 0
    if name.split(":")[0] != "synthetic" or size < 10:
        raise UserError(f"invalid --dataset {name!r}: write synthetic or synthetic:N with N >= 10 training images")
    sizes, seeds = {"train": size, "test": max(size // 6, 10)}, {"train": 0, "test": 1}

    def load(splits):
        import torch

        from .devices import refuse_oversize

        refuse_oversize(f"--dataset {name}", sum(sizes.values()) * (SIDE * SIDE * 4 + 8), torch.device("cpu"),
                        "choose a smaller N")
        return {split: synthetic_split(sizes[split], seeds[split]) for split in splits}

    return Data(f"synthetic:{size}", load, source="generated")


def synthetic_split(count: int, seed: int, chunk: int = 4096) -> tuple:
    """`count` 28x28 images of 10 classes: a fixed smooth prototype per class plus noise, on the 1/255 grid, as float
    rows in [0, 1] with their labels. Generated chunk by chunk straight into the result, so memory is the result plus
    one chunk."""
    import torch
    import torch.nn.functional as F

    prototypes = F.interpolate(
        torch.rand(10, 1, 7, 7, generator=torch.Generator().manual_seed(12345)), size=(SIDE, SIDE), mode="bilinear"
    ).reshape(10, SIDE * SIDE)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (count,), generator=generator)
    images = torch.empty(count, SIDE * SIDE)
    noise = torch.empty(chunk, SIDE * SIDE)
    for start in range(0, count, chunk):
        rows = images[start : start + chunk]
        torch.index_select(prototypes, 0, labels[start : start + chunk], out=rows)
        rows.add_(torch.randn(rows.shape, generator=generator, out=noise[: rows.shape[0]]), alpha=0.35)
        rows.clamp_(0, 1).mul_(255).round_().div_(255)
    return images, labels
