"""Sweeps end to end in this process: tiny real trainings on digits, nothing mocked (each test
trains a few one-second runs, and draws Optuna's plots: slow)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

import cnnlab
from cnnlab.cli import main
from cnnlab.config import load_config
from cnnlab.report import write_report
from cnnlab.track.registry import load_run
from cnnlab.track.runindex import find_run_dirs

pytestmark = pytest.mark.slow


def test_a_2x2_grid_runs_4_trials_and_running_it_again_adds_none(spec_file, tmp_path, capsys):
    path = spec_file(space={"optim.lr": [0.003, 0.01], "model.width": [4, 6]})
    trials = cnnlab.sweep(path, quiet=True)
    sweep_dir = tmp_path / "runs" / "sweep"
    assert len(trials) == 4 and set(trials["state"]) == {"complete"}
    points = {(row["optim.lr"], row["model.width"]) for _, row in trials.iterrows()}
    assert points == {(0.003, 4), (0.003, 6), (0.01, 4), (0.01, 6)}
    runs = [load_run(p) for p in find_run_dirs(sweep_dir)]
    assert len(runs) == 4 and {r.summary["status"] for r in runs} == {"completed"}
    assert pd.read_csv(sweep_dir / "trials.csv")["trial"].tolist() == trials["trial"].tolist()

    best = trials.loc[trials["val_acc"].idxmax()]
    config = load_config([sweep_dir / "best.yaml"])  # what `cnnlab train -c best.yaml` reads
    assert (config.optim.lr, config.model.width) == (best["optim.lr"], best["model.width"])
    assert config.run.dir == str(tmp_path / "runs")  # a new run, not inside the sweep

    assert main(["sweep", str(path)]) == 0  # again: the grid is done
    assert "grid of 4 points, 4 done" in capsys.readouterr().out
    assert len(find_run_dirs(sweep_dir)) == 4
    assert len(cnnlab.sweep(sweep_dir, quiet=True)) == 4  # resumed from its directory

    assert main(["sweep", "show", str(sweep_dir)]) == 0
    shown = capsys.readouterr().out
    assert f"best: trial {best['trial']}, val_acc {best['val_acc']:.4f}" in shown
    assert (sweep_dir / "history.png").is_file() and (sweep_dir / "slice.png").is_file()

    page = write_report([sweep_dir], tmp_path / "report.html").read_text()
    sweep_part = page[page.index("<h2>Sweep sweep</h2>") : page.index("<h2>Comparison</h2>")]
    assert "optimisation history" in sweep_part and "parallel coordinates" in sweep_part
    assert sweep_part.count('src="data:image/png;base64,') == 4  # the sweep's four plots
    assert sweep_part.count("<tr>") == 1 + 4  # the trials table: its header and 4 trials


def test_a_random_sweep_resumed_with_a_larger_budget_runs_up_to_it(spec_file):
    path = spec_file(
        space={"optim.lr": {"low": 1.0e-3, "high": 0.03, "log": True}},
        sampler={"name": "random", "seed": 0},
        trials=2,
    )
    assert len(cnnlab.sweep(path, quiet=True)) == 2
    trials = cnnlab.sweep(path, trials=3, quiet=True)
    assert trials["trial"].tolist() == [0, 1, 2] and set(trials["state"]) == {"complete"}
    assert len(cnnlab.sweep(path, trials=3, quiet=True)) == 3


def test_a_failed_or_diverged_trial_keeps_its_error_and_the_sweep_goes_on(spec_file, tmp_path):
    path = spec_file(
        base={"overrides": {"optim.name": "sgd", "train.epochs": 2}},
        space={"data.classes": [[0, 1], [0, 99]], "optim.lr": [0.05, 1.0e6]},
    )
    trials = cnnlab.sweep(path, quiet=True).set_index("trial")
    ok = trials["data.classes"] == "[0, 1]"
    fine = trials[ok & (trials["optim.lr"] == 0.05)]
    diverged = trials[ok & (trials["optim.lr"] > 1)]
    assert fine["state"].tolist() == ["complete"]
    assert diverged["state"].tolist() == ["failed"]
    assert diverged["error"].iloc[0].startswith("diverged: ")
    run = load_run(tmp_path / "runs" / "sweep" / diverged["run"].iloc[0])
    assert run.summary["status"] == "diverged"
    bad_class = trials[~ok]
    assert bad_class["state"].tolist() == ["failed", "failed"]
    assert all("99" in e for e in bad_class["error"])


def test_the_median_pruner_stops_an_absurd_lr_before_its_last_epoch(spec_file, tmp_path):
    path = spec_file(
        base={"overrides": {"train.epochs": 3, "model.width": 8}},
        space={"optim.lr": [0.02, 0.01, 1.0e-6]},  # a grid runs its points in this order
        pruner={"name": "median", "n_startup_trials": 2},
    )
    trials = cnnlab.sweep(path, quiet=True).set_index("optim.lr")
    assert trials.loc[0.02, "state"] == trials.loc[0.01, "state"] == "complete"
    assert trials.loc[1.0e-6, "state"] == "pruned"
    run = load_run(tmp_path / "runs" / "sweep" / trials.loc[1.0e-6, "run"])
    assert run.summary["status"] == "pruned"
    assert run.summary["epochs_run"] < 3
    assert (run.path / "checkpoints" / "last.ckpt").is_file()  # it stopped with a checkpoint


def test_a_trial_with_repeats_scores_the_mean_of_its_seeds(spec_file, tmp_path):
    path = spec_file(space={"optim.lr": [0.01]}, repeats=2)
    trials = cnnlab.sweep(path, quiet=True)
    group = tmp_path / "runs" / "sweep" / trials["run"].iloc[0]
    record = json.loads((group / "group.json").read_text())
    assert record["seeds"] == [0, 1]
    runs = [load_run(p) for p in sorted(p for p in group.iterdir() if p.is_dir())]
    assert [r.config["train"]["seed"] for r in runs] == [0, 1]
    mean = math.fsum(r.summary["best_val_acc"] for r in runs) / 2
    assert trials["val_acc"].iloc[0] == pytest.approx(mean)
    assert record["metrics"]["best_val_acc"]["mean"] == pytest.approx(mean)
