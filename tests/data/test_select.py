"""data.classes: keep some classes, relabelled 0..k-1 in the order given, in every split."""

import json

import pytest
import torch

from cnnlab import data
from cnnlab.cli import main
from cnnlab.config.schema import DataConfig
from cnnlab.data.imageset import ImageSet, SourceSplits
from cnnlab.data.select import resolve_classes, select_classes, select_splits
from cnnlab.data.sources.digits import read_digits
from cnnlab.data.stats import channel_stats
from cnnlab.errors import ConfigError

ANIMALS = ("cat", "dog", "bird", "frog", "horse")


def animals(per_class: int = 3) -> ImageSet:
    """per_class images of each of ANIMALS, interleaved; every pixel of image i is i."""
    n = per_class * len(ANIMALS)
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return ImageSet(images, torch.arange(n) % len(ANIMALS), ANIMALS)


def config_error(keep, classes=ANIMALS) -> str:
    with pytest.raises(ConfigError) as e:
        resolve_classes(keep, classes)
    msg = str(e.value)
    assert "\n" not in msg and "data.classes" in msg, msg
    return msg


# --- selecting and relabelling ----------------------------------------------------------------


@pytest.mark.parametrize(
    "keep", [["frog", "cat"], [3, 0], ["frog", 0], [3, "cat"], ["3", "cat"]], ids=str
)
def test_keeps_the_classes_relabelled_in_the_order_given(keep):
    full = animals()
    kept = select_classes(full, keep)
    assert kept.classes == ("frog", "cat")
    assert len(kept) == 6
    for image, label in zip(kept.images, kept.labels, strict=True):
        i = int(image[0, 0, 0])  # the image's index in the full set
        old = ANIMALS[int(full.labels[i])]
        assert old == kept.classes[int(label)]  # frog -> 0, cat -> 1
    assert kept.labels.tolist() == [1, 0, 1, 0, 1, 0]  # the set's own order is kept
    assert kept.images.dtype == torch.uint8 and kept.labels.dtype == torch.int64


def test_every_class_in_its_own_order_is_the_set_itself():
    full = animals()
    assert select_classes(full, list(range(5))) is full
    assert select_classes(full, list(ANIMALS)) is full


def test_every_class_reordered_relabels_every_image():
    full = animals()
    reordered = select_classes(full, list(reversed(ANIMALS)))
    assert reordered.classes == tuple(reversed(ANIMALS))
    assert torch.equal(reordered.images, full.images)
    assert torch.equal(reordered.labels, 4 - full.labels)


def test_a_name_wins_over_a_digit_string_index():
    classes = ("1", "10", "2")  # a folder dataset whose class names are numbers, sorted as str
    assert resolve_classes(["2", "1"], classes) == [2, 0]  # by name
    assert resolve_classes([2, 1], classes) == [2, 1]  # an int is always an index
    assert resolve_classes(["10", 0], classes) == [1, 0]


def test_a_digit_string_that_is_no_name_is_an_index():
    assert resolve_classes(["4", "0"], ANIMALS) == [4, 0]


def test_select_splits_filters_train_val_and_test_and_keeps_the_rest():
    full = animals()
    splits = SourceSplits(train=full, val=full.subset(torch.arange(5)), skipped=("x: bad",))
    kept = select_splits(splits, ["dog", "bird"])
    assert kept.train.classes == kept.val.classes == ("dog", "bird")
    assert len(kept.train) == 6 and kept.val.labels.tolist() == [0, 1]
    assert kept.test is None and kept.skipped == ("x: bad",)
    assert select_splits(splits, None) is splits


# --- errors -----------------------------------------------------------------------------------


def test_unknown_name_suggests_close_matches_and_lists_valid_names():
    msg = config_error(["cat", "Dgo"])
    assert "unknown class 'Dgo'" in msg and "did you mean 'dog'?" in msg
    assert "5 classes: cat, dog, bird, frog, horse" in msg


def test_unknown_name_without_a_close_match_lists_the_first_few():
    many = tuple(f"class_{i:02d}" for i in range(20))
    msg = config_error(["class_01", "zebra"], many)
    assert "unknown class 'zebra'" in msg and "did you mean" not in msg
    assert "20 classes: class_00, class_01" in msg and "class_07, ..." in msg
    assert "class_08" not in msg


@pytest.mark.parametrize("bad", [5, -1, 99])
def test_index_out_of_range_gives_the_valid_range(bad):
    msg = config_error([0, bad])
    assert f"label index {bad} is out of range" in msg and "valid: 0..4" in msg


def test_digit_string_out_of_range_is_neither_name_nor_index():
    msg = config_error(["cat", "12"])
    assert "'12' is neither a class name nor a label index in 0..4" in msg


@pytest.mark.parametrize(
    "keep, first, second", [(["cat", 0], "'cat'", "0"), ([1, "dog"], "1", "'dog'")]
)
def test_the_same_class_twice(keep, first, second):
    msg = config_error([*keep, "frog"])
    assert "is given twice" in msg and f"as {first} and {second}" in msg


def test_the_same_class_twice_by_index_and_digit_string():
    msg = config_error([3, "3"], tuple(str(i) for i in range(10)))
    assert "class '3' (index 3) is given twice" in msg


@pytest.mark.parametrize("keep", [[], ["cat"], [2]], ids=str)
def test_fewer_than_two_classes(keep):
    msg = config_error(keep)
    assert f"data.classes = {keep!r}" in msg and "a classifier needs at least 2" in msg


def test_build_raises_the_config_error():
    with pytest.raises(ConfigError, match=r"data\.classes: label index 10 is out of range"):
        data.build(DataConfig(classes=[0, 10]))


# --- through data.build -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_digits():
    return data.build(DataConfig(classes=[7, "2", 5]))


def test_build_keeps_only_the_classes_in_train_and_val(three_digits):
    assert three_digits.info.classes == ("7", "2", "5")
    assert three_digits.info.num_classes == 3
    full = data.build(DataConfig())
    n_full = {
        c: int((full.train.labels == c).sum() + (full.val.labels == c).sum()) for c in range(10)
    }
    for split in (three_digits.train, three_digits.val):
        assert set(split.labels.tolist()) == {0, 1, 2}
    total = len(three_digits.train) + len(three_digits.val)
    assert total == n_full[7] + n_full[2] + n_full[5]
    # the stratified split sees only the kept classes: val_split=0.2 of them
    assert len(three_digits.val) == round(0.2 * total)


def test_relabelled_images_are_the_images_of_their_class():
    kept = data.build(DataConfig(classes=[7, 2], normalize="none"))
    full = read_digits(DataConfig()).train  # every digit, as the source reads it
    images = torch.cat([kept.train.images, kept.val.images])
    labels = torch.cat([kept.train.labels, kept.val.labels])

    def rows(x: torch.Tensor) -> list[bytes]:
        return sorted(map(bytes, x.flatten(1).numpy()))

    for new, old in enumerate((7, 2)):
        assert rows(images[labels == new]) == rows(full.images[full.labels == old])


def test_a_sources_own_test_split_is_filtered_too():
    bundle = data.build(DataConfig(name="digits-with-test", classes=["9", 0]))
    assert bundle.test is not None and bundle.test.classes == ("9", "0")
    full = data.build(DataConfig(name="digits-with-test"))
    expected = int((full.test.labels == 9).sum() + (full.test.labels == 0).sum())
    assert len(bundle.test) == expected and set(bundle.test.labels.tolist()) == {0, 1}
    assert len(bundle.train) + len(bundle.val) < len(full.train) + len(full.val)


def test_train_stats_are_those_of_the_kept_classes_not_the_cached_full_set(three_digits):
    full = data.build(DataConfig())  # the full set's stats are cached first
    again = data.build(DataConfig(classes=[7, "2", 5]))  # served from its own cache entry
    mean, std = channel_stats(three_digits.train.images)
    for info in (three_digits.info, again.info):
        assert info.mean == pytest.approx(mean) and info.std == pytest.approx(std)
    assert info.mean != pytest.approx(full.info.mean)


# --- end to end -------------------------------------------------------------------------------


def test_cnnlab_train_with_three_classes(tmp_path, capsys):
    args = ["train", "data.classes=[0,1,2]", "train.epochs=1", "model.width=8"]
    assert main([*args, f"run.dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "3 classes" in out
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert "3 classes" in (run / "log.txt").read_text()
    rows = (run / "model.txt").read_text().splitlines()
    classifier = [row.split() for row in rows if "Linear" in row.split()][-1]
    assert classifier[classifier.index("Linear") + 1] == "3", classifier  # its output shape
