"""Augmented images/s: cnnlab's batched on-device pipeline vs torchvision.transforms.v2 applied
per sample in a DataLoader, the same flip + crop + colour jitter + cutout, in this one process:

    python bench/augment_throughput.py [--images 20000] [--batch-size 512] [--workers 2]

Both sides turn uint8 32×32×3 images into augmented, normalised float batches on the device.
"""

from __future__ import annotations

import argparse

import torch
from common import describe, median_images_per_second, print_comparison
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from cnnlab import augment
from cnnlab.config.schema import AugmentConfig
from cnnlab.data import DeviceLoader, ImageSet
from cnnlab.training.device import resolve_device

PIPELINE = [
    {"op": "flip"},
    {"op": "crop", "padding": 4},
    {"op": "color_jitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4},
    {"op": "cutout", "size": 8},
]
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


class PerSample(Dataset):
    """What a hand-written loop does: one image at a time through v2 transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels
        self.transform = v2.Compose(
            [
                v2.RandomHorizontalFlip(),
                v2.RandomCrop(32, padding=4),
                v2.ColorJitter(0.4, 0.4, 0.4),
                v2.ToDtype(torch.float32, scale=True),
                v2.RandomErasing(p=1.0, scale=(64 / 1024, 64 / 1024), ratio=(1.0, 1.0)),  # 8×8
                v2.Normalize(MEAN, STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (args.images,), generator=gen)

    peer = DataLoader(
        PerSample(images, labels),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )

    def peer_batches():
        for x, y in peer:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    transform = augment.build(AugmentConfig(train=PIPELINE), 10, 3, (32, 32))
    ours = DeviceLoader(
        ImageSet(images, labels, tuple("0123456789")),
        batch_size=args.batch_size,
        device=device,
        mean=MEAN,
        std=STD,
        shuffle=True,
        transform=transform,
    )
    n = len(ours) * args.batch_size
    rows = [
        (
            "torchvision v2 per sample + DataLoader",
            args.workers,
            median_images_per_second(peer_batches, n, args.passes, device),
        ),
        (
            "cnnlab batched pipeline (DeviceLoader)",
            0,
            median_images_per_second(lambda: iter(ours), n, args.passes, device),
        ),
    ]
    print_comparison(
        f"augmented images/s: flip + crop + jitter + cutout, 32×32, batch {args.batch_size}",
        rows,
        f"{describe(device)}, {args.images:,} images × {args.passes} passes",
    )


if __name__ == "__main__":
    main()
