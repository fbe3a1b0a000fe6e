"""Sweep throughput: trials/hour of one small sweep with --workers 1 (the peer: one trial at a
time, in the `cnnlab sweep` process) and K = 2, 4 worker processes, on this machine:

    python bench/sweep_throughput.py [--trials 12] [--workers 1,2,4] [--epochs 3]

Each run is `cnnlab sweep` as a user starts it (its own process: imports, spec check, study on
the journal file, workers, trials.csv and plots at the end), on a random search over optim.lr
and optim.weight_decay for the default CNN on digits. Wall seconds include everything; the
median trial is Optuna's duration of a complete trial (it grows when workers share cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table


def spec(root: Path, trials: int, epochs: int) -> dict:
    return {
        "name": "throughput",
        "base": {
            "overrides": {"train.epochs": epochs, "model.width": 8, "run.dir": str(root)},
        },
        "space": {
            "optim.lr": {"low": 1.0e-3, "high": 0.03, "log": True},
            "optim.weight_decay": {"low": 1.0e-6, "high": 1.0e-3, "log": True},
        },
        "sampler": {"name": "random", "seed": 0},
        "trials": trials,
    }


def run(workers: int, trials: int, epochs: int, scratch: Path) -> tuple[float, float]:
    """(wall seconds, median seconds of a trial) of one sweep with `workers`."""
    root = scratch / f"workers-{workers}"
    path = scratch / f"spec-{workers}.yaml"
    path.write_text(yaml.safe_dump(spec(root, trials, epochs)))
    # Every core for torch, as a user's shell gives it: one worker uses them all, K workers
    # get cores // K threads each from `cnnlab sweep` itself.
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "cnnlab", "sweep", str(path), "--workers", str(workers)],
        check=True,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    wall = time.perf_counter() - start
    table = pd.read_csv(root / "throughput" / "trials.csv")
    done = table[table["state"] == "complete"]
    assert len(done) == trials, table
    return wall, statistics.median(done["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated; the first is the peer")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    counts = [int(k) for k in args.workers.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for k in counts:
            wall, trial = run(k, args.trials, args.epochs, Path(scratch))
            rows.append((k, wall, trial, args.trials / wall * 3600))
    cpu = _cpu_name()
    table = Table(
        title=f"{args.trials} trials of digits, default CNN width 8, {args.epochs} epochs; "
        f"{cpu}, {len(os.sched_getaffinity(0))} cores"
    )
    for column in ("workers", "wall s", "median trial s", "trials/hour", "vs 1 worker"):
        table.add_column(column, justify="right")
    base = rows[0][3]
    for k, wall, trial, per_hour in rows:
        cells = (f"{wall:.1f}", f"{trial:.1f}", f"{per_hour:,.0f}", f"{per_hour / base:.2f}×")
        table.add_row(str(k), *cells)
    console = Console()
    console.print(table)
    console.print(f"load average during the bench: {os.getloadavg()[0]:.1f}", style="dim")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
