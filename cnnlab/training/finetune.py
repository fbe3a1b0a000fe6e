"""The training policy of a transfer run (a TransferNet around model.backbone): what is frozen
when, the learning rate of each part, and the frozen-feature cache.

A frozen backbone's features can be computed once, and the head then trains on vectors, not
images: worth it when every epoch would feed the backbone the same images (frozen for the
whole run, no training augmentation, no test-time views). cache_reason() says why not otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cnnlab.config import Config
from cnnlab.data.loader import BatchLoader
from cnnlab.errors import ConfigError
from cnnlab.models.transfer import TransferNet
from cnnlab.training import optim
from cnnlab.training.distributed import SINGLE, World
from cnnlab.training.step import logits


def prepare(
    model: TransferNet, config: Config
) -> tuple[torch.optim.Optimizer, Callable[[int], None] | None]:
    """Freeze the backbone as transfer.freeze says; its optimizer and, with
    transfer.unfreeze_after, the before_epoch hook that unfreezes it."""
    cfg = config.transfer
    if cfg.unfreeze_after is not None and not cfg.freeze:
        raise ConfigError(
            "transfer.unfreeze_after is set but transfer.freeze is false: nothing to unfreeze"
        )
    if cfg.unfreeze_after is not None and cfg.unfreeze_after >= config.train.epochs:
        raise ConfigError(
            f"transfer.unfreeze_after = {cfg.unfreeze_after}: the run has train.epochs ="
            f" {config.train.epochs}, so the backbone would never train (expected fewer epochs)"
        )
    freeze(model, config)
    before_epoch = None if cfg.unfreeze_after is None else unfreezing(model, cfg.unfreeze_after)
    return build_optimizer(model, config), before_epoch


def freeze(model: TransferNet, config: Config) -> None:
    """The backbone as the run starts: frozen (no gradients, BatchNorm statistics fixed) unless
    transfer.freeze is false."""
    model.freeze(config.transfer.freeze)


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


def extract(
    model: TransferNet, images: BatchLoader, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) float32 features of every image of `images` (unshuffled) and their (N,) labels,
    in the loader's order: the evaluation pass (training.step.logits) over the backbone,
    adapter and pool."""
    features = _Features(model)
    # An inference tensor, but the loader's indexing (outside inference mode) hands out normal
    # ones, which autograd may save for the head's backward pass.
    outs, labels = zip(*logits(features, images, precision), strict=True)
    return torch.cat(outs), torch.cat(labels)


class _Features(torch.nn.Module):
    """A TransferNet's head inputs as the module's output; the net's own train/eval mode."""

    def __init__(self, model: TransferNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


def feature_loader(
    model: TransferNet,
    images: BatchLoader,
    precision: str,
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    world: World = SINGLE,
) -> tuple[BatchLoader, float]:
    """The features of `images` (an unshuffled, unaugmented loader) as a loader of their own,
    and the seconds extraction took. world: training's share of the features on this rank
    (evaluation's share is that of `images`)."""
    start = time.perf_counter()
    features, labels = extract(model, images, precision)
    loader = BatchLoader(
        features,
        labels.to(features.device),
        batch_size=batch_size,
        device=features.device,
        shuffle=shuffle,
        seed=seed,
        rank=world.rank,
        world=world.size,
    )
    if images.device.type == "cuda":
        torch.cuda.synchronize(images.device)
    return loader, time.perf_counter() - start


@dataclass
class FeatureCache:
    """A frozen backbone's features, computed once: the head trains and validates on these."""

    train: BatchLoader
    val: BatchLoader
    test: Callable[[BatchLoader], BatchLoader]  # a split's image loader -> its features
    seconds: float  # extracting train + val, outside train_seconds
    note: str  # for the run's log


def cache_features(
    config: Config,
    precision: str,
    model: TransferNet,
    eval_model: TransferNet,
    train_images: BatchLoader,
    val_images: BatchLoader,
    world: World = SINGLE,
) -> FeatureCache | str:
    """The features of the unshuffled, unaugmented image loaders `train_images` (every image:
    training shares out global batches of them) and `val_images` (this rank's share), or why
    they are not cached (cache_reason)."""
    images = len(train_images.labels) + len(val_images.labels)
    reason = cache_reason(config, model, images)
    if reason is not None:
        return reason
    train, train_s = feature_loader(
        model,
        train_images,
        precision,
        batch_size=config.train.batch_size,
        shuffle=True,
        seed=config.train.seed,
        world=world,
    )
    val, val_s = feature_loader(model, val_images, precision, batch_size=config.eval.batch_size)

    def test(images: BatchLoader) -> BatchLoader:
        return feature_loader(eval_model, images, precision, batch_size=config.eval.batch_size)[0]

    seconds = train_s + val_s
    note = (
        f"backbone frozen: features of {len(train.labels)} train +"
        f" {len(val_images.labels)} val images ({train.images.shape[1]} each) cached in"
        f" {seconds:.1f} s; the head trains on them"
    )
    return FeatureCache(train, val, test, seconds, note)
