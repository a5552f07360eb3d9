"""The default data path: downloads through local mirrors the tests start and stop, with bounded waits."""

import gzip
import hashlib
import http.server
import json
import os
import socket
import struct
import threading
import time

import pytest
import torch
from torchvision import datasets

from mnist_trainer import distributed, download
from mnist_trainer.errors import UserError
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


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client hanging up is not the test's business
        pass


def start(handler):
    """An HTTP server on 127.0.0.1 answering with `handler`; returns it, running."""
    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(*servers):
    for server in servers:
        server.shutdown()
        server.server_close()


def serve(folder, requests):
    """An HTTP server on 127.0.0.1 serving `folder`, noting each path requested; returns it, running."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, format, *args):
            requests.append(self.path)

    return start(Handler)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A mirror serving small generated MNIST-format files, with torchvision's checksums set to match them and
    its own mirrors replaced by one that must never be asked (it counts requests too)."""
    served = tmp_path / "served"
    served.mkdir()
    generator = torch.Generator().manual_seed(0)
    resources = []
    for split, count in (("train", 100), ("t10k", 40)):
        for kind, array in (("images-idx3",
                             torch.randint(0, 256, (count, 28, 28), generator=generator, dtype=torch.uint8)),
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
    stop(server, fallback)


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
    assert sorted(p.name for p in (cache / "MNIST").iterdir()) == ["raw"]  # the three good files, no partial folder


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
    def interrupted(url, target, timeout, deadline):
        target.write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_copy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download.fetch("mnist", tmp_path / "cache" / "MNIST" / "raw")
    assert list((tmp_path / "cache" / "MNIST").iterdir()) == []


@pytest.fixture
def trickle(monkeypatch):
    """A mirror that sends its headers at once, then one byte of a 1,000-byte file every 0.2 s."""
    sent = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                sent.append(time.monotonic())
                time.sleep(0.2)

        def log_message(self, format, *args):
            pass

    server = start(Handler)
    monkeypatch.setattr(datasets.MNIST, "mirrors", [])
    monkeypatch.setenv("MNIST_TRAINER_MIRROR", f"http://127.0.0.1:{server.server_port}/")
    yield sent
    stop(server)


def test_a_trickling_server_is_cut_at_the_download_limit(run_cli, tmp_path, monkeypatch, trickle):
    monkeypatch.setenv("MNIST_TRAINER_DOWNLOAD_LIMIT", "2")
    cache = tmp_path / "cache"
    started = time.monotonic()
    result = run_cli("--dataset", "mnist", "--data-dir", cache, *TRAIN)
    elapsed = time.monotonic() - started
    assert_user_error(result, ["downloading mnist took more than 2 s (MNIST_TRAINER_DOWNLOAD_LIMIT)"])
    assert 2 <= elapsed < 5, elapsed
    assert len(trickle) >= 5  # it was reading, byte after byte, when the limit cut it
    assert list((cache / "MNIST").iterdir()) == []  # no partial folder, no raw folder


BAD_VALUES = ["inf", "1e400", "nan", "-1", "0", "abc", "86401"]  # 86401: a second above the ceiling, a day


@pytest.mark.parametrize("value", BAD_VALUES)
@pytest.mark.parametrize("variable", ["MNIST_TRAINER_TIMEOUT", "MNIST_TRAINER_DOWNLOAD_LIMIT"])
def test_a_bad_download_setting_is_one_line(run_cli, tmp_path, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    one_line(run_cli("--dataset", "mnist", "--data-dir", tmp_path / "cache", *TRAIN),
             [f"{variable}={value!r} is not a number of seconds above 0 and at most 86400"])
    assert not (tmp_path / "cache").exists()  # refused before anything was fetched


@pytest.mark.parametrize("value", BAD_VALUES)
def test_a_bad_distributed_timeout_is_one_line(monkeypatch, value):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, value)
    with pytest.raises(UserError) as refused:
        distributed._timeout()
    assert refused.value.message.startswith(f"MNIST_TRAINER_DIST_TIMEOUT={value!r} is not a number of seconds above 0")
    assert "\n" not in refused.value.message


@pytest.mark.parametrize(("value", "seconds"), [("", 300), ("2.5", 2.5), ("86400", 86400)])
def test_a_good_distributed_timeout_is_read(monkeypatch, value, seconds):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, value)
    assert distributed._timeout().total_seconds() == seconds


@pytest.fixture
def toy_mirror(tmp_path, monkeypatch):
    """Two made-up files, not MNIST's, served from a local mirror; returns (resources, url, requests, served)."""
    served = tmp_path / "served"
    served.mkdir()
    resources = []
    for name, data in (("alpha.bin", bytes(i % 251 for i in range(70_000))), ("beta.dat", b"two")):  # alpha: 2 chunks
        (served / name).write_bytes(data)
        resources.append((name, hashlib.md5(data).hexdigest()))
    monkeypatch.delenv("MNIST_TRAINER_MIRROR", raising=False)
    requests = []
    server = serve(served, requests)
    yield resources, f"http://127.0.0.1:{server.server_port}", requests, served
    stop(server)


def test_fetch_files_downloads_any_list_of_files(tmp_path, capsys, toy_mirror):
    resources, url, requests, served = toy_mirror
    raw = tmp_path / "cache" / "toy" / "raw"
    download.fetch_files("toy", resources, [url], raw, "about 70 kB")
    assert sorted(p.name for p in raw.iterdir()) == ["alpha.bin", "beta.dat"]
    for name, _ in resources:
        assert (raw / name).read_bytes() == (served / name).read_bytes()
    assert len((raw / "alpha.bin").read_bytes()) == 70_000
    assert sorted(requests) == ["/alpha.bin", "/beta.dat"]
    assert os.listdir(raw.parent) == ["raw"]  # no partial folder left
    assert capsys.readouterr() == ("", f"downloading toy (about 70 kB, 2 files) from {url}/ into {raw}\n")
    download.fetch_files("toy", resources, [url], raw, "about 70 kB")  # cached: nothing is asked again
    assert len(requests) == 2


def test_fetch_files_refuses_a_checksum_mismatch_in_one_line(tmp_path, toy_mirror):
    resources, url, requests, served = toy_mirror
    wrong = [resources[0], ("beta.dat", hashlib.md5(b"other bytes").hexdigest())]
    raw = tmp_path / "cache" / "toy" / "raw"
    with pytest.raises(UserError) as refused:
        download.fetch_files("toy", wrong, [url], raw, "about 70 kB")
    actual = hashlib.md5((served / "beta.dat").read_bytes()).hexdigest()
    assert refused.value.message == (f"cannot download toy: {url}/beta.dat: checksum mismatch "
                                     f"(its MD5 is {actual}, not {wrong[1][1]})")
    assert os.listdir(raw) == ["alpha.bin"]  # the verified file is kept, the corrupt one is not
    assert os.listdir(raw.parent) == ["raw"]
