"""diagnose(): each rule on a synthetic history made to trigger it, no findings on healthy
histories, and the verdicts on two real digits runs."""

import json
import math
import random

import pytest

from cnnlab.config import load_config
from cnnlab.track.diagnose import SEVERITY, diagnose


def history(
    train_loss,
    val_loss=None,
    train_acc=None,
    val_acc=None,
    lr=None,
) -> list[dict]:
    """Rows like metrics.jsonl's from per-epoch lists; unset columns get bland values."""
    n = len(train_loss)
    cols = {
        "train_loss": train_loss,
        "val_loss": val_loss or [v * 1.1 for v in train_loss],
        "train_acc": train_acc or [0.95] * n,
        "val_acc": val_acc or [0.93] * n,
        "lr": lr or [1e-3] * n,
    }
    return [
        {
            "epoch": i + 1,
            "step": 10 * (i + 1),
            **{k: v[i] for k, v in cols.items()},
            "seconds": 1.0,
            "images_per_second": 1000.0,
        }
        for i in range(n)
    ]


def decay(start: float, end: float, n: int, tau: float = 2.0) -> list[float]:
    """start falling exponentially towards end over n epochs."""
    return [end + (start - end) * math.exp(-i / tau) for i in range(n)]


def cosine(peak: float, n: int) -> list[float]:
    """The lr at the end of each epoch of a cosine schedule."""
    return [peak * 0.5 * (1 + math.cos(math.pi * (i + 1) / n)) for i in range(n)]


def kinds(findings) -> list[str]:
    return [f["kind"] for f in findings]


def only(findings, kind: str) -> dict:
    found = [f for f in findings if f["kind"] == kind]
    assert len(found) == 1, findings
    return found[0]


# --- each rule ----------------------------------------------------------------------------------


def test_overfitting_from_val_loss_rising_while_train_loss_falls():
    train = decay(1.0, 0.05, 12, tau=3)
    val = [1.0, 0.7, 0.5, 0.4, 0.34, 0.312, 0.33, 0.36, 0.39, 0.41, 0.43, 0.455]
    accs = [0.5, 0.7, 0.8, 0.85, 0.88, 0.9, 0.9, 0.9, 0.89, 0.89, 0.89, 0.88]
    f = only(diagnose(history(train, val, val_acc=accs), status="completed"), "overfitting")
    assert f["epochs"] == "6-12"
    assert "0.312 (epoch 6) to 0.455 (epoch 12)" in f["message"]
    assert f"train_loss fell from {train[5]:.4g} to {train[11]:.4g}" in f["message"]
    for key in ("augment.train", "optim.weight_decay", "model.dropout", "train.epochs=6"):
        assert key in f["advice"]
    assert "best.safetensors holds epoch 6 (val_acc 90.0%)" in f["advice"]


def test_overfitting_from_a_large_train_val_gap():
    train_acc = [0.6, 0.8, 0.9, 0.95, 0.97, 0.99]
    val_acc = [0.6, 0.72, 0.76, 0.78, 0.79, 0.80]
    h = history(decay(1.5, 0.05, 6), val_loss=[1.5, 1.0, 0.8, 0.75, 0.74, 0.74], val_acc=val_acc)
    for row, acc in zip(h, train_acc, strict=True):
        row["train_acc"] = acc
    f = only(diagnose(h, status="completed", early_stopping_patience=3), "overfitting")
    assert f["epochs"] == "6"
    assert "train_acc 99.0% vs val_acc 80.0% at epoch 6: a gap of 19.0 points" in f["message"]
    assert "train.epochs=" not in f["advice"]  # early stopping is on already


def test_instability_from_a_loss_spike_and_an_accuracy_collapse():
    train = [2.0, 1.0, 0.6, 0.5, 1.6, 0.45, 0.4, 0.38]
    val_acc = [0.5, 0.7, 0.8, 0.85, 0.4, 0.84, 0.86, 0.87]
    lr = [0.1] * 8
    found = diagnose(history(train, val_acc=val_acc, lr=lr), status="completed")
    f = only(found, "instability")
    assert f["epochs"] == "5"
    assert (
        "train_loss jumped to 1.6 at epoch 5 from about 0.6, back to 0.45 by epoch 6"
        in (f["message"])
    )
    assert "val_acc fell from 85.0% (epoch 4) to 40.0% (epoch 5)" in f["message"]
    assert "recovered to 84.0% by epoch 6" in f["message"]
    assert "optim.lr (e.g. to 0.033)" in f["advice"]
    assert "train.grad_clip" in f["advice"] and "schedule.warmup_epochs" in f["advice"]


def test_instability_lists_separate_events_and_counts_a_lasting_jump_once():
    val = [1.0, 0.5, 0.4, 1.1, 1.15, 0.4, 0.35, 0.34, 0.9, 0.33]
    f = only(diagnose(history(decay(2, 0.2, 10), val), status="completed"), "instability")
    assert f["epochs"] == "4, 9"
    assert f["message"].count("val_loss jumped") == 2


def test_non_finite_losses_give_one_diverged_finding_and_are_cut_off():
    train = [2.0, 1.0, 0.6, 0.5, 0.45, 0.4]
    val = [2.0, 1.1, 0.7, 0.6, float("nan"), float("nan")]
    found = diagnose(history(train, val), status="completed")
    assert kinds(found) == ["diverged"]
    assert found[0]["epochs"] == "5"
    assert "val_loss became nan at epoch 5 (train_loss 0.5 at epoch 4)" in found[0]["message"]
    assert "optim.lr" in found[0]["advice"]


def test_a_diverged_status_alone_adds_nothing_to_the_guards_finding():
    assert diagnose(history(decay(2.0, 0.3, 5)), status="diverged") == []


def test_underfitting_at_chance():
    train = [2.31, 2.305, 2.304, 2.303, 2.303, 2.302]
    accs = [0.1, 0.11, 0.1, 0.1, 0.11, 0.1]
    h = history(train, train_acc=accs, val_acc=accs, lr=[1e-5] * 6)
    found = diagnose(h, status="completed", num_classes=10)
    assert kinds(found) == ["underfitting"]
    f = found[0]
    assert f["epochs"] == "1-6"
    assert "train_acc ended at 10.0% (epoch 6), near chance (10.0% for 10 classes)" in f["message"]
    assert "train_loss flat over epochs 3-6" in f["message"]
    assert "raise optim.lr" in f["advice"]


def test_underfitting_from_a_flat_loss_at_a_mediocre_accuracy():
    train = [1.5, 1.0, 0.9, 0.86, 0.855, 0.852, 0.85, 0.849]
    accs = [0.5, 0.62, 0.68, 0.7, 0.71, 0.71, 0.71, 0.71]
    h = history(train, train_acc=accs, val_acc=[a - 0.02 for a in accs], lr=cosine(3e-3, 8))
    f = only(diagnose(h, status="completed", num_classes=10), "underfitting")
    assert f["epochs"] == "5-8"
    assert (
        "train_loss flat over epochs 5-8: 0.855 -> 0.849 (-0.7%) with train_acc 71.0%"
        in (f["message"])
    )
    assert "model.width" in f["advice"] and "optim.weight_decay" in f["advice"]
    # A head on a backbone has no model.width: its advice names the transfer keys instead.
    f = only(diagnose(h, status="completed", num_classes=10, transfer=True), "underfitting")
    assert "model." not in f["advice"]
    assert "transfer.head=mlp" in f["advice"] and "transfer.dropout" in f["advice"]


def test_lr_too_small_from_a_slow_straight_fall():
    train = [2.3 - 0.09 * i for i in range(8)]
    accs = [0.15 + 0.05 * i for i in range(8)]
    h = history(train, train_acc=accs, val_acc=accs, lr=[1e-4] * 8)
    found = diagnose(h, status="completed", num_classes=10)
    assert "underfitting" not in kinds(found)  # the named cause replaces the generic one
    f = only(found, "lr_too_small")
    assert f["epochs"] == "1-8"
    assert "2.3 -> 1.67 (-27%)" in f["message"] and "train_acc reached only 50.0%" in f["message"]
    assert "raise optim.lr (x3 to x10 of its peak 0.0001" in f["advice"]


def test_lr_too_large_when_the_loss_falls_only_after_the_lr_decayed():
    train = [2.35, 2.33, 2.34, 2.32, 2.30, 1.6, 0.9, 0.6, 0.5, 0.45]
    accs = [0.1, 0.1, 0.1, 0.11, 0.12, 0.4, 0.7, 0.8, 0.85, 0.86]
    h = history(train, train_acc=accs, val_acc=accs, lr=cosine(0.1, 10))
    found = diagnose(h, status="completed", num_classes=10)
    f = only(found, "lr_too_large")
    assert f["epochs"] == "1-6"
    assert "train_loss stayed at 2.3-2.35 over epochs 1-5 with lr 0.05-0.098" in f["message"]
    assert "to 0.45 by epoch 10" in f["message"] and "lr down to 0.035 (epoch 6)" in f["message"]
    assert "lower optim.lr to about 0.035" in f["advice"]


def test_lr_too_large_when_the_loss_stays_above_a_uniform_guess():
    train = [2.9, 2.8, 2.95, 2.85, 2.9]
    accs = [0.1] * 5
    h = history(train, train_acc=accs, val_acc=accs, lr=[0.5] * 5)
    found = diagnose(h, status="completed", num_classes=10)
    assert kinds(found) == ["lr_too_large"]  # not also "underfitting: raise the lr"
    assert "above 2.303, the loss of a uniform guess over 10 classes" in found[0]["message"]
    assert "lower optim.lr (e.g. to 0.05)" in found[0]["advice"]


def test_lr_too_large_when_the_loss_rises_early_at_the_peak_lr():
    train = [2.0, 1.2, 1.5, 1.0, 0.7, 0.5, 0.4, 0.35]
    h = history(train, lr=[0.3] * 8)
    f = only(diagnose(h, status="completed"), "lr_too_large")
    assert f["epochs"] == "2-3"
    assert "rose from 1.2 (epoch 2) to 1.5 (epoch 3) at lr 0.3" in f["message"]
    assert "instability" not in kinds(diagnose(h, status="completed"))  # 1.25x is no spike


def noisy_rise(n: int, start: float, per_epoch: float, zigzag: float = 0.006) -> list[float]:
    """A metric climbing per_epoch with +-zigzag of noise."""
    return [start + per_epoch * i + (zigzag if i % 2 else -zigzag) for i in range(n)]


def test_stopped_early_while_the_monitor_still_trends_up():
    val_acc = noisy_rise(13, 0.70, 0.012)
    val_acc[-1] = val_acc[-2] - 0.002  # the epoch that ran out the patience of 1
    h = history(decay(1.5, 0.4, 13), val_acc=val_acc, train_acc=[a + 0.02 for a in val_acc])
    found = diagnose(h, status="early_stopped", early_stopping_patience=1)
    f = only(found, "stopped_early")
    assert f["epochs"] == "8-13"
    message = f["message"]
    assert "ended the run at epoch 13 (patience 1), but val_acc was still trending up" in message
    assert "points/epoch" in f["message"]
    assert "train.early_stopping.patience (e.g. to 4)" in f["advice"]


def test_a_stop_on_a_plateau_is_no_finding():
    val_acc = [0.6, 0.8, 0.88, 0.9, 0.92, 0.93, 0.925, 0.928, 0.92]
    h = history(decay(1.5, 0.2, 9), val_acc=val_acc)
    assert diagnose(h, status="early_stopped", early_stopping_patience=3) == []


def test_stopped_early_follows_a_min_monitor():
    val_loss = noisy_rise(12, 1.0, -0.03, zigzag=0.01)
    h = history(decay(1.0, 0.5, 12, tau=4), val_loss=val_loss)
    found = diagnose(
        h, status="early_stopped", early_stopping_patience=1, monitor="val_loss", mode="min"
    )
    assert "val_loss was still trending down" in only(found, "stopped_early")["message"]


def test_still_improving_at_the_end_of_a_completed_run():
    val_acc = [0.3, 0.45, 0.55, 0.6, 0.63, 0.655, 0.68, 0.705, 0.73, 0.755]
    h = history(decay(2.0, 0.6, 10, tau=4), val_acc=val_acc, train_acc=[a + 0.03 for a in val_acc])
    h = [dict(row, lr=lr) for row, lr in zip(h, cosine(3e-3, 10), strict=True)]
    found = diagnose(h, status="completed", num_classes=10)
    f = only(found, "still_improving")
    assert f["epochs"] == "6-10"  # the second half of the run
    assert "val_acc was still rising in the final epochs 6-10" in f["message"]
    assert "(65.5% -> 75.5%)" in f["message"]
    assert "train.epochs=15" in f["advice"]
    assert diagnose(h, status="time_limit") == []  # a cut run says nothing of its epochs


def test_findings_come_most_severe_first_with_the_guards_shape():
    train = [2.0, 1.0, 0.6, 0.5, 1.6, 0.3, 0.2, 0.12, 0.08, 0.05, 0.03, 0.02]
    val = [2.0, 1.1, 0.7, 0.6, 0.55, 0.5, 0.55, 0.6, 0.7, 0.75, 0.8, 0.9]
    found = diagnose(history(train, val), status="completed")
    assert kinds(found) == ["instability", "overfitting"]
    assert kinds(found) == sorted(kinds(found), key=SEVERITY.index)
    for f in found:
        assert set(f) == {"kind", "epochs", "message", "advice"}
        assert all(isinstance(v, str) and v for v in f.values())


# --- no false alarms ----------------------------------------------------------------------------


def healthy(seed: int) -> tuple[list[dict], int]:
    """A run that learns and settles: losses decaying to a plateau with ~2% noise, accuracies
    rising to one with ~0.4 points of noise, val a few points behind train, a random schedule."""
    rng = random.Random(seed)
    n = rng.randint(8, 30)
    tau = rng.uniform(1.0, n / 8)  # settled for the last third: exp(-2n/3 / tau) < 0.5%
    peak = rng.choice([1e-3, 3e-3, 0.05, 0.1])
    schedule = rng.choice(["cosine", "constant", "step"])
    start = rng.uniform(1.2, 2.3)
    floor_train = rng.uniform(0.01, 0.3)
    floor_val = floor_train + rng.uniform(0.03, 0.2)
    top_train = rng.uniform(0.9, 1.0)
    top_val = top_train - rng.uniform(0.0, 0.06)
    rows = []
    for i in range(n):
        fade = math.exp(-i / tau)
        lr = {
            "cosine": peak * 0.5 * (1 + math.cos(math.pi * (i + 1) / n)),
            "constant": peak,
            "step": peak * 0.1 ** ((i + 1) // max(2, n // 3)),
        }[schedule]
        rows.append(
            {
                "epoch": i + 1,
                "step": 50 * (i + 1),
                "lr": lr,
                "train_loss": (floor_train + (start - floor_train) * fade) * rng.gauss(1, 0.02),
                "train_acc": min(1.0, top_train - (top_train - 0.3) * fade + rng.gauss(0, 0.004)),
                "val_loss": (floor_val + (start - floor_val) * fade) * rng.gauss(1, 0.02),
                "val_acc": top_val - (top_val - 0.3) * fade + rng.gauss(0, 0.004),
                "seconds": 2.0,
                "images_per_second": 5000.0,
            }
        )
    return rows, rng.choice([10, 100])


def early_stop(rows: list[dict], patience: int) -> list[dict] | None:
    """The epochs an early stopper on val_acc would have let run, or None if it never stops."""
    best, bad = -1.0, 0
    for i, row in enumerate(rows):
        best, bad = (row["val_acc"], 0) if row["val_acc"] > best else (best, bad + 1)
        if bad >= patience:
            return rows[: i + 1]
    return None


@pytest.mark.parametrize("seed", range(40))
def test_healthy_runs_raise_no_alarm(seed):
    rows, classes = healthy(seed)
    assert diagnose(rows, status="completed", num_classes=classes) == []
    for patience in (3, 5):  # patience 1 on a curve still rising is what stopped_early flags
        stopped = early_stop(rows, patience)
        if stopped is not None:
            found = diagnose(
                stopped,
                status="early_stopped",
                num_classes=classes,
                early_stopping_patience=patience,
            )
            assert found == [], (patience, found)


@pytest.mark.parametrize("n", [0, 1, 2])
@pytest.mark.parametrize("status", ["completed", "early_stopped", "time_limit", "diverged"])
def test_short_histories_give_no_verdict_but_say_what_they_are_too_short_for(n, status):
    # The first epochs of even a wild run: a big gap, a rising val loss, a low accuracy.
    rows = history([2.5, 0.5], [0.4, 1.2], train_acc=[0.3, 0.9], val_acc=[0.7, 0.4])[:n]
    found = diagnose(rows, status=status, num_classes=10, early_stopping_patience=1)
    if n == 0 or status == "diverged":  # nothing finished, or the guard's finding says why
        assert found == []
        return
    f = only(found, "too_short")
    assert len(found) == 1 and set(f) == {"kind", "epochs", "message", "advice"}
    assert (
        f"only {n} epoch" in f["message"] and "only non-finite values were checked" in f["message"]
    )
    assert "instability, lr_too_large" in f["message"] and "3 epochs" in f["message"]
    assert ("still_improving" in f["message"]) == (status == "completed")  # judged only there
    assert {
        "completed": "train.epochs=4",
        "early_stopped": "train.early_stopping.patience",
        "time_limit": "train.max_minutes",
    }[status] in f["advice"]


def test_three_epochs_are_judged_but_the_trend_rules_need_four():
    train = [2.0, 1.0, 0.6]
    assert kinds(diagnose(history(train), status="completed")) == ["too_short"]
    f = diagnose(history(train), status="completed")[0]
    assert f["message"] == (
        "only 3 epochs (completed): lr_too_small and still_improving need 4 epochs"
    )
    assert f["epochs"] == "1-3" and "train.epochs=4" in f["advice"]
    # the rules that can judge 3 epochs still do, the note comes last
    gap = diagnose(
        history(train, train_acc=[0.6, 0.9, 1.0], val_acc=[0.5, 0.6, 0.7]), status="completed"
    )
    assert kinds(gap) == ["overfitting", "too_short"]
    assert diagnose(history(train + [0.5]), status="completed") == []


def test_missing_keys_none_and_junk_are_skipped():
    rows = [
        {"epoch": 1, "train_loss": None, "val_acc": "0.5"},
        {"train_loss": 1.0},
        {"epoch": 3, "train_loss": 0.8, "val_loss": None, "lr": True},
        "not a row",
        {},
        {"epoch": 6, "train_loss": 0.7, "train_acc": 0.9, "val_acc": 0.88},
    ]
    assert diagnose(rows, status="completed", num_classes=None) == []
    assert diagnose([], status="completed", monitor="no_such_metric") == []


# --- real runs ----------------------------------------------------------------------------------


def run_digits(tmp_path, *overrides: str) -> tuple[list[dict], str]:
    from cnnlab.training.experiment import train

    config = load_config(
        overrides=["model.width=8", "train.epochs=6", f"run.dir={tmp_path}", *overrides]
    )
    result = train(config)
    lines = (result.path / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], result.status


@pytest.mark.slow
def test_a_default_digits_run_is_healthy(tmp_path):
    rows, status = run_digits(tmp_path)
    found = diagnose(rows, status=status, num_classes=10)
    bad = {"overfitting", "instability", "diverged", "lr_too_large"}
    assert not bad & set(kinds(found)), found


@pytest.mark.slow
def test_a_tiny_sgd_lr_on_digits_underfits(tmp_path):
    rows, status = run_digits(tmp_path, "optim.name=sgd", "optim.lr=1e-5")
    found = diagnose(rows, status=status, num_classes=10)
    assert {"underfitting", "lr_too_small"} & set(kinds(found)), found
