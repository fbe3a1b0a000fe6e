"""channel_stats: per-channel mean and std on the [0, 1] scale."""

import pytest
import torch

from cnnlab.data.stats import channel_stats


@pytest.mark.parametrize("channels", [1, 3])
def test_matches_torch_mean_and_std_computed_directly(channels):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, channels, 6, 7), generator=g, dtype=torch.uint8)
    mean, std = channel_stats(images)
    x = images.double() / 255.0
    # Population std (divide by N), as used to normalise a dataset.
    want_mean = x.mean(dim=(0, 2, 3))
    want_std = x.std(dim=(0, 2, 3), correction=0)
    assert len(mean) == len(std) == channels
    assert all(isinstance(v, float) for v in (*mean, *std))
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), want_mean, rtol=0, atol=1e-6)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), want_std, rtol=0, atol=1e-6)


def test_chunking_does_not_change_the_result():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (37, 3, 4, 4), generator=g, dtype=torch.uint8)
    whole = channel_stats(images)
    chunked = channel_stats(images, chunk=5)
    for a, b in zip(whole, chunked, strict=True):
        assert a == pytest.approx(b, abs=1e-12)


def test_channels_are_measured_separately():
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    images[:, 1] = 255
    images[:2, 2] = 255
    mean, std = channel_stats(images)
    assert mean == pytest.approx((0.0, 1.0, 0.5))
    assert std[2] == pytest.approx(0.5)


def test_constant_channel_gets_a_positive_std_so_normalising_never_divides_by_zero():
    images = torch.full((3, 2, 4, 4), 51, dtype=torch.uint8)
    mean, std = channel_stats(images)
    assert mean == pytest.approx((0.2, 0.2))
    assert all(s > 0 for s in std)
