"""The `folder` source: root/<class>/ images, or root/{train,val,test}/<class>/ split folders."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import data
from cnnlab.config.schema import DataConfig
from cnnlab.data.registry import SOURCES
from cnnlab.errors import ConfigError, DataError


def image(path: Path, value: int, size: tuple[int, int] = (4, 4), mode: str = "L") -> Path:
    """A real image file (format from the suffix) filled with `value`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value,) * 3).save(path)
    return path


def write_classes(root: Path, counts: dict[str, int]) -> Path:
    """root/<class>/<i>.png, pixel value 10 * class index + i, so images tell their class."""
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            image(root / name / f"{i}.png", 10 * c + i)
    return root


def read(root: Path, tmp_path: Path, **kw):
    cfg = DataConfig(name="folder", root=str(root), cache_dir=str(tmp_path / "cache"), **kw)
    return SOURCES.get("folder")(cfg)


def test_classes_are_sorted_subdirectories_and_label_their_images(tmp_path):
    root = write_classes(tmp_path / "d", {"b-zebra": 2, "a-ant": 3})
    train = read(root, tmp_path).train
    assert train.classes == ("a-ant", "b-zebra")
    assert train.images.shape == (5, 1, 4, 4)
    # write_classes gave b-zebra values 0, 1 and a-ant values 10, 11, 12.
    assert train.labels.tolist() == [0, 0, 0, 1, 1]
    assert train.images[:, 0, 0, 0].tolist() == [10, 11, 12, 0, 1]


def test_formats_nesting_case_hidden_and_non_image_files(tmp_path):
    root = tmp_path / "d"
    image(root / "cat" / "a.JPG", 50, mode="RGB")
    image(root / "cat" / "deeper" / "b.bmp", 60)
    image(root / "cat" / "c.TIFF", 70)
    image(root / "dog" / "d.webp", 80)
    image(root / "dog" / "e.ppm", 90, mode="RGB")
    image(root / "dog" / "f.gif", 100)
    image(root / "dog" / ".hidden.png", 1)  # ignored: hidden file
    image(root / "dog" / ".thumbs" / "g.png", 2)  # ignored: hidden directory
    (root / "dog" / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    image(root / ".trash" / "h.png", 3)  # not a class: hidden
    train = read(root, tmp_path).train
    assert train.classes == ("cat", "dog")
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert train.images.shape == (6, 3, 4, 4)  # a.JPG and e.ppm are colour
    assert (
        train.images[:, 0, 0, 0].int() - torch.tensor([50, 70, 60, 80, 90, 100])
    ).abs().max() <= 2


def test_split_directories_give_val_and_test(tmp_path):
    root = tmp_path / "d"
    write_classes(root / "train", {"cat": 3, "dog": 3})
    write_classes(root / "val", {"cat": 1, "dog": 2})
    write_classes(root / "test", {"dog": 1})  # a class may be absent from val/test
    splits = read(root, tmp_path)
    assert splits.train.classes == splits.val.classes == splits.test.classes == ("cat", "dog")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 3, 1)
    assert splits.val.labels.tolist() == [0, 1, 1]
    assert splits.test.labels.tolist() == [1]  # train's numbering, not test's own


def test_a_val_class_missing_from_train_is_named(tmp_path):
    root = tmp_path / "d"
    write_classes(root / "train", {"cat": 2, "dog": 2})
    write_classes(root / "val", {"cat": 1, "dgo": 1})
    with pytest.raises(
        DataError, match=r"val/dgo: class 'dgo' is not in train/ — did you mean dog"
    ):
        read(root, tmp_path)


def test_a_stray_directory_beside_train_is_named(tmp_path):
    root = tmp_path / "d"
    write_classes(root / "train", {"cat": 2, "dog": 2})
    write_classes(root / "valid", {"cat": 1, "dog": 1})
    with pytest.raises(DataError, match="valid: unexpected beside train/"):
        read(root, tmp_path)


def test_root_unset_missing_or_a_file(tmp_path):
    with pytest.raises(ConfigError, match="data.root: not set"):
        SOURCES.get("folder")(DataConfig(name="folder", cache_dir=str(tmp_path)))
    with pytest.raises(DataError, match="nowhere: no such directory"):
        read(tmp_path / "nowhere", tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="file: not a directory"):
        read(tmp_path / "file", tmp_path)


def test_images_without_class_directories(tmp_path):
    image(tmp_path / "d" / "a.png", 1)
    with pytest.raises(DataError, match=r"no class sub-directories \(it holds 1 images directly\)"):
        read(tmp_path / "d", tmp_path)


def test_a_single_class(tmp_path):
    root = write_classes(tmp_path / "d", {"cat": 2})
    with pytest.raises(DataError, match=r"only one class sub-directory \(cat/\).*at least 2"):
        read(root, tmp_path)


def test_an_empty_class_is_named(tmp_path):
    root = write_classes(tmp_path / "d", {"cat": 2, "dog": 2})
    (root / "emu").mkdir()
    (root / "emu" / "readme.txt").write_text("")
    with pytest.raises(DataError, match=r"d/emu: class folder holds no image files"):
        read(root, tmp_path)


def test_no_images_at_all(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "d" / name).mkdir(parents=True)
    with pytest.raises(DataError, match="no image files in any class sub-directory"):
        read(tmp_path / "d", tmp_path)


def test_mixed_sizes_need_image_size(tmp_path):
    root = tmp_path / "d"
    image(root / "cat" / "small.png", 0, size=(4, 4))
    image(root / "dog" / "large.png", 0, size=(6, 8))
    with pytest.raises(DataError, match=r"large.png is 8×6 .*data.image_size=N"):
        read(root, tmp_path)
    assert read(root, tmp_path, image_size=5).train.images.shape == (2, 1, 5, 5)


def test_build_reads_a_folder_end_to_end(tmp_path):
    root = tmp_path / "d"
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(5):
            pixels = np.full((6, 6, 3), (200 * c, 10 * i, 0), np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "dog" / "broken.jpg").write_bytes(b"JFIF? no")  # skipped (data.on_bad_file=skip)
    cfg = DataConfig(name="folder", root=str(root), cache_dir=str(tmp_path / "c"), val_split=4)
    bundle = data.build(cfg)
    assert (len(bundle.train), len(bundle.val)) == (6, 4)
    assert bundle.info.classes == ("cat", "dog") and bundle.info.channels == 3
    assert bundle.info.image_size == (6, 6)
    assert torch.bincount(bundle.val.labels).tolist() == [2, 2]  # stratified
    assert len(bundle.skipped) == 1 and bundle.skipped[0].startswith(f"{root}/dog/broken.jpg: ")


def test_a_symlink_loop_is_walked_once(tmp_path):
    root = write_classes(tmp_path / "set", {"a": 2, "b": 2})
    (root / "a" / "loop").symlink_to(root)  # points back up the tree
    assert len(read(root, tmp_path).train) == 4
