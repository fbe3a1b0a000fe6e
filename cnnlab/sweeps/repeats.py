"""Repeats: one config trained with several seeds, kept together in a group folder, summarised
as each metric's mean ± std.

    <run.dir>/<stamp>-<name>-seeds/
      <stamp>-<name>-seed0/ ...   ordinary run directories, one per seed
      group.json                  {"seeds", "metrics": {key: {mean, std, min, max, n}}, "runs"}

`cnnlab train --seeds 5` writes one; a sweep with `repeats: R` writes one per trial.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.atomic import write_text_atomic
from cnnlab.config import Config
from cnnlab.config.load import validate
from cnnlab.errors import ConfigError
from cnnlab.track.groups import Stats, stats
from cnnlab.track.rundir import new_folder
from cnnlab.track.sweepdir import GROUP_JSON

if TYPE_CHECKING:
    from cnnlab.training.experiment import Callback, RunResult

# summary.json numbers a group summarises, in the order group.json and the printout list them.
METRICS = (
    "best_val_acc",
    "final_val_acc",
    "test_acc",
    "best_monitor_value",
    "best_epoch",
    "epochs_run",
    "train_seconds",
    "images_per_second",
)
ACCURACIES = ("best_val_acc", "final_val_acc", "test_acc")  # printed in percent
PRINTED = (*ACCURACIES, "train_seconds")


def parse_seeds(text: str, first: int = 0) -> list[int]:
    """'5' -> five seeds from `first` on; '0,1,2' -> those seeds."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(
            f"--seeds {text!r}: expected a count (5) or a list of seeds (0,1,2)"
        ) from None
    if len(numbers) == 1:
        if numbers[0] < 1:
            raise ConfigError(f"--seeds {text!r}: expected at least 1 seed")
        return list(range(first, first + numbers[0]))
    if len(set(numbers)) < len(numbers):
        raise ConfigError(f"--seeds {text!r}: a seed is listed twice")
    return numbers


@dataclass(frozen=True)
class Group:
    path: Path
    results: list[RunResult]
    seeds: list[int]

    @property
    def stats(self) -> dict[str, Stats]:
        found = {key: stats([r.summary.get(key) for r in self.results]) for key in METRICS}
        return {key: s for key, s in found.items() if s is not None}

    def lines(self) -> list[str]:
        """'test_acc 91.62 ± 0.21 % (n=5)', one line per printed metric that has values."""
        found = self.stats
        return [f"{key} {_format(key, found[key])}" for key in PRINTED if key in found]

    def record(self) -> dict[str, Any]:
        runs = [
            {
                "run": r.path.name,
                "seed": seed,
                "status": r.status,
                **{key: r.summary.get(key) for key in METRICS},
            }
            for r, seed in zip(self.results, self.seeds, strict=False)
        ]
        return {
            "seeds": self.seeds,
            "metrics": {key: s.to_dict() for key, s in self.stats.items()},
            "runs": runs,
        }


def _format(key: str, s: Stats) -> str:
    if key in ACCURACIES:
        return s.format(percent=True)
    return s.format(digits=1, unit="s")


def group_folder(root: str | Path, name: str) -> Path:
    """A new folder <root>/<stamp>-<name>-seeds (never an existing one)."""
    return new_folder(root, f"{name}-seeds", kind="groups")


def with_seed(config: Config, seed: int, folder: Path, name: str) -> Config:
    data = config.to_dict()
    data["train"]["seed"] = seed
    data["run"]["dir"], data["run"]["name"] = str(folder), f"{name}-seed{seed}"
    return validate(data)


def train_seeds(
    config: Config,
    seeds: Sequence[int],
    *,
    folder: Path | None = None,
    name: str | None = None,
    quiet: bool = False,
    callbacks: Callable[[int], Sequence[Callback]] = lambda i: (),
    stop_on: Sequence[str] = ("interrupted",),
) -> Group:
    """Train `config` once per seed into `folder` (default: a new group folder under run.dir),
    group.json rewritten after each run. Stops early after a run whose status is in `stop_on`
    (Ctrl-C; a sweep adds pruned and diverged); a run that raises stops the group, with
    group.json holding the runs before it. callbacks(i): the Callbacks of the i-th run."""
    from cnnlab.training.experiment import default_name, train

    name = name or config.run.name or default_name(config)
    folder = folder or group_folder(config.run.dir, name)
    folder.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    for i, seed in enumerate(seeds):
        result = train(with_seed(config, seed, folder, name), quiet=quiet, callbacks=callbacks(i))
        results.append(result)
        group = Group(folder, list(results), list(seeds)[: len(results)])
        write_text_atomic(folder / GROUP_JSON, json.dumps(group.record(), indent=2) + "\n")
        if result.status in stop_on:
            break
    return Group(folder, results, list(seeds)[: len(results)])
