"""CIFAR-10 and CIFAR-100 in the "python version" the authors ship (pickled batches).

data.root may be the extracted folder (`cifar-10-batches-py/`, `cifar-100-python/`), the folder
holding it (or holding the `.tar.gz`), or the archive itself (`cifar-10-python.tar.gz`,
`cifar-100-python.tar.gz`), whose members are read in place, without extracting.

CIFAR-10: data_batch_1..5 (train), test_batch (test), batches.meta (label_names).
CIFAR-100: train, test, meta (fine_label_names, coarse_label_names); data.label_set picks the
100 fine or the 20 coarse labels.

Each batch is a dict with bytes keys: b"data" is an (N, 3072) uint8 array whose rows are the
red, green and blue 32×32 planes in turn (row-major), so a reshape gives N×3×32×32.

A pickle can run any code while it loads, so batches are unpickled with an allow-list of the
few globals real CIFAR batches name (numpy's array reconstruction, in the form of protocols 0-4
and of protocol 5); anything else is refused before it is called. The numpy functions are
wrapped so that an array is only ever as large as the bytes the file holds.
"""

from __future__ import annotations

import math
import pickle
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import torch

from cnnlab.config.schema import DataConfig
from cnnlab.data.imageset import ImageSet, SourceSplits
from cnnlab.data.registry import register_source
from cnnlab.errors import DataError

try:  # numpy >= 2 moved the module; pickles name either spelling
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

_PIXELS = 3 * 32 * 32  # bytes per row of b"data"


@dataclass(frozen=True)
class _Layout:
    name: str  # data.name
    folder: str  # what the archive extracts to
    archive: str
    train: tuple[str, ...]  # batch files, concatenated in this order
    test: str
    meta: str


_CIFAR10 = _Layout(
    name="cifar10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test="test_batch",
    meta="batches.meta",
)
_CIFAR100 = _Layout(
    name="cifar100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    train=("train",),
    test="test",
    meta="meta",
)


@register_source("cifar10")
def read_cifar10(cfg: DataConfig) -> SourceSplits:
    """CIFAR-10: the python pickle batches in data.root (extracted or the .tar.gz)."""
    # data.label_set only concerns cifar100; it has no meaning here.
    return _read(cfg, _CIFAR10, labels_key=b"labels", names_key=b"label_names")


@register_source("cifar100")
def read_cifar100(cfg: DataConfig) -> SourceSplits:
    """CIFAR-100: the python pickle batches; data.label_set fine (100) or coarse (20)."""
    kind = cfg.label_set  # "fine" (100 classes) or "coarse" (20 superclasses)
    return _read(
        cfg,
        _CIFAR100,
        labels_key=f"{kind}_labels".encode(),
        names_key=f"{kind}_label_names".encode(),
    )


def _read(cfg: DataConfig, layout: _Layout, labels_key: bytes, names_key: bytes) -> SourceSplits:
    source = _locate(cfg, layout)
    batches = _load_batches(source, layout)  # file name -> (where, dict)
    where, meta = batches[layout.meta]
    classes = _class_names(meta, names_key, where)
    train = [_parse_batch(*batches[name], labels_key, classes) for name in layout.train]
    images = torch.cat([x for x, _ in train])  # (50000, 3, 32, 32) uint8 for the real sets
    labels = torch.cat([y for _, y in train])
    test = ImageSet(*_parse_batch(*batches[layout.test], labels_key, classes), classes)
    return SourceSplits(train=ImageSet(images, labels, classes), test=test, location=str(source))


def _locate(cfg: DataConfig, layout: _Layout) -> Path:
    """The extracted folder or the archive that data.root points at."""
    expected = f"{layout.folder}/, the folder holding it, or {layout.archive}"
    if cfg.root is None:
        raise DataError(f"{layout.name}: data.root is not set; point it at {expected}")
    root = Path(cfg.root).expanduser().absolute()
    if root.is_file():  # the archive, or one batch file of the extracted folder
        names = (*layout.train, layout.test, layout.meta)
        return root.parent if root.name in names else root
    if not root.is_dir():
        raise DataError(f"data.root = {cfg.root} does not exist; {layout.name} expects {expected}")
    for candidate in (
        root / layout.meta,
        root / layout.folder / layout.meta,
        root / layout.archive,
    ):
        if candidate.is_file():
            return candidate.parent if candidate.name == layout.meta else candidate
    raise DataError(
        f"data.root = {cfg.root} holds no {layout.name} batches; expected {expected} "
        f"(files {', '.join((*layout.train, layout.test, layout.meta))})"
    )


def _load_batches(source: Path, layout: _Layout) -> dict[str, tuple[str, dict]]:
    """Every batch file of `layout`, unpickled: name -> (where it came from, its dict)."""
    names = (*layout.train, layout.test, layout.meta)
    if source.is_dir():
        found = {}
        for name in names:
            path = source / name
            if not path.is_file():
                raise DataError(
                    f"{source}: no {name} (a {layout.folder} folder holds {', '.join(names)})"
                )
            with path.open("rb") as f:
                found[name] = (str(path), _unpickle(f, str(path)))
        return found
    found = dict(_archive_members(source, set(names)))
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{source}: no {missing[0]} inside (expected the {layout.archive} archive)")
    return found


def _archive_members(archive: Path, names: set[str]) -> Iterator[tuple[str, tuple[str, dict]]]:
    """Unpickles the wanted members in one pass over the compressed stream (no extraction)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = PurePosixPath(member.name).name
                if member.isfile() and name in names:
                    where = f"{archive}:{member.name}"
                    yield name, (where, _unpickle(tar.extractfile(member), where))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{archive}: not a readable .tar.gz archive ({_one_line(e)})") from None


class _Refused(Exception):
    """A pickle named a global outside the allow-list, or called an allowed one with arguments
    real batches never use."""


class _NdarrayClass:
    """What the name numpy.ndarray unpickles to: only an argument of _empty_array. The class
    itself, called by a pickle, would allocate any shape it is given."""


_NDARRAY = _NdarrayClass()


def _empty_array(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's _reconstruct as array pickles of protocols 0-4 call it: an empty ndarray that
    the pickle's state then fills (numpy checks the state's bytes against its shape). Any other
    shape would allocate memory the file does not hold."""
    if subtype is not _NDARRAY or tuple(shape) != (0,):
        raise _Refused("numpy _reconstruct of anything but an empty ndarray")
    return _reconstruct(np.ndarray, (0,), dtype)


def _latin1(text: Any, encoding: Any = "utf-8") -> bytes:
    """codecs.encode as Python 3 pickles bytes at protocols 0-2: text -> latin-1 bytes. Other
    codecs (zlib, base64, ...) are refused: a batch never names them."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode with encoding {str(encoding)[:40]!r}")
    return text.encode("latin-1")


def _from_buffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's _frombuffer, which protocol 5 pickles of arrays call: the bytes in the pickle,
    viewed as `shape` of `dtype`, when they are exactly that many bytes."""
    if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, np.dtype):
        raise _Refused("numpy _frombuffer of anything but bytes and a dtype")
    if dtype.hasobject or order not in ("C", "F"):
        raise _Refused(f"numpy _frombuffer of a {dtype} array in order {order!r}")
    shape = tuple(int(d) for d in shape)
    if math.prod(shape) * dtype.itemsize != len(buf):
        raise ValueError(f"{len(buf)} bytes cannot be a {dtype} array of shape {shape}")
    return np.frombuffer(buf, dtype).reshape(shape, order=order)


# (module, name) -> the object a CIFAR batch may name. numpy arrays pickle as
# _reconstruct(ndarray, (0,), b"b") plus their state (protocols 0-4) or as
# _frombuffer(bytes, dtype, shape, order) (protocol 5), with a dtype; numpy 2 spells the
# modules numpy._core.*, numpy 1 numpy.core.*. Bytes pickled by Python 3 at protocol < 3 come
# back through _codecs.encode(text, "latin1").
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _empty_array,
    ("numpy._core.multiarray", "_reconstruct"): _empty_array,
    ("numpy.core.numeric", "_frombuffer"): _from_buffer,
    ("numpy._core.numeric", "_frombuffer"): _from_buffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def _unpickle(f: IO[bytes], where: str) -> dict:
    try:
        # encoding="bytes" as the CIFAR authors' loader: Python 2 str keys stay bytes (b"data").
        obj = _BatchUnpickler(f, encoding="bytes").load()
    except _Refused as e:
        raise DataError(f"{where}: not a CIFAR batch (refusing to load pickled {e})") from None
    except Exception as e:  # noqa: BLE001 - a corrupt pickle can fail in any of a dozen ways
        raise DataError(f"{where}: not a CIFAR batch (unreadable pickle: {_one_line(e)})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: not a CIFAR batch (holds a {type(obj).__name__}, not a dict)")
    return obj


def _entry(batch: dict, key: bytes, where: str) -> Any:
    # Batches re-pickled by Python 3 have str keys; the originals have bytes keys.
    for k in (key, key.decode()):
        if k in batch:
            return batch[k]
    keys = ", ".join(repr(k) for k in batch)
    raise DataError(f"{where}: not a CIFAR batch (no {key!r} entry; it has {keys})")


def _class_names(meta: dict, key: bytes, where: str) -> tuple[str, ...]:
    names = _entry(meta, key, where)
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{where}: {key!r} is not a list of names")
    return tuple(n.decode() if isinstance(n, bytes) else n for n in names)


def _parse_batch(
    where: str, batch: dict, labels_key: bytes, classes: tuple[str, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, 32, 32) uint8 images and (N,) int64 labels of one batch, checked."""
    data = _entry(batch, b"data", where)
    labels = _label_array(_entry(batch, labels_key, where), labels_key, len(classes), where)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{where}: b'data' is {got}; expected a uint8 (N, {_PIXELS}) array")
    if data.shape[1] != _PIXELS:
        raise DataError(
            f"{where}: rows of b'data' hold {data.shape[1]} bytes; expected {_PIXELS} (3×32×32)"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise DataError(
            f"{where}: {labels_key!r} must be {len(data)} integer labels, one per row of b'data'; "
            f"got {labels.dtype} {labels.shape}"
        )
    if len(labels) and not 0 <= labels.min() <= labels.max() < len(classes):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise DataError(
            f"{where}: label {bad} is out of range; the meta file names {len(classes)} classes"
        )
    # A view of the unpickled array; copied only if read-only (torch wants writable memory).
    images = np.require(data.reshape(-1, 3, 32, 32), requirements=["C", "W"])
    images = torch.from_numpy(images)  # (N, 3, 32, 32) uint8
    return images, torch.from_numpy(labels.astype(np.int64))


def _label_array(labels: Any, key: bytes, n_classes: int, where: str) -> np.ndarray:
    """A list of ints (as the originals hold) or an integer array -> an array, without
    np.asarray guessing at nested lists (a pickle can nest references to build a huge one)."""
    if isinstance(labels, np.ndarray):
        return labels
    if isinstance(labels, list) and all(type(v) is int for v in labels):
        bad = next((v for v in labels if not 0 <= v < n_classes), None)
        if bad is not None:
            raise DataError(
                f"{where}: label {bad} is out of range; the meta file names {n_classes} classes"
            )
        return np.array(labels, dtype=np.int64)
    raise DataError(f"{where}: {key!r} is a {type(labels).__name__}; expected a list of integers")


def _one_line(error: Exception) -> str:
    """An exception's text on one line (some span several), for our one-line messages."""
    return " ".join(str(error).split()) or type(error).__name__
