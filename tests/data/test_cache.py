"""cache: a decoded folder is read back without decoding, and only while nothing changed."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.config.schema import DataConfig
from cnnlab.data import cache, decode
from cnnlab.data.sources.image_folder import read_folder


def write_folder(root: Path, per_class: int = 3) -> Path:
    """root/{cat,dog}/<i>.png: 4×4 RGB images, each a different colour."""
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.full((4, 4, 3), (c * 100 + i * 10, i, 7), np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def folder(tmp_path) -> DataConfig:
    root = write_folder(tmp_path / "data")
    return DataConfig(name="folder", root=str(root), cache_dir=str(tmp_path / "cache"))


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """Counts decoder calls: one entry per call, its number of files."""
    calls: list[int] = []
    real = decode.decode_files

    def counting(paths, cfg):
        calls.append(len(paths))
        return real(paths, cfg)

    monkeypatch.setattr(decode, "decode_files", counting)
    return calls


def cache_files(cfg: DataConfig) -> list[Path]:
    return sorted((Path(cfg.cache_dir) / "decoded").glob("*.safetensors"))


def same(a, b) -> bool:
    return (
        torch.equal(a.train.images, b.train.images)
        and torch.equal(a.train.labels, b.train.labels)
        and a.train.classes == b.train.classes
        and a.skipped == b.skipped
    )


def test_second_read_comes_from_the_cache_without_decoding(folder, monkeypatch):
    first = read_folder(folder)
    [path] = cache_files(folder)
    assert len(path.stem) == 64 and path.parent.name == "decoded"

    def refuse(paths, cfg):
        raise AssertionError("decoded again despite a cache hit")

    monkeypatch.setattr(decode, "decode_files", refuse)
    assert same(read_folder(folder), first)


def test_split_layout_and_skipped_files_survive_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_folder(root / "train")
    write_folder(root / "val", per_class=1)
    (root / "val" / "dog" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    cfg = DataConfig(name="folder", root=str(root), cache_dir=str(tmp_path / "cache"))
    first = read_folder(cfg)
    monkeypatch.setattr(decode, "decode_files", None)  # any decode now fails
    again = read_folder(cfg)
    assert same(again, first) and torch.equal(again.val.images, first.val.images)
    assert again.val.labels.tolist() == [0, 1] and again.test is None
    assert len(again.skipped) == 1 and "bad.png" in again.skipped[0]


def test_adding_a_file_invalidates(folder, decodes):
    read_folder(folder)
    write_folder(Path(folder.root), per_class=4)  # adds 3.png to each class
    assert len(read_folder(folder).train) == 8
    assert decodes == [6, 8]


def test_touching_a_file_invalidates(folder, decodes):
    read_folder(folder)
    target = Path(folder.root) / "cat" / "0.png"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    read_folder(folder)
    read_folder(folder)  # and the new state is cached in turn
    assert decodes == [6, 6]


@pytest.mark.parametrize("option", [{"image_size": 8}, {"channels": 1}, {"on_bad_file": "error"}])
def test_changing_a_decode_option_invalidates(folder, decodes, option):
    read_folder(folder)
    changed = folder.model_copy(update=option)
    read_folder(changed)
    read_folder(changed)
    assert decodes == [6, 6] and len(cache_files(folder)) == 2


def test_options_that_do_not_change_the_pixels_share_the_cache(folder, decodes):
    read_folder(folder)
    read_folder(folder.model_copy(update={"num_workers": 1, "val_split": 0.5, "split_seed": 3}))
    assert decodes == [6]


def test_key_covers_source_root_and_every_stamp(tmp_path):
    cfg = DataConfig(cache_dir=str(tmp_path))
    stamps = [("a/1.png", 10, 5), ("b/2.png", 20, 6)]
    key = cache.cache_key(cfg, "folder", tmp_path, stamps)
    assert key == cache.cache_key(cfg, "folder", tmp_path / "x" / "..", stamps)  # same place
    assert key != cache.cache_key(cfg, "tiny-imagenet", tmp_path, stamps)
    assert key != cache.cache_key(cfg, "folder", tmp_path / "other", stamps)
    assert key != cache.cache_key(cfg, "folder", tmp_path, stamps[:1])
    assert key != cache.cache_key(cfg, "folder", tmp_path, [("a/1.png", 11, 5), stamps[1]])


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b"not a safetensors file",
        lambda b: b[: len(b) // 2],  # torn
        lambda b: b[:-20] + bytes(x ^ 0xFF for x in b[-20:]),  # flipped pixels: CRC catches it
    ],
    ids=["garbage", "truncated", "bit-flips"],
)
def test_a_damaged_cache_file_is_ignored_and_rewritten(folder, decodes, damage):
    first = read_folder(folder)
    [path] = cache_files(folder)
    path.write_bytes(damage(path.read_bytes()))
    assert same(read_folder(folder), first)  # decoded again: right data, no error
    assert same(read_folder(folder), first)  # from the rewritten file
    assert decodes == [6, 6]
    assert cache.load_splits(path) is not None


def test_an_unwritable_cache_dir_warns_and_still_decodes(tmp_path, decodes):
    root = write_folder(tmp_path / "data")
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a cache_dir below a regular file cannot be created, even as root
    cfg = DataConfig(name="folder", root=str(root), cache_dir=str(blocker / "cache"))
    with pytest.warns(UserWarning, match="cannot write the decoded-image cache"):
        splits = read_folder(cfg)
    assert splits.train.images.shape == (6, 3, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_folder(cfg)
    assert decodes == [6, 6]


def test_a_fifo_or_a_pickle_in_the_cache_never_blocks_or_runs(folder, decodes, tmp_path):
    import os
    import pickle

    first = read_folder(folder)
    [path] = cache_files(folder)
    path.unlink()
    os.mkfifo(path)  # opening a FIFO for reading blocks until a writer comes
    assert cache.load_splits(path) is None
    path.unlink()
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path.write_bytes(pickle.dumps(Payload()))
    assert same(read_folder(folder), first)  # decoded again; safetensors reads no pickle
    assert not marker.exists()
