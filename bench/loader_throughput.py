"""Images/s delivered per epoch: cnnlab's loaders vs torchvision datasets + DataLoader.

Both sides deliver the same thing, normalised float batches on the training device, from the
same real Fashion-MNIST training set, at the same batch size, in this one process:

    python bench/loader_throughput.py [--data DIR] [--batch-size 256] [--epochs 3] [--device auto]

--data holds the four IDX files (gzipped or not); by default the system location that Debian's
dataset-fashion-mnist installs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torchvision
from common import (
    SYSTEM_FMNIST,
    describe,
    median_images_per_second,
    print_comparison,
    stage_torchvision_fashion_mnist,
)
from torch.utils.data import DataLoader
from torchvision import transforms

from cnnlab import data
from cnnlab.config.schema import DataConfig
from cnnlab.training.device import resolve_device


def torchvision_peer(raw: Path, root: Path, mean: float, std: float, args, device):
    """The hand-written way: torchvision's FashionMNIST + ToTensor/Normalize + DataLoader."""
    stage_torchvision_fashion_mnist(raw, root)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    dataset = torchvision.datasets.FashionMNIST(str(root), train=True, transform=tf)
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
        drop_last=True,
    )

    def batches():
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    return batches, len(dataset) // args.batch_size * args.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SYSTEM_FMNIST)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)

    bundle = data.build(DataConfig(name="fashion-mnist", root=str(args.data), val_split=10))
    train, info = bundle.train, bundle.info
    common = dict(batch_size=args.batch_size, device=device, mean=info.mean, std=info.std)
    device_loader = data.DeviceLoader(train, shuffle=True, **common)
    stream_loader = data.StreamLoader(train, shuffle=True, num_workers=args.workers, **common)
    n_cnnlab = len(device_loader) * args.batch_size

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        peer, n_peer = torchvision_peer(
            args.data, Path(tmp), info.mean[0], info.std[0], args, device
        )
        candidates = [
            ("torchvision datasets + DataLoader", peer, n_peer, args.workers),
            ("cnnlab DeviceLoader", lambda: iter(device_loader), n_cnnlab, 0),
            ("cnnlab StreamLoader", lambda: iter(stream_loader), n_cnnlab, args.workers),
        ]
        for name, batches, n, workers in candidates:
            rows.append((name, workers, median_images_per_second(batches, n, args.epochs, device)))

    print_comparison(
        f"loader throughput, Fashion-MNIST train ({len(train):,} images)",
        rows,
        f"{describe(device)}, batch {args.batch_size}, {args.epochs} epochs each",
        epoch_images=len(train),
    )


if __name__ == "__main__":
    main()
