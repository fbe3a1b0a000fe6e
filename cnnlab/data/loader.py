"""Batch loaders with one interface: iterate (x, y) batches, normalised, on the training device.

DeviceLoader keeps the whole uint8 set resident on the device and cuts batches by index: no
worker processes, no PIL, no per-image Python. StreamLoader is for sets larger than
data.max_resident_mb: the set stays in host memory and DataLoader workers gather the batches.
Either way float conversion, augmentation and normalisation run on the device, per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader

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
        self._batches(*self._store(data, device), batch_size, device, shuffle, seed)
        self.transform = transform
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # (x - mean) / std as one fused x * scale + shift; mean/std are on the [0, 1] scale.
        c = data.images.shape[1]
        std_t = torch.tensor(std, device=device).view(1, c, 1, 1)
        self._scale = 1.0 / std_t
        self._shift = -torch.tensor(mean, device=device).view(1, c, 1, 1) / std_t

    def _batches(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        device: torch.device,
        shuffle: bool,
        seed: int,
    ) -> None:
        """What batching by index needs: the stored set, the order's generator and position."""
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        # One generator drives both the order and the augmentations, so one state resumes both.
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        # Training drops a last partial batch: a batch of 1 breaks BatchNorm, and a short batch
        # would weigh its examples more. Evaluation sees every image.
        self.drop_last = shuffle and len(labels) > batch_size
        self._order: torch.Tensor | None = None  # set while an epoch is under way
        self._position = 0  # batches of this epoch already handed out
        self._order_device = device

    def _store(self, data: ImageSet, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return data.images.to(device), data.labels.to(device)  # (N, C, H, W) uint8, (N,) int64

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._epoch_order()
        while self._position < len(self):
            i = self._position
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            self._position += 1  # counted before the yield: a state saved now resumes after it
            yield self.prepare(self.images[index], self.labels[index])
        self._order = None

    def _epoch_order(self) -> torch.Tensor:
        """This epoch's order: a fresh one, or the one of an epoch resumed mid-way."""
        if self._order is None:
            n = len(self.labels)
            if self.shuffle:
                self._order = torch.randperm(
                    n, generator=self._order_generator(), device=self._order_device
                )
            else:
                self._order = torch.arange(n, device=self._order_device)
            self._position = 0
        return self._order

    def _order_generator(self) -> torch.Generator:
        return self.generator

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

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The generator, and mid-epoch also the epoch's order and the next batch, so that a
        run stopped between two steps resumes with exactly the batches it would have seen."""
        state: dict[str, torch.Tensor | int] = {"generator": self.generator.get_state()}
        if self._order is not None:
            state |= {"order": self._order.cpu(), "position": self._position}
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        self.generator.set_state(state["generator"].cpu())
        if "order" in state:
            self._order = state["order"].to(self._order_device)
            self._position = int(state["position"])
        else:
            self._order, self._position = None, 0


class _Batches(torch.utils.data.Dataset):
    """Indexed by a batch's index tensor: one gather per batch in a worker."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


class StreamLoader(DeviceLoader):
    """Same batches interface as DeviceLoader for sets that do not fit on the device."""

    def __init__(self, data: ImageSet, *, num_workers: int, seed: int = 0, **kwargs):
        super().__init__(data, seed=seed, **kwargs)
        self.num_workers = num_workers
        # The order lives on the host; the device generator above still drives augmentation.
        self.order_generator = torch.Generator().manual_seed(seed)
        self._order_device = torch.device("cpu")

    def _store(self, data: ImageSet, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return data.images, data.labels  # stay in host memory

    def _order_generator(self) -> torch.Generator:
        return self.order_generator

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, size = self._epoch_order(), self.batch_size
        batches = DataLoader(
            _Batches(self.images, self.labels),
            # Each sampler item is one batch's index list, from the position a resume left.
            sampler=[order[i * size : (i + 1) * size] for i in range(self._position, len(self))],
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        for images, labels in batches:
            self._position += 1
            yield self.prepare(
                images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True),
            )
        self._order = None

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        return super().state_dict() | {"order_generator": self.order_generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
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
