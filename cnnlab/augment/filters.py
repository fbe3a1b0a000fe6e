"""Filter and occlusion ops: gaussian noise, gaussian blur, cutout, random erasing.

blur equals torchvision.transforms.v2.functional.gaussian_blur for the same sigma (within
1/255); erasing follows torchvision's RandomErasing, drawn for the whole batch at once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cnnlab.augment.registry import chosen, expect, is_int, register_op, uniform, where


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range(name: str, value, high: float = math.inf, positive: bool = False):
    """A [lo, hi] pair (YAML gives a list) with 0 <= lo <= hi <= high (0 < lo if positive),
    returned as a tuple of floats."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_number, value))
    ok = ok and (0 < value[0] if positive else 0 <= value[0]) and value[0] <= value[1] <= high
    bounds = ("> 0" if positive else ">= 0") + (f" and <= {high}" if high < math.inf else "")
    expect(ok, name, value, f"[lo, hi] with lo <= hi, both {bounds}")
    return float(value[0]), float(value[1])


def _box_mask(x: torch.Tensor, top, left, height, width) -> torch.Tensor:
    """(B, 1, H, W) bool: per sample, rows [top, top + height) x cols [left, left + width),
    all (B,) int64; the parts outside the image simply do not exist (clipped)."""
    rows = torch.arange(x.shape[-2], device=x.device)  # (H,)
    cols = torch.arange(x.shape[-1], device=x.device)  # (W,)
    in_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + width)[:, None])  # (B, W)
    return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)


@register_op("noise")
def noise(x: torch.Tensor, gen: torch.Generator, std: float = 0.05, p: float = 0.5):
    """Add gaussian noise of `std` (on the [0, 1] scale) to every pixel, clamped to [0, 1]."""
    expect(std >= 0, "std", std, "a number >= 0")
    z = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return where(chosen(x, gen, p), (x + std * z).clamp(0.0, 1.0), x)


def _gaussian_kernels(sigma: torch.Tensor, kernel: int, dtype: torch.dtype) -> torch.Tensor:
    """(B,) sigmas -> (B, kernel) normalised 1-D gaussians, computed as torchvision does
    (taps at (i - kernel // 2) / sqrt(2), softmax of -(tap / sigma)^2)."""
    lim = (kernel - 1) / (2.0 * math.sqrt(2.0))
    taps = torch.linspace(-lim, lim, kernel, dtype=dtype, device=sigma.device)
    return torch.softmax(-((taps / sigma.to(dtype)[:, None]) ** 2), dim=1)


def _blur(x: torch.Tensor, sigma: torch.Tensor, kernel: int) -> torch.Tensor:
    """Gaussian blur with a per-sample sigma (B,), reflect padding, as torchvision's
    gaussian_blur: the 2-D kernel is separable, so one row pass and one column pass, each a
    grouped conv with one group per (image, channel)."""
    b, c, h, w = x.shape
    r = kernel // 2
    k1 = _gaussian_kernels(sigma, kernel, x.dtype).repeat_interleave(c, 0)  # (B*C, kernel)
    padded = F.pad(x, (r, r, r, r), mode="reflect").reshape(1, b * c, h + 2 * r, w + 2 * r)
    rows = F.conv2d(padded, k1.view(b * c, 1, 1, kernel), groups=b * c)  # (1, B*C, H+2r, W)
    out = F.conv2d(rows, k1.view(b * c, 1, kernel, 1), groups=b * c)  # (1, B*C, H, W)
    return out.view(b, c, h, w)


@register_op("blur")
def blur(
    x: torch.Tensor,
    gen: torch.Generator,
    kernel: int = 3,
    sigma: tuple[float, float] = (0.1, 2.0),
    p: float = 0.5,
):
    """Gaussian blur, kernel x kernel pixels, sigma (pixels) uniform in the range per sample."""
    expect(
        is_int(kernel) and kernel > 0 and kernel % 2 == 1, "kernel", kernel, "an odd integer >= 1"
    )
    # Reflect padding needs kernel // 2 < the image side.
    limit = 2 * min(x.shape[-2:]) - 1
    expect(kernel <= limit, "kernel", kernel, f"an odd integer <= {limit} for this image size")
    lo, hi = _range("sigma", sigma, positive=True)
    s = uniform(x, gen, lo, hi)  # (B,) pixels
    keep = chosen(x, gen, p)
    if x.numel() == 0:
        return x
    return where(keep, _blur(x, s, kernel), x)


@register_op("cutout")
def cutout(x: torch.Tensor, gen: torch.Generator, size: int = 8, p: float = 1.0):
    """Zero a size x size square centred on a uniformly random pixel, clipped at the borders
    (DeVries & Taylor 2017), so squares near an edge are partly outside the image."""
    expect(is_int(size) and size >= 0, "size", size, "an integer >= 0")
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=gen, device=x.device)
    cx = torch.randint(0, w, (b,), generator=gen, device=x.device)
    side = torch.full_like(cy, size)
    # For an even size the centre pixel is the lower-right one of the middle four.
    box = _box_mask(x, cy - size // 2, cx - size // 2, side, side)
    return x.masked_fill(box & chosen(x, gen, p).view(-1, 1, 1, 1), 0.0)


def _erasing_boxes(x: torch.Tensor, gen: torch.Generator, scale, ratio):
    """(B,) int64 top, left, height, width of RandomErasing's rectangles: area fraction
    uniform in scale, aspect (height / width) log-uniform in ratio, then placed uniformly."""
    h, w = x.shape[-2:]
    area = h * w * uniform(x, gen, *scale)  # (B,) pixels
    aspect = torch.exp(uniform(x, gen, math.log(ratio[0]), math.log(ratio[1])))
    # torchvision redraws (up to 10 times) a rectangle that does not fit, else erases nothing;
    # clamping to the image keeps one draw per sample, at the cost of a smaller area then.
    eh = torch.sqrt(area * aspect).round().long().clamp(0, h)
    ew = torch.sqrt(area / aspect).round().long().clamp(0, w)
    top = (uniform(x, gen, 0.0, 1.0) * (h - eh + 1)).long().clamp(max=h - eh)
    left = (uniform(x, gen, 0.0, 1.0) * (w - ew + 1)).long().clamp(max=w - ew)
    return top, left, eh, ew


@register_op("erasing")
def erasing(
    x: torch.Tensor,
    gen: torch.Generator,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: float = 0.0,
    p: float = 0.5,
):
    """torchvision's RandomErasing: fill a random rectangle with `value` (Zhong et al. 2017)."""
    scale = _range("scale", scale, high=1.0)
    ratio = _range("ratio", ratio, positive=True)
    expect(_is_number(value) and 0 <= value <= 1, "value", value, "a number in [0, 1]")
    box = _box_mask(x, *_erasing_boxes(x, gen, scale, ratio))
    return x.masked_fill(box & chosen(x, gen, p).view(-1, 1, 1, 1), float(value))
