"""LR range test: the sweep on real digits, the suggestion rule on a hand-made curve, the files."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.analyze.lr_find import LrFind, find_lr, suggest, write
from cnnlab.config import load_config
from cnnlab.errors import ConfigError
from cnnlab.training import experiment
from cnnlab.training.device import resolve_device, seed_everything

QUICK = ["model.width=8", "train.batch_size=64", "train.device=cpu"]


@pytest.fixture(scope="module")
def blown():
    """One wide sweep (1e-5..100) that runs into the blow-up, shared by the tests below."""
    return find_lr(load_config(overrides=QUICK), start_lr=1e-5, end_lr=100.0, steps=80)


def test_lrs_are_exponential_from_start_to_end():
    result = find_lr(load_config(overrides=QUICK), start_lr=1e-4, end_lr=1e-2, steps=20)
    assert result.stopped_at is None and len(result.lrs) == len(result.losses) == 20
    assert result.lrs[0] == pytest.approx(1e-4) and result.lrs[-1] == pytest.approx(1e-2)
    ratios = np.diff(np.log(result.lrs))
    assert np.allclose(ratios, ratios[0])
    assert all(math.isfinite(v) for v in result.losses + result.smoothed)


def test_wide_sweep_stops_when_the_loss_blows_up(blown):
    assert blown.stopped_at is not None and blown.stopped_at == len(blown.lrs) - 1 < 79
    finite = [s for s in blown.smoothed[:-1] if math.isfinite(s)]
    last = blown.smoothed[-1]
    assert not math.isfinite(last) or last > 4.0 * min(finite)


def test_suggestion_lies_on_the_falling_part_of_the_curve(blown):
    # A broken rule (the minimum, the first point, the blow-up) lands outside this band.
    lr = blown.suggested_lr
    assert lr is not None and blown.lrs[0] < lr < blown.min_loss_lr < blown.lrs[-1]
    assert 1e-4 <= lr <= 0.5
    i = blown.lrs.index(lr)
    assert blown.smoothed[i] < blown.smoothed[0]  # the loss is already falling there


@pytest.mark.slow
def test_suggested_lr_trains_better_than_start_lr(blown):
    def loss_after(lr: float, steps: int = 60) -> float:
        config = load_config(overrides=QUICK)
        seed_everything(0)
        parts = experiment.build(config, resolve_device("cpu")).parts
        for group in parts.optimizer.param_groups:
            group["lr"] = lr
        batches, losses = iter(parts.train_loader), []
        for _ in range(steps):
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(parts.train_loader)
                x, y = next(batches)
            loss = nn.functional.cross_entropy(parts.model(x), y)
            parts.optimizer.zero_grad()
            loss.backward()
            parts.optimizer.step()
            losses.append(loss.item())
        return float(np.mean(losses[-10:]))

    assert loss_after(blown.suggested_lr) < 0.5 * loss_after(blown.lrs[0])


def test_suggest_picks_the_steepest_point_before_the_minimum():
    lrs = list(np.logspace(-6, 1, 71))  # 10 points per decade
    x = np.log10(lrs)
    # Falls fastest at lr 1e-3 (x = -3), bottoms out at 1e-1, then rises steeply (blow-up).
    loss = 2.0 - np.tanh(2.0 * (x + 3.0)) + np.where(x > -1, 40.0 * (x + 1) ** 2, 0.0)
    assert suggest(lrs, list(loss)) == pytest.approx(1e-3)
    # The warm-up points are skipped even when they fall steepest: a noisy start.
    noisy = loss.copy()
    noisy[:5] += np.linspace(5.0, 0.0, 5)
    assert suggest(lrs, list(noisy)) == pytest.approx(1e-3)
    # A trailing inf (the blow-up step) ends the curve instead of breaking the rule.
    assert suggest([*lrs, 20.0], [*loss, math.inf]) == pytest.approx(1e-3)


def test_suggest_gives_none_with_too_few_points():
    assert suggest([1e-3, 1e-2, 1e-1], [1.0, 0.5, 2.0]) is None
    lrs = list(np.logspace(-6, 1, 50))
    assert suggest(lrs, [1.0 + i for i in range(50)]) is None  # rises from the start
    assert suggest(lrs, [math.nan] * 50) is None


@pytest.mark.slow
def test_write_json_and_a_non_blank_png(blown, tmp_path):
    json_path, png_path = write(blown, tmp_path / "out")
    assert json_path == tmp_path / "out" / "lr_find.json" and png_path.name == "lr_find.png"
    saved = json.loads(json_path.read_text())  # strict JSON: no NaN/inf tokens
    assert saved["suggested_lr"] == blown.suggested_lr
    assert saved["min_loss_lr"] == blown.min_loss_lr and saved["stopped_at"] == blown.stopped_at
    assert len(saved["lrs"]) == len(saved["losses"]) == len(saved["smoothed"]) == len(blown.lrs)
    pixels = np.asarray(Image.open(png_path).convert("L"), dtype=float)
    assert pixels.shape[0] > 100 and pixels.std() > 5.0
    assert not list(tmp_path.rglob(".*.tmp-*"))


def test_to_dict_turns_non_finite_values_into_null():
    result = LrFind([1e-3, 1e-2], [1.0, math.inf], [1.0, math.nan], None, 1e-3, 1)
    d = result.to_dict()
    assert d["losses"] == [1.0, None] and d["smoothed"] == [1.0, None]
    json.dumps(d, allow_nan=False)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"start_lr": 1e-2, "end_lr": 1e-3}, "--end-lr"),
        ({"start_lr": 0.0}, "--start-lr"),
        ({"start_lr": -1e-3}, "--start-lr"),
        ({"end_lr": -1.0}, "--end-lr"),
        ({"steps": 9}, "--steps"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, option):
    with pytest.raises(ConfigError, match=option) as info:
        find_lr(load_config(overrides=QUICK), **kwargs)
    assert "\n" not in str(info.value)


def test_leaves_no_global_state_behind():
    deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.no_grad():  # a caller inside no_grad still gets a real sweep
        result = find_lr(load_config(overrides=QUICK), start_lr=1e-4, end_lr=1e-1, steps=15)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert len(result.lrs) == 15 and result.smoothed[-1] < result.smoothed[0]


def test_each_finder_step_is_one_training_step_and_nothing_else(monkeypatch):
    """Why the finder costs what training costs (bench/lr_find_speed.py measures it): each of
    its steps is TrainParts.step, with the run's micro-batches, and it never evaluates."""
    from cnnlab.training.step import TrainParts

    calls = {"step": [], "evaluate": 0}
    original = TrainParts.step

    def counted(self, batches, size):
        calls["step"].append(size)
        return original(self, batches, size)

    def no_evaluation(self, *args, **kwargs):
        calls["evaluate"] += 1
        raise AssertionError("the lr finder evaluated")

    monkeypatch.setattr(TrainParts, "step", counted)
    monkeypatch.setattr(TrainParts, "evaluate", no_evaluation)
    config = load_config(overrides=[*QUICK, "train.accumulate=2"])
    result = find_lr(config, start_lr=1e-4, end_lr=1e-2, steps=12)
    assert calls == {"step": [2] * 12, "evaluate": 0} and len(result.lrs) == 12
