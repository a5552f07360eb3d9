"""mnist-plot trusts nothing it reads: damaged, moved, odd or empty records are one line or drawn as they are."""

import errno
import json
import math
import os

import pytest

from mnist_trainer import cli, plots, readback
from tests.test_cli import assert_user_error


def record(folder, rows, plugins=("relu",)):
    """A run record as mnist-run leaves it, as far as mnist-plot reads it: config.json's plugins, the epoch rows."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"settings": {"plugins": list(plugins)}}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"stage": "epoch", **row}) + "\n" for row in rows))
    return folder


def rows(*values):
    """Epoch rows from (train_loss, test_accuracy) pairs, epochs numbered from 1."""
    return [{"epoch": epoch, "train_loss": loss, "test_accuracy": accuracy}
            for epoch, (loss, accuracy) in enumerate(values, 1)]


def comparison(folder, arms):
    """A comparison.json naming each arm's run folders relative to the comparison, as mnist-compare writes it."""
    (folder / "comparison.json").write_text(json.dumps({"arms": [
        {"name": name, "runs": [{"seed": 777 + i, "out": out, "status": "completed"} for i, out in enumerate(outs)]}
        for name, outs in arms.items()]}))
    return folder


def lines(figure):
    return [{line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in axes.get_lines()}
            for axes in figure.axes]


def plot(run_cli, *args):
    return run_cli(*args, command=cli.plot)


def test_nan_and_inf_as_records_hold_them_are_left_out_of_the_curves(run_cli, tmp_path):
    run = record(tmp_path / "run", rows((1.0, 0.5), ("inf", 0.6), (0.25, "nan"), ("-inf", 0.7)))
    assert [readback.number(v) for v in ("inf", "-inf", 3, True, "x")] == [math.inf, -math.inf, 3.0, None, None]
    result = plot(run_cli, run, "--out", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").stat().st_size > 10_000
    loss, accuracy = lines(plots.curves(readback.load([run])))
    assert loss == {"relu": ([1, 3], [1.0, 0.25])} and accuracy == {"relu": ([1, 2, 4], [0.5, 0.6, 0.7])}


def test_gradient_statistics_recorded_as_nan_are_left_out(tmp_path):
    run = record(tmp_path / "run", [{"epoch": 1, "grad_rms_1": "nan", "grad_rms_2": 0.01, "grad_rms_3": 0.1}])
    assert lines(plots.gradients(readback.load([run]))) == [{"relu": ([2, 3], [0.01, 0.1])}]


def test_seeds_that_end_at_different_epochs_average_the_seeds_that_reached_each_epoch(tmp_path):
    full, stopped = record(tmp_path / "cmp" / "a" / "s1", rows((1.0, 0.5), (0.5, 0.7), (0.25, 0.9))), \
        record(tmp_path / "cmp" / "a" / "s2", rows((3.0, 0.3)))
    runs = readback.load([comparison(tmp_path / "cmp", {"relu": ["a/s1", "a/s2"]})])
    figure = plots.curves(runs)
    loss, accuracy = lines(figure)
    assert loss == {"relu": ([1, 2, 3], [2.0, 0.5, 0.25])} and accuracy == {"relu": ([1, 2, 3], [0.4, 0.7, 0.9])}
    band = figure.axes[1].collections[0].get_paths()[0].vertices  # the spread: 0.3 to 0.5 at epoch 1, nothing later
    assert {tuple(point) for point in band if point[0] == 1} >= {(1.0, 0.3), (1.0, 0.5)}
    assert full.is_dir() and stopped.is_dir()


@pytest.mark.parametrize("damage, words", [
    ("half-written last line", ["metrics.jsonl line 3 is not JSON", "half-written"]),
    ("junk after comparison.json", ["comparison.json is not readable JSON", "Extra data"]),
    ("missing config.json", ["config.json is missing"]),
    ("neither a run nor a comparison", ["is neither a run (metrics.jsonl) nor a comparison (comparison.json)"]),
    ("a comparison without arms", ["comparison.json has no list of arms"]),
    ("a comparison whose run is gone", ["names the run relu/gone, which is not in"]),
    ("a row that is not a record's", ["metrics.jsonl line 1 is not a row mnist-trainer writes"]),
])
def test_damaged_records_are_one_line_naming_the_file(run_cli, tmp_path, damage, words):
    run = record(tmp_path / "cmp" / "relu" / "seed-777", rows((1.0, 0.5), (0.5, 0.6)))
    target = comparison(tmp_path / "cmp", {"relu": ["relu/seed-777"]})
    if damage == "half-written last line":
        with (run / "metrics.jsonl").open("a") as file:
            file.write('{"stage": "epoch", "epo')
    elif damage == "junk after comparison.json":
        with (target / "comparison.json").open("a") as file:
            file.write("\x00junk")
    elif damage == "missing config.json":
        (run / "config.json").unlink()
        target = run
    elif damage == "neither a run nor a comparison":
        target = tmp_path / "cmp" / "relu"
    elif damage == "a comparison without arms":
        (target / "comparison.json").write_text('{"arms": 3}')
    elif damage == "a comparison whose run is gone":
        comparison(target, {"relu": ["relu/seed-777", "relu/gone"]})
    else:
        (run / "metrics.jsonl").write_text("[1, 2]\n")
    result = plot(run_cli, target, "--out", tmp_path / "c.png")
    assert_user_error(result, words)
    assert not (tmp_path / "c.png").exists()


def test_gradients_without_statistics_and_an_empty_run_are_one_line(run_cli, tmp_path):
    trained = record(tmp_path / "trained", rows((1.0, 0.5)))
    empty = record(tmp_path / "empty", [])  # a run that ended before its first epoch
    for records in ([trained], [empty], [trained, empty]):
        assert_user_error(plot(run_cli, *records, "--kind", "gradients", "--out", tmp_path / "g.png"),
                          ["no gradient statistics in these records", "-p grad-stats"])
    assert_user_error(plot(run_cli, empty, "--out", tmp_path / "c.png"), ["no finished epoch in these records"])
    assert plot(run_cli, trained, empty, "--out", tmp_path / "c.png").exit_code == 0  # the empty one draws no line
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("out, words", [
    ("x.xyz", ["--out", "x.xyz names a format matplotlib cannot write (.xyz)", "png", "pdf", "svg"]),
    ("curves", ["curves has no extension", "end it with one of", "png"]),
    ("curves.png/", ["is a directory"]),
    ("a-file/curves.png", ["cannot write", "Not a directory"]),
    ("no-such-folder/curves.png", ["cannot write", "No such file or directory"]),
])
def test_an_output_it_cannot_write_is_one_line_before_drawing(run_cli, tmp_path, out, words):
    run = record(tmp_path / "run", rows((1.0, 0.5)))
    (tmp_path / "curves.png").mkdir()
    (tmp_path / "a-file").write_text("in the way")
    assert_user_error(plot(run_cli, run, "--out", tmp_path / out.rstrip("/")), words)
    assert not (tmp_path / "curves").exists() and not (tmp_path / "x.xyz").exists()
    if out.endswith(("xyz", "curves")):  # refused before the records are read: a damaged one is not what is said
        (run / "config.json").unlink()
        assert_user_error(plot(run_cli, run, "--out", tmp_path / out), words)


def test_a_full_disk_leaves_no_half_written_picture(run_cli, tmp_path, monkeypatch):
    run = record(tmp_path / "run", rows((1.0, 0.5)))

    def full(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert_user_error(plot(run_cli, run, "--out", tmp_path / "c.pdf"), [f"cannot write {tmp_path / 'c.pdf'}",
                                                                          "No space left on device"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]


def test_records_with_the_same_plugins_are_each_their_own_line(run_cli, tmp_path):
    first, second = record(tmp_path / "a" / "run", rows((1.0, 0.5))), record(tmp_path / "b" / "other", rows((2.0, 0.4)))
    third = record(tmp_path / "c" / "run", rows((3.0, 0.3)))
    labels = list(readback.load([first, second, third, first]))
    assert labels == [f"relu ({first})", "relu (other)", f"relu ({third})", f"relu ({first}) #2"]
    one, two = (tmp_path / "cmp1", tmp_path / "cmp2")
    for folder in (one, two):
        record(folder / "relu" / "seed-777", rows((1.0, 0.5)))
        comparison(folder, {"relu": ["relu/seed-777"]})
    assert list(readback.load([one, two, second])) == ["relu (cmp1)", "relu (cmp2)", "relu (other)"]
    assert plot(run_cli, one, two, "--out", tmp_path / "c.svg").exit_code == 0
    loss, _ = lines(plots.curves(readback.load([one, two])))
    assert list(loss) == ["relu (cmp1)", "relu (cmp2)"]
