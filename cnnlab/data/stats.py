"""Per-channel mean and std of a uint8 image set, on the [0, 1] scale, cached on disk."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from cnnlab.atomic import write_text_atomic

Stats = tuple[tuple[float, ...], tuple[float, ...]]

# Named presets for data.normalize (mean, std per RGB channel).
PRESETS: dict[str, Stats] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> Stats:
    """(mean, std) per channel of (N, C, H, W) uint8 images, accumulated in float64."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for part in images.split(chunk):
        x = part.to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """A cheap identity of a set: shape, every label and a strided sample of ~1M pixels."""
    flat = images.reshape(-1)
    stride = max(1, flat.numel() // 1_000_000)
    digest = hashlib.sha256(repr(tuple(images.shape)).encode())
    digest.update(flat[::stride].contiguous().numpy().tobytes())
    digest.update(labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def cached_channel_stats(images: torch.Tensor, labels: torch.Tensor, folder: Path) -> Stats:
    """channel_stats, remembered under `folder` by the set's fingerprint. A cache that cannot
    be read or written is simply not used."""
    path = folder / f"{fingerprint(images, labels)}.json"
    saved = _read_saved(path, images.shape[1])
    if saved is not None:
        return saved
    mean, std = channel_stats(images)
    try:
        write_text_atomic(path, json.dumps({"mean": mean, "std": std}))
    except OSError:
        pass
    return mean, std


def _read_saved(path: Path, channels: int) -> Stats | None:
    """Stats saved earlier, or None unless `path` is a small regular file holding `channels`
    finite means and positive stds (a damaged file costs a recomputation, never a crash)."""
    try:
        if not path.is_file() or path.stat().st_size > 64 << 10:
            return None
        saved = json.loads(path.read_text())
        mean, std = saved["mean"], saved["std"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if not (isinstance(mean, list) and isinstance(std, list)):
        return None
    if len(mean) != channels or len(std) != channels:
        return None
    if not all(type(v) in (int, float) and math.isfinite(v) for v in [*mean, *std]):
        return None
    if min(std) <= 0:
        return None
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
