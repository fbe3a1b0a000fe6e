"""`cnnlab data info PATH`: tell a dataset's format from what lies on disk."""

from __future__ import annotations

from pathlib import Path

from cnnlab.errors import DataError

_IDX_TRAIN = "train-images-idx3-ubyte"


def guess_source(path: Path) -> str:
    """The data.name that reads `path`, judged by the files each format is known by."""
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    name = path.name.lower()
    if path.is_file():
        if name.endswith((".npz", ".npy")):
            return "arrays"
        if name.startswith("cifar-100"):
            return "cifar100"
        if name.startswith("cifar-10"):
            return "cifar10"
        raise DataError(f"{path}: cannot tell the dataset format; pass data.name=NAME")
    if (path / "wnids.txt").is_file():
        return "tiny-imagenet"
    if any((path / p).exists() for p in ("cifar-100-python", "cifar-100-python.tar.gz", "meta")):
        return "cifar100"
    markers = ("cifar-10-batches-py", "cifar-10-python.tar.gz", "data_batch_1")
    if any((path / p).exists() for p in markers):
        return "cifar10"
    if any(path.glob(f"{_IDX_TRAIN}*")) or any(path.glob(f"*/raw/{_IDX_TRAIN}*")):
        return "fashion-mnist" if "fashion" in str(path).lower() else "mnist"
    if (path / "x.npy").is_file():
        return "arrays"
    if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        return "folder"
    raise DataError(f"{path}: cannot tell the dataset format; pass data.name=NAME")
