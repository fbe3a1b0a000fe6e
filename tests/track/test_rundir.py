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


# ---------------------------------------------------------------- TensorBoard: steps and hparams


def events(run: RunDir, folder: str = "tensorboard"):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run.path / folder))
    acc.Reload()
    return acc


def session_hparams(acc) -> dict:
    """The hparams of a run's TensorBoard session, as the HPARAMS tab reads them: name ->
    (type, value)."""
    from tensorboard.plugins.hparams import metadata

    content = acc.PluginTagToContent("hparams")[metadata.SESSION_START_INFO_TAG]
    start = metadata.parse_session_start_info_plugin_data(content)
    return {
        k: (v.WhichOneof("kind"), getattr(v, v.WhichOneof("kind")))
        for k, v in start.hparams.items()
    }


STEPS = f"tensorboard/{rundir.STEPS_DIR}"  # the step events' own folder (a run to TensorBoard)


def step(n: int, loss: float) -> dict:
    return {"epoch": 1, "step": n, "batch": n, "batches": 40, "loss": loss, "lr": 0.1}


def test_log_step_writes_the_train_loss_at_the_optimizer_step(tmp_path):
    run = RunDir.create(tmp_path, "r")
    for n, loss in ((10, 2.0), (20, 1.5), (30, 1.25)):
        run.log_step(step(n, loss))
    run.log_epoch(epoch(1))
    run.close()
    points = events(run, STEPS).Scalars(rundir.STEP_LOSS_TAG)
    assert [(p.step, p.value) for p in points] == [(10, 2.0), (20, 1.5), (30, 1.25)]


CONFIG = {
    "recipe": "default",
    "optim": {"name": "sgd", "lr": 0.05, "betas": [0.9, 0.999], "eps": None, "lr_mult": {}},
    "train": {"epochs": 2, "channels_last": False},
    "augment": {"train": [{"op": "flip", "p": 0.5}]},
}


def test_log_hparams_writes_the_flattened_config_as_tensorboard_takes_it(tmp_path):
    run = logged_run(tmp_path, 1, 2)
    run = RunDir(run.path)
    summary = {"status": "completed", "best_val_acc": 0.75, "test_acc": None, "epochs_run": 2}
    run.log_hparams(CONFIG, summary)
    run.close()
    acc = events(run)
    assert session_hparams(acc) == {
        "recipe": ("string_value", "default"),
        "optim.name": ("string_value", "sgd"),
        "optim.lr": ("number_value", 0.05),
        "optim.betas": ("string_value", "[0.9, 0.999]"),  # lists, None and {} as text
        "optim.eps": ("string_value", "null"),
        "optim.lr_mult": ("string_value", "{}"),
        "train.epochs": ("number_value", 2.0),
        "train.channels_last": ("bool_value", False),
        "augment.train": ("string_value", '[{"op": "flip", "p": 0.5}]'),
    }
    # the final numbers beside them; a missing test score is left out, not written as 0
    assert [(p.step, p.value) for p in acc.Scalars("summary/best_val_acc")] == [(2, 0.75)]
    assert "summary/test_acc" not in acc.Tags()["scalars"]


def test_the_hparams_tab_compares_runs_by_their_configs(tmp_path):
    """TensorBoard's hparams plugin, over a logdir of two runs, builds one table: each run's
    config keys as columns, their metrics (per-epoch tags and summary/*) beside them."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import backend_context

    for lr, acc in ((0.1, 0.5), (0.01, 0.7)):
        run = RunDir.create(tmp_path, f"lr{lr}")
        run.log_epoch({**epoch(1), "val_acc": acc})
        config = {**CONFIG, "optim": {"name": "sgd", "lr": lr}}
        run.log_hparams(config, {"status": "completed", "best_val_acc": acc, "epochs_run": 1})
        run.close()
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path))
    hparams = backend_context.Context(
        base_plugin.TBContext(logdir=str(tmp_path), multiplexer=multiplexer, data_provider=provider)
    )
    request = context.RequestContext()
    experiment = hparams.experiment_from_metadata(
        request,
        "",
        True,
        hparams.hparams_metadata(request, ""),
        hparams.hparams_from_data_provider(request, "", None),
    )
    columns = {h.name: h for h in experiment.hparam_infos}
    assert {"optim.lr", "optim.name", "train.epochs", "augment.train"} <= columns.keys()
    assert {m.name.tag for m in experiment.metric_infos} >= {"Accuracy/val", "summary/best_val_acc"}


def test_resuming_drops_the_step_events_after_the_checkpoint(tmp_path):
    """A run that logged 3 epochs of 10 steps but whose checkpoint knows 2: the resumed run
    shows epochs 1-2 and steps 1-20 from before, and what it logs itself after them."""
    run = RunDir.create(tmp_path, "r")
    for n in (1, 2, 3):
        run.log_step(step(10 * n, 10.0 - n))
        run.log_epoch(epoch(n))
    run.close()
    resumed = RunDir.reopen(run.path, [epoch(1), epoch(2)])  # epoch(n)["step"] = 10 n
    resumed.log_step(step(30, 0.5))
    resumed.log_epoch({**epoch(3), "val_acc": 0.99})
    resumed.close()
    steps = events(resumed, STEPS).Scalars(rundir.STEP_LOSS_TAG)
    assert [(p.step, p.value) for p in steps] == [
        (10, 9.0),
        (20, 8.0),
        (30, 0.5),
    ]
    val = events(resumed).Scalars("Accuracy/val")
    assert [p.step for p in val] == [1, 2, 3]
    assert [p.value for p in val] == pytest.approx([epoch(1)["val_acc"], epoch(2)["val_acc"], 0.99])


def test_a_trained_run_has_step_losses_and_its_config_in_tensorboard(quick):
    from cnnlab.training.experiment import train

    result = train(quick("train.epochs=1", "optim.name=sgd"), quiet=True)
    acc = events(RunDir(result.path))
    steps = [p.step for p in events(RunDir(result.path), STEPS).Scalars(rundir.STEP_LOSS_TAG)]
    assert steps and steps[-1] == result.summary["steps"]  # the epoch's last step is logged
    hparams = session_hparams(acc)
    assert hparams["optim.name"] == ("string_value", "sgd")
    assert hparams["train.epochs"] == ("number_value", 1.0)
