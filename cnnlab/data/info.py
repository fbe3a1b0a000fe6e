"""`cnnlab data info`: what a dataset holds, as a table, and a sample grid PNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from cnnlab.data.imageset import DataBundle, DatasetInfo
from cnnlab.imagegrid import sample_by_class, save_grid


@dataclass(frozen=True)
class SplitCounts:
    name: str
    total: int
    per_class: list[int]


def split_counts(bundle: DataBundle) -> list[SplitCounts]:
    n = bundle.info.num_classes
    splits = [("train", bundle.train), ("val", bundle.val), ("test", bundle.test)]
    return [
        SplitCounts(name, len(s), torch.bincount(s.labels, minlength=n).tolist())
        for name, s in splits
        if s is not None
    ]


def write_sample_grid(bundle: DataBundle, path: Path) -> None:
    train, classes = bundle.train, bundle.info.classes
    rows = [
        (classes[c], train.images[index])
        for c, index in sample_by_class(train.labels, len(classes))
    ]
    save_grid(rows, path, title=f"{bundle.info.name}: training samples")


def source_line(info: DatasetInfo) -> str:
    """'fashion-mnist read from /usr/share/datasets/fashion-mnist': the first line of `data
    info` and of a run, so a fall-back to another copy of the data is never silent."""
    return f"{info.name} read from {info.location}" if info.location else info.name


def show(bundle: DataBundle, console: Console, max_classes: int = 50) -> None:
    """Where the data was read from; classes, counts per split (per class when there are few),
    size, channels, mean/std."""
    info = bundle.info
    console.print(source_line(info), markup=False, highlight=False, soft_wrap=True)
    counts = split_counts(bundle)
    overview = Table(title=f"dataset {info.name}", show_header=False, title_justify="left")
    overview.add_column("what", style="bold")
    overview.add_column("value")
    overview.add_row("classes", str(info.num_classes))
    for split in counts:
        overview.add_row(f"{split.name} images", f"{split.total:,}")
    overview.add_row("image size", f"{info.image_size[0]}×{info.image_size[1]}")
    overview.add_row("channels", str(info.channels))
    overview.add_row("mean", ", ".join(f"{m:.4f}" for m in info.mean))
    overview.add_row("std", ", ".join(f"{s:.4f}" for s in info.std))
    if bundle.skipped:
        overview.add_row("skipped files", f"{len(bundle.skipped)} (unreadable)")
    console.print(overview)
    per_class = Table(title="images per class", title_justify="left")
    per_class.add_column("class")
    for split in counts:
        per_class.add_column(split.name, justify="right")
    shown = range(min(info.num_classes, max_classes))
    for c in shown:
        per_class.add_row(info.classes[c], *(str(split.per_class[c]) for split in counts))
    if info.num_classes > max_classes:
        low_high = [f"{min(s.per_class)}–{max(s.per_class)}" for s in counts]
        per_class.add_row(f"… {info.num_classes - max_classes} more (min–max)", *low_high)
    console.print(per_class)
    for line in bundle.skipped:
        console.print(f"skipped {line}", markup=False, highlight=False, soft_wrap=True)
