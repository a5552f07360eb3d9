"""Tested the way a third-party author would: the data through `testing.compose`, whole runs through the commands
(in this process through click's runner, or started, for the run that is killed; the plugin must be installed for
those: ``pip install -e .``), on small learnable IDX files written here."""

import gzip
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import mnist_trainer_idx_folder as idx_folder
from mnist_trainer import UserError, cli, testing
from mnist_trainer.testing import build_options

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_idx(path: Path, array: torch.Tensor) -> None:
    """`array` as an IDX file of unsigned bytes, gzipped when `path` ends in .gz."""
    raw = bytes([0, 0, 8, array.dim()]) + b"".join(n.to_bytes(4, "big") for n in array.shape) + array.numpy().tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def write_folder(folder: Path, side: int, classes: int, sizes=(600, 200), seed=0) -> dict:
    """A learnable set: each image its class's random pattern, a fifth of its pixels noise. Images gzipped, labels
    not (both forms are read). Returns the arrays by file name."""
    generator, arrays = torch.Generator().manual_seed(seed), {}
    patterns = torch.randint(0, 256, (classes, side, side), generator=generator, dtype=torch.uint8)
    for (images_file, labels_file), count in zip((FILES[:2], FILES[2:]), sizes):
        labels = torch.randint(0, classes, (count,), generator=generator, dtype=torch.uint8)
        noise = torch.randint(0, 256, (count, side, side), generator=generator, dtype=torch.uint8)
        mask = torch.rand(count, side, side, generator=generator) < 0.2
        arrays[images_file], arrays[labels_file] = torch.where(mask, noise, patterns[labels.long()]), labels
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(folder / (f"{name}.gz" if "images" in name else name), array)
    return arrays


def answer(**options):
    """The plugin's data answer as the core composes it, with these options given as `-o` text."""
    built = build_options("idx-folder", idx_folder.IdxFolderOptions, {key: str(val) for key, val in options.items()})
    name, data = testing.compose(testing.plugin_manager(idx_folder), testing.settings(built, dataset="auto")).data
    assert name == "idx-folder"
    return data


def test_reads_the_folder_under_its_name_size_and_classes(tmp_path):
    arrays = write_folder(tmp_path / "usps", side=16, classes=4)
    data = answer(folder=tmp_path / "usps", name="usps-like", side=16, classes=4)
    assert (data.name, data.shape, data.classes, data.source) == ("usps-like", (1, 16, 16), 4, str(tmp_path / "usps"))
    loaded = data.load(("train", "test"))
    assert torch.equal(loaded["train"][0], arrays["train-images-idx3-ubyte"])
    assert torch.equal(loaded["test"][1], arrays["t10k-labels-idx1-ubyte"])
    assert list(data.load(("test",))) == ["test"]  # what mnist-eval asks for


def test_defaults_are_mnist_shaped_and_a_relative_folder_is_recorded_absolute(tmp_path, monkeypatch):
    write_folder(tmp_path / "data", side=28, classes=10)
    monkeypatch.chdir(tmp_path)
    options = build_options("idx-folder", idx_folder.IdxFolderOptions, {"folder": "data"})
    assert options == idx_folder.IdxFolderOptions(folder=str(tmp_path / "data"), name="idx-folder", classes=10, side=28)
    data = answer(folder="data")
    assert (data.name, data.shape, data.classes) == ("idx-folder", (1, 28, 28), 10)


@pytest.mark.parametrize("damage, words", ids=["missing", "not gzip", "mismatched"], argvalues=[
    (lambda folder: (folder / "train-labels-idx1-ubyte").unlink(), "missing {folder}/train-labels-idx1-ubyte[.gz]"),
    (lambda folder: (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"junk"),
     "cannot read {folder}/t10k-images-idx3-ubyte.gz"),
    (lambda folder: write_idx(folder / "t10k-labels-idx1-ubyte", torch.zeros(7, dtype=torch.uint8)),
     "{folder}/t10k-images-idx3-ubyte.gz and {folder}/t10k-labels-idx1-ubyte do not match"),
])
def test_a_missing_or_damaged_file_is_one_line_naming_it(tmp_path, damage, words):
    write_folder(tmp_path, side=28, classes=10)
    damage(tmp_path)
    with pytest.raises(UserError) as raised:
        answer(folder=tmp_path).load(("train", "test"))
    assert words.format(folder=tmp_path) in raised.value.message and "\n" not in raised.value.message


def test_data_that_does_not_fit_the_options_is_one_line_naming_the_file(tmp_path):
    write_folder(tmp_path, side=16, classes=4)
    with pytest.raises(UserError, match=f"^{tmp_path}/train-images-idx3-ubyte.gz holds 16x16-pixel images"):
        answer(folder=tmp_path).load(("train",))
    with pytest.raises(UserError, match=f"^{tmp_path}/train-labels-idx1-ubyte holds labels above 2"):
        answer(folder=tmp_path, side=16, classes=3).load(("train",))


def test_no_folder_or_a_missing_one_is_one_line_naming_the_option(tmp_path):
    with pytest.raises(UserError, match=r"^idx-folder needs a folder: -o idx-folder.folder=DIR"):
        answer()
    with pytest.raises(UserError, match=f"^-o idx-folder.folder={tmp_path / 'nowhere'}: no such folder"):
        answer(folder=tmp_path / "nowhere")


@pytest.mark.parametrize("key, value", [("name", "my data"), ("name", ""), ("name", "-x"), ("classes", "1"),
                                        ("classes", "ten"), ("side", "0"), ("side", "2.5")])
def test_bad_values_are_refused_in_one_line_naming_the_option(key, value):
    with pytest.raises(UserError, match=f"^invalid value for -o idx-folder.{key}={re.escape(value)}: ") as raised:
        build_options("idx-folder", idx_folder.IdxFolderOptions, {key: value})
    assert "\n" not in raised.value.message


def command(name: str, *args) -> subprocess.Popen:
    """One of mnist-trainer's commands, installed beside this Python, started (with this process's environment, so
    on as many threads as this one: the same sums)."""
    return subprocess.Popen([str(Path(sys.executable).with_name(name)), *map(str, args)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def invoke(name: str, *args) -> str:
    """One of mnist-trainer's commands run in this process as its console script runs it: its stdout, once it exited
    0."""
    result = CliRunner().invoke({"mnist-run": cli.main, "mnist-eval": cli.evaluate}[name], [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result.stdout


EPOCHS = 6


def training(folder: Path, out: Path) -> list:
    """The arguments of a run on `folder` big enough (about 0.5 s an epoch here) for a kill to land part-way."""
    return ["--plugin", "idx-folder", "-o", f"idx-folder.folder={folder}", "-o", "idx-folder.name=usps-like", "-o",
            "idx-folder.side=16", "-o", "idx-folder.classes=4", "--epochs", EPOCHS, "--hidden", "512,512", "--lr",
            "0.01", "--device", "cpu", "--out", out]


def epochs_recorded(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [row for row in map(json.loads, lines) if row["stage"] == "epoch"]


def timeless(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if not key.endswith("seconds")} for row in rows]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A folder of 16x16 images in 4 classes, and a run on it done in one go: (root, run, what it printed)."""
    root = tmp_path_factory.mktemp("idx-folder")
    write_folder(root / "usps", side=16, classes=4, sizes=(3000, 500))
    return root, root / "whole", invoke("mnist-run", *training(root / "usps", root / "whole"))


def test_a_run_trains_records_and_mnist_eval_reproduces_its_test_accuracy(finished):
    root, run, printed = finished
    assert re.search(r"^dataset +usps-like: 16x16 images, 4 classes \[idx-folder\]$", printed, re.M)
    config = json.loads((run / "config.json").read_text())
    assert {key: config["dataset"][key] for key in ("name", "plugin", "source", "train_size", "test_size")} == {
        "name": "usps-like", "plugin": "idx-folder", "source": str(root / "usps"), "train_size": 3000, "test_size": 500}
    assert config["pipeline"]["dataset"] == "usps-like: 16x16 images, 4 classes [idx-folder]"
    rows = epochs_recorded(run)
    assert rows[-1]["test_accuracy"] > 0.9 and rows[-1]["train_loss"] < rows[0]["train_loss"] / 2
    evaluated = json.loads(invoke("mnist-eval", run, "--json"))
    assert evaluated["dataset"] == "usps-like"
    assert evaluated["metrics"] == {"loss": rows[-1]["test_loss"], "accuracy": rows[-1]["test_accuracy"]}


def test_a_run_killed_part_way_and_resumed_ends_as_the_run_done_in_one_go(finished):
    root, whole, _ = finished
    killed = root / "killed"
    process = command("mnist-run", *training(root / "usps", killed))  # a process of its own, to be killed
    while len(epochs_recorded(killed)) < 2 and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL and 2 <= len(epochs_recorded(killed)) < EPOCHS
    resumed = invoke("mnist-run", "--resume", killed)
    resumed_from = int(re.search(rf"^resume +from epoch (\d+) of {EPOCHS},", resumed, re.M)[1])
    assert 1 <= resumed_from < EPOCHS  # from its checkpoint, not trained afresh
    assert timeless(epochs_recorded(killed)) == timeless(epochs_recorded(whole))
    weights = [torch.load(run / "model.pt", weights_only=True)["state_dict"] for run in (killed, whole)]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])


def test_it_keeps_the_plugin_contract(tmp_path):
    write_folder(tmp_path, side=28, classes=10, sizes=(240, 80))
    checked = testing.check_plugin(idx_folder, options={"folder": str(tmp_path)})
    checks = {check.property: check.detail for check in checked}
    assert checks["resumes bitwise"] == "interrupted as epoch 2 began, resumed: rows and weights equal"
    assert checks["mnist-eval reproduces the record"].endswith("exactly")
