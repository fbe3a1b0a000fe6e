"""The search space: one entry per config key, each a float or int range or a list of choices,
optionally active only when earlier choices have given values (`when: {optim.name: sgd}`).

Optuna's parameter names are the config keys themselves ("optim.lr"), so a trial's params read
as overrides. Optuna's categorical choices must be None, bool, int, float or str: a choice that
is a list or mapping (an augment.train policy, a model.layers list) goes to Optuna as its JSON
text and comes back decoded.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GRID_LIMIT = 10_000  # points; a bigger grid is surely a typo (or wants sampler random)
# A float YAML 1.1 reads as text ("1e-4" lacks the dot it wants): a number here.
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Active only when each of these earlier categorical keys has (one of) these values.
    when: dict[str, list[Any]] = {}

    @field_validator("when", mode="before")
    @classmethod
    def _listed(cls, v: Any) -> Any:
        if isinstance(v, dict):
            listed = {k: x if isinstance(x, list) else [x] for k, x in v.items()}
            return {k: [_number(x) for x in xs] for k, xs in listed.items()}
        return v

    def active(self, chosen: dict[str, Any]) -> bool:
        """Whether this key is sampled, given the (decoded) values chosen so far."""
        return all(key in chosen and chosen[key] in allowed for key, allowed in self.when.items())


class FloatParam(_Entry):
    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False
    step: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step is not None:
            raise ValueError("log and step exclude each other (Optuna samples one or the other)")
        return self

    def probes(self) -> list[Any]:
        return [self.low, self.high]

    def grid(self) -> list[Any]:
        if self.step is None:
            raise ValueError("a grid needs the values: a list, or a float range with a step")
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [round(self.low + i * self.step, 12) for i in range(count)]

    def suggest(self, trial: Any, key: str) -> Any:
        return trial.suggest_float(key, self.low, self.high, log=self.log, step=self.step)


class IntParam(_Entry):
    type: Literal["int"] = "int"
    low: int
    high: int
    step: int = Field(default=1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("log needs step 1 (Optuna samples one or the other)")
        return self

    def probes(self) -> list[Any]:
        return [self.low, self.high]

    def grid(self) -> list[Any]:
        return list(range(self.low, self.high + 1, self.step))

    def suggest(self, trial: Any, key: str) -> Any:
        return trial.suggest_int(key, self.low, self.high, step=self.step, log=self.log)


class ChoiceParam(_Entry):
    type: Literal["categorical"] = "categorical"
    choices: list[Any] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _distinct(cls, v: list[Any]) -> list[Any]:
        v = [_number(c) for c in v]
        codes = [encode(c) for c in v]
        twice = sorted({c for c in codes if codes.count(c) > 1}, key=str)
        if twice:
            raise ValueError(f"choice {twice[0]!r} is listed twice")
        return v

    def probes(self) -> list[Any]:
        return list(self.choices)

    def grid(self) -> list[Any]:
        return [encode(c) for c in self.choices]

    def suggest(self, trial: Any, key: str) -> Any:
        return decode(trial.suggest_categorical(key, self.grid()), self.choices)


Param = Annotated[FloatParam | IntParam | ChoiceParam, Field(discriminator="type")]
TYPES = ("float", "int", "categorical")


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value) else value


def _check_range(low: float, high: float, log: bool) -> None:
    if low > high:
        raise ValueError(f"low {low:g} > high {high:g}")
    if log and low <= 0:
        raise ValueError(f"a log scale needs low > 0 (low is {low:g})")


def encode(choice: Any) -> Any:
    """A choice as Optuna stores it: itself, or the JSON text of a list or mapping."""
    if choice is None or isinstance(choice, bool | int | float | str):
        return choice
    return json.dumps(choice, sort_keys=True)


def decode(stored: Any, choices: list[Any]) -> Any:
    for choice in choices:
        if encode(choice) == stored:
            return choice
    raise ValueError(f"{stored!r} is not one of the choices {choices}")


def config_values(space: dict[str, Param], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's Optuna params -> config values (choices decoded), in the space's order."""
    values = {}
    for key, entry in space.items():
        if key in params:
            stored = params[key]
            values[key] = (
                decode(stored, entry.choices) if isinstance(entry, ChoiceParam) else stored
            )
    return values


def suggest(trial: Any, space: dict[str, Param]) -> dict[str, Any]:
    """Sample the active keys in order; returns config values."""
    chosen: dict[str, Any] = {}
    for key, entry in space.items():
        if entry.active(chosen):
            chosen[key] = entry.suggest(trial, key)
    return chosen


def grid_points(space: dict[str, Param]) -> list[dict[str, Any]]:
    """Every combination of the keys' values as Optuna params, each exactly once: a key whose
    condition fails is left out of a point rather than repeated with each of its values."""
    points: list[dict[str, Any]] = [{}]
    for key, entry in space.items():
        grown = []
        for point in points:
            if entry.active(config_values(space, point)):
                grown += [point | {key: value} for value in entry.grid()]
            else:
                grown.append(point)
        points = grown
        if len(points) > GRID_LIMIT:
            raise ValueError(f"the grid has more than {GRID_LIMIT:,} points")
    return points


def overrides(values: dict[str, Any]) -> list[str]:
    """Config values as `key=value` overrides that read back as the same values."""
    return [f"{key}={_yaml_scalar(value)}" for key, value in values.items()]


def _yaml_scalar(value: Any) -> str:
    # safe_dump writes 1e-05 as 1.0e-05 and quotes "3" or "true", so YAML reads back the
    # same type; a scalar's dump ends with the document-end marker "...".
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000)
    return text.removesuffix("\n...\n").strip()


def probe_overrides(space: dict[str, Param]) -> Iterator[tuple[str, Any, list[str]]]:
    """(key, value, overrides) for each range end and each choice of each key, with the keys
    its condition names set to allowed values: what spec validation tries on the base."""
    for key, entry in space.items():
        needs = {k: allowed[0] for k, allowed in entry.when.items()}
        for value in entry.probes():
            yield key, value, overrides(needs | {key: value})
