"""Mixing ops: mixup and cutmix blend each chosen sample with another sample of the batch and
blend the targets (B, K) in the same proportion, so the loss sees what the image shows."""

from __future__ import annotations

import torch

from cnnlab.augment.registry import chosen, register_op


def _gamma(shape: float, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n,) Gamma(shape, 1) draws from `gen` (torch.distributions cannot take a generator).
    Marsaglia & Tsang (2000), vectorised with a fixed number of rejection rounds; each round
    accepts with probability > 0.95, so 16 rounds leave a failure chance below 1e-20."""
    boost = shape < 1.0  # Gamma(a) = Gamma(a + 1) * U^(1/a) for a < 1
    a = shape + 1.0 if boost else shape
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    out = torch.full((n,), d, device=device)  # a finite fallback, never reached in practice
    done = torch.zeros(n, dtype=torch.bool, device=device)
    for _ in range(16):
        z = torch.randn(n, generator=gen, device=device)
        u = torch.rand(n, generator=gen, device=device)
        v = (1.0 + c * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z**2 + d - d * v + d * torch.log(v.clamp_min(1e-30)))
        take = ok & ~done
        out = torch.where(take, d * v, out)
        done |= ok
    if boost:
        out = out * torch.rand(n, generator=gen, device=device) ** (1.0 / shape)
    return out


def beta(alpha: float, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n,) Beta(alpha, alpha) draws."""
    g1, g2 = _gamma(alpha, n, gen, device), _gamma(alpha, n, gen, device)
    return g1 / (g1 + g2).clamp_min(1e-12)


def _partners(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.randperm(x.shape[0], generator=gen, device=x.device)


def _check_alpha(alpha: float) -> None:
    if not alpha > 0:
        raise ValueError(f"alpha = {alpha!r}: expected a number > 0")


@register_op("mixup")
def mixup(
    x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, alpha: float = 0.2, p: float = 1.0
):
    """x' = λ x + (1 - λ) x_partner, y' likewise; λ ~ Beta(alpha, alpha) per sample
    (Zhang et al. 2018). y is (B, K) class probabilities."""
    _check_alpha(alpha)
    lam = beta(alpha, x.shape[0], gen, x.device)
    lam = torch.where(chosen(x, gen, p), lam, torch.ones_like(lam))
    partner = _partners(x, gen)
    x_mixed = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[partner]
    return x_mixed, lam.view(-1, 1) * y + (1 - lam.view(-1, 1)) * y[partner]


@register_op("cutmix")
def cutmix(
    x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, alpha: float = 1.0, p: float = 1.0
):
    """Paste a box of the partner image over each chosen sample (Yun et al. 2019): the box
    covers 1 - λ of the area, λ ~ Beta(alpha, alpha), centred uniformly and clipped at the
    borders; the targets mix by the area actually pasted."""
    _check_alpha(alpha)
    b, _, h, w = x.shape
    lam = beta(alpha, b, gen, x.device)
    cut = (1 - lam).sqrt()  # box side as a fraction of each image side
    cy = torch.randint(0, h, (b,), generator=gen, device=x.device)
    cx = torch.randint(0, w, (b,), generator=gen, device=x.device)
    half_h, half_w = (cut * h / 2).round().long(), (cut * w / 2).round().long()
    top, bottom = (cy - half_h).clamp(0, h), (cy + half_h).clamp(0, h)
    left, right = (cx - half_w).clamp(0, w), (cx + half_w).clamp(0, w)
    keep = ~chosen(x, gen, p)
    bottom, right = torch.where(keep, top, bottom), torch.where(keep, left, right)  # empty box
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    in_rows = (rows >= top.view(-1, 1, 1)) & (rows < bottom.view(-1, 1, 1))  # (B, H, 1)
    in_cols = (cols >= left.view(-1, 1, 1)) & (cols < right.view(-1, 1, 1))  # (B, 1, W)
    inside = in_rows & in_cols  # (B, H, W)
    partner = _partners(x, gen)
    x_mixed = torch.where(inside.unsqueeze(1), x[partner], x)
    pasted = inside.flatten(1).float().mean(dim=1, keepdim=True)  # (B, 1) area share
    return x_mixed, (1 - pasted) * y + pasted * y[partner]
