"""train(config) -> RunResult: build everything from the config, fit, write the run directory.

Everything that can reject the user's input (data, model, augmentations, optimizer, schedule,
device) is built before the run directory exists, so a bad config leaves nothing behind.

Under torchrun every process runs train() (training.distributed): each builds the same model
and its share of the data, the network is wrapped in DistributedDataParallel, and rank 0 alone
creates the run directory and shows the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from cnnlab import augment, data, models
from cnnlab.config import Config
from cnnlab.config.schema import TrainConfig
from cnnlab.data.loader import rank_seed
from cnnlab.errors import ConfigError
from cnnlab.models.transfer import TransferNet
from cnnlab.track.console import RunConsole
from cnnlab.track.mlflow import trackers
from cnnlab.track.rundir import RunDir
from cnnlab.training import finetune, optim, schedule, sync_bn
from cnnlab.training.device import check_fits, kernel_mode, resolve_precision, seed_everything
from cnnlab.training.distributed import SINGLE, World, joined
from cnnlab.training.ema import EMA
from cnnlab.training.guard import DivergedError
from cnnlab.training.loop import FitState, fit
from cnnlab.training.record import Recorder
from cnnlab.training.step import TrainParts
from cnnlab.training.stop import Stopper

# Per-epoch metrics that early stopping and the plateau schedule may watch.
EPOCH_METRICS = ("val_acc", "val_loss", "train_acc", "train_loss", "lr", "images_per_second")


@dataclass(frozen=True)
class RunResult:
    path: Path
    status: str  # completed | early_stopped | time_limit | pruned | diverged | interrupted | failed
    summary: dict[str, Any]


class Callback:
    """What a tracker or a sweep's pruner plugs into a run; every method may be left as is."""

    def on_start(self, run_dir: Path, config: Config) -> None:
        """The run directory exists and holds config.yaml."""

    def on_epoch(self, metrics: dict[str, Any]) -> str | None:
        """After each epoch (metrics.jsonl's row); return a status ("pruned") to stop the run
        after this epoch, with its checkpoint written."""
        return None

    def on_end(self, run_dir: Path, summary: dict[str, Any]) -> None:
        """summary.json is written (also after a failure, then with status failed)."""


@dataclass
class Setup:
    parts: TrainParts
    bundle: data.DataBundle
    device: torch.device
    # A split's images -> what parts.eval_net evaluates (the test split at the end): normalised
    # images, or a frozen backbone's cached features.
    test_loader: Callable[[data.ImageSet], data.BatchLoader]
    notes: list[str] = field(default_factory=list)  # for the run's log, before training
    feature_seconds: float | None = None  # extracting cached features, outside train_seconds


def build(config: Config, device: torch.device, world: World = SINGLE) -> Setup:
    """Everything `config` trains with on `device`, as rank world.rank of world.size."""
    _check(config, world)
    bundle = data.build(config.data)
    info = bundle.info
    check_fits(config, info, device)  # before the network or anything else is allocated
    cfg = _train_options(config, device, world, len(bundle.train))
    memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
    model = models.build(config, info).to(device=device, memory_format=memory_format)
    if world.size > 1 and cfg.sync_bn:
        model = sync_bn.convert(model, device)  # before the optimizer and EMA take its parameters
    whole = partial(eval_loader, config=config, info=info, device=device)
    images = partial(whole, world=world)  # this rank's share of a split
    before_epoch = None
    if isinstance(model, TransferNet):
        optimizer, before_epoch = finetune.prepare(model, config)
    else:
        optimizer = optim.build(model, config.optim)
    ema = EMA(model, cfg.ema) if cfg.ema is not None else None
    eval_model = ema.module if ema is not None else model
    net, eval_net, test_loader, notes, feature_seconds = model, eval_model, images, [], None
    train_loader, val_loader = _train_loader(config, bundle, device, world), images(bundle.val)
    if isinstance(model, TransferNet):
        cache = finetune.cache_features(
            config, cfg.precision, model, eval_model, whole(bundle.train), val_loader, world
        )
        if isinstance(cache, str) and config.transfer.freeze:
            notes.append(f"backbone frozen; features not cached: {cache}")
        elif not isinstance(cache, str):  # the head alone trains and evaluates, on features
            train_loader, val_loader = cache.train, cache.val
            net, eval_net = model.head, eval_model.head
            test_loader = lambda split: cache.test(images(split))  # noqa: E731
            notes.append(cache.note)
            feature_seconds = cache.seconds
    steps_per_epoch = -(-len(train_loader) // cfg.accumulate)
    net = world.wrap(net, device)  # eval_net stays unwrapped: each rank evaluates its share
    if cfg.compile:
        net, eval_net = torch.compile(net), torch.compile(eval_net)
    parts = TrainParts(
        model=model,
        net=net,
        eval_model=eval_model,
        eval_net=eval_net,
        optimizer=optimizer,
        scheduler=schedule.build(optimizer, config.schedule, steps_per_epoch, cfg.epochs),
        scaler=torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16"),
        train_loader=train_loader,
        val_loader=val_loader,
        cfg=cfg,
        views=augment.build_views(config.augment.tta),
        ema=ema,
        before_epoch=before_epoch,
        world=world,
    )
    if world.size > 1:  # each rank's own dropout draws from here on
        seed_everything(rank_seed(config.train.seed, world.rank))
    return Setup(parts, bundle, device, test_loader, notes, feature_seconds)


def _train_options(
    config: Config, device: torch.device, world: World, train_images: int
) -> TrainConfig:
    """config.train as it runs on `device`: train.precision auto resolved (config.yaml keeps
    what was asked)."""
    cfg = config.train
    if world.size > 1 and train_images < cfg.batch_size:
        raise ConfigError(
            f"train.batch_size = {cfg.batch_size}: more than the {train_images} training"
            " images; several processes need at least one whole global batch"
        )
    return cfg.model_copy(update={"precision": resolve_precision(cfg.precision, device)})


def _check(config: Config, world: World) -> None:
    """What the config's sections cannot judge alone."""
    for key, metric in (
        ("train.early_stopping.monitor", config.train.early_stopping.monitor),
        ("schedule.monitor", config.schedule.monitor),
    ):
        if metric not in EPOCH_METRICS:
            raise ConfigError(f"{key} = {metric!r}: expected one of {', '.join(EPOCH_METRICS)}")
    config.train.rank_batch(world.size)
    if world.size > 1 and config.transfer.unfreeze_after is not None:
        raise ConfigError(
            f"transfer.unfreeze_after = {config.transfer.unfreeze_after}: not with several"
            " processes (DistributedDataParallel fixes the trained parameters when it wraps the"
            " model); train the head on several, then fine-tune all in a second run with"
            " model.backbone=<that run> transfer.freeze=false"
        )


def _train_loader(
    config: Config, bundle: data.DataBundle, device: torch.device, world: World
) -> data.BatchLoader:
    """Shuffled, augmented batches of the training split, normalised on `device`; this rank's
    slice of each global batch."""
    info = bundle.info
    transform = augment.build(config.augment, info.num_classes, info.channels, info.image_size)
    return _loader(
        bundle.train,
        config,
        info,
        device,
        world,
        batch_size=config.train.batch_size,
        shuffle=True,
        seed=config.train.seed,
        transform=transform,
    )


def eval_loader(
    images: data.ImageSet,
    config: Config,
    info: data.DatasetInfo,
    device: torch.device,
    channels_last: bool | None = None,
    world: World = SINGLE,
) -> data.BatchLoader:
    """In order, every image (of this rank's share), no augmentation: for validation and test.
    channels_last: None as the config trains."""
    return _loader(
        images, config, info, device, world, channels_last, batch_size=config.eval.batch_size
    )


def _loader(
    images: data.ImageSet,
    config: Config,
    info: data.DatasetInfo,
    device: torch.device,
    world: World,
    channels_last: bool | None = None,
    **batching: Any,
) -> data.BatchLoader:
    """A loader of `images` on `device` as the config keeps data (resident or streamed),
    normalised with the training set's statistics; `batching`: size, order, augmentation."""
    return data.make_loader(
        images,
        max_resident_mb=config.data.max_resident_mb,
        num_workers=config.data.num_workers,
        device=device,
        mean=info.mean,
        std=info.std,
        channels_last=config.train.channels_last if channels_last is None else channels_last,
        rank=world.rank,
        world=world.size,
        **batching,
    )


def train(
    config: Config,
    terminal: Console | None = None,
    *,
    quiet: bool = False,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """A new run of `config` in a new run directory. quiet: nothing on the terminal (log.txt
    and the run directory are written as always). Under torchrun, this process's part of the
    run (training.distributed)."""
    with joined() as world:
        tracking: list[Callback] = []
        # rank 0 connects the trackers now: a bad URI leaves no run dir, on every rank
        world.from_main(lambda: tracking.extend(trackers(config)))
        device = world.device(config.train.device)
        with kernel_mode(config.train.deterministic):
            seed_everything(config.train.seed)
            setup = build(config, device, world)
            name = config.run.name or default_name(config)
            run_dir = world.from_main(lambda: RunDir.create(config.run.dir, name))
            callbacks = [*callbacks, *tracking]
            return run(config, setup, run_dir, FitState(), console(terminal, quiet), callbacks)


def console(terminal: Console | None, quiet: bool) -> Console | None:
    return Console(quiet=True) if quiet else terminal


def default_name(config: Config) -> str:
    """<data>-<model>, or <data>-from-<backbone> ("digits-from-resnet18")."""
    from cnnlab.config.names import backbone_label

    backbone = config.model.backbone
    if backbone is None:
        return f"{config.data.name}-{config.model.name}"
    return f"{config.data.name}-from-{backbone_label(backbone).rpartition(':')[2]}"


def run(
    config: Config,
    setup: Setup,
    run_dir: RunDir,
    state: FitState,
    terminal: Console | None = None,
    callbacks: Sequence[Callback] = (),
    resumed: bool = False,
) -> RunResult:
    """Fit from `state` (fresh, or `resumed` from last.ckpt) in `run_dir`, then write its
    summary: with a test score when training ended for a reason of its own (a divergence and a
    second Ctrl-C included), without one after a failure, which is then raised again (a second
    error while writing that summary is printed, never raised in its place)."""
    world = setup.parts.world
    out = _run_console(run_dir, terminal, world)
    recorder = Recorder(config, setup, run_dir, out, callbacks)
    stopper = recorder.stopper = Stopper(
        config.train.max_minutes,
        on_request=lambda: out.print("stopping after this step (Ctrl-C again to abort)"),
    )
    findings: list[dict[str, str]] = []
    try:
        recorder.begin(state, resumed)
        out.start_progress(config.train.epochs, len(setup.parts.train_loader))
        try:
            with stopper.catching_ctrl_c():
                fit(
                    setup.parts,
                    config.train,
                    state,
                    log_step=recorder.log_step,
                    log_epoch=recorder.log_epoch,
                    checkpoint=recorder.checkpoint,
                    restore=recorder.restore,
                    stopper=stopper,
                )
        except DivergedError as e:
            state.status = "diverged"
            findings.append(e.divergence.finding())
        except KeyboardInterrupt:
            state.status = "interrupted"  # a second Ctrl-C: last.ckpt of the last epoch stays
        out.stop_progress()
        summary = recorder.end(state, findings, test=True)
    except BaseException as e:
        out.stop_progress()
        state.status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        try:
            recorder.end(state, [], test=False)
        except Exception as second:  # noqa: BLE001
            out.print(f"could not write summary.json after the failure: {second}", markup=False)
        raise
    finally:
        out.close()
        run_dir.close()
    world.barrier()  # no rank ends (and none is stopped by the agent) before rank 0 is done
    return RunResult(run_dir.path, state.status, summary)


def _run_console(run_dir: RunDir, terminal: Console | None, world: World) -> RunConsole:
    """Of several processes, rank 0 shows the run and writes log.txt; the others train in
    silence."""
    if world.is_main:
        return RunConsole(run_dir.path / "log.txt", terminal)
    return RunConsole(Path(os.devnull), Console(quiet=True))


__all__ = ["Callback", "RunResult", "build", "run", "train"]
