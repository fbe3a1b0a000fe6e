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
Torch is imported only when train() is called, and pydantic only when a config is first
used (the names are loaded on first use, PEP 562), so `cnnlab runs list` starts in ~0.2 s.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cnnlab.errors import CheckpointError, CnnlabError, ConfigError, DataError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import pandas as pd

    from cnnlab.config import Config, load_config
    from cnnlab.sweeps.spec import Spec
    from cnnlab.track.registry import Run, load_run
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
_HOMES = {
    "Config": "cnnlab.config.schema",
    "load_config": "cnnlab.config.load",
    "Run": "cnnlab.track.registry",
    "load_run": "cnnlab.track.registry",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def train(
    config: Config | dict[str, Any], *, quiet: bool = False, callbacks: Sequence[Callback] = ()
) -> RunResult:
    """Train from a Config (or a plain dict validated as one) and write the run directory.
    quiet: nothing on the terminal (a notebook, a sweep worker); log.txt is written as always.
    callbacks: cnnlab.training.experiment.Callback objects (trackers, a sweep's pruner)."""
    from cnnlab.config.load import validate
    from cnnlab.config.schema import Config
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
