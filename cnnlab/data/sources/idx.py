"""MNIST and Fashion-MNIST: four IDX files, gzipped (`.gz`) or not.

    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte

Where they are looked for, first match wins:
1. `data.root` itself, then torchvision's layout under it (`<root>/MNIST/raw`,
   `<root>/FashionMNIST/raw`);
2. fashion-mnist only: Debian's `dataset-fashion-mnist` package (FASHION_SYSTEM_DIR);
3. an earlier download (`<cache>/datasets/<MNIST|FashionMNIST>/raw` when data.root is unset);
4. a download through torchvision into data.root (created if needed) or `<cache>/datasets`.

The IDX format (http://yann.lecun.com/exdb/mnist/) is parsed here with numpy: a big-endian
magic number 0x000008NN (unsigned bytes, NN dimensions), NN big-endian uint32 sizes, then the
bytes. The train/test split the files ship is kept; build() splits validation off train.
"""

from __future__ import annotations

import gzip
import importlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.config.schema import DataConfig
from cnnlab.data.imageset import ImageSet, SourceSplits
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
    if cfg.root is not None and Path(cfg.root).expanduser().is_file():
        raise DataError(
            f"data.root = {cfg.root} is a file; {ds.name} wants the folder that holds "
            f"{', '.join(_STEMS)} (each .gz or not)"
        )
    places = _places(cfg, ds)
    found = next((files for files in map(_files_in, places) if files is not None), None)
    if found is None:
        found = _download(cfg, ds, places)
    splits = {_SPLITS[p]: _read_split(found, p, ds) for p in _SPLITS}
    train, test = splits["train"], splits["test"]
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{found['t10k-images-idx3-ubyte']}: images are {tuple(test.images.shape[2:])} but "
            f"the training images are {tuple(train.images.shape[2:])}"
        )
    return SourceSplits(train=train, test=test)


def _places(cfg: DataConfig, ds: _Dataset) -> list[Path]:
    """Folders that may hold the four files, in the order they are tried."""
    places = []
    if cfg.root is not None:
        root = Path(cfg.root).expanduser()
        places += [root, root / ds.torchvision / "raw"]
    if ds is _FASHION:
        places.append(FASHION_SYSTEM_DIR)
    places.append(_download_root(cfg) / ds.torchvision / "raw")  # an earlier download
    return list(dict.fromkeys(places))  # with data.root set, the last repeats root/<Class>/raw


def _download_root(cfg: DataConfig) -> Path:
    return Path(cfg.root).expanduser() if cfg.root is not None else cache_root(cfg) / "datasets"


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
    root = _download_root(cfg)
    try:
        # Imported by name at call time: torchvision is slow to import and only needed here.
        datasets = importlib.import_module("torchvision.datasets")
        # One instance downloads all four files; the test split is the quicker one it loads after.
        getattr(datasets, ds.torchvision)(root=str(root), train=False, download=True)
    except (ImportError, OSError, RuntimeError) as e:  # URLError is an OSError
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(":")
        looked = ", ".join(str(p) for p in places)
        raise DataError(
            f"{ds.name}: the IDX files are not in {looked} and the download failed ({reason}); "
            f"{ds.install_hint} ({', '.join(_STEMS)}, each .gz or not)"
        ) from None
    files = _files_in(root / ds.torchvision / "raw")
    if files is None:
        raise DataError(f"{ds.name}: torchvision's download left no IDX files in {root}")
    return files


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
    """The array an IDX file of unsigned bytes holds, checked against its header."""
    raw = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim  # magic, then one uint32 per dimension
    kind = "images" if magic == _IMAGES_MAGIC else "labels"
    if len(raw) < header:
        raise DataError(f"{path}: truncated: {len(raw)} bytes, shorter than an IDX header")
    found = int.from_bytes(raw[:4], "big")
    if raw[:2] == b"\x1f\x8b":  # gzip's own magic: compressed, but not named .gz
        raise DataError(f"{path}: is gzip-compressed; name it {path.name}.gz or gunzip it")
    if found != magic:
        raise DataError(
            f"{path}: not an IDX {kind} file (magic number 0x{found:08x}, expected 0x{magic:08x})"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    size = math.prod(shape)  # Python ints: a garbage header cannot overflow
    if len(raw) - header != size:
        problem = "truncated" if len(raw) - header < size else "has extra bytes"
        raise DataError(
            f"{path}: {problem}: the header promises {size} bytes of {kind} {shape}, "
            f"the file holds {len(raw) - header}"
        )
    # Copied so torch gets a writable array (frombuffer views the immutable bytes).
    return np.frombuffer(raw, np.uint8, count=size, offset=header).reshape(shape).copy()


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; EOF: cut short
        raise DataError(f"{path}: cannot read ({_one_line(e)})") from None


def _one_line(error: Exception) -> str:
    """An exception's text on one line (some span several), for our one-line messages."""
    return " ".join(str(error).split()) or type(error).__name__
