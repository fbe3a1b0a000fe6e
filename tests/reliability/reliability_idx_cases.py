"""Generated MNIST sets (four IDX files): a valid small set with one thing changed."""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator
from random import Random

import numpy as np
from reliability_harness import Case, Content
from reliability_payloads import NOT_FILES, case, info, nothing

STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGES, LABELS = f"d/{STEMS[0]}", f"d/{STEMS[1]}"
ARGV = info("mnist", "data.root={tmp}/d")


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = 0x0800 | array.ndim if magic is None else magic
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def idx_set(n_train: int = 40, n_test: int = 10, size: int = 8, classes: int = 2) -> dict:
    """stem -> array: 8×8 images, labels cycling over `classes`."""
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (n, size, size), np.uint8)
        arrays[f"{prefix}-labels-idx1-ubyte"] = (np.arange(n) % classes).astype(np.uint8)
    return arrays


def idx_files(arrays: dict, folder: str = "d", gz: bool = False) -> dict[str, Content]:
    pack = gzip.compress if gz else (lambda b: b)
    suffix = ".gz" if gz else ""
    return {f"{folder}/{stem}{suffix}": pack(idx_bytes(a)) for stem, a in arrays.items()}


BASE = idx_files(idx_set())


def gz_bomb() -> bytes:
    """~1 kB of .gz whose header claims 784 MB: more than deflate can expand it to."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    head = struct.pack(">IIII", 0x0803, 10**6, 28, 28)
    return z.compress(head + bytes(1 << 20)) + z.flush()


def idx_contents(rng: Random) -> Iterator[Case]:
    make = case("idx", ARGV, BASE)
    yield make("valid", {}, "accept", "mnist read from")
    yield make("valid .gz", {k: nothing for k in BASE} | idx_files(idx_set(), gz=True), "accept")
    yield make(
        "torchvision layout",
        {k: nothing for k in BASE} | idx_files(idx_set(), "d/MNIST/raw"),
        "accept",
    )
    tiny = case("idx", (*ARGV, "data.image_size=8"), BASE)
    yield tiny("1×1 resized by data.image_size", idx_files(idx_set(size=1)), "accept")
    images, labels = idx_set()[STEMS[0]], idx_set()[STEMS[1]]
    claims = struct.pack(">IIII", 0x0803, 10**9, 28, 28) + bytes(100)
    for label, files, *names in [
        ("images magic 0x0801", {IMAGES: idx_bytes(images, 0x0801)}, STEMS[0], "magic"),
        ("labels magic 0x0803", {LABELS: idx_bytes(labels, 0x0803)}, STEMS[1], "magic"),
        ("signed-byte magic", {IMAGES: idx_bytes(images, 0x0903)}, STEMS[0], "magic"),
        ("a billion images claimed", {IMAGES: claims}, STEMS[0], "header promises"),
        ("gz bomb", {IMAGES: nothing, f"{IMAGES}.gz": gz_bomb()}, "can hold at most"),
        (
            "gz of garbage",
            {IMAGES: nothing, f"{IMAGES}.gz": b"\x1f\x8b" + bytes(50)},
            "cannot read",
        ),
        ("gzip data without .gz", {IMAGES: gzip.compress(idx_bytes(images))}, "gzip-compressed"),
        ("label count mismatch", {LABELS: idx_bytes(labels[:-1])}, "has 39 labels"),
        ("label 10", {LABELS: idx_bytes(labels + 10)}, "is out of range"),
        ("label 255", {LABELS: idx_bytes(labels | 255)}, "out of range"),
        ("0 images", {IMAGES: idx_bytes(images[:0]), LABELS: idx_bytes(labels[:0])}, "holds 0"),
        ("0 rows", {IMAGES: idx_bytes(images[:, :0])}, "0×8"),
        ("1×1 images", idx_files(idx_set(size=1)), "1×1 px", "data.image_size"),
        ("one class", idx_files(idx_set(classes=1)), "one class"),
        (
            "test size differs",
            {f"d/{STEMS[2]}": idx_bytes(idx_set(size=9)[STEMS[2]])},
            "training images",
        ),
    ]:
        yield make(label, files, "error", *names)


def idx_files_replaced(rng: Random) -> Iterator[Case]:
    """Each of the four files missing, not a regular file, cut short or one byte long."""
    make = case("idx", ARGV, BASE)
    for stem in STEMS:
        where = f"d/{stem}"
        for label, content in NOT_FILES.items():
            yield make(f"{stem} {label}", {where: content}, "error", "data.root")
        for cut in (0, 3, 7, 15, -1):
            yield make(f"{stem} cut at {cut}", {where: BASE[where][:cut]}, "error", stem)
        yield make(f"{stem} + 1 byte", {where: BASE[where] + b"\0"}, "error", stem, "extra")
    for i in range(12):  # seeded damage: a bit of a header, or noise for a file
        stem = rng.choice(STEMS)
        data = bytearray(BASE[f"d/{stem}"])
        data[rng.randrange(16 if "images" in stem else 8)] ^= 1 << rng.randrange(8)
        yield make(f"{stem} header bit {i}", {f"d/{stem}": bytes(data)}, "either")
        noise = rng.randbytes(rng.randrange(0, 3000))
        yield make(f"{stem} noise {i}", {f"d/{stem}": noise}, "either", stem)


def idx_roots(rng: Random) -> Iterator[Case]:
    """data.root that does not hold the files: never a fall-back, never a download."""
    yield Case(
        "idx",
        "root missing",
        info("mnist", "data.root={tmp}/none"),
        {},
        "error",
        ("does not exist",),
    )
    yield Case(
        "idx",
        "root empty",
        info("fashion-mnist", "data.root={tmp}/d"),
        {"d/x.txt": b""},
        "error",
        ("holds no fashion-mnist data",),
    )
    yield Case(
        "idx",
        "root a file",
        info("mnist", "data.root={tmp}/d/x"),
        {"d/x": b"1"},
        "error",
        ("is a file",),
    )
    yield Case("idx", "no root, offline", info("mnist"), {}, "error", ("download failed",))


GENERATORS = [idx_contents, idx_files_replaced, idx_roots]
