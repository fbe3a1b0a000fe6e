"""Filter ops: blur against torchvision.transforms.v2.functional, occlusion geometry by hand."""

import re

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from cnnlab.augment.filters import _blur, _erasing_boxes, blur, cutout, erasing, noise

TOL = 1 / 255  # one uint8 level


def batch(b=8, c=3, h=12, w=10, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g)


def positive_batch(**kwargs) -> torch.Tensor:
    """Values in [0.05, 0.95]: a 0, 1 or `value` in the output came from the op."""
    return batch(**kwargs) * 0.9 + 0.05


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def boxes(mask: torch.Tensor) -> list[tuple[int, int, int, int] | None]:
    """(B, H, W) bool -> per sample the (top, left, height, width) of its set pixels, after
    checking they fill that rectangle exactly; None where none is set."""
    found = []
    for m in mask:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        if len(rows) == 0:
            found.append(None)
            continue
        top, left = int(rows[0]), int(cols[0])
        height, width = int(rows[-1]) - top + 1, int(cols[-1]) - left + 1
        assert m.sum() == height * width, "the set pixels are not one filled rectangle"
        found.append((top, left, height, width))
    return found


# --- noise ------------------------------------------------------------------------------------


def test_noise_adds_gaussian_noise_of_the_given_std():
    x = torch.full((64, 3, 16, 16), 0.5)
    out = noise(x, gen(), std=0.05, p=1.0)
    delta = out - x
    assert abs(delta.mean().item()) < 0.002
    assert abs(delta.std().item() - 0.05) < 0.002


def test_noise_is_clamped_and_std_0_is_identity():
    x = batch()
    out = noise(x, gen(), std=1.0, p=1.0)
    assert out.min() == 0.0 and out.max() == 1.0  # strong noise saturates
    assert torch.equal(noise(x, gen(), std=0.0, p=1.0), x)


# --- blur -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", [1, 3, 5, 9])
def test_blur_matches_torchvision_gaussian_blur_per_sample(kernel):
    x = batch(b=8, h=11, w=13)
    sigmas = torch.linspace(0.1, 4.0, 8)
    out = _blur(x, sigmas, kernel)
    for o, xi, s in zip(out, x, sigmas, strict=True):
        assert (o - TF.gaussian_blur(xi, [kernel, kernel], [float(s)] * 2)).abs().max() <= TOL


def test_blur_op_with_a_fixed_sigma_matches_torchvision():
    x = batch()
    out = blur(x, gen(), kernel=5, sigma=(1.5, 1.5), p=1.0)
    assert (out - TF.gaussian_blur(x, [5, 5], [1.5, 1.5])).abs().max() <= TOL


def test_blur_draws_a_sigma_per_sample_within_the_range():
    x = batch(b=1).expand(16, -1, -1, -1)
    out = blur(x, gen(), kernel=5, sigma=(0.5, 2.0), p=1.0)
    assert len({tuple(o.flatten().tolist()) for o in out}) == 16
    # How far each output moved from x lies between the moves of the two ends of the range.
    lo = (TF.gaussian_blur(x[0], [5, 5], [0.5, 0.5]) - x[0]).abs().mean()
    hi = (TF.gaussian_blur(x[0], [5, 5], [2.0, 2.0]) - x[0]).abs().mean()
    dist = (out - x).abs().mean(dim=(1, 2, 3))
    assert torch.all(dist >= lo - 1e-6) and torch.all(dist <= hi + 1e-6)


def test_blur_kernel_1_is_identity():
    x = batch()
    assert torch.equal(blur(x, gen(), kernel=1, p=1.0), x)


# --- cutout -----------------------------------------------------------------------------------


def test_cutout_zeroes_a_clipped_size_by_size_square_in_every_channel():
    x = positive_batch(b=400, h=12, w=10)
    out = cutout(x, gen(), size=5, p=1.0)
    zero = out == 0  # (B, C, H, W)
    assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])
    assert torch.equal(out[~zero], x[~zero])
    # The same draws as cutout: centre row, then centre column, per sample.
    g = gen()
    cy, cx = torch.randint(0, 12, (400,), generator=g), torch.randint(0, 10, (400,), generator=g)
    for box, y, x_ in zip(boxes(zero[:, 0]), cy.tolist(), cx.tolist(), strict=True):
        top, bottom = max(0, y - 2), min(12, y + 3)  # rows [y - 2, y + 3) clipped
        left, right = max(0, x_ - 2), min(10, x_ + 3)
        assert box == (top, left, bottom - top, right - left)


def test_cutout_centres_cover_the_whole_image():
    x = positive_batch(b=2000, h=8, w=8)
    out = cutout(x, gen(), size=1, p=1.0)
    hits = (out[:, 0] == 0).sum(0)  # (H, W) how often each pixel was the centre
    assert torch.all(hits > 0)
    assert (out == 0).flatten(1).sum(1).eq(3).all()  # exactly one pixel, 3 channels


def test_cutout_size_0_is_identity_and_a_huge_square_clears_everything():
    x = batch()
    assert torch.equal(cutout(x, gen(), size=0, p=1.0), x)
    assert torch.all(cutout(x, gen(), size=2 * 12 + 1, p=1.0) == 0)


# --- erasing ----------------------------------------------------------------------------------


def test_erasing_fills_one_rectangle_of_the_drawn_size_with_value():
    x = positive_batch(b=300, h=20, w=16)
    out = erasing(x, gen(), value=1.0, p=1.0)
    top, left, height, width = _erasing_boxes(x, gen(), (0.02, 0.33), (0.3, 3.3))
    filled = out == 1.0
    assert torch.equal(out[~filled], x[~filled])
    for i, box in enumerate(boxes(filled[:, 0])):
        expected = (int(top[i]), int(left[i]), int(height[i]), int(width[i]))
        assert box == (expected if expected[2] * expected[3] > 0 else None)
        if box:
            assert box[0] + box[2] <= 20 and box[1] + box[3] <= 16  # inside the image


def test_erasing_square_of_a_tenth_of_the_image():
    x = positive_batch(b=50, h=32, w=32)
    out = erasing(x, gen(), scale=(0.1, 0.1), ratio=(1.0, 1.0), p=1.0)
    # side = round(sqrt(0.1 * 32 * 32)) = 10; every sample somewhere else.
    found = boxes((out == 0)[:, 0])
    assert {(h, w) for _, _, h, w in found} == {(10, 10)}
    assert len({(t, left) for t, left, _, _ in found}) > 10


def test_erasing_areas_and_aspects_follow_scale_and_ratio():
    x = batch(b=4000, h=64, w=64)
    _, _, h, w = _erasing_boxes(x, gen(), (0.02, 0.33), (0.3, 3.3))
    area = (h * w).float() / (64 * 64)
    # Rounding moves areas a little; clamping to the image only ever shrinks them.
    assert area.min() > 0.015 and area.max() < 0.34
    assert 0.15 < area.mean() < 0.19  # about the mean of U(0.02, 0.33), a little less
    aspect = h.float() / w.float()
    assert aspect.min() > 0.25 and aspect.max() < 3.9
    assert ((aspect > 1).float().mean() - 0.5).abs() < 0.05  # log-uniform: symmetric about 1


def test_erasing_clamps_rectangles_taller_than_the_image():
    x = positive_batch(b=20, h=10, w=10)
    out = erasing(x, gen(), scale=(0.5, 0.5), ratio=(4.0, 4.0), p=1.0)
    # sqrt(50 * 4) = 14 rows -> clamped to 10; sqrt(50 / 4) = 4 columns.
    assert {(t, h, w) for t, _, h, w in boxes((out == 0)[:, 0])} == {(0, 10, 4)}


# --- parameters and p -----------------------------------------------------------------------

BAD_VALUES = [
    (noise, "std", -0.1),
    (blur, "kernel", 4),
    (blur, "kernel", 0),
    (blur, "kernel", -3),
    (blur, "kernel", 3.0),
    (blur, "kernel", 25),  # reflect padding needs kernel // 2 < the 12-pixel side
    (blur, "sigma", (0.0, 1.0)),
    (blur, "sigma", (2.0, 1.0)),
    (blur, "sigma", (1.0,)),
    (blur, "sigma", 1.0),
    (cutout, "size", -1),
    (cutout, "size", 2.5),
    (erasing, "scale", (0.1, 1.5)),
    (erasing, "scale", (-0.1, 0.2)),
    (erasing, "scale", (0.3, 0.2)),
    (erasing, "ratio", (0.0, 1.0)),
    (erasing, "ratio", [3.0, 1.0]),
    (erasing, "value", 2.0),
]


@pytest.mark.parametrize(("op", "key", "value"), BAD_VALUES)
def test_bad_values_raise_a_value_error_naming_the_parameter(op, key, value):
    with pytest.raises(ValueError, match=f"^{key} = {re.escape(repr(value))}: expected"):
        op(batch(), gen(), **{key: value})


def test_range_parameters_accept_yaml_lists():
    x = batch()
    assert torch.equal(
        blur(x, gen(), sigma=[1.0, 1.0], p=1.0), blur(x, gen(), sigma=(1.0, 1.0), p=1.0)
    )
    assert torch.equal(
        erasing(x, gen(), scale=[0.1, 0.2], ratio=[1, 2]),
        erasing(x, gen(), scale=(0.1, 0.2), ratio=(1.0, 2.0)),
    )


OPS = [(noise, {}), (blur, {}), (cutout, {"size": 4}), (erasing, {})]


@pytest.mark.parametrize(("op", "params"), OPS)
def test_p_half_leaves_about_half_the_samples_bit_identical(op, params):
    x = positive_batch(b=200)
    out = op(x, gen(), **params, p=0.5)
    same = sum(torch.equal(o, xi) for o, xi in zip(out, x, strict=True))
    assert 60 < same < 140


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("op", "params"), OPS, ids=lambda v: str(v))
def test_ops_run_on_cuda_with_a_cuda_generator(op, params):
    x = positive_batch(b=32, h=16, w=17).cuda()
    out = op(x, torch.Generator("cuda").manual_seed(0), **params, p=1.0)
    assert out.device.type == "cuda" and out.shape == x.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert not torch.equal(out, x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_blur_on_cuda_matches_torchvision():
    x = batch().cuda()
    out = blur(x, torch.Generator("cuda").manual_seed(0), kernel=5, sigma=(1.5, 1.5), p=1.0)
    assert (out - TF.gaussian_blur(x, [5, 5], [1.5, 1.5])).abs().max() <= TOL
