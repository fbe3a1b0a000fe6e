"""What every benchmark shares: timing passes over batches, and the side-by-side table."""

from __future__ import annotations

import gzip
import shutil
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from rich.console import Console
from rich.table import Table

from cnnlab.training.device import device_name

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


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int | None = None) -> float:
    """Best FLOP/s of a square matmul in `dtype` on `device` (4096 on the CPU, 8192 on a GPU):
    the measured peak that MFU divides by."""
    size = size or (8192 if device.type == "cuda" else 4096)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(3 if device.type == "cpu" else 20):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def train_flops_per_image(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """FLOPs of one training step per image (forward + backward, as torch's FlopCounterMode
    counts them: matmuls and convolutions), on a CPU copy of `model` in train mode."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    net = copy.deepcopy(model).cpu().float().train()
    x = torch.randn(8, *shape)
    with FlopCounterMode(display=False) as counter:
        net(x).float().sum().backward()
    return counter.get_total_flops() / 8


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timed:
    accuracy: float  # test accuracy
    seconds: float  # without reading the files
    train_images_per_second: float = 0.0  # inside training steps only (summary.json's)


def cnnlab_run(recipe: str, raw: Path, seed: int, runs: Path, *overrides: str) -> Timed:
    """One `cnnlab train recipe=...` (or `cnnlab train FILE.yaml`) on the Fashion-MNIST IDX
    files in `raw`."""
    import cnnlab
    from cnnlab import data

    config = fmnist_config(recipe, raw, runs, f"train.seed={seed}", *overrides)
    start = time.perf_counter()
    data.build(config.data)  # what train() spends reading and splitting the files
    reading = time.perf_counter() - start
    start = time.perf_counter()
    result = cnnlab.train(config)
    seconds = time.perf_counter() - start - reading
    return Timed(result.summary["test_acc"], seconds, result.summary["images_per_second"])


def fmnist_config(recipe: str, raw: Path, runs: Path, *overrides: str):
    """`recipe`: a shipped recipe's name, or a config file (bench/drafts/*.yaml)."""
    import cnnlab

    is_file = recipe.endswith((".yaml", ".yml"))
    return cnnlab.load_config(
        [recipe] if is_file else [],
        overrides=[
            *([] if is_file else [f"recipe={recipe}"]),
            "data.name=fashion-mnist",
            f"data.root={raw}",
            f"run.dir={runs}",
            *overrides,
        ],
    )


def recipe_train_flops(config) -> float:
    """Training FLOPs per image of the net `config` builds for its data."""
    from cnnlab import data, models

    info = data.build(config.data).info
    model = models.build(config, info, weights=False)
    return train_flops_per_image(model, (info.channels, *info.image_size))
