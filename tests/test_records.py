"""Run records are written atomically: a failed write leaves the previous file whole and no debris."""

import json

import pytest

from mnist_trainer import UserError
from mnist_trainer.records import RunFolder, atomic_write, default_out


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "config.json"
    atomic_write(target, lambda file: json.dump({"epoch": 1}, file))

    def breaks_halfway(file):
        file.write('{"epoch": 2, "trunc')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, breaks_halfway)
    assert json.loads(target.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_metrics_lines_accumulate_and_stay_parseable(tmp_path):
    folder = RunFolder.claim(tmp_path / "run")
    for epoch in (1, 2, 3):
        folder.append_metrics({"stage": "epoch", "epoch": epoch})
        lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == list(range(1, epoch + 1))


def test_default_folders_never_collide(tmp_path):
    first = default_out(("he", "batchnorm"), tmp_path)
    assert first.name.endswith("-batchnorm-he") and first.is_dir()  # claimed, not merely named
    second = default_out(("batchnorm", "he"), tmp_path)
    assert second != first and second.name.startswith(first.name)


def test_a_folder_holding_files_is_refused_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="already holds files"):
        RunFolder.claim(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
