"""Generated CIFAR-10 sets (pickled batches): every pickle protocol, hostile pickles in any of
them, archives, and batches whose content or bytes are wrong."""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
from collections.abc import Callable, Iterator
from random import Random

import numpy as np
from reliability_harness import Case, Content
from reliability_payloads import PAYLOADS, System, case, hostile, info, nothing

FOLDER = "cifar-10-batches-py"
BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
META = {b"label_names": [f"class{i}".encode() for i in range(10)]}
ARGV = info("cifar10", "data.root={tmp}/d")
ARCHIVE_ARGV = info("cifar10", "data.root={tmp}/d/c.tar.gz")


def batch(change: dict | None = None, n: int = 4, classes: int = 2) -> dict:
    rng = np.random.default_rng(n)
    rows = rng.integers(0, 256, (n, 3072), np.uint8)
    labels = [i % classes for i in range(n)]
    return {b"data": rows, b"labels": labels, b"batch_label": b"x", **(change or {})}


def blobs(protocol: int = 2) -> dict[str, bytes]:
    objects = {name: batch() for name in BATCHES} | {"batches.meta": META}
    return {name: pickle.dumps(obj, protocol=protocol) for name, obj in objects.items()}


def folder(files: dict[str, Content]) -> dict[str, Content]:
    return {f"d/{FOLDER}/{name}": blob for name, blob in files.items()}


BASE = folder(blobs())


def archive(files: dict[str, Content], damage: Callable[[bytes], bytes] = bytes) -> Content:
    """A .tar.gz laid out as the original, members made when the case's marker is known."""

    def make(path, marker):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, blob in files.items():
                data = blob(path, marker) if callable(blob) else blob
                member = tarfile.TarInfo(f"{FOLDER}/{name}")
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
        return damage(buf.getvalue())

    return make


def raw_call(module: str, name: str, *args) -> bytes:
    """A protocol-2 pickle that calls module.name(*args)."""
    return b"\x80\x02" + f"c{module}\n{name}\n".encode() + pickle.dumps(args, 2)[2:-1] + b"R."


def cifar_protocols(rng: Random) -> Iterator[Case]:
    """Protocols 0-5 read alike; a payload in a batch or the meta file is refused in each."""
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        make = case("cifar", ARGV, folder(blobs(protocol)))
        yield make(f"protocol {protocol}", {}, "accept", "cifar10 read from")
        for payload in PAYLOADS:
            for name, wrap in (("data_batch_2", None), ("batches.meta", lambda e: {b"x": e})):
                evil = hostile(payload, protocol, wrap or (lambda e: e))
                label = f"{payload.__name__} in {name}, protocol {protocol}"
                yield make(label, folder({name: evil}), "error", name, "refusing")


def cifar_archives(rng: Random) -> Iterator[Case]:
    make = case("cifar", ARCHIVE_ARGV, {})
    good = blobs()
    yield make("archive", {"d/c.tar.gz": archive(good)}, "accept")
    evil = {**good, "test_batch": hostile(System, 4)}
    yield make("hostile archive member", {"d/c.tar.gz": archive(evil)}, "error", "refusing")
    half = archive(good, lambda b: b[: len(b) // 2])
    yield make("truncated archive", {"d/c.tar.gz": half}, "error", "c.tar.gz")
    no_meta = {k: v for k, v in good.items() if k != "batches.meta"}
    yield make("archive without meta", {"d/c.tar.gz": archive(no_meta)}, "error", "batches.meta")
    yield make("not an archive", {"d/c.tar.gz": b"\x1f\x8b" + bytes(40)}, "error", "c.tar.gz")


BAD_BATCHES = {
    "list": [1, 2, 3],
    "None": None,
    "no data": {b"labels": [0, 1]},
    "float data": batch({b"data": np.zeros((4, 3072), np.float32)}),
    "short rows": batch({b"data": np.zeros((4, 1024), np.uint8)}),
    "3-D data": batch({b"data": np.zeros((4, 3, 1024), np.uint8)}),
    "label 10": batch({b"labels": [0, 1, 0, 10]}),
    "label -1": batch({b"labels": [0, 1, 0, -1]}),
    "bool labels": batch({b"labels": [True, False, True, False]}),
    "str labels": batch({b"labels": ["0", "1", "0", "1"]}),
    "float labels": batch({b"labels": np.zeros(4, np.float32)}),
    "nested labels": batch({b"labels": [[0] * 1000] * 4}),
    "huge label": batch({b"labels": [0, 1, 0, 10**30]}),
    "label count": batch({b"labels": [0, 1]}),
    "object array": batch({b"data": np.array([[object()]] * 4, dtype=object)}),
}
BAD_METAS = {
    "no names": {b"x": 1},
    "names not text": {b"label_names": [1, 2]},
    "one name": {b"label_names": [b"only"]},
    "no classes": {b"label_names": []},
}
RAW_PICKLES = {
    "ndarray called": raw_call("numpy", "ndarray", (10**6, 3072), "u1"),
    "huge _reconstruct": raw_call(
        "numpy.core.multiarray", "_reconstruct", np.ndarray, (10**12,), b"b"
    ),
    "_frombuffer short": raw_call(
        "numpy._core.numeric", "_frombuffer", b"\0" * 8, np.dtype("u1"), (10**9,), "C"
    ),
    "zlib codec": raw_call("_codecs", "encode", "x" * 50, "zlib"),
    "os.system by name": raw_call("os", "system", "true"),
    "posix.system": raw_call("posix", "system", "true"),
    "builtins.exec": raw_call("builtins", "exec", "import os"),
    "numpy.load": raw_call("numpy", "load", "/etc/passwd"),
    "BINBYTES8 of 2^62": b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b"x.",
    "deep lists": b"\x80\x02" + b"(" * 100_000 + b"l" * 100_000 + b".",
    "empty": b"",
    "not a pickle": b"hello world",
}


def cifar_contents(rng: Random) -> Iterator[Case]:
    """Batches and meta files with the wrong things in them, and pickles that call numpy (or
    worse) with arguments no real batch uses."""
    make = case("cifar", ARGV, BASE)
    for label, obj in BAD_BATCHES.items():
        blob = pickle.dumps(obj, protocol=2)
        yield make(label, folder({"data_batch_3": blob}), "error", "data_batch_3")
    for label, meta in BAD_METAS.items():
        blob = pickle.dumps(meta, protocol=2)
        yield make(f"meta {label}", folder({"batches.meta": blob}), "error", FOLDER)
    for label, blob in RAW_PICKLES.items():
        yield make(label, folder({"data_batch_4": blob}), "error", "data_batch_4")


def cifar_damage(rng: Random) -> Iterator[Case]:
    """Files missing or not regular; seeded: pickles cut short, noise."""
    make = case("cifar", ARGV, BASE)
    not_files = {
        "missing": nothing,
        "a FIFO": lambda p, _: os.mkfifo(p),
        "a link to /dev/zero": lambda p, _: os.symlink("/dev/zero", p),
    }
    for name in ("data_batch_5", "batches.meta"):
        for label, content in not_files.items():
            yield make(f"{name} {label}", folder({name: content}), "error", name)
    good = blobs()
    for i in range(15):
        name = rng.choice(sorted(good))
        cut = good[name][: rng.randrange(len(good[name]))]
        yield make(f"{name} cut {i}", folder({name: cut}), "error", name)
        noise = rng.randbytes(rng.randrange(1, 500))
        yield make(f"{name} noise {i}", folder({name: noise}), "error", name)
    yield Case("cifar", "root empty", ARGV, {"d/x": b""}, "error", ("holds no cifar10",))


GENERATORS = [cifar_protocols, cifar_archives, cifar_contents, cifar_damage]
