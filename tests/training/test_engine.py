"""The trainer's options end to end on the real digits set: rollback, EMA, accumulation,
precision, compile, and every schedule training a few steps with its lr logged."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch

from cnnlab.checkpoint import load_state, load_weights
from cnnlab.training.experiment import train
from cnnlab.training.schedule import SCHEDULES


def epochs(result) -> list[dict]:
    return [json.loads(x) for x in (result.path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_rollback_restores_the_last_checkpoint_and_halves_the_lr_until_training_holds(quick):
    result = train(
        quick(
            "optim.name=sgd",
            "optim.lr=50",
            "train.epochs=3",
            "train.on_divergence=rollback",
            "train.max_rollbacks=8",
        )
    )
    assert result.status == "completed" and result.summary["rollbacks"] >= 2
    rollbacks = [f for f in result.summary["diagnosis"] if f["kind"] == "rollback"]
    assert len(rollbacks) == result.summary["rollbacks"]
    assert "rolled back to epoch 0, lr x0.5" in rollbacks[0]["message"]
    assert "rolled back to epoch 0, lr x0.25" in rollbacks[1]["message"]
    assert [m["epoch"] for m in epochs(result)] == [1, 2, 3]  # no epoch logged twice
    scale = 0.5 ** result.summary["rollbacks"]
    saved = load_state(result.path / "checkpoints" / "last.ckpt")
    assert saved["fit"]["lr_scale"] == scale and saved["scheduler"]["scale"] == scale


def test_rollbacks_used_up_end_the_run_diverged(quick):
    result = train(
        quick(
            "optim.name=sgd",
            "optim.lr=1e6",
            "train.on_divergence=rollback",
            "train.max_rollbacks=2",
        )
    )
    assert result.status == "diverged"
    kinds = [f["kind"] for f in result.summary["diagnosis"]]
    assert kinds == ["rollback", "rollback", "diverged"]


@pytest.mark.slow
def test_ema_weights_are_what_evaluation_and_best_checkpoint_use(quick):
    result = train(quick("train.ema=0.9", "train.epochs=2"))
    saved = load_state(result.path / "checkpoints" / "last.ckpt")
    best = load_weights(result.path / "checkpoints" / "best.safetensors")
    key = next(k for k in best if k.endswith("weight"))
    if result.summary["best_epoch"] == 2:
        assert torch.equal(best[key], saved["ema"][key])
    assert not torch.equal(saved["ema"][key], saved["model"][key])


def test_ema_update_matches_torch_averaged_model():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from cnnlab.training.ema import EMA

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    ours = EMA(model, 0.9)
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    theirs.update_parameters(model)  # torch's first update copies; ours copied at creation
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(8, 4))  # moves the BatchNorm statistics
        ours.update()
        theirs.update_parameters(model)
    for mine, ref in zip(
        ours.module.state_dict().values(), theirs.module.state_dict().values(), strict=True
    ):
        if mine.is_floating_point():  # torch leaves BatchNorm's counter at 0; we copy it
            torch.testing.assert_close(mine, ref)


def test_accumulating_two_half_batches_equals_one_full_batch(quick):
    """mlp has no BatchNorm, so 2 x 32 accumulated is the same gradient as 64 at once; the
    shuffled order is the same permutation cut finer."""
    common = ("model.name=mlp", "train.epochs=1", "schedule.name=constant", "optim.name=sgd")
    whole = train(quick(*common, "train.batch_size=64"))
    halves = train(quick(*common, "train.batch_size=32", "train.accumulate=2"))
    assert halves.summary["steps"] == whole.summary["steps"] == 1438 // 64
    a = load_state(whole.path / "checkpoints" / "last.ckpt")["model"]
    b = load_state(halves.path / "checkpoints" / "last.ckpt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_uneven_accumulation_steps_on_the_short_last_group(quick):
    # 1438 // 64 = 22 batches in groups of 3: 7 full groups and one of 1.
    result = train(quick("train.epochs=1", "train.accumulate=3"))
    assert result.status == "completed" and result.summary["steps"] == 8


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_trains_on_cpu(quick, precision):
    result = train(quick(f"train.precision={precision}", "train.epochs=2"))
    assert result.status == "completed" and result.summary["final_val_acc"] > 0.5


@pytest.mark.skipif(
    shutil.which("gcc") is None and shutil.which("cc") is None, reason="no C compiler"
)
@pytest.mark.slow
def test_compiled_model_trains_and_saves_plain_weights(quick):
    result = train(quick("train.compile=true", "train.epochs=1", "model.name=mlp"))
    assert result.status == "completed"
    weights = load_weights(result.path / "checkpoints" / "best.safetensors")
    assert not any(k.startswith("_orig_mod") for k in weights)  # loadable without compile


@pytest.mark.slow
@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_trains_and_logs_its_lr(quick, name):
    result = train(
        quick(
            f"schedule.name={name}",
            "train.epochs=3",
            "schedule.step_size=1",
            "schedule.milestones=[2]",
            "schedule.patience=0",
            "schedule.monitor=train_loss",  # falls every epoch: under mode max, a plateau
            "schedule.mode=max",
        )
    )
    lrs = [m["lr"] for m in epochs(result)]
    assert result.status == "completed" and result.summary["final_val_acc"] > 0.3
    if name == "constant":
        assert lrs == [3e-3] * 3
    else:
        assert lrs[-1] < lrs[0] or name == "onecycle", lrs  # every decaying schedule decays


@pytest.mark.slow
def test_early_stopping_watches_any_logged_metric(quick):
    result = train(
        quick(
            "train.epochs=8",
            "train.early_stopping.monitor=val_loss",
            "train.early_stopping.mode=min",
            "train.early_stopping.patience=1",
            "train.early_stopping.min_delta=10",  # nothing improves by 10
        )
    )
    assert result.status == "early_stopped" and result.summary["epochs_run"] == 2


def test_training_steps_read_from_the_device_only_at_logging_points(quick, monkeypatch):
    """The step keeps loss and accuracy sums on the device; a read (.item(), bool(), float())
    waits for a GPU. Count them over one epoch of 22 steps: 3 logging points + 2 epoch sums
    (with EMA, grad clipping and a schedule on, each of which could hide a read)."""
    from cnnlab.training import loop
    from cnnlab.training.device import resolve_device
    from cnnlab.training.experiment import build
    from cnnlab.training.stop import Stopper

    config = quick("train.ema=0.99", "train.grad_clip=1.0", "schedule.warmup_epochs=0.5")
    parts = build(config, resolve_device("cpu")).parts
    reads = {"n": 0}
    for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, **k):
            # Reads by cnnlab's own code; torch's Adam reads its step count from a CPU tensor.
            if "cnnlab" in sys._getframe(1).f_code.co_filename:
                reads["n"] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    state = loop.FitState()
    totals = loop.train_epoch(parts, config.train, state, 1, lambda m: None, Stopper())
    monkeypatch.undo()
    assert state.step == 22 and totals["train_loss"] > 0
    assert reads["n"] == 3 + 2


@pytest.mark.slow
def test_the_diagnosis_of_a_run_lands_in_its_summary(quick):
    result = train(quick("optim.name=sgd", "optim.lr=1e-5", "train.epochs=4"))
    kinds = [f["kind"] for f in result.summary["diagnosis"]]
    assert "underfitting" in kinds
    saved = json.loads((result.path / "summary.json").read_text())
    assert saved["diagnosis"] == result.summary["diagnosis"]
    assert "underfitting (epochs" in (result.path / "log.txt").read_text()
