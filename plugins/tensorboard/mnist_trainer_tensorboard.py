"""Every epoch's metrics as TensorBoard scalars, written into the run folder, and the pipeline as text.

Each numeric column of the epoch row becomes a scalar at step = epoch: the losses and
accuracies, ``lr``, and with grad-stats each layer's gradient and weight RMS. The event
files go in the run folder itself, so ``tensorboard --logdir runs`` lists every run, and
every arm of a comparison, by its folder's name (its plugin set).
"""

from pathlib import Path

import attrs

from mnist_trainer import hookimpl, option, options_hook, state_hook


@attrs.frozen
class TensorboardOptions:
    logdir: str = option("", converter=str, help="a folder for the event files; empty: the run folder")


class Writer:
    """The run's event-file writer: an open file, so nothing for a checkpoint (a resumed run opens it again)."""

    def __init__(self):
        self.writer = None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


mnist_trainer_options = options_hook(TensorboardOptions)
mnist_trainer_state = state_hook(Writer)


@hookimpl
def mnist_trainer_run_start(run):
    from torch.utils.tensorboard import SummaryWriter

    logdir = run.settings.options(TensorboardOptions).logdir or run.folder
    writer = run.state(Writer).writer = SummaryWriter(log_dir=str(Path(logdir)))
    writer.add_text("pipeline", "  \n".join(f"**{stage}** {text}" for stage, text in run.pipeline))


@hookimpl(trylast=True)  # after the plugins that add columns to the row (grad-stats)
def mnist_trainer_epoch_end(run):
    writer = run.state(Writer).writer
    for key, value in run.row.items():
        if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(key, value, run.epoch)
    writer.flush()


@hookimpl
def mnist_trainer_run_end(run):
    state = run.state(Writer)
    if state.writer is not None:
        state.writer.close()
        state.writer = None
