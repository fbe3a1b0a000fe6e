"""cnnlab: train, track, compare and diagnose image classifiers on small datasets, fast.

Public API:
    train(config) -> RunResult      run one training, write its run directory
    resume(run_dir, overrides)      continue a run from its last checkpoint, in its directory
    load_config(files, overrides)   resolve recipe <- YAML files <- key=value overrides
    load_run(path) -> Run           read a run directory back
Torch is imported only when train() is called, so config tools start instantly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The subpackage cnnlab.train is imported before the function train() below is defined: Python
# binds a subpackage to its parent's attribute when the subpackage is first imported, which
# would otherwise replace the function. cnnlab/train/__init__.py imports nothing, so this is free.
import cnnlab.train  # noqa: F401  (isort: skip)
from cnnlab.config import Config, load_config
from cnnlab.config.load import validate
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError, DataError
from cnnlab.track.registry import Run, load_run

if TYPE_CHECKING:
    from cnnlab.train.experiment import RunResult

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
    "train",
]


def train(config: Config | dict[str, Any]) -> RunResult:
    """Train from a Config (or a plain dict validated as one) and write the run directory."""
    from cnnlab.train.experiment import train as run_training

    if not isinstance(config, Config):
        config = validate(config)
    return run_training(config)


def resume(run_dir: str, overrides: list[str] = ()) -> RunResult:
    """Continue the run in `run_dir` from checkpoints/last.ckpt (overrides: train.epochs,
    train.max_minutes, train.device)."""
    from cnnlab.train.resume import resume as resume_training

    return resume_training(run_dir, list(overrides))
