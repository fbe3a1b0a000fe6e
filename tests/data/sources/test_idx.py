"""mnist and fashion-mnist: IDX files found in data.root, torchvision's layout, the system
package, or downloaded; every malformed file is a one-line DataError naming it."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from cnnlab import data
from cnnlab.config.schema import DataConfig
from cnnlab.data.registry import SOURCES
from cnnlab.data.sources import idx

FASHION_CLASSES = (
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
)
CLASSES = {"mnist": tuple(str(d) for d in range(10)), "fashion-mnist": FASHION_CLASSES}
TORCHVISION_FOLDER = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


def read(name: str, root: Path | None = None):
    return SOURCES.get(name)(DataConfig(name=name, root=None if root is None else str(root)))


def assert_matches(splits, fake, name: str) -> None:
    """The source returns exactly the fake's pixels and labels, as N×1×H×W uint8 / int64."""
    for got, x, y in (
        (splits.train, fake.train_x, fake.train_y),
        (splits.test, fake.test_x, fake.test_y),
    ):
        assert got.images.dtype == torch.uint8 and got.labels.dtype == torch.int64
        assert tuple(got.images.shape) == (len(x), 1, *x.shape[1:])
        assert np.array_equal(got.images[:, 0].numpy(), x)
        assert np.array_equal(got.labels.numpy(), y)
        assert got.classes == CLASSES[name]
    assert splits.val is None  # build() splits validation off train


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_reads_the_four_files_in_root(tmp_path, make_idx, name, gz):
    fake = make_idx(tmp_path, gz=gz)
    assert_matches(read(name, tmp_path), fake, name)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_reads_torchvisions_layout_under_root(tmp_path, make_idx, name):
    fake = make_idx(tmp_path / TORCHVISION_FOLDER[name] / "raw", gz=True)
    assert_matches(read(name, tmp_path), fake, name)


def test_plain_file_wins_over_its_gz(tmp_path, make_idx):
    # torchvision's raw/ folder keeps both; the plain one is read (no decompression).
    fake = make_idx(tmp_path)
    for stem in IDX_STEMS:
        (tmp_path / f"{stem}.gz").write_bytes(b"not gzip")
    assert_matches(read("mnist", tmp_path), fake, "mnist")


def test_fashion_mnist_falls_back_to_the_system_package(tmp_path, make_idx, monkeypatch):
    fake = make_idx(tmp_path / "system", gz=True)
    monkeypatch.setattr(idx, "FASHION_SYSTEM_DIR", tmp_path / "system")
    assert_matches(read("fashion-mnist"), fake, "fashion-mnist")
    assert_matches(read("fashion-mnist", tmp_path / "empty"), fake, "fashion-mnist")


def test_mnist_does_not_read_the_fashion_system_package(
    tmp_path, make_idx, monkeypatch, data_error
):
    make_idx(tmp_path / "system", gz=True)
    monkeypatch.setattr(idx, "FASHION_SYSTEM_DIR", tmp_path / "system")
    data_error(SOURCES.get("mnist"), DataConfig(name="mnist"), "download failed")


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried ..., got:\n..."),
        URLError("[Errno -3] Temporary failure in name resolution"),
    ],
    ids=["runtime-error", "url-error"],
)
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_absent_and_offline_says_where_it_looked_and_how_to_get_it(
    tmp_path, torchvision_datasets, monkeypatch, data_error, name, failure
):
    class Offline:
        def __init__(self, root, train=True, download=False):
            raise failure

    monkeypatch.setattr(torchvision_datasets, TORCHVISION_FOLDER[name], Offline)
    cfg = DataConfig(name=name, root=str(tmp_path))
    msg = data_error(SOURCES.get(name), cfg, str(tmp_path), "download failed", "data.root")
    assert all(stem in msg for stem in IDX_STEMS)
    if name == "fashion-mnist":
        assert "apt-get install dataset-fashion-mnist" in msg
        assert str(idx.FASHION_SYSTEM_DIR) in msg


@pytest.mark.parametrize("with_root", [True, False], ids=["into-root", "into-cache"])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_downloads_through_torchvision_when_absent(
    tmp_path, torchvision_datasets, monkeypatch, make_idx, name, with_root
):
    calls = []

    class Downloading:  # writes what torchvision's download leaves: <root>/<Class>/raw/*
        def __init__(self, root, train=True, download=False):
            calls.append((Path(root), download))
            self.fake = make_idx(Path(root) / TORCHVISION_FOLDER[name] / "raw", gz=True)

    monkeypatch.setattr(torchvision_datasets, TORCHVISION_FOLDER[name], Downloading)
    root = tmp_path / "data" if with_root else None
    expected_root = root if with_root else tmp_path / "xdg-cache" / "cnnlab" / "datasets"
    splits = read(name, root)
    assert calls == [(expected_root, True)]
    fake = make_idx(tmp_path / "same-fake")  # make_idx is seeded: the same arrays again
    assert_matches(splits, fake, name)
    read(name, root)  # the second time it is found where the download left it
    assert len(calls) == 1


def test_download_that_leaves_no_files_is_an_error(tmp_path, torchvision_datasets, data_error):
    torchvision_datasets.MNIST = lambda root, train, download: None
    data_error(SOURCES.get("mnist"), DataConfig(name="mnist"), "left no IDX files")


def test_root_that_is_a_file_is_an_error(tmp_path, data_error):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    cfg = DataConfig(name="mnist", root=str(tmp_path / "train-images-idx3-ubyte.gz"))
    data_error(SOURCES.get("mnist"), cfg, "is a file", "t10k-labels-idx1-ubyte")


BAD_FILES = {
    # case: (file replaced, its bytes from (good array, IDX encoder), message fragment)
    "images-magic": ("train-images-idx3-ubyte", lambda a, enc: enc(a, magic=0x0801), "magic"),
    "labels-magic": ("t10k-labels-idx1-ubyte", lambda a, enc: enc(a, magic=0x0803), "magic"),
    "truncated-images": ("train-images-idx3-ubyte", lambda a, enc: enc(a)[:-5], "truncated"),
    "truncated-labels": ("train-labels-idx1-ubyte", lambda a, enc: enc(a)[:-1], "truncated"),
    "short-header": ("t10k-images-idx3-ubyte", lambda a, enc: enc(a)[:10], "truncated"),
    "extra-bytes": ("t10k-images-idx3-ubyte", lambda a, enc: enc(a) + b"\0", "extra bytes"),
    "count-mismatch": ("train-labels-idx1-ubyte", lambda a, enc: enc(a[:-1]), "has 49 labels"),
    "label-10": ("t10k-labels-idx1-ubyte", lambda a, enc: enc(a + 1), "label 10 is out of range"),
    "test-size": (
        "t10k-images-idx3-ubyte",
        lambda a, enc: enc(a[:, :20, :20]),
        "but the training images are (28, 28)",
    ),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("case", BAD_FILES)
def test_malformed_file_is_a_data_error_naming_it(
    tmp_path, make_idx, idx_writer, data_error, case, gz
):
    fake = make_idx(tmp_path, gz=gz)
    stem, corrupt, fragment = BAD_FILES[case]
    good = {
        "train-images-idx3-ubyte": fake.train_x,
        "train-labels-idx1-ubyte": fake.train_y,
        "t10k-images-idx3-ubyte": fake.test_x,
        "t10k-labels-idx1-ubyte": fake.test_y,
    }[stem]
    path = tmp_path / f"{stem}{fake.suffix}"
    idx_writer.write(path, corrupt(good, idx_writer.bytes))
    data_error(
        SOURCES.get("mnist"), DataConfig(name="mnist", root=str(tmp_path)), str(path), fragment
    )


def test_gzip_file_without_gz_suffix_says_so(tmp_path, make_idx, data_error):
    make_idx(tmp_path, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    (tmp_path / "t10k-labels-idx1-ubyte.gz").rename(path)
    cfg = DataConfig(name="mnist", root=str(tmp_path))
    data_error(SOURCES.get("mnist"), cfg, str(path), "gzip-compressed; name it")


def test_corrupt_gzip_is_a_data_error_naming_it(tmp_path, make_idx, data_error):
    make_idx(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])  # a download cut short
    data_error(
        SOURCES.get("mnist"), DataConfig(name="mnist", root=str(tmp_path)), str(path), "cannot read"
    )


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_from_the_system_package(monkeypatch):
    monkeypatch.setattr(idx, "FASHION_SYSTEM_DIR", REAL_FASHION)
    splits = read("fashion-mnist")
    assert tuple(splits.train.images.shape) == (60000, 1, 28, 28)
    assert tuple(splits.test.images.shape) == (10000, 1, 28, 28)
    assert splits.train.images.dtype == torch.uint8
    assert splits.train.classes == FASHION_CLASSES
    assert splits.train.labels.bincount().tolist() == [6000] * 10
    assert splits.test.labels.bincount().tolist() == [1000] * 10
    assert int(splits.train.images.max()) == 255  # real photos use the full range


def test_plugs_into_build(tmp_path, make_idx):
    make_idx(tmp_path)  # 50 train (5 per class), 20 test
    bundle = data.build(DataConfig(name="mnist", root=str(tmp_path)))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (40, 10, 20)
    assert bundle.info.classes == CLASSES["mnist"]
    assert bundle.info.channels == 1 and bundle.info.image_size == (28, 28)
