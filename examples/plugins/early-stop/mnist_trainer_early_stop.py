"""Early stopping: end the run once a metric stops improving, and keep the best epoch's weights.

Training past the best epoch only overfits; this watches one column of the epoch row,
stops the run after `patience` epochs without improvement, and at the end keeps the best
epoch's weights (``run.keep``), so the saved model.pt is that epoch's. By default it watches
the validation split's accuracy when the run holds one out (``--val``), since choosing an
epoch by the test split would make the test score optimistic; without one, the test loss.
It is a run-event plugin: it changes no stage of the pipeline. The best epoch so far is its
per-run state, so a resumed run remembers it.
"""

import attrs
from attrs.validators import ge

from mnist_trainer import PluginState, UserError, choice, hookimpl, number, option, options_hook, state_hook

NAME = "early-stop"
BOOKKEEPING = ("epoch", "lr", "eval_seconds", "seconds")  # columns of the row that are not metrics


@attrs.frozen
class EarlyStopOptions:
    metric: str = option("auto", converter=str,
                         help="a column of the epoch row, e.g. val_loss or test_accuracy; auto: val_accuracy "
                              "with --val, else test_loss")
    patience: int = option(3, converter=int, validator=ge(1), help="a whole number of epochs, 1 or more")
    min_delta: float = option(0.0, converter=number, validator=ge(0.0), help="a number, 0 or more")
    mode: str = option("auto", converter=choice("auto", "min", "max"),
                       help="auto, min or max (auto: min when the metric's name contains 'loss', else max)")


@attrs.define
class Best(PluginState):
    """The best epoch so far: its number, its value of the metric, and the weights evaluated then."""

    epoch: int | None = None
    value: float | None = None
    weights: dict | None = None


mnist_trainer_options = options_hook(EarlyStopOptions)
mnist_trainer_state = state_hook(Best)


def watched(run) -> str:
    """The column it watches: the option's, or for auto the validation accuracy when there is one, else the test
    loss."""
    metric = run.settings.options(EarlyStopOptions).metric
    if metric != "auto":
        return metric
    return "val_accuracy" if "val_accuracy" in run.columns else "test_loss"


def improves(value: float, best: float, metric: str, options: EarlyStopOptions) -> bool:
    """Whether `value` beats `best` by more than `min_delta`, in the metric's direction."""
    minimise = options.mode == "min" or (options.mode == "auto" and "loss" in metric)
    change = best - value if minimise else value - best
    return change > options.min_delta


@hookimpl
def mnist_trainer_run_start(run):
    metric = watched(run)
    metrics = [column for column in run.columns if column not in BOOKKEEPING]
    if metric not in metrics:
        raise UserError(f"-o {NAME}.metric={metric} is not a metric of the epoch row; "
                        f"choose one of: {', '.join(metrics)}")


@hookimpl
def mnist_trainer_epoch_end(run):
    options, best, metric = run.settings.options(EarlyStopOptions), run.state(Best), watched(run)
    value = run.row[metric]
    if best.epoch is None or improves(value, best.value, metric, options):
        best.epoch, best.value = run.epoch, value
        best.weights = {key: tensor.clone() for key, tensor in run.weights().items()}
    elif (run.epoch - best.epoch >= options.patience
          and run.epoch < run.settings.epochs):  # the last epoch ends it anyway
        run.stop(f"stopped early at epoch {run.epoch}, best epoch {best.epoch}")


@hookimpl
def mnist_trainer_run_end(run):
    best = run.state(Best)
    if best.epoch is None or run.status not in ("completed", "stopped"):
        return
    run.keep(best.epoch, best.weights)
    run.report(NAME, best_epoch=best.epoch, **{watched(run): best.value})
