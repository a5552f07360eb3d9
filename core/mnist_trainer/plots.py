"""The comparison's pictures, drawn with matplotlib without a display (needs ``mnist-trainer[plot]``).

Each function takes every arm's per-seed epoch rows (``{arm: [rows of seed 1, ...]}``, as records hold
them) and returns a `matplotlib.figure.Figure`, so tests can look at the lines themselves. Values a
record holds as ``"nan"`` or ``"inf"`` are not drawn: a curve has no finite point there.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from . import records
from .errors import UserError
from .readback import Seeds, finite

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray")
STYLES = ("-", "--", ":")  # past eight arms the colours come round again, dashed, then dotted


def look(index: int) -> dict:
    """The colour and line style of the arm at `index`: distinct for the first 24 arms."""
    return {"color": COLOURS[index % len(COLOURS)], "linestyle": STYLES[index // len(COLOURS) % len(STYLES)]}


def per_epoch(seeds: Seeds, key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """The epochs, and per epoch the mean, least and greatest finite `key` over the seeds that recorded it.

    Seeds may end at different epochs (one stopped early, or diverged): each epoch averages the
    seeds that reached it, so a curve's last points may rest on fewer seeds than its first.
    """
    values: dict[int, list[float]] = {}
    for rows in seeds:
        for row in rows:
            value = finite(row.get(key))
            if value is not None:
                values.setdefault(row["epoch"], []).append(value)
    epochs = sorted(values)
    return (epochs, [sum(values[e]) / len(values[e]) for e in epochs], [min(values[e]) for e in epochs],
            [max(values[e]) for e in epochs])


def curves(runs: dict[str, Seeds]) -> Figure | None:
    """Training loss and test accuracy per epoch: one line per arm (the mean over seeds, per epoch over the seeds that
    reached it), a band for the spread; None when no arm has a finished epoch."""
    if not any(rows for seeds in runs.values() for rows in seeds):
        return None
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    loss, accuracy = figure.subplots(1, 2)
    for index, (arm, seeds) in enumerate(runs.items()):
        colour = look(index)["color"]
        for axes, key in ((loss, "train_loss"), (accuracy, "test_accuracy")):
            epochs, mean, low, high = per_epoch(seeds, key)
            if not epochs:
                continue
            axes.plot(epochs, mean, label=arm, **look(index), marker="o", markersize=3)
            if sum(1 for rows in seeds if rows) > 1:
                axes.fill_between(epochs, low, high, color=colour, alpha=0.2)
    loss.set(xlabel="epoch", ylabel="training loss", yscale="log", title="training loss")
    accuracy.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    accuracy.legend(fontsize="small")
    return figure


def gradients(runs: dict[str, Seeds]) -> Figure | None:
    """Each weight layer's gradient RMS in each seed's last epoch (mean over seeds), input to output, on a log axis;
    None when no arm recorded gradient statistics (the grad-stats plugin)."""
    recorded = {arm: means for arm, seeds in runs.items() if (means := _last_gradients(seeds))}
    if not recorded:
        return None
    figure = Figure(figsize=(6.5, 4.2), layout="constrained")
    axes = figure.subplots()
    for index, (arm, means) in enumerate(recorded.items()):
        axes.plot(list(means), list(means.values()), label=arm, **look(index), marker="o")
    axes.set(xlabel="weight layer (1 = input)", ylabel="gradient RMS", yscale="log",
             title="gradient reaching each layer")
    axes.set_xticks(sorted({layer for means in recorded.values() for layer in means}))
    axes.legend(fontsize="small")
    return figure


def _last_gradients(seeds: Seeds) -> dict[int, float]:
    """Layer -> mean finite gradient RMS over the seeds' last rows."""
    values: dict[int, list[float]] = {}
    for rows in seeds:
        for key, value in (rows[-1].items() if rows else ()):
            layer = key.removeprefix("grad_rms_")
            if key.startswith("grad_rms_") and layer.isdigit() and finite(value) is not None:
                values.setdefault(int(layer), []).append(finite(value))
    return {layer: sum(values[layer]) / len(values[layer]) for layer in sorted(values)}


def formats() -> list[str]:
    """The file formats matplotlib writes here, by extension."""
    return sorted(Figure().canvas.get_supported_filetypes())


def check_format(path: Path) -> str:
    """The format `path`'s extension names, refused in one line (listing those there are) before anything is drawn."""
    extension = Path(path).suffix.lower().removeprefix(".")
    if extension not in formats():
        said = "has no extension" if not extension else f"names a format matplotlib cannot write (.{extension})"
        raise UserError(f"--out {path} {said}; end it with one of: {', '.join(formats())} (e.g. curves.png)")
    return extension


def save(figure: Figure, path: Path) -> None:
    """Write `figure` in the format its extension names, at 100 dpi (a PNG's pixel size is its inch size times 100).

    Written to a temporary file and renamed into place: a full disk leaves no half-written picture.
    """
    extension = check_format(path)
    try:
        records.atomic_write(Path(path), lambda file: figure.savefig(file, format=extension, dpi=100), mode="wb")
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None
