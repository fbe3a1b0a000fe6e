"""Transfer on real Fashion-MNIST: a net trained on classes 0-4 reused for classes 5-9.

    python bench/transfer_fmnist.py [--data DIR] [--seeds 3] [--epochs 3]

Per seed, in this one process: the source run trains the cpu-fast net on T-shirt/top, Trouser,
Pullover, Dress, Coat; then five runs on Sandal, Shirt, Sneaker, Bag, Ankle boot with the same
optimizer, schedule and epochs (the same budget), differing only in what they start from and
what trains:

- frozen pretrained: the source's features, computed once; only a linear head trains;
- frozen random: the same, on the same architecture with fresh random weights (the control);
- fine-tuned: the source's weights, everything trains (backbone lr x transfer.backbone_lr_mult);
- unfrozen after 1: frozen for the first epoch, then fine-tuned;
- from scratch: fresh weights, everything trains at the full lr.

Accuracy is on the real test split of those classes (5,000 images). Seconds exclude reading the
files and include building, feature extraction, training and evaluation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import SYSTEM_FMNIST
from rich.console import Console
from rich.table import Table

import cnnlab
from cnnlab import data
from cnnlab.training.experiment import RunResult, train

SOURCE, TARGET = "[0,1,2,3,4]", "[5,6,7,8,9]"
VARIANTS = {
    "frozen pretrained (cached features)": [],
    "frozen random (control)": ["transfer.pretrained=false"],
    "fine-tuned (backbone lr x0.1)": ["transfer.freeze=false"],
    "frozen 1 epoch, then fine-tuned": ["transfer.unfreeze_after=1"],
    "from scratch (same net)": [
        "transfer.pretrained=false",
        "transfer.freeze=false",
        "transfer.backbone_lr_mult=1",
    ],
}


def run(raw: Path, runs: Path, seed: int, overrides: list[str]) -> tuple[float, float, RunResult]:
    """(test accuracy, seconds without reading the files, result) of one run."""
    config = cnnlab.load_config(
        overrides=[
            "data.name=fashion-mnist",
            f"data.root={raw}",
            "data.val_split=2000",
            "optim.lr=0.005",
            "schedule.name=onecycle",
            "train.batch_size=128",
            "train.channels_last=true",
            "train.device=cpu",
            f"train.seed={seed}",
            f"run.dir={runs}",
            *overrides,
        ]
    )
    start = time.perf_counter()
    data.build(config.data)  # what train() spends reading the files
    reading = time.perf_counter() - start
    start = time.perf_counter()
    result = train(config, Console(quiet=True))  # the table below is the output
    return result.summary["test_acc"], time.perf_counter() - start - reading, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SYSTEM_FMNIST, help="the 4 IDX files")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="of every run, source included")
    args = parser.parse_args()

    results: dict[str, list[tuple[float, float]]] = {"source (classes 0-4)": []}
    results |= {name: [] for name in VARIANTS}
    head_seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        for seed in range(args.seeds):
            epochs = f"train.epochs={args.epochs}"
            source = ["recipe=cpu-fast", f"data.classes={SOURCE}", epochs, "run.name=source"]
            acc, seconds, result = run(args.data, runs, seed, source)
            results["source (classes 0-4)"].append((acc, seconds))
            backbone = result.path
            for name, extra in VARIANTS.items():
                target = [f"data.classes={TARGET}", f"model.backbone={backbone}", epochs, *extra]
                acc, seconds, result = run(args.data, runs, seed, target)
                results[name].append((acc, seconds))
                if not extra:
                    head_seconds.append(result.summary["train_seconds"])

    table = Table(title="Fashion-MNIST classes 5-9 from a net trained on classes 0-4 (CPU)")
    for col in ["", "test acc % (mean ± std)", "seconds (median)", "runs"]:
        table.add_column(col, justify="left" if col == "" else "right")
    for name, rows in results.items():
        accs = [100 * a for a, _ in rows]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        table.add_row(
            name,
            f"{statistics.mean(accs):.2f} ± {std:.2f}",
            f"{statistics.median(s for _, s in rows):.1f}",
            str(len(rows)),
        )
    console = Console(width=120)
    console.print(table)
    console.print(
        f"head training on cached features of ~28,000 images: median "
        f"{statistics.median(head_seconds):.2f} s for {args.epochs} epochs"
    )
    console.print(
        f"{os.cpu_count()} CPU threads, torch {torch.__version__}, {time.strftime('%Y-%m-%d')};"
        " seconds exclude reading files"
    )


if __name__ == "__main__":
    main()
