"""Groups of runs: the same config apart from the seed, summarised as mean ± std.

`cnnlab train --seeds N` writes such a group into one folder (its runs plus group.json); `runs
list --group`, `runs compare` and the report find groups among any runs by comparing their
flattened configs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

# Keys that differ between the runs of one group without changing the experiment.
NOT_THE_EXPERIMENT = ("train.seed", "run.name", "run.dir", "track.mlflow")

T = TypeVar("T")


def experiment_key(flat_config: dict[str, Any]) -> str:
    """What two runs of the same experiment share: their config without the seed and names."""
    kept = {k: v for k, v in flat_config.items() if k not in NOT_THE_EXPERIMENT}
    return json.dumps(kept, sort_keys=True, default=str)


def group_by_experiment(
    items: Iterable[T], flat_config: Callable[[T], dict[str, Any]]
) -> list[list[T]]:
    """`items` in groups of equal experiment_key, each group and the groups in first-seen order."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(experiment_key(flat_config(item)), []).append(item)
    return list(groups.values())


@dataclass(frozen=True)
class Stats:
    """One metric over the runs of a group. std is the sample standard deviation (ddof=1, as
    pandas and scipy report it), None for a single run."""

    mean: float
    std: float | None
    min: float
    max: float
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "std": self.std, "min": self.min, "max": self.max, "n": self.n}

    def format(
        self, percent: bool = False, digits: int | None = None, unit: str = "", n: bool = True
    ) -> str:
        """'91.62 ± 0.21 % (n=5)', or '0.3120 ± 0.0040 (n=5)'; `digits` after the point and a
        `unit` for other quantities ('12.3 ± 0.4 s (n=5)'); n=False without the count (a table
        that gives it in the header)."""
        scale, suffix, places = (100.0, " %", 2) if percent else (1.0, unit and f" {unit}", 4)
        places = places if digits is None else digits
        mean = f"{self.mean * scale:.{places}f}"
        spread = "" if self.std is None else f" ± {self.std * scale:.{places}f}"
        count = f" (n={self.n})" if n else ""
        return f"{mean}{spread}{suffix}{count}"


def stats(values: Sequence[Any]) -> Stats | None:
    """Mean, std, min, max and n of the finite numbers in `values`; None when there are none."""
    numbers = [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]
    if not numbers:
        return None
    n = len(numbers)
    mean = math.fsum(numbers) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in numbers) / (n - 1)) if n > 1 else None
    return Stats(mean, std, min(numbers), max(numbers), n)
