import gzip
import shutil
import struct
from pathlib import Path

import pytest
import torch

from mnist_trainer import UserError
from mnist_trainer.data import load_dataset
from mnist_trainer.datasets import FASHION_SYSTEM_DIR, synthetic_split
from mnist_trainer.idx import FILES, read_idx
from tests.conftest import T10K, requires_t10k

CPU = torch.device("cpu")
SAMPLE = Path(__file__).resolve().parents[1] / "core" / "mnist_trainer" / "sample"


def digits(count, seed):
    """Synthetic digits as IDX files hold them: uint8 (N, 28, 28) and labels."""
    images, labels = synthetic_split(count, seed)
    return images.mul(255).round().to(torch.uint8).reshape(-1, 28, 28), labels


def write_idx(path: Path, array: torch.Tensor, compress: bool) -> None:
    raw = bytes([0, 0, 8, array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape) + array.numpy().tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def make_idx_folder(folder: Path, count: int = 30, compress: bool = True, splits=("train", "test")) -> None:
    images, labels = digits(count, seed=3)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for split in splits:
        write_idx(folder / (FILES[split][0] + suffix), images, compress)
        write_idx(folder / (FILES[split][1] + suffix), labels.to(torch.uint8), compress)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder_loads_as_float_rows_in_unit_range(tmp_path, compress):
    make_idx_folder(tmp_path, compress=compress)
    data = load_dataset("auto", str(tmp_path), CPU)
    images, labels = digits(30, seed=3)
    assert data.train.images.shape == (30, 784) and data.train.images.dtype == torch.float32
    assert torch.equal(data.train.images, images.reshape(30, 784).float() / 255)
    assert torch.equal(data.test.labels, labels)
    assert data.name == f"idx:{tmp_path}"


def test_sample_is_4000_train_1000_test_stratified():
    data = load_dataset("mnist-sample", None, CPU)
    assert (len(data.train), len(data.test)) == (4000, 1000)
    assert torch.bincount(data.train.labels).tolist() == [400] * 10
    assert torch.bincount(data.test.labels).tolist() == [100] * 10
    assert 0 <= data.train.images.min() and data.train.images.max() == 1.0
    # real digits have mostly-black backgrounds: about 80% of MNIST pixels are exactly 0
    assert 0.7 < (data.train.images == 0).float().mean() < 0.9


def test_test_split_alone_is_enough_for_evaluation(tmp_path):
    make_idx_folder(tmp_path, splits=("test",))
    data = load_dataset("auto", str(tmp_path), CPU, train=False)
    assert data.train is None and len(data.test) == 30
    with pytest.raises(UserError, match="missing .*train-images-idx3-ubyte"):
        load_dataset("auto", str(tmp_path), CPU)


def test_synthetic_pixels_lie_on_the_idx_grid_whatever_the_chunking():
    (whole, labels), (chunked, chunked_labels) = synthetic_split(1000, 0), synthetic_split(1000, 0, chunk=333)
    assert torch.equal(labels, chunked_labels)
    assert torch.allclose(whole, chunked, atol=1 / 255 + 1e-6)
    assert torch.equal(whole * 255, (whole * 255).round())


def test_synthetic_is_deterministic_sized_and_balanced():
    first, second = (load_dataset("synthetic:1200", None, CPU) for _ in range(2))
    assert torch.equal(first.train.images, second.train.images)
    assert (len(first.train), len(first.test)) == (1200, 200)
    counts = torch.bincount(first.train.labels, minlength=10)
    assert counts.min() > 80
    assert not torch.equal(first.train.images[:200], first.test.images)


def test_torchvision_layout_under_data_dir_is_found(tmp_path):
    make_idx_folder(tmp_path / "MNIST" / "raw")
    assert len(load_dataset("mnist", str(tmp_path), CPU).train) == 30


@requires_t10k
def test_official_test_set_reads():
    data = load_dataset("auto", str(T10K), CPU, train=False)
    assert len(data.test) == 10000
    assert torch.bincount(data.test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.skipif(not (FASHION_SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_reads_the_system_copy_without_downloading(tmp_path, monkeypatch):
    from mnist_trainer import download

    monkeypatch.setattr(download, "fetch", lambda name, raw: pytest.fail("must not download"))
    fashion = load_dataset("fashion-mnist", None, CPU)
    assert (fashion.name, fashion.source) == ("fashion-mnist", str(FASHION_SYSTEM_DIR))
    assert (len(fashion.train), len(fashion.test)) == (60000, 10000)
    assert torch.bincount(fashion.test.labels).tolist() == [1000] * 10


def test_missing_files_are_named(tmp_path):
    with pytest.raises(UserError, match="no MNIST-format files in --data-dir"):
        load_dataset("auto", str(tmp_path), CPU)


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda raw: raw[: len(raw) // 2], "truncated"),
        (lambda raw: raw[:10], "truncated"),
        (lambda raw: b"\x01\x02" + raw[2:], "not an IDX file"),
    ],
)
def test_damaged_idx_is_named(tmp_path, damage, words):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(damage(gzip.decompress((SAMPLE / "t10k-images-idx3-ubyte.gz").read_bytes())))
    with pytest.raises(UserError, match=words) as caught:
        read_idx(path)
    assert str(path) in caught.value.message


def test_corrupt_gzip_is_named(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes((SAMPLE / "t10k-labels-idx1-ubyte.gz").read_bytes()[:100])
    with pytest.raises(UserError, match=f"cannot read {path}"):
        read_idx(path)


def test_mismatched_counts_are_named(tmp_path):
    make_idx_folder(tmp_path, compress=False)
    shutil.copy(SAMPLE / "t10k-labels-idx1-ubyte.gz", tmp_path / "t10k-labels-idx1-ubyte.gz")
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="do not match"):
        load_dataset("auto", str(tmp_path), CPU)


def test_offline_mnist_names_the_alternatives(tmp_path, monkeypatch):
    from mnist_trainer import data, download

    def offline(name, raw):
        raise UserError(f"cannot download {name}: offline")

    monkeypatch.setattr(download, "fetch", offline)
    with pytest.raises(UserError, match="--dataset mnist-sample"):
        load_dataset("mnist", str(tmp_path), CPU)
    monkeypatch.setenv("MNIST_TRAINER_DATA", str(tmp_path / "empty-cache"))
    with pytest.warns(data.DataNotice, match="using mnist-sample"):
        fallback = load_dataset("auto", None, CPU)
    assert fallback.name == "mnist-sample" and len(fallback.train) == 4000
