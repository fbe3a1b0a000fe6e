"""Your own numpy arrays: a `.npz` file or a folder of `.npy` files.

data.root is either
- a `.npz` with arrays x, y and optionally x_test, y_test, x_val, y_val, classes; or
- a folder with x.npy, y.npy, optionally x_test.npy, y_test.npy, x_val.npy, y_val.npy and
  classes.txt (one name per line) or classes.npy.
Files are loaded with allow_pickle=False: nothing in them can run code. Each array's header is
read first and its size checked against the file (for a compressed .npz member, against what
deflate can expand to) and against the memory available, so a header that lies or a zip bomb
is one line, not a MemoryError.

Images (x, x_test, x_val):
- (N, H, W) is grayscale. 4-D arrays hold a channel axis of 1, 3 or 4 (RGBA; alpha is dropped),
  first (N, C, H, W) or last (N, H, W, C). When only one of axis 1 and axis 3 has such a size,
  that one is the channel axis. When both do, channels come first if axis 1 is 1 or 3, else
  (axis 1 is 4, e.g. (N, 4, 4, 3)) last.
- uint8 is taken as is; other integer types must lie in [0, 255]; floats whose maximum is at most
  1 are on the [0, 1] scale and are multiplied by 255, other floats must lie in [0, 255]; floats
  are rounded to the nearest integer. NaN, infinities, booleans and anything else are errors.
Labels (y, y_test, y_val): integer class indices, (N,) or a Keras-style (N, 1) column, >= 0.
Class names default to "0", "1", ... up to the largest label.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import torch
from numpy.lib import format as npy_format

from cnnlab.config.schema import DataConfig
from cnnlab.data.imageset import ImageSet, SourceSplits
from cnnlab.data.limits import DEFLATE_RATIO, check_claim
from cnnlab.data.registry import register_source
from cnnlab.errors import DataError

_SPLITS = {"": "train", "_test": "test", "_val": "val"}  # array-name suffix -> split
_ARRAYS = tuple(f"{xy}{suffix}" for suffix in _SPLITS for xy in ("x", "y"))
_CHANNELS = (1, 3, 4)  # gray, RGB, RGBA
_MAX_NAMES_BYTES = 16 << 20  # classes.txt; 100,000 names of 160 characters
MAX_CLASSES = 100_000  # labels are < this; ImageNet-21k has 21,841 classes


@register_source("arrays")
def read_arrays(cfg: DataConfig) -> SourceSplits:
    """NumPy arrays in data.root: a .npz (x, y, optional val/test arrays) or x.npy, y.npy."""
    if cfg.root is None:
        raise DataError(
            "arrays: data.root is not set; point it at a .npz file (x, y, ...) or a folder "
            "holding x.npy and y.npy"
        )
    root = Path(cfg.root).expanduser().absolute()
    if root.is_file():
        arrays, where = _load_npz(root)
    elif root.is_dir():
        arrays, where = _load_folder(root)
    else:
        raise DataError(f"data.root = {cfg.root} does not exist (arrays wants a .npz or a folder)")

    pairs = {}  # split -> (images (N, C, H, W) uint8, labels (N,) int64)
    for suffix, split in _SPLITS.items():
        x, y = f"x{suffix}", f"y{suffix}"
        if (x in arrays) != (y in arrays):
            have, lack = (x, y) if x in arrays else (y, x)
            raise DataError(f"{where(have)}: has no matching {lack}")
        if x in arrays:
            images = _images(arrays[x], where(x))
            labels = _labels(arrays[y], len(images), where(x), where(y))
            pairs[split] = (images, labels)

    _check_same_image_shape(pairs, where)
    classes = _classes(arrays.get("classes"), where("classes"), pairs)
    _check_two_classes(pairs["train"][1], where("y"))
    sets = {
        s: ImageSet(torch.from_numpy(x), torch.from_numpy(y), classes)
        for s, (x, y) in pairs.items()
    }
    return SourceSplits(
        train=sets["train"], val=sets.get("val"), test=sets.get("test"), location=str(root)
    )


def _load_npz(path: Path) -> tuple[dict[str, np.ndarray], Callable[[str], str]]:
    def where(key: str) -> str:
        return f"{path}[{key}]"

    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file ({_one_line(e)})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single .npy array; give a .npz or a folder with x.npy, y.npy")
    with npz:
        unknown = [k for k in npz.files if k not in (*_ARRAYS, "classes")]
        if unknown:
            raise DataError(
                f"{where(unknown[0])}: unexpected array; a .npz for cnnlab holds "
                f"{', '.join(_ARRAYS)} and classes"
            )
        for required in ("x", "y"):
            if required not in npz.files:
                raise DataError(f"{path}: no array {required!r} (it has {', '.join(npz.files)})")
        for k in npz.files:
            _check_npz_member(npz.zip, k, where(k))
        return {k: _read_member(lambda k=k: npz[k], where(k)) for k in npz.files}, where


def _check_npz_member(archive: zipfile.ZipFile, key: str, where: str) -> None:
    name = f"{key}.npy" if f"{key}.npy" in archive.namelist() else key
    try:
        info = archive.getinfo(name)
        with archive.open(info) as f:
            shape, dtype = _npy_header(f, where)
            holds = info.file_size - f.tell()
    except (OSError, EOFError, zipfile.BadZipFile, RuntimeError, NotImplementedError) as e:
        raise DataError(f"{where}: not a readable .npy array ({_one_line(e)})") from None
    if info.compress_type != zipfile.ZIP_STORED:
        holds = min(holds, info.compress_size * DEFLATE_RATIO)
    check_claim(math.prod(shape) * dtype.itemsize, holds, where, f"a {dtype} array {shape}")


def _check_npy_file(path: Path) -> None:
    try:
        with path.open("rb") as f:
            shape, dtype = _npy_header(f, str(path))
            holds = path.stat().st_size - f.tell()
    except OSError as e:
        raise DataError(f"{path}: not a readable .npy array ({_one_line(e)})") from None
    check_claim(math.prod(shape) * dtype.itemsize, holds, path, f"a {dtype} array {shape}")


def _npy_header(f: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from an .npy header (numpy's own parser, header capped at 10 kB)."""
    readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    try:
        version = npy_format.read_magic(f)
        if version not in readers:
            raise ValueError(f"format version {version[0]}.{version[1]}; expected 1.0 or 2.0")
        shape, _, dtype = readers[version](f)
    except (ValueError, EOFError, SyntaxError, TypeError) as e:
        raise DataError(f"{where}: not a readable .npy array ({_one_line(e)})") from None
    if dtype.hasobject:
        raise DataError(
            f"{where}: cannot load without pickle: it holds Python objects ({dtype}); "
            "store numbers (and class names as strings)"
        )
    return tuple(int(d) for d in shape), dtype


def _load_folder(folder: Path) -> tuple[dict[str, np.ndarray], Callable[[str], str]]:
    txt, npy = folder / "classes.txt", folder / "classes.npy"

    def where(key: str) -> str:
        if key == "classes":
            return str(npy if npy.is_file() else txt)
        return str(folder / f"{key}.npy")

    for required in ("x", "y"):
        if not (folder / f"{required}.npy").is_file():
            raise DataError(f"{folder}: no {required}.npy (arrays wants x.npy and y.npy here)")
    arrays = {}
    for key in _ARRAYS:
        path = folder / f"{key}.npy"
        if path.is_file():
            _check_npy_file(path)
            arrays[key] = _read_member(lambda p=path: np.load(p, allow_pickle=False), str(path))
    if txt.is_file() and npy.is_file():
        raise DataError(f"{folder}: both classes.txt and classes.npy; keep one")
    if txt.is_file():
        arrays["classes"] = _read_names(txt)
    elif npy.is_file():
        _check_npy_file(npy)
        arrays["classes"] = _read_member(lambda: np.load(npy, allow_pickle=False), str(npy))
    return arrays, where


def _read_names(path: Path) -> np.ndarray:
    """classes.txt: one name per line; blank lines (a trailing newline) are not classes."""
    try:
        if path.stat().st_size > _MAX_NAMES_BYTES:
            raise DataError(f"{path}: larger than {_MAX_NAMES_BYTES:,} bytes; expected class names")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read class names ({_one_line(e)})") from None
    return np.array([name for name in (line.strip() for line in lines) if name], dtype=str)


def _read_member(load: Callable[[], np.ndarray], where: str) -> np.ndarray:
    try:
        return load()
    except ValueError as e:  # object arrays need pickle, which stays off
        raise DataError(f"{where}: cannot load without pickle ({_one_line(e)})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{where}: not a readable .npy array ({_one_line(e)})") from None


def _images(x: np.ndarray, where: str) -> np.ndarray:
    """(N, C, H, W) uint8 with C in (1, 3) from any layout and pixel scale the module allows."""
    if x.dtype.kind not in "iuf":
        raise DataError(
            f"{where}: dtype {x.dtype}; expected uint8 pixels or floats in [0, 1] or [0, 255]"
        )
    if x.size == 0:
        raise DataError(f"{where}: holds no pixels (shape {x.shape})")
    x = _channels_first(x, where)
    if x.shape[1] == 4:
        x = x[:, :3]  # RGBA: drop alpha
    # np.array copies: torch gets its own contiguous, writable memory.
    return np.array(_to_uint8(x, where), dtype=np.uint8, order="C")


def _channels_first(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]  # (N, H, W) -> (N, 1, H, W)
    if x.ndim != 4:
        raise DataError(
            f"{where}: shape {x.shape}; expected (N, H, W), (N, C, H, W) or (N, H, W, C) "
            "with C in 1, 3, 4"
        )
    first, last = x.shape[1] in _CHANNELS, x.shape[3] in _CHANNELS
    if first and (not last or x.shape[1] in (1, 3)):
        return x
    if last:
        return x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    raise DataError(
        f"{where}: shape {x.shape}; neither axis 1 nor axis 3 is a channel axis of 1, 3 or 4"
    )


def _to_uint8(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"{where}: holds NaN or infinite values")
    lo, hi = x.min(), x.max()
    if lo < 0 or hi > 255:
        raise DataError(f"{where}: values span [{lo:g}, {hi:g}]; expected [0, 255] or [0, 1]")
    if x.dtype.kind != "f":
        return x
    scale = 255.0 if hi <= 1.0 else 1.0  # the [0, 1] scale (e.g. ToTensor output) or [0, 255]
    return np.rint(x.astype(np.float32) * scale)


def _labels(y: np.ndarray, n: int, x_where: str, y_where: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # Keras ships labels as an (N, 1) column
    if y.ndim != 1:
        one_hot = " (one-hot? store argmax(axis=1))" if y.ndim == 2 else ""
        raise DataError(f"{y_where}: shape {y.shape}; expected (N,) class indices{one_hot}")
    if y.dtype.kind not in "iu":
        raise DataError(f"{y_where}: dtype {y.dtype}; expected integer class indices")
    if len(y) != n:
        raise DataError(f"{x_where} has {n} images but {y_where} has {len(y)} labels")
    if n and y.min() < 0:
        raise DataError(f"{y_where}: label {y.min()} is negative; expected class indices 0, 1, ...")
    if n and y.max() >= MAX_CLASSES:
        raise DataError(
            f"{y_where}: label {y.max()} is too large; expected class indices 0, 1, ... below "
            f"{MAX_CLASSES:,}"
        )
    return y.astype(np.int64)


def _check_same_image_shape(pairs: dict, where: Callable[[str], str]) -> None:
    want = pairs["train"][0].shape[1:]
    for split, suffix in (("test", "_test"), ("val", "_val")):
        if split in pairs and pairs[split][0].shape[1:] != want:
            raise DataError(
                f"{where('x' + suffix)}: images are C×H×W = {pairs[split][0].shape[1:]} but x's "
                f"are {want}"
            )


def _classes(names: np.ndarray | None, where: str, pairs: dict) -> tuple[str, ...]:
    top = max(int(y.max()) for _, y in pairs.values() if len(y))
    if names is None:
        return tuple(str(i) for i in range(top + 1))
    if names.ndim != 1 or names.dtype.kind not in "USiu":
        raise DataError(f"{where}: expected a list of class names, got {names.dtype} {names.shape}")
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
    if len(classes) <= top:
        raise DataError(f"{where}: names {len(classes)} classes but labels go up to {top}")
    return classes


def _check_two_classes(y: np.ndarray, where: str) -> None:
    present = np.unique(y)
    if len(present) < 2:
        raise DataError(
            f"{where}: only one class ({present[0]}) among the training labels; "
            "a classifier needs at least 2"
        )


def _one_line(error: Exception) -> str:
    """An exception's text on one line (some span several), for our one-line messages."""
    return " ".join(str(error).split()) or type(error).__name__
