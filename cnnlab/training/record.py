"""What a run writes while it trains and when it ends: the header, checkpoints, per-epoch
metrics, the summary with its diagnosis, and the console lines; and how last.ckpt is read back.

Recorder's methods are the loop's outward hooks (checkpoint, restore, log_step, log_epoch); the
trainer (training.experiment) calls begin() before the loop and end() after it.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cnnlab import models
from cnnlab.checkpoint import (
    first_line,
    load_into,
    load_state,
    load_weights,
    rng_state,
    save_state,
    save_weights,
    set_rng_state,
)
from cnnlab.config import Config, dump_yaml
from cnnlab.config.names import backbone_label
from cnnlab.data.info import source_line
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.track.console import RunConsole
from cnnlab.track.diagnose import diagnose
from cnnlab.track.rundir import RunDir
from cnnlab.training.device import device_name
from cnnlab.training.loop import FitState
from cnnlab.training.step import TrainParts
from cnnlab.training.stop import Stopper

if TYPE_CHECKING:
    from cnnlab.training.experiment import Callback, Setup

FASTER_RECIPE = "cpu-fast"  # suggested when a run on the CPU would take long
LONG_ON_CPU_S = 600.0  # estimated training time above which the suggestion is printed


class Recorder:
    def __init__(
        self,
        config: Config,
        setup: Setup,
        run: RunDir,
        out: RunConsole,
        callbacks: Sequence[Callback] = (),
    ):
        self.config, self.setup, self.run, self.out = config, setup, run, out
        self.callbacks = list(callbacks)
        self.stopper: Stopper | None = None  # where a callback's stop request goes
        self._hinted = False

    @property
    def parts(self) -> TrainParts:
        return self.setup.parts

    def begin(self, state: FitState, resumed: bool = False) -> None:
        """config.yaml, model.txt and the header (after a "resuming" line when `resumed`, even
        from step 0); the first checkpoint of a fresh run."""
        config, setup, info = self.config, self.setup, self.setup.bundle.info
        self.run.write_text("config.yaml", dump_yaml(config))
        shape = (info.channels, *info.image_size)
        self.run.write_text("model.txt", models.summarize(self.parts.model, shape).table() + "\n")
        self.out.print(source_line(info), highlight=False, markup=False, soft_wrap=True)
        if resumed:
            self.out.print(
                f"resuming after epoch {state.epoch}, step {state.step}", highlight=False
            )
        self.out.print(
            f"{info.name}: {len(setup.bundle.train)} train / {len(setup.bundle.val)} val images, "
            f"{info.num_classes} classes, {info.channels}×{info.image_size[0]}×{info.image_size[1]}"
            f" | {model_label(config)} | {config.optim.name} lr {config.optim.lr:g} | "
            f"{device_name(setup.device)}, {_precision(config, self.parts)}",
            highlight=False,
        )
        for note in setup.notes:
            self.out.print(note, highlight=False)
        if setup.bundle.skipped:
            self.out.print(
                f"skipped {len(setup.bundle.skipped)} unreadable image file(s); "
                "listed in log.txt and summary.json (data.on_bad_file=error stops instead)",
                highlight=False,
            )
            self.out.log_only("\n".join(f"  skipped {line}" for line in setup.bundle.skipped))
        for callback in self.callbacks:
            callback.on_start(self.run.path, config)
        if not resumed:
            self.checkpoint(state, False)  # what a rollback or a resume in epoch 1 goes back to

    def checkpoint(self, state: FitState, improved: bool) -> None:
        if improved:
            about = {"config": self.config.to_dict(), "data": self.setup.bundle.info.record()}
            save_weights(self.parts.eval_model, self.run.checkpoints / "best.safetensors", about)
        save_state(resume_state(self.config, self.setup, state), self.run.checkpoints / "last.ckpt")

    def restore(self, state: FitState) -> None:
        """Back to last.ckpt (the divergence guard's rollback)."""
        last = self.run.checkpoints / "last.ckpt"
        saved = load_state(last, RESUME_SHAPE)
        load_resume_state(self.parts, saved, last)
        state.load(saved["fit"])
        self.run.rewrite_metrics(state.history)

    def log_step(self, info: dict[str, Any]) -> None:
        self.out.step(info)
        if not self._hinted and self.setup.device.type == "cpu":
            self._hinted = True  # judged once, at the first logging point
            self._suggest_faster(info)

    def log_epoch(self, metrics: dict[str, Any]) -> None:
        self.run.log_epoch(metrics)
        self.out.epoch(metrics)
        for callback in self.callbacks:
            status = callback.on_epoch(metrics)
            if status is not None and self.stopper is not None:
                self.stopper.request(status)

    def _suggest_faster(self, info: dict[str, Any]) -> None:
        """A CPU run estimated to train for long: name the recipe made for CPUs."""
        loader, cfg = self.parts.train_loader, self.config.train
        images = cfg.epochs * len(loader) * loader.batch_size
        estimate = images / max(info["images_per_second"], 1e-9)
        if estimate > LONG_ON_CPU_S and self.config.recipe != FASTER_RECIPE:
            self.out.print(
                f"this run will train for about {estimate / 60:.0f} min on the CPU"
                f" ({info['images_per_second']:,.0f} images/s); recipe={FASTER_RECIPE} is made"
                " for CPUs (cnnlab config show recipe=cpu-fast)",
                highlight=False,
            )

    def end(self, state: FitState, findings: list[dict[str, str]], test: bool) -> dict[str, Any]:
        """Diagnose, score the test split (`test`: not after a failure), write summary.json,
        print the end-of-run table and the run's path."""
        rule = self.config.train.early_stopping
        findings = [
            *state.events,
            *findings,
            *diagnose(
                state.history,
                status=state.status,
                num_classes=self.setup.bundle.info.num_classes,
                early_stopping_patience=rule.patience,
                monitor=rule.monitor,
                mode=rule.mode,
                transfer=self.config.model.backbone is not None,
            ),
        ]
        test_acc = self.test_accuracy() if test and state.history else None
        summary = make_summary(self.config, self.setup, state, findings, test_acc)
        self.run.write_summary(summary)
        self.out.final_table(summary)
        if state.status in ("interrupted", "time_limit"):
            self.out.print(
                f"resume with: cnnlab train --resume {self.run.path}",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )
        self.out.print(f"run: {self.run.path}", soft_wrap=True, highlight=False, markup=False)
        for callback in self.callbacks:
            callback.on_end(self.run.path, summary)
        return summary

    def test_accuracy(self) -> float | None:
        """Accuracy of the best checkpoint on the dataset's own test split, when it has one."""
        test, setup = self.setup.bundle.test, self.setup
        best = self.run.checkpoints / "best.safetensors"
        if test is None or not best.exists():
            return None
        load_into(setup.parts.eval_model, load_weights(best), best)
        return setup.parts.evaluate(setup.test_loader(test)).accuracy


def _precision(config: Config, parts: TrainParts) -> str:
    """'bf16 (auto)', or the precision asked for."""
    asked, used = config.train.precision, parts.cfg.precision
    return f"{used} (auto)" if asked == "auto" else used


def model_label(config: Config) -> str:
    backbone = config.model.backbone
    return config.model.name if backbone is None else f"from {backbone_label(backbone)}"


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
        "data": setup.bundle.info.record(),
        "train_loader": parts.train_loader.state_dict(),
        "rng": rng_state(),
    }


# What load_resume_state reads from last.ckpt (checkpoint.check_shape): a file of another shape
# is a one-line CheckpointError before any of it is loaded. "fit" is FitState's own.
RESUME_SHAPE = {
    "config": dict,
    "fit": dict,
    "model": dict[str, torch.Tensor],
    "optimizer": {"state": dict, "param_groups": list[dict]},
    "scheduler": dict,
    "scaler": dict,
    "ema": dict[str, torch.Tensor] | None,
    "train_loader": {"generator": torch.Tensor},
    "rng": {"torch": torch.Tensor, "python": tuple, "numpy": tuple},
}


def load_resume_state(parts: TrainParts, saved: dict[str, Any], path: Path) -> None:
    """Put everything resume_state() saved (read from `path`) back into freshly built parts;
    a part that does not take its saved state is a CheckpointError naming it."""
    load_into(parts.model, saved["model"], path)
    if parts.ema is not None:
        if saved["ema"] is None:
            raise CheckpointError(f"{path}: damaged state (ema is null, but the run has train.ema)")
        load_into(parts.ema.module, saved["ema"], path)
    _check_optimizer_state(parts.optimizer, saved["optimizer"], path)
    for name, load in (
        ("optimizer", parts.optimizer.load_state_dict),
        ("scheduler", parts.scheduler.load_state_dict),
        ("scaler", parts.scaler.load_state_dict),
        ("train_loader", parts.train_loader.load_state_dict),
        ("rng", set_rng_state),
    ):
        try:
            load(saved[name])
        except (
            CnnlabError,
            KeyError,
            TypeError,
            ValueError,
            IndexError,
            AttributeError,
            RuntimeError,
            OverflowError,
        ) as e:
            # torch's loaders (and cnnlab's schedules) check their own state and raise any of
            # these on a foreign one
            raise CheckpointError(
                f"{path}: damaged state ({name} does not fit this run: {first_line(e)})"
            ) from None


def _check_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict, path: Path) -> None:
    """torch's load_state_dict checks the parameter groups, not the per-parameter state, which
    would fail at the first step: each entry must belong to a parameter, and its tensors (the
    moments, the momentum buffer) must have that parameter's shape and a float dtype."""
    params: dict[Any, torch.Tensor] = {}
    pairs = zip(saved["param_groups"], optimizer.param_groups, strict=False)  # torch checks
    for g, (group, mine) in enumerate(pairs):
        ids = group.get("params")
        if isinstance(ids, list) and len(ids) == len(mine["params"]):
            params.update((i, p) for i, p in zip(ids, mine["params"], strict=True) if _key(i))
        for name, fresh in mine.items():  # lr, betas, ...: what a fresh optimizer holds
            if name != "params" and not _same_kind(group.get(name, fresh), fresh):
                raise CheckpointError(
                    f"{path}: damaged state (optimizer.param_groups.{g}.{name} is"
                    f" {str(group.get(name))[:40]}, where this optimizer has {fresh!r})"
                )
    for key, entry in saved["state"].items():
        where = f"optimizer.state.{str(key)[:20]}"
        param = params.get(key) if _key(key) else None
        if param is None or not isinstance(entry, dict):
            raise CheckpointError(f"{path}: damaged state ({where} is no parameter's state)")
        for name, value in entry.items():
            if (
                name == "step"
                and _same_kind(value, 0.0)
                or (name, value) == ("momentum_buffer", None)
            ):
                continue  # the step count (a number or a 0-d tensor); SGD without momentum
            fits = isinstance(value, torch.Tensor) and value.is_floating_point()
            if not fits or (value.dim() > 0 and value.shape != param.shape):
                raise CheckpointError(
                    f"{path}: damaged state ({where}.{str(name)[:40]} does not fit its parameter"
                    f" of shape {list(param.shape)})"
                )


def _same_kind(value: Any, like: Any) -> bool:
    """A number for a number (a 0-d tensor too), a flag for a flag, a sequence of such for a
    sequence of the same length; None goes with anything (torch's options that default to
    None, like foreach, are saved resolved)."""
    if value is None or like is None:
        return True
    if isinstance(like, bool) or isinstance(value, bool):
        return isinstance(like, bool) and isinstance(value, bool)
    if isinstance(like, int | float) or isinstance(like, torch.Tensor) and like.dim() == 0:
        return (
            isinstance(value, int | float) or isinstance(value, torch.Tensor) and value.dim() == 0
        )
    if isinstance(like, list | tuple):
        return (
            isinstance(value, list | tuple)
            and len(value) == len(like)
            and all(_same_kind(v, x) for v, x in zip(value, like, strict=True))
        )
    return isinstance(value, type(like))


def _key(value: Any) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def make_summary(
    config: Config,
    setup: Setup,
    state: FitState,
    diagnosis: list[dict[str, str]],
    test_acc: float | None,
) -> dict[str, Any]:
    history = state.history
    val_accs = [m["val_acc"] for m in history]
    return {
        "status": state.status,
        "best_val_acc": max(val_accs) if val_accs else None,
        "final_val_acc": val_accs[-1] if val_accs else None,
        "test_acc": test_acc,
        "best_epoch": state.best_epoch,
        "monitor": config.train.early_stopping.monitor,
        "best_monitor_value": state.best,
        "epochs_run": state.epoch,
        "steps": state.step,
        "train_seconds": round(state.train_seconds, 3),
        "images_per_second": state.images_seen / state.train_seconds if state.train_seconds else 0,
        "device": device_name(setup.device),
        "precision": setup.parts.cfg.precision,  # what ran: train.precision auto resolved
        "loader": type(setup.parts.train_loader).__name__,  # StreamLoader: over max_resident_mb
        "data": setup.bundle.info.record(),  # what reusing the model as a backbone needs
        **({"feature_seconds": round(setup.feature_seconds, 3)} if setup.feature_seconds else {}),
        "versions": {
            "cnnlab": version(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "rollbacks": state.rollbacks,
        "diagnosis": diagnosis,
        "skipped_files": list(setup.bundle.skipped),
    }


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("cnnlab")
    except PackageNotFoundError:
        return "unknown"
