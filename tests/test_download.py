"""The default data path: downloads through local mirrors the tests start and stop, with bounded waits."""

import gzip
import hashlib
import http.server
import json
import socket
import struct
import threading
import time

import pytest
import torch
from torchvision import datasets

from mnist_trainer import cli, download
from tests.test_cli import assert_user_error as one_line


def assert_user_error(result, words):
    """A download error: the line saying what was fetched, then the one-line error, exit status 2."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 2 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("downloading mnist") and lines[1].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[1], lines[1]

TRAIN = ["--epochs", "1", "--batch-size", "20", "--hidden", "16", "--device", "cpu"]


def idx_gz(array: torch.Tensor) -> bytes:
    header = bytes([0, 0, 8, array.dim()]) + b"".join(struct.pack(">I", n) for n in array.shape)
    return gzip.compress(header + array.numpy().tobytes())


def serve(folder, requests):
    """An HTTP server on 127.0.0.1 serving `folder`, noting each path requested; returns it, running."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, format, *args):
            requests.append(self.path)

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):  # a client hanging up is not the test's business
            pass

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A mirror serving small generated MNIST-format files, with torchvision's checksums set to match them and
    its own mirrors replaced by one that must never be asked (it counts requests too)."""
    served = tmp_path / "served"
    served.mkdir()
    generator = torch.Generator().manual_seed(0)
    resources = []
    for split, count in (("train", 100), ("t10k", 40)):
        for kind, array in (("images-idx3", torch.randint(0, 256, (count, 28, 28), generator=generator, dtype=torch.uint8)),
                            ("labels-idx1", torch.randint(0, 10, (count,), generator=generator, dtype=torch.uint8))):
            name = f"{split}-{kind}-ubyte.gz"
            (served / name).write_bytes(idx_gz(array))
            resources.append((name, hashlib.md5((served / name).read_bytes()).hexdigest()))
    requests, unwanted = [], []
    server, fallback = serve(served, requests), serve(served, unwanted)
    monkeypatch.setattr(datasets.MNIST, "resources", resources)
    monkeypatch.setattr(datasets.MNIST, "mirrors", [f"http://127.0.0.1:{fallback.server_port}/"])
    monkeypatch.setenv("MNIST_TRAINER_MIRROR", f"http://127.0.0.1:{server.server_port}")
    yield served, requests, unwanted, f"http://127.0.0.1:{server.server_port}/"
    for running in (server, fallback):
        running.shutdown()
        running.server_close()


def test_downloads_from_the_mirror_trains_and_then_reads_the_cache(run_cli, tmp_path, mirror):
    served, requests, unwanted, url = mirror
    cache = tmp_path / "cache"
    result = run_cli("--dataset", "mnist", "--data-dir", cache, *TRAIN, "--json", "--out", tmp_path / "one")
    assert result.exit_code == 0, result.output
    assert f"downloading mnist (about 11 MiB, 4 files) from {url} into {cache / 'MNIST' / 'raw'}" in result.stderr
    assert json.loads(result.stdout)["dataset"]["train_size"] == 100  # stdout holds the JSON alone
    assert sorted(set(requests)) == sorted(f"/{name}" for name, _ in datasets.MNIST.resources) and unwanted == []
    assert sorted(p.name for p in (cache / "MNIST").iterdir()) == ["raw"]  # no partial folder left
    asked = len(requests)
    again = run_cli("--dataset", "mnist", "--data-dir", cache, *TRAIN, "--out", tmp_path / "two")
    assert again.exit_code == 0 and len(requests) == asked and "downloading" not in again.stderr


def test_a_corrupted_file_is_a_checksum_error_and_nothing_is_cached(run_cli, tmp_path, mirror):
    served, requests, unwanted, url = mirror
    (served / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not the labels"))
    datasets.MNIST.mirrors = []
    cache = tmp_path / "cache"
    assert_user_error(run_cli("--dataset", "mnist", "--data-dir", cache, *TRAIN),
                      [f"{url}t10k-labels-idx1-ubyte.gz: checksum mismatch", "--dataset mnist-sample"])
    assert not (cache / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not (cache / "MNIST" / ".partial").exists()


@pytest.fixture
def silent_server(monkeypatch):
    """A server that accepts connections and never answers, as a broken proxy or firewall does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    monkeypatch.setattr(datasets.MNIST, "mirrors", [])
    monkeypatch.setenv("MNIST_TRAINER_MIRROR", f"http://127.0.0.1:{listener.getsockname()[1]}/")
    monkeypatch.setenv("MNIST_TRAINER_TIMEOUT", "1")
    yield
    listener.close()


def test_a_server_that_never_answers_falls_back_to_the_sample_quickly(run_cli, tmp_path, monkeypatch, silent_server):
    monkeypatch.setenv("MNIST_TRAINER_DATA", str(tmp_path / "cache"))
    started = time.monotonic()
    result = run_cli(*TRAIN, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 60
    assert "could not be downloaded (cannot download mnist: " in result.stderr
    assert "timed out after 1 s (MNIST_TRAINER_TIMEOUT)); using mnist-sample" in result.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["dataset"]["name"] == "mnist-sample"


def test_asking_for_mnist_from_a_silent_server_is_one_line(run_cli, tmp_path, silent_server):
    assert_user_error(run_cli("--dataset", "mnist", "--data-dir", tmp_path / "cache", *TRAIN),
                      ["cannot download mnist", "timed out after 1 s"])


def test_an_interrupted_download_keeps_no_partial_file(tmp_path, monkeypatch, mirror):
    def interrupted(url, root, filename, md5):
        (tmp_path / "cache" / "MNIST" / ".partial" / filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr("torchvision.datasets.utils.download_url", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download.fetch("mnist", tmp_path / "cache" / "MNIST" / "raw")
    assert list((tmp_path / "cache" / "MNIST").iterdir()) == []


def test_a_bad_timeout_setting_is_one_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_TRAINER_TIMEOUT", "soon")
    one_line(run_cli("--dataset", "mnist", "--data-dir", tmp_path / "cache", *TRAIN),
                      ["MNIST_TRAINER_TIMEOUT='soon' is not a number of seconds above 0"])
