"""Kuzushiji-MNIST: 70,000 28x28 cursive Japanese characters in 10 classes, MNIST's format and sizes.

A drop-in with MNIST's shape that is harder to learn, so it tells apart techniques that MNIST's digits,
learnt almost perfectly by all of them, no longer do. The file list and checksums are torchvision's own
(``torchvision.datasets.KMNIST``), read when a download starts; the download is the core's
(``mnist_trainer.download.fetch_files``: bounded, checksummed, ``MNIST_TRAINER_MIRROR`` first), into a
folder of its own under the run's data dir, so the next run, ``--resume`` and ``mnist-eval`` read the cache.
The list is read when a download starts, so a test may set it to files of its own.
"""

from pathlib import Path

from torchvision.datasets import KMNIST

from mnist_trainer import Data, UserError, hookimpl
from mnist_trainer.download import default_data_dir, fetch_files
from mnist_trainer.idx import read_folder

NAME = "kmnist"
SIZES = {"train": 17.4, "test": 2.9}  # MiB of each split's gzipped files, to say what a download costs
STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def folder(data_dir: Path) -> Path:
    """Where the files are cached: torchvision's own layout, so ``torchvision.datasets.KMNIST(data_dir)`` finds them."""
    return Path(data_dir) / "KMNIST" / "raw"


def missing(raw: Path, splits) -> list[tuple[str, str]]:
    """The ``(filename, md5)`` of torchvision's list that `splits` need and `raw` lacks (gzipped or not)."""
    stems = {stem for split in splits for stem in STEMS[split]}
    return [(filename, md5) for filename, md5 in KMNIST.resources
            if filename.removesuffix(".gz") in stems
            and not any((raw / name).is_file() for name in (filename, filename.removesuffix(".gz")))]


def download(raw: Path, splits) -> None:
    """Fetch what `splits` lack; a cache holding them asks no server and prints nothing (``fetch_files`` would
    announce a download even with nothing to fetch)."""
    needed = missing(raw, splits)
    if not needed:
        return
    try:
        fetch_files(NAME, needed, KMNIST.mirrors, raw, f"about {sum(SIZES[split] for split in splits):.0f} MiB")
    except UserError as error:
        names = ", ".join(filename for filename, _ in needed)
        raise UserError(f"{error.message}; set MNIST_TRAINER_MIRROR to a URL serving {names}, or copy them into "
                        f"{raw}") from None


@hookimpl
def mnist_trainer_dataset(settings):
    raw = folder(settings.data_dir or default_data_dir())

    def load(splits):
        download(raw, splits)
        return read_folder(raw, splits)

    return Data(NAME, load, source=f"torchvision's KMNIST files in {raw}")
