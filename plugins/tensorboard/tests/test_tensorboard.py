"""tensorboard alone: the event files hold every epoch's scalars at the right steps, read back by TensorBoard."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import mnist_trainer_tensorboard as tensorboard
from mnist_trainer import hookimpl, testing


class AddsAColumn:
    """Stands in for grad-stats: a plugin adding a column to the epoch row."""

    @hookimpl
    def mnist_trainer_columns(self, run):
        return ("grad_rms_1",)

    @hookimpl
    def mnist_trainer_epoch_end(self, run):
        run.row["grad_rms_1"] = 0.5 / run.epoch


def events(folder):
    reader = EventAccumulator(str(folder))
    reader.Reload()
    return reader


def test_every_epochs_metrics_are_scalars_at_their_epoch(mnist_manager, mnist_settings, mnist_data, tmp_path):
    settings = mnist_settings(tensorboard.TensorboardOptions(logdir=str(tmp_path / "tb")), epochs=3)
    run = testing.fit(mnist_manager(tensorboard, extra=AddsAColumn()), settings, mnist_data)
    reader = events(tmp_path / "tb")
    for key in ("test_accuracy", "test_loss", "train_loss", "lr", "grad_rms_1"):
        scalars = reader.Scalars(key)
        assert [s.step for s in scalars] == [1, 2, 3]
        assert [s.value for s in scalars] == pytest.approx([row[key] for row in run.history], rel=1e-6)
    assert "epoch" not in reader.Tags()["scalars"]
    assert reader.Tags()["tensors"] == ["pipeline/text_summary"]  # the pipeline, as text


def test_by_default_the_event_files_go_in_the_run_folder(mnist_manager, mnist_settings, mnist_data, tmp_path):
    testing.fit(mnist_manager(tensorboard), mnist_settings(epochs=2), mnist_data, out=tmp_path / "run")
    assert [s.step for s in events(tmp_path / "run").Scalars("test_accuracy")] == [1, 2]


def test_it_keeps_the_plugin_contract():
    assert "resumes bitwise" in [check.property for check in testing.check_plugin(tensorboard)]
