"""convert: gray<->RGB and square resize, applied once to a whole set."""

import pytest
import torch

from cnnlab.data.imageset import ImageSet
from cnnlab.data.transform import convert


def image_set(images: torch.Tensor) -> ImageSet:
    n = len(images)
    return ImageSet(images, torch.arange(n, dtype=torch.int64) % 2, ("a", "b"))


def random_images(shape, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def test_none_keeps_the_set_unchanged():
    data = image_set(random_images((3, 3, 6, 5)))
    out = convert(data, None, None)
    assert torch.equal(out.images, data.images)
    assert torch.equal(out.labels, data.labels) and out.classes == data.classes


def test_gray_to_rgb_replicates_the_channel():
    data = image_set(random_images((4, 1, 6, 6)))
    out = convert(data, 3, None)
    assert out.images.shape == (4, 3, 6, 6) and out.images.dtype == torch.uint8
    for c in range(3):
        assert torch.equal(out.images[:, c], data.images[:, 0])
    assert torch.equal(out.labels, data.labels)


def test_rgb_to_gray_uses_itu_601_luma():
    data = image_set(random_images((4, 3, 5, 7)))
    out = convert(data, 1, None)
    assert out.images.shape == (4, 1, 5, 7) and out.images.dtype == torch.uint8
    r, g, b = data.images.double().unbind(1)
    expected = (0.299 * r + 0.587 * g + 0.114 * b).round()
    # Off by at most one grey level (float32 rounding at .5), never a plain channel mean.
    assert (out.images[:, 0].double() - expected).abs().max() <= 1


def test_rgb_to_gray_weighs_green_most():
    # Pure red, green and blue pixels: luma 76, 150, 29; a plain mean would give 85 for all.
    images = torch.zeros(3, 3, 1, 1, dtype=torch.uint8)
    for c in range(3):
        images[c, c] = 255
    out = convert(image_set(images), 1, None)
    assert out.images.flatten().tolist() == [76, 150, 29]


def test_rgb_to_gray_matches_torchvision():
    from torchvision.transforms.v2 import functional as TF

    data = image_set(random_images((2, 3, 4, 4), seed=1))
    out = convert(data, 1, None)
    ref = TF.rgb_to_grayscale(data.images, num_output_channels=1)
    assert (out.images.int() - ref.int()).abs().max() <= 1


@pytest.mark.parametrize("size", [4, 8, 13, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_resize_gives_the_square_size_and_keeps_dtype(size, channels):
    data = image_set(random_images((3, channels, 8, 10)))
    out = convert(data, None, size)
    assert out.images.shape == (3, channels, size, size)
    assert out.images.dtype == torch.uint8
    assert torch.equal(out.labels, data.labels)


@pytest.mark.parametrize("size", [3, 8, 16, 32])
def test_resize_keeps_a_constant_image_constant(size):
    images = torch.full((2, 3, 8, 8), 137, dtype=torch.uint8)
    images[1] = 0  # and a black one stays black
    out = convert(image_set(images), None, size).images
    assert out.shape == (2, 3, size, size)
    assert (out[0] == 137).all() and (out[1] == 0).all()


def test_resize_keeps_content_roughly_in_place():
    # A bright left half stays a bright left half after upscaling.
    images = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    images[..., :4] = 200
    out = convert(image_set(images), None, 16).images[0, 0].float()
    assert out[:, :7].mean() > 190 and out[:, 9:].mean() < 10


def test_channels_and_size_combine():
    data = image_set(random_images((2, 1, 8, 8)))
    out = convert(data, 3, 16)
    assert out.images.shape == (2, 3, 16, 16)
    assert torch.equal(out.images[:, 0], out.images[:, 2])
