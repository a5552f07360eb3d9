"""Every epoch's metrics as TensorBoard scalars, written into the run folder, and the pipeline as text.

Each numeric column of the epoch row becomes a scalar at step = epoch: the losses and
accuracies, ``lr``, and with grad-stats each layer's gradient and weight RMS. The event
files go in the run folder itself, so ``tensorboard --logdir runs`` lists every run, and
every arm of a comparison, by its folder's name (its plugin set).
"""

import weakref
from pathlib import Path

import attrs

from mnist_trainer import UserError, hookimpl, option, options_hook

NAME = "tensorboard"
_writers: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # a writer per run: an open file, not stash data


@attrs.frozen
class TensorboardOptions:
    logdir: str = option("", converter=str, help="a folder for the event files; empty: the run folder")


mnist_trainer_options = options_hook(TensorboardOptions)


@hookimpl
def mnist_trainer_run_start(run):
    from torch.utils.tensorboard import SummaryWriter

    logdir = run.settings.options(TensorboardOptions).logdir or run.folder
    if not logdir:
        raise UserError(f"-o {NAME}.logdir=DIR is needed for a run that has no folder")
    writer = _writers[run] = SummaryWriter(log_dir=str(Path(logdir)))
    writer.add_text("pipeline", "  \n".join(f"**{stage}** {text}" for stage, text in run.pipeline))


@hookimpl(trylast=True)  # after the plugins that add columns to the row (grad-stats)
def mnist_trainer_epoch_end(run):
    writer = _writers[run]
    for key, value in run.row.items():
        if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(key, value, run.epoch)
    writer.flush()


@hookimpl
def mnist_trainer_run_end(run):
    writer = _writers.pop(run, None)
    if writer is not None:
        writer.close()
