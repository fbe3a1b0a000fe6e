"""The lr finder's step against a training step, in one process (issue 26.5: the finder once
took 2.6x a training step's time):

    python bench/lr_find_speed.py [--steps 200] [overrides ...]

Both time the same TrainParts.step on the same built run (default config on digits unless
overridden): the finder through find_lr (its Sweep schedule, loss smoothing, .item() per step),
the peer as a training epoch takes its steps. Seconds per optimizer step, median of 3.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from cnnlab.analyze.lr_find import _endless, find_lr
from cnnlab.config import load_config
from cnnlab.training import experiment
from cnnlab.training.device import device_name, resolve_device, seed_everything


def training_steps(config, steps: int) -> float:
    """Seconds per step of `steps` training steps, as train_epoch takes them."""
    device = resolve_device(config.train.device)
    seed_everything(config.train.seed)
    parts = experiment.build(config, device).parts
    parts.model.train()
    batches = _endless(parts.train_loader)
    start = time.perf_counter()
    with torch.enable_grad():
        for _ in range(steps):
            for loss, _, _ in parts.step(batches, config.train.accumulate):
                loss.item()  # the loop reads each step's loss for its progress line
    return (time.perf_counter() - start) / steps


def finder_steps(config, steps: int) -> float:
    start = time.perf_counter()
    # end_lr low enough that the sweep never stops early: every step is timed
    result = find_lr(config, start_lr=1e-5, end_lr=1e-3, steps=steps)
    return (time.perf_counter() - start) / len(result.lrs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    config = load_config(overrides=args.overrides)
    rows = {"training steps (the peer)": [], "cnnlab lr-find": []}
    for _ in range(3):
        rows["training steps (the peer)"].append(training_steps(config, args.steps))
        rows["cnnlab lr-find"].append(finder_steps(config, args.steps))
    device = device_name(resolve_device(config.train.device))
    table = Table(
        title=f"{config.data.name}, {args.steps} steps, {device}, torch {torch.__version__}"
    )
    table.add_column("")
    table.add_column("s/step (median of 3)", justify="right")
    table.add_column("vs training", justify="right")
    peer = statistics.median(rows["training steps (the peer)"])
    for name, times in rows.items():
        median = statistics.median(times)
        table.add_row(name, f"{median:.4f}", f"{median / peer:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
