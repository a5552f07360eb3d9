"""The course's Lab 9 comparisons in one table: init schemes, dropout and batch norm on a ReLU MLP.

    python examples/lab9.py                                   # 15 epochs on the best data available
    python examples/lab9.py --dataset mnist-sample --score-on ../shared/data/mnist-t10k

Every configuration trains with the same seed, data and settings; only the plugins differ.
Needs the relu, xavier, he, dropout, batchnorm and normal-init plugins installed.
"""

import json
import tempfile
from pathlib import Path

import click

from mnist_trainer.runner import Output, evaluate_run, select, train

CONFIGURATIONS = [
    ("relu", "normal-init"),
    ("relu", "xavier"),
    ("relu", "he"),
    ("relu", "xavier", "dropout"),
    ("relu", "he", "dropout"),
    ("relu", "xavier", "batchnorm"),
    ("relu", "he", "batchnorm"),
]


@click.command()
@click.option("--dataset", default="auto", show_default=True)
@click.option("--data-dir", default=None, help="MNIST-format IDX folder to train on.")
@click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--hidden", default="256,256", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--score-on", type=click.Path(exists=True, file_okay=False), default=None,
              help="Also score each trained model on this IDX folder's t10k files (e.g. the official test set).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def main(dataset, data_dir, epochs, batch_size, hidden, device, score_on, as_json):
    from mnist_trainer.settings import parse_hidden

    quiet = Output(say=lambda line: None, warn=lambda line: click.echo(f"warning: {line}", err=True))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for plugins in CONFIGURATIONS:
            settings, pipeline = select(plugins, [], epochs=epochs, batch_size=batch_size, hidden=parse_hidden(hidden),
                                        device=device, dataset=dataset, data_dir=data_dir)
            out = Path(folder, "-".join(plugins))
            summary = train(settings, pipeline, out, quiet)
            row = {"configuration": " + ".join(plugins), "dataset": summary["dataset"]["name"],
                   "test_accuracy": summary["final"]["test_accuracy"], "test_loss": summary["final"]["test_loss"],
                   "seconds": summary["seconds"]}
            if score_on:
                row["scored_accuracy"] = evaluate_run(out, "auto", score_on, device, quiet)["metrics"]["accuracy"]
            rows.append(row)
            click.echo(f"done: {row['configuration']}", err=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"Lab 9 on {rows[0]['dataset']}, {epochs} epochs, seed 777")
    header = f"{'configuration':<28} {'test acc':>8} {'test loss':>9}" + (f" {'scored acc':>10}" if score_on else "") + f" {'seconds':>7}"
    click.echo(header)
    for row in rows:
        scored = f" {row['scored_accuracy']:>10.4f}" if score_on else ""
        click.echo(f"{row['configuration']:<28} {row['test_accuracy']:>8.4f} {row['test_loss']:>9.4f}{scored} {row['seconds']:>7.1f}")


if __name__ == "__main__":
    main()
