"""Faults and hostile input: each ends in one line (or a recorded status), with nothing lost and no debris."""

import errno
import json
import os
import pickle
import shutil
import struct
import threading

import pytest
import torch

from mnist_trainer import UserError, cli, records
from tests.test_cli import FAST, SAMPLE, assert_user_error


def idx(array: torch.Tensor) -> bytes:
    return bytes([0, 0, 8, array.dim()]) + b"".join(struct.pack(">I", n) for n in array.shape) + array.numpy().tobytes()


def idx_folder(tmp_path, images: torch.Tensor, split="t10k", gz=False):
    """A folder whose `split` pair holds `images` and as many zero labels."""
    folder = tmp_path / "idx"
    folder.mkdir(exist_ok=True)
    shutil.copytree(SAMPLE, folder, dirs_exist_ok=True)
    for name, data in ((f"{split}-images-idx3-ubyte", idx(images)),
                       (f"{split}-labels-idx1-ubyte", idx(torch.zeros(images.shape[0], dtype=torch.uint8)))):
        (folder / f"{name}.gz").unlink(missing_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("shape, words", [((20, 32, 32), "holds 32x32-pixel images; MNIST-format images are 28x28"),
                                          ((20, 28, 27), "holds 28x27-pixel images"),
                                          ((0, 28, 28), "holds no data")])
def test_idx_files_that_are_not_mnist_shaped_are_refused_by_name(run_cli, tmp_path, shape, words):
    folder = idx_folder(tmp_path, torch.zeros(shape, dtype=torch.uint8))
    out = tmp_path / "run"
    assert_user_error(run_cli("--data-dir", folder, *FAST[2:], "--out", out), ["t10k-images-idx3-ubyte", words])
    assert not out.exists()  # refused while loading: before the run folder


def test_a_gzip_damaged_mid_stream_is_named(run_cli, tmp_path):
    folder = tmp_path / "idx"
    shutil.copytree(SAMPLE, folder)
    damaged = bytearray((folder / "t10k-images-idx3-ubyte.gz").read_bytes())
    damaged[len(damaged) // 2 : len(damaged) // 2 + 64] = bytes(64)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(bytes(damaged))
    assert_user_error(run_cli("--data-dir", folder, *FAST[2:]), ["cannot read", "t10k-images-idx3-ubyte.gz"])


def test_a_bad_test_split_is_refused_by_mnist_eval_too(run_cli, tmp_path):
    run_cli("--plugin", "relu", *FAST, "--out", tmp_path / "run")
    folder = idx_folder(tmp_path, torch.zeros(5, 32, 32, dtype=torch.uint8))
    assert_user_error(run_cli(tmp_path / "run", "--data-dir", folder, command=cli.evaluate),
                      ["holds 32x32-pixel images"])


@pytest.mark.parametrize("args, words", [
    (["--lr", "nan"], ["--lr", "'nan' is not a finite number above 0"]),
    (["--lr", "inf"], ["--lr", "'inf' is not a finite number above 0"]),
    (["--seed", str(2**64)], ["--seed"]),
    (["--dataset", "synthetic:99999999999"], ["--dataset synthetic:99999999999 needs about", "GiB of memory is free"]),
    (["--hidden", "99999999"], ["the mlp model (", "parameters) needs about", "choose a smaller one (--hidden"]),
    (["--plugin", "batchnorm", "--batch-size", "1"], ["--batch-size 1 is too small for plugin 'batchnorm'"]),
    (["--plugin", "rbm-pretrain", "-o", "rbm-pretrain.lr=inf"], ["-o rbm-pretrain.lr=inf", "not a finite number"]),
    (["--dataset", "mnist-sample", "--data-dir", "."], ["--data-dir is not read with --dataset mnist-sample"]),
])
def test_values_that_would_fail_later_are_refused_before_any_folder(run_cli, tmp_path, args, words):
    fast = dict(zip(FAST[::2], FAST[1::2]))
    for flag in args[::2]:
        fast.pop(flag, None)
    out = tmp_path / "run"
    assert_user_error(run_cli(*args, *(a for pair in fast.items() for a in pair), "--out", out), words)
    assert not out.exists()


def test_mnist_trainer_data_pointing_at_a_file_says_so(run_cli, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("MNIST_TRAINER_DATA", str(tmp_path / "file"))
    assert_user_error(run_cli("--epochs", "1"), [f"MNIST_TRAINER_DATA={tmp_path / 'file'} is a file"])


@pytest.mark.parametrize("victim", [records.CONFIG, records.METRICS, records.CHECKPOINT, records.STATE])
def test_a_full_disk_at_any_record_file_is_one_line_and_keeps_what_was_written(run_cli, tmp_path, monkeypatch, victim):
    fsync = os.fsync

    def full_disk(descriptor):  # the disk fills while the victim's temporary file is being written
        written = os.readlink(f"/proc/self/fd/{descriptor}")
        if (os.path.basename(written).startswith(f".{victim}.")
                and os.path.exists(os.path.join(os.path.dirname(written), records.CONFIG))):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fsync(descriptor)

    monkeypatch.setattr(os, "fsync", full_disk)
    out = tmp_path / "run"
    assert_user_error(run_cli("--plugin", "relu", *FAST, "--out", out),
                      [f"cannot write {out / victim}", "No space left on device"])
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files
    config = json.loads((out / records.CONFIG).read_text())  # still the whole file written before
    assert config["settings"]["plugins"] == ["relu"]


def test_torch_saves_failing_midway_is_named_too(run_cli, tmp_path, monkeypatch):
    save = torch.save

    def broken_save(obj, file):
        if "state_dict" not in obj:  # the resumable checkpoint; fail model.pt alone
            return save(obj, file)
        file.write(b"PK\x03\x04partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1408 vs 1302")

    monkeypatch.setattr(torch, "save", broken_save)
    out = tmp_path / "run"
    assert_user_error(run_cli("--plugin", "relu", *FAST, "--out", out),
                      [f"cannot write {out / 'model.pt'}", "unexpected pos"])
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl"]


def test_one_folder_is_claimed_by_one_run_only(tmp_path):
    for attempt in range(5):
        target, won, lost = tmp_path / f"shared{attempt}", [], []
        start = threading.Barrier(8)

        def claim():
            start.wait()
            try:
                won.append(records.RunFolder.claim(target))
            except UserError as error:
                lost.append(error.message)

        threads = [threading.Thread(target=claim) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1 and len(lost) == 7 and all("already holds a run" in message for message in lost)


def test_default_run_folders_are_claimed_atomically(tmp_path):
    claimed, start = [], threading.Barrier(8)

    def claim():
        start.wait()
        claimed.append(records.default_out(("relu",), tmp_path))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(claimed)) == 8 and all(path.is_dir() for path in claimed)


DIVERGES = """
import torch
from mnist_trainer import Regularizer, hookimpl

@hookimpl
def mnist_trainer_regularizer(settings):
    calls = []

    def penalty(network, logits, labels):
        calls.append(1)
        return torch.tensor(float("nan") if len(calls) > 24 else 0.0)  # 24 steps of 50: two epochs of 600 images

    return Regularizer("nan after two epochs", penalty=penalty)
"""


def test_a_diverging_run_stops_keeps_its_last_good_epoch_and_exits_3(run_cli, fake_plugin, tmp_path):
    fake_plugin("blowup", DIVERGES)
    out = tmp_path / "run"
    result = run_cli("--plugin", "blowup", *FAST, "--epochs", "5", "--out", out)
    assert result.exit_code == 3
    line = result.stderr.strip().splitlines()[-1]
    assert (line.startswith("diverged: the training loss became nan in epoch 3 (last finite: ")
            and "lower --lr (it is 0.001)" in line)
    for name in (records.CONFIG, records.METRICS):  # strict JSON throughout
        json.loads((out / name).read_text() if name == records.CONFIG
                   else "[" + ",".join((out / name).read_text().splitlines()) + "]",
                   parse_constant=lambda token: pytest.fail(f"{name} holds {token}"))
    summary = json.loads((out / "config.json").read_text())["summary"]
    assert (summary["status"], summary["epochs"], summary["saved"]["epoch"]) == ("diverged", 2, 2)
    evaluated = json.loads(run_cli(out, "--dataset", "synthetic:600", "--json", command=cli.evaluate).stdout)
    assert evaluated["metrics"] == {"loss": summary["saved"]["test_loss"],
                                    "accuracy": summary["saved"]["test_accuracy"]}


def test_non_finite_values_are_written_as_strict_json():
    assert (records.to_json({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5]})
            == '{"a": "nan", "b": ["inf", "-inf", 1.5]}')


class Malicious:
    def __reduce__(self):
        return (os.system, ("touch /tmp/mnist-trainer-was-attacked",))


HOSTILE = {
    "empty": lambda path: path.write_bytes(b""),
    "text": lambda path: path.write_text("these are not the weights you are looking for"),
    "zeros": lambda path: (path.unlink(), path.symlink_to("/dev/zero")),
    "malicious pickle": lambda path: path.write_bytes(pickle.dumps(Malicious())),
    "foreign structure": lambda path: torch.save({"weights": torch.zeros(3)}, path),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_mnist_eval_on_a_hostile_checkpoint_is_one_line(run_cli, tmp_path, case):
    out = tmp_path / "run"
    run_cli("--plugin", "relu", *FAST, "--out", out)
    config = json.loads((out / "config.json").read_text())
    del config["model_sha256"]  # the file is replaced knowingly: past the checksum, what does loading it do?
    (out / "config.json").write_text(json.dumps(config))
    HOSTILE[case](out / "model.pt")
    result = run_cli(out, "--dataset", "synthetic:600", command=cli.evaluate)
    assert_user_error(result, [str(out / "model.pt"), "checkpoint of this mnist-trainer" if case == "foreign structure"
                               else "mnist-trainer checkpoint"])
    assert "weights_only=False" not in result.stderr and not os.path.exists("/tmp/mnist-trainer-was-attacked")


def test_mnist_eval_verifies_the_checkpoint_against_its_recorded_sha256(run_cli, tmp_path):
    out = tmp_path / "run"
    run_cli("--plugin", "relu", *FAST, "--out", out)
    data = bytearray((out / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "model.pt").write_bytes(bytes(data))
    assert_user_error(run_cli(out, "--dataset", "synthetic:600", command=cli.evaluate),
                      ["its SHA-256 differs from config.json's", "changed or damaged"])


def test_mnist_eval_names_weights_that_do_not_fit_and_plugins_that_are_gone(run_cli, tmp_path):
    out = tmp_path / "run"
    run_cli("--plugin", "relu", *FAST, "--out", out)
    config = json.loads((out / "config.json").read_text())
    del config["model_sha256"]
    config["plugins"].append({"name": "ghost", "distribution": "mnist-trainer-ghost", "version": "2.1.0",
                              "reason": "selected"})
    (out / "config.json").write_text(json.dumps(config))
    model = torch.load(out / "model.pt", weights_only=True)
    torch.save({**model, "settings": {**model["settings"], "hidden": [16]}}, out / "model.pt")
    assert_user_error(run_cli(out, "--dataset", "synthetic:600", command=cli.evaluate),
                      ["model.pt does not fit the network its plugins build now"])
    torch.save({**model, "settings": {**model["settings"], "plugins": ["relu", "ghost"]}}, out / "model.pt")
    assert_user_error(run_cli(out, "--dataset", "synthetic:600", command=cli.evaluate),
                      ["trained with plugin 'ghost', which is not installed; pip install mnist-trainer-ghost==2.1.0"])
