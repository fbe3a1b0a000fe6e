"""mixup and cutmix: images and targets blended in the same proportion, per sample."""

import pytest
import torch
import torch.nn.functional as F

from cnnlab.augment.mix import beta, cutmix, mixup
from cnnlab.augment.ops import OPS
from cnnlab.augment.registry import is_mixing


def batch(b=8, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, 6, 6, generator=g)
    y = F.one_hot(torch.arange(b) % k, k).float()
    return x, y


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_both_are_registered_as_mixing_ops():
    assert is_mixing(OPS.get("mixup")) and is_mixing(OPS.get("cutmix"))
    assert not is_mixing(OPS.get("flip"))


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_beta_draws_have_the_right_mean_and_variance(alpha):
    draws = beta(alpha, 100_000, gen(), torch.device("cpu"))
    assert ((draws >= 0) & (draws <= 1)).all()
    assert draws.mean().item() == pytest.approx(0.5, abs=0.01)
    assert draws.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.05)


@pytest.mark.parametrize("op", [mixup, cutmix])
def test_targets_stay_distributions_and_p0_is_identity(op):
    x, y = batch()
    out, mixed = op(x, y, gen())
    assert out.shape == x.shape and mixed.shape == y.shape
    assert torch.allclose(mixed.sum(1), torch.ones(len(y)))
    assert (mixed >= 0).all() and (out >= 0).all() and (out <= 1).all()
    same_x, same_y = op(x, y, gen(), p=0.0)
    assert torch.equal(same_x, x) and torch.equal(same_y, y)


@pytest.mark.parametrize("op", [mixup, cutmix])
def test_same_seed_same_mix(op):
    x, y = batch()
    a, b = op(x, y, gen(3)), op(x, y, gen(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_mixup_pixels_mix_by_the_target_weights():
    x, y = batch(b=16, k=16)  # every sample its own class: the weights can be read back
    out, mixed = mixup(x, y, gen(), alpha=1.0)
    for i in range(16):
        own = mixed[i, i].item()
        partner = int(torch.argmax(mixed[i] * (torch.arange(16) != i)))
        if own < 1.0:
            expected = own * x[i] + (1 - own) * x[partner]
            assert torch.allclose(out[i], expected, atol=1e-6)


def test_cutmix_pastes_a_box_whose_area_is_the_partner_share():
    x = torch.zeros(16, 1, 8, 8)
    x[8:] = 1.0  # samples 8.. are white, 0..7 black
    y = F.one_hot(torch.arange(16), 16).float()
    out, mixed = cutmix(x, y, gen(1), alpha=1.0)
    for i in range(16):
        changed = (out[i] != x[i]).float().mean().item()  # pasted area from a different colour
        partner_share = 1 - mixed[i, i].item()
        assert changed <= partner_share + 1e-6
        if changed > 0:
            assert partner_share == pytest.approx(changed)
            rows, cols = torch.nonzero(out[i, 0] != x[i, 0], as_tuple=True)
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert box.item() == len(rows)  # one axis-aligned rectangle


@pytest.mark.parametrize("op", [mixup, cutmix])
def test_alpha_must_be_positive(op):
    x, y = batch()
    with pytest.raises(ValueError, match="alpha"):
        op(x, y, gen(), alpha=0.0)
