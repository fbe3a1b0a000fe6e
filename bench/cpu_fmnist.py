"""Time to a good model on CPU: cnnlab's cpu-fast recipe vs a hand-written torchvision loop.

Both train on the real Fashion-MNIST training set and score the real test set, in this one
process, on the CPU:

    python bench/cpu_fmnist.py [--data DIR] [--seeds 5] [--peer-seeds 1] [--peer-epochs 3]

The peer is the loop users write by hand (the PyTorch MNIST example's shape): torchvision's
FashionMNIST + ToTensor/Normalize + DataLoader(2 workers), a 32-64 conv net with a 128-unit
hidden layer, Adam 1e-3, batch 64, fp32. Seconds exclude reading the files from disk (cnnlab's
data.build, torchvision's dataset constructor) and include everything else: model build,
training, per-epoch validation (cnnlab), and the test evaluation. The last line is the MFU of
cnnlab's training steps: their FLOP/s (torch's FlopCounterMode count per image x summary.json's
training images/s) over the measured fp32 matmul peak of this CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from common import (
    SYSTEM_FMNIST,
    Timed,
    cnnlab_run,
    fmnist_config,
    matmul_peak,
    recipe_train_flops,
    stage_torchvision_fashion_mnist,
)
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms


def peer_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 12 * 12, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def peer_run(root: Path, seed: int, epochs: int) -> Timed:
    """Test accuracy and seconds of the hand-written loop."""
    torch.manual_seed(seed)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])
    train = torchvision.datasets.FashionMNIST(str(root), train=True, transform=tf)
    test = torchvision.datasets.FashionMNIST(str(root), train=False, transform=tf)
    start = time.perf_counter()
    loader = DataLoader(train, batch_size=64, shuffle=True, num_workers=2)
    model = peer_net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(test, batch_size=1000, num_workers=2):
            correct += (model(x).argmax(1) == y).sum().item()
    return Timed(correct / len(test), time.perf_counter() - start)


def row(name: str, results: list[Timed], peer_seconds: float | None) -> list[str]:
    accs = [100 * r.accuracy for r in results]
    spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
    seconds = statistics.median(r.seconds for r in results)
    ratio = f"{peer_seconds / seconds:.1f}× faster" if peer_seconds else "peer"
    return [
        name,
        f"{statistics.mean(accs):.2f} ± {spread:.2f}",
        f"{seconds:.1f}",
        str(len(accs)),
        ratio,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SYSTEM_FMNIST, help="the 4 IDX files")
    parser.add_argument("--recipe", default="cpu-fast")
    parser.add_argument("--seeds", type=int, default=5, help="cnnlab runs")
    parser.add_argument("--peer-seeds", type=int, default=1, help="peer runs (~1 min/epoch)")
    parser.add_argument("--peer-epochs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        stage_torchvision_fashion_mnist(args.data, Path(tmp) / "tv")
        peer = [peer_run(Path(tmp) / "tv", s, args.peer_epochs) for s in range(args.peer_seeds)]
        ours = [
            cnnlab_run(args.recipe, args.data, s, Path(tmp) / "runs", "train.device=cpu")
            for s in range(args.seeds)
        ]
        flops = recipe_train_flops(fmnist_config(args.recipe, args.data, Path(tmp) / "runs"))
    peak = matmul_peak(torch.device("cpu"), torch.float32)

    peer_seconds = statistics.median(r.seconds for r in peer)
    table = Table(title="Fashion-MNIST test accuracy and time on CPU")
    for col in ["", "test acc % (mean ± std)", "seconds (median)", "runs", "vs peer"]:
        table.add_column(col, justify="left" if col == "" else "right")
    table.add_row(*row(f"torchvision loop, small ConvNet, {args.peer_epochs} epochs", peer, None))
    table.add_row(*row(f"cnnlab recipe={args.recipe}", ours, peer_seconds))
    console = Console(width=120)
    console.print(table)
    console.print(
        f"{os.cpu_count()} CPU threads, torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}, {time.strftime('%Y-%m-%d')}; seconds exclude reading files"
    )
    rate = statistics.median(r.train_images_per_second for r in ours)
    console.print(
        f"MFU of cnnlab's training steps: {flops / 1e6:.1f} MFLOP per image x {rate:,.0f} images/s"
        f" = {flops * rate / 1e9:.1f} GFLOP/s, {100 * flops * rate / peak:.0f}% of the measured"
        f" fp32 matmul peak ({peak / 1e9:.0f} GFLOP/s, 4096² sgemm)"
    )


if __name__ == "__main__":
    main()
