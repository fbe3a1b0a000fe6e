"""RunDir: the run directory and the files written into it while training."""

import csv
import json
import re
import time

import pytest

from cnnlab.errors import ConfigError
from cnnlab.track import rundir
from cnnlab.track.rundir import RunDir


def epoch(n: int) -> dict:
    return {
        "epoch": n,
        "step": 10 * n,
        "lr": 0.1 / n,
        "train_loss": 2.0 / n,
        "train_acc": 0.5 + 0.1 * n,
        "val_loss": 2.5 / n,
        "val_acc": 0.4 + 0.1 * n,
        "seconds": 1.25,
    }


def logged_run(tmp_path, *epochs: int) -> RunDir:
    """A closed run directory after logging the given epochs."""
    run = RunDir.create(tmp_path, "r")
    try:
        for n in epochs:
            run.log_epoch(epoch(n))
    finally:
        run.close()
    return run


@pytest.fixture
def frozen_clock(monkeypatch):
    """Every run created in the same second."""
    monkeypatch.setattr(rundir, "run_stamp", lambda: "20240102-030405")


def test_create_makes_a_timestamped_directory_with_checkpoints(tmp_path):
    before = time.strftime("%Y%m%d-%H%M%S")
    run = RunDir.create(tmp_path / "runs", "digits-cnn")
    after = time.strftime("%Y%m%d-%H%M%S")
    assert run.path.parent == tmp_path / "runs"
    m = re.fullmatch(r"(\d{8}-\d{6})-digits-cnn", run.path.name)
    assert m and before <= m.group(1) <= after
    assert run.checkpoints == run.path / "checkpoints"
    assert run.checkpoints.is_dir()
    # otherwise empty; .lock says which process writes the run (see test_run_lock.py)
    assert sorted(p.name for p in run.path.iterdir()) == [".lock", "checkpoints"]


def test_create_makes_missing_parent_directories(tmp_path):
    run = RunDir.create(tmp_path / "a" / "b", "x")
    assert run.path.parent == tmp_path / "a" / "b" and run.checkpoints.is_dir()


def test_runs_created_in_the_same_second_never_collide(tmp_path, frozen_clock):
    runs = [RunDir.create(tmp_path, "same") for _ in range(3)]
    names = [r.path.name for r in runs]
    assert names == ["20240102-030405-same", "20240102-030405-same-2", "20240102-030405-same-3"]
    assert all(r.checkpoints.is_dir() for r in runs)


def test_an_existing_run_is_never_reused(tmp_path, frozen_clock):
    first = RunDir.create(tmp_path, "r")
    (first.path / "summary.json").write_text("{}")
    second = RunDir.create(tmp_path, "r")
    assert second.path != first.path
    assert (first.path / "summary.json").read_text() == "{}"


@pytest.mark.parametrize(
    "name,expected",
    [
        ("my run", "my_run"),
        ("a/b", "a_b"),
        ("../../etc", ".._.._etc"),
        ("lr=0.1, bs=64", "lr_0.1_bs_64"),
        ("/", "run"),
        ("resnet18+aug", "resnet18+aug"),
    ],
)
def test_names_are_sanitised_into_one_path_component(tmp_path, frozen_clock, name, expected):
    run = RunDir.create(tmp_path, name)
    assert run.path.parent == tmp_path
    assert run.path.name == f"20240102-030405-{expected}"
    assert " " not in run.path.name and "/" not in run.path.name


def test_run_dir_that_is_a_file_is_a_config_error(tmp_path):
    target = tmp_path / "runs"
    target.write_text("not a directory")
    with pytest.raises(ConfigError, match="run.dir") as e:
        RunDir.create(target, "x")
    assert str(target) in str(e.value)


def test_run_dir_under_a_file_is_a_config_error(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="run.dir"):
        RunDir.create(tmp_path / "f" / "runs", "x")


def test_log_epoch_appends_one_json_line_per_epoch(tmp_path):
    run = logged_run(tmp_path, 1, 2)
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [epoch(1), epoch(2)]


def test_log_epoch_writes_a_csv_with_one_header(tmp_path):
    run = logged_run(tmp_path, 1, 2, 3)
    text = (run.path / "metrics.csv").read_text()
    assert text.count("epoch,step,lr") == 1
    rows = list(csv.DictReader(text.splitlines()))
    assert list(rows[0]) == list(epoch(1))
    assert [{k: float(v) for k, v in r.items()} for r in rows] == [
        {k: float(v) for k, v in epoch(n).items()} for n in (1, 2, 3)
    ]


def test_csv_is_readable_while_the_run_is_still_going(tmp_path):
    run = RunDir.create(tmp_path, "r")
    try:
        run.log_epoch(epoch(1))
        rows = list(csv.DictReader((run.path / "metrics.csv").read_text().splitlines()))
        assert len(rows) == 1 and float(rows[0]["val_acc"]) == epoch(1)["val_acc"]
    finally:
        run.close()


def test_appending_to_an_existing_run_does_not_repeat_the_header(tmp_path):
    # A resumed run opens the same directory again and keeps appending.
    run = RunDir.create(tmp_path, "r")
    run.log_epoch(epoch(1))
    run.close()
    resumed = RunDir(run.path)
    resumed.log_epoch(epoch(2))
    resumed.close()
    text = (run.path / "metrics.csv").read_text()
    assert text.count("epoch,") == 1
    assert [r["epoch"] for r in csv.DictReader(text.splitlines())] == ["1", "2"]
    assert len((run.path / "metrics.jsonl").read_text().splitlines()) == 2


def test_log_epoch_writes_tensorboard_scalars_under_the_usual_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = logged_run(tmp_path, 1, 2)
    acc = EventAccumulator(str(run.path / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert tags == {"Loss/train", "Loss/val", "Accuracy/train", "Accuracy/val", "LR"}
    for tag, key in [
        ("Loss/train", "train_loss"),
        ("Loss/val", "val_loss"),
        ("Accuracy/train", "train_acc"),
        ("Accuracy/val", "val_acc"),
        ("LR", "lr"),
    ]:
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2]  # x axis: epochs
        assert [e.value for e in events] == pytest.approx([epoch(1)[key], epoch(2)[key]])


def test_write_summary_writes_valid_json(tmp_path):
    run = RunDir.create(tmp_path, "r")
    summary = {"status": "completed", "best_val_acc": 0.97, "diagnosis": [], "test_acc": None}
    run.write_summary(summary)
    assert json.loads((run.path / "summary.json").read_text()) == summary
    run.write_summary({**summary, "status": "failed"})  # overwrites
    assert json.loads((run.path / "summary.json").read_text())["status"] == "failed"
    assert sorted(p.name for p in run.path.iterdir()) == [".lock", "checkpoints", "summary.json"]


def test_failed_summary_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    run = RunDir.create(tmp_path, "r")
    run.write_summary({"status": "completed"})

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("cnnlab.atomic.os.fsync", disk_full)
    with pytest.raises(OSError):
        run.write_summary({"status": "failed", "best_val_acc": 0.5})
    assert json.loads((run.path / "summary.json").read_text()) == {"status": "completed"}
    assert sorted(p.name for p in run.path.iterdir()) == [".lock", "checkpoints", "summary.json"]


def test_write_text_writes_a_named_file(tmp_path):
    run = RunDir.create(tmp_path, "r")
    run.write_text("model.txt", "total params: 1\n")
    assert (run.path / "model.txt").read_text() == "total params: 1\n"
