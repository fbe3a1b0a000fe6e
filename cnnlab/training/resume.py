"""resume(run_dir) -> RunResult: continue a run from checkpoints/last.ckpt, in its directory.

last.ckpt holds everything the run needs to go on exactly (see record.resume_state); this
module decides whether a run may be resumed, and with which changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_type_hints

from rich.console import Console

from cnnlab.checkpoint import check_shape, load_state
from cnnlab.config import Config, load_config
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError
from cnnlab.track.registry import read_summary
from cnnlab.track.rundir import RunDir
from cnnlab.training.device import kernel_mode
from cnnlab.training.distributed import joined
from cnnlab.training.experiment import EPOCH_METRICS, RunResult, build, console, run
from cnnlab.training.loop import FitState
from cnnlab.training.record import RESUME_SHAPE, load_resume_state

# What `--resume` may change: budgets and placement, nothing that shapes the training.
RESUMABLE_CHANGES = ("train.epochs", "train.max_minutes", "train.device")
# last.ckpt's "fit": FitState's fields with their annotated types, checked before it is loaded.
FIT_SHAPE = get_type_hints(FitState)
HISTORY_ROW = {"epoch": int, **dict.fromkeys(EPOCH_METRICS, float)}  # one epoch's metrics row


def resume(
    run_dir: str | Path,
    overrides: list[str] = (),
    terminal: Console | None = None,
    *,
    quiet: bool = False,
) -> RunResult:
    """Continue the run in `run_dir` from its last checkpoint, in the same directory. Only
    RESUMABLE_CHANGES may be overridden, e.g. train.epochs=30 to train on past its end. Under
    torchrun, on any number of processes: rank 0 reads the checkpoint for all of them."""
    path = Path(run_dir)
    with joined() as world:
        config, saved, state = world.from_main(lambda: prepare(path, overrides))
        device = world.device(config.train.device)
        with kernel_mode(config.train.deterministic):
            setup = build(config, device, world)
            load_resume_state(setup.parts, saved, path / "checkpoints" / "last.ckpt")
            directory = RunDir.reopen(path, state.history) if world.is_main else RunDir(path)
            return run(config, setup, directory, state, console(terminal, quiet), resumed=True)


def prepare(path: Path, overrides: list[str] = ()) -> tuple[Config, dict[str, Any], FitState]:
    """The config, saved state and FitState a resume of `path` continues from, or a
    ConfigError saying why the run cannot (or need not) be resumed so."""
    last = path / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise ConfigError(
            f"--resume {path}: no checkpoints/last.ckpt there (not a cnnlab run directory?)"
        )
    saved = load_state(last, RESUME_SHAPE)
    _check_fit(saved["fit"], last)
    try:
        saved_config = load_config(base=saved["config"])
    except ConfigError as e:
        raise CheckpointError(f"{last}: damaged state (its config: {e})") from None
    config = load_config(overrides=overrides, base=saved["config"])
    # both sides as the schema resolves them, so a key the schema added since is no change
    _refuse_changes(saved_config.to_dict(), config.to_dict())
    state = FitState()
    state.load(saved["fit"])
    _refuse_finished(path, state, config)
    state.status = "running"
    return config, saved, state


def _check_fit(fit: dict[str, Any], last: Path) -> None:
    """FitState(**fit) will take it: known fields, each of its type (one an older cnnlab did not
    write keeps its default)."""
    unknown = [k for k in fit if k not in FIT_SHAPE]
    if unknown:
        raise CheckpointError(f"{last}: damaged state (fit.{str(unknown[0])[:60]} is not a field)")
    check_shape(fit, {k: v for k, v in FIT_SHAPE.items() if k in fit}, last, "fit.")
    for i, row in enumerate(fit.get("history", [])):  # what the summary and the curves read
        check_shape(row, HISTORY_ROW, last, f"fit.history.{i}.")


def _refuse_finished(path: Path, state: FitState, config: Config) -> None:
    """A run that ended for a reason resuming would not change gets an error, not a no-op."""
    rule, more = config.train.early_stopping, f"train.epochs={state.epoch + 10}"
    if state.epoch >= config.train.epochs and state.partial is None:
        why = f"completed after {state.epoch} epochs; to train on, raise train.epochs (e.g. {more})"
    elif rule.patience is not None and state.bad_epochs >= rule.patience:
        why = f"early_stopped at epoch {state.epoch} ({rule.monitor} stopped improving)"
    elif _summary_status(path) == "diverged":
        why = "diverged, and resuming would repeat it; start a new run with a lower optim.lr"
    else:
        return
    raise ConfigError(f"--resume {path}: the run {why}")


def _summary_status(path: Path) -> str | None:
    try:
        return read_summary(path / "summary.json").get("status")
    except CnnlabError:  # damaged: resuming decides from last.ckpt alone
        return None


def _refuse_changes(before: dict[str, Any], after: dict[str, Any]) -> None:
    changed = [k for k in _diff(before, after) if k not in RESUMABLE_CHANGES]
    if changed:
        raise ConfigError(
            f"--resume: {changed[0]} cannot change in a resumed run (only "
            f"{', '.join(RESUMABLE_CHANGES)} can); start a new run with -c <run>/config.yaml"
        )


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in a for k in _diff(a[key], b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]
