"""IDX files (the MNIST format): reading one, and reading a folder of the four, checked.

Public: dataset plugins read their files with `read_folder` (or `read_idx`), as the core's own
datasets do.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    import torch

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


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
        raise UserError(f"{path} is truncated or corrupt: {len(raw) - header} data bytes where its header promises "
                        f"{math.prod(shape)}; replace it with an intact copy")
    if math.prod(shape) == 0:
        raise UserError(f"{path} holds no data (its shape is {shape}); replace it with an intact copy")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=header).reshape(shape)


def find(folder: Path, stem: str) -> Path | None:
    """`folder/stem`, or its gzipped twin, if either is a file."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def holds(folder: Path, splits=("train", "test")) -> bool:
    """Whether `folder` holds every file of `splits`."""
    return all(find(folder, stem) for split in splits for stem in FILES[split])


def idx_folder(folder: Path, torchvision_name: str = "") -> Path | None:
    """The folder holding IDX files: `folder` itself, or torchvision's `<name>/raw` under it."""
    for candidate in (folder, folder / torchvision_name / "raw"):
        if find(candidate, FILES["test"][0]) or find(candidate, FILES["train"][0]):
            return candidate
    return None


def read_folder(folder: Path, splits, side: int = 28, classes: int = 10) -> dict:
    """Each of `splits` from the MNIST-format files in `folder`: ``{split: (images, labels)}``, uint8 images of
    (N, side, side) and labels below `classes`, checked to match, one line naming a file at fault."""
    loaded = {}
    for split in splits:
        paths = [find(folder, stem) for stem in FILES[split]]
        for stem, path in zip(FILES[split], paths):
            if path is None:
                raise UserError(f"missing {folder / stem}[.gz]; put the four MNIST-format IDX files in {folder}")
        images, labels = (read_idx(path) for path in paths)
        if images.dim() != 3 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
            raise UserError(f"{paths[0]} and {paths[1]} do not match: {tuple(images.shape)} images, "
                            f"{tuple(labels.shape)} labels; expected (N, {side}, {side}) and (N,)")
        if images.shape[1:] != (side, side):
            raise UserError(f"{paths[0]} holds {images.shape[1]}x{images.shape[2]}-pixel images; MNIST-format "
                            f"images are {side}x{side}: convert them, or use another folder")
        if int(labels.max()) >= classes:
            raise UserError(f"{paths[1]} holds labels above {classes - 1}; these have {classes} classes, "
                            f"0-{classes - 1}")
        loaded[split] = (images, labels)
    return loaded
