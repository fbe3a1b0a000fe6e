"""`cnnlab viz`: look inside a trained model. First-layer filters, Grad-CAM heat maps for the
predicted class (Selvaraju et al. 2017), and a layer's feature maps, each as a PNG grid in the
run directory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.analyze.trained import TrainedModel
from cnnlab.atomic import atomic_path
from cnnlab.errors import ConfigError
from cnnlab.imagegrid import save_grid
from cnnlab.registry import did_you_mean

FILTERS_PNG = "filters.png"
GRADCAM_PNG = "gradcam.png"


def convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every Conv2d with its qualified name, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def find_layer(model: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    """The module called `name` (as in named_modules / `cnnlab summary`); None: the last Conv2d."""
    if name is None:
        found = convs(model)
        if not found:
            raise ConfigError(f"{type(model).__name__} has no Conv2d layer; pick one with --layer")
        return found[-1]
    modules = {n: m for n, m in model.named_modules() if n}
    if name in modules:
        return name, modules[name]
    names = list(modules)
    shown = [n for n, _ in convs(model)] or names
    more = f", ... ({len(names)} in all)" if len(shown) > 12 or len(shown) < len(names) else ""
    raise ConfigError(
        f"--layer {name!r}: no such layer{did_you_mean(name, names)} "
        f"(e.g. {', '.join(shown[:12])}{more})"
    )


@contextmanager
def captured(layer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the layer's outputs while inside. The layer hands on a copy, so that an in-place
    op after it (ReLU(inplace=True)) cannot change what was captured."""
    outputs: list[torch.Tensor] = []

    def hook(module, inputs, output):
        outputs.append(output)
        return output.clone() if isinstance(output, torch.Tensor) else output

    handle = layer.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def gradcam(
    model: nn.Module, x: torch.Tensor, layer: nn.Module, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) in [0, 1] for normalised inputs x (N, C, H, W): relu of the
    layer's channels weighted by their mean gradient of the target logit (default: the
    predicted class), upsampled bilinearly to the input size, divided by each map's maximum."""
    with torch.enable_grad(), captured(layer) as outputs:
        logits = model(x.detach().requires_grad_(True))
        if target is None:
            target = logits.argmax(dim=1)
        score = logits.gather(1, target.view(-1, 1)).sum()
        # autograd.grad rather than backward: the parameters' .grad stay untouched.
        (grads,) = torch.autograd.grad(score, outputs[-1])
    act = outputs[-1].detach()
    weights = grads.mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
    cam = F.relu((weights * act).sum(dim=1, keepdim=True))  # (N, 1, h, w)
    cam = F.interpolate(cam.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
    peak = cam.amax(dim=(2, 3), keepdim=True)
    return (cam / torch.where(peak > 0, peak, torch.ones_like(peak))).squeeze(1).clamp(0, 1)


@torch.inference_mode()
def activations(model: nn.Module, x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """The layer's output for inputs x; the last one if the layer runs more than once."""
    with captured(layer) as outputs:
        model(x)
    if not outputs:
        raise ConfigError("that layer is not used in the forward pass")
    return outputs[-1]


def filter_images(weight: torch.Tensor) -> torch.Tensor:
    """Conv weights (out, in, k, k) -> (out, 1 or 3, k, k) uint8: 1 input channel gray, 3 RGB,
    otherwise the mean over inputs. Each filter is scaled by its own largest |w|, so mid gray
    is 0."""
    w = weight.detach().float().cpu()
    if w.shape[1] not in (1, 3):
        w = w.mean(dim=1, keepdim=True)
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12)
    return _to_uint8((w / scale + 1) / 2)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.mul(255.0).round().clamp(0, 255).to(torch.uint8)


def _per_map(x: torch.Tensor) -> torch.Tensor:
    """Min-max scale each (h, w) map of x (..., h, w) to [0, 1]; flat maps become 0."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    span = x.amax(dim=(-2, -1), keepdim=True) - lo
    return (x - lo) / torch.where(span > 0, span, torch.ones_like(span))


def heat_overlay(images: torch.Tensor, cams: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """uint8 images (N, C, H, W) and maps (N, H, W) in [0, 1] -> (N, 3, H, W) uint8: the
    image in gray blended with the map in the jet colour map."""
    from matplotlib import colormaps

    gray = images.float().mean(dim=1, keepdim=True).expand(-1, 3, -1, -1) / 255.0
    heat = torch.from_numpy(colormaps["jet"](cams.cpu().numpy())[..., :3]).permute(0, 3, 1, 2)
    return _to_uint8((1 - alpha) * gray.cpu() + alpha * heat.float())


def _inputs(run: TrainedModel, images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float on the run's device, as in training."""
    c = images.shape[1]
    mean = torch.tensor(run.info.mean, device=run.device).view(1, c, 1, 1)
    std = torch.tensor(run.info.std, device=run.device).view(1, c, 1, 1)
    return (images.to(run.device).float() / 255.0 - mean) / std


def _pick(
    run: TrainedModel, split: str, n: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """n images of the split, spread at random (fixed seed), with their labels."""
    data = run.images(split)
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[: max(1, n)]
    return data.images[index], data.labels[index]


def write_filters(run: TrainedModel, path: Path | None = None, per_row: int = 8) -> Path:
    found = convs(run.model)
    if not found:
        raise ConfigError(f"{run.config.model.name} has no Conv2d layer: no filters to show")
    name, conv = found[0]
    tiles = filter_images(conv.weight)
    rows = [
        (f"{i}-{min(i + per_row, len(tiles)) - 1}", tiles[i : i + per_row])
        for i in range(0, len(tiles), per_row)
    ]
    k = tuple(conv.weight.shape[1:])
    path = path or run.path / FILTERS_PNG
    save_grid(rows, path, title=f"first conv {name!r}: filters (in, kh, kw) = {k}")
    return path


def write_gradcam(
    run: TrainedModel,
    n: int = 16,
    layer: str | None = None,
    split: str = "val",
    path: Path | None = None,
) -> Path:
    layer_name, module = find_layer(run.model, layer)
    images, labels = _pick(run, split, n)
    cams = gradcam(run.model, _inputs(run, images), module)
    with torch.inference_mode():
        preds = run.model(_inputs(run, images)).argmax(dim=1).cpu()
    classes = run.info.classes
    titles = [f"{classes[p]} ({classes[t]})" for p, t in zip(preds, labels, strict=True)]
    path = path or run.path / GRADCAM_PNG
    _save_tiles(
        heat_overlay(images, cams),
        titles,
        path,
        f"Grad-CAM at {layer_name!r}: predicted (true) class, {split} images",
    )
    return path


def write_activations(
    run: TrainedModel,
    layer: str,
    n_images: int = 4,
    channels: int = 16,
    split: str = "val",
    path: Path | None = None,
) -> Path:
    """One row per image: the image, then the first `channels` feature maps, each min-max
    scaled on its own."""
    layer_name, module = find_layer(run.model, layer)
    images, labels = _pick(run, split, n_images)
    out = activations(run.model, _inputs(run, images), module).float().cpu()
    if out.dim() != 4:
        raise ConfigError(
            f"--layer {layer_name!r}: its output has shape {tuple(out.shape)}, not feature maps "
            "(N, C, H, W); pick a conv or block"
        )
    maps = _to_uint8(_per_map(out[:, :channels])).unsqueeze(2)  # (N, k, 1, h, w)
    size = images.shape[-2:]
    maps = F.interpolate(maps.flatten(0, 1).float(), size=size, mode="nearest").to(torch.uint8)
    maps = maps.view(len(images), -1, 1, *size)
    gray = images.float().mean(dim=1, keepdim=True).round().to(torch.uint8)
    classes = run.info.classes
    rows = [
        (classes[int(label)], torch.cat([image[None], m]))
        for image, label, m in zip(gray, labels, maps, strict=True)
    ]
    path = path or run.path / f"activations-{layer_name}.png"
    shown = min(channels, out.shape[1])
    title = f"{layer_name!r}: image, then channels 0-{shown - 1} of {out.shape[1]}"
    save_grid(rows, path, title=title)
    return path


def _save_tiles(images: torch.Tensor, titles: list[str], path: Path, title: str) -> None:
    """uint8 (N, C, H, W) images in a square-ish grid, each with its own caption."""
    import math

    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.9 * rows + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(titles[i], fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
