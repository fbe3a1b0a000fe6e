"""Decode image files (any format Pillow reads) in parallel into one uint8 N×C×H×W tensor.

Channels: `data.channels` when set; otherwise 3 when any image is in colour, else 1, so a
grayscale folder stays 1-channel and one colour file makes the whole set RGB. Transparent
images are composited over white (how a viewer shows them) rather than having alpha dropped,
which would expose whatever colour hides under transparent pixels. 16-bit images are scaled
to 8 bits, not clipped. With `data.image_size` every image is resized (bilinear, antialiased)
to a square while decoding; without it every image must already have the same size.

A file Pillow cannot open or fully load (corrupt, truncated, not an image) is skipped and
reported as "path: reason" (`data.on_bad_file=skip`) or stops the read (`error`). Truncated
files are never half-loaded: ImageFile.LOAD_TRUNCATED_IMAGES is left off.
"""

from __future__ import annotations

import io
import multiprocessing as mp
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnlab.config.schema import DataConfig
from cnnlab.data.imageset import ImageSet, SourceSplits
from cnnlab.errors import DataError

# Files per worker task: large enough that scheduling costs little next to decoding tiny
# images, small enough that workers share the work evenly and a bad file stops a read early.
_CHUNK = 64

# Bytes of one image file: Pillow's own pixel limit (~179 MP) as 16-bit RGBA is ~1.4 GB of
# pixels, but no image format needs that many bytes compressed; a larger file is not an image.
MAX_FILE_BYTES = 1 << 30

_GRAY_MODES = {"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"LA", "PA", "RGBA", "RGBa"}
_WHITE = (255, 255, 255, 255)


@dataclass(frozen=True)
class Decoded:
    images: torch.Tensor  # (N_kept, C, H, W) uint8
    kept: torch.Tensor  # (N_kept,) int64: which of the input files each image came from
    skipped: tuple[str, ...]  # "path: reason" for each file passed over


# split name -> (image paths, class index of each); see decode_splits.
Listing = dict[str, tuple[Sequence[str | Path], Sequence[int]]]


def decode_splits(cfg: DataConfig, listing: Listing, classes: tuple[str, ...]) -> SourceSplits:
    """Decode every split in one pass, so all of them share one channel count and size."""
    names = [name for name in ("train", "val", "test") if name in listing]
    paths = [p for name in names for p in listing[name][0]]
    labels = torch.tensor([y for name in names for y in listing[name][1]], dtype=torch.int64)
    which = torch.repeat_interleave(
        torch.arange(len(names)), torch.tensor([len(listing[n][0]) for n in names])
    )
    decoded = decode_files(paths, cfg)
    labels, which = labels[decoded.kept], which[decoded.kept]
    # Kept files stay in input order, so each split is one run of rows: slice, don't copy.
    counts = torch.bincount(which, minlength=len(names)).tolist()
    sets, start = {}, 0
    for name, n in zip(names, counts, strict=True):
        if n == 0:
            raise DataError(
                f"every image of the {name} split was skipped, e.g. {decoded.skipped[0]}"
            )
        rows = slice(start, start + n)
        sets[name] = ImageSet(decoded.images[rows], labels[rows], classes)
        start += n
    return SourceSplits(**sets, skipped=decoded.skipped)


def decode_files(paths: Sequence[str | Path], cfg: DataConfig) -> Decoded:
    """Decode `paths` with data.num_workers processes (see _pool), in input order."""
    if not paths:
        raise DataError("no image files to decode")
    arrays, kept, skipped = _decode_all(paths, cfg)
    if not arrays:
        raise DataError(f"none of the {len(paths)} image files could be decoded, e.g. {skipped[0]}")
    return Decoded(_assemble(arrays), torch.tensor(kept, dtype=torch.int64), tuple(skipped))


def _decode_all(
    paths: Sequence[str | Path], cfg: DataConfig
) -> tuple[list[np.ndarray | None], list[int], list[str]]:
    """(C, H, W) arrays of the good files, their indices, and the bad files' reasons."""
    mode = {1: "L", 3: "RGB", None: None}[cfg.channels]
    arrays: list[np.ndarray | None] = []
    kept: list[int] = []
    skipped: list[str] = []
    first: tuple[str | Path, tuple[int, int]] | None = None  # for the mixed-size message
    pool = _pool(cfg.num_workers, len(paths))
    try:
        futures: list[Future] = [
            pool.submit(_decode_chunk, paths[i : i + _CHUNK], mode, cfg.image_size)
            for i in range(0, len(paths), _CHUNK)
        ]
        for start, future in zip(range(0, len(paths), _CHUNK), futures, strict=True):
            for i, result in enumerate(future.result(), start):
                if isinstance(result, str):
                    if cfg.on_bad_file == "error":
                        raise DataError(
                            f"{result} (set data.on_bad_file=skip to pass over bad files)"
                        )
                    skipped.append(result)
                    continue
                first = first or (paths[i], result.shape[1:])
                _check_same_size(first, paths[i], result.shape[1:])
                arrays.append(result)
                kept.append(i)
    finally:
        # On an error, drop the queued chunks instead of decoding the rest of the set.
        pool.shutdown(wait=True, cancel_futures=True)
    return arrays, kept, skipped


def _pool(workers: int, n_files: int) -> Executor:
    """Worker processes: decoding a small image is mostly Pillow's Python code, so threads
    fight over the GIL (4 threads were 1.9x slower than 1 on 20k 16×16 PNGs). Forked workers
    start in milliseconds; where fork is unavailable, or the job is small, decode in-line."""
    if workers <= 1 or n_files < 4 * _CHUNK or "fork" not in mp.get_all_start_methods():
        return ThreadPoolExecutor(1, thread_name_prefix="cnnlab-decode")
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))


def _check_same_size(
    first: tuple[str | Path, tuple[int, int]], path: str | Path, hw: tuple[int, int]
) -> None:
    if hw == first[1]:
        return
    (h0, w0), (h1, w1) = first[1], hw
    raise DataError(
        f"images differ in size: {first[0]} is {h0}×{w0}, {path} is {h1}×{w1} (H×W); "
        "set data.image_size=N to resize every image to N×N"
    )


def _assemble(arrays: list[np.ndarray | None]) -> torch.Tensor:
    """Stack (C, H, W) arrays into (N, C, H, W), widening gray ones when any is in colour."""
    channels = max(a.shape[0] for a in arrays)
    h, w = arrays[0].shape[1:]
    out = np.empty((len(arrays), channels, h, w), dtype=np.uint8)
    for i, a in enumerate(arrays):
        out[i] = a  # a (1, H, W) gray image broadcasts over 3 channels
        arrays[i] = None  # free as we go: peak memory stays near one copy of the set
    return torch.from_numpy(out)


def _decode_chunk(
    paths: Sequence[str | Path], mode: str | None, size: int | None
) -> list[np.ndarray | str]:
    """Per file, a (C, H, W) uint8 array or a "path: reason" string."""
    results: list[np.ndarray | str] = []
    for path in paths:
        try:
            results.append(decode_image(path, mode, size))
        except UnidentifiedImageError:
            results.append(f"{path}: not an image format Pillow reads")
        except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad files
            results.append(f"{path}: {str(e) or type(e).__name__}")
    return results


def decode_image(path: str | Path, mode: str | None, size: int | None) -> np.ndarray:
    """One file -> (C, H, W) uint8; mode "L", "RGB" or None (keep gray gray, colour RGB)."""
    # One read per file, then parse from memory: Pillow's many small reads (each a syscall
    # that drops the GIL) made decoding 100k 16×16 PNGs ~25% slower. Capped: a multi-GB file
    # in an image folder is skipped with its size, not read into memory.
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES:,} bytes; not read as an image")
    with Image.open(io.BytesIO(data)) as img:
        if size is not None:
            # JPEG only: let libjpeg scale by 1/2, 1/4 or 1/8 while decoding (never below
            # `size`), far cheaper than decoding the full image and shrinking it after.
            img.draft("L" if mode == "L" else None, (size, size))
        img.load()  # raises on truncated or corrupt data
        img = _to_8bit(img)
    if mode is not None and img.mode != mode:
        img = img.convert(mode)  # RGB -> L uses ITU-R 601 luma, as data.transform does
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)  # antialiased when shrinking
    # tobytes + frombuffer: ~10% cheaper per tiny image than np.asarray's array interface.
    a = np.frombuffer(img.tobytes(), np.uint8).reshape(img.height, img.width, -1)  # (H, W, C)
    return a.transpose(2, 0, 1)  # (C, H, W), a read-only view; _assemble copies it


def _to_8bit(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> "L" (gray) or "RGB" (colour)."""
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in _GRAY_MODES:
        return Image.fromarray(_gray_to_uint8(img, np.asarray(img)), "L")
    palette = img.mode in ("P", "PA")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        if img.mode == "LA":
            return _over_white(img).convert("L")
        img = _over_white(img).convert("RGB")
    else:
        img = img.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, RGBX
    if palette and _is_gray(np.asarray(img)):
        return img.convert("L")  # a gray palette (common in GIFs) is a gray image
    return img


def _over_white(img: Image.Image) -> Image.Image:
    return Image.alpha_composite(Image.new("RGBA", img.size, _WHITE), img.convert("RGBA"))


def _gray_to_uint8(img: Image.Image, a: np.ndarray) -> np.ndarray:
    """Gray pixels of any depth -> (H, W) uint8, scaling 16-bit and float ranges to 0..255."""
    if img.mode == "1":
        return a.astype(np.uint8) * 255
    if img.mode.startswith("I;16"):
        return _scale(a, 65535)
    if img.mode == "I":  # 32-bit ints; in practice 16-bit data, or 8-bit data widened
        return _scale(a, 65535 if a.size and a.max() > 255 else 255)
    if img.mode == "F":  # floats; [0, 1] data is the common case
        return _scale(a, 1.0 if a.size and a.max() <= 1.0 else 255)
    return a


def _scale(a: np.ndarray, top: float) -> np.ndarray:
    return np.clip(np.rint(a.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


def _is_gray(rgb: np.ndarray) -> bool:
    """(H, W, 3) -> whether every pixel has R == G == B."""
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
