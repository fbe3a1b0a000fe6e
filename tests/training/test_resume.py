"""Exact resume: a run stopped anywhere and resumed ends with the weights of an unbroken run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab.checkpoint import load_state
from cnnlab.errors import ConfigError
from cnnlab.training import experiment
from cnnlab.training.resume import resume
from cnnlab.training.stop import Stopper

# Deterministic, several epochs of many small steps, exercising every kind of resumable state:
# augmentation draws from the loader's generator, dropout from the global RNG, EMA, a schedule.
EXACT = [
    "train.deterministic=true",
    "train.epochs=4",
    "train.batch_size=32",
    "model.dropout=0.2",
    "train.ema=0.9",
    "schedule.warmup_epochs=1",
    "augment.train=[{op: crop, padding: 1}, {op: flip}]",
]


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    saved = load_state(run / "checkpoints" / "last.ckpt")
    return saved["model"] | {f"ema.{k}": v for k, v in saved["ema"].items()}


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in rows]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory) -> Path:
    from cnnlab.config import load_config

    root = tmp_path_factory.mktemp("unbroken")
    config = load_config(overrides=[*EXACT, "model.width=8", f"run.dir={root}"])
    result = experiment.train(config)
    assert result.status == "completed"
    return result.path


def stop_after(monkeypatch, calls: int) -> None:
    """Make the run's stopper ask for a stop at its `calls`-th question (one per step)."""
    asked = {"n": 0}

    def reason(self):
        asked["n"] += 1
        if asked["n"] >= calls:
            self.requested = "interrupted"
        return self.requested

    monkeypatch.setattr(Stopper, "reason", reason)


@pytest.mark.slow
@pytest.mark.parametrize("calls", [1, 44, 45, 100])  # 44 steps per epoch: in it and at its end
def test_stopped_in_process_and_resumed_matches_the_unbroken_run(
    quick, monkeypatch, unbroken, calls
):
    stop_after(monkeypatch, calls)
    stopped = experiment.train(quick(*EXACT))
    assert stopped.status == "interrupted"
    monkeypatch.undo()
    result = resume(stopped.path)
    assert result.status == "completed" and result.path == stopped.path
    assert_bit_identical(final_weights(result.path), final_weights(unbroken))
    assert metrics(result.path) == metrics(unbroken)
    csv_epochs = (result.path / "metrics.csv").read_text().splitlines()[1:]
    assert [line.split(",")[0] for line in csv_epochs] == ["1", "2", "3", "4"]


# Bit-identity holds for one thread count (reductions split by thread); a subprocess would take
# the machine's, so every run here gets one.
ENV = os.environ | {"OMP_NUM_THREADS": "1"}


def _train_command(run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        *EXACT,
        "model.width=8",
        "train.epochs=6",
        f"run.dir={run_dir}",
        *extra,
    ]


def _wait_for_epochs(run_root: Path, proc: subprocess.Popen, epochs: int) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = list(run_root.glob("*/metrics.jsonl"))
        if runs and len(runs[0].read_text().splitlines()) >= epochs:
            return runs[0].parent
        assert proc.poll() is None, "the run ended before it could be stopped"
        time.sleep(0.01)
    raise AssertionError("no epochs logged in time")


def _resume_in_a_subprocess(run: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cnnlab", "train", "--resume", str(run)]
    return subprocess.run(command, capture_output=True, text=True, env=ENV)


@pytest.fixture(scope="module")
def unbroken_six(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("six")
    subprocess.run(_train_command(root), check=True, capture_output=True, env=ENV)
    return next(root.iterdir())


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_the_unbroken_run(tmp_path, unbroken_six):
    proc = subprocess.Popen(
        _train_command(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV
    )
    run = _wait_for_epochs(tmp_path, proc, 2)
    time.sleep(0.05)  # into epoch 3 (or later): somewhere no checkpoint is being written
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _resume_in_a_subprocess(run)
    assert done.returncode == 0, done.stderr
    assert "resuming after epoch" in done.stdout
    assert_bit_identical(final_weights(run), final_weights(unbroken_six))
    assert metrics(run) == metrics(unbroken_six)  # lines logged after the checkpoint are redone


@pytest.mark.slow
def test_ctrl_c_checkpoints_mid_epoch_exits_130_and_resumes_exactly(tmp_path, unbroken_six):
    proc = subprocess.Popen(
        _train_command(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    run = _wait_for_epochs(tmp_path, proc, 1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume with: cnnlab train --resume" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    resumed = _resume_in_a_subprocess(run)
    assert resumed.returncode == 0, resumed.stderr
    assert_bit_identical(final_weights(run), final_weights(unbroken_six))


@pytest.mark.slow
def test_time_limit_stops_resumably(quick):
    result = experiment.train(quick("train.max_minutes=0.00001"))
    assert result.status == "time_limit" and result.summary["steps"] == 1
    saved = load_state(result.path / "checkpoints" / "last.ckpt")
    assert saved["fit"]["partial"]["batch"] == 1 and saved["train_loader"]["position"] == 1
    assert resume(result.path).status == "time_limit"  # the same budget again
    assert resume(result.path, ["train.max_minutes=null"]).status == "completed"


@pytest.mark.slow
def test_resume_can_extend_a_finished_run(quick):
    first = experiment.train(quick("train.epochs=1"))
    with pytest.raises(ConfigError, match=r"completed after 1 epochs; .*train.epochs=11"):
        resume(first.path)
    more = resume(first.path, ["train.epochs=2"])
    assert more.status == "completed" and more.summary["epochs_run"] == 2


def test_resume_refuses_changes_that_shape_training(quick, tmp_path):
    first = experiment.train(quick("train.epochs=1"))
    with pytest.raises(ConfigError, match=r"optim.lr cannot change in a resumed run"):
        resume(first.path, ["optim.lr=0.1", "train.epochs=2"])
    with pytest.raises(ConfigError, match=r"no checkpoints/last.ckpt"):
        resume(tmp_path)


def test_cli_resume_errors_are_one_line_exit_2(tmp_path, capsys):
    from cnnlab.cli import main

    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    assert main(["train", "--resume", str(tmp_path), "-c", "x.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no checkpoints/last.ckpt" in err[0] and "drop -c" in err[1]
