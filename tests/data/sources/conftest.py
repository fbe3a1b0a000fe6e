"""Small fakes written in the real on-disk formats, and a sandbox for every source test.

The sandbox keeps sources off the network (torchvision's datasets module is replaced by one
that fails as torchvision does offline), out of the user's cache and away from the system's
Fashion-MNIST, so "absent" really is absent.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import types
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cnnlab.errors import DataError

CIFAR10_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@pytest.fixture(autouse=True)
def torchvision_datasets(offline_torchvision) -> types.ModuleType:
    """The fake `torchvision.datasets` the sources see; tests swap its classes to simulate."""
    return offline_torchvision


@pytest.fixture
def data_error() -> Callable[..., str]:
    """data_error(read, cfg, *fragments): read(cfg) raises a one-line DataError holding each."""

    def check(read, cfg, *fragments: str) -> str:
        with pytest.raises(DataError) as e:
            read(cfg)
        msg = str(e.value)
        assert "\n" not in msg, msg
        for fragment in fragments:
            assert fragment in msg, msg
        return msg

    return check


# --- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file: big-endian magic 0x000008<ndim>, one uint32 per dimension, the bytes."""
    magic = 0x0800 | array.ndim if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


@pytest.fixture
def idx_writer() -> SimpleNamespace:
    """.bytes(array, magic=None) and .write(path, data) for hand-made (or broken) IDX files.

    A fixture, not an import: test modules cannot import this conftest reliably."""
    return SimpleNamespace(bytes=idx_bytes, write=write_idx_file)


@pytest.fixture
def make_idx() -> Callable[..., SimpleNamespace]:
    """make_idx(folder, gz=False, n_train=50, n_test=20, size=28) -> the arrays written.

    Labels cycle 0..9, so every class has n/10 images (what a stratified split needs)."""

    def make(folder: Path, gz: bool = False, n_train=50, n_test=20, size=28) -> SimpleNamespace:
        rng = np.random.default_rng(0)
        arrays = {}
        for prefix, n in (("train", n_train), ("t10k", n_test)):
            arrays[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (n, size, size), np.uint8)
            arrays[f"{prefix}-labels-idx1-ubyte"] = (np.arange(n) % 10).astype(np.uint8)
        suffix = ".gz" if gz else ""
        for stem, array in arrays.items():
            write_idx_file(folder / f"{stem}{suffix}", idx_bytes(array))
        return SimpleNamespace(
            folder=folder,
            suffix=suffix,
            train_x=arrays["train-images-idx3-ubyte"],  # (N, 28, 28) uint8
            train_y=arrays["train-labels-idx1-ubyte"],
            test_x=arrays["t10k-images-idx3-ubyte"],
            test_y=arrays["t10k-labels-idx1-ubyte"],
        )

    return make


# --- CIFAR ----------------------------------------------------------------------------------


def dump_pickle(obj) -> bytes:
    # Protocol 2, as the originals (written by Python 2's cPickle).
    return pickle.dumps(obj, protocol=2)


def cifar10_batch(data: np.ndarray, labels: np.ndarray, name: str) -> dict:
    return {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in labels],  # a plain list, as in the originals
        b"data": data,  # (N, 3072) uint8
        b"filenames": [f"img_{i}.png".encode() for i in range(len(data))],
    }


def cifar100_batch(data: np.ndarray, fine: np.ndarray, name: str) -> dict:
    return {
        b"filenames": [f"img_{i}.png".encode() for i in range(len(data))],
        b"batch_label": name.encode(),
        b"fine_labels": [int(v) for v in fine],
        b"coarse_labels": [int(v) // 5 for v in fine],  # 5 fine classes per superclass
        b"data": data,
    }


@pytest.fixture
def make_cifar() -> Callable[..., SimpleNamespace]:
    """make_cifar(kind, parent, archive=False) -> what was written and what should be read.

    cifar10: 5 train batches of 10 images (labels 0..9 each) and a test batch of 20.
    cifar100: 100 train images (fine label i, coarse i // 5) and 20 test images.
    `files` maps batch name -> bytes; the folder (or the .tar.gz) goes under `parent`."""

    def make(kind: str, parent: Path, archive: bool = False) -> SimpleNamespace:
        rng = np.random.default_rng(1)

        def rows(n: int) -> np.ndarray:  # (n, 3072) uint8: R, G, B planes of 32x32, row-major
            return rng.integers(0, 256, (n, 3072), np.uint8)

        if kind == "cifar10":
            folder, archive_name = "cifar-10-batches-py", "cifar-10-python.tar.gz"
            train = [(rows(10), np.arange(10)) for _ in range(5)]
            test = (rows(20), np.arange(20) % 10)
            files = {
                f"data_batch_{i + 1}": cifar10_batch(x, y, f"training batch {i + 1} of 5")
                for i, (x, y) in enumerate(train)
            }
            files["test_batch"] = cifar10_batch(*test, "testing batch 1 of 1")
            files["batches.meta"] = {
                b"num_cases_per_batch": 10,
                b"label_names": [n.encode() for n in CIFAR10_NAMES],
                b"num_vis": 3072,
            }
            classes = {"fine": CIFAR10_NAMES}
        else:
            folder, archive_name = "cifar-100-python", "cifar-100-python.tar.gz"
            train = [(rows(100), np.arange(100))]
            test = (rows(20), np.arange(20) * 5)
            files = {"train": cifar100_batch(*train[0], "training batch 1 of 1")}
            files["test"] = cifar100_batch(*test, "testing batch 1 of 1")
            fine = tuple(f"fine_{i}" for i in range(100))
            coarse = tuple(f"coarse_{i}" for i in range(20))
            files["meta"] = {
                b"fine_label_names": [n.encode() for n in fine],
                b"coarse_label_names": [n.encode() for n in coarse],
            }
            classes = {"fine": fine, "coarse": coarse}
        blobs = {name: dump_pickle(batch) for name, batch in files.items()}
        if archive:
            path = parent / archive_name
            write_tar(path, folder, blobs)
        else:
            path = parent / folder
            path.mkdir(parents=True)
            for name, blob in blobs.items():
                (path / name).write_bytes(blob)
        return SimpleNamespace(
            path=path,
            folder=folder,
            blobs=blobs,
            train_rows=np.concatenate([x for x, _ in train]),  # (N, 3072) uint8
            train_fine=np.concatenate([y for _, y in train]),
            test_rows=test[0],
            test_fine=test[1],
            classes=classes,
        )

    return make


@pytest.fixture
def cifar_writer() -> SimpleNamespace:
    """.pickle(obj) -> bytes as the originals, .tar(path, folder, {name: bytes})."""
    return SimpleNamespace(pickle=dump_pickle, tar=write_tar)


def write_tar(path: Path, folder: str, blobs: dict[str, bytes]) -> None:
    """A .tar.gz laid out as the originals: a folder entry, then folder/<batch> members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        entry = tarfile.TarInfo(folder)
        entry.type = tarfile.DIRTYPE
        tar.addfile(entry)
        for name, blob in blobs.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
