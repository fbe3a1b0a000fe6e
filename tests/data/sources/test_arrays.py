"""arrays: a user's own .npz or folder of .npy files, any common layout and pixel scale,
turned into N×C×H×W uint8; everything ambiguous or broken is a one-line DataError."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab import data
from cnnlab.config.schema import DataConfig
from cnnlab.data.registry import SOURCES

read_arrays = SOURCES.get("arrays")


def pixels(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, np.uint8)


def labels(n: int, classes: int = 4) -> np.ndarray:
    return np.arange(n) % classes  # int64, every class present


def save(root: Path, form: str, **arrays) -> Path:
    """Writes root.npz, or root/<key>.npy files (classes as classes.txt); returns data.root."""
    if form == "npz":
        path = root.with_suffix(".npz")
        np.savez(path, **arrays)
        return path
    root.mkdir(parents=True)
    for key, value in arrays.items():
        if key == "classes":
            (root / "classes.txt").write_text("\n".join(value) + "\n")
        else:
            np.save(root / f"{key}.npy", value)
    return root


def read(root: Path):
    return read_arrays(DataConfig(name="arrays", root=str(root)))


FORMS = ["npz", "folder"]

# layout: (how the canonical (N, C, H, W) pixels are stored, the C×H×W the source must return)
LAYOUTS = {
    "N,H,W": (lambda a: a[:, 0], (1, 5, 6)),
    "N,1,H,W": (lambda a: a, (1, 5, 6)),
    "N,H,W,1": (lambda a: a.transpose(0, 2, 3, 1), (1, 5, 6)),
    "N,3,H,W": (lambda a: a, (3, 5, 6)),
    "N,H,W,3": (lambda a: a.transpose(0, 2, 3, 1), (3, 5, 6)),
    "N,H,W,4-rgba": (lambda a: a.transpose(0, 2, 3, 1), (3, 5, 6)),
    "N,4,H,W-rgba": (lambda a: a, (3, 5, 6)),
    # Both axis 1 and axis 3 could be channels: 1 or 3 on axis 1 means channels first...
    "ambiguous-N,3,4,3": (lambda a: a, (3, 4, 3)),
    # ...4 on axis 1 means channels last (a 4-pixel-high RGB image, not RGBA).
    "ambiguous-N,4,5,3": (lambda a: a.transpose(0, 2, 3, 1), (3, 4, 5)),
}
CANONICAL = {  # layout -> the (N, C, H, W) array it is derived from
    "N,H,W": (8, 1, 5, 6),
    "N,1,H,W": (8, 1, 5, 6),
    "N,H,W,1": (8, 1, 5, 6),
    "N,3,H,W": (8, 3, 5, 6),
    "N,H,W,3": (8, 3, 5, 6),
    "N,H,W,4-rgba": (8, 4, 5, 6),
    "N,4,H,W-rgba": (8, 4, 5, 6),
    "ambiguous-N,3,4,3": (8, 3, 4, 3),
    "ambiguous-N,4,5,3": (8, 3, 4, 5),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_become_n_c_h_w(tmp_path, layout):
    store, chw = LAYOUTS[layout]
    canonical = pixels(CANONICAL[layout])
    root = save(tmp_path / "set", "npz", x=store(canonical), y=labels(8))
    got = read(root).train.images
    assert got.dtype == torch.uint8 and tuple(got.shape) == (8, *chw)
    assert np.array_equal(got.numpy(), canonical[:, :3])  # RGBA: alpha dropped


@pytest.mark.parametrize(
    ("case", "convert"),
    [
        ("uint8", lambda a: a),
        ("float32-0-1", lambda a: a.astype(np.float32) / 255),
        ("float64-0-1", lambda a: a / 255.0),
        ("float16-0-1", lambda a: (a / 255.0).astype(np.float16)),
        ("float32-0-255", lambda a: a.astype(np.float32)),
        ("int64-0-255", lambda a: a.astype(np.int64)),
    ],
)
def test_pixel_scales_round_trip_exactly(tmp_path, case, convert):
    canonical = pixels((8, 3, 5, 6))
    root = save(tmp_path / "set", "npz", x=convert(canonical), y=labels(8))
    assert np.array_equal(read(root).train.images.numpy(), canonical)


@pytest.mark.parametrize("form", FORMS)
def test_every_split_and_class_names(tmp_path, form):
    x, x_val, x_test = pixels((12, 7, 7, 3), 0), pixels((8, 7, 7, 3), 1), pixels((4, 7, 7, 3), 2)
    names = ["cat", "dog", "owl", "eel"]
    root = save(
        tmp_path / "set",
        form,
        x=x,
        y=labels(12),
        x_val=x_val,
        y_val=labels(8),
        x_test=x_test,
        y_test=labels(4),
        classes=np.array(names),
    )
    splits = read(root)
    for got, want_x, n in ((splits.train, x, 12), (splits.val, x_val, 8), (splits.test, x_test, 4)):
        assert np.array_equal(got.images.numpy(), want_x.transpose(0, 3, 1, 2))
        assert got.labels.dtype == torch.int64
        assert np.array_equal(got.labels.numpy(), labels(n))
        assert got.classes == tuple(names)


def test_classes_npy_in_a_folder(tmp_path):
    root = save(tmp_path / "set", "folder", x=pixels((6, 4, 4)), y=labels(6, 3))
    np.save(root / "classes.npy", np.array(["a", "b", "c"]))
    assert read(root).train.classes == ("a", "b", "c")


@pytest.mark.parametrize("form", FORMS)
def test_defaults_no_val_or_test_and_numbered_classes(tmp_path, form):
    root = save(tmp_path / "set", form, x=pixels((6, 4, 4)), y=np.array([0, 2, 0, 2, 1, 2]))
    splits = read(root)
    assert splits.val is None and splits.test is None
    assert splits.train.classes == ("0", "1", "2")


def test_keras_style_label_column_is_accepted(tmp_path):
    root = save(tmp_path / "set", "npz", x=pixels((6, 4, 4)), y=labels(6, 2)[:, None])
    assert np.array_equal(read(root).train.labels.numpy(), labels(6, 2))


BAD = {
    # case: (arrays saved to an .npz, message fragment)
    "bool-pixels": (dict(x=np.ones((4, 5, 5), bool), y=labels(4)), "dtype bool"),
    "nan": (dict(x=np.full((4, 5, 5), np.nan, np.float32), y=labels(4)), "NaN"),
    "inf": (dict(x=np.full((4, 5, 5), np.inf), y=labels(4)), "NaN or infinite"),
    "float-over-255": (dict(x=np.full((4, 5, 5), 300.0), y=labels(4)), "span [300, 300]"),
    "negative-float": (dict(x=np.full((4, 5, 5), -0.5), y=labels(4)), "expected [0, 255]"),
    "uint16": (dict(x=np.full((4, 5, 5), 4000, np.uint16), y=labels(4)), "span [4000, 4000]"),
    "2-d": (dict(x=pixels((4, 25)), y=labels(4)), "expected (N, H, W)"),
    "5-d": (dict(x=pixels((4, 1, 5, 5, 1)), y=labels(4)), "expected (N, H, W)"),
    "no-channel-axis": (dict(x=pixels((4, 5, 6, 7)), y=labels(4)), "neither axis 1 nor axis 3"),
    "two-channels": (dict(x=pixels((4, 2, 5, 5)), y=labels(4)), "neither axis 1 nor axis 3"),
    "no-images": (dict(x=pixels((0, 5, 5)), y=labels(0)), "holds no pixels"),
    "float-labels": (dict(x=pixels((4, 5, 5)), y=np.array([0.0, 1, 0, 1])), "integer class"),
    "one-hot": (dict(x=pixels((4, 5, 5)), y=np.eye(2, dtype=int)[labels(4, 2)]), "one-hot"),
    "negative-label": (dict(x=pixels((4, 5, 5)), y=np.array([0, -1, 0, 1])), "label -1"),
    "one-class": (dict(x=pixels((4, 5, 5)), y=np.zeros(4, int)), "only one class"),
    "too-few-names": (
        dict(x=pixels((4, 5, 5)), y=labels(4, 3), classes=np.array(["a", "b"])),
        "names 2 classes but labels go up to 2",
    ),
    "x_test-alone": (
        dict(x=pixels((4, 5, 5)), y=labels(4, 2), x_test=pixels((2, 5, 5))),
        "has no matching y_test",
    ),
    "test-shape": (
        dict(x=pixels((4, 5, 5)), y=labels(4, 2), x_test=pixels((2, 6, 6)), y_test=labels(2, 2)),
        "[x_test]: images are C×H×W = (1, 6, 6) but x's are (1, 5, 5)",
    ),
    "test-label-count": (
        dict(x=pixels((4, 5, 5)), y=labels(4, 2), x_val=pixels((3, 5, 5)), y_val=labels(2, 2)),
        "[x_val] has 3 images but",
    ),
    "unknown-key": (
        dict(x=pixels((4, 5, 5)), y=labels(4, 2), x_train=pixels((4, 5, 5))),
        "[x_train]",
    ),
    "no-y": (dict(x=pixels((4, 5, 5))), "no array 'y'"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_npz_is_a_data_error_naming_file_and_array(tmp_path, data_error, case):
    arrays, fragment = BAD[case]
    root = save(tmp_path / "set", "npz", **arrays)
    data_error(read_arrays, DataConfig(name="arrays", root=str(root)), str(root), fragment)


@pytest.mark.parametrize("form", FORMS)
def test_label_count_mismatch_message(tmp_path, data_error, form):
    root = save(tmp_path / "set", form, x=pixels((100, 5, 5)), y=labels(99))
    x_name, y_name = (
        (f"{root}[x]", f"{root}[y]") if form == "npz" else (root / "x.npy", root / "y.npy")
    )
    cfg = DataConfig(name="arrays", root=str(root))
    data_error(read_arrays, cfg, f"{x_name} has 100 images but {y_name} has 99 labels")


def test_object_arrays_are_refused_not_unpickled(tmp_path, data_error):
    root = save(tmp_path / "set", "folder", x=pixels((4, 5, 5)))
    np.save(root / "y.npy", np.array([0, 1, "a", None], dtype=object), allow_pickle=True)
    cfg = DataConfig(name="arrays", root=str(root))
    data_error(read_arrays, cfg, str(root / "y.npy"), "cannot load without pickle")


def test_folder_without_y_and_with_two_class_files(tmp_path, data_error):
    root = save(tmp_path / "set", "folder", x=pixels((4, 5, 5)))
    cfg = DataConfig(name="arrays", root=str(root))
    data_error(read_arrays, cfg, str(root), "no y.npy")
    np.save(root / "y.npy", labels(4, 2))
    (root / "classes.txt").write_text("a\nb\n")
    np.save(root / "classes.npy", np.array(["a", "b"]))
    data_error(read_arrays, cfg, "both classes.txt and classes.npy")


def test_root_missing_unset_or_not_an_npz(tmp_path, data_error):
    data_error(read_arrays, DataConfig(name="arrays"), "data.root is not set", ".npz", "x.npy")
    missing = tmp_path / "missing.npz"
    data_error(
        read_arrays, DataConfig(name="arrays", root=str(missing)), str(missing), "does not exist"
    )
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    data_error(
        read_arrays, DataConfig(name="arrays", root=str(garbage)), str(garbage), "not a readable"
    )
    single = tmp_path / "x.npy"
    np.save(single, pixels((4, 5, 5)))
    data_error(read_arrays, DataConfig(name="arrays", root=str(single)), str(single), "single .npy")


def test_plugs_into_build(tmp_path):
    root = save(
        tmp_path / "set",
        "npz",
        x=pixels((40, 9, 9, 3)) / 255.0,
        y=labels(40),
        x_test=pixels((8, 9, 9, 3)),
        y_test=labels(8),
    )
    bundle = data.build(DataConfig(name="arrays", root=str(root)))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (32, 8, 8)
    assert bundle.info.classes == ("0", "1", "2", "3")
    assert bundle.info.channels == 3 and bundle.info.image_size == (9, 9)


# --- sizes checked before loading ------------------------------------------------------------


def npy_header(shape: tuple[int, ...], dtype: str = "|u1") -> bytes:
    """An .npy version 1.0 magic and header for `shape` (numpy's own writer), no data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def test_an_npy_header_claiming_terabytes_is_refused_unread(tmp_path, data_error):
    root = save(tmp_path / "set", "folder", x=pixels((8, 5, 5)), y=labels(8))
    (root / "x.npy").write_bytes(npy_header((10**6, 1000, 1000)) + bytes(100))
    data_error(read, root, str(root / "x.npy"), "the header promises 1,000,000,000,000 bytes")


def test_an_npz_zip_bomb_is_refused_before_it_inflates(tmp_path, data_error):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        # Claims 10^10 pixels; deflate can only give ~1032x the few kB stored.
        z.writestr("x.npy", npy_header((10**4, 1000, 1000)) + bytes(1 << 20))
        z.writestr("y.npy", _npy(labels(8)))
    assert path.stat().st_size < 20_000
    data_error(read_arrays, DataConfig(name="arrays", root=str(path)), f"{path}[x]", "at most")


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_a_member_that_is_not_an_npy_array_is_not_read_into_memory(tmp_path, data_error):
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", _npy(pixels((8, 5, 5))))
        z.writestr("y", bytes(10 << 20))  # raw bytes: numpy would read all of them
    data_error(read_arrays, DataConfig(name="arrays", root=str(path)), f"{path}[y]", "not a")


@pytest.mark.parametrize("form", FORMS)
def test_sets_a_classifier_cannot_train_on_are_refused_by_build(tmp_path, form, data_error):
    one_class = save(tmp_path / "one", form, x=pixels((8, 5, 5)), y=np.zeros(8, np.int64))
    cfg = DataConfig(name="arrays", root=str(one_class))
    # arrays checks this itself, naming its file; build checks every source the same way.
    data_error(data.build, cfg, "only one class", "a classifier needs at least 2")
    tiny = save(tmp_path / "tiny", form, x=pixels((8, 1, 1)), y=labels(8))
    data_error(data.build, DataConfig(name="arrays", root=str(tiny)), "1×1 px", "data.image_size")
    empty = save(tmp_path / "empty", form, x=pixels((8, 5, 5)), y=labels(8),
                 x_test=pixels((0, 5, 5)), y_test=labels(0))  # fmt: skip
    data_error(data.build, DataConfig(name="arrays", root=str(empty)), "x_test", "no pixels")


def test_a_huge_label_is_refused_before_naming_its_classes(tmp_path, data_error):
    root = save(tmp_path / "set", "npz", x=pixels((8, 5, 5)), y=np.array([0, 1] * 3 + [0, 10**15]))
    data_error(read, root, f"{root}[y]", "label 1000000000000000 is too large")


def test_a_huge_classes_txt_is_refused(tmp_path, data_error):
    root = save(tmp_path / "set", "folder", x=pixels((8, 5, 5)), y=labels(8))
    with (root / "classes.txt").open("wb") as f:
        f.truncate(100 << 20)  # sparse: 100 MiB of NULs
    data_error(read, root, "classes.txt", "larger than")


def test_build_records_where_the_arrays_were_read(tmp_path):
    root = save(tmp_path / "set", "npz", x=pixels((20, 5, 5)), y=labels(20))
    assert data.build(DataConfig(name="arrays", root=str(root))).info.location == str(root)
