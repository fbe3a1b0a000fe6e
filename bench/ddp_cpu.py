"""Data-parallel throughput: the same run on 1 process and on N (`cnnlab train --nproc N`),
measured side by side from this one script:

    python bench/ddp_cpu.py [--data DIR] [--nprocs 1,2] [--threads 1] [--epochs 1]
                            [--device cpu] [--smoke]

Each run is `python -m cnnlab train recipe=cpu-fast` on real Fashion-MNIST (54k train images,
the recipe's global batch of 128), every process with --threads OpenMP threads (1: on a 2-core CPU,
two processes of one thread each use the same cores as one process of two would). images/s is
summary.json's: training images over the seconds inside training steps (global images, counted
by rank 0), so it includes the gradient all-reduce of every step but not start-up. On one
process the run takes no distributed path at all (no process group, no DistributedDataParallel):
1 process is the peer. --device cuda --nprocs 1,2,4,8 measures a multi-GPU machine the same way
(one process per GPU); --smoke trains on 2 classes only, to check the script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import SYSTEM_FMNIST
from rich.console import Console
from rich.table import Table


def run(nproc: int, data: Path, runs: Path, args: argparse.Namespace) -> dict:
    launch = ["--nproc", str(nproc)] if nproc > 1 else []
    overrides = [
        "recipe=cpu-fast",
        "data.name=fashion-mnist",
        f"data.root={data}",
        f"train.epochs={args.epochs}",
        f"train.device={args.device}",
        f"run.dir={runs}",
        *(["data.classes=[0, 1]", "data.val_split=256"] if args.smoke else []),
    ]
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", *launch, *overrides],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"{nproc} process(es) failed:\n{done.stderr}")
    (path,) = list(runs.iterdir())
    return json.loads((path / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SYSTEM_FMNIST, help="Fashion-MNIST IDX dir")
    parser.add_argument("--nprocs", default="1,2", help="process counts, the first is the peer")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads per process")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true", help="2 classes only: a quick check")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in (int(n) for n in args.nprocs.split(",")):
            runs = Path(tmp) / f"n{nproc}"
            summary = run(nproc, args.data, runs, args)
            rows.append((nproc, summary))
    table = Table(title="images/s of the same run on 1 and N processes")
    for col in ("processes", "threads each", "images/s", "vs 1st", "train s", "val acc"):
        table.add_column(col, justify="right")
    peer = rows[0][1]["images_per_second"]
    for nproc, s in rows:
        table.add_row(
            str(nproc),
            str(args.threads),
            f"{s['images_per_second']:,.0f}",
            f"{s['images_per_second'] / peer:.2f}×",
            f"{s['train_seconds']:.1f}",
            f"{s['final_val_acc']:.2%}",
        )
    console = Console(width=110)
    console.print(table)
    console.print(f"device {rows[0][1]['device']}; torch {rows[0][1]['versions']['torch']}")


if __name__ == "__main__":
    main()
