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


# Several processes (data-parallel training): each rank's loader hands out its share.


def ranks(world: int, **kw) -> list[DeviceLoader]:
    return [loader(rank=r, world=world, **kw) for r in range(world)]


def global_batches(shards: list[DeviceLoader]) -> list[list[int]]:
    """Step by step, the images of all ranks together, rank 0's slice first."""
    return [sum(step, []) for step in zip(*(epoch_ids(s) for s in shards), strict=True)]


def test_ranks_slice_the_global_batches_of_one_process():
    # With no augmentation one process draws only the order, from the same seed: the ranks'
    # slices put together are its batches, epoch after epoch.
    one = loader(shuffle=True, batch_size=6, seed=4)
    two = ranks(2, shuffle=True, batch_size=6, seed=4)
    assert all(len(s) == len(one) == N // 6 for s in two)  # global batches on every rank
    for _ in range(2):
        per_rank = [epoch_ids(s) for s in two]
        assert all(len(b) == 3 for batches in per_rank for b in batches)
        together = [a + b for a, b in zip(*per_rank, strict=True)]
        assert together == epoch_ids(one)
        seen = [i for b in together for i in b]
        assert len(set(seen)) == len(seen)  # one pass: no image twice in an epoch


def test_evaluation_shares_cover_every_image_once_without_padding():
    shards = ranks(3, batch_size=4)
    shares = [[i for b in epoch_ids(s) for i in b] for s in shards]
    assert sorted(sum(shares, [])) == list(range(N))
    assert [len(s) for s in shares] == [8, 8, 7]  # 23 images: uneven shares, nothing repeated
    assert [len(s) for s in shards] == [2, 2, 2]  # this rank's batches of 4


def test_a_global_batch_must_split_evenly():
    with pytest.raises(ValueError, match="does not split into 4"):
        loader(shuffle=True, batch_size=6, rank=0, world=4)


def test_each_rank_draws_its_own_augmentations():
    def noise(x, y, gen):
        return x + torch.rand(x.shape[0], 1, 1, 1, generator=gen, device=x.device), y

    data = ImageSet(torch.zeros(N, 1, 3, 3, dtype=torch.uint8), torch.zeros(N).long(), ("a",))
    shards = ranks(2, data=data, shuffle=True, batch_size=6, transform=noise)
    a, b = (next(iter(s))[0] for s in shards)
    assert not torch.equal(a, b)


def mid_epoch_state(shards: list[DeviceLoader], batches: int) -> dict:
    """Rank 0's state after `batches` steps, with every rank's generator as the trainer adds."""
    iters = [iter(s) for s in shards]
    for _ in range(batches):
        for it in iters:
            next(it)
    state = shards[0].state_dict()
    return state | {"generators": [s.generator.get_state() for s in shards]}


def rest_of_epoch(shards: list[DeviceLoader]) -> list[list[int]]:
    return [sorted(b) for b in global_batches(shards)]


@pytest.mark.parametrize(("saved_by", "resumed_on"), [(2, 1), (1, 2), (2, 3)])
def test_a_state_saved_by_n_processes_resumes_on_m(saved_by, resumed_on):
    kw = {"shuffle": True, "batch_size": 6, "seed": 8}
    unbroken = [sorted(b) for b in epoch_ids(loader(**kw))]
    saving = ranks(saved_by, **kw)
    state = mid_epoch_state(saving, 1)
    resumed = ranks(resumed_on, seed=0, **{k: v for k, v in kw.items() if k != "seed"})
    for shard in resumed:
        shard.load_state_dict(state)
    assert rest_of_epoch(resumed) == unbroken[1:]  # the same global batches, each image once
    # The next epoch's order is one for all ranks; on the CPU even one process's goes on.
    assert [len(b) for b in global_batches(resumed)] == [6] * (N // 6)


def test_each_rank_resumes_its_own_augmentation_generator():
    shards = ranks(2, shuffle=True, batch_size=6)
    state = mid_epoch_state(shards, 1)
    for rank, shard in enumerate(ranks(2, shuffle=True, batch_size=6, seed=5)):
        shard.load_state_dict(state)
        assert torch.equal(shard.generator.get_state(), shards[rank].generator.get_state())
