"""End to end: a tiny real training through train(config), checked against the run-dir contract."""

import csv
import json

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab import models
from cnnlab.checkpoint import load_state, load_weights
from cnnlab.config import load_config
from cnnlab.errors import ConfigError, DataError
from cnnlab.track.rundir import RunDir
from cnnlab.training.experiment import train

METRIC_KEYS = {
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "seconds",
    "images_per_second",
}
SUMMARY_KEYS = {
    "status",
    "best_val_acc",
    "final_val_acc",
    "test_acc",
    "best_epoch",
    "epochs_run",
    "train_seconds",
    "images_per_second",
    "device",
    "versions",
    "diagnosis",
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One 3-epoch run shared by the contract tests below."""
    root = tmp_path_factory.mktemp("runs")
    config = load_config(overrides=["train.epochs=3", "model.width=8", f"run.dir={root}"])
    return config, train(config)


@pytest.mark.slow
def test_run_directory_holds_every_contract_file(finished):
    _, result = finished
    path = result.path
    assert path.parent.name == "runs" or path.parent.exists()
    assert path.name.endswith("-digits-cnn") and len(path.name.split("-")[0]) == 8
    for name in (
        "config.yaml",
        "summary.json",
        "metrics.jsonl",
        "metrics.csv",
        "model.txt",
        "log.txt",
        "checkpoints/best.safetensors",
        "checkpoints/last.ckpt",
    ):
        assert (path / name).is_file(), name
    assert list((path / "tensorboard").iterdir())
    assert not list(path.rglob(".*.tmp-*"))  # no temp files left behind


def test_config_yaml_is_the_fully_resolved_config(finished):
    config, result = finished
    assert load_config([result.path / "config.yaml"]) == config
    written = yaml.safe_load((result.path / "config.yaml").read_text())
    assert written["optim"]["lr"] == config.optim.lr and "early_stopping" in written["train"]


def test_summary_and_metrics_agree(finished):
    _, result = finished
    summary = json.loads((result.path / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary == result.summary
    assert summary["status"] == "completed" and summary["epochs_run"] == 3
    lines = (result.path / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all(METRIC_KEYS == r.keys() for r in rows)
    assert summary["best_val_acc"] == max(r["val_acc"] for r in rows)
    assert summary["final_val_acc"] == rows[-1]["val_acc"]
    assert summary["test_acc"] is None  # digits has no test split
    assert summary["images_per_second"] > 0 and summary["device"] == "cpu"
    with open(result.path / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(r["val_acc"]) for r in table] == [r["val_acc"] for r in rows]


def test_tensorboard_has_the_familiar_tags(finished):
    _, result = finished
    events = EventAccumulator(str(result.path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"Loss/train", "Loss/val", "Accuracy/train", "Accuracy/val", "LR"} <= tags
    assert [e.step for e in events.Scalars("Accuracy/val")] == [1, 2, 3]


def test_checkpoints_load_into_the_model(finished):
    config, result = finished
    model = models.create(config.model, 10, 1, (8, 8))
    model.load_state_dict(load_weights(result.path / "checkpoints" / "best.safetensors"))
    state = load_state(result.path / "checkpoints" / "last.ckpt")
    keys = {"config", "fit", "model", "optimizer", "scheduler", "scaler", "train_loader", "rng"}
    assert keys <= state.keys()
    assert state["fit"]["epoch"] == 3 and state["fit"]["step"] == result.summary["steps"]
    model.load_state_dict(state["model"])
    assert state["config"] == config.to_dict()


def test_model_txt_and_log_txt(finished):
    _, result = finished
    assert "total params" in (result.path / "model.txt").read_text()
    log = (result.path / "log.txt").read_text().splitlines()
    assert log[-1] == f"run: {result.path}"
    assert sum(line.startswith("epoch") for line in log) == 3


@pytest.mark.slow
def test_rerunning_the_written_config_reproduces_the_metrics(finished):
    _, first = finished
    second = train(load_config([first.path / "config.yaml"]))
    assert second.path != first.path

    def without_time(path):
        rows = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
        return [
            {k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in rows
        ]

    assert without_time(second.path) == without_time(first.path)


def test_divergence_stops_with_a_diagnosis(quick):
    result = train(
        quick("model.name=mlp", "optim.name=sgd", "optim.lr=1e12", "schedule.name=constant")
    )
    assert result.status == "diverged"
    finding = result.summary["diagnosis"][0]
    assert finding["kind"] == "diverged" and "lr 1e+12" in finding["message"]
    assert json.loads((result.path / "summary.json").read_text())["status"] == "diverged"


@pytest.mark.slow
def test_early_stopping_ends_the_run(quick):
    # train_loss falls every epoch, so with mode=max no epoch after the first "improves".
    result = train(
        quick(
            "train.epochs=6",
            "train.early_stopping.monitor=train_loss",
            "train.early_stopping.mode=max",
            "train.early_stopping.patience=2",
        )
    )
    assert result.status == "early_stopped"
    assert result.summary["epochs_run"] == 3 and result.summary["best_epoch"] == 1


@pytest.mark.slow
def test_test_split_is_scored_with_the_best_weights(quick):
    result = train(quick("data.name=digits-with-test", "train.epochs=3"))
    assert result.summary["test_acc"] is not None and result.summary["test_acc"] > 0.5


@pytest.mark.slow
def test_ctrl_c_marks_the_run_interrupted_and_keeps_the_last_checkpoint(quick, monkeypatch):
    original = RunDir.log_epoch

    def interrupt_at_epoch_2(self, metrics):
        original(self, metrics)
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "log_epoch", interrupt_at_epoch_2)
    result = train(quick("train.epochs=5"))
    assert result.status == "interrupted"
    assert json.loads((result.path / "summary.json").read_text())["status"] == "interrupted"
    assert load_state(result.path / "checkpoints" / "last.ckpt")["fit"]["epoch"] == 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.name=adamm", "optim.name: unknown optimizer 'adamm'"),
        ("model.name=resnet", "model.name: unknown model 'resnet'"),
        ("data.name=cifar", "data.name: unknown dataset 'cifar'"),
        ("schedule.name=cosin", "did you mean cosine"),
        ("augment.train=[{op: flp}]", "augment.train[0]: unknown augmentation op 'flp'"),
        ("train.early_stopping.monitor=val_accuracy", "expected one of"),
        ("train.device=cuda:3", "train.device = 'cuda:3'"),
    ],
)
def test_bad_names_fail_before_any_run_directory_exists(quick, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        train(quick(override))
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_options_that_change_numerics_still_train(quick):
    result = train(
        quick(
            "train.precision=bf16",
            "train.grad_clip=1.0",
            "train.channels_last=true",
            "train.label_smoothing=0.1",
            "model.init=kaiming_normal",
            "augment.train=[{op: crop, padding: 1}]",
            "schedule.warmup_epochs=1",
        )
    )
    assert result.status == "completed"
    assert result.summary["final_val_acc"] > 0.5
    assert torch.isfinite(torch.tensor(result.summary["best_val_acc"]))


@pytest.mark.slow
def test_a_set_over_max_resident_mb_streams_and_still_trains(quick):
    result = train(quick("data.max_resident_mb=0.05", "data.num_workers=1", "train.epochs=3"))
    assert result.summary["loader"] == "StreamLoader"
    assert result.status == "completed" and result.summary["final_val_acc"] > 0.5


def write_folder(root, classes=("cat", "dog"), per_class=12):
    """root/<class>/<i>.png: class 0 dark, class 1 bright, so a net can tell them apart."""
    from PIL import Image

    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (6, 6), (40 + 150 * c + i,) * 3).save(root / name / f"{i}.png")
    return root


def test_unreadable_images_are_skipped_and_listed(quick, tmp_path):
    root = write_folder(tmp_path / "photos")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    result = train(quick("data.name=folder", f"data.root={root}", "data.val_split=4"))
    assert result.status == "completed"
    skipped = result.summary["skipped_files"]
    assert len(skipped) == 1 and "broken.png" in skipped[0]
    log = (result.path / "log.txt").read_text()
    assert "skipped 1 unreadable image file" in log and "broken.png" in log


def test_on_bad_file_error_stops_before_a_run_directory_exists(quick, tmp_path):
    root = write_folder(tmp_path / "photos")
    (root / "cat" / "broken.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="broken.png"):
        train(quick("data.name=folder", f"data.root={root}", "data.on_bad_file=error"))
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_arrays_with_their_own_test_split_report_test_acc(quick, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    x = (y[:, None, None] * 100 + rng.integers(0, 20, (120, 5, 5))).astype(np.uint8)
    np.savez(tmp_path / "set.npz", x=x[:90], y=y[:90], x_test=x[90:], y_test=y[90:])
    result = train(
        quick(
            "data.name=arrays",
            f"data.root={tmp_path / 'set.npz'}",
            "data.val_split=15",
            "train.epochs=8",
            "train.batch_size=16",
        )
    )
    assert result.summary["test_acc"] is not None and result.summary["test_acc"] > 0.6


@pytest.mark.slow
def test_mixing_augmentations_and_tta_train_end_to_end(quick):
    result = train(
        quick(
            "train.epochs=4",
            "augment.train=[{op: crop, padding: 1}, {op: mixup, alpha: 0.4, p: 0.5},"
            " {op: cutmix, p: 0.5}]",
            "augment.tta=[flip, {view: shift, pixels: 1}]",
        )
    )
    assert result.status == "completed" and result.summary["final_val_acc"] > 0.5
    rows = [json.loads(x) for x in (result.path / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["train_acc"] <= 1 for r in rows)


@pytest.mark.slow
def test_tta_changes_what_evaluation_reports(quick):
    plain = train(quick("train.epochs=2"))
    tta = train(quick("train.epochs=2", "augment.tta=[flip]"))
    # Same seed, same training: only the evaluation differs.
    assert plain.summary["steps"] == tta.summary["steps"]
    first = [json.loads(x) for x in (plain.path / "metrics.jsonl").read_text().splitlines()]
    second = [json.loads(x) for x in (tta.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in first] == [r["train_loss"] for r in second]
    assert [r["val_loss"] for r in first] != [r["val_loss"] for r in second]
