"""ImageSet: the contract every source returns, checked when one is made."""

import pytest
import torch

from cnnlab.data.imageset import ImageSet
from cnnlab.errors import CnnlabError, DataError

CLASSES = ("a", "b", "c")


def images(n=4, dtype=torch.uint8, shape=(1, 5, 5)):
    return torch.zeros(n, *shape, dtype=dtype)


def labels(values=(0, 1, 2, 0), dtype=torch.int64):
    return torch.tensor(values, dtype=dtype)


def test_valid_set_is_accepted_and_has_a_length():
    s = ImageSet(images(), labels(), CLASSES)
    assert len(s) == 4


def test_data_error_is_a_cnnlab_error():
    # So the CLI shows it as a one-line user error (exit code 2), not a traceback.
    assert issubclass(DataError, CnnlabError)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.int8])
def test_images_of_wrong_dtype_are_rejected(dtype):
    with pytest.raises(DataError, match="uint8") as e:
        ImageSet(images(dtype=dtype), labels(), CLASSES)
    assert str(dtype) in str(e.value)


@pytest.mark.parametrize("shape", [(4, 5, 5), (4, 1, 5, 5, 1), (4,)])
def test_images_not_4d_are_rejected(shape):
    with pytest.raises(DataError, match=r"N×C×H×W") as e:
        ImageSet(torch.zeros(shape, dtype=torch.uint8), labels(), CLASSES)
    assert str(tuple(shape)) in str(e.value)


@pytest.mark.parametrize("dtype", [torch.int32, torch.float32, torch.uint8])
def test_labels_of_wrong_dtype_are_rejected(dtype):
    with pytest.raises(DataError, match="int64"):
        ImageSet(images(), labels(dtype=dtype), CLASSES)


@pytest.mark.parametrize(
    "bad", [torch.zeros(3, dtype=torch.int64), torch.zeros(4, 1, dtype=torch.int64)]
)
def test_labels_whose_shape_does_not_match_the_images_are_rejected(bad):
    with pytest.raises(DataError, match=r"shape \(4,\)"):
        ImageSet(images(), bad, CLASSES)


@pytest.mark.parametrize("values", [(0, 1, 3, 0), (0, -1, 2, 0)])
def test_labels_outside_the_class_range_are_rejected(values):
    with pytest.raises(DataError, match=r"\[0, 3\)"):
        ImageSet(images(), labels(values), CLASSES)


def test_subset_keeps_classes_and_picks_rows():
    s = ImageSet(torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1), labels(), CLASSES)
    sub = s.subset(torch.tensor([2, 0]))
    assert sub.images.flatten().tolist() == [2, 0]
    assert sub.labels.tolist() == [2, 0]
    assert sub.classes == CLASSES
