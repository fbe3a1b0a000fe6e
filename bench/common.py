"""What every benchmark shares: timing passes over batches, and the side-by-side table."""

from __future__ import annotations

import gzip
import shutil
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torchvision
from rich.console import Console
from rich.table import Table

from cnnlab.train.device import device_name

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


def stage_torchvision_fashion_mnist(raw: Path, root: Path) -> None:
    """Copy the IDX files in `raw` (gzipped or not) to root/FashionMNIST/raw/, uncompressed,
    where torchvision.datasets.FashionMNIST(root) reads them without downloading."""
    target = root / "FashionMNIST" / "raw"
    target.mkdir(parents=True)
    for f in raw.iterdir():
        if f.name.endswith(".gz"):
            with gzip.open(f) as src, open(target / f.name[:-3], "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy(f, target / f.name)


def median_images_per_second(
    batches: Callable[[], Iterable], n_images: int, passes: int, device: torch.device
) -> float:
    """Median images/s over full passes; the device is synchronised before the clock stops."""
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        for x, _labels in batches():
            last = x
        if device.type == "cuda":
            torch.cuda.synchronize()
        assert last.dtype == torch.float32 and last.device.type == device.type
        rates.append(n_images / (time.perf_counter() - start))
    return statistics.median(rates)


def print_comparison(
    title: str, rows: list[tuple[str, int, float]], setup: str, epoch_images: int | None = None
) -> None:
    """rows: (name, workers, images/s), the peer first; ratios are to the peer."""
    table = Table(title=title)
    columns = ["", "workers", "images/s (median)"]
    columns += ["s/epoch"] if epoch_images else []
    for col in [*columns, "vs peer"]:
        table.add_column(col, justify="left" if col == "" else "right")
    for name, workers, rate in rows:
        epoch = [f"{epoch_images / rate:.3f}"] if epoch_images else []
        table.add_row(name, str(workers), f"{rate:,.0f}", *epoch, f"{rate / rows[0][2]:.1f}×")
    console = Console(width=110)
    console.print(table)
    console.print(f"{setup}; torch {torch.__version__}, torchvision {torchvision.__version__}")


def describe(device: torch.device) -> str:
    return f"device {device_name(device)}"
