"""StreamLoader: the DeviceLoader interface for sets larger than data.max_resident_mb."""

import pytest
import torch

from cnnlab.data.imageset import ImageSet
from cnnlab.data.loader import DeviceLoader, StreamLoader, make_loader

CPU = torch.device("cpu")


@pytest.fixture
def images() -> ImageSet:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (203, 3, 4, 4), dtype=torch.uint8, generator=gen)
    return ImageSet(x, torch.arange(203) % 7, tuple("abcdefg"))


def loader(cls, data, **kw):
    args = dict(batch_size=32, device=CPU, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    if cls is StreamLoader:
        args["num_workers"] = kw.pop("num_workers", 0)
    return cls(data, **(args | kw))


@pytest.mark.parametrize("workers", [0, 2])
def test_evaluation_batches_equal_the_device_loaders(images, workers):
    device = list(loader(DeviceLoader, images))
    stream = list(loader(StreamLoader, images, num_workers=workers))
    assert len(stream) == len(device) == 7  # 203 images, last batch partial
    for (xs, ys), (xd, yd) in zip(stream, device, strict=True):
        assert torch.equal(ys, yd) and torch.allclose(xs, xd)


def test_training_epoch_is_a_permutation_without_the_partial_batch(images):
    stream = loader(StreamLoader, images, shuffle=True)
    labels = torch.cat([y for _, y in stream])
    assert len(labels) == len(stream) * 32 == 192
    first = torch.cat([x for x, _ in stream])
    assert not torch.allclose(
        first[:32], loader(DeviceLoader, images).prepare(images.images[:32], images.labels[:32])[0]
    )


def test_state_dict_reproduces_the_next_epoch_order_and_augmentation(images):
    def noisy(x, y, gen):  # an augmentation drawing from the loader's device generator
        return x + 0.01 * torch.rand(x.shape, generator=gen, device=x.device), y

    a = loader(StreamLoader, images, shuffle=True, seed=1, transform=noisy)
    list(a)
    saved = a.state_dict()
    expected = [x for x, _ in a]
    b = loader(StreamLoader, images, shuffle=True, seed=99, transform=noisy)
    b.load_state_dict(saved)
    assert all(torch.equal(x, e) for (x, _), e in zip(b, expected, strict=True))


def test_make_loader_streams_only_sets_above_the_limit(images):
    kw = dict(batch_size=32, device=CPU, mean=(0.5,) * 3, std=(0.2,) * 3, num_workers=0)
    size_mb = images.images.numel() / 2**20
    assert type(make_loader(images, max_resident_mb=size_mb * 2, **kw)) is DeviceLoader
    assert type(make_loader(images, max_resident_mb=size_mb / 2, **kw)) is StreamLoader


@pytest.mark.parametrize("cls", [DeviceLoader, StreamLoader])
@pytest.mark.parametrize("stop_after", [0, 1, 3, 5])
def test_a_state_saved_mid_epoch_resumes_with_the_remaining_batches(images, cls, stop_after):
    """What a run stopped between two steps relies on: the same rest of the epoch, the same
    augmentation draws, then the same next epoch."""

    def noisy(x, y, gen):
        return x + 0.01 * torch.rand(x.shape, generator=gen, device=x.device), y

    a = loader(cls, images, shuffle=True, seed=1, transform=noisy)
    list(a)  # a whole epoch first: the mid-epoch state must not be confused with a fresh one
    batches = iter(a)
    for _ in range(stop_after):
        next(batches)
    saved = a.state_dict()
    expected = [x for x, _ in batches] + [x for x, _ in a]  # rest of this epoch, then the next
    b = loader(cls, images, shuffle=True, seed=99, transform=noisy)
    b.load_state_dict(saved)
    resumed = [x for x, _ in b] + [x for x, _ in b]
    assert len(resumed) == len(expected) == 2 * len(a) - stop_after
    assert all(torch.equal(x, e) for x, e in zip(resumed, expected, strict=True))


def test_ranks_of_several_processes_get_the_device_loaders_shares(images):
    for shuffle in (False, True):
        for rank in range(2):
            kw = {"shuffle": shuffle, "seed": 3, "rank": rank, "world": 2}
            device = [y for _, y in loader(DeviceLoader, images, **kw)]
            stream = [y for _, y in loader(StreamLoader, images, **kw)]
            assert len(device) == len(stream) > 0
            for a, b in zip(device, stream, strict=True):
                assert torch.equal(a, b)
