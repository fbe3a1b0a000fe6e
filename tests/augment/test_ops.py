"""Augmentation ops: pure batch functions op(x, gen, **params) -> x on (B, C, H, W) in [0, 1]."""

import pytest
import torch

from cnnlab.augment.ops import OPS
from cnnlab.augment.registry import is_mixing

# Pixel ops: op(x, gen) -> x. Mixing ops (which also take targets) are tested in test_mix.py.
ALL_OPS = [name for name in OPS.names() if not is_mixing(OPS.get(name))]


def batch(b=6, c=3, h=16, w=17, seed=0) -> torch.Tensor:
    # At least 256 pixels: PIL-style equalize leaves smaller images unchanged.
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
def test_randomness_is_per_sample(name):
    # A batch of identical images must not come out identical: each sample draws its own choice.
    x = batch(b=1).expand(64, -1, -1, -1).contiguous()
    out = OPS.get(name)(x, gen(), p=0.5)
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 1


# --- flip ------------------------------------------------------------------------------------
