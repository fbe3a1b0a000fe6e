"""cifar10 and cifar100: pickled batches from the folder, its parent or the .tar.gz; pickles
that name anything but numpy's array reconstruction are refused without running."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from cnnlab import data
from cnnlab.config.schema import DataConfig
from cnnlab.data.registry import SOURCES

KINDS = ["cifar10", "cifar100"]
# How data.root may point at the set; the fake is written under tmp_path accordingly.
ROOTS = {
    "folder": (False, lambda fake: fake.path),
    "parent-of-folder": (False, lambda fake: fake.path.parent),
    "archive": (True, lambda fake: fake.path),
    "parent-of-archive": (True, lambda fake: fake.path.parent),
}


def read(name: str, root, label_set: str = "fine"):
    cfg = DataConfig(name=name, root=str(root), label_set=label_set)
    return SOURCES.get(name)(cfg)


def as_images(rows: np.ndarray) -> np.ndarray:
    """(N, 3072) rows -> (N, 3, 32, 32), pixel by pixel: R plane, G plane, B plane, row-major."""
    n = len(rows)
    out = np.empty((n, 3, 32, 32), np.uint8)
    for c in range(3):
        for y in range(32):
            out[:, c, y, :] = rows[:, c * 1024 + y * 32 : c * 1024 + (y + 1) * 32]
    return out


@pytest.mark.parametrize("where", ROOTS)
@pytest.mark.parametrize("name", KINDS)
def test_reads_train_and_test_exactly(tmp_path, make_cifar, name, where):
    archive, root_of = ROOTS[where]
    fake = make_cifar(name, tmp_path, archive=archive)
    splits = read(name, root_of(fake))
    for got, rows, fine in (
        (splits.train, fake.train_rows, fake.train_fine),
        (splits.test, fake.test_rows, fake.test_fine),
    ):
        assert got.images.dtype == torch.uint8 and got.labels.dtype == torch.int64
        assert tuple(got.images.shape) == (len(rows), 3, 32, 32)
        assert np.array_equal(got.images.numpy(), as_images(rows))
        assert np.array_equal(got.labels.numpy(), fine)
        assert got.classes == fake.classes["fine"]
    assert splits.val is None


def test_cifar10_train_is_the_five_batches_in_order(tmp_path, make_cifar):
    fake = make_cifar("cifar10", tmp_path)
    splits = read("cifar10", fake.path / "data_batch_1")  # a batch file: its folder is read
    assert len(splits.train) == 50 and len(splits.test) == 20
    assert np.array_equal(splits.train.images[10:20].numpy(), as_images(fake.train_rows[10:20]))
    assert splits.train.classes[0] == "airplane" and splits.train.classes[9] == "truck"


@pytest.mark.parametrize("archive", [False, True], ids=["folder", "archive"])
def test_cifar100_coarse_labels_and_names(tmp_path, make_cifar, archive):
    fake = make_cifar("cifar100", tmp_path, archive=archive)
    splits = read("cifar100", fake.path, label_set="coarse")
    assert splits.train.classes == fake.classes["coarse"] and len(splits.train.classes) == 20
    assert np.array_equal(splits.train.labels.numpy(), fake.train_fine // 5)
    assert np.array_equal(splits.test.labels.numpy(), fake.test_fine // 5)
    assert np.array_equal(splits.train.images.numpy(), as_images(fake.train_rows))


class RunsShell:
    """Unpickling this calls os.system, the classic malicious pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("archive", [False, True], ids=["folder", "archive"])
@pytest.mark.parametrize("payload", ["os.system", "eval"])
def test_a_malicious_pickle_is_refused_without_running(
    tmp_path, make_cifar, cifar_writer, data_error, payload, archive
):
    marker = tmp_path / "pwned"
    evil = RunsShell(marker) if payload == "os.system" else CallsEval()
    # Hidden inside an otherwise genuine batch, where a careless loader would meet it.
    fake = make_cifar("cifar10", tmp_path / "set")
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"note": evil}
    blobs = {**fake.blobs, "data_batch_2": cifar_writer.pickle(batch)}
    if archive:
        root = tmp_path / "evil.tar.gz"
        cifar_writer.tar(root, fake.folder, blobs)
    else:
        root = fake.path
        (root / "data_batch_2").write_bytes(blobs["data_batch_2"])
    # The names the pickle itself holds: os.system lives in posix (Linux, macOS); protocol 2
    # spells builtins the Python 2 way.
    refused = f"{os.system.__module__}.system" if payload == "os.system" else "__builtin__.eval"
    data_error(
        SOURCES.get("cifar10"),
        DataConfig(name="cifar10", root=str(root)),
        f"data_batch_2: not a CIFAR batch (refusing to load pickled {refused})",
    )
    assert not marker.exists()


BAD_BATCHES = {
    # case: (batch replacing data_batch_1, message fragment)
    "no-data": ({b"labels": [0]}, "no b'data' entry"),
    "no-labels": ({b"data": np.zeros((1, 3072), np.uint8)}, "no b'labels' entry"),
    "row-length": (
        {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]},
        "hold 1024 bytes; expected 3072",
    ),
    "not-uint8": (
        {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},
        "expected a uint8 (N, 3072) array",
    ),
    "label-count": (
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
        "must be 2 integer labels",
    ),
    "label-range": (
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]},
        "label 10 is out of range",
    ),
    "negative-label": (
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [-1, 0]},
        "label -1 is out of range",
    ),
    "not-a-dict": ([1, 2, 3], "holds a list, not a dict"),
}


@pytest.mark.parametrize("case", BAD_BATCHES)
def test_a_malformed_batch_is_a_data_error_naming_the_file(
    tmp_path, make_cifar, cifar_writer, data_error, case
):
    fake = make_cifar("cifar10", tmp_path)
    batch, fragment = BAD_BATCHES[case]
    (fake.path / "data_batch_1").write_bytes(cifar_writer.pickle(batch))
    cfg = DataConfig(name="cifar10", root=str(fake.path))
    data_error(SOURCES.get("cifar10"), cfg, str(fake.path / "data_batch_1"), fragment)


def test_garbage_instead_of_a_pickle(tmp_path, make_cifar, data_error):
    fake = make_cifar("cifar10", tmp_path)
    (fake.path / "test_batch").write_bytes(b"\x89PNG\r\n\x1a\n not a pickle at all")
    cfg = DataConfig(name="cifar10", root=str(fake.path))
    data_error(SOURCES.get("cifar10"), cfg, str(fake.path / "test_batch"), "unreadable pickle")


def test_meta_without_names(tmp_path, make_cifar, cifar_writer, data_error):
    fake = make_cifar("cifar100", tmp_path)
    (fake.path / "meta").write_bytes(cifar_writer.pickle({b"fine_label_names": [1, 2]}))
    cfg = DataConfig(name="cifar100", root=str(fake.path), label_set="coarse")
    data_error(SOURCES.get("cifar100"), cfg, str(fake.path / "meta"), "coarse_label_names")


def test_a_missing_batch_file_is_named(tmp_path, make_cifar, data_error):
    fake = make_cifar("cifar10", tmp_path)
    (fake.path / "data_batch_4").unlink()
    cfg = DataConfig(name="cifar10", root=str(fake.path))
    data_error(SOURCES.get("cifar10"), cfg, str(fake.path), "no data_batch_4")


def test_a_missing_archive_member_is_named(tmp_path, make_cifar, cifar_writer, data_error):
    fake = make_cifar("cifar10", tmp_path / "set")
    blobs = {k: v for k, v in fake.blobs.items() if k != "batches.meta"}
    cifar_writer.tar(tmp_path / "cifar-10-python.tar.gz", fake.folder, blobs)
    cfg = DataConfig(name="cifar10", root=str(tmp_path / "cifar-10-python.tar.gz"))
    data_error(SOURCES.get("cifar10"), cfg, "cifar-10-python.tar.gz: no batches.meta inside")


def test_a_corrupt_archive_is_a_data_error(tmp_path, make_cifar, data_error):
    fake = make_cifar("cifar10", tmp_path, archive=True)
    fake.path.write_bytes(fake.path.read_bytes()[:3000])  # a download cut short
    cfg = DataConfig(name="cifar10", root=str(fake.path))
    data_error(SOURCES.get("cifar10"), cfg, str(fake.path))


@pytest.mark.parametrize("name", KINDS)
def test_not_found_names_the_root_and_the_expected_names(tmp_path, data_error, name):
    folder, archive = {
        "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz"),
        "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz"),
    }[name]
    read_it = SOURCES.get(name)
    data_error(read_it, DataConfig(name=name), "data.root is not set", folder, archive)
    missing = tmp_path / "nowhere"
    data_error(read_it, DataConfig(name=name, root=str(missing)), str(missing), "does not exist")
    data_error(read_it, DataConfig(name=name, root=str(tmp_path)), str(tmp_path), folder, archive)


def test_the_other_cifar_is_not_mistaken_for_this_one(tmp_path, make_cifar, data_error):
    fake = make_cifar("cifar10", tmp_path)
    data_error(
        SOURCES.get("cifar100"),
        DataConfig(name="cifar100", root=str(fake.path)),
        "holds no cifar100 batches",
        "cifar-100-python",
    )


@pytest.mark.parametrize(
    ("name", "label_set", "classes"), [("cifar10", "fine", 10), ("cifar100", "coarse", 20)]
)
def test_plugs_into_build(tmp_path, make_cifar, name, label_set, classes):
    fake = make_cifar(name, tmp_path, archive=True)
    bundle = data.build(DataConfig(name=name, root=str(fake.path), label_set=label_set))
    n_train = len(fake.train_rows)
    assert len(bundle.train) + len(bundle.val) == n_train
    assert len(bundle.val) == round(0.2 * n_train)
    assert len(bundle.test) == 20
    assert bundle.info.num_classes == classes
    assert bundle.info.channels == 3 and bundle.info.image_size == (32, 32)


# --- every pickle protocol; arrays only as large as the file ---------------------------------


def write_batches(fake, protocol: int) -> None:
    """Every batch of `fake` again, pickled at `protocol` (the originals are protocol 2)."""
    for name, blob in fake.blobs.items():
        (fake.path / name).write_bytes(pickle.dumps(pickle.loads(blob), protocol=protocol))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_batches_pickled_at_any_protocol_read_the_same(tmp_path, make_cifar, protocol):
    # Protocol 5 pickles arrays through numpy's _frombuffer; it was refused (issue 24).
    fake = make_cifar("cifar10", tmp_path)
    write_batches(fake, protocol)
    splits = read("cifar10", fake.path)
    assert np.array_equal(splits.train.images.numpy(), as_images(fake.train_rows))
    assert np.array_equal(splits.test.labels.numpy(), fake.test_fine)
    assert splits.location == str(fake.path)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_malicious_pickle_never_runs_at_any_protocol(tmp_path, make_cifar, data_error, protocol):
    marker = tmp_path / "pwned"
    fake = make_cifar("cifar10", tmp_path / "set")
    evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": RunsShell(marker)}
    (fake.path / "test_batch").write_bytes(pickle.dumps(evil, protocol=protocol))
    cfg = DataConfig(name="cifar10", root=str(fake.path))
    data_error(SOURCES.get("cifar10"), cfg, "test_batch: not a CIFAR batch (refusing")
    assert not marker.exists()


def reduce_call(module: str, name: str, *args) -> bytes:
    """A protocol-2 pickle calling module.name(*args) (args: ints, tuples, bytes, str)."""
    return b"\x80\x02" + f"c{module}\n{name}\n".encode() + pickle.dumps(args, 2)[2:-1] + b"R."


@pytest.mark.parametrize(
    "blob, fragment",
    [
        # numpy's _reconstruct with a shape real pickles never use would allocate 10^12 bytes.
        (
            reduce_call("numpy.core.multiarray", "_reconstruct", np.ndarray, (10**12,), b"b"),
            "anything but an empty ndarray",
        ),
        (
            reduce_call(
                "numpy._core.numeric", "_frombuffer", b"\0" * 8, np.dtype("u1"), (10**9,), "C"
            ),
            "cannot be a uint8 array",
        ),
        (
            reduce_call("numpy._core.numeric", "_frombuffer", "text", np.dtype("u1"), (4,), "C"),
            "anything but bytes",
        ),
        # numpy.ndarray itself, called with a shape, would allocate 3 GB of nothing.
        (reduce_call("numpy", "ndarray", (10**6, 3072), "u1"), "not callable"),
        (reduce_call("_codecs", "encode", "x" * 100, "zlib"), "encoding 'zlib'"),
    ],
    ids=["reconstruct-huge", "frombuffer-short", "frombuffer-str", "ndarray-called", "zlib"],
)
def test_numpy_calls_are_refused_unless_they_fit_the_file(
    tmp_path, make_cifar, data_error, blob, fragment
):
    fake = make_cifar("cifar10", tmp_path)
    (fake.path / "data_batch_3").write_bytes(blob)
    cfg = DataConfig(name="cifar10", root=str(fake.path))
    data_error(SOURCES.get("cifar10"), cfg, "data_batch_3: not a CIFAR batch", fragment)


def test_labels_that_are_not_a_list_of_ints_are_refused(tmp_path, make_cifar, data_error):
    fake = make_cifar("cifar10", tmp_path)
    inner = list(range(10))
    batch = {b"data": np.zeros((10, 3072), np.uint8), b"labels": [inner] * 10}  # nested refs
    (fake.path / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    cfg = DataConfig(name="cifar10", root=str(fake.path))
    data_error(SOURCES.get("cifar10"), cfg, "expected a list of integers")
