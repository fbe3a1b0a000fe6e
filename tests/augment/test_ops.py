"""Augmentation ops: pure batch functions op(x, gen, **params) -> x on (B, C, H, W) in [0, 1]."""

import pytest
import torch

from cnnlab.augment.ops import OPS, crop, flip

ALL_OPS = OPS.names()


def batch(b=6, c=3, h=7, w=9, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g)


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_has_the_documented_ops():
    assert {"flip", "crop"} <= set(ALL_OPS)


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_keeps_shape_and_float_dtype(name):
    x = batch()
    out = OPS.get(name)(x, gen())
    assert out.shape == x.shape
    assert out.dtype == x.dtype == torch.float32


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_keeps_values_in_0_1(name):
    x = batch()
    x[0] = 0.0
    x[1] = 1.0
    out = OPS.get(name)(x, gen(), p=1.0)
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_is_a_pure_function_of_the_seed(name):
    op = OPS.get(name)
    x = batch(b=32)
    before = x.clone()
    a = op(x, gen(5))
    b = op(x, gen(5))
    assert torch.equal(a, b)
    assert torch.equal(x, before)  # the input is not modified in place


@pytest.mark.parametrize("name", ALL_OPS)
def test_different_seeds_give_different_outputs(name):
    op = OPS.get(name)
    x = batch(b=32)
    assert not torch.equal(op(x, gen(1), p=0.5), op(x, gen(2), p=0.5))


@pytest.mark.parametrize("name", ALL_OPS)
def test_p_0_is_identity(name):
    x = batch(b=16)
    assert torch.equal(OPS.get(name)(x, gen(), p=0.0), x)


@pytest.mark.parametrize("name", ALL_OPS)
@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_p_outside_0_1_raises_value_error(name, p):
    with pytest.raises(ValueError, match="p = "):
        OPS.get(name)(batch(), gen(), p=p)


@pytest.mark.parametrize("name", ALL_OPS)
def test_randomness_is_per_sample(name):
    # A batch of identical images must not come out identical: each sample draws its own choice.
    x = batch(b=1).expand(64, -1, -1, -1).contiguous()
    out = OPS.get(name)(x, gen(), p=0.5)
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 1


# --- flip ------------------------------------------------------------------------------------


def test_flip_p1_mirrors_left_right():
    x = batch()
    assert torch.equal(flip(x, gen(), p=1.0), x.flip(-1))


def test_flip_vertical_p1_mirrors_top_bottom():
    x = batch()
    assert torch.equal(flip(x, gen(), p=1.0, vertical=True), x.flip(-2))


def test_flip_half_leaves_each_sample_either_unchanged_or_mirrored():
    x = batch(b=200)
    out = flip(x, gen(), p=0.5)
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x, strict=True)]
    same = [torch.equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert 60 < sum(flipped) < 140  # about half


# --- crop ------------------------------------------------------------------------------------


def test_crop_padding_0_is_identity():
    x = batch()
    assert torch.equal(crop(x, gen(), padding=0), x)


def windows(padded: torch.Tensor, h: int, w: int):
    """Every (dy, dx, window) of size h x w in one padded image."""
    for dy in range(padded.shape[-2] - h + 1):
        for dx in range(padded.shape[-1] - w + 1):
            yield dy, dx, padded[..., dy : dy + h, dx : dx + w]


@pytest.mark.parametrize("padding", [1, 3])
def test_crop_p1_is_a_window_of_the_zero_padded_image(padding):
    x = batch(b=12, h=6, w=5) * 0.9 + 0.05  # strictly inside (0, 1): zeros come from padding
    out = crop(x, gen(), padding=padding, p=1.0)
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    offsets = set()
    for o, pimg in zip(out, padded, strict=True):
        found = [(dy, dx) for dy, dx, win in windows(pimg, 6, 5) if torch.equal(win, o)]
        assert len(found) == 1, "output is not a window of the padded input"
        offsets.add(found[0])
    # Random offsets: 12 samples do not all land on the same window.
    assert len(offsets) > 1
    assert all(0 <= dy <= 2 * padding and 0 <= dx <= 2 * padding for dy, dx in offsets)


def test_crop_matches_torchvision_crop_of_the_padded_image():
    from torchvision.transforms.v2 import functional as TF

    padding = 2
    x = batch(b=8, h=6, w=6) * 0.9 + 0.05
    out = crop(x, gen(3), padding=padding, p=1.0)
    padded = TF.pad(x, [padding] * 4, fill=0.0)
    for o, pimg in zip(out, padded, strict=True):
        (dy, dx) = next((dy, dx) for dy, dx, win in windows(pimg, 6, 6) if torch.equal(win, o))
        assert torch.equal(o, TF.crop(pimg, dy, dx, 6, 6))


def test_crop_reaches_every_offset():
    # Offsets are uniform over [0, 2*padding]^2: with enough samples all 9 appear for padding 1.
    x = batch(b=200, h=4, w=4) * 0.9 + 0.05
    out = crop(x, gen(), padding=1, p=1.0)
    padded = torch.nn.functional.pad(x, (1,) * 4)
    offsets = {
        next((dy, dx) for dy, dx, win in windows(pi, 4, 4) if torch.equal(win, o))
        for o, pi in zip(out, padded, strict=True)
    }
    assert offsets == {(dy, dx) for dy in range(3) for dx in range(3)}


@pytest.mark.parametrize(
    "mode,pad_mode", [("zero", "constant"), ("reflect", "reflect"), ("edge", "replicate")]
)
def test_crop_modes_pad_as_named(mode, pad_mode):
    x = batch(b=10, h=6, w=6)
    out = crop(x, gen(), padding=2, mode=mode, p=1.0)
    padded = torch.nn.functional.pad(x, (2,) * 4, mode=pad_mode)
    for o, pimg in zip(out, padded, strict=True):
        assert any(torch.equal(win, o) for _, _, win in windows(pimg, 6, 6))


def test_crop_unchosen_samples_are_unchanged():
    x = batch(b=64)
    out = crop(x, gen(), padding=2, p=0.5)
    same = sum(torch.equal(o, xi) for o, xi in zip(out, x, strict=True))
    assert 0 < same < 64


@pytest.mark.parametrize("mode", ["wrap", "Zero", ""])
def test_crop_bad_mode_raises_value_error_naming_the_modes(mode):
    with pytest.raises(ValueError, match="zero, reflect, edge"):
        crop(batch(), gen(), mode=mode)


@pytest.mark.parametrize("padding", [-1, 1.5, "4"])
def test_crop_bad_padding_raises_value_error(padding):
    with pytest.raises(ValueError, match="padding"):
        crop(batch(), gen(), padding=padding)
