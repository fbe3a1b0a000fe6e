"""Training a TransferNet: its optimizer, the unfreezing schedule, the frozen-feature cache.

A frozen backbone's features can be computed once, and the head then trains on vectors, not
images: worth it when every epoch would feed the backbone the same images (frozen for the
whole run, no training augmentation, no test-time views). cache_reason() says why not otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from cnnlab.config import Config
from cnnlab.data.loader import DeviceLoader
from cnnlab.models.transfer import TransferNet
from cnnlab.train import optim
from cnnlab.train.loop import autocast


def build_optimizer(model: TransferNet, config: Config) -> torch.optim.Optimizer:
    """The backbone at transfer.backbone_lr_mult (optim.lr_mult keys still win); its weights are
    in the optimizer from the start when they unfreeze later, so the run has one optimizer
    state throughout (and last.ckpt resumes either side of the unfreezing)."""
    lr_mult = {"backbone": config.transfer.backbone_lr_mult, **config.optim.lr_mult}
    cfg = config.optim.model_copy(update={"lr_mult": lr_mult})
    frozen = model.frozen
    model.freeze(frozen and config.transfer.unfreeze_after is None)
    try:
        return optim.build(model, cfg)
    finally:
        model.freeze(frozen)


def unfreezing(model: TransferNet, after: int) -> Callable[[int], None]:
    """before_epoch(epoch): the backbone frozen for epochs 1..after, trained from then on."""

    def before_epoch(epoch: int) -> None:
        if model.frozen != (epoch <= after):
            model.freeze(epoch <= after)

    return before_epoch


def cache_reason(config: Config, model: TransferNet, images: int) -> str | None:
    """None when the features of `images` images can be cached, else why not (for the log)."""
    cfg = config.transfer
    if not cfg.freeze:
        return "the backbone trains (transfer.freeze=false)"
    if cfg.unfreeze_after is not None:
        return f"the backbone trains after epoch {cfg.unfreeze_after} (transfer.unfreeze_after)"
    if config.augment.train:
        return "augment.train changes the images every epoch"
    if config.augment.tta:
        return "augment.tta evaluates several views of each image"
    width = next(m.in_features for m in model.head.modules() if isinstance(m, torch.nn.Linear))
    mb = images * width * 4 / 2**20  # float32
    if mb > config.data.max_resident_mb:
        return (
            f"{images} x {width} features would take {mb:,.1f} MiB, over data.max_resident_mb"
            " (pool the cut: transfer.pool=avg, a smaller transfer.pool_size)"
        )
    return None


class FeatureLoader(DeviceLoader):
    """DeviceLoader's batching, order and resume state over (N, D) feature vectors."""

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ):
        self._batches(features, labels, batch_size, features.device, shuffle, seed)

    def prepare(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return images, labels  # already the head's inputs


@torch.inference_mode()
def extract(model: TransferNet, images: DeviceLoader, precision: str) -> torch.Tensor:
    """(N, D) float32 features of every image of `images` (unshuffled), the backbone in eval
    mode, in the loader's order."""
    was_training = model.training
    model.eval()
    try:
        parts = []
        for x, _ in images:
            with autocast(images.device, precision):
                parts.append(model.features(x).float())
        # An inference tensor, but the loader's indexing (outside inference mode) hands out
        # normal ones, which autograd may save for the head's backward pass.
        return torch.cat(parts)
    finally:
        model.train(was_training)


def feature_loader(
    model: TransferNet,
    images: DeviceLoader,
    precision: str,
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
) -> tuple[FeatureLoader, float]:
    """The features of `images` (an unshuffled, unaugmented loader) as a loader of their own,
    and the seconds extraction took."""
    start = time.perf_counter()
    features = extract(model, images, precision)
    labels = images.labels.to(features.device)
    loader = FeatureLoader(features, labels, batch_size=batch_size, shuffle=shuffle, seed=seed)
    if images.device.type == "cuda":
        torch.cuda.synchronize(images.device)
    return loader, time.perf_counter() - start
