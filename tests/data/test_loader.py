"""DeviceLoader: the whole uint8 set on the device, batches cut by seeded index permutations."""

import pytest
import torch

from cnnlab.data.imageset import ImageSet
from cnnlab.data.loader import DeviceLoader

CPU = torch.device("cpu")
N = 23  # not a multiple of any batch size used below


def image_set(n=N, channels=1) -> ImageSet:
    """Image i is filled with the value i, so a batch tells which images it holds."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, channels, 3, 3)
    return ImageSet(images.contiguous(), torch.arange(n, dtype=torch.int64) % 5, tuple("abcde"))


def loader(data=None, **kw) -> DeviceLoader:
    kw = {"batch_size": 5, "device": CPU, "mean": (0.0,), "std": (1.0,), **kw}
    return DeviceLoader(image_set() if data is None else data, **kw)


def ids(x: torch.Tensor) -> list[int]:
    """Which images a batch normalised with mean 0, std 1 holds."""
    return (x[:, 0, 0, 0] * 255).round().long().tolist()


def epoch_ids(dl: DeviceLoader) -> list[list[int]]:
    return [ids(x) for x, _ in dl]


def test_train_mode_drops_the_last_partial_batch():
    dl = loader(shuffle=True)
    batches = epoch_ids(dl)
    assert len(dl) == len(batches) == N // 5
    assert all(len(b) == 5 for b in batches)
    seen = [i for b in batches for i in b]
    assert len(set(seen)) == len(seen)  # no image twice within an epoch


def test_train_mode_keeps_a_set_smaller_than_one_batch():
    dl = loader(image_set(3), shuffle=True)
    assert len(dl) == 1
    assert sorted(epoch_ids(dl)[0]) == [0, 1, 2]


def test_eval_mode_covers_every_image_once_in_order():
    dl = loader(shuffle=False)
    batches = epoch_ids(dl)
    assert len(dl) == len(batches) == -(-N // 5)
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert [i for b in batches for i in b] == list(range(N))


def test_labels_travel_with_their_images():
    data = image_set()
    for shuffle in (False, True):
        for x, y in loader(data, shuffle=shuffle):
            assert y.dtype == torch.int64
            assert torch.equal(y, data.labels[torch.tensor(ids(x))])


def test_shuffled_epochs_differ():
    dl = loader(shuffle=True)
    assert epoch_ids(dl) != epoch_ids(dl)


def test_normalisation_is_x_over_255_minus_mean_over_std():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 4, 4), generator=g, dtype=torch.uint8)
    data = ImageSet(images, torch.zeros(6, dtype=torch.int64), ("a",))
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.25)
    dl = DeviceLoader(data, batch_size=4, device=CPU, mean=mean, std=std)
    x = torch.cat([b for b, _ in dl])
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    expected = (images.float() / 255 - m) / s
    assert x.dtype == torch.float32 and x.shape == images.shape
    torch.testing.assert_close(x, expected)


def test_same_seed_gives_the_same_batches():
    a = loader(shuffle=True, seed=11)
    b = loader(shuffle=True, seed=11)
    c = loader(shuffle=True, seed=12)
    first = [epoch_ids(a), epoch_ids(a)]
    assert first == [epoch_ids(b), epoch_ids(b)]
    assert first != [epoch_ids(c), epoch_ids(c)]


def test_state_dict_restores_the_next_epochs_order_and_augmentation():
    def jitter(x, y, gen):  # random per-sample shift: the generator drives augmentation too
        return x + torch.rand(x.shape[0], 1, 1, 1, generator=gen) * 1e-3, y

    a = loader(shuffle=True, seed=3, transform=jitter)
    list(a)  # epoch 1
    state = a.state_dict()
    expected = [x for x, _ in a]  # epoch 2

    b = loader(shuffle=True, seed=99, transform=jitter)  # a different seed: resume must override
    b.load_state_dict(state)
    resumed = [x for x, _ in b]
    assert len(resumed) == len(expected)
    for x, y in zip(resumed, expected, strict=True):
        assert torch.equal(x, y)


def test_state_dict_survives_a_round_trip_through_a_checkpoint(tmp_path):
    a = loader(shuffle=True, seed=5)
    list(a)
    torch.save(a.state_dict(), tmp_path / "state.pt")
    expected = epoch_ids(a)
    b = loader(shuffle=True, seed=0)
    b.load_state_dict(torch.load(tmp_path / "state.pt"))
    assert epoch_ids(b) == expected


def test_transform_sees_0_1_floats_before_normalisation():
    seen = []

    def transform(x, y, gen):
        assert isinstance(gen, torch.Generator)
        seen.append(x.clone())
        return 1.0 - x, y  # invert

    data = image_set()
    mean, std = (0.25,), (0.5,)
    dl = loader(data, shuffle=False, transform=transform, mean=mean, std=std)
    out = torch.cat([x for x, _ in dl])
    raw = torch.cat(seen)
    assert raw.dtype == torch.float32
    torch.testing.assert_close(raw, data.images.float() / 255)
    torch.testing.assert_close(out, (1.0 - data.images.float() / 255 - 0.25) / 0.5)


def test_no_transform_in_eval_is_plain_normalisation():
    data = image_set()
    out = torch.cat([x for x, _ in loader(data, mean=(0.5,), std=(2.0,))])
    torch.testing.assert_close(out, (data.images.float() / 255 - 0.5) / 2.0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_memory_format(channels_last):
    dl = loader(image_set(channels=3), mean=(0.0,) * 3, std=(1.0,) * 3, channels_last=channels_last)
    x, _ = next(iter(dl))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert x.is_contiguous(memory_format=fmt)
    # Values do not depend on the layout.
    assert ids(x) == [0, 1, 2, 3, 4]


def test_a_transform_may_turn_labels_into_class_probabilities():
    def soften(x, y, gen):  # what mixup does to the targets
        return x, torch.nn.functional.one_hot(y, 5).float() * 0.8 + 0.2 / 5

    data = image_set()
    batches = list(loader(data, shuffle=False, transform=soften))
    y = torch.cat([y for _, y in batches])
    assert y.shape == (len(data), 5) and torch.allclose(y.sum(1), torch.ones(len(data)))
    assert torch.equal(y.argmax(1), data.labels)
