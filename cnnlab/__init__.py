"""cnnlab: train, track, compare and diagnose image classifiers on small datasets, fast.

Public API:
    train(config, quiet=False, callbacks=()) -> RunResult
                                    run one training, write its run directory
    resume(run_dir, overrides, quiet=False)
                                    continue a run from its last checkpoint, in its directory
    load_config(files, overrides)   resolve recipe <- YAML files <- key=value overrides
    load_run(path) -> Run           read a run directory back
    sweep(spec, ...) -> DataFrame   tune config keys with Optuna (a spec file, mapping or sweep
                                    directory); one row per trial
Torch is imported only when train() is called, so config tools start instantly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cnnlab.config import Config, load_config
from cnnlab.config.load import validate
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError, DataError
from cnnlab.track.registry import Run, load_run

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import pandas as pd

    from cnnlab.sweeps.spec import Spec
    from cnnlab.training.experiment import Callback, RunResult

__all__ = [
    "CheckpointError",
    "CnnlabError",
    "Config",
    "ConfigError",
    "DataError",
    "Run",
    "load_config",
    "load_run",
    "resume",
    "sweep",
    "train",
]


def train(
    config: Config | dict[str, Any], *, quiet: bool = False, callbacks: Sequence[Callback] = ()
) -> RunResult:
    """Train from a Config (or a plain dict validated as one) and write the run directory.
    quiet: nothing on the terminal (a notebook, a sweep worker); log.txt is written as always.
    callbacks: cnnlab.training.experiment.Callback objects (trackers, a sweep's pruner)."""
    from cnnlab.training.experiment import train as run_training

    if not isinstance(config, Config):
        config = validate(config)
    return run_training(config, quiet=quiet, callbacks=callbacks)


def resume(run_dir: str, overrides: Sequence[str] = (), *, quiet: bool = False) -> RunResult:
    """Continue the run in `run_dir` from checkpoints/last.ckpt (overrides: train.epochs,
    train.max_minutes, train.device)."""
    from cnnlab.training.resume import resume as resume_training

    return resume_training(run_dir, list(overrides), quiet=quiet)


def sweep(
    spec: str | Path | dict[str, Any] | Spec,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    workers: int | None = None,
    storage: str | None = None,
    name: str | None = None,
    quiet: bool = False,
) -> pd.DataFrame:
    """Run (or resume) a sweep, as `cnnlab sweep` does, and return its trials: one row per
    trial (trial, state, the objective, the sampled keys, status, run, seconds, error), as in
    its trials.csv. `spec`: a spec file, a mapping of one, a Spec, or a sweep directory.
    timeout in minutes; quiet: no lines on the terminal."""
    from cnnlab.sweeps.launch import run_sweep
    from cnnlab.sweeps.show import frame

    flags = {"trials": trials, "timeout": timeout, "workers": workers, "storage": storage}
    study, plan, _ = run_sweep(spec, quiet=quiet, name=name, **flags)
    return frame(study, plan)
