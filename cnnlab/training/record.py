"""What a run writes while it trains and when it ends: the header, checkpoints, per-epoch
metrics, the summary with its diagnosis, and the console lines; and how last.ckpt is read back.

Recorder's methods are the loop's outward hooks (checkpoint, restore, log_step, log_epoch); the
trainer (training.experiment) calls begin() before the loop and end() after it.

With several processes every rank has a Recorder and calls it at the same points, but only
rank 0 (world.is_main) writes files, prints and calls the callbacks; the others take part in
the collectives: the per-rank states that go into last.ckpt, and what rank 0 reads back for
them (the checkpoint of a rollback, the best weights for the test score).
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
from cnnlab.data.loader import rank_seed
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.track.console import RunConsole
from cnnlab.track.diagnose import diagnose
from cnnlab.track.rundir import RunDir
from cnnlab.training.device import device_name, seed_everything
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

    @property
    def main(self) -> bool:
        return self.parts.world.is_main

    def begin(self, state: FitState, resumed: bool = False) -> None:
        """config.yaml, model.txt and the header (after a "resuming" line when `resumed`, even
        from step 0); the first checkpoint of a fresh run."""
        if self.main:
            self._header(state, resumed)
        if not resumed:
            self.checkpoint(state, False)  # what a rollback or a resume in epoch 1 goes back to

    def _header(self, state: FitState, resumed: bool) -> None:
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
            f"{device_name(setup.device)}, {_precision(config, self.parts)}"
            f"{processes(config, self.parts.world.size)}",
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

    def checkpoint(self, state: FitState, improved: bool) -> None:
        """best.safetensors when `improved`, and last.ckpt; every rank's own random state
        gathered into it. Written atomically by rank 0 while the others wait, so that no
        rank goes on (or is stopped) before the checkpoint it would resume from exists."""
        world = self.parts.world
        ranks = world.gather(rank_state(self.parts))
        if self.main:
            if improved:
                about = {"config": self.config.to_dict(), "data": self.setup.bundle.info.record()}
                path = self.run.checkpoints / "best.safetensors"
                save_weights(self.parts.eval_model, path, about)
            saved = resume_state(self.config, self.setup, state, ranks)
            save_state(saved, self.run.checkpoints / "last.ckpt")
        world.barrier()

    def restore(self, state: FitState) -> None:
        """Back to last.ckpt (the divergence guard's rollback); rank 0 reads it for all."""
        last = self.run.checkpoints / "last.ckpt"
        saved = self.parts.world.from_main(lambda: load_state(last, RESUME_SHAPE))
        load_resume_state(self.parts, saved, last)
        state.load(saved["fit"])
        if self.main:
            self.run.rewrite_metrics(state.history)

    def log_step(self, info: dict[str, Any]) -> None:
        if not self.main:
            return
        self.out.step(info)
        self.run.log_step(info)
        if not self._hinted and self.setup.device.type == "cpu":
            self._hinted = True  # judged once, at the first logging point
            self._suggest_faster(info)

    def log_epoch(self, metrics: dict[str, Any]) -> None:
        if not self.main:
            return
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
        if not self.main:
            return summary
        self.run.write_summary(summary)
        self.run.log_hparams(self.config.to_dict(), summary)
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
        if test is None:
            return None
        weights = setup.parts.world.from_main(lambda: load_weights(best) if best.exists() else None)
        if weights is None:
            return None
        load_into(setup.parts.eval_model, weights, best)
        return setup.parts.evaluate(setup.test_loader(test)).accuracy


def _precision(config: Config, parts: TrainParts) -> str:
    """'bf16 (auto)', or the precision asked for."""
    asked, used = config.train.precision, parts.cfg.precision
    return f"{used} (auto)" if asked == "auto" else used


def processes(config: Config, world_size: int) -> str:
    """The header's note of a run on several processes: how the global batch is shared."""
    if world_size == 1:
        return ""
    per_rank = config.train.rank_batch(world_size)
    return (
        f" | {world_size} processes: batch {config.train.batch_size} ="
        f" {world_size} × {per_rank} per process"
        f"{', SyncBatchNorm' if config.train.sync_bn else ''}"
    )


def model_label(config: Config) -> str:
    backbone = config.model.backbone
    return config.model.name if backbone is None else f"from {backbone_label(backbone)}"


def rank_state(parts: TrainParts) -> dict[str, Any]:
    """What differs between the ranks of a run on several processes: their random draws."""
    return {"generator": parts.train_loader.generator.get_state(), "rng": rng_state()}


def resume_state(
    config: Config, setup: Setup, state: FitState, ranks: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Everything needed to continue this run bit-exactly after the current epoch; `ranks`:
    every rank's rank_state() of a run on several processes (None on one)."""
    parts = setup.parts
    loader = parts.train_loader.state_dict()
    if ranks is not None:
        loader["generators"] = [r["generator"] for r in ranks]
    saved = {
        "config": config.to_dict(),
        "fit": state.to_dict(),
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "ema": parts.ema.state_dict() if parts.ema is not None else None,
        "data": setup.bundle.info.record(),
        "train_loader": loader,
        "rng": rng_state(),
    }
    if ranks is not None:
        saved["rank_rng"] = [r["rng"] for r in ranks]
    return saved


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
    """Put everything resume_state() saved (read from `path`) back into freshly built parts,
    whatever number of processes saved it and resumes it; a part that does not take its saved
    state is a CheckpointError naming it."""
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
        ("rng", lambda rng: _set_rng(parts.world.rank, rng, saved.get("rank_rng"))),
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


def _set_rng(rank: int, rng: dict[str, Any], ranks: list | None) -> None:
    """Each rank its own saved random state where the saving run had that rank, else one
    derived from rank 0's."""
    rngs = ranks or [rng]
    if rank < len(rngs):
        set_rng_state(rngs[rank])
    else:
        set_rng_state(rng)
        seed_everything(rank_seed(int(torch.randint(2**62, ())), rank))


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
        "device": device_name(setup.device),  # rank 0's, of several processes
        "precision": setup.parts.cfg.precision,  # what ran: train.precision auto resolved
        "processes": setup.parts.world.size,  # data-parallel: images/s counts all of them
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
