"""Batch loaders with one interface (BatchLoader): iterate (x, y) batches, normalised, on the
training device.

DeviceLoader keeps the whole uint8 set resident on the device and cuts batches by index: no
worker processes, no PIL, no per-image Python. StreamLoader is for sets larger than
data.max_resident_mb: the set stays in host memory and DataLoader workers gather the batches.
Either way float conversion, augmentation and normalisation run on the device, per batch.

With several processes (data-parallel training) each rank's loader hands out its share only.
Training: every rank draws the same seeded order, cuts the same global batches of batch_size
from it, and takes its own slice of each (batch_size / world images), so the ranks together make
exactly one pass over the set per epoch; the position counts global batches, so a state saved
by N processes resumes on M. Evaluation: rank r takes images r, r + world, ... (no image twice,
no padding), cut into batches of batch_size. torch's DistributedSampler is not used: it pads
evaluation shards with repeated images (or drops some), and it shards single images, not the
global batches that keep one process's batches and N processes' the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from cnnlab.data.imageset import ImageSet

# transform(x, y, gen) -> (x, y) on (B, C, H, W) float images in [0, 1], before normalisation;
# y comes in as (B,) int64 labels and may leave as (B, K) class probabilities (mixup, cutmix).
BatchTransform = Callable[
    [torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]
]


def rank_seed(seed: int, rank: int) -> int:
    """The seed of one rank's own random draws (augmentation, dropout) in a run of several
    processes: different on every rank, so that no two ranks draw the same crops or masks."""
    return (seed * 1_000_003 + rank + 1) % 2**63


def _state_seed(state: torch.Tensor) -> int:
    """A seed that a generator's saved state determines (to derive generators from it)."""
    digest = hashlib.sha256(state.cpu().numpy().tobytes()).digest()
    return int.from_bytes(digest[:8], "little") % 2**63


def _continue_order(order_generator: torch.Generator, saved: torch.Tensor) -> None:
    """The order of a one-process run drawn on from its saved `generator`: the same stream
    where that was a CPU generator (of the same size), else a stream derived from it."""
    if saved.numel() == order_generator.get_state().numel():
        order_generator.set_state(saved.cpu())
    else:
        order_generator.manual_seed(_state_seed(saved))


class BatchLoader:
    """Batches cut by index from a stored set: each epoch's seeded order, the position within
    it, and the state that resumes both. Subclasses say where the set is stored and how a
    gathered batch becomes the model's input (`prepare`).

    rank, world: this process's share of a run of `world` processes (module docstring)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        device: torch.device,
        shuffle: bool = False,
        seed: int = 0,
        order_device: torch.device | None = None,
        rank: int = 0,
        world: int = 1,
    ):
        if shuffle and batch_size % world:
            raise ValueError(f"a global batch of {batch_size} does not split into {world}")
        # (N, ...) and (N,), where the subclass keeps them
        self.images, self.labels = images, labels
        self.batch_size = batch_size  # training: the global batch; evaluation: this rank's
        self.device = device  # where batches are handed out
        self.shuffle = shuffle
        self.rank, self.world = rank, world
        # One generator drives both the order and the augmentations, so one state resumes both;
        # with several processes it draws this rank's augmentations, and order_generator the
        # order, the same on every rank (on the CPU, so that every kind of device agrees).
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed if world == 1 else rank_seed(seed, rank))
        self.order_generator: torch.Generator | None = None
        if world > 1 or (order_device is not None and order_device.type == "cpu"):
            self.order_generator = torch.Generator().manual_seed(seed)
        # Training drops a last partial batch: a batch of 1 breaks BatchNorm, and a short batch
        # would weigh its examples more. Evaluation sees every image.
        self.drop_last = shuffle and len(labels) > batch_size
        self._order: torch.Tensor | None = None  # the order of the epoch under way, or last
        self._position = 0  # batches of this epoch already handed out
        self._order_device = order_device or device

    def __len__(self) -> int:
        """Batches per epoch: training's global batches (each rank hands out its slice of
        every one); evaluation's batches of this rank's share."""
        n = (
            len(self.labels)
            if self.shuffle
            else len(range(self.rank, len(self.labels), self.world))
        )
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._epoch_order()
        while self._position < len(self):
            index = self._batch_index(order, self._position)
            self._position += 1  # counted before the yield: a state saved now resumes after it
            yield self.prepare(self.images[index], self.labels[index])

    def _mid_epoch(self) -> bool:
        """An epoch is under way: its order drawn and batches of it still to come. (Its last
        batch handed out ends it, whether or not the caller asks the iterator for more.)"""
        return self._order is not None and self._position < len(self)

    def _batch_index(self, order: torch.Tensor, i: int) -> torch.Tensor:
        batch = order[i * self.batch_size : (i + 1) * self.batch_size]
        if self.shuffle and self.world > 1:  # this rank's slice of the global batch
            return batch.tensor_split(self.world)[self.rank]
        return batch

    def _epoch_order(self) -> torch.Tensor:
        """This epoch's order: a fresh one, or the one of an epoch resumed mid-way."""
        if not self._mid_epoch():
            n = len(self.labels)
            if self.shuffle:
                generator = self.order_generator or self.generator
                order = torch.randperm(n, generator=generator, device=generator.device)
                self._order = order.to(self._order_device)
            else:  # this rank's share: every world-th image
                self._order = torch.arange(self.rank, n, self.world, device=self._order_device)
            self._position = 0
        return self._order

    def prepare(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return images, labels

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The generators, and mid-epoch also the epoch's order and the next (global) batch,
        so that a run stopped between two steps resumes with exactly the batches it would have
        seen. Of several processes', rank 0's; the trainer adds every rank's augmentation
        generator as "generators"."""
        state: dict[str, torch.Tensor | int] = {"generator": self.generator.get_state()}
        if self.order_generator is not None:
            state["order_generator"] = self.order_generator.get_state()
        if self._mid_epoch():
            state |= {"order": self._order.cpu(), "position": self._position}
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        """A state saved by any number of processes: the order and position go on as saved;
        each rank's augmentations from its own saved generator, or, for ranks the saving run
        did not have, from a generator derived from rank 0's and this rank."""
        generators = state.get("generators") or [state["generator"]]
        if self.rank < len(generators):
            self.generator.set_state(generators[self.rank].cpu())
        else:
            self.generator.manual_seed(rank_seed(_state_seed(state["generator"]), self.rank))
        if "order_generator" in state:
            if self.order_generator is None:  # several processes' run, resumed on one
                self.order_generator = torch.Generator()
            self.order_generator.set_state(state["order_generator"])
        elif self.order_generator is not None:  # one process's run, resumed on several
            _continue_order(self.order_generator, state["generator"])
        if "order" in state:
            self._order = state["order"].to(self._order_device)
            self._position = int(state["position"])
        else:
            self._order, self._position = None, 0


class _Normalize:
    """(B, C, H, W) uint8 on the device -> float, augmented when training, then normalised;
    (x - mean) / std as one fused x * scale + shift, mean/std on the [0, 1] scale."""

    def __init__(self, loader: BatchLoader, mean, std, transform, channels_last: bool):
        self.loader, self.transform = loader, transform
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        std_t = torch.tensor(std, device=loader.device).view(1, -1, 1, 1)
        self.scale = 1.0 / std_t
        self.shift = -torch.tensor(mean, device=loader.device).view(1, -1, 1, 1) / std_t

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.transform is None:  # fold the uint8 -> [0, 1] scaling into the normalisation
            x = torch.addcmul(self.shift, images.float(), self.scale / 255.0)
            return x.contiguous(memory_format=self.memory_format), labels
        x, y = self.transform(images.float().div_(255.0), labels, self.loader.generator)
        x = torch.addcmul(self.shift, x, self.scale)
        return x.contiguous(memory_format=self.memory_format), y


class DeviceLoader(BatchLoader):
    """The whole uint8 set resident on the training device. `batching`: BatchLoader's
    batch_size, shuffle, seed, rank and world."""

    def __init__(
        self,
        data: ImageSet,
        *,
        device: torch.device,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        transform: BatchTransform | None = None,
        channels_last: bool = False,
        **batching: Any,
    ):
        # (N, C, H, W) uint8, (N,) int64 on the device
        images, labels = data.images.to(device), data.labels.to(device)
        super().__init__(images, labels, device=device, **batching)
        self.prepare = _Normalize(self, mean, std, transform, channels_last)


class _Batches(torch.utils.data.Dataset):
    """Indexed by a batch's index tensor: one gather per batch in a worker."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


class StreamLoader(BatchLoader):
    """DeviceLoader's batches for sets larger than data.max_resident_mb: the set stays in host
    memory and DataLoader workers gather each batch; conversion, augmentation and normalisation
    still run on the device."""

    def __init__(
        self,
        data: ImageSet,
        *,
        num_workers: int,
        device: torch.device,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        transform: BatchTransform | None = None,
        channels_last: bool = False,
        **batching: Any,
    ):
        # The order lives on the host (order_generator); the device generator drives the
        # augmentation.
        cpu = torch.device("cpu")
        super().__init__(data.images, data.labels, device=device, order_device=cpu, **batching)
        self.num_workers = num_workers
        self.prepare = _Normalize(self, mean, std, transform, channels_last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._epoch_order()
        batches = DataLoader(
            _Batches(self.images, self.labels),
            # Each sampler item is one batch's index list, from the position a resume left.
            sampler=[self._batch_index(order, i) for i in range(self._position, len(self))],
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


def resident_mb(data: ImageSet) -> float:
    return data.images.numel() / 2**20  # uint8: one byte per element


def make_loader(
    data: ImageSet, *, max_resident_mb: float, num_workers: int, **kwargs
) -> BatchLoader:
    """A DeviceLoader, or a StreamLoader when the set is larger than max_resident_mb."""
    if resident_mb(data) > max_resident_mb:
        return StreamLoader(data, num_workers=num_workers, **kwargs)
    return DeviceLoader(data, **kwargs)
