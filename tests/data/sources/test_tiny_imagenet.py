"""The `tiny-imagenet` source, on a small fake written in the real layout with real JPEGs."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab import data
from cnnlab.config.schema import DataConfig
from cnnlab.data.registry import SOURCES
from cnnlab.errors import DataError

# wnid -> (words.txt line or None, pixel value of its images)
WNIDS = {
    "n02124075": ("Egyptian cat", 40),
    "n01443537": ("goldfish, Carassius auratus", 120),
    "n09999999": (None, 200),  # not in words.txt: named by its wnid
}
VAL = [("val_0.JPEG", "n01443537"), ("val_1.JPEG", "n09999999"), ("val_2.JPEG", "n02124075")]


def jpeg(path: Path, value: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (8, 8), value if mode == "L" else (value,) * 3).save(path)


def write_tiny_imagenet(root: Path, per_class: int = 3) -> Path:
    """tiny-imagenet-200's layout: wnids/words, train/<wnid>/images, val/images + annotations."""
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in WNIDS))
    words = [f"{w}\t{name}\n" for w, (name, _) in WNIDS.items() if name]
    (root / "words.txt").write_text("n00000001\tentity\n" + "".join(words))
    for wnid, (_, value) in WNIDS.items():
        (root / "train" / wnid / f"{wnid}_boxes.txt").parent.mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("ignored\n")
        for i in range(per_class):
            # Tiny ImageNet mixes in grayscale JPEGs; the first of each class is one here.
            jpeg(
                root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG",
                value,
                "L" if i == 0 else "RGB",
            )
    for name, wnid in VAL:
        jpeg(root / "val" / "images" / name, WNIDS[wnid][1])
    lines = [f"{name}\t{wnid}\t0\t0\t7\t7\n" for name, wnid in VAL]
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    jpeg(root / "test" / "images" / "test_0.JPEG", 0)  # unlabelled: ignored
    return root


def read(root: Path, tmp_path: Path, **kw):
    cfg = DataConfig(name="tiny-imagenet", root=str(root), cache_dir=str(tmp_path / "c"), **kw)
    return SOURCES.get("tiny-imagenet")(cfg)


@pytest.fixture
def root(tmp_path) -> Path:
    return write_tiny_imagenet(tmp_path / "tiny-imagenet-200")


def test_classes_follow_wnids_txt_and_take_the_first_synonym(root, tmp_path):
    splits = read(root, tmp_path)
    assert splits.train.classes == ("Egyptian cat", "goldfish", "n09999999")
    assert splits.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert splits.train.images.shape == (9, 3, 8, 8)  # grayscale JPEGs widened to RGB
    values = splits.train.images[:, 0, 4, 4].int()
    assert (values - torch.tensor([40] * 3 + [120] * 3 + [200] * 3)).abs().max() <= 2


def test_val_is_the_datasets_own_labelled_split_and_test_is_ignored(root, tmp_path):
    splits = read(root, tmp_path)
    assert splits.val.labels.tolist() == [1, 2, 0]  # from val_annotations.txt
    assert (splits.val.images[:, 0, 4, 4].int() - torch.tensor([120, 200, 40])).abs().max() <= 2
    assert splits.test is None and splits.skipped == ()


def test_duplicate_first_synonyms_are_told_apart(root, tmp_path):
    words = (root / "words.txt").read_text().replace("Egyptian cat", "goldfish")
    (root / "words.txt").write_text(words)
    classes = read(root, tmp_path).train.classes
    assert classes == ("goldfish (n02124075)", "goldfish (n01443537)", "n09999999")


def test_missing_wnids_or_train(root, tmp_path):
    (root / "wnids.txt").rename(root / "wnids.bak")
    with pytest.raises(DataError, match=r"wnids.txt: not found"):
        read(root, tmp_path)
    (root / "wnids.bak").rename(root / "wnids.txt")
    (root / "train").rename(root / "training")
    with pytest.raises(DataError, match=r"tiny-imagenet-200/train: not found"):
        read(root, tmp_path)


def test_a_val_line_with_an_unknown_wnid_is_named(root, tmp_path):
    notes = root / "val" / "val_annotations.txt"
    notes.write_text(notes.read_text() + "val_0.JPEG\tn01234567\t0\t0\t7\t7\n")
    with pytest.raises(DataError, match=r"val_annotations.txt:4: unknown wnid 'n01234567'"):
        read(root, tmp_path)


def test_a_val_line_naming_a_missing_file_is_named(root, tmp_path):
    (root / "val" / "images" / "val_1.JPEG").unlink()
    with pytest.raises(DataError, match=r"val_annotations.txt:2: val_1.JPEG is not an image file"):
        read(root, tmp_path)


def test_relabelling_val_invalidates_the_cache(root, tmp_path):
    read(root, tmp_path)
    notes = root / "val" / "val_annotations.txt"
    notes.write_text(notes.read_text().replace("val_2.JPEG\tn02124075", "val_2.JPEG\tn01443537"))
    assert read(root, tmp_path).val.labels.tolist() == [1, 2, 1]


def test_build_uses_the_own_val_split(root, tmp_path):
    cfg = DataConfig(name="tiny-imagenet", root=str(root), cache_dir=str(tmp_path / "c"))
    bundle = data.build(cfg)
    assert (len(bundle.train), len(bundle.val)) == (9, 3)  # no split drawn from train
    assert bundle.info.num_classes == 3 and bundle.info.image_size == (8, 8)
    assert bundle.info.channels == 3 and bundle.test is None
