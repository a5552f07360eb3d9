"""The comparison's pictures, drawn with matplotlib without a display (needs ``mnist-trainer[plot]``).

Each function takes every arm's per-seed epoch rows (``{arm: [rows of seed 1, ...]}``) and
returns a `matplotlib.figure.Figure`, so tests can look at the lines themselves.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray")
STYLES = ("-", "--", ":")  # past eight arms the colours come round again, dashed, then dotted


def look(index: int) -> dict:
    """The colour and line style of the arm at `index`: distinct for the first 24 arms."""
    return {"color": COLOURS[index % len(COLOURS)], "linestyle": STYLES[index // len(COLOURS) % len(STYLES)]}


def curves(runs: dict[str, list[list[dict]]]) -> Figure:
    """Training loss and test accuracy per epoch: one line per arm (the mean over seeds), a band for the spread."""
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    loss, accuracy = figure.subplots(1, 2)
    for index, (arm, seeds) in enumerate(runs.items()):
        colour = look(index)["color"]
        epochs = [row["epoch"] for row in seeds[0]]
        for axes, key in ((loss, "train_loss"), (accuracy, "test_accuracy")):
            values = [[row[key] for row in rows] for rows in seeds]
            mean = [sum(column) / len(column) for column in zip(*values)]
            axes.plot(epochs, mean, label=arm, **look(index), marker="o", markersize=3)
            if len(seeds) > 1:
                axes.fill_between(epochs, [min(c) for c in zip(*values)], [max(c) for c in zip(*values)], color=colour, alpha=0.2)
    loss.set(xlabel="epoch", ylabel="training loss", yscale="log", title="training loss")
    accuracy.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    accuracy.legend(fontsize="small")
    return figure


def gradients(runs: dict[str, list[list[dict]]]) -> Figure | None:
    """Each weight layer's gradient RMS in the last epoch (mean over seeds), input to output, on a log axis;
    None when no arm recorded gradient statistics (the grad-stats plugin)."""
    recorded = {arm: seeds for arm, seeds in runs.items() if "grad_rms_1" in seeds[0][-1]}
    if not recorded:
        return None
    figure = Figure(figsize=(6.5, 4.2), layout="constrained")
    axes = figure.subplots()
    for index, (arm, seeds) in enumerate(recorded.items()):
        layers = sorted(int(key.rsplit("_", 1)[1]) for key in seeds[0][-1] if key.startswith("grad_rms_"))
        means = [sum(rows[-1][f"grad_rms_{layer}"] for rows in seeds) / len(seeds) for layer in layers]
        axes.plot(layers, means, label=arm, **look(index), marker="o")
    axes.set(xlabel="weight layer (1 = input)", ylabel="gradient RMS", yscale="log", title="gradient reaching each layer")
    axes.set_xticks(layers)
    axes.legend(fontsize="small")
    return figure


def save(figure: Figure, path: Path) -> None:
    """Write `figure` as a PNG at 100 dpi (so its pixel size is its inch size times 100)."""
    figure.savefig(path, dpi=100)
