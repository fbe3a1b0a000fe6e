"""A sweep's spec (one YAML file) as validated, frozen pydantic models.

    name: lr-wd                          # the study; default: the spec file's stem
    base: {recipe: cpu-fast, config: [my.yaml], overrides: {train.epochs: 5}}
    space:
      optim.lr: {low: 1.0e-4, high: 0.1, log: true}    # float or int from the config key's type
      train.batch_size: [64, 128]                       # a bare list: grid values / choices
      optim.momentum: {low: 0.8, high: 0.99, when: {optim.name: sgd}}
    sampler: tpe                         # grid | random | tpe | qmc, or {name: tpe, seed: 0}
    pruner: median                       # none | median | hyperband, or {name: median, ...}
    objective: {metric: val_acc, direction: maximize}
    repeats: 1                           # seeds per trial; the objective is their mean
    trials: 20                           # the study's trial budget, over every worker

Every key and value is checked before anything runs (load_spec): unknown keys with a
did-you-mean, ranges, that each space key is a config key, and that the base config with each
range end and each choice validates. Errors are one line naming the spec file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cnnlab.config.load import load_config, read_yaml_file
from cnnlab.config.schema import Config, valid_keys
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.registry import did_you_mean
from cnnlab.sweeps.space import TYPES, ChoiceParam, Param, grid_points, probe_overrides

# Summary keys an objective may name (summary.json's numbers); per-epoch metrics are the
# trainer's EPOCH_METRICS, scored by their best epoch in the objective's direction.
SUMMARY_METRICS = (
    "test_acc",
    "best_val_acc",
    "final_val_acc",
    "best_monitor_value",
    "epochs_run",
    "train_seconds",
)
# Keys a sweep sets itself: where each trial's run goes, and (with repeats) its seed.
MANAGED = ("run.dir", "run.name")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Base(_Strict):
    recipe: str | None = None
    config: list[str] = []  # YAML files, relative to the spec file
    overrides: dict[str, Any] = {}  # {train.epochs: 5}, or a list of "key=value"

    @field_validator("config", mode="before")
    @classmethod
    def _one_file(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("overrides", mode="before")
    @classmethod
    def _pairs(cls, v: Any) -> Any:
        if isinstance(v, list) and all(isinstance(x, str) and "=" in x for x in v):
            return {k.strip(): yaml.safe_load(raw) for k, _, raw in (x.partition("=") for x in v)}
        return v


# Sampler and pruner options: None leaves Optuna's own default.
class GridSampler(_Strict):
    name: Literal["grid"] = "grid"


class RandomSampler(_Strict):
    name: Literal["random"] = "random"
    seed: int | None = None


class TPESampler(_Strict):
    name: Literal["tpe"] = "tpe"
    seed: int | None = None
    n_startup_trials: int | None = Field(default=None, ge=0)
    multivariate: bool | None = None


class QMCSampler(_Strict):
    name: Literal["qmc"] = "qmc"
    seed: int | None = None
    qmc_type: Literal["sobol", "halton"] | None = None
    scramble: bool | None = None


class NoPruner(_Strict):
    name: Literal["none"] = "none"


class MedianPruner(_Strict):
    name: Literal["median"] = "median"
    n_startup_trials: int | None = Field(default=None, ge=0)  # trials before any pruning
    n_warmup_steps: int | None = Field(default=None, ge=0)  # epochs of a trial never pruned
    interval_steps: int | None = Field(default=None, ge=1)


class HyperbandPruner(_Strict):
    name: Literal["hyperband"] = "hyperband"
    min_resource: int | None = Field(default=None, ge=1)  # epochs
    max_resource: int | Literal["auto"] | None = None
    reduction_factor: int | None = Field(default=None, ge=2)


SAMPLERS: dict[str, type[_Strict]] = {
    "grid": GridSampler,
    "random": RandomSampler,
    "tpe": TPESampler,
    "qmc": QMCSampler,
}
PRUNERS: dict[str, type[_Strict]] = {
    "none": NoPruner,
    "median": MedianPruner,
    "hyperband": HyperbandPruner,
}


class Objective(_Strict):
    metric: str = "val_acc"
    direction: Literal["maximize", "minimize"] | None = None  # None: minimize losses and times

    @property
    def minimize(self) -> bool:
        if self.direction is not None:
            return self.direction == "minimize"
        return self.metric.endswith("loss") or self.metric.endswith("seconds")


class Spec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    dir: str | None = None  # the sweep directory; None: <base run.dir>/<name>
    base: Base = Base()
    space: dict[str, Param] = Field(min_length=1)
    sampler: dict[str, Any] = {"name": "tpe"}  # one of SAMPLERS' models, as its dump
    pruner: dict[str, Any] = {"name": "none"}
    objective: Objective = Objective()
    repeats: int = Field(default=1, ge=1)
    trials: int | None = Field(default=None, ge=1)
    timeout: float | None = Field(default=None, gt=0.0)  # minutes of this invocation
    workers: int = Field(default=1, ge=1)
    storage: str | None = None  # RDB URL or journal file; None: <dir>/study.journal
    retries: int = Field(default=2, ge=0)  # re-runs of a trial whose worker died
    heartbeat: int = Field(default=10, ge=1)  # seconds; RDB storages (a dead worker's trial)

    @property
    def is_grid(self) -> bool:
        return self.sampler["name"] == "grid"


class Plan:
    """A validated spec and the resolved base config every trial starts from."""

    def __init__(self, spec: Spec, base: dict[str, Any], source: str = "spec"):
        self.spec, self.base, self.source = spec, base, source

    def stored(self) -> dict[str, Any]:
        """What the study keeps, so a worker on any machine needs no files."""
        return {"spec": self.spec.model_dump(mode="json"), "base": self.base}

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> Plan:
        return cls(Spec.model_validate(stored["spec"]), stored["base"], "the study")

    def sweep_dir(self) -> Path:
        return Path(self.spec.dir or Path(self.base["run"]["dir"]) / self.spec.name)


def load_spec(source: str | Path | dict[str, Any] | Spec, **flags: Any) -> Plan:
    """Read and check a spec (a YAML path, a mapping or a Spec); `flags` (trials, timeout,
    workers, storage, name) replace the spec's values where not None."""
    if isinstance(source, Spec):
        raw, where, folder = source.model_dump(mode="json"), "spec", Path.cwd()
    elif isinstance(source, dict):
        raw, where, folder = dict(source), "spec", Path.cwd()
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"{path}: spec file not found")
        raw, where, folder = read_yaml_file(path), str(path), path.parent
        raw.setdefault("name", path.stem)
    raw |= {k: v for k, v in flags.items() if v is not None}
    try:
        spec = _validate(_normalise(raw, where), where)
        return Plan(spec, _check_config(spec, where, folder), where)
    except (ValueError, CnnlabError) as e:
        if isinstance(e, ConfigError) and str(e).startswith(f"{where}:"):
            raise
        raise ConfigError(f"{where}: {e}") from None


def _normalise(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Short forms -> the models' forms: sampler/pruner names, bare lists, inferred types."""
    for unknown in sorted(set(raw) - set(Spec.model_fields), key=str):
        hint = did_you_mean(str(unknown), list(Spec.model_fields))
        raise ConfigError(f"{where}: unknown key {unknown}{hint}")
    for key, table in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if key in raw:
            raw[key] = _named(raw[key], table, key)
    space = raw.get("space")
    if not isinstance(space, dict):
        got = "nothing" if space is None else type(space).__name__
        raise ValueError(f"space: expected a mapping of config keys to ranges or lists, got {got}")
    raw["space"] = {str(k): _entry(str(k), v) for k, v in space.items()}
    if "sampler" not in raw:  # lists only: a grid, which every value of them names
        bare = all(isinstance(v, list) for v in space.values())
        raw["sampler"] = {"name": "grid" if bare else "tpe"}
    return raw


def _named(value: Any, table: dict[str, type[_Strict]], key: str) -> dict[str, Any]:
    options = {"name": value} if isinstance(value, str) else value
    if not isinstance(options, dict):
        raise ValueError(f"{key}: expected a name or a mapping with name:, got {value!r}")
    options = dict(options)
    name = options.get("name")
    if name not in table:
        hint = did_you_mean(name, list(table)) if isinstance(name, str) else ""
        raise ValueError(f"{key}.name = {name!r}: expected one of {', '.join(table)}{hint}")
    try:
        return table[name].model_validate(options).model_dump(exclude_none=True)
    except ValidationError as e:
        raise ValueError(_describe(e, f"{key}.")) from None


def _entry(key: str, value: Any) -> Any:
    """A space entry with its type: a bare list is categorical; a range takes float or int
    from the config key's type in the schema."""
    leaves = _leaf_types()
    if key not in leaves:
        known = [k for k in valid_keys() if k in leaves]
        section = " (a section, not a key)" if key in valid_keys() else ""
        raise ValueError(f"space.{key}: not a config key{section}{did_you_mean(key, known)}")
    if key in MANAGED:
        raise ValueError(f"space.{key}: the sweep sets {key} itself (each trial's run)")
    if isinstance(value, list):
        return {"type": "categorical", "choices": value}
    if not isinstance(value, dict):
        raise ValueError(
            f"space.{key}: expected a list of values or a mapping (low/high or choices), "
            f"got {value!r}"
        )
    value = dict(value)
    if "type" in value:
        if value["type"] not in TYPES:
            hint = did_you_mean(str(value["type"]), list(TYPES))
            given = f"space.{key}.type = {value['type']!r}"
            raise ValueError(f"{given}: expected one of {', '.join(TYPES)}{hint}")
    elif "choices" in value:
        value["type"] = "categorical"
    elif leaves[key] in ("float", "int"):
        value["type"] = leaves[key]
    else:
        raise ValueError(f"space.{key}: give type: float or int (the key takes {leaves[key]})")
    return value


def _leaf_types() -> dict[str, str]:
    """Every settable leaf key -> 'float', 'int' or another type's name."""
    types = {}
    for key in valid_keys():
        model: Any = Config
        *sections, name = key.split(".")
        for section in sections:
            model = model.model_fields[section].annotation
        annotation = model.model_fields[name].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            continue
        kinds = {a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None)}
        kind = next(iter(kinds)) if len(kinds) == 1 else annotation
        types[key] = getattr(kind, "__name__", str(kind))
    return types


def _validate(raw: dict[str, Any], where: str) -> Spec:
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as e:
        raise ValueError(_describe(e)) from None
    keys = list(spec.space)
    for i, (key, entry) in enumerate(spec.space.items()):
        for other, allowed in entry.when.items():
            earlier = spec.space.get(other) if other in keys[:i] else None
            if not isinstance(earlier, ChoiceParam):
                raise ValueError(
                    f"space.{key}.when: {other} must be a list or choices key above {key}"
                )
            for value in allowed:
                if value not in earlier.choices:
                    raise ValueError(
                        f"space.{key}.when: {other} = {value!r} is not one of its choices "
                        f"{earlier.choices}"
                    )
    if spec.repeats > 1 and "train.seed" in spec.space:
        raise ValueError("space.train.seed: with repeats each trial trains seeds of its own")
    if spec.is_grid:
        try:
            grid_points(spec.space)
        except ValueError as e:
            raise ValueError(f"sampler grid: {e}") from None
    elif spec.trials is None and spec.timeout is None:
        raise ValueError(f"trials: a {spec.sampler['name']} sweep needs trials: N or timeout: MIN")
    _check_objective(spec)
    return spec


def _check_objective(spec: Spec) -> None:
    from cnnlab.training.experiment import EPOCH_METRICS

    metric, known = spec.objective.metric, [*EPOCH_METRICS, *SUMMARY_METRICS]
    if metric not in known:
        raise ValueError(
            f"objective.metric = {metric!r}: expected a per-epoch metric "
            f"({', '.join(EPOCH_METRICS)}) or a summary key ({', '.join(SUMMARY_METRICS)})"
            + did_you_mean(metric, known)
        )
    if spec.pruner["name"] != "none" and intermediate_metric(spec, "val_acc") is None:
        raise ValueError(
            f"pruner {spec.pruner['name']}: objective.metric {metric} has no per-epoch value "
            "to prune on (use val_acc, val_loss, test_acc, best_val_acc, ... or pruner: none)"
        )


def intermediate_metric(spec: Spec, monitor: str) -> str | None:
    """The per-epoch metric a trial reports for pruning: the objective's own, val_acc for the
    accuracies of the summary, the early-stopping `monitor` for best_monitor_value."""
    from cnnlab.training.experiment import EPOCH_METRICS

    metric = spec.objective.metric
    if metric in EPOCH_METRICS and metric not in SUMMARY_METRICS:
        return metric
    return {
        "test_acc": "val_acc",
        "best_val_acc": "val_acc",
        "final_val_acc": "val_acc",
        "best_monitor_value": monitor,
    }.get(metric)


def _check_config(spec: Spec, where: str, folder: Path) -> dict[str, Any]:
    """The resolved base config; each range end and choice on it must validate too."""
    base = spec.base
    files = [p if Path(p).is_absolute() else str(folder / p) for p in base.config]
    given = [f"recipe={base.recipe}"] if base.recipe is not None else []
    from cnnlab.sweeps.space import overrides as as_overrides

    given += as_overrides(base.overrides)
    try:
        config = load_config(files, given)
    except ConfigError as e:
        raise ConfigError(f"{where}: base: {e}") from None
    for key, value, probe in probe_overrides(spec.space):
        try:
            load_config(files, [*given, *probe])
            _check_name(key, value)
        except ConfigError as e:
            raise ConfigError(f"{where}: space.{key} = {value!r}: {e}") from None
    return config.to_dict()


def _check_name(key: str, value: Any) -> None:
    """A registry name in the space (optim.name: [adam, sgdd]) is checked as the trainer would."""
    if key == "data.name":
        from cnnlab.data import SOURCES

        SOURCES.get(value)
    elif key == "model.name" and not (isinstance(value, str) and ":" in value):
        from cnnlab.models import MODELS

        MODELS.get(value)
    elif key == "optim.name":
        from cnnlab.training.optim import OPTIMIZERS

        OPTIMIZERS.get(value)
    elif key == "schedule.name":
        from cnnlab.training.schedule import SCHEDULES

        SCHEDULES.get(value)


def _describe(error: ValidationError, prefix: str = "") -> str:
    """The first problem as one line: the spec key, the value, what was expected."""
    first = error.errors()[0]
    loc = [str(p) for p in first["loc"] if str(p) not in TYPES]
    key = prefix + ".".join(loc)
    if first["type"] == "extra_forbidden":
        return f"unknown key {key}{_hint(key)}"
    if first["type"] == "missing":
        return f"{key}: missing"
    message = first["msg"].removeprefix("Value error, ")
    shown = first["input"]
    return f"{key} = {shown!r}: {message}" if not isinstance(shown, dict) else f"{key}: {message}"


def _hint(key: str) -> str:
    """did-you-mean among the keys a spec's mapping at `key` may hold."""
    head, _, last = key.rpartition(".")
    options: list[str] = []
    if head.startswith("space."):
        options = ["type", "low", "high", "log", "step", "choices", "when"]
    elif head in ("base", "objective"):
        options = list((Base if head == "base" else Objective).model_fields)
    elif head in ("sampler", "pruner"):
        options = sorted(
            {f for m in (*SAMPLERS.values(), *PRUNERS.values()) for f in m.model_fields}
        )
    return did_you_mean(last, options)
