"""training.step: the one training step (the loop and the lr finder) and the one evaluation pass."""

import torch

from cnnlab.analyze.lr_find import find_lr
from cnnlab.training import step as step_module
from cnnlab.training.device import resolve_device
from cnnlab.training.experiment import build, train


def counting_steps(monkeypatch) -> dict[str, int]:
    calls = {"steps": 0, "batches": 0}
    original = step_module.TrainParts.step

    def counted(self, batches, size):
        calls["steps"] += 1
        seen = original(self, batches, size)
        calls["batches"] += len(seen)
        return seen

    monkeypatch.setattr(step_module.TrainParts, "step", counted)
    return calls


def test_the_loop_and_the_lr_finder_take_the_same_step(quick, monkeypatch):
    calls = counting_steps(monkeypatch)
    result = train(quick("train.epochs=1"), quiet=True)
    assert calls["steps"] == result.summary["steps"] == 22  # 1438 images // 64
    calls["steps"] = 0
    found = find_lr(quick(), steps=12)
    assert calls["steps"] == len(found.lrs) == 12


def test_an_accumulated_step_takes_exactly_its_micro_batches(quick):
    parts = build(quick("train.accumulate=3"), resolve_device("cpu")).parts
    batches = iter(parts.train_loader)
    before = parts.train_loader._position
    seen = parts.step(batches, 3)
    assert len(seen) == 3 and parts.train_loader._position == before + 3
    assert parts.scheduler.steps == 1  # one schedule step per optimizer step


def test_score_counts_every_image_once_and_matches_summed_cross_entropy(quick):
    parts = build(quick(), resolve_device("cpu")).parts
    scores = parts.evaluate(parts.val_loader)
    x = torch.cat([b for b, _ in parts.val_loader])
    y = torch.cat([t for _, t in parts.val_loader])
    with torch.no_grad():
        logits = parts.eval_net.eval()(x)
    assert int(scores.count) == len(parts.val_loader.labels) == len(y)
    expected = torch.nn.functional.cross_entropy(logits, y).item()
    assert abs(scores.loss - expected) < 1e-5
    assert scores.accuracy == (logits.argmax(1) == y).float().mean().item()
