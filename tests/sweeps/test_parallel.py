"""Worker processes sharing one study, killed at random: every trial is accounted for
(complete, pruned, or failed and retried), none is lost, no grid point runs twice. On the
journal file (the default) and on a real PostgreSQL server started in a temp directory; and
Ctrl-C, then a resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from cnnlab.cli import main
from cnnlab.sweeps import study as studies
from cnnlab.track.registry import load_run

pytestmark = pytest.mark.slow
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def launch(path: Path, out: Path, *flags: str) -> subprocess.Popen:
    """`cnnlab sweep` as a user starts it, in its own process."""
    with open(out, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cnnlab", "sweep", str(path), *flags],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def kill_workers(proc, load, kills: int, seed: int = 0) -> dict[int, int]:
    """SIGKILL the worker of a running trial (one whose run has started), now and then, until
    `kills` trials of different grid points were hit; returns {trial number: pid}."""
    rng, killed, points = random.Random(seed), {}, set()
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
        if len(killed) >= kills or rng.random() < 0.4:
            continue
        try:
            running = load().get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        except Exception:  # noqa: BLE001  (the study is not created yet)
            continue
        running = [
            t
            for t in running
            if studies.RUN in t.user_attrs and _point(t) not in points and t.number not in killed
        ]
        if running:
            trial = rng.choice(running)
            pid = int(trial.user_attrs[studies.WORKER].rpartition(":")[2])
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed[trial.number] = pid
            points.add(_point(trial))
    proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    return killed


def _point(trial) -> str:
    return json.dumps(trial.system_attrs.get("fixed_params"), sort_keys=True)


def check_accounted(study: optuna.Study, killed: dict[int, int], points: int) -> None:
    trials = study.get_trials(deepcopy=False)
    real = [t for t in trials if not t.user_attrs.get(studies.SPARE)]
    assert all(t.state.is_finished() for t in trials)  # nothing left running or waiting
    retried = {n for t in real for n in t.system_attrs.get("retry_history", [])}
    by_point = defaultdict(list)
    for trial in real:
        by_point[_point(trial)].append(trial)
    assert len(by_point) == points  # none lost
    for attempts in by_point.values():
        done = [t for t in attempts if t.state in FINISHED]
        assert len(done) == 1, [(t.number, t.state) for t in attempts]  # none run twice
        for t in attempts:
            if t.state == TrialState.FAIL:
                assert t.number in retried, t.number  # failed attempts were retried
    for number in killed:
        trial = trials[number]
        assert trial.state == TrialState.FAIL and number in retried
        assert next(t for t in real if studies.retry_of(t) == number)  # a retry of it ran
    assert all(t.state == TrialState.FAIL for t in trials if t.user_attrs.get(studies.SPARE))


def check_outputs(sweep_dir: Path, study: optuna.Study, killed: dict[int, int]) -> None:
    table = pd.read_csv(sweep_dir / "trials.csv").set_index("trial")
    real = [t for t in study.get_trials() if not t.user_attrs.get(studies.SPARE)]
    assert sorted(table.index) == [t.number for t in real]
    for number in killed:
        assert table.loc[number, "error"] == "its worker stopped, re-queued"
    for t in real:
        if t.state == TrialState.COMPLETE:
            run = load_run(sweep_dir / t.user_attrs[studies.RUN])
            assert run.summary["status"] == "completed"


def sweep_killing_workers(
    path: Path, tmp_path: Path, storage: str, workers: int, kills: int, points: int
) -> tuple[optuna.Study, dict[int, int], str]:
    """Run the sweep in `path` with `workers` workers, SIGKILL `kills` of them mid-trial, and
    check it still ends well: exit 0, every grid point accounted for, every run's outputs.
    (the study, the killed trials, the sweep's output)."""
    proc = launch(path, tmp_path / "sweep.out", "--workers", str(workers))

    def load() -> optuna.Study:
        return optuna.load_study(study_name="sweep", storage=studies.open_storage(storage))

    killed = kill_workers(proc, load, kills=kills)
    out = (tmp_path / "sweep.out").read_text()
    assert proc.returncode == 0, out
    assert killed, "no worker was running a trial to kill"
    study = load()
    check_accounted(study, killed, points=points)
    check_outputs(tmp_path / "runs" / "sweep", study, killed)
    return study, killed, out


def test_8_workers_20_trials_on_the_journal_with_workers_killed(spec_file, tmp_path):
    lrs = [round(0.002 * (i + 1), 4) for i in range(10)]
    path = spec_file(
        base={"overrides": {"train.epochs": 2}},
        space={"optim.lr": lrs, "model.width": [4, 6]},
    )
    journal = tmp_path / "runs" / "sweep" / "study.journal"
    _, killed, out = sweep_killing_workers(path, tmp_path, str(journal), 8, kills=4, points=20)
    for number in killed:
        assert f"trial {number} re-queued" in out


def test_workers_on_postgresql_a_killed_ones_trial_is_requeued_by_the_heartbeat(
    spec_file, tmp_path, postgres_server
):
    path = spec_file(
        base={"overrides": {"train.epochs": 3}},
        space={"optim.lr": [0.005, 0.01, 0.02], "model.width": [4, 6]},
        storage=postgres_server,
        heartbeat=1,
    )
    study, killed, out = sweep_killing_workers(
        path, tmp_path, postgres_server, 2, kills=1, points=6
    )
    (number,) = killed
    (retry,) = [t for t in study.get_trials() if studies.retry_of(t) == number]
    # Optuna's RetryHeartbeatStaleTrialCallback wrote this retry: the heartbeat found it.
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == number
    # not by the watcher (its line is "trial N re-queued"): it leaves RDB trials to the heartbeat
    assert f"trial {number} re-queued" not in out


def test_ctrl_c_keeps_the_run_requeues_its_trial_and_a_resume_finishes_the_grid(
    spec_file, tmp_path
):
    path = spec_file(
        base={"overrides": {"train.epochs": 8, "model.width": 8}}, space={"optim.lr": [0.003, 0.01]}
    )
    with open(tmp_path / "sweep.out", "w") as log:  # a session of its own, as a terminal's
        proc = subprocess.Popen(
            [sys.executable, "-m", "cnnlab", "sweep", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sweep_dir = tmp_path / "runs" / "sweep"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:  # until an epoch is logged
        time.sleep(0.3)
        if any(p.stat().st_size for p in sweep_dir.glob("*trial-0000/metrics.jsonl")):
            break
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's process group
    assert proc.wait(timeout=120) == 130, (tmp_path / "sweep.out").read_text()
    first = pd.read_csv(sweep_dir / "trials.csv").set_index("trial").loc[0]
    assert (first["state"], first["error"]) == ("failed", "interrupted, re-queued")
    run = load_run(sweep_dir / first["run"])
    assert run.summary["status"] == "interrupted"
    assert (run.path / "checkpoints" / "last.ckpt").is_file()

    assert main(["sweep", str(sweep_dir)]) == 0
    table = pd.read_csv(sweep_dir / "trials.csv")
    done = table[table["state"] == "complete"]
    assert sorted(done["optim.lr"]) == [0.003, 0.01]  # each point once, the stopped one again
    assert done.set_index("optim.lr").loc[0.003, "retry_of"] == 0
