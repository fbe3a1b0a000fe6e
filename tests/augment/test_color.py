"""Colour ops against torchvision.transforms.v2.functional, image by image, for the same factors."""

import re

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from cnnlab.augment.color import (
    _adjust_brightness,
    _adjust_contrast,
    _adjust_hue,
    _adjust_saturation,
    _jitter_factors,
    color_jitter,
    equalize,
    grayscale,
    invert,
    posterize,
    sharpness,
    solarize,
)

TOL = 1 / 255  # one uint8 level


def batch(b=8, c=3, h=12, w=10, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g)


def uint8_batch(b=8, c=3, h=20, w=18, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=g)


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def max_diff_per_sample(out, x, reference, factors) -> float:
    """Largest |out[i] - reference(x[i], factors[i])| over the batch."""
    return max(
        (o - reference(xi, float(f))).abs().max().item()
        for o, xi, f in zip(out, x, factors, strict=True)
    )


# --- the four jitter adjustments, one factor per sample ----------------------------------------

ADJUSTMENTS = [
    (_adjust_brightness, TF.adjust_brightness, torch.linspace(0.0, 2.5, 8)),
    (_adjust_contrast, TF.adjust_contrast, torch.linspace(0.0, 2.5, 8)),
    (_adjust_saturation, TF.adjust_saturation, torch.linspace(0.0, 2.5, 8)),
    (_adjust_hue, TF.adjust_hue, torch.linspace(-0.5, 0.5, 8)),
]


@pytest.mark.parametrize(("mine", "reference", "factors"), ADJUSTMENTS)
def test_adjustment_matches_torchvision_per_sample(mine, reference, factors):
    x = batch()
    assert max_diff_per_sample(mine(x, factors), x, reference, factors) <= TOL


@pytest.mark.parametrize(("mine", "reference", "factors"), ADJUSTMENTS)
def test_adjustment_matches_torchvision_on_one_channel_images(mine, reference, factors):
    # Brightness and contrast change gray images; saturation and hue leave them as they are.
    x = batch(c=1)
    assert max_diff_per_sample(mine(x, factors), x, reference, factors) <= TOL


def test_hue_matches_torchvision_on_saturated_and_gray_pixels():
    # Pure and mixed primaries, ties between channels, black, white and grays.
    levels = torch.tensor([0.0, 0.25, 0.5, 1.0])
    rgb = torch.cartesian_prod(levels, levels, levels).T.reshape(1, 3, 8, 8)
    x = rgb.expand(5, -1, -1, -1)
    shifts = torch.tensor([-0.5, -0.2, 0.0, 1 / 3, 0.5])
    assert max_diff_per_sample(_adjust_hue(x, shifts), x, TF.adjust_hue, shifts) <= TOL


def test_color_jitter_equals_the_four_torchvision_adjustments_in_order():
    x = batch(b=16)
    params = dict(brightness=0.5, contrast=0.6, saturation=0.7, hue=0.3)
    out = color_jitter(x, gen(3), **params, p=1.0)
    fb, fc, fs, shift = _jitter_factors(x, gen(3), *params.values())  # the same draws
    for i in range(len(x)):
        ref = TF.adjust_brightness(x[i], float(fb[i]))
        ref = TF.adjust_contrast(ref, float(fc[i]))
        ref = TF.adjust_saturation(ref, float(fs[i]))
        ref = TF.adjust_hue(ref, float(shift[i]))
        assert (out[i] - ref).abs().max() <= TOL


def test_jitter_factors_lie_in_the_documented_ranges():
    x = batch(b=4000)
    fb, fc, fs, shift = _jitter_factors(x, gen(), 1.5, 0.4, 0.0, 0.25)
    assert 0.0 <= fb.min() < 0.05 and 2.45 < fb.max() <= 2.5  # [max(0, 1 - 1.5), 2.5]
    assert 0.6 <= fc.min() < 0.62 and 1.38 < fc.max() <= 1.4
    assert torch.all(fs == 1.0)
    assert -0.25 <= shift.min() < -0.24 and 0.24 < shift.max() <= 0.25


def test_color_jitter_with_zero_strengths_is_identity():
    x = batch()
    out = color_jitter(x, gen(), brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    assert torch.equal(out, x)


def test_color_jitter_changes_only_brightness_and_contrast_of_one_channel_images():
    x = batch(c=1)
    colour_only = color_jitter(x, gen(), brightness=0.0, contrast=0.0, saturation=0.9, hue=0.5)
    assert torch.equal(colour_only, x)
    assert not torch.equal(color_jitter(x, gen(), brightness=0.5), x)


# --- the fixed ops --------------------------------------------------------------------------


def test_grayscale_matches_rgb_to_grayscale_and_keeps_three_channels():
    x = batch()
    out = grayscale(x, gen(), p=1.0)
    assert out.shape == x.shape
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    assert (out - TF.rgb_to_grayscale(x, num_output_channels=3)).abs().max() <= TOL


def test_colour_only_ops_leave_one_channel_images_unchanged():
    x = batch(c=1)
    assert torch.equal(grayscale(x, gen(), p=1.0), x)


def test_invert_and_solarize_match_torchvision():
    x = batch()
    assert torch.equal(invert(x, gen(), p=1.0), TF.invert(x))
    for threshold in (0.0, 0.3, 0.5, 1.0):
        assert torch.equal(
            solarize(x, gen(), threshold=threshold, p=1.0), TF.solarize(x, threshold)
        )


@pytest.mark.parametrize("bits", range(1, 9))
def test_posterize_matches_torchvision_on_uint8_levels(bits):
    u = uint8_batch()
    out = posterize(u.float() / 255, gen(), bits=bits, p=1.0)
    assert (out - TF.posterize(u, bits).float() / 255).abs().max() <= 1e-6


def test_equalize_matches_torchvision_on_uint8_levels():
    u = uint8_batch(b=6)
    u[1] = u[1] // 16 + 100  # a low-contrast image: equalisation stretches it
    u[2, 0] = 37  # a constant channel: PIL and torchvision leave it unchanged
    u[3, :, :, :9] = 255  # half the pixels at the top level
    u[4] = (u[4] > 128).to(torch.uint8) * 200  # two levels only
    out = equalize(u.float() / 255, gen(), p=1.0)
    assert (out - TF.equalize(u).float() / 255).abs().max() <= 1e-6
    assert out[1].max() - out[1].min() > 0.9  # stretched to nearly the full range


def test_equalize_leaves_images_of_fewer_than_256_pixels_unchanged_like_torchvision():
    # PIL's lookup table needs >= 255 pixels below the top level; smaller images come back as is.
    u = uint8_batch(h=9, w=7)
    assert torch.equal(TF.equalize(u), u)
    assert torch.equal(equalize(u.float() / 255, gen(), p=1.0), u.float() / 255)


@pytest.mark.parametrize("factor", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_sharpness_matches_adjust_sharpness(factor):
    x = batch()
    out = sharpness(x, gen(), factor=factor, p=1.0)
    assert (out - TF.adjust_sharpness(x, factor)).abs().max() <= TOL
    # The one-pixel border is left as it is.
    assert torch.equal(out[..., 0, :], x[..., 0, :]) and torch.equal(out[..., :, -1], x[..., :, -1])


def test_sharpness_leaves_images_too_small_for_the_kernel_unchanged():
    x = batch(h=2, w=10)
    assert torch.equal(sharpness(x, gen(), factor=2.0, p=1.0), x)


# --- parameters and p -----------------------------------------------------------------------

BAD_VALUES = [
    (color_jitter, "brightness", -0.1),
    (color_jitter, "contrast", -1.0),
    (color_jitter, "saturation", -0.5),
    (color_jitter, "hue", 0.6),
    (color_jitter, "hue", -0.1),
    (solarize, "threshold", 1.5),
    (solarize, "threshold", -0.1),
    (posterize, "bits", 0),
    (posterize, "bits", 9),
    (posterize, "bits", 4.0),
    (posterize, "bits", True),
    (sharpness, "factor", -1.0),
]


@pytest.mark.parametrize(("op", "key", "value"), BAD_VALUES)
def test_bad_values_raise_a_value_error_naming_the_parameter(op, key, value):
    with pytest.raises(ValueError, match=f"^{key} = {re.escape(repr(value))}: expected"):
        op(batch(), gen(), **{key: value})


FIXED_OPS = [
    (grayscale, {}),
    (invert, {}),
    (solarize, {}),
    (posterize, {"bits": 2}),
    (equalize, {}),
    (sharpness, {}),
]


@pytest.mark.parametrize(("op", "params"), FIXED_OPS)
def test_each_sample_is_either_untouched_or_fully_transformed(op, params):
    x = batch(b=200, h=16, w=17)  # 272 pixels: enough for equalize to act
    everything = op(x, gen(), **params, p=1.0)
    out = op(x, gen(), **params, p=0.5)
    same = [torch.equal(o, xi) for o, xi in zip(out, x, strict=True)]
    changed = [torch.equal(o, e) for o, e in zip(out, everything, strict=True)]
    assert all(s or c for s, c in zip(same, changed, strict=True))
    assert 60 < sum(same) < 140  # about half untouched, bit for bit
    assert not any(torch.equal(e, xi) for e, xi in zip(everything, x, strict=True))


def test_color_jitter_p_half_leaves_about_half_the_samples_bit_identical():
    x = batch(b=200)
    out = color_jitter(x, gen(), hue=0.2, p=0.5)
    same = sum(torch.equal(o, xi) for o, xi in zip(out, x, strict=True))
    assert 60 < same < 140


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    ("op", "params"), [*FIXED_OPS, (color_jitter, {"hue": 0.2})], ids=lambda v: str(v)
)
def test_ops_run_on_cuda_with_a_cuda_generator_and_agree_with_cpu(op, params):
    x = batch(b=32, h=16, w=17)
    out = op(x.cuda(), torch.Generator("cuda").manual_seed(0), **params, p=1.0)
    assert out.device.type == "cuda" and out.shape == x.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    if op is not color_jitter:  # the fixed ops draw nothing that changes the result at p=1
        assert (out.cpu() - op(x, gen(), **params, p=1.0)).abs().max() <= 1e-5
