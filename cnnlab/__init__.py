"""cnnlab: train, track, compare and diagnose image classifiers on small datasets, fast.

Public API:
    train(config) -> RunResult      run one training, write its run directory
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
    "train",
]


def train(config: Config | dict[str, Any]) -> RunResult:
    """Train from a Config (or a plain dict validated as one) and write the run directory."""
    from cnnlab.train.experiment import train as run_training

    if not isinstance(config, Config):
        config = validate(config)
    return run_training(config)
