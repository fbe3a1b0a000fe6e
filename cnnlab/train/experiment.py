"""train(config) -> RunResult: build everything from the config, fit, write the run directory.

Everything that can reject the user's input (data, model, augmentations, optimizer, schedule,
device) is built before the run directory exists, so a bad config leaves nothing behind.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from cnnlab import augment, data, models
from cnnlab.config import Config, dump_yaml
from cnnlab.config.names import backbone_label
from cnnlab.errors import ConfigError
from cnnlab.models.transfer import TransferNet
from cnnlab.track.console import RunConsole
from cnnlab.track.diagnose import diagnose
from cnnlab.track.rundir import RunDir
from cnnlab.train import optim, schedule, transfer
from cnnlab.train.backbone import build_model, info_record
from cnnlab.train.checkpoint import (
    load_state,
    load_weights,
    rng_state,
    save_state,
    save_weights,
    set_rng_state,
)
from cnnlab.train.device import device_name, kernel_mode, resolve_device, seed_everything
from cnnlab.train.ema import EMA
from cnnlab.train.guard import DivergedError
from cnnlab.train.loop import FitState, TrainParts, evaluate, fit
from cnnlab.train.stop import Stopper

# Per-epoch metrics that early stopping and the plateau schedule may watch.
EPOCH_METRICS = ("val_acc", "val_loss", "train_acc", "train_loss", "lr", "images_per_second")


@dataclass(frozen=True)
class RunResult:
    path: Path
    status: str  # completed | early_stopped | time_limit | diverged | interrupted | failed
    summary: dict[str, Any]


@dataclass
class Setup:
    parts: TrainParts
    bundle: data.DataBundle
    device: torch.device
    # Images -> what parts.eval_net evaluates (the test split at the end): normalised images, or
    # a frozen backbone's cached features.
    eval_loader: Callable[[data.ImageSet], data.DeviceLoader]
    notes: list[str] = field(default_factory=list)  # for the run's log, before training
    feature_seconds: float | None = None  # extracting cached features, outside train_seconds


def build(config: Config, device: torch.device) -> Setup:
    for key, metric in (
        ("train.early_stopping.monitor", config.train.early_stopping.monitor),
        ("schedule.monitor", config.schedule.monitor),
    ):
        if metric not in EPOCH_METRICS:
            raise ConfigError(f"{key} = {metric!r}: expected one of {', '.join(EPOCH_METRICS)}")
    bundle = data.build(config.data)
    info = bundle.info
    model = build_model(config, info)
    memory_format = torch.channels_last if config.train.channels_last else torch.preserve_format
    model = model.to(device=device, memory_format=memory_format)
    train_loader = data.make_loader(
        bundle.train,
        max_resident_mb=config.data.max_resident_mb,
        num_workers=config.data.num_workers,
        batch_size=config.train.batch_size,
        device=device,
        mean=info.mean,
        std=info.std,
        shuffle=True,
        seed=config.train.seed,
        transform=augment.build(config.augment, info.num_classes, info.channels, info.image_size),
        channels_last=config.train.channels_last,
    )
    val_loader = eval_loader(bundle.val, config, info, device)
    if isinstance(model, TransferNet):
        optimizer = transfer.build_optimizer(model, config)
    else:
        optimizer = optim.build(model, config.optim)
    steps_per_epoch = -(-len(train_loader) // config.train.accumulate)
    scheduler = schedule.build(optimizer, config.schedule, steps_per_epoch, config.train.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=config.train.precision == "fp16")
    views = augment.build_views(config.augment.tta)
    ema = EMA(model, config.train.ema) if config.train.ema is not None else None
    parts = TrainParts(model, optimizer, scheduler, scaler, train_loader, val_loader, views, ema)
    setup = Setup(parts, bundle, device, lambda images: eval_loader(images, config, info, device))
    if isinstance(model, TransferNet):
        _transfer(config, setup, model)
    if config.train.compile:
        parts.net, parts.eval_net = torch.compile(parts.net), torch.compile(parts.eval_net)
    return setup


def _transfer(config: Config, setup: Setup, model: TransferNet) -> None:
    """Unfreezing on schedule, or training the head on features computed once."""
    parts, cfg = setup.parts, config.transfer
    if cfg.unfreeze_after is not None:
        parts.before_epoch = transfer.unfreezing(model, cfg.unfreeze_after)
    images = len(setup.bundle.train) + len(setup.bundle.val)
    reason = transfer.cache_reason(config, model, images)
    if reason is not None:
        if cfg.freeze:
            setup.notes.append(f"backbone frozen; features not cached: {reason}")
        return
    precision, images_of = config.train.precision, setup.eval_loader
    train, train_s = transfer.feature_loader(
        model,
        images_of(setup.bundle.train),
        precision,
        batch_size=config.train.batch_size,
        shuffle=True,
        seed=config.train.seed,
    )
    val, val_s = transfer.feature_loader(
        model, parts.val_loader, precision, batch_size=config.eval.batch_size
    )
    parts.train_loader, parts.val_loader = train, val
    parts.net, parts.eval_net = model.head, parts.eval_model.head
    setup.feature_seconds = train_s + val_s

    def features(images: data.ImageSet) -> data.DeviceLoader:
        return transfer.feature_loader(
            parts.eval_model, images_of(images), precision, batch_size=config.eval.batch_size
        )[0]

    setup.eval_loader = features
    setup.notes.append(
        f"backbone frozen: features of {len(train.labels)} train + {len(val.labels)} val images"
        f" ({train.images.shape[1]} each) cached in {setup.feature_seconds:.1f} s; the head"
        " trains on them"
    )


def train(config: Config, terminal: Console | None = None) -> RunResult:
    """A new run of `config` in a new run directory."""
    device = resolve_device(config.train.device)
    with kernel_mode(config.train.deterministic):
        seed_everything(config.train.seed)
        setup = build(config, device)
        name = config.run.name or default_name(config)
        run = RunDir.create(config.run.dir, name)
        return run_in(config, setup, run, FitState(), terminal)


def model_label(config: Config) -> str:
    backbone = config.model.backbone
    return config.model.name if backbone is None else f"from {backbone_label(backbone)}"


def default_name(config: Config) -> str:
    """<data>-<model>, or <data>-from-<backbone> ("digits-from-resnet18")."""
    backbone = config.model.backbone
    if backbone is None:
        return f"{config.data.name}-{config.model.name}"
    return f"{config.data.name}-from-{backbone_label(backbone).rpartition(':')[2]}"


def run_in(
    config: Config, setup: Setup, run: RunDir, state: FitState, terminal: Console | None
) -> RunResult:
    """Fit from `state` (fresh or resumed) in the run directory `run`, then write its summary."""
    out = RunConsole(run.path / "log.txt", terminal)
    try:
        return _fit_and_report(config, setup, run, state, out)
    finally:
        out.close()
        run.close()


def _fit_and_report(
    config: Config, setup: Setup, run: RunDir, state: FitState, out: RunConsole
) -> RunResult:
    parts, info = setup.parts, setup.bundle.info
    run.write_text("config.yaml", dump_yaml(config))
    run.write_text(
        "model.txt", models.summarize(parts.model, (info.channels, *info.image_size)).table() + "\n"
    )
    if state.epoch or state.partial:
        out.print(f"resuming after epoch {state.epoch}, step {state.step}", highlight=False)
    out.print(
        f"{info.name}: {len(setup.bundle.train)} train / {len(setup.bundle.val)} val images, "
        f"{info.num_classes} classes, {info.channels}×{info.image_size[0]}×{info.image_size[1]}"
        f" | {model_label(config)} | {config.optim.name} lr {config.optim.lr:g} | "
        f"{device_name(setup.device)}",
        highlight=False,
    )
    for note in setup.notes:
        out.print(note, highlight=False)
    if setup.bundle.skipped:
        out.print(
            f"skipped {len(setup.bundle.skipped)} unreadable image file(s); "
            "listed in log.txt and summary.json (data.on_bad_file=error stops instead)",
            highlight=False,
        )
        out.log_only("\n".join(f"  skipped {line}" for line in setup.bundle.skipped))

    def checkpoint(state: FitState, improved: bool) -> None:
        if improved:
            about = {"config": config.to_dict(), "data": info_record(info)}
            save_weights(parts.eval_model, run.checkpoints / "best.safetensors", about)
        save_state(resume_state(config, setup, state), run.checkpoints / "last.ckpt")

    def restore(state: FitState) -> None:
        saved = load_state(run.checkpoints / "last.ckpt")
        load_resume_state(parts, saved)
        state.load(saved["fit"])
        run.rewrite_metrics(state.history)

    def log_epoch(metrics: dict[str, Any]) -> None:
        run.log_epoch(metrics)
        out.epoch(metrics)

    stopper = Stopper(
        config.train.max_minutes,
        on_request=lambda: out.print("stopping after this step (Ctrl-C again to abort)"),
    )
    diagnosis: list[dict[str, str]] = []
    try:
        out.start_progress(config.train.epochs, len(parts.train_loader))
        if state.epoch == 0 and state.partial is None:
            checkpoint(state, False)  # what a rollback or a resume in epoch 1 goes back to
        with stopper.catching_ctrl_c():
            fit(
                parts,
                config.train,
                state,
                log_step=out.step,
                log_epoch=log_epoch,
                checkpoint=checkpoint,
                restore=restore,
                stopper=stopper,
            )
    except DivergedError as e:
        state.status = "diverged"
        diagnosis.append(e.divergence.finding())
    except KeyboardInterrupt:
        state.status = "interrupted"  # a second Ctrl-C: last.ckpt of the last epoch stays
    except BaseException:
        state.status = "failed"
        raise
    finally:
        out.stop_progress()
        rule = config.train.early_stopping
        diagnosis += diagnose(
            state.history,
            status=state.status,
            num_classes=setup.bundle.info.num_classes,
            early_stopping_patience=rule.patience,
            monitor=rule.monitor,
            mode=rule.mode,
            transfer=config.model.backbone is not None,
        )
        summary = make_summary(config, setup, run, state, [*state.events, *diagnosis])
        run.write_summary(summary)
        out.final_table(summary)
        if state.status in ("interrupted", "time_limit"):
            out.print(
                f"resume with: cnnlab train --resume {run.path}",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )
        out.print(f"run: {run.path}", soft_wrap=True, highlight=False, markup=False)
    return RunResult(run.path, state.status, summary)


def resume_state(config: Config, setup: Setup, state: FitState) -> dict[str, Any]:
    """Everything needed to continue this run bit-exactly after the current epoch."""
    parts = setup.parts
    return {
        "config": config.to_dict(),
        "fit": state.to_dict(),
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "ema": parts.ema.state_dict() if parts.ema is not None else None,
        "data": info_record(setup.bundle.info),
        "train_loader": parts.train_loader.state_dict(),
        "rng": rng_state(),
    }


def load_resume_state(parts: TrainParts, saved: dict[str, Any]) -> None:
    """Put everything resume_state() saved back into freshly built parts."""
    parts.model.load_state_dict(saved["model"])
    parts.optimizer.load_state_dict(saved["optimizer"])
    parts.scheduler.load_state_dict(saved["scheduler"])
    parts.scaler.load_state_dict(saved["scaler"])
    if parts.ema is not None:
        parts.ema.load_state_dict(saved["ema"])
    parts.train_loader.load_state_dict(saved["train_loader"])
    set_rng_state(saved["rng"])


def make_summary(
    config: Config, setup: Setup, run: RunDir, state: FitState, diagnosis: list[dict[str, str]]
) -> dict[str, Any]:
    history = state.history
    val_accs = [m["val_acc"] for m in history]
    return {
        "status": state.status,
        "best_val_acc": max(val_accs) if val_accs else None,
        "final_val_acc": val_accs[-1] if val_accs else None,
        "test_acc": test_accuracy(config, setup, run) if history else None,
        "best_epoch": state.best_epoch,
        "monitor": config.train.early_stopping.monitor,
        "best_monitor_value": state.best,
        "epochs_run": state.epoch,
        "steps": state.step,
        "train_seconds": round(state.train_seconds, 3),
        "images_per_second": state.images_seen / state.train_seconds if state.train_seconds else 0,
        "device": device_name(setup.device),
        "loader": type(setup.parts.train_loader).__name__,  # StreamLoader: over max_resident_mb
        "data": info_record(setup.bundle.info),  # what reusing the model as a backbone needs
        **({"feature_seconds": round(setup.feature_seconds, 3)} if setup.feature_seconds else {}),
        "versions": {
            "cnnlab": _version(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "rollbacks": state.rollbacks,
        "diagnosis": diagnosis,
        "skipped_files": list(setup.bundle.skipped),
    }


def test_accuracy(config: Config, setup: Setup, run: RunDir) -> float | None:
    """Accuracy of the best checkpoint on the dataset's own test split, when it has one."""
    test = setup.bundle.test
    best = run.checkpoints / "best.safetensors"
    if test is None or not best.exists():
        return None
    setup.parts.eval_model.load_state_dict(load_weights(best))
    loader = setup.eval_loader(test)
    return evaluate(setup.parts.eval_net, loader, config.train.precision, setup.parts.views)[1]


def eval_loader(
    images: data.ImageSet,
    config: Config,
    info: data.DatasetInfo,
    device: torch.device,
    channels_last: bool | None = None,
) -> data.DeviceLoader:
    """In order, every image, no augmentation: for validation and test. channels_last: None
    as the config trains."""
    return data.make_loader(
        images,
        max_resident_mb=config.data.max_resident_mb,
        num_workers=config.data.num_workers,
        batch_size=config.eval.batch_size,
        device=device,
        mean=info.mean,
        std=info.std,
        channels_last=config.train.channels_last if channels_last is None else channels_last,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cnnlab")
    except PackageNotFoundError:
        return "unknown"


__all__ = ["RunResult", "build", "train"]
