"""MNIST and Fashion-MNIST: four IDX files, gzipped (`.gz`) or not.

    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte

With data.root set they are read from there only: `data.root` itself or torchvision's layout
under it (`<root>/MNIST/raw`, `<root>/FashionMNIST/raw`); anything else is an error naming the
path, never a silent fall-back to another copy. With data.root unset, first match wins:
1. fashion-mnist only: Debian's `dataset-fashion-mnist` package (FASHION_SYSTEM_DIR);
2. an earlier download (`<cache>/datasets/<MNIST|FashionMNIST>/raw`);
3. a download through torchvision, into a hidden staging folder that is moved into place only
   when all four files arrived, so a failed download leaves nothing behind.

The IDX format (http://yann.lecun.com/exdb/mnist/) is parsed here with numpy: a big-endian
magic number 0x000008NN (unsigned bytes, NN dimensions), NN big-endian uint32 sizes, then the
bytes. The header is checked against the file's size (or the most a .gz can inflate to) and
the memory available before the data is read. The train/test split the files ship is kept;
build() splits validation off train.
"""

from __future__ import annotations

import gzip
import importlib
import math
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from cnnlab.config.schema import DataConfig
from cnnlab.data.imageset import ImageSet, SourceSplits
from cnnlab.data.limits import DEFLATE_RATIO, check_claim, read_exactly
from cnnlab.data.paths import cache_root
from cnnlab.data.registry import register_source
from cnnlab.errors import DataError

# Debian/Ubuntu `apt-get install dataset-fashion-mnist` puts the four .gz files here.
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions: (N, rows, cols)
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension: (N,)
_SPLITS = {  # file prefix -> what the split is called in SourceSplits
    "train": "train",
    "t10k": "test",
}
_STEMS = tuple(
    f"{p}-{kind}" for p in _SPLITS for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
)


@dataclass(frozen=True)
class _Dataset:
    name: str  # data.name
    torchvision: str  # its torchvision.datasets class, also the folder torchvision downloads to
    classes: tuple[str, ...]
    install_hint: str  # how a user gets the files without our download


_MNIST = _Dataset(
    name="mnist",
    torchvision="MNIST",
    classes=tuple(str(d) for d in range(10)),
    install_hint="put the four IDX files in data.root",
)
_FASHION = _Dataset(
    name="fashion-mnist",
    torchvision="FashionMNIST",
    # Zalando's label order (github.com/zalandoresearch/fashion-mnist), as torchvision names them.
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    install_hint=(
        "run `apt-get install dataset-fashion-mnist`, or put the four IDX files in data.root"
    ),
)


@register_source("mnist")
def read_mnist(cfg: DataConfig) -> SourceSplits:
    """MNIST: the four IDX files (gzipped or not) in data.root, or torchvision's MNIST/raw."""
    return _read(cfg, _MNIST)


@register_source("fashion-mnist")
def read_fashion_mnist(cfg: DataConfig) -> SourceSplits:
    """Fashion-MNIST: the four IDX files in data.root, else the system copy, else a download."""
    return _read(cfg, _FASHION)


def _read(cfg: DataConfig, ds: _Dataset) -> SourceSplits:
    found = _in_root(cfg, ds) if cfg.root is not None else _in_default_places(cfg, ds)
    splits = {_SPLITS[p]: _read_split(found, p, ds) for p in _SPLITS}
    train, test = splits["train"], splits["test"]
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{found['t10k-images-idx3-ubyte']}: images are {tuple(test.images.shape[2:])} but "
            f"the training images are {tuple(train.images.shape[2:])}"
        )
    location = str(found["train-images-idx3-ubyte"].parent)
    return SourceSplits(train=train, test=test, location=location)


def _in_root(cfg: DataConfig, ds: _Dataset) -> dict[str, Path]:
    """The four files in data.root or its torchvision layout; an error naming the path else."""
    root = Path(cfg.root).expanduser().absolute()
    wanted = f"the four IDX files ({', '.join(_STEMS)}, each .gz or not)"
    if root.is_file():
        raise DataError(
            f"data.root = {root} is a file; {ds.name} wants the folder that holds {wanted}"
        )
    if not root.is_dir():
        raise DataError(
            f"data.root = {root} does not exist; {ds.name} wants the folder that holds {wanted} "
            f"(unset data.root to use {_defaults(ds)})"
        )
    for folder in (root, root / ds.torchvision / "raw"):
        files = _files_in(folder)
        if files is not None:
            return files
    raise DataError(
        f"data.root = {root} holds no {ds.name} data: {wanted} are not in it nor in "
        f"{ds.torchvision}/raw under it (unset data.root to use {_defaults(ds)})"
    )


def _defaults(ds: _Dataset) -> str:
    system = f"{FASHION_SYSTEM_DIR} or " if ds is _FASHION else ""
    return f"{system}a download into the cache"


def _in_default_places(cfg: DataConfig, ds: _Dataset) -> dict[str, Path]:
    places = [FASHION_SYSTEM_DIR] if ds is _FASHION else []
    places.append(_download_root(cfg) / ds.torchvision / "raw")  # an earlier download
    found = next((files for files in map(_files_in, places) if files is not None), None)
    return found if found is not None else _download(cfg, ds, places)


def _download_root(cfg: DataConfig) -> Path:
    return cache_root(cfg) / "datasets"


def _files_in(folder: Path) -> dict[str, Path] | None:
    """stem -> file when all four are in `folder` (plain preferred: it reads faster), else None."""
    files = {}
    for stem in _STEMS:
        path = next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
        if path is None:
            return None
        files[stem] = path
    return files


def _download(cfg: DataConfig, ds: _Dataset, places: list[Path]) -> dict[str, Path]:
    """Download through torchvision into a hidden staging folder beside the final one, then
    move the four files into place: an interrupted or failed download leaves no partial
    `<Class>/raw` for the next command to misread."""
    root = _download_root(cfg)
    target = root / ds.torchvision / "raw"
    looked = ", ".join(str(p) for p in places)
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{ds.torchvision}-download-", dir=root))
    except OSError as e:
        raise DataError(f"{ds.name}: cannot create a download folder in {root} ({e})") from None
    try:
        # Imported by name at call time: torchvision is slow to import and only needed here.
        datasets = importlib.import_module("torchvision.datasets")
        # One instance downloads all four files; the test split is the quicker one it loads after.
        getattr(datasets, ds.torchvision)(root=str(staging), train=False, download=True)
        files = _files_in(staging / ds.torchvision / "raw")
        if files is None:
            raise DataError(
                f"{ds.name}: torchvision's download left no IDX files in {ds.torchvision}/raw"
            )
        _move_into(files, target)
    except (ImportError, OSError, RuntimeError) as e:  # URLError is an OSError
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(":")
        raise DataError(
            f"{ds.name}: the IDX files are not in {looked} and the download failed ({reason}); "
            f"{ds.install_hint} ({', '.join(_STEMS)}, each .gz or not)"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _files_in(target)


def _move_into(files: dict[str, Path], target: Path) -> None:
    """Each downloaded file into `target`, replacing both spellings (plain, .gz) left there."""
    target.mkdir(parents=True, exist_ok=True)
    for stem, path in files.items():
        for old in (target / stem, target / f"{stem}.gz"):
            if old.name != path.name and old.is_file():
                old.unlink()
        os.replace(path, target / path.name)


def _read_split(files: dict[str, Path], prefix: str, ds: _Dataset) -> ImageSet:
    images_path = files[f"{prefix}-images-idx3-ubyte"]
    labels_path = files[f"{prefix}-labels-idx1-ubyte"]
    images = _read_idx(images_path, _IMAGES_MAGIC)  # (N, rows, cols) uint8
    labels = _read_idx(labels_path, _LABELS_MAGIC)  # (N,) uint8
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    n_classes = len(ds.classes)
    if len(labels) and int(labels.max()) >= n_classes:
        raise DataError(
            f"{labels_path}: label {int(labels.max())} is out of range: {ds.name} has "
            f"{n_classes} classes, labels 0..{n_classes - 1}"
        )
    return ImageSet(
        torch.from_numpy(images).unsqueeze(1),  # (N, 1, rows, cols) uint8
        torch.from_numpy(labels).to(torch.int64),
        ds.classes,
    )


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """The array an IDX file of unsigned bytes holds, checked against its header before the
    data is read: a header claiming 10^9 images, or a small .gz that inflates to gigabytes,
    ends here as one line."""
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim  # magic, then one uint32 per dimension
    kind = "images" if magic == _IMAGES_MAGIC else "labels"
    try:
        with _open(path) as f:
            header = f.read(header_size)
            if len(header) < header_size:
                raise DataError(
                    f"{path}: truncated: {len(header)} bytes, shorter than an IDX header"
                )
            shape = _check_header(path, header, magic, kind)
            size = math.prod(shape)  # Python ints: a garbage header cannot overflow
            what = f"{kind} {shape}"
            check_claim(size, _most_bytes(path, header_size), path, what)
            raw = read_exactly(f, size, path, what)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; EOF: cut short
        raise DataError(f"{path}: cannot read ({_one_line(e)})") from None
    if shape[0] == 0:
        raise DataError(f"{path}: holds 0 {kind}; an IDX file for cnnlab holds at least one")
    if magic == _IMAGES_MAGIC and 0 in shape[1:]:
        raise DataError(f"{path}: images of {shape[1]}×{shape[2]} pixels hold nothing")
    # Copied so torch gets a writable array (frombuffer views the immutable bytes).
    return np.frombuffer(raw, np.uint8, count=size).reshape(shape).copy()


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _check_header(path: Path, header: bytes, magic: int, kind: str) -> tuple[int, ...]:
    found = int.from_bytes(header[:4], "big")
    if header[:2] == b"\x1f\x8b":  # gzip's own magic: compressed, but not named .gz
        raise DataError(f"{path}: is gzip-compressed; name it {path.name}.gz or gunzip it")
    if found != magic:
        raise DataError(
            f"{path}: not an IDX {kind} file (magic number 0x{found:08x}, expected 0x{magic:08x})"
        )
    return tuple(int(d) for d in np.frombuffer(header, ">u4", offset=4))


def _most_bytes(path: Path, header_size: int) -> int:
    """The most data bytes after the header the file can yield: its size for a plain file, the
    deflate limit of its size for a .gz."""
    size = path.stat().st_size
    return size * DEFLATE_RATIO if path.suffix == ".gz" else size - header_size


def _one_line(error: Exception) -> str:
    """An exception's text on one line (some span several), for our one-line messages."""
    return " ".join(str(error).split()) or type(error).__name__
