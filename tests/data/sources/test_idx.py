"""mnist and fashion-mnist: IDX files found in data.root, torchvision's layout, the system
package, or downloaded; every malformed file is a one-line DataError naming it."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from cnnlab import data
from cnnlab.config.schema import DataConfig
from cnnlab.data import limits
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
    splits = read("fashion-mnist")
    assert_matches(splits, fake, "fashion-mnist")
    assert splits.location == str(tmp_path / "system")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_an_explicit_root_without_the_files_is_an_error_not_a_fall_back(
    tmp_path, make_idx, monkeypatch, torchvision_datasets, data_error, name
):
    # Issue 26: data.root=/nonexistent/dir trained on the system copy instead.
    make_idx(tmp_path / "system", gz=True)
    monkeypatch.setattr(idx, "FASHION_SYSTEM_DIR", tmp_path / "system")
    calls = []
    monkeypatch.setattr(
        torchvision_datasets, TORCHVISION_FOLDER[name], lambda **kw: calls.append(kw)
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = data_error(
        SOURCES.get(name), DataConfig(name=name, root=str(empty)), f"data.root = {empty}"
    )
    assert "holds no" in msg and "unset data.root" in msg
    missing = tmp_path / "nonexistent" / "dir"
    msg = data_error(
        SOURCES.get(name), DataConfig(name=name, root=str(missing)), f"data.root = {missing}"
    )
    assert "does not exist" in msg
    assert calls == []  # no download either
    assert not missing.exists() and list(empty.iterdir()) == []


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
    cfg = DataConfig(name=name)
    msg = data_error(SOURCES.get(name), cfg, str(tmp_path), "download failed", "data.root")
    assert all(stem in msg for stem in IDX_STEMS)
    if name == "fashion-mnist":
        assert "apt-get install dataset-fashion-mnist" in msg
        assert str(idx.FASHION_SYSTEM_DIR) in msg


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_downloads_through_torchvision_into_the_cache_when_absent(
    tmp_path, torchvision_datasets, monkeypatch, make_idx, name
):
    calls = []

    class Downloading:  # writes what torchvision's download leaves: <root>/<Class>/raw/*
        def __init__(self, root, train=True, download=False):
            calls.append((Path(root), download))
            self.fake = make_idx(Path(root) / TORCHVISION_FOLDER[name] / "raw", gz=True)

    monkeypatch.setattr(torchvision_datasets, TORCHVISION_FOLDER[name], Downloading)
    cache = tmp_path / "xdg-cache" / "cnnlab" / "datasets"
    splits = read(name)
    [(staging, download)] = calls
    assert download and staging.parent == cache and staging.name.startswith(".")
    assert not staging.exists()  # the staging folder is gone once the files moved in
    final = cache / TORCHVISION_FOLDER[name] / "raw"
    assert sorted(p.name for p in final.iterdir()) == sorted(f"{s}.gz" for s in IDX_STEMS)
    assert splits.location == str(final)
    fake = make_idx(tmp_path / "same-fake")  # make_idx is seeded: the same arrays again
    assert_matches(splits, fake, name)
    read(name)  # the second time it is found where the download left it
    assert len(calls) == 1


@pytest.mark.parametrize("leaves", ["nothing", "two-files"])
def test_a_failed_download_leaves_no_partial_folder(
    tmp_path, torchvision_datasets, monkeypatch, make_idx, data_error, leaves
):
    # Issue 27: a failed download left an empty MNIST/raw that the next command misread.
    class Failing:
        def __init__(self, root, train=True, download=False):
            raw = Path(root) / "MNIST" / "raw"
            raw.mkdir(parents=True)
            if leaves == "two-files":
                fake = make_idx(tmp_path / "partial", gz=True)
                for stem in IDX_STEMS[:2]:
                    (raw / f"{stem}.gz").write_bytes((fake.folder / f"{stem}.gz").read_bytes())
            raise RuntimeError("Error downloading t10k-images-idx3-ubyte.gz: connection reset")

    monkeypatch.setattr(torchvision_datasets, "MNIST", Failing)
    data_error(SOURCES.get("mnist"), DataConfig(name="mnist"), "download failed")
    cache = tmp_path / "xdg-cache" / "cnnlab" / "datasets"
    assert list(cache.iterdir()) == []  # no MNIST/, no staging folder
    data_error(SOURCES.get("mnist"), DataConfig(name="mnist"), "download failed")  # again


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


# --- sizes checked before reading -----------------------------------------------------------


def header(n: int, rows: int = 28, cols: int = 28) -> bytes:
    return struct.pack(">IIII", 0x0803, n, rows, cols)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_a_header_claiming_a_billion_images_is_refused_before_reading(
    tmp_path, make_idx, idx_writer, data_error, gz
):
    fake = make_idx(tmp_path, gz=gz)
    path = tmp_path / f"train-images-idx3-ubyte{fake.suffix}"
    idx_writer.write(path, header(10**9) + bytes(1000))
    cfg = DataConfig(name="mnist", root=str(tmp_path))
    data_error(SOURCES.get("mnist"), cfg, str(path), "the header promises 784,000,000,000 bytes")


def test_a_gzip_bomb_is_refused_before_it_inflates(tmp_path, make_idx, data_error):
    # ~1 MB of .gz claiming 1.6 GB: more than deflate can expand it to, so refused unread.
    make_idx(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    n = 2_000_000
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    bomb = compressor.compress(header(n)) + compressor.compress(bytes(1 << 20))
    path.write_bytes(bomb + compressor.flush())
    assert path.stat().st_size < 10_000
    cfg = DataConfig(name="mnist", root=str(tmp_path))
    data_error(SOURCES.get("mnist"), cfg, str(path), "the file can hold at most")


def test_a_set_larger_than_memory_is_refused_before_reading(
    tmp_path, make_idx, monkeypatch, data_error
):
    make_idx(tmp_path)
    monkeypatch.setattr(limits, "memory_bytes", lambda: 10_000)  # 50 x 28 x 28 = 39,200 bytes
    cfg = DataConfig(name="mnist", root=str(tmp_path))
    data_error(SOURCES.get("mnist"), cfg, "train-images-idx3-ubyte", "GiB of memory")


@pytest.mark.parametrize(
    "stem, content, fragment",
    [
        ("train-images-idx3-ubyte", header(0), "holds 0 images"),
        ("train-labels-idx1-ubyte", struct.pack(">II", 0x0801, 0), "holds 0 labels"),
        ("t10k-images-idx3-ubyte", header(20, 0, 28), "images of 0×28 pixels"),
    ],
)
def test_empty_files_are_one_line_errors(tmp_path, make_idx, data_error, stem, content, fragment):
    # An IDX file with 0 images ended in scikit-learn's traceback from the validation split.
    make_idx(tmp_path)
    (tmp_path / stem).write_bytes(content)
    cfg = DataConfig(name="mnist", root=str(tmp_path))
    data_error(SOURCES.get("mnist"), cfg, str(tmp_path / stem), fragment)


def test_one_class_and_one_pixel_sets_are_refused_by_build(tmp_path, idx_writer, data_error):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        images = rng.integers(0, 256, (n, 28, 28), np.uint8)
        idx_writer.write(tmp_path / f"{prefix}-images-idx3-ubyte", idx_writer.bytes(images))
        labels = np.full(n, 3, np.uint8)
        idx_writer.write(tmp_path / f"{prefix}-labels-idx1-ubyte", idx_writer.bytes(labels))
    cfg = DataConfig(name="mnist", root=str(tmp_path))
    data_error(data.build, cfg, "every training image is of one class ('3')", str(tmp_path))
    for prefix, n in (("train", 30), ("t10k", 10)):
        tiny = rng.integers(0, 256, (n, 1, 1), np.uint8)
        idx_writer.write(tmp_path / f"{prefix}-images-idx3-ubyte", idx_writer.bytes(tiny))
        labels = (np.arange(n) % 2).astype(np.uint8)
        idx_writer.write(tmp_path / f"{prefix}-labels-idx1-ubyte", idx_writer.bytes(labels))
    data_error(data.build, cfg, "images are 1×1 px", "set data.image_size=N")
    assert data.build(cfg.model_copy(update={"image_size": 8})).info.image_size == (8, 8)


def test_build_records_where_the_data_was_read(tmp_path, make_idx):
    make_idx(tmp_path / "MNIST" / "raw")
    bundle = data.build(DataConfig(name="mnist", root=str(tmp_path)))
    assert bundle.info.location == str(tmp_path / "MNIST" / "raw")
