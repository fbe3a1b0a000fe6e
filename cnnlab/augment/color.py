"""Colour ops: jitter, grayscale, invert, solarize, posterize, equalize, sharpness.

Each adjustment equals torchvision.transforms.v2.functional's for the same factor (within
1/255), but takes one factor per sample so a whole batch is done in a few tensor ops. Images
that are not RGB (C != 3) have no colour: saturation, hue and grayscale leave them unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.augment.registry import chosen, expect, is_int, register_op, uniform, where

# ITU-R 601 luma, as rgb_to_grayscale (which uses 0.2989 for red; the weights here sum to 1, so
# a gray image stays exactly gray). The difference is < 1e-4.
_LUMA = (0.299, 0.587, 0.114)


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, 1) in x's dtype, to broadcast over a batch."""
    return values.to(x.dtype).view(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma."""
    r, g, b = x.unbind(1)
    gray = r * _LUMA[0]  # in-place adds below: one temporary instead of five
    gray.add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2])
    return gray.unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """x * f + other * (1 - f), clamped: f = 0 gives `other`, f = 1 gives x, f > 1 pushes away."""
    # lerp(other, x, f) = other + f * (x - other): one fused pass instead of three.
    return torch.lerp(other, x, _per_sample(factor, x)).clamp_(0.0, 1.0)


def _adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (x * _per_sample(factor, x)).clamp(0.0, 1.0)


def _adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean gray level (one scalar per image, as torchvision)."""
    gray = _gray(x) if x.shape[1] == 3 else x
    return _blend(x, gray.mean(dim=(1, 2, 3), keepdim=True), factor)


def _adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x
    return _blend(x, _gray(x), factor)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> HSV, every channel in [0, 1] (hue in turns)."""
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)  # (B, H, W)
    delta = maxc - minc
    s = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    # Gray pixels (delta 0) have r = g = b, so every branch gives hue 0 with a safe divisor.
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(
        maxc == r, (g - b) / d, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4)
    )
    return torch.stack((torch.remainder(h / 6, 1.0), s, maxc), 1)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) HSV -> RGB, branch-free: channel n (R 5, G 3, B 1) is v - v s clamp(...)."""
    h, s, v = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]  # (B, 1, H, W) each
    n = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device).view(1, 3, 1, 1)
    k = torch.remainder(n + 6 * h, 6.0)  # (B, 3, H, W)
    return v - v * s * torch.minimum(k, 4 - k).clamp(0.0, 1.0)


def _adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by `shift` (B,) turns, in [-0.5, 0.5]."""
    if x.shape[1] != 3:
        return x
    hsv = _rgb_to_hsv(x)
    hue = torch.remainder(hsv[:, :1] + _per_sample(shift, x), 1.0)
    return _hsv_to_rgb(torch.cat((hue, hsv[:, 1:]), 1)).clamp(0.0, 1.0)


def _jitter_factors(
    x: torch.Tensor, gen: torch.Generator, brightness, contrast, saturation, hue
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B,) brightness, contrast and saturation factors and hue shifts, drawn in that order."""
    b = uniform(x, gen, max(0.0, 1.0 - brightness), 1.0 + brightness)
    c = uniform(x, gen, max(0.0, 1.0 - contrast), 1.0 + contrast)
    s = uniform(x, gen, max(0.0, 1.0 - saturation), 1.0 + saturation)
    return b, c, s, uniform(x, gen, -hue, hue)


@register_op("color_jitter")
def color_jitter(
    x: torch.Tensor,
    gen: torch.Generator,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.0,
    p: float = 1.0,
):
    """torchvision's ColorJitter with one set of factors per sample: brightness, contrast and
    saturation factors uniform in [max(0, 1 - v), 1 + v], hue shift uniform in [-hue, hue].

    Unlike ColorJitter, which shuffles the four adjustments on every call, they are always
    applied in the order brightness, contrast, saturation, hue.
    """
    for name, value in (
        ("brightness", brightness),
        ("contrast", contrast),
        ("saturation", saturation),
    ):
        expect(value >= 0, name, value, "a number >= 0")
    expect(0 <= hue <= 0.5, "hue", hue, "a number in [0, 0.5] (turns of the colour wheel)")
    fb, fc, fs, shift = _jitter_factors(x, gen, brightness, contrast, saturation, hue)
    out = _adjust_brightness(x, fb)
    out = _adjust_contrast(out, fc)
    out = _adjust_saturation(out, fs)
    if hue > 0:  # an RGB -> HSV -> RGB round trip is not bit-exact, so skip it when it is a no-op
        out = _adjust_hue(out, shift)
    if p >= 1.0:  # every sample changes: skip a full pass over the batch
        return out
    return where(chosen(x, gen, p), out, x)


@register_op("grayscale")
def grayscale(x: torch.Tensor, gen: torch.Generator, p: float = 0.1):
    """Luma in every channel (the channel count is kept)."""
    keep = chosen(x, gen, p)
    if x.shape[1] != 3:
        return x
    return where(keep, _gray(x).expand_as(x), x)


@register_op("invert")
def invert(x: torch.Tensor, gen: torch.Generator, p: float = 0.5):
    """1 - x: negative images."""
    return where(chosen(x, gen, p), 1.0 - x, x)


@register_op("solarize")
def solarize(x: torch.Tensor, gen: torch.Generator, threshold: float = 0.5, p: float = 0.5):
    """Invert the values >= threshold (on the [0, 1] scale)."""
    expect(0 <= threshold <= 1, "threshold", threshold, "a number in [0, 1]")
    return where(chosen(x, gen, p), torch.where(x >= threshold, 1.0 - x, x), x)


def _levels(x: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] -> the nearest of the 256 uint8 levels, as int64."""
    return (x * 255).round().clamp(0, 255).long()


@register_op("posterize")
def posterize(x: torch.Tensor, gen: torch.Generator, bits: int = 4, p: float = 0.5):
    """Keep the top `bits` bits of each uint8 level (torchvision's posterize on uint8)."""
    ok = is_int(bits) and 1 <= bits <= 8
    expect(ok, "bits", bits, "an integer in [1, 8]")
    mask = (0xFF << (8 - bits)) & 0xFF
    out = (_levels(x) & mask).to(x.dtype) / 255
    return where(chosen(x, gen, p), out, x)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram-equalise each channel of each image on its uint8 levels, with PIL's lookup
    table (torchvision's equalize on uint8). A channel whose pixels, all but those at its top
    level, number fewer than 255 is returned unchanged, as PIL does."""
    b, c, h, w = x.shape
    levels = _levels(x).reshape(b * c, h * w)
    # One 256-bin histogram per (image, channel): offset each row's levels into its own bins.
    rows = torch.arange(b * c, device=x.device).view(-1, 1)
    hist = torch.bincount((levels + 256 * rows).flatten(), minlength=b * c * 256).view(b * c, 256)
    cum = hist.cumsum(1)  # (B*C, 256)
    top = hist.gather(1, levels.amax(1, keepdim=True))  # pixels at the brightest level present
    step = (h * w - top) // 255  # (B*C, 1)
    lut = ((cum[:, :-1] + step // 2) // step.clamp(min=1)).clamp(0, 255)  # lut[k] from cum[k-1]
    lut = torch.cat((torch.zeros_like(lut[:, :1]), lut), 1)  # (B*C, 256), lut[0] = 0
    out = (lut.gather(1, levels).to(x.dtype) / 255).view(b, c, h, w)
    return torch.where((step > 0).view(b, c, 1, 1), out, x)


@register_op("equalize")
def equalize(x: torch.Tensor, gen: torch.Generator, p: float = 0.5):
    """Per-image, per-channel histogram equalisation (torchvision's equalize on uint8 levels;
    float inputs are rounded to the nearest level first)."""
    keep = chosen(x, gen, p)
    if x.numel() == 0:
        return x
    return where(keep, _equalize(x), x)


def _sharpen(x: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's adjust_sharpness: blend with a 3x3 smoothing of the image; the one-pixel
    border, where the smoothing is undefined, is left as it is."""
    b, c, h, w = x.shape
    if h <= 2 or w <= 2 or x.numel() == 0:
        return x
    kernel = torch.ones(1, 1, 3, 3, dtype=x.dtype, device=x.device)
    kernel[..., 1, 1] = 5.0
    smooth = F.conv2d(x.reshape(b * c, 1, h, w), kernel / 13).view(b, c, h - 2, w - 2)
    inner = x[..., 1:-1, 1:-1]
    out = x.clone()
    out[..., 1:-1, 1:-1] = (inner + (1.0 - factor) * (smooth - inner)).clamp(0.0, 1.0)
    return out


@register_op("sharpness")
def sharpness(x: torch.Tensor, gen: torch.Generator, factor: float = 2.0, p: float = 0.5):
    """factor 0 smooths, 1 keeps, 2 doubles the difference from the smoothed image."""
    expect(factor >= 0, "factor", factor, "a number >= 0")
    return where(chosen(x, gen, p), _sharpen(x, factor), x)
