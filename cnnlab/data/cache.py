"""Cache of decoded image sets, so a folder of JPEGs/PNGs is decoded once, not every run.

A source lists its files and stamps each (path relative to the root, size, mtime); the cache
file is `<cache_root>/decoded/<key>.safetensors`, where the key hashes the source, the absolute
root, every stamp, the decode options and a format version. Adding, removing or touching a
file, or changing data.image_size/channels/on_bad_file, gives a new key; the stale file stays
until the cache directory is cleared.

The file holds two tensors (`images` (N, C, H, W) uint8, `labels` (N,) int64: every split,
one after the other) and JSON metadata: split names and lengths, classes, skipped files and a
CRC-32 per tensor. It is written atomically; a file that is torn, foreign or fails its CRC is
ignored and rewritten, so the cache can cost a decode but never give wrong images. When the
cache directory is not writable the set is decoded every run, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import PIL
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cnnlab.atomic import atomic_path
from cnnlab.config.schema import DataConfig
from cnnlab.data.imageset import ImageSet, SourceSplits
from cnnlab.data.paths import cache_root

# Bump when the decoding or the file layout changes, so old cache files are not read.
FORMAT_VERSION = 1
_FORMAT = "cnnlab.decoded"
_SPLITS = ("train", "val", "test")

Stamp = tuple[str, int, int]  # (path relative to the root, size in bytes, mtime in ns)


def cached_splits(
    cfg: DataConfig,
    source: str,
    root: Path,
    stamps: Sequence[Stamp],
    read: Callable[[], SourceSplits],
) -> SourceSplits:
    """The splits `read()` would return for these files and options, decoding only on a miss."""
    path = cache_root(cfg) / "decoded" / f"{cache_key(cfg, source, root, stamps)}.safetensors"
    hit = load_splits(path)
    if hit is not None:
        return hit
    splits = read()
    save_splits(path, splits)
    return splits


def cache_key(cfg: DataConfig, source: str, root: Path, stamps: Sequence[Stamp]) -> str:
    """sha256 hex of everything the decoded tensors depend on."""
    header = {
        "format": _FORMAT,
        "version": FORMAT_VERSION,
        "pillow": PIL.__version__,  # decoders and resampling can change between releases
        "source": source,  # folder and tiny-imagenet read the same root differently
        "root": str(root.resolve()),
        "image_size": cfg.image_size,
        "channels": cfg.channels,
        "on_bad_file": cfg.on_bad_file,
    }
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    # NUL cannot occur in a path, so the joined stamps read back one way only.
    h.update("".join(f"\0{rel}\0{size}\0{mtime}" for rel, size, mtime in stamps).encode())
    return h.hexdigest()


def save_splits(path: Path, splits: SourceSplits) -> None:
    """Write `splits` atomically; on an unwritable directory warn and carry on uncached."""
    parts = [(name, s) for name in _SPLITS if (s := getattr(splits, name)) is not None]
    images = _cat([s.images for _, s in parts])  # (N, C, H, W) uint8
    labels = _cat([s.labels for _, s in parts])  # (N,) int64
    metadata = {
        "format": _FORMAT,
        "version": str(FORMAT_VERSION),
        "splits": json.dumps([[name, len(s)] for name, s in parts]),
        "classes": json.dumps({name: list(s.classes) for name, s in parts}),
        "skipped": json.dumps(list(splits.skipped)),
        "crc32": json.dumps({"images": _crc(images), "labels": _crc(labels)}),
    }
    try:
        with atomic_path(path) as tmp:
            save_file({"images": images, "labels": labels}, str(tmp), metadata=metadata)
    except (OSError, SafetensorError) as e:
        # The same message warns once per process (the warnings module's default filter).
        warnings.warn(
            f"cannot write the decoded-image cache in {path.parent} ({e}); images will be "
            "decoded again next run (set data.cache_dir to a writable directory)",
            stacklevel=2,
        )


def load_splits(path: Path) -> SourceSplits | None:
    """The cached splits, or None when the file is missing, foreign, torn or damaged. Only a
    regular file is opened (a FIFO planted there would block the open). safetensors reads no
    pickle: a hostile file can at worst fail its checks and be decoded again."""
    try:
        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            images, labels = f.get_tensor("images"), f.get_tensor("labels")
        return _splits_from(metadata, images, labels)
    except Exception:  # any failure to read back means "decode again", never a crash
        return None


def _splits_from(
    metadata: dict[str, str], images: torch.Tensor, labels: torch.Tensor
) -> SourceSplits | None:
    if metadata.get("format") != _FORMAT or metadata.get("version") != str(FORMAT_VERSION):
        return None
    if json.loads(metadata["crc32"]) != {"images": _crc(images), "labels": _crc(labels)}:
        return None
    classes = json.loads(metadata["classes"])
    sets, start = {}, 0
    for name, n in json.loads(metadata["splits"]):
        # Views into the one loaded tensor; ImageSet re-checks dtype, shape and label range.
        part = slice(start, start + n)
        sets[name] = ImageSet(images[part], labels[part], tuple(classes[name]))
        start += n
    if start != len(images) or "train" not in sets:
        return None
    return SourceSplits(**sets, skipped=tuple(json.loads(metadata["skipped"])))


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    # One split (the usual case) is written as it is, without a second copy of the set.
    return parts[0].contiguous() if len(parts) == 1 else torch.cat(parts)


def _crc(t: torch.Tensor) -> int:
    # CRC-32 runs at GB/s: it adds tens of ms to a 100k-image load, and catches bit rot that
    # safetensors' own header checks cannot see.
    return zlib.crc32(t.contiguous().view(torch.uint8).reshape(-1).numpy())
