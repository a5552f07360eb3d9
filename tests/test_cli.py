"""The command end to end, in-process: records, determinism, and the bad-input matrix."""

import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch

from mnist_trainer import cli
from tests.test_registry import CLAIMS_ACTIVATION

SAMPLE = Path(__file__).resolve().parents[1] / "core" / "mnist_trainer" / "sample"
FAST = ["--dataset", "synthetic:600", "--epochs", "2", "--batch-size", "50", "--hidden", "32,32", "--device", "cpu"]


def test_run_writes_a_complete_record(run_cli, tmp_path):
    out = tmp_path / "run"
    result = run_cli("--plugin", "relu", *FAST, "--eval-train", "--out", out)
    assert result.exit_code == 0, result.output
    assert "ReLU [relu]" in result.stdout and "Sigmoid" not in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["plugins"] == [{"name": "relu", "distribution": "mnist-trainer-relu", "version": "0.1.0",
                                  "reason": "selected"}]
    assert {k: v for k, v in config["dataset"].items() if "fingerprint" not in k} == {
        "name": "synthetic:600", "source": "generated", "plugin": "core", "version": "0.3.0", "train_size": 600,
        "test_size": 100, "val": None}
    assert len(config["dataset"]["fingerprint"]) == len(config["dataset"]["test_fingerprint"]) == 64
    assert (config["settings"]["hidden"] == [32, 32]
            and config["settings"]["options"] == {"relu": {"negative_slope": 0.0}})
    assert config["versions"]["torch"] == torch.__version__ and config["device"]["name"] == "cpu"
    assert config["summary"]["final"]["epoch"] == 2
    assert (config["summary"]["status"], config["summary"]["reason"]) == ("completed", "trained 2 epochs")
    assert config["pipeline"]["optimizer"] == ("Adam (fused) [core default], lr=0.001 (its conventional rate); "
                                               "constant learning rate [core default]")
    assert config["lr"] == 0.001 and config["settings"]["lr"] is None  # the rate used, and that --lr was not given
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert set(rows[0]) >= {"lr", "train_loss", "test_loss", "test_accuracy", "train_eval_loss", "train_eval_accuracy",
                            "seconds"}
    assert rows[0]["lr"] == rows[1]["lr"] == 0.001
    model = torch.load(out / "model.pt", weights_only=True)
    assert model["settings"] == config["settings"] and model["epoch"] == 2 and model["run_id"] == config["run_id"]
    assert model["state_dict"]["0.linear.weight"].shape == (32, 784)
    # no temporaries
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl", "model.pt"]


def test_json_summary_on_stdout_and_the_rest_on_stderr(run_cli, tmp_path):
    result = run_cli(*FAST, "--json", "--out", tmp_path / "run")
    summary = json.loads(result.stdout)
    assert summary["final"]["epoch"] == 2 and 0 <= summary["final"]["test_accuracy"] <= 1
    assert "Sigmoid [core default]" in result.stderr


def test_same_seed_same_metrics_exactly(run_cli, tmp_path):
    rows = []
    for name in ("a", "b"):
        assert run_cli("--plugin", "relu", *FAST, "--seed", "5", "--out", tmp_path / name).exit_code == 0
        rows.append([{k: v for k, v in json.loads(line).items() if not k.endswith("seconds")}
                     for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()])
    assert rows[0] == rows[1]
    assert run_cli("--plugin", "relu", *FAST, "--seed", "6", "--out", tmp_path / "c").exit_code == 0
    other = json.loads((tmp_path / "c" / "metrics.jsonl").read_text().splitlines()[0])
    assert other["train_loss"] != rows[0][0]["train_loss"]


def test_evaluate_rebuilds_a_saved_run(run_cli, tmp_path):
    run_cli("--plugin", "relu", "-o", "relu.negative_slope=0.1", *FAST, "--out", tmp_path / "run")
    trained = json.loads((tmp_path / "run" / "config.json").read_text())["summary"]["final"]
    result = run_cli(tmp_path / "run", "--dataset", "synthetic:600", "--json", command=cli.evaluate)
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.stdout)
    assert evaluated["metrics"]["accuracy"] == pytest.approx(trained["test_accuracy"])
    assert evaluated["metrics"]["loss"] == pytest.approx(trained["test_loss"], rel=1e-5)


def test_help_lists_installed_plugins(run_cli):
    result = run_cli("--help")
    assert result.exit_code == 0 and "Installed plugins" in result.stdout and "relu" in result.stdout


def truncated_copy(tmp_path):
    folder = tmp_path / "truncated"
    shutil.copytree(SAMPLE, folder)
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:-5000]))
    return folder


def a_file(tmp_path):
    (tmp_path / "file").write_text("keep me")
    return tmp_path / "file" / "run"


def existing_run(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text("{}")
    return tmp_path / "old"


BAD_INPUT = {
    "unknown plugin": (lambda tmp: ["--plugin", "rleu"], ["unknown plugin 'rleu'", "did you mean 'relu'?"]),
    "malformed -o": (lambda tmp: ["--plugin", "relu", "-o", "relu.negative_slope"], ["NAME.KEY=VALUE"]),
    "unknown key": (lambda tmp: ["--plugin", "relu", "-o", "relu.slope=1"],
                    ["unknown option relu.slope", "relu.negative_slope"]),
    "out of range": (lambda tmp: ["--plugin", "relu", "-o", "relu.negative_slope=-1"],
                     ["relu.negative_slope=-1", "a number >= 0"]),
    "wrong type": (lambda tmp: ["--plugin", "relu", "-o", "relu.negative_slope=steep"],
                   ["relu.negative_slope=steep", "a number >= 0"]),
    "option for unselected plugin": (lambda tmp: ["-o", "relu.negative_slope=0.1"], ["not selected", "--plugin relu"]),
    "hidden with gaps": (lambda tmp: ["--hidden", "256,,x"], ["--hidden", "positive widths"]),
    "hidden zero": (lambda tmp: ["--hidden", "0"], ["--hidden"]),
    "zero epochs": (lambda tmp: ["--epochs", "0"], ["--epochs", "0 is not in the range"]),
    "zero batch": (lambda tmp: ["--batch-size", "0"], ["--batch-size"]),
    "batch above train set": (lambda tmp: ["--dataset", "mnist-sample", "--batch-size", "5000"],
                              ["--batch-size 5000", "4000 training images"]),
    "bad dataset": (lambda tmp: ["--dataset", "cifar"], ["unknown --dataset 'cifar'", "mnist-sample"]),
    "empty data dir": (lambda tmp: ["--data-dir", tmp], ["no MNIST-format files", "--dataset mnist-sample"]),
    "truncated idx": (lambda tmp: ["--data-dir", truncated_copy(tmp)], ["train-images-idx3-ubyte.gz is truncated"]),
    "unwritable out": (lambda tmp: ["--dataset", "synthetic:100", "--batch-size", "10", "--out", a_file(tmp)],
                       ["cannot write", "file/run: Not a directory", "choose another --out"]),
    "out holds a run": (lambda tmp: ["--dataset", "synthetic:100", "--batch-size", "10", "--out", existing_run(tmp)],
                        ["already holds files"]),
    "bad device": (lambda tmp: ["--device", "tpu"], ["--device 'tpu'"]),
    "cpu:1": (lambda tmp: ["--device", "cpu:1"], ["--device 'cpu:1'", "use auto, cpu, cuda or cuda:N"]),
    "core option": (lambda tmp: ["-o", "core.lr=0.1"], ["the core takes no -o options", "use its flags"]),
    "newline in a value": (lambda tmp: ["--plugin", "relu", "-o", "relu.negative_slope=0.1\nEVIL"],
                           ["relu.negative_slope=0.1 EVIL"]),
    "out name too long": (lambda tmp: ["--dataset", "synthetic:100", "--batch-size", "10", "--out", tmp / ("x" * 300)],
                          ["cannot write", "File name too long"]),
    "data dir name too long": (lambda tmp: ["--data-dir", tmp / ("x" * 300)], ["File name too long"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_exit_2(run_cli, tmp_path, case):
    args, words = BAD_INPUT[case]
    result = run_cli(*args(tmp_path), "--epochs", "1") if case != "zero epochs" else run_cli(*args(tmp_path))
    assert_user_error(result, words)
    if case == "unwritable out":
        assert (tmp_path / "file").read_text() == "keep me"
    if case == "out holds a run":
        assert [p.name for p in (tmp_path / "old").iterdir()] == ["config.json"]


OPTIMIZER_NONSENSE = {
    "sparseadam": (["--plugin", "sparseadam"], ["needs sparse gradients", "the core's Adam", "--plugin adamw"]),
    "nesterov": (["--plugin", "sgd", "-o", "sgd.nesterov=true"], ["sgd.nesterov=true needs sgd.momentum above 0"]),
    "momentum": (["--plugin", "rmsprop", "-o", "rmsprop.momentum=-0.9"], ["-o rmsprop.momentum=-0.9", "[0, 1)"]),
    "betas": (["--plugin", "adamw", "-o", "adamw.betas=0.9,0.99,0.9"], ["-o adamw.betas=0.9,0.99,0.9", "two numbers"]),
    "lbfgs": (["--plugin", "lbfgs", "-o", "lbfgs.max_iter=20"], ["lbfgs.max_eval of at least 20"]),
}


@pytest.mark.parametrize("case", list(OPTIMIZER_NONSENSE))
def test_an_optimizer_plugins_nonsense_is_one_line_before_any_folder(run_cli, tmp_path, case):
    args, words = OPTIMIZER_NONSENSE[case]
    result = run_cli(*args, "--dataset", "synthetic:100", "--batch-size", "10", "--epochs", "1",
                     "--out", tmp_path / "x")
    assert_user_error(result, words)
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(run_cli):
    assert_user_error(run_cli("--device", "cuda"), ["no CUDA device", "--device cpu"])


def test_two_plugins_in_one_exclusive_slot(run_cli, fake_plugin):
    fake_plugin("tanh", CLAIMS_ACTIVATION)
    assert_user_error(run_cli("--plugin", "tanh", "--plugin", "relu"), ["'relu' and 'tanh'", "activation slot"])


def test_plugin_whose_import_raises(run_cli, fake_plugin):
    fake_plugin("broken", "raise RuntimeError('boom')")
    assert_user_error(run_cli("--plugin", "broken"), ["plugin 'broken'", "RuntimeError: boom"])
    assert run_cli("--list-plugins").exit_code == 0


def test_evaluating_a_folder_without_a_run(run_cli, tmp_path):
    assert_user_error(run_cli(tmp_path, command=cli.evaluate), ["not a finished mnist-run record"])


def assert_user_error(result, words):
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    message = lines[0]
    assert message.startswith("Error: ") and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in message, message


def test_progress_bar_only_on_a_terminal(monkeypatch, tmp_path):
    import io

    from mnist_trainer import build, session

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    output = cli._output(as_json=False)
    assert output.progress
    settings, pipeline = build.select([], [], dataset="synthetic:600", epochs=2, batch_size=10, hidden=(16,),
                                      device="cpu")
    session.train(settings, pipeline, tmp_path / "run", output)
    assert "epoch 1" in terminal.getvalue() and "epoch 2" in terminal.getvalue() and "100%" in terminal.getvalue()
    assert not pipeline.events.listens("mnist_trainer_step_end")  # the bar moves without the per-step event
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not cli._output(as_json=False).progress


def test_a_cnn_run_is_rebuilt_by_mnist_eval_exactly(run_cli, tmp_path):
    fast = [arg for arg in FAST if arg not in ("--hidden", "32,32")]
    out = tmp_path / "cnn"
    result = run_cli("--plugin", "cnn", "--plugin", "batchnorm", "-o", "cnn.channels=4,8", *fast, "--out", out)
    assert result.exit_code == 0, result.output
    assert ("CNN, 2 blocks: Conv2d 3x3 (4, 8 channels) -> BatchNorm(momentum=0.1, eps=1e-05) [batchnorm]"
            in result.stdout)
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["hidden"] is None and config["settings"]["options"]["cnn"] == {"channels": [4, 8]}
    evaluated = run_cli(out, "--dataset", "synthetic:600", "--json", command=cli.evaluate)
    assert evaluated.exit_code == 0, evaluated.output
    final = config["summary"]["final"]
    assert json.loads(evaluated.stdout)["metrics"] == {"loss": final["test_loss"], "accuracy": final["test_accuracy"]}


def test_hidden_with_a_model_plugin_is_one_line(run_cli):
    assert_user_error(run_cli("--plugin", "cnn", "--hidden", "64"),
                      ["--hidden sets the widths of the core's MLP", "plugin 'cnn'"])


def test_more_processes_than_cores_asks_to_be_sure_before_starting_any(run_cli, tmp_path):
    import os

    too_many = str((os.cpu_count() or 1) + 1)
    assert_user_error(run_cli("--nproc", too_many, *FAST, "--out", tmp_path / "run"),
                      [f"--nproc {too_many} starts more processes than this machine's", "add --oversubscribe"])
    assert_user_error(run_cli("--nproc", "999", "--device", "cpu"), ["--nproc 999", "CPU cores"])
    assert not (tmp_path / "run").exists()
