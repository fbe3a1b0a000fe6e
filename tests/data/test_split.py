"""split_train_val: stratified, seeded, disjoint and complete."""

from collections import Counter

import pytest
import torch

from cnnlab.data.imageset import ImageSet
from cnnlab.data.split import split_train_val
from cnnlab.errors import CnnlabError, ConfigError


def make_set(counts: list[int]) -> ImageSet:
    """counts[k] images of class k; image i holds the value i so a split can be traced back."""
    labels = torch.cat([torch.full((c,), k, dtype=torch.int64) for k, c in enumerate(counts)])
    n = len(labels)
    # Row i's 2x2 pixels encode i (< 65536) so every image is distinct.
    ids = torch.arange(n)
    images = torch.stack([ids % 256, ids // 256, ids % 256, ids // 256], 1).to(torch.uint8)
    return ImageSet(images.view(n, 1, 2, 2), labels, tuple(str(k) for k in range(len(counts))))


def ids_of(s: ImageSet) -> list[int]:
    px = s.images.view(len(s), 4).to(torch.int64)
    return (px[:, 0] + 256 * px[:, 1]).tolist()


# Unbalanced classes, like a real dataset.
COUNTS = [50, 31, 120, 7, 64, 23]


@pytest.mark.parametrize("val_split", [0.2, 0.35, 45, 100])
def test_every_class_gets_its_share_within_one_image(val_split):
    data = make_set(COUNTS)
    train, val = split_train_val(data, val_split, seed=0)
    n = len(data)
    n_val = round(val_split * n) if isinstance(val_split, float) else val_split
    val_counts = Counter(val.labels.tolist())
    train_counts = Counter(train.labels.tolist())
    for k, c in enumerate(COUNTS):
        expected = c * n_val / n
        assert abs(val_counts[k] - expected) <= 1, (k, val_counts[k], expected)
        assert val_counts[k] >= 1 and train_counts[k] >= 1  # every class on both sides


def test_fraction_and_count_give_the_requested_sizes():
    data = make_set(COUNTS)  # 295 images
    train, val = split_train_val(data, 0.2, seed=0)
    assert (len(train), len(val)) == (295 - 59, 59)  # round(0.2 * 295) = 59
    train, val = split_train_val(data, 40, seed=0)
    assert (len(train), len(val)) == (255, 40)


def test_split_is_disjoint_and_complete():
    data = make_set(COUNTS)
    train, val = split_train_val(data, 0.25, seed=3)
    t, v = ids_of(train), ids_of(val)
    assert not set(t) & set(v)
    assert sorted(t + v) == list(range(len(data)))
    # Labels travel with their images.
    for s in (train, val):
        assert torch.equal(s.labels, data.labels[torch.tensor(ids_of(s))])
    assert train.classes == val.classes == data.classes


def test_same_seed_gives_the_same_split():
    data = make_set(COUNTS)
    a = split_train_val(data, 0.2, seed=7)
    b = split_train_val(data, 0.2, seed=7)
    assert ids_of(a[0]) == ids_of(b[0]) and ids_of(a[1]) == ids_of(b[1])


def test_different_seed_gives_a_different_split():
    data = make_set(COUNTS)
    a = split_train_val(data, 0.2, seed=0)
    b = split_train_val(data, 0.2, seed=1)
    assert set(ids_of(a[1])) != set(ids_of(b[1]))


@pytest.mark.parametrize(
    "val_split",
    [
        2,  # fewer validation images than classes
        0.01,  # rounds to 3 of 295: fewer than the 6 classes
        290,  # leaves 5 training images for 6 classes
        0.99,
        1000,  # more than the whole set
    ],
)
def test_impossible_val_split_raises_config_error_naming_the_key(val_split):
    with pytest.raises(ConfigError, match=r"data\.val_split") as e:
        split_train_val(make_set(COUNTS), val_split, seed=0)
    assert repr(val_split) in str(e.value)


@pytest.mark.parametrize("n_val", [len(COUNTS), sum(COUNTS) - len(COUNTS)])
def test_extreme_but_possible_val_split_is_accepted(n_val):
    data = make_set(COUNTS)
    train, val = split_train_val(data, n_val, seed=0)
    assert len(val) == n_val and len(train) == len(data) - n_val
    assert sorted(ids_of(train) + ids_of(val)) == list(range(len(data)))


def test_class_with_a_single_image_is_a_user_error_not_a_traceback():
    with pytest.raises(CnnlabError, match="class '2' has only 1 image"):
        split_train_val(make_set([10, 10, 1]), 0.3, seed=0)
