import pytest
import torch

from cnnlab.data import stats
from cnnlab.data.stats import cached_channel_stats, channel_stats, fingerprint


def sample(seed=0, n=50):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 6, 6), dtype=torch.uint8, generator=gen)
    return images, torch.arange(n) % 5


def test_cached_stats_equal_computed_and_second_call_reads_the_file(tmp_path, monkeypatch):
    images, labels = sample()
    first = cached_channel_stats(images, labels, tmp_path)
    assert first == channel_stats(images)
    assert len(list(tmp_path.iterdir())) == 1

    def must_not_run(_):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(stats, "channel_stats", must_not_run)
    assert cached_channel_stats(images, labels, tmp_path) == first


def test_different_sets_get_different_entries():
    assert fingerprint(*sample(0)) != fingerprint(*sample(1))
    images, labels = sample(0)
    assert fingerprint(images, labels) != fingerprint(images, labels.flip(0))


def test_a_corrupt_cache_file_is_recomputed(tmp_path):
    images, labels = sample()
    (tmp_path / f"{fingerprint(images, labels)}.json").write_text("{not json")
    assert cached_channel_stats(images, labels, tmp_path) == channel_stats(images)


def test_an_unwritable_cache_still_gives_stats(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    images, labels = sample()
    assert cached_channel_stats(images, labels, blocker / "stats") == channel_stats(images)


@pytest.mark.parametrize(
    "saved",
    [
        '{"mean": [0.5], "std": [0.2]}',  # 1 channel for a 3-channel set
        '{"mean": [0.5, 0.5, "x"], "std": [0.2, 0.2, 0.2]}',
        '{"mean": [0.5, 0.5, NaN], "std": [0.2, 0.2, 0.2]}',
        '{"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0]}',  # would divide by zero
        '{"mean": 3, "std": null}',
        "[" * 100_000 + "]" * 100_000,  # RecursionError in json
    ],
    ids=["channels", "string", "nan", "zero-std", "not-lists", "deep"],
)
def test_a_damaged_cache_entry_is_recomputed_never_used(tmp_path, saved):
    images, labels = sample()
    (tmp_path / f"{fingerprint(images, labels)}.json").write_text(saved)
    assert cached_channel_stats(images, labels, tmp_path) == channel_stats(images)


def test_a_fifo_in_the_cache_never_blocks(tmp_path):
    import os

    images, labels = sample()
    os.mkfifo(tmp_path / f"{fingerprint(images, labels)}.json")
    assert cached_channel_stats(images, labels, tmp_path) == channel_stats(images)
