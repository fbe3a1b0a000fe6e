"""Batch loaders with one interface: iterate (x, y) batches, normalised, on the training device.

DeviceLoader keeps the whole uint8 set resident on the device and cuts batches by index: no
worker processes, no PIL, no per-image Python. StreamLoader is for sets larger than
data.max_resident_mb: the set stays in host memory and DataLoader workers gather the batches.
Either way float conversion, augmentation and normalisation run on the device, per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from cnnlab.data.imageset import ImageSet

# transform(x, y, gen) -> (x, y) on (B, C, H, W) float images in [0, 1], before normalisation;
# y comes in as (B,) int64 labels and may leave as (B, K) class probabilities (mixup, cutmix).
BatchTransform = Callable[
    [torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]
]


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
        self.images, self.labels = self._store(data, device)
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.transform = transform
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # (x - mean) / std as one fused x * scale + shift; mean/std are on the [0, 1] scale.
        c = data.images.shape[1]
        std_t = torch.tensor(std, device=device).view(1, c, 1, 1)
        self._scale = 1.0 / std_t
        self._shift = -torch.tensor(mean, device=device).view(1, c, 1, 1) / std_t
        # One generator drives both the order and the augmentations, so one state resumes both.
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        # Training drops a last partial batch: a batch of 1 breaks BatchNorm, and a short batch
        # would weigh its examples more. Evaluation sees every image.
        self.drop_last = shuffle and len(data) > batch_size

    def _store(self, data: ImageSet, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return data.images.to(device), data.labels.to(device)  # (N, C, H, W) uint8, (N,) int64

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
            yield self.prepare(self.images[index], self.labels[index])

    def prepare(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) uint8 on the device -> normalised float, augmented when training."""
        if self.transform is None:  # fold the uint8 -> [0, 1] scaling into the normalisation
            x = torch.addcmul(self._shift, images.float(), self._scale / 255.0)
            return x.contiguous(memory_format=self.memory_format), labels
        x, y = self.transform(images.float().div_(255.0), labels, self.generator)
        x = torch.addcmul(self._shift, x, self._scale)
        return x.contiguous(memory_format=self.memory_format), y

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"].cpu())


class _Batches(torch.utils.data.Dataset):
    """Indexed by a list of indices (from a BatchSampler): one gather per batch in a worker."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


class StreamLoader(DeviceLoader):
    """Same batches interface as DeviceLoader for sets that do not fit on the device."""

    def __init__(self, data: ImageSet, *, num_workers: int, seed: int = 0, **kwargs):
        super().__init__(data, seed=seed, **kwargs)
        self.num_workers = num_workers
        # The order lives on the host; the device generator above still drives augmentation.
        self.order_generator = torch.Generator().manual_seed(seed)

    def _store(self, data: ImageSet, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return data.images, data.labels  # stay in host memory

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dataset = _Batches(self.images, self.labels)
        sampler = (
            RandomSampler(dataset, generator=self.order_generator)
            if self.shuffle
            else SequentialSampler(dataset)
        )
        batches = DataLoader(
            dataset,
            sampler=BatchSampler(sampler, self.batch_size, drop_last=self.drop_last),
            batch_size=None,  # the sampler already yields whole batches of indices
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        for images, labels in batches:
            yield self.prepare(
                images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True),
            )

    def state_dict(self) -> dict[str, torch.Tensor]:
        return super().state_dict() | {"order_generator": self.order_generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self.order_generator.set_state(state["order_generator"])


def resident_mb(data: ImageSet) -> float:
    return data.images.numel() / 2**20  # uint8: one byte per element


def make_loader(
    data: ImageSet, *, max_resident_mb: float, num_workers: int, **kwargs
) -> DeviceLoader:
    """A DeviceLoader, or a StreamLoader when the set is larger than max_resident_mb."""
    if resident_mb(data) > max_resident_mb:
        return StreamLoader(data, num_workers=num_workers, **kwargs)
    return DeviceLoader(data, **kwargs)
