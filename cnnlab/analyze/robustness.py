"""`cnnlab robustness RUN`: accuracy on the evaluation split under common corruptions, each at
severities 1-5, with the clean accuracy and a mean corruption error.

Every corruption but JPEG is an augment op (cnnlab.augment.ops) called with p = 1, so training
augmentation and this suite share one implementation. Where an op takes a range ((lo, hi)
pairs: blur sigma, erasing scale and ratio, affine scale) the range is degenerate, (v, v): a
fixed magnitude. Where it only takes a bound it draws symmetrically per image (color_jitter's
factor in [1 - v, 1 + v], rotate's angle in [-v, v], translate's shifts in [-v, v]); those draws
come from a generator seeded with `seed`, so every call gives the same numbers.

Severities (the op's parameter at 1, 2, 3, 4, 5):
  brightness   color_jitter brightness v   0.2  0.35  0.5  0.65  0.8  (factor in [1-v, 1+v])
  contrast     color_jitter contrast v     0.2  0.35  0.5  0.65  0.8
  saturation   color_jitter saturation v   0.2  0.35  0.5  0.65  0.8  (RGB only)
  hue          color_jitter hue (turns)    0.05 0.1   0.2  0.3   0.5  (RGB only)
  grayscale    grayscale p=1               the same at every severity (RGB only)
  invert       invert p=1                  the same at every severity
  translate    translate pixels, as a fraction of the shorter side, at least 1 pixel:
                                           0.05 0.1   0.15 0.2   0.25 (28 px: 1 3 4 6 7)
  rotate       rotate degrees              10   20    30   45    60
  scale        affine scale (s, s)         0.9  0.8   0.7  0.6   0.5  (no rotation, shift)
  noise        noise std                   0.08 0.12  0.18 0.26  0.38 (ImageNet-C's)
  blur         blur sigma (s, s), pixels   0.5  0.75  1.0  1.5   2.0  (kernel 2*ceil(3s)+1)
  jpeg         JPEG quality                80   60    40   20    10   (Pillow)
  occlusion    erasing of a square, value 0.5 (mid gray, visible on dark and light
               backgrounds), fraction of the area  0.04 0.09 0.16 0.25 0.36 (side 20-60 %)

Corruptions marked RGB only change nothing on 1-channel images: they are "n/a" there and left
out of the means, rather than counted as a free clean score.

Mean corruption error (mCE) = the mean of (1 - accuracy) over every corruption and severity
evaluated. Hendrycks & Dietterich normalise each corruption's error by AlexNet's; there is no
such reference model here, so the relative mCE is mCE minus the clean error: the accuracy the
corruptions cost, in points.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.analyze.trained import TrainedModel
from cnnlab.atomic import atomic_path, write_text_atomic
from cnnlab.augment.ops import OPS
from cnnlab.data.imageset import ImageSet
from cnnlab.data.loader import DeviceLoader
from cnnlab.errors import ConfigError
from cnnlab.models.fold import fold_batchnorm
from cnnlab.registry import did_you_mean
from cnnlab.track.rundir import ROBUSTNESS
from cnnlab.training.device import native_bf16
from cnnlab.training.step import score

SEVERITIES = (1, 2, 3, 4, 5)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# transform(x, gen) -> x on (B, C, H, W) float images in [0, 1].
Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    op: str  # an augment op, or "jpeg"
    levels: tuple[float, ...]  # the magnitude at severities 1..5
    # (level, height, width) -> the op's keyword arguments
    params: Callable[[float, int, int], dict]
    rgb_only: bool = False


def _odd_kernel(sigma: float, h: int, w: int) -> int:
    """Three sigmas each side, within the blur op's reflect-padding limit for this size."""
    return min(2 * math.ceil(3 * sigma) + 1, 2 * min(h, w) - 1)


_JITTER_OFF = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, "p": 1.0}
_SPREAD = (0.2, 0.35, 0.5, 0.65, 0.8)

CORRUPTIONS: dict[str, Corruption] = {
    "brightness": Corruption(
        "color_jitter", _SPREAD, lambda v, h, w: {**_JITTER_OFF, "brightness": v}
    ),
    "contrast": Corruption("color_jitter", _SPREAD, lambda v, h, w: {**_JITTER_OFF, "contrast": v}),
    "saturation": Corruption(
        "color_jitter", _SPREAD, lambda v, h, w: {**_JITTER_OFF, "saturation": v}, rgb_only=True
    ),
    "hue": Corruption(
        "color_jitter",
        (0.05, 0.1, 0.2, 0.3, 0.5),
        lambda v, h, w: {**_JITTER_OFF, "hue": v},
        rgb_only=True,
    ),
    "grayscale": Corruption("grayscale", (1,) * 5, lambda v, h, w: {"p": 1.0}, rgb_only=True),
    "invert": Corruption("invert", (1,) * 5, lambda v, h, w: {"p": 1.0}),
    "translate": Corruption(
        "translate",
        (0.05, 0.1, 0.15, 0.2, 0.25),
        lambda v, h, w: {"pixels": max(1, round(v * min(h, w))), "p": 1.0},
    ),
    "rotate": Corruption("rotate", (10, 20, 30, 45, 60), lambda v, h, w: {"degrees": v, "p": 1.0}),
    "scale": Corruption(
        "affine",
        (0.9, 0.8, 0.7, 0.6, 0.5),
        lambda v, h, w: {"degrees": 0.0, "translate": 0.0, "scale": (v, v), "p": 1.0},
    ),
    "noise": Corruption(
        "noise", (0.08, 0.12, 0.18, 0.26, 0.38), lambda v, h, w: {"std": v, "p": 1.0}
    ),
    "blur": Corruption(
        "blur",
        (0.5, 0.75, 1.0, 1.5, 2.0),
        lambda v, h, w: {"kernel": _odd_kernel(v, h, w), "sigma": (v, v), "p": 1.0},
    ),
    "jpeg": Corruption("jpeg", (80, 60, 40, 20, 10), lambda v, h, w: {"quality": int(v)}),
    "occlusion": Corruption(
        "erasing",
        (0.04, 0.09, 0.16, 0.25, 0.36),
        lambda v, h, w: {"scale": (v, v), "ratio": (1.0, 1.0), "value": 0.5, "p": 1.0},
    ),
}


def jpeg(x: torch.Tensor, gen: torch.Generator, quality: int = 75) -> torch.Tensor:
    """Save and reload each image as a JPEG at `quality` (Pillow's encoder, on the CPU;
    torchvision.io's is deprecated since 0.29)."""
    del gen  # deterministic: the signature matches the augment ops'
    from PIL import Image

    uint8 = x.mul(255.0).round_().clamp_(0, 255).to("cpu", torch.uint8)
    arrays = uint8.permute(0, 2, 3, 1).numpy()  # (B, H, W, C)
    out = []
    for array in arrays:
        buffer = io.BytesIO()
        Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(
            buffer, format="JPEG", quality=quality
        )
        out.append(np.asarray(Image.open(buffer)).reshape(array.shape))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device, x.dtype).div_(255.0)


def corruption_transform(name: str, severity: int, height: int, width: int) -> Transform:
    """The corruption `name` at `severity` (1-5) as transform(x, gen) for images of that size."""
    spec = CORRUPTIONS[name]
    params = spec.params(spec.levels[severity - 1], height, width)
    op = jpeg if spec.op == "jpeg" else OPS.get(spec.op)
    return lambda x, gen: op(x, gen, **params)


def _key(name: str, severity: int, height: int, width: int) -> tuple:
    """Two severities with equal op parameters (grayscale, invert) are evaluated once."""
    spec = CORRUPTIONS[name]
    params = spec.params(spec.levels[severity - 1], height, width)
    return spec.op, tuple(sorted(params.items()))


# Images corrupted per call of a corruption: fixed, so its random draws (a noise field, a shift
# per image) do not depend on eval.batch_size or --batch-size, and neither do the accuracies.
CORRUPTION_CHUNK = 1024


class _InBatches(nn.Module):
    """`model` over a chunk in batches of `size`: on the CPU, batches whose activations stay in
    cache run faster than one large chunk."""

    def __init__(self, model: nn.Module, size: int):
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(part) for part in x.split(self.size)])


@torch.inference_mode()
def accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    transform: Transform | None = None,
    batch_size: int = 1024,
    precision: str = "fp32",
    channels_last: bool = False,
    seed: int = 0,
) -> float:
    """Accuracy of `model` on uint8 images (N, C, H, W) after `transform` (on [0, 1] floats),
    normalised as in training: the evaluation loader and loop training uses, with the
    corruption as the loader's transform on chunks of CORRUPTION_CHUNK images, on the images'
    device; the model sees batches of `batch_size`."""
    if not len(labels):
        return 0.0
    classes = tuple(str(i) for i in range(int(labels.max()) + 1))
    loader = DeviceLoader(
        ImageSet(images, labels, classes),
        batch_size=CORRUPTION_CHUNK,
        device=images.device,
        mean=tuple(mean),
        std=tuple(std),
        seed=seed,
        transform=None if transform is None else (lambda x, y, gen: (transform(x, gen), y)),
        channels_last=channels_last,
    )
    net = model if batch_size >= CORRUPTION_CHUNK else _InBatches(model, batch_size)
    return score(net, loader, precision, device=loader.device).accuracy


@dataclass
class Robustness:
    split: str
    images: int  # how many were evaluated
    clean: float
    # corruption -> accuracy at each severity; None: not applicable to these images
    accuracy: dict[str, list[float] | None]
    severities: tuple[int, ...] = SEVERITIES
    precision: str = "fp32"  # what the model ran in
    seconds: float = 0.0
    subset: str = ""  # "noise+blur", "first1000": what --only and --limit left of the suite
    files: dict[str, Path] = field(default_factory=dict)

    def applicable(self) -> dict[str, list[float]]:
        return {k: v for k, v in self.accuracy.items() if v is not None}

    @property
    def mean_error(self) -> float | None:
        """mCE: mean of (1 - accuracy) over every corruption and severity evaluated."""
        errors = [1 - a for accs in self.applicable().values() for a in accs]
        return sum(errors) / len(errors) if errors else None

    @property
    def relative_error(self) -> float | None:
        """mCE - clean error: what the corruptions cost on average."""
        mce = self.mean_error
        return None if mce is None else mce - (1 - self.clean)

    def rows(self, fmt: Callable[[float], str] = lambda v: f"{v:.4f}") -> list[list[str]]:
        """Header, one row per corruption (accuracy per severity, then their mean), the clean
        accuracy, then the mean error per severity and the mCE (a row of errors, not accuracies)."""
        rows = [["corruption", *map(str, self.severities), "mean"]]
        na = ["n/a"] * (len(self.severities) + 1)
        for name, accs in self.accuracy.items():
            rows.append([name, *(na if accs is None else map(fmt, [*accs, _mean(accs)]))])
        rows.append(["clean", *[fmt(self.clean)] * (len(self.severities) + 1)])
        per_severity = list(zip(*self.applicable().values(), strict=True))
        if per_severity and self.mean_error is not None:
            errors = [1 - _mean(list(accs)) for accs in per_severity]
            rows.append(["mean corruption error", *map(fmt, errors), fmt(self.mean_error)])
        return rows

    def markdown(self) -> str:
        rows = self.rows(lambda v: f"{100 * v:.2f}")
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        notes = [
            f"Accuracy (%) on {self.images} {self.split} images, model in {self.precision}; "
            "the last row is error (%)."
        ]
        if self.mean_error is not None:
            notes.append(
                f"mCE {100 * self.mean_error:.2f} %, relative mCE (mCE - clean error) "
                f"{100 * self.relative_error:.2f} points."
            )
        return "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def select(only: str | Sequence[str] | None) -> list[str]:
    """--only a,b -> those corruption names, checked; None -> all of them."""
    if only is None:
        return list(CORRUPTIONS)
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only)]
    names = [n for n in names if n]
    for name in names:
        if name not in CORRUPTIONS:
            hint = did_you_mean(name, list(CORRUPTIONS))
            raise ConfigError(
                f"--only: unknown corruption {name!r}{hint} (valid: {', '.join(CORRUPTIONS)})"
            )
    if not names:
        raise ConfigError(f"--only: expected names from {', '.join(CORRUPTIONS)}")
    return names


def default_split(run: TrainedModel) -> str:
    return "test" if run.bundle.test is not None else "val"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    return precision


def suite_precision(run: TrainedModel, precision: str = "auto") -> str:
    """--precision auto: the run's train.precision, except that an fp32 run on a CPU with AMX
    runs in bf16 autocast. The suite is ~47 passes; there bf16 makes it 3.2x faster (Fashion-
    MNIST test, default cnn: 127 s -> 38 s) and moves the mCE by 0.04 points, each cell by at
    most 0.7 (rounding flips predictions near the boundary), about what another noise seed
    moves them. --precision fp32 gives the exact numbers."""
    if check_precision(precision) != "auto":
        return precision
    own = run.precision
    return "bf16" if own == "fp32" and native_bf16(run.device) else own


def robustness(
    run: TrainedModel,
    split: str | None = None,
    severities: Sequence[int] = SEVERITIES,
    batch_size: int | None = None,
    only: str | Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    precision: str = "auto",
) -> Robustness:
    """The suite on `split` (default: test if the dataset has one, else val); `limit` takes
    the first N images only (quicker, noisier); `precision` as in suite_precision."""
    import time

    severities = tuple(severities)
    if not severities or any(s not in SEVERITIES for s in severities):
        raise ConfigError(f"severities {severities}: expected some of {SEVERITIES}")
    names = select(only)
    precision = suite_precision(run, precision)
    split = split or default_split(run)
    data = run.images(split)
    images, labels = data.images, data.labels
    subset = "+".join(names) if only is not None and len(names) < len(CORRUPTIONS) else ""
    if limit is not None and limit < len(labels):
        images, labels = images[:limit], labels[:limit]
        subset = "-".join(filter(None, (subset, f"first{limit}")))
    images, labels = images.to(run.device), labels.to(run.device)
    _, channels, h, w = images.shape
    cfg = run.config
    kwargs = dict(
        mean=run.info.mean,
        std=run.info.std,
        batch_size=batch_size or cfg.eval.batch_size,
        precision=precision,
        channels_last=run.channels_last,
        seed=seed,
    )
    start = time.perf_counter()
    # ~47 passes over the split: folding BN into the convs is worth its one-off cost here.
    model = fold_batchnorm(run.model)
    clean = accuracy(model, images, labels, **kwargs)
    done: dict[tuple, float] = {}
    table: dict[str, list[float] | None] = {}
    for name in names:
        if CORRUPTIONS[name].rgb_only and channels != 3:
            table[name] = None
            continue
        accs = []
        for s in severities:
            key = _key(name, s, h, w)
            if key not in done:
                transform = corruption_transform(name, s, h, w)
                done[key] = accuracy(model, images, labels, transform=transform, **kwargs)
            accs.append(done[key])
        table[name] = accs
        if progress is not None:
            progress(f"{name}: " + " ".join(f"{100 * a:.1f}" for a in accs))
    seconds = time.perf_counter() - start
    return Robustness(split, len(labels), clean, table, severities, precision, seconds, subset)


def write(result: Robustness, directory: str | Path) -> dict[str, Path]:
    """robustness-<split>[-<subset>].csv, .md and .png in `directory` (the run's, so that
    `cnnlab report` embeds them); another split or subset never overwrites them."""
    stem = "-".join(filter(None, (ROBUSTNESS, result.split, result.subset)))
    paths = {kind: Path(directory) / f"{stem}.{kind}" for kind in ("csv", "md", "png")}
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(result.rows())
    write_text_atomic(paths["csv"], buffer.getvalue())
    write_text_atomic(paths["md"], result.markdown())
    plot(result, paths["png"])
    result.files = paths
    return paths


def plot(result: Robustness, path: Path) -> None:
    """Accuracy against severity, one line per corruption; the clean accuracy dashed."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("tab20")
    for i, (name, accs) in enumerate(result.applicable().items()):
        ax.plot(result.severities, accs, marker="o", color=colours(i % 20), label=name)
    ax.axhline(result.clean, color="black", linestyle="--", label="clean")
    ax.set_xticks(result.severities)
    ax.set_xlabel("severity")
    ax.set_ylabel(f"{result.split} accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if result.mean_error is not None:
        ax.set_title(
            f"mCE {100 * result.mean_error:.1f} % (clean error {100 - 100 * result.clean:.1f} %)"
        )
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
