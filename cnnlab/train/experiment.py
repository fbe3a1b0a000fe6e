"""train(config) -> RunResult: build everything from the config, fit, write the run directory.

Everything that can reject the user's input (data, model, augmentations, optimizer, schedule,
device) is built before the run directory exists, so a bad config leaves nothing behind.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from cnnlab import augment, data, models
from cnnlab.config import Config, dump_yaml
from cnnlab.errors import ConfigError
from cnnlab.track.console import RunConsole
from cnnlab.track.rundir import RunDir
from cnnlab.train import optim, schedule
from cnnlab.train.checkpoint import load_weights, rng_state, save_state, save_weights
from cnnlab.train.device import device_name, kernel_mode, resolve_device, seed_everything
from cnnlab.train.guard import DivergedError
from cnnlab.train.loop import FitState, TrainParts, evaluate, fit

EPOCH_METRICS = ("lr", "train_loss", "train_acc", "val_loss", "val_acc")


@dataclass(frozen=True)
class RunResult:
    path: Path
    status: str  # completed | early_stopped | diverged | interrupted | failed
    summary: dict[str, Any]


@dataclass
class Setup:
    parts: TrainParts
    bundle: data.DataBundle
    device: torch.device


def build(config: Config, device: torch.device) -> Setup:
    if config.train.early_stopping.monitor not in EPOCH_METRICS:
        raise ConfigError(
            f"train.early_stopping.monitor = {config.train.early_stopping.monitor!r}: "
            f"expected one of {', '.join(EPOCH_METRICS)}"
        )
    bundle = data.build(config.data)
    info = bundle.info
    model = models.build(config.model, info.num_classes, info.channels, info.image_size)
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
    optimizer = optim.build(model, config.optim)
    scheduler = schedule.build(
        optimizer, config.schedule, config.optim.lr, len(train_loader), config.train.epochs
    )
    scaler = torch.amp.GradScaler(device.type, enabled=config.train.precision == "fp16")
    views = augment.build_views(config.augment.tta)
    parts = TrainParts(model, optimizer, scheduler, scaler, train_loader, val_loader, views)
    return Setup(parts, bundle, device)


def train(config: Config, terminal: Console | None = None) -> RunResult:
    device = resolve_device(config.train.device)
    with kernel_mode(config.train.deterministic):
        seed_everything(config.train.seed)
        setup = build(config, device)
        name = config.run.name or f"{config.data.name}-{config.model.name}"
        run = RunDir.create(config.run.dir, name)
        out = RunConsole(run.path / "log.txt", terminal)
        try:
            return _run(config, setup, run, out)
        finally:
            out.close()
            run.close()


def _run(config: Config, setup: Setup, run: RunDir, out: RunConsole) -> RunResult:
    parts, info = setup.parts, setup.bundle.info
    run.write_text("config.yaml", dump_yaml(config))
    run.write_text(
        "model.txt", models.summarize(parts.model, (info.channels, *info.image_size)).table() + "\n"
    )
    out.print(
        f"{info.name}: {len(setup.bundle.train)} train / {len(setup.bundle.val)} val images, "
        f"{info.num_classes} classes, {info.channels}×{info.image_size[0]}×{info.image_size[1]}"
        f" | {config.model.name} | {config.optim.name} lr {config.optim.lr:g} | "
        f"{device_name(setup.device)}",
        highlight=False,
    )
    if setup.bundle.skipped:
        out.print(
            f"skipped {len(setup.bundle.skipped)} unreadable image file(s); "
            "listed in log.txt and summary.json (data.on_bad_file=error stops instead)",
            highlight=False,
        )
        out.log_only("\n".join(f"  skipped {line}" for line in setup.bundle.skipped))

    def checkpoint(state: FitState, improved: bool) -> None:
        if improved:
            save_weights(parts.model, run.checkpoints / "best.safetensors")
        save_state(resume_state(config, parts, state), run.checkpoints / "last.ckpt")

    def log_epoch(metrics: dict[str, Any]) -> None:
        run.log_epoch(metrics)
        out.epoch(metrics)

    state, diagnosis = FitState(), []
    try:
        out.start_progress(config.train.epochs, len(parts.train_loader))
        fit(
            parts,
            config.train,
            state,
            log_step=out.step,
            log_epoch=log_epoch,
            checkpoint=checkpoint,
        )
    except DivergedError as e:
        state.status = "diverged"
        diagnosis.append(e.divergence.finding())
    except KeyboardInterrupt:
        state.status = "interrupted"  # last.ckpt from the last finished epoch stays valid
    except BaseException:
        state.status = "failed"
        raise
    finally:
        out.stop_progress()
        summary = make_summary(config, setup, run, state, diagnosis)
        run.write_summary(summary)
        out.final_table(summary)
        out.print(f"run: {run.path}", soft_wrap=True, highlight=False, markup=False)
    return RunResult(run.path, state.status, summary)


def resume_state(config: Config, parts: TrainParts, state: FitState) -> dict[str, Any]:
    """Everything needed to continue this run bit-exactly after the current epoch."""
    return {
        "config": config.to_dict(),
        "fit": state.to_dict(),
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "train_loader": parts.train_loader.state_dict(),
        "rng": rng_state(),
    }


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
        "versions": {
            "cnnlab": _version(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "diagnosis": diagnosis,
        "skipped_files": list(setup.bundle.skipped),
    }


def test_accuracy(config: Config, setup: Setup, run: RunDir) -> float | None:
    """Accuracy of the best checkpoint on the dataset's own test split, when it has one."""
    test = setup.bundle.test
    best = run.checkpoints / "best.safetensors"
    if test is None or not best.exists():
        return None
    setup.parts.model.load_state_dict(load_weights(best))
    loader = eval_loader(test, config, setup.bundle.info, setup.device)
    return evaluate(setup.parts.model, loader, config.train.precision, setup.parts.views)[1]


def eval_loader(
    images: data.ImageSet, config: Config, info: data.DatasetInfo, device: torch.device
) -> data.DeviceLoader:
    """In order, every image, no augmentation: for validation and test."""
    return data.make_loader(
        images,
        max_resident_mb=config.data.max_resident_mb,
        num_workers=config.data.num_workers,
        batch_size=config.eval.batch_size,
        device=device,
        mean=info.mean,
        std=info.std,
        channels_last=config.train.channels_last,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cnnlab")
    except PackageNotFoundError:
        return "unknown"


__all__ = ["RunResult", "build", "train"]
