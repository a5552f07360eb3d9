"""mnist-compare and mnist-plot: arms side by side on the same data and seeds, the files, the pictures."""

import csv
import json
import subprocess
import sys

import pytest

from mnist_trainer import cli, compare
from tests.test_cli import FAST, assert_user_error

SMALL = [arg for arg in FAST]  # synthetic:600, 2 epochs, batch 50, hidden 32,32, cpu


def run_compare(run_cli, *args):
    result = run_cli(*args, *SMALL, "--json", command=cli.compare)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result


def test_two_arms_with_the_same_plugins_and_seed_learn_identically(run_cli, tmp_path):
    comparison, result = run_compare(run_cli, "relu", "relu", "core", "--out", tmp_path / "cmp")
    first, second, core = comparison["arms"]
    assert (first["name"], second["name"], core["name"]) == ("relu", "relu#2", "core")
    rows = [compare.load(tmp_path / "cmp")[name][0] for name in ("relu", "relu#2", "core")]
    strip = lambda epochs: [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in epochs]  # noqa: E731
    assert strip(rows[0]) == strip(rows[1]) and strip(rows[0]) != strip(rows[2])
    assert "[2/3] training relu#2, seed 777" in result.stderr


def test_seeds_files_table_and_spread(run_cli, tmp_path):
    comparison, result = run_compare(run_cli, "relu", "core", "--seeds", "2", "--out", tmp_path / "cmp")
    assert comparison["seeds"] == [777, 778]
    relu = comparison["arms"][0]
    accuracies = [run["final_test_accuracy"] for run in relu["runs"]]
    assert relu["final_test_accuracy"]["mean"] == pytest.approx(sum(accuracies) / 2)
    assert relu["final_test_accuracy"]["std"] == pytest.approx(abs(accuracies[0] - accuracies[1]) / 2)
    for run in relu["runs"]:  # each arm and seed is an ordinary run record
        assert json.loads((tmp_path / "cmp" / "relu" / f"seed-{run['seed']}" / "config.json").read_text())["settings"]["seed"] == run["seed"]
    table = list(csv.DictReader((tmp_path / "cmp" / "comparison.csv").open()))
    assert [row["arm"] for row in table] == ["relu", "core"]
    assert float(table[0]["final_test_accuracy_mean"]) == pytest.approx(relu["final_test_accuracy"]["mean"])
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["arms"][0]["name"] == "relu"
    assert "relu" in result.stderr and "final test accuracy" in result.stderr  # the table (on stderr beside --json)


def test_scoring_on_another_test_set(run_cli, tmp_path):
    from tests.test_cli import SAMPLE

    comparison, _ = run_compare(run_cli, "relu", "--score-on", SAMPLE, "--out", tmp_path / "cmp")
    assert 0 <= comparison["arms"][0]["scored_accuracy"]["mean"] <= 1


@pytest.mark.parametrize("args, words", [
    ([], ["give at least one arm"]),
    (["relu+"], ["arm 'relu+' has an empty plugin name"]),
    (["rleu"], ["unknown plugin 'rleu'", "did you mean 'relu'?"]),
    (["relu", "--seeds", "x"], ["--seeds 'x'"]),
    (["relu", "-o", "dropout.p=0.5"], ["is for plugin 'dropout', which no arm selects"]),
])
def test_bad_comparisons_are_one_line(run_cli, tmp_path, args, words):
    assert_user_error(run_cli(*args, *SMALL, "--out", tmp_path / "cmp", command=cli.compare), words)
    assert not (tmp_path / "cmp").exists()


def test_options_apply_to_every_arm_that_selects_the_plugin(run_cli, tmp_path):
    comparison, _ = run_compare(run_cli, "relu", "relu+dropout", "-o", "dropout.p=0.5", "--out", tmp_path / "cmp")
    config = json.loads((tmp_path / "cmp" / "relu+dropout" / "seed-777" / "config.json").read_text())
    assert config["settings"]["options"]["dropout"] == {"p": 0.5}


def test_the_plots_show_one_labelled_line_per_arm(run_cli, tmp_path):
    from mnist_trainer import plots

    run_compare(run_cli, "relu", "core", "-p", "grad-stats", "--seeds", "2", "--out", tmp_path / "cmp")
    runs = compare.load(tmp_path / "cmp")
    loss, accuracy = plots.curves(runs).axes
    assert [line.get_label() for line in loss.get_lines()] == ["relu", "core"]  # by arm: -p plugins are in every arm
    assert (loss.get_xlabel(), loss.get_ylabel(), accuracy.get_ylabel()) == ("epoch", "training loss", "test accuracy")
    assert len(accuracy.collections) == 2  # a band for each arm's seed spread
    gradients = plots.gradients(runs).axes[0]
    assert len(gradients.get_lines()) == 2 and gradients.get_yscale() == "log" and gradients.get_xlabel().startswith("weight layer")
    from matplotlib.image import imread

    for name, size in (("curves.png", (420, 1100)), ("gradients.png", (420, 650))):
        assert imread(tmp_path / "cmp" / name).shape[:2] == size


def test_a_dozen_arms_get_a_dozen_distinct_lines():
    from mnist_trainer import plots

    runs = {f"arm{index}": [[{"epoch": 1, "train_loss": 1.0, "test_accuracy": 0.5}]] for index in range(12)}
    lines = plots.curves(runs).axes[0].get_lines()
    assert len({(line.get_color(), line.get_linestyle()) for line in lines}) == 12
    assert {line.get_linestyle() for line in lines[:8]} == {"-"}  # up to eight arms, as before: solid lines


def test_mnist_plot_draws_from_records_and_needs_matplotlib(run_cli, tmp_path):
    run_cli("--plugin", "relu", *FAST, "--out", tmp_path / "run")
    result = run_cli(tmp_path / "run", "--out", tmp_path / "curves.png", command=cli.plot)
    assert result.exit_code == 0, result.output
    from matplotlib.image import imread

    assert imread(tmp_path / "curves.png").shape[:2] == (420, 1100)
    assert_user_error(run_cli(tmp_path / "run", "--kind", "gradients", "--out", tmp_path / "g.png", command=cli.plot),
                      ["no gradient statistics", "-p grad-stats"])
    hidden = "import sys; sys.modules['matplotlib'] = None; from mnist_trainer.cli import plot; plot(sys.argv[1:])"
    out = subprocess.run([sys.executable, "-c", hidden, str(tmp_path / "run"), "--out", str(tmp_path / "x.png")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip() == "Error: mnist-plot needs matplotlib: pip install 'mnist-trainer[plot]'"


def test_without_matplotlib_a_comparison_still_works_and_says_how_to_get_plots(run_cli, tmp_path, monkeypatch):
    import mnist_trainer

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "mnist_trainer.plots", None)
    monkeypatch.delattr(mnist_trainer, "plots", raising=False)  # as if never imported: no matplotlib to import it with
    comparison, result = run_compare(run_cli, "relu", "--out", tmp_path / "cmp")
    assert "warning: no plots: pip install 'mnist-trainer[plot]' (matplotlib) for the plots" in result.stderr
    assert (tmp_path / "cmp" / "comparison.json").is_file() and not (tmp_path / "cmp" / "curves.png").exists()
