"""Generated `arrays` sets (.npz, or a folder of .npy files) and image folders: a valid small
set with one thing changed."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from random import Random

import numpy as np
from PIL import Image
from reliability_harness import Case, Content
from reliability_payloads import PAYLOADS, case, info, nothing


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def npy_header(shape: tuple, descr: str = "|u1") -> bytes:
    """The magic and header of an .npy holding `shape`, with no data after them."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def pixels(shape, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, shape).astype(dtype)


X, Y = pixels((20, 8, 8)), np.arange(20) % 2


def hostile_npz(payload: type) -> Content:
    """An .npz whose y is an object array holding a payload (np.save pickles it)."""

    def make(path, marker):
        evil = np.empty(20, dtype=object)
        evil[:] = [payload(marker)] * 20
        return npz(x=X, y=evil)

    return make


def zip_bomb() -> bytes:
    """~1 kB of .npz whose x.npy claims 10 GB: more than deflate can expand it to."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", npy_header((10**4, 1000, 1000)) + bytes(1 << 20))
        z.writestr("y.npy", npy(Y))
    return buf.getvalue()


GOOD_NPZ = {
    "uint8 N,H,W": npz(x=X, y=Y),
    "N,H,W,3": npz(x=pixels((20, 8, 8, 3)), y=Y),
    "N,3,H,W": npz(x=pixels((20, 3, 8, 8)), y=Y),
    "floats in [0, 1]": npz(x=X / 255.0, y=Y),
    "floats in [0, 255]": npz(x=X.astype(np.float32), y=Y),
    "int16": npz(x=X.astype(np.int16), y=Y),
    "label column": npz(x=X, y=Y[:, None]),
    "with test and val": npz(x=X, y=Y, x_test=X[:6], y_test=Y[:6], x_val=X[:6], y_val=Y[:6]),
}
BAD_NPZ = {  # label: (the .npz, what the error says)
    "bool pixels": (npz(x=X > 100, y=Y), "dtype bool"),
    "complex pixels": (npz(x=X.astype(np.complex64), y=Y), "dtype complex64"),
    "text pixels": (npz(x=X.astype(str), y=Y), "dtype"),
    "NaN": (npz(x=np.where(X > 100, np.nan, 0.5), y=Y), "NaN"),
    "inf": (npz(x=np.where(X > 100, np.inf, 0.5), y=Y), "NaN or infinite"),
    "negative": (npz(x=X.astype(np.int16) - 300, y=Y), "values span"),
    "above 255": (npz(x=X.astype(np.int32) + 1000, y=Y), "values span"),
    "1-D x": (npz(x=X.reshape(-1), y=Y), "shape"),
    "5-D x": (npz(x=X.reshape(20, 1, 8, 8, 1), y=Y), "shape"),
    "no channel axis": (npz(x=pixels((20, 5, 5, 5)), y=Y), "channel axis"),
    "float labels": (npz(x=X, y=Y.astype(float)), "integer class indices"),
    "one-hot labels": (npz(x=X, y=np.eye(2)[Y]), "one-hot"),
    "negative label": (npz(x=X, y=Y - 1), "negative"),
    "huge label": (npz(x=X, y=Y * 10**15), "too large"),
    "label count": (npz(x=X, y=Y[:-1]), "labels"),
    "x_test alone": (npz(x=X, y=Y, x_test=X), "no matching y_test"),
    "unknown array": (npz(x=X, y=Y, z=Y), "unexpected array"),
    "no y": (npz(x=X), "no array 'y'"),
    "no images": (npz(x=X[:0], y=Y[:0]), "no pixels"),
    "one class": (npz(x=X, y=Y * 0), "one class"),
    "1×1 images": (npz(x=pixels((20, 1, 1)), y=Y), "data.image_size"),
    "object y": (npz(x=X, y=np.array([None] * 20)), "without pickle"),
    "test shape differs": (npz(x=X, y=Y, x_test=pixels((6, 9, 9)), y_test=Y[:6]), "x_test"),
    "zip bomb": (zip_bomb(), "at most"),
    "truncated zip": (npz(x=X, y=Y)[:300], "set.npz"),
    "not a zip": (b"PK\x03\x04" + bytes(100), "set.npz"),
    "empty file": (b"", "set.npz"),
    "a lone .npy": (npy(X), "single .npy"),
}


def arrays_npz(rng: Random) -> Iterator[Case]:
    make = case("arrays", info("arrays", "data.root={tmp}/d/set.npz"), {})
    for label, blob in GOOD_NPZ.items():
        yield make(label, {"d/set.npz": blob}, "accept", "arrays read from")
    resized = case("arrays", info("arrays", "data.root={tmp}/d/set.npz", "data.image_size=8"), {})
    yield resized("1×1 resized", {"d/set.npz": npz(x=pixels((20, 1, 1)), y=Y)}, "accept")
    for label, (blob, fragment) in BAD_NPZ.items():
        yield make(label, {"d/set.npz": blob}, "error", fragment)
    for payload in PAYLOADS:
        label = f"{payload.__name__} in an object array"
        yield make(label, {"d/set.npz": hostile_npz(payload)}, "error", "without pickle")
    for i in range(12):  # seeded damage to the .npz's bytes
        blob = bytearray(GOOD_NPZ["uint8 N,H,W"])
        for _ in range(rng.randint(1, 4)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        yield make(f"npz bytes {i}", {"d/set.npz": bytes(blob)}, "either")
    missing = case("arrays", info("arrays", "data.root={tmp}/none"), {})
    yield missing("root missing", {}, "error", "does not exist")


def arrays_folder(rng: Random) -> Iterator[Case]:
    make = case(
        "arrays",
        info("arrays", "data.root={tmp}/d/arr"),
        {"d/arr/x.npy": npy(X), "d/arr/y.npy": npy(Y)},
    )
    yield make("folder", {}, "accept")
    yield make("folder with names", {"d/arr/classes.txt": b"a\nb\n"}, "accept", "a", "b")
    names_npy = npy(np.array(["a", "b"]))
    for label, files, fragment in [
        ("x header lies", {"d/arr/x.npy": npy_header((10**6, 1000, 1000)) + bytes(64)}, "x.npy"),
        ("x truncated", {"d/arr/x.npy": npy(X)[:-50]}, "x.npy"),
        ("x version 3 header", {"d/arr/x.npy": b"\x93NUMPY\x03\x00" + bytes(8)}, "x.npy"),
        ("x object", {"d/arr/x.npy": npy(np.array([None] * 20), True)}, "without pickle"),
        ("names short", {"d/arr/classes.txt": b"a\n"}, "classes.txt"),
        ("names not UTF-8", {"d/arr/classes.txt": b"\xff\xfe\n"}, "classes.txt"),
        (
            "both name files",
            {"d/arr/classes.txt": b"a\nb\n", "d/arr/classes.npy": names_npy},
            "keep one",
        ),
        ("no y.npy", {"d/arr/y.npy": nothing}, "no y.npy"),
        ("y a FIFO", {"d/arr/y.npy": lambda p, _: os.mkfifo(p)}, "no y.npy"),
        (
            "x a link to /dev/zero",
            {"d/arr/x.npy": lambda p, _: os.symlink("/dev/zero", p)},
            "no x.npy",
        ),
    ]:
        yield make(label, files, "error", fragment)


def png(size=(8, 8), mode="L", value=0) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, value).save(buf, "PNG")
    return buf.getvalue()


def png_bomb() -> bytes:
    """A PNG whose header claims 100,000 × 100,000 pixels (Pillow refuses it unread)."""
    head = png()
    chunk = b"IHDR" + struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    ihdr = struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return head[:8] + ihdr + head[33:]


PNGS = {
    f"d/{c}/{i}.png": png(value=40 * i + k) for k, c in enumerate(("ant", "bee")) for i in range(5)
}
SPLIT = {f"d/train/{k[2:]}": v for k, v in PNGS.items()}


def image_folders(rng: Random) -> Iterator[Case]:
    make = case("folder", info("folder", "data.root={tmp}/d"), PNGS)
    for label, files in {
        "valid": {},
        "one colour image": {"d/ant/c.png": png(mode="RGB", value=(200, 10, 10))},
        "a corrupt file among them": {"d/ant/bad.png": b"\x89PNG\r\n\x1a\n" + bytes(20)},
        "a hidden file": {"d/ant/.x.png": b"junk"},
        "a FIFO named .png": {"d/ant/f.png": lambda p, _: os.mkfifo(p)},
        "a link back to the root": {"d/ant/loop": lambda p, _: os.symlink(p.parent.parent, p)},
        "a decompression bomb among them": {"d/bee/bomb.png": png_bomb()},
    }.items():
        yield make(label, files, "accept", "folder read from")
    resized = case("folder", info("folder", "data.root={tmp}/d", "data.image_size=8"), PNGS)
    yield resized("mixed sizes resized", {"d/ant/big.png": png((16, 12))}, "accept")
    alone = case("folder", info("folder", "data.root={tmp}/d"), {})
    for label, files, fragment in [
        ("one class", {k: v for k, v in PNGS.items() if "/ant/" in k}, "only one class"),
        ("no class folders", {f"d/{i}.png": png() for i in range(4)}, "no class sub-directories"),
        ("an empty class", {**PNGS, "d/cat/x.txt": b""}, "holds no image files"),
        ("every image corrupt", {k: b"not a png" for k in PNGS}, "could be decoded"),
        ("mixed sizes", {**PNGS, "d/ant/big.png": png((16, 12))}, "data.image_size"),
        ("1×1 images", {k: png((1, 1)) for k in PNGS}, "data.image_size"),
        ("only bombs", {k: png_bomb() for k in PNGS}, "could be decoded"),
        ("stray split folder", {**SPLIT, "d/valid/a/1.png": png()}, "unexpected beside train/"),
        ("val class not in train", {**SPLIT, "d/val/cat/1.png": png()}, "not in train/"),
        ("root a file", {"d": b"x"}, "not a directory"),
    ]:
        yield alone(label, files, "error", fragment)
    strict = case("folder", info("folder", "data.root={tmp}/d", "data.on_bad_file=error"), PNGS)
    yield strict("on_bad_file=error", {"d/ant/bad.png": b"junk"}, "error", "bad.png")
    for i in range(6):  # seeded damage to one image's bytes
        name = rng.choice(sorted(PNGS))
        blob = bytearray(PNGS[name])
        blob[rng.randrange(len(blob))] ^= 0xFF
        yield make(f"png bytes {i}", {name: bytes(blob)}, "either")


GENERATORS = [arrays_npz, arrays_folder, image_folders]
