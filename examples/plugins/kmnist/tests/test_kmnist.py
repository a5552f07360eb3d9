"""Tested offline: small fake KMNIST files served from 127.0.0.1 as the mirror (``MNIST_TRAINER_MIRROR``), with
torchvision's KMNIST checksums set to theirs, as mnist-trainer's own download tests do for MNIST. torchvision's
mirror is replaced by a local one that must never be asked. The command-line runs (in this process, through click's
runner) read the cache the download left; the plugin must be installed for them (``pip install -e .``)."""

import gzip
import hashlib
import http.server
import json
import re
import threading
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from torchvision import datasets

import mnist_trainer_kmnist as kmnist
from mnist_trainer import UserError, cli, testing

SIZES = {"train": 600, "t10k": 200}
TRAIN = ["--epochs", "3", "--hidden", "16", "--batch-size", "50", "--lr", "0.01", "--device", "cpu", "--json"]


def idx_gz(array: torch.Tensor) -> bytes:
    header = bytes([0, 0, 8, array.dim()]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + array.numpy().tobytes())


def fake_kmnist(generator: torch.Generator) -> dict:
    """Learnable stand-ins for KMNIST's files: each image its class's random pattern, a fifth of its pixels noise."""
    patterns, files = torch.randint(0, 256, (10, 28, 28), generator=generator, dtype=torch.uint8), {}
    for split, count in SIZES.items():
        labels = torch.randint(0, 10, (count,), generator=generator, dtype=torch.uint8)
        noise = torch.randint(0, 256, (count, 28, 28), generator=generator, dtype=torch.uint8)
        images = torch.where(torch.rand(count, 28, 28, generator=generator) < 0.2, noise, patterns[labels.long()])
        files[f"{split}-images-idx3-ubyte.gz"], files[f"{split}-labels-idx1-ubyte.gz"] = images, labels
    return files


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client hanging up is not the test's business
        pass


def serve(folder: Path, requests: list) -> Server:
    """An HTTP server on 127.0.0.1 serving `folder`, noting each path asked for."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, format, *args):
            requests.append(self.path)

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Mirror:
    """The fake files served as ``MNIST_TRAINER_MIRROR``, and a stand-in for torchvision's mirror that must never be
    asked: `arrays` served, `requests` and `unwanted` the paths each was asked for, `url` the mirror's."""

    def __init__(self, served: Path):
        self.arrays = fake_kmnist(torch.Generator().manual_seed(0))
        for filename, array in self.arrays.items():
            (served / filename).write_bytes(idx_gz(array))
        self.requests, self.unwanted = [], []
        self.servers = serve(served, self.requests), serve(served, self.unwanted)
        self.url, self.fallback = (f"http://127.0.0.1:{server.server_port}/" for server in self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        self.servers = ()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A running `Mirror`, torchvision's KMNIST list holding its files' checksums, ``$MNIST_TRAINER_DATA`` empty."""
    (tmp_path / "served").mkdir()
    mirror = Mirror(tmp_path / "served")
    monkeypatch.setattr(datasets.KMNIST, "resources", [
        (name, hashlib.md5((tmp_path / "served" / name).read_bytes()).hexdigest()) for name in mirror.arrays])
    monkeypatch.setattr(datasets.KMNIST, "mirrors", [mirror.fallback])
    monkeypatch.setenv("MNIST_TRAINER_MIRROR", mirror.url)
    monkeypatch.setenv("MNIST_TRAINER_DATA", str(tmp_path / "cache"))
    yield mirror
    mirror.stop()


def load(splits, **settings) -> dict:
    """The plugin's data as the core composes it, loaded."""
    name, data = testing.compose(testing.plugin_manager(kmnist), testing.settings(dataset="kmnist", **settings)).data
    assert name == "kmnist" and (data.name, data.shape, data.classes) == ("kmnist", (1, 28, 28), 10)
    return data.load(splits)


def test_downloads_through_the_mirror_once_then_reads_the_cache(mirror, tmp_path, capfd):
    loaded = load(("train", "test"))
    raw = tmp_path / "cache" / "KMNIST" / "raw"
    assert capfd.readouterr().err == f"downloading kmnist (about 20 MiB, 4 files) from {mirror.url} into {raw}\n"
    assert sorted(mirror.requests) == sorted(f"/{name}" for name in mirror.arrays) and mirror.unwanted == []
    assert torch.equal(loaded["train"][0], mirror.arrays["train-images-idx3-ubyte.gz"])
    assert torch.equal(loaded["test"][1], mirror.arrays["t10k-labels-idx1-ubyte.gz"])
    assert sorted(path.name for path in raw.parent.iterdir()) == ["raw"]  # no partial folder left
    again = load(("train", "test"))
    assert len(mirror.requests) == 4 and capfd.readouterr().err == ""  # the cache: no server asked, nothing said
    assert all(torch.equal(again[split][0], loaded[split][0]) for split in ("train", "test"))


def test_the_test_split_alone_fetches_its_two_files_into_the_runs_data_dir(mirror, tmp_path, capfd):
    assert list(load(("test",), data_dir=tmp_path / "elsewhere")) == ["test"]  # as mnist-eval asks
    assert "(about 3 MiB, 2 files)" in capfd.readouterr().err
    assert sorted(mirror.requests) == ["/t10k-images-idx3-ubyte.gz", "/t10k-labels-idx1-ubyte.gz"]
    assert not (tmp_path / "cache").exists()  # the run's data dir wins over $MNIST_TRAINER_DATA


def test_a_checksum_mismatch_is_one_line_naming_the_file_and_the_mirror(mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.KMNIST, "mirrors", [])
    (tmp_path / "served" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not the labels"))
    with pytest.raises(UserError) as raised:
        load(("train", "test"))
    message, raw = raised.value.message, tmp_path / "cache" / "KMNIST" / "raw"
    assert "\n" not in message and f"{mirror.url}t10k-labels-idx1-ubyte.gz: checksum mismatch" in message
    assert sorted(path.name for path in raw.iterdir()) == [  # the three good files are cached, the bad one is not
        "t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def test_offline_with_nothing_cached_is_one_line_saying_what_to_do(mirror, tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_TRAINER_MIRROR")
    monkeypatch.setattr(datasets.KMNIST, "mirrors", ["http://127.0.0.1:9/"])  # the discard port: refused
    with pytest.raises(UserError) as raised:
        load(("train", "test"))
    assert raised.value.message == (
        "cannot download kmnist: http://127.0.0.1:9/train-images-idx3-ubyte.gz: connection refused; set "
        "MNIST_TRAINER_MIRROR to a URL serving train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, or copy them into {tmp_path / 'cache/KMNIST/raw'}")


def command(name: str, *args, **env) -> Result:
    """One of mnist-trainer's commands run in this process as its console script runs it (the plugins found as
    installed), with `env` added to the environment: click's result, with its exit code, stdout and stderr."""
    return CliRunner().invoke({"mnist-run": cli.main, "mnist-eval": cli.evaluate}[name], [str(arg) for arg in args],
                              env=env)


def timeless(row: dict) -> dict:
    return {key: value for key, value in row.items() if not key.endswith("seconds")}


def test_runs_train_on_it_and_mnist_eval_needs_neither_the_cache_setting_nor_a_server(mirror, tmp_path, monkeypatch):
    load(("train", "test"))  # the cache is filled through the mirror; the runs below read it
    records = []
    for flag in ("--dataset", "--plugin"):  # the same data either way
        result = command("mnist-run", flag, "kmnist", *TRAIN, "--out", tmp_path / flag.strip("-"))
        assert result.exit_code == 0, result.output
        assert re.search(r"^dataset +kmnist: 28x28 images, 10 classes \[kmnist\]$", result.stderr, re.M)
        assert "downloading" not in result.stderr and len(mirror.requests) == 4
        records.append(json.loads((tmp_path / flag.strip("-") / "config.json").read_text()))
    first, second = records
    assert {key: first["dataset"][key] for key in ("name", "plugin", "train_size", "test_size")} == {
        "name": "kmnist", "plugin": "kmnist", "train_size": 600, "test_size": 200}
    assert first["dataset"] == second["dataset"] and first["settings"]["data_dir"] == str(tmp_path / "cache")
    assert first["summary"]["final"]["test_accuracy"] > 0.9
    assert timeless(first["summary"]["final"]) == timeless(second["summary"]["final"])

    mirror.stop()
    monkeypatch.delenv("MNIST_TRAINER_MIRROR")
    (tmp_path / "empty").mkdir()
    evaluated = command("mnist-eval", tmp_path / "dataset", "--json", MNIST_TRAINER_DATA=str(tmp_path / "empty"))
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["metrics"]["accuracy"] == first["summary"]["final"]["test_accuracy"]
    assert "downloading" not in evaluated.stderr and list((tmp_path / "empty").iterdir()) == []


def test_it_keeps_the_plugin_contract(mirror):
    load(("train", "test"))  # cached, so no check needs a server
    checks = {check.property: check.detail for check in testing.check_plugin(kmnist)}
    assert checks["resumes bitwise"] == "interrupted as epoch 2 began, resumed: rows and weights equal"
    assert checks["mnist-eval reproduces the record"].endswith("exactly")
