"""DeviceLoader: the whole uint8 set resident on the training device, batches cut by index.

No worker processes, no PIL, no per-image Python: each epoch is one seeded permutation, each
batch one gather, and float conversion, augmentation and normalisation run on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from cnnlab.data.imageset import ImageSet

# transform(x, gen) -> x on (B, C, H, W) float images in [0, 1], before normalisation.
BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class DeviceLoader:
    def __init__(
        self,
        data: ImageSet,
        *,
        batch_size: int,
        device: torch.device,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        shuffle: bool = False,
        seed: int = 0,
        transform: BatchTransform | None = None,
        channels_last: bool = False,
    ):
        self.images = data.images.to(device)  # (N, C, H, W) uint8, resident
        self.labels = data.labels.to(device)  # (N,) int64
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.transform = transform
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        c = self.images.shape[1]  # mean/std are per channel on the [0, 1] scale
        self._mean = torch.tensor(mean, device=device).view(1, c, 1, 1)
        self._std = torch.tensor(std, device=device).view(1, c, 1, 1)
        # One generator drives both the order and the augmentations, so one state resumes both.
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        # Training drops a last partial batch: a batch of 1 breaks BatchNorm, and a short batch
        # would weigh its examples more. Evaluation sees every image.
        self.drop_last = shuffle and len(self.labels) > batch_size

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, device=self.device, generator=self.generator)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.prepare(self.images[index]), self.labels[index]

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) uint8 on the device -> normalised float, augmented when training."""
        x = images.float().div_(255.0)
        if self.transform is not None:
            x = self.transform(x, self.generator)
        x = (x - self._mean) / self._std
        return x.contiguous(memory_format=self.memory_format)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"].cpu())
