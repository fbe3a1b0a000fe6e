import pytest

from cnnlab.data.detect import guess_source
from cnnlab.errors import DataError


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    "files, expected",
    [
        (["wnids.txt", "train/n01/images/a.JPEG"], "tiny-imagenet"),
        (["cifar-10-batches-py/data_batch_1"], "cifar10"),
        (["data_batch_1", "test_batch"], "cifar10"),
        (["cifar-100-python/train"], "cifar100"),
        (["train", "test", "meta"], "cifar100"),
        (["train-images-idx3-ubyte.gz"], "mnist"),
        (["MNIST/raw/train-images-idx3-ubyte"], "mnist"),
        (["x.npy", "y.npy"], "arrays"),
        (["cat/1.png", "dog/2.png"], "folder"),
    ],
)
def test_layouts_are_recognised(tmp_path, files, expected):
    for f in files:
        touch(tmp_path / f)
    assert guess_source(tmp_path) == expected


def test_fashion_in_the_path_picks_fashion_mnist(tmp_path):
    touch(tmp_path / "fashion" / "train-images-idx3-ubyte.gz")
    assert guess_source(tmp_path / "fashion") == "fashion-mnist"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("d.npz", "arrays"),
        ("cifar-10-python.tar.gz", "cifar10"),
        ("cifar-100-python.tar.gz", "cifar100"),
    ],
)
def test_files_are_recognised_by_name(tmp_path, name, expected):
    assert guess_source(touch(tmp_path / name)) == expected


def test_unknown_or_missing_paths_say_to_pass_data_name(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        guess_source(tmp_path / "nope")
    with pytest.raises(DataError, match="pass data.name=NAME"):
        guess_source(touch(tmp_path / "notes.txt"))
    with pytest.raises(DataError, match="pass data.name=NAME"):
        guess_source(tmp_path)  # empty directory
