"""The plugin contract, held where a user would meet it: options that survive the record, answers checked in one
place whether or not a record is written, handlers run in name order in a run and its resume."""

import json

import pytest

from mnist_trainer import UserError, cli, hookimpl, testing
from tests.conftest import console
from tests.test_cli import FAST, assert_user_error

TUPLE_MODEL = """
import attrs
from torch import nn
from mnist_trainer import Model, hookimpl, option, options_hook

def widths(value):
    {reader}

@attrs.frozen
class Options:
    widths: tuple = option((16,), converter=widths, help="comma-separated widths")

mnist_trainer_options = options_hook(Options)

@hookimpl
def mnist_trainer_model(options):
    def build(slots):
        layers, previous = [], 784
        for width in options.widths:
            layers += [nn.Linear(previous, width), slots.activation()]
            previous = width
        return nn.Sequential(*layers, nn.Linear(previous, 10))
    return Model(f"MLP {{options.widths}} -> {{{{activation}}}}", build, uses=("activation",))
"""
READS_TEXT_ONLY = "return tuple(int(part) for part in value.split(','))"  # a list from the record has no split
READS_BOTH = "return tuple(int(part) for part in (value.split(',') if isinstance(value, str) else value))"


def test_an_option_that_cannot_come_back_from_the_record_is_refused_before_any_folder(run_cli, fake_plugin, tmp_path):
    fake_plugin("widths", TUPLE_MODEL.format(reader=READS_TEXT_ONLY))
    out = tmp_path / "run"
    result = run_cli("--plugin", "widths", "-o", "widths.widths=8,4",
                     *[a for a in FAST if a not in ("--hidden", "32,32")], "--out", out)
    assert_user_error(result, ["plugin 'widths'", "do not survive the run record", "widths.widths",
                               "AttributeError: 'list' object has no attribute 'split'"])
    assert not out.exists()


def test_an_option_whose_converter_reads_the_record_resumes(run_cli, fake_plugin, tmp_path):
    fake_plugin("widths", TUPLE_MODEL.format(reader=READS_BOTH))
    fast = [a for a in FAST if a not in ("--hidden", "32,32")]
    out = tmp_path / "run"
    assert run_cli("--plugin", "widths", "-o", "widths.widths=8,4", *fast, "--out", out).exit_code == 0
    resumed = run_cli("--resume", out, "--epochs", "3")  # the options rebuilt from config.json alone
    assert resumed.exit_code == 0, resumed.output
    assert "MLP (8, 4)" in resumed.stdout
    evaluated = run_cli(out, "--dataset", "synthetic:600", "--device", "cpu", command=cli.evaluate)
    assert evaluated.exit_code == 0, evaluated.output


class BadRow:
    @hookimpl
    def mnist_trainer_columns(self, run):
        return ("weights",)

    @hookimpl
    def mnist_trainer_epoch_end(self, run):
        run.row["weights"] = run.network[0].linear.weight


class Innocent:
    @hookimpl
    def mnist_trainer_epoch_end(self, run):
        run.row.get("test_loss")


def test_a_bad_row_value_is_named_alone_under_the_kit_too():
    manager = testing.plugin_manager(badrow=BadRow(), innocent=Innocent())
    with pytest.raises(UserError) as raised:
        testing.fit(manager, testing.settings(hidden=(8,)))
    assert raised.value.message.startswith("plugin 'badrow' failed in mnist_trainer_epoch_end: TypeError: 'weights' = ")


ORDERED = """
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_columns(run):
    return {columns}

@hookimpl
def mnist_trainer_epoch_end(run):
    {body}
"""
WRITES = ORDERED.format(columns='("a",)', body='run.row["a"] = run.epoch * 10')
READS = ORDERED.format(columns='("b",)', body='run.row["b"] = run.row.get("a", -1)')
STOPS_AT_STEP = """
import os, signal
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_step_end(run, loss):
    if run.step == int(os.environ.get("STOP_AT_STEP", "-1")):
        os.kill(os.getpid(), signal.SIGKILL)
"""


def rows(out):
    return [{key: row[key] for key in ("epoch", "a", "b")}
            for row in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if row["stage"] == "epoch"]


def test_handlers_run_in_plugin_name_order_whatever_the_flags_and_across_a_resume(run_cli, fake_plugin, tmp_path):
    site = fake_plugin("a-writes", WRITES)
    fake_plugin("b-reads", READS)
    fake_plugin("stops", STOPS_AT_STEP)
    env = {"PYTHONPATH": str(site)}
    fast = [*FAST, "--epochs", "3"]
    for name, flags in {"ab": ["-p", "a-writes", "-p", "b-reads"], "ba": ["-p", "b-reads", "-p", "a-writes"]}.items():
        assert run_cli("-p", "stops", *flags, *fast, "--out", tmp_path / name).exit_code == 0
    killed = tmp_path / "killed"
    died = console("mnist-run", "-p", "stops", "-p", "b-reads", "-p", "a-writes", *fast, "--out", killed,
                   env={**env, "STOP_AT_STEP": "15"})
    assert died.returncode == -9
    assert run_cli("--resume", killed).exit_code == 0  # killed, so in a process of its own; its resume need not be
    expected = [{"epoch": epoch, "a": epoch * 10, "b": epoch * 10} for epoch in (1, 2, 3)]  # a's handler, then b's
    assert rows(tmp_path / "ab") == rows(tmp_path / "ba") == rows(killed) == expected


REPORTS_AT_START = """
from mnist_trainer import hookimpl

@hookimpl
def mnist_trainer_run_start(run):
    run.report("starts", resumed=run.resumed, epoch=run.epoch)
"""


def test_a_resumed_run_says_so_and_records_its_start_reports_once(run_cli, fake_plugin, tmp_path):
    fake_plugin("starts", REPORTS_AT_START)
    out = tmp_path / "run"
    assert run_cli("-p", "starts", *FAST, "--out", out).exit_code == 0
    resumed = run_cli("--resume", out, "--epochs", "3")
    assert resumed.exit_code == 0, resumed.output
    assert "starts       resumed=True  epoch=2" in resumed.stdout  # printed
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line for line in lines if line["stage"] == "starts"] == [{"stage": "starts", "resumed": False, "epoch": 0}]
    assert [line["epoch"] for line in lines if line["stage"] == "epoch"] == [1, 2, 3]


def test_rbm_pretraining_and_a_norm_are_refused_together_before_any_work(run_cli, tmp_path):
    out = tmp_path / "run"
    assert_user_error(run_cli("-p", "rbm-pretrain", "-p", "batchnorm", *FAST, "--out", out),
                      ["plugin 'rbm-pretrain' cannot initialise a network whose norm slot plugin 'batchnorm' fills"])
    assert not out.exists()


STRIDED_SHORTCUT = """
from torch import nn
from mnist_trainer import Model, hookimpl

@hookimpl
def mnist_trainer_model():
    def build(slots):
        return nn.Sequential(nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 4, 3, padding=1), slots.activation(),
                             nn.Conv2d(4, 8, 1, stride=2), nn.Flatten(), nn.Linear(8 * 14 * 14, 10))
    return Model("strided 1x1 shortcut", build, uses=("activation",), layout="channels_last")
"""


def test_channels_last_is_refused_where_onednn_trains_it_wrong_and_said_so(run_cli, fake_plugin, tmp_path):
    fake_plugin("shortcut", STRIDED_SHORTCUT)
    out = tmp_path / "run"
    fast = [a for a in FAST if a not in ("--hidden", "32,32")]
    result = run_cli("-p", "shortcut", *fast, "--epochs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    assert "layout       kept=contiguous  reason=a strided 1x1 Conv2d of 4 input channels" in result.stdout
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["stage"] == "layout" and lines[0]["kept"] == "contiguous"
    cnn = run_cli("-p", "cnn", "-o", "cnn.channels=4", *fast, "--epochs", "1", "--out", tmp_path / "cnn")
    assert cnn.exit_code == 0 and "layout " not in cnn.stdout  # 3x3 convolutions: channels-last, as cnn asks
