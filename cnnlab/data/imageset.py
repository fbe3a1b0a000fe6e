"""The contract every data source returns, and what the rest of cnnlab learns about a dataset."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from cnnlab.errors import DataError


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64, values in [0, len(classes))
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(
                f"images must be a uint8 N×C×H×W tensor, got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (len(self.images),):
            raise DataError(
                f"labels must be int64 of shape ({len(self.images)},), got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(
            self.classes
        ):
            raise DataError(
                f"labels must lie in [0, {len(self.classes)}), got "
                f"[{int(self.labels.min())}, {int(self.labels.max())}]"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index], self.classes)


@dataclass(frozen=True)
class SourceSplits:
    """What a source reads: its training images and, when the format has them, its own val/test."""

    train: ImageSet
    val: ImageSet | None = None
    test: ImageSet | None = None
    # Files that could not be decoded and were passed over (data.on_bad_file=skip), each
    # "path: reason"; training reports them in log.txt and summary.json.
    skipped: tuple[str, ...] = ()
    # Where the images were read from, for the first line of a run and of `data info`: the
    # folder, archive or file (absolute), or a description ("scikit-learn's bundled digits").
    location: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: tuple[str, ...]
    channels: int
    image_size: tuple[int, int]  # (H, W)
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale
    std: tuple[float, ...]
    location: str = ""  # where the data was read from (SourceSplits.location)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def record(self) -> dict[str, Any]:
        """As plain JSON data (summary.json's and best.safetensors' "data"): what a later run
        needs to reuse a net trained on this data (models.transfer reads it back)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class DataBundle:
    train: ImageSet
    val: ImageSet
    test: ImageSet | None
    info: DatasetInfo
    skipped: tuple[str, ...] = ()  # see SourceSplits.skipped
