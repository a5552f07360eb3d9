"""mnist-compare and mnist-plot: arms side by side on the same data and seeds, the files, the pictures."""

import csv
import json
import subprocess
import sys

import pytest

from mnist_trainer import cli, readback
from tests.test_cli import FAST, assert_user_error

# synthetic:600, 2 epochs, batch 50, hidden 16, cpu
SMALL = ["16" if flag == "--hidden" else arg for flag, arg in zip([None, *FAST], FAST)]


def run_compare(run_cli, *args):
    result = run_cli(*args, *SMALL, "--json", command=cli.compare)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result


def test_two_arms_with_the_same_plugins_and_seed_learn_identically(run_cli, tmp_path):
    comparison, result = run_compare(run_cli, "relu", "relu", "core", "--out", tmp_path / "cmp")
    first, second, core = comparison["arms"]
    assert (first["name"], second["name"], core["name"]) == ("relu", "relu#2", "core")
    rows = [readback.load([tmp_path / "cmp"])[name][0] for name in ("relu", "relu#2", "core")]
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
        config = json.loads((tmp_path / "cmp" / "relu" / f"seed-{run['seed']}" / "config.json").read_text())
        assert config["settings"]["seed"] == run["seed"]
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
    (["rleu"], ["arm 'rleu': unknown plugin 'rleu'", "did you mean 'relu'?"]),
    (["relu", "--seeds", "x"], ["--seeds 'x'"]),
    (["relu", "--seeds", "0"], ["--seeds 0: a count is 1 to 1000"]),
    (["relu", "--seeds", "12345678901234567890"], ["--seeds 12345678901234567890: a count is 1 to 1000", "--seed S"]),
    (["relu", "--seeds", "3,18446744073709551615"],
     ["seed 18446744073709551615 is not a whole number from 0 to 9223372036854775806"]),
    (["relu", "--seeds", "5,6,5"], ["seed 5 is given twice"]),
    (["relu", "--seeds", "2", "--seed", "9223372036854775806"],
     ["--seeds 2 from --seed 9223372036854775806 would pass"]),
    (["relu", "-o", "dropout.p=0.5"], ["is for plugin 'dropout', which no arm selects"]),
    (["relu", "--batch-size", "5000"], ["--batch-size 5000 is larger than the 600 training images"]),
])
def test_bad_comparisons_are_one_line(run_cli, tmp_path, args, words):
    assert_user_error(run_cli(*SMALL, *args, "--out", tmp_path / "cmp", command=cli.compare), words)
    assert not (tmp_path / "cmp").exists()


def test_options_apply_to_every_arm_that_selects_the_plugin(run_cli, tmp_path):
    comparison, _ = run_compare(run_cli, "relu", "relu+dropout", "-o", "dropout.p=0.5", "--out", tmp_path / "cmp")
    config = json.loads((tmp_path / "cmp" / "relu+dropout" / "seed-777" / "config.json").read_text())
    assert config["settings"]["options"]["dropout"] == {"p": 0.5}


def test_the_plots_show_one_labelled_line_per_arm(run_cli, tmp_path):
    from mnist_trainer import plots

    run_compare(run_cli, "relu", "core", "-p", "grad-stats", "--seeds", "2", "--out", tmp_path / "cmp")
    runs = readback.load([tmp_path / "cmp"])
    loss, accuracy = plots.curves(runs).axes
    assert [line.get_label() for line in loss.get_lines()] == ["relu", "core"]  # by arm: -p plugins are in every arm
    assert (loss.get_xlabel(), loss.get_ylabel(), accuracy.get_ylabel()) == ("epoch", "training loss", "test accuracy")
    assert len(accuracy.collections) == 2  # a band for each arm's seed spread
    gradients = plots.gradients(runs).axes[0]
    assert (len(gradients.get_lines()) == 2 and gradients.get_yscale() == "log"
            and gradients.get_xlabel().startswith("weight layer"))
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
    assert (out.returncode == 2
            and out.stderr.strip() == "Error: mnist-plot needs matplotlib: pip install 'mnist-trainer[plot]'")


def test_without_matplotlib_a_comparison_still_works_and_says_how_to_get_plots(run_cli, tmp_path, monkeypatch):
    import mnist_trainer

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "mnist_trainer.plots", None)
    monkeypatch.delattr(mnist_trainer, "plots", raising=False)  # as if never imported: no matplotlib to import it with
    comparison, result = run_compare(run_cli, "relu", "--out", tmp_path / "cmp")
    assert "warning: no plots: pip install 'mnist-trainer[plot]' (matplotlib) for the plots" in result.stderr
    assert (tmp_path / "cmp" / "comparison.json").is_file() and not (tmp_path / "cmp" / "curves.png").exists()


TROUBLE = """
import attrs, torch
from mnist_trainer import Metric, choice, hookimpl, option, options_hook

@attrs.frozen
class TroubleOptions:
    what: str = option("none", converter=choice("none", "fail", "nan", "stop"), help="none, fail, nan or stop")
    at: int = option(1, converter=int, help="the epoch it happens in")
    seed: int = option(-1, converter=int, help="the seed it happens with (-1: any)")

mnist_trainer_options = options_hook(TroubleOptions)

def due(run, what):
    options = run.settings.options(TroubleOptions)
    return options.what == what and run.epoch == options.at and options.seed in (-1, run.settings.seed)

@hookimpl
def mnist_trainer_epoch_start(run):
    if due(run, "fail"):
        raise RuntimeError("trouble as asked")
    if due(run, "nan"):
        with torch.no_grad():
            for parameter in run.network.parameters():
                parameter.fill_(float("nan"))

@hookimpl
def mnist_trainer_epoch_end(run):
    if due(run, "stop"):
        run.stop(f"stopped at epoch {run.epoch} as asked")

@hookimpl
def mnist_trainer_metrics(settings):
    def top2(logits, labels):
        return (logits.topk(2, dim=1).indices == labels[:, None]).any(dim=1).float().mean()
    return [Metric("top2", top2)]
"""


@pytest.fixture
def trouble(fake_plugin):
    """A plugin that fails, diverges or stops at a chosen epoch and seed (its options), and adds a top2 metric."""
    return fake_plugin("trouble", TROUBLE)


def epoch_rows(folder):
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in readback.epochs(folder)]


def test_arms_that_fail_diverge_or_stop_are_recorded_and_the_others_train(run_cli, tmp_path, trouble):
    arms = ["relu", "relu+trouble[what=fail,at=1]", "relu+trouble[what=nan,at=1]",
            "relu+trouble[what=fail,at=2,seed=778]", "relu+trouble[what=nan,at=2]", "relu+trouble[what=stop,at=1]"]
    comparison, result = run_compare(run_cli, *arms, "--seeds", "2", "--out", tmp_path / "cmp")
    statuses = {arm["name"]: arm["status"] for arm in comparison["arms"]}
    assert statuses == {"relu": "completed", arms[1]: "failed", arms[2]: "diverged",
                        arms[3]: "777 completed, 778 failed", arms[4]: "diverged", arms[5]: "stopped"}
    by_name = {arm["name"]: arm for arm in comparison["arms"]}
    assert [run["epochs"] for run in by_name[arms[3]]["runs"]] == [2, 1] and by_name[arms[4]]["runs"][0]["epochs"] == 1
    for name in arms[1:3]:  # no finished epoch: listed, with a status and reason, without metrics
        assert "final_test_accuracy" not in by_name[name] and by_name[name]["runs"][0]["epochs"] == 0
    assert "trouble as asked" in by_name[arms[1]]["runs"][0]["reason"]
    assert "failed in mnist_trainer_epoch_start" in by_name[arms[1]]["runs"][1]["reason"]
    assert by_name[arms[5]]["runs"][0]["reason"] == "stopped at epoch 1 as asked"
    table = {row["arm"]: row for row in csv.DictReader((tmp_path / "cmp" / "comparison.csv").open())}
    assert {name: row["status"] for name, row in table.items()} == statuses
    assert table[arms[1]]["final_test_accuracy_mean"] == "" and float(table["relu"]["final_test_accuracy_mean"]) > 0
    lines = result.stderr.splitlines()  # the table, beside --json
    assert next(line for line in lines if line.startswith(arms[1])).endswith("failed")
    assert f"warning: {arms[2]}, seed 777 diverged:" in result.stderr
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["arms"][3]["runs"][1]["status"] == "failed"


def test_every_metric_counts_best_by_its_direction(run_cli, tmp_path, trouble):
    comparison, result = run_compare(run_cli, "relu+trouble", "--seeds", "2", "--out", tmp_path / "cmp")
    arm = comparison["arms"][0]
    for run in arm["runs"]:
        rows = epoch_rows(tmp_path / "cmp" / run["out"])
        assert run["final_test_top2"] == rows[-1]["test_top2"]
        assert run["best_test_top2"] == max(r["test_top2"] for r in rows)
        assert run["best_test_loss"] == min(r["test_loss"] for r in rows)
        assert run["best_test_accuracy"] == max(r["test_accuracy"] for r in rows)
    assert arm["best_test_top2"]["mean"] == pytest.approx(sum(r["best_test_top2"] for r in arm["runs"]) / 2)
    header = next(csv.reader((tmp_path / "cmp" / "comparison.csv").open()))
    assert {"final_test_top2_mean", "best_test_top2_std", "best_test_loss_mean"} <= set(header)
    assert "final test top2" in result.stderr and "best test top2" in result.stderr


def test_seeds_that_stop_at_different_epochs_are_summarised_from_their_own_last_epoch(run_cli, tmp_path, trouble):
    comparison, _ = run_compare(run_cli, "relu+trouble[what=stop,at=1,seed=778]", "--seeds", "2",
                                "--out", tmp_path / "cmp")
    arm = comparison["arms"][0]
    assert [run["epochs"] for run in arm["runs"]] == [2, 1] and arm["status"] == "777 completed, 778 stopped"
    finals = [epoch_rows(tmp_path / "cmp" / run["out"])[-1]["test_accuracy"] for run in arm["runs"]]
    assert arm["final_test_accuracy"]["mean"] == pytest.approx(sum(finals) / 2)
    from mnist_trainer import plots

    accuracy = plots.curves(readback.load([tmp_path / "cmp"])).axes[1].get_lines()[0]
    assert list(accuracy.get_xdata()) == [1, 2] and accuracy.get_ydata()[1] == pytest.approx(finals[0])


def test_hidden_applies_to_the_arms_built_on_the_core_mlp_and_says_so(run_cli, tmp_path):
    args = ["relu", "cnn[channels=2]+relu", *SMALL, "--hidden", "8", "--epochs", "1", "--out", tmp_path / "cmp"]
    result = run_cli(*args, command=cli.compare)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("--hidden")]
    assert notes == ["--hidden 8 applies to relu (the core's MLP), not to cnn[channels=2]+relu (a model plugin's "
                     "network)"]
    hidden = {arm: json.loads((tmp_path / "cmp" / arm / "seed-777" / "config.json").read_text())["settings"]["hidden"]
              for arm in ("relu", "cnn_channels=2_+relu")}
    assert hidden == {"relu": [8], "cnn_channels=2_+relu": None}
    assert_user_error(run_cli("cnn+relu", *SMALL, "--out", tmp_path / "cnn", command=cli.compare),
                      ["--hidden sets the widths of the core's MLP, and every arm's model plugin builds its own"])


def test_each_arm_carries_its_own_options_over_o(run_cli, tmp_path):
    arms = ["relu+sgd", "relu+sgd[momentum=0]", "relu+sgd[momentum=0.5,nesterov=true]"]
    comparison, result = run_compare(run_cli, *arms, "-o", "sgd.weight_decay=0.001", "-o", "sgd.momentum=0.25",
                                     "--out", tmp_path / "cmp")
    assert [arm["name"] for arm in comparison["arms"]] == arms
    options = [json.loads((tmp_path / "cmp" / arm["folder"] / "seed-777" / "config.json").read_text())["settings"]
               ["options"]["sgd"] for arm in comparison["arms"]]
    assert [{key: arm[key] for key in ("momentum", "nesterov", "weight_decay")} for arm in options] == [
        {"momentum": 0.25, "nesterov": False, "weight_decay": 0.001},
        {"momentum": 0.0, "nesterov": False, "weight_decay": 0.001},
        {"momentum": 0.5, "nesterov": True, "weight_decay": 0.001}]
    assert epoch_rows(tmp_path / "cmp" / comparison["arms"][0]["folder"] / "seed-777") != \
        epoch_rows(tmp_path / "cmp" / comparison["arms"][1]["folder"] / "seed-777")
    lines = result.stderr.splitlines()
    header = next(index for index, line in enumerate(lines) if line.startswith("arm "))
    assert [line.split("  ")[0] for line in lines[header + 1:header + 4]] == arms  # the table names them as given


@pytest.mark.parametrize("arm, words", [
    ("relu+sgd[momentum=0.9", ["arm 'relu+sgd[momentum=0.9' has unbalanced or nested brackets"]),
    ("relu+sgd[momentum]", ["arm 'relu+sgd[momentum]': cannot read sgd[momentum]", "sgd[KEY=VALUE,KEY=VALUE]"]),
    ("relu+sgd[]x", ["arm 'relu+sgd[]x' is malformed at 'sgd[]x'"]),
    ("relu+sgd[bogus=1]", ["arm 'relu+sgd[bogus=1]': unknown option sgd.bogus", "sgd.momentum"]),
    ("relu+sgd[momentum=2]", ["arm 'relu+sgd[momentum=2]': invalid value", "momentum=2"]),
    ("relu+sgd[momentum=0.1,momentum=0.2]", ["gives sgd's option momentum twice"]),
])
def test_a_bad_arm_option_is_one_line_naming_the_arm_before_any_training(run_cli, tmp_path, arm, words):
    assert_user_error(run_cli("relu", arm, *SMALL, "--out", tmp_path / "cmp", command=cli.compare), words)
    assert not (tmp_path / "cmp").exists()


def test_runs_are_recorded_relative_to_the_comparison_so_a_moved_one_still_plots(run_cli, tmp_path):
    comparison, _ = run_compare(run_cli, "relu", "--out", tmp_path / "cmp")
    assert comparison["arms"][0]["runs"][0]["out"] == "relu/seed-777"
    (tmp_path / "cmp").rename(tmp_path / "moved")
    result = run_cli(tmp_path / "moved", "--out", tmp_path / "c.png", command=cli.plot)
    assert result.exit_code == 0, result.output
    assert len(readback.load([tmp_path / "moved"])["relu"][0]) == 2
