"""Geometric ops against hand-made expectations and torchvision.transforms.v2."""

import pytest
import torch

from cnnlab.augment import geometry
from cnnlab.augment.geometry import _affine_batch, affine, crop, flip, rotate, translate


def batch(b=6, c=3, h=7, w=9, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g)


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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


@pytest.mark.parametrize("padding", [-1, 1.5, "4", True])
def test_crop_bad_padding_raises_value_error(padding):
    with pytest.raises(ValueError, match="padding"):
        crop(batch(), gen(), padding=padding)


# --- translate, rotate, affine: one batched affine resampling --------------------------------
# torchvision resamples with the same bilinear grid_sample, but builds its sampling grid in
# pixel units where we build ours in affine_grid's normalised units, so float32 rounding of
# the sample positions differs by ~1e-7 of the image size. Measured: max |diff| <= 4e-6 on
# 32x32 images, borders included. MAX_DIFF allows that with headroom; a wrong sign, centre or
# half-pixel offset moves values by ~0.1 or more.
MAX_DIFF = 1e-5


def close_to(out: torch.Tensor, ref: torch.Tensor) -> bool:
    diff = (out - ref).abs()
    return diff.mean() < 1 / 255 and diff.max() < MAX_DIFF


def spread(x, gen, low, high):
    """Stands in for registry.uniform: (B,) evenly spread over [low, high], so each sample of
    a batch gets a known, different value (both signs, both ends of the range)."""
    return torch.linspace(low, high, x.shape[0], device=x.device)


@pytest.fixture
def known_draws(monkeypatch):
    monkeypatch.setattr(geometry, "uniform", spread)


def test_affine_batch_matches_torchvision_affine_per_sample():
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    x = batch(b=8, h=12, w=15)
    angle = torch.tensor([0.0, 10.0, -33.3, 90.0, 180.0, 45.0, -120.0, 270.0])
    tx = torch.tensor([0.0, 1.0, -2.0, 3.0, 0.0, 1.5, -0.7, 2.0])
    ty = torch.tensor([0.0, -1.0, 2.0, 0.0, 3.0, -2.5, 1.0, 1.0])
    scale = torch.tensor([1.0, 0.8, 1.2, 1.0, 0.9, 1.5, 0.7, 1.1])
    shear = torch.tensor([0.0, 10.0, -20.0, 0.0, 30.0, -5.0, 45.0, 15.0])
    out = _affine_batch(x, angle, tx, ty, scale, shear)
    for i, (o, xi) in enumerate(zip(out, x, strict=True)):
        ref = TF.affine(
            xi,
            angle=angle[i].item(),
            translate=[tx[i].item(), ty[i].item()],
            scale=scale[i].item(),
            shear=[shear[i].item(), 0.0],
            interpolation=InterpolationMode.BILINEAR,
        )
        assert close_to(o, ref), f"sample {i}"


def shifted(img: torch.Tensor, pixels: int):
    """Every (dx, dy, torchvision's whole-pixel translation of img) with |dx|, |dy| <= pixels."""
    from torchvision.transforms.v2 import functional as TF

    for dx in range(-pixels, pixels + 1):
        for dy in range(-pixels, pixels + 1):
            yield dx, dy, TF.affine(img, angle=0.0, translate=[dx, dy], scale=1.0, shear=[0.0, 0.0])


def test_translate_is_exactly_a_torchvision_translation_and_reaches_every_shift():
    x = batch(b=200, h=6, w=5) * 0.9 + 0.05  # no zeros inside: each shift gives a distinct image
    out = translate(x, gen(), pixels=1, p=1.0)
    shifts = []
    for o, xi in zip(out, x, strict=True):
        found = [(dx, dy) for dx, dy, ref in shifted(xi, 1) if torch.equal(o, ref)]
        assert len(found) == 1, "output is not a whole-pixel translation of the input"
        shifts.append(found[0])
    # dx, dy uniform in [-1, 1]: all 9 shifts appear among 200 samples.
    assert set(shifts) == {(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)}


def test_translate_moves_content_right_and_down_for_positive_shifts():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    zero = torch.zeros(1)
    out = _affine_batch(x, zero, zero + 2, zero - 1, zero + 1, zero, mode="nearest")
    assert out[0, 0, 1, 4] == 1.0 and out.sum() == 1.0


def test_translate_pixels_0_is_identity():
    x = batch()
    assert torch.equal(translate(x, gen(), pixels=0), x)


@pytest.mark.parametrize("h,w", [(12, 15), (16, 16)])
def test_rotate_matches_torchvision_rotate(known_draws, h, w):
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    x = batch(b=7, h=h, w=w)
    out = rotate(x, gen(), degrees=90.0, p=1.0)
    for o, xi, a in zip(out, x, torch.linspace(-90, 90, 7).tolist(), strict=True):
        ref = TF.rotate(xi, a, interpolation=InterpolationMode.BILINEAR)
        assert close_to(o, ref), f"angle {a}"


def test_rotate_positive_angles_turn_counter_clockwise(known_draws):
    x = batch(b=2, h=8, w=8)  # `spread` gives the two samples -90 and +90 degrees
    out = rotate(x, gen(), degrees=90.0, p=1.0)
    assert (out[0] - torch.rot90(x[0], -1, dims=(-2, -1))).abs().max() < MAX_DIFF
    assert (out[1] - torch.rot90(x[1], 1, dims=(-2, -1))).abs().max() < MAX_DIFF


def test_rotate_degrees_0_is_identity():
    x = batch()
    assert torch.equal(rotate(x, gen(), degrees=0.0), x)


def test_affine_matches_torchvision_random_affine_with_the_same_draws(known_draws):
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    b, h, w = 9, 12, 15
    x = batch(b=b, h=h, w=w)
    out = affine(x, gen(), degrees=30.0, translate=0.2, scale=[0.8, 1.25], shear=20.0, p=1.0)
    # RandomAffine's draws, spread as `spread` spreads them; it rounds shifts to whole pixels.
    angle = torch.linspace(-30, 30, b)
    tx = torch.linspace(-0.2 * w, 0.2 * w, b).round()
    ty = torch.linspace(-0.2 * h, 0.2 * h, b).round()
    scale, shear = torch.linspace(0.8, 1.25, b), torch.linspace(-20, 20, b)
    for i, (o, xi) in enumerate(zip(out, x, strict=True)):
        ref = TF.affine(
            xi,
            angle=angle[i].item(),
            translate=[int(tx[i]), int(ty[i])],
            scale=scale[i].item(),
            shear=[shear[i].item(), 0.0],
            interpolation=InterpolationMode.BILINEAR,
        )
        assert close_to(o, ref), f"sample {i}"


def test_affine_with_every_range_at_zero_is_the_identity():
    x = batch()
    assert torch.equal(affine(x, gen(), degrees=0.0, translate=0.0, scale=(1.0, 1.0)), x)


def test_affine_accepts_scale_as_a_list_or_a_tuple():
    x = batch()
    a = affine(x, gen(4), degrees=10.0, scale=[0.9, 1.1])
    assert torch.equal(a, affine(x, gen(4), degrees=10.0, scale=(0.9, 1.1)))
    assert not torch.equal(a, x)


def test_affine_translate_stays_within_the_fraction_of_the_size():
    # One bright pixel in the centre of a 21x21 image, translate=0.1: it lands at most
    # round(0.1 * 21) = 2 pixels away in each direction.
    x = torch.zeros(300, 1, 21, 21)
    x[:, :, 10, 10] = 1.0
    out = affine(x, gen(), translate=0.1)
    flat = out[:, 0].flatten(1).argmax(1)  # (B,) where the bright pixel went, row * 21 + col
    assert set((flat // 21).tolist()) == set(range(8, 13))  # every shift in [-2, 2] is drawn
    assert set((flat % 21).tolist()) == set(range(8, 13))


# Each op with the parameters that make it do something (defaults may be the identity).
ACTIVE = {
    "translate": (translate, {"pixels": 2}),
    "rotate": (rotate, {"degrees": 20.0}),
    "affine": (affine, {"degrees": 20.0, "translate": 0.1, "scale": (0.9, 1.1), "shear": 10.0}),
}


@pytest.mark.parametrize("name", ACTIVE)
def test_unchosen_samples_are_bit_identical_and_chosen_ones_move(name):
    op, params = ACTIVE[name]
    x = batch(b=64)
    out = op(x, gen(), p=0.5, **params)
    same = sum(torch.equal(o, xi) for o, xi in zip(out, x, strict=True))
    assert 16 < same < 48  # about half untouched, bit for bit; the rest changed
    assert torch.equal(op(x, gen(), p=0.0, **params), x)


@pytest.mark.parametrize("name", ACTIVE)
def test_one_channel_batch_moves_like_each_channel_of_a_colour_batch(name):
    # Same seed, same draws: the 1-channel result is channel 0 of the 3-channel result.
    op, params = ACTIVE[name]
    x = batch(b=8, c=3)
    grey = op(x[:, :1], gen(2), **params)
    assert grey.shape == (8, 1, 7, 9)
    assert torch.allclose(grey, op(x, gen(2), **params)[:, :1], atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ACTIVE)
def test_runs_on_cuda_with_a_cuda_generator(name):
    op, params = ACTIVE[name]
    x = batch(b=16).cuda()
    out = op(x, torch.Generator(device="cuda").manual_seed(0), p=0.5, **params)
    assert out.device == x.device and out.shape == x.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert torch.equal(out, op(x, torch.Generator(device="cuda").manual_seed(0), p=0.5, **params))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_affine_batch_on_cuda_matches_cpu():
    x = batch(b=4)
    params = [
        torch.tensor(v)
        for v in (
            [0.0, 30.0, -60.0, 90.0],
            [0.0, 1.0, -2.0, 0.5],
            [1.0, 0.0, 2.0, -1.5],
            [1.0, 0.9, 1.2, 1.0],
            [0.0, 10.0, 0.0, -25.0],
        )
    ]
    cpu = _affine_batch(x, *params)
    gpu = _affine_batch(x.cuda(), *(v.cuda() for v in params)).cpu()
    assert (cpu - gpu).abs().max() < MAX_DIFF


BAD_VALUES = [
    (translate, "pixels", -1),
    (translate, "pixels", 1.5),
    (translate, "pixels", "4"),
    (translate, "pixels", True),
    (rotate, "degrees", -1.0),
    (rotate, "degrees", "15"),
    (rotate, "degrees", float("nan")),
    (affine, "degrees", -5.0),
    (affine, "translate", -0.1),
    (affine, "translate", 1.5),
    (affine, "scale", (0.0, 1.0)),
    (affine, "scale", (-1.0, 1.0)),
    (affine, "scale", (1.2, 0.8)),
    (affine, "scale", [1.0]),
    (affine, "scale", (1.0, 1.1, 1.2)),
    (affine, "scale", 1.0),
    (affine, "scale", ("0.9", "1.1")),
    (affine, "shear", -10.0),
    (affine, "shear", 90.0),
]


@pytest.mark.parametrize("op,name,value", BAD_VALUES)
def test_bad_value_raises_value_error_naming_it(op, name, value):
    with pytest.raises(ValueError, match=f"^{name} = .*: expected"):
        op(batch(), gen(), **{name: value})
