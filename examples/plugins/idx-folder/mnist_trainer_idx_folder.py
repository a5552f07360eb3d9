"""Any folder of MNIST-format IDX files as the run's data, under a name of the user's choosing.

The core's ``--data-dir`` reads such a folder too, but records it as nameless MNIST-format data of 28x28
images in 10 classes. This names the data (the printed pipeline, the record and ``mnist-compare`` say
which set it was) and takes other sizes and class counts (USPS's 16x16 digits, a 4-class subset), and
the folder lives in the run's options, so ``--resume`` and ``mnist-eval RUN`` read it again from there.
"""

import re
from pathlib import Path

import attrs
from attrs.validators import ge, le

from mnist_trainer import Data, UserError, hookimpl, option, options_hook
from mnist_trainer.idx import read_folder

NAME = re.compile(r"[A-Za-z0-9][\w.:+-]{0,63}", re.ASCII)  # one word: the pipeline line, the record, a table


def folder(value) -> str:
    """An absolute path, so a resume or ``mnist-eval`` from another working directory reads the same folder."""
    text = str(value).strip()
    return str(Path(text).expanduser().absolute()) if text else ""


def one_word(instance, attribute, value) -> None:
    """attrs' own ``matches_re`` raises with a tuple of details, which the core would quote whole in its line."""
    if not NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not one word")


@attrs.frozen
class IdxFolderOptions:
    folder: str = option("", converter=folder, help="a folder holding train-images-idx3-ubyte, "
                         "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each may be .gz)")
    name: str = option("idx-folder", converter=str, validator=one_word,
                       help="a name of letters, digits and . _ : + - (up to 64), starting with a letter or digit")
    classes: int = option(10, converter=int, validator=[ge(2), le(10000)], help="a whole number from 2 to 10000")
    side: int = option(28, converter=int, validator=[ge(1), le(1024)],
                       help="the images' height and width in pixels, a whole number from 1 to 1024")


mnist_trainer_options = options_hook(IdxFolderOptions)


@hookimpl
def mnist_trainer_dataset(options):
    if not options.folder:
        raise UserError("idx-folder needs a folder: -o idx-folder.folder=DIR, DIR holding the four MNIST-format "
                        "IDX files")
    where = Path(options.folder)
    if not where.is_dir():
        raise UserError(f"-o idx-folder.folder={where}: no such folder; give the folder holding the IDX files")
    return Data(options.name, lambda splits: read_folder(where, splits, options.side, options.classes),
                shape=(1, options.side, options.side), classes=options.classes, source=str(where))
