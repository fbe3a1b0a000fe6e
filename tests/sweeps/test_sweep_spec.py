# ruff: noqa: E501  (one bad spec per line reads best as a table)
"""Every bad spec is refused before anything runs: exit 2, one line naming the spec file and
the key, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.sweeps.spec import load_spec

LR = {"low": 1.0e-3, "high": 0.1, "log": True}

# (id, spec keys, what the one line must say)
BAD = [
    ("unknown-key", {"space": {"optim.lr": LR}, "trails": 3}, "unknown key trails — did you mean trials?"),
    ("no-space", {"trials": 3}, "space: expected a mapping"),
    ("empty-space", {"space": {}, "trials": 3}, "space: Dictionary should have at least 1 item"),
    ("unknown-config-key", {"space": {"optim.lrr": LR}}, "space.optim.lrr: not a config key — did you mean optim.lr?"),
    ("section-not-key", {"space": {"optim": [1, 2]}}, "space.optim: not a config key (a section, not a key)"),
    ("managed-key", {"space": {"run.dir": ["a", "b"]}}, "space.run.dir: the sweep sets run.dir itself"),
    ("low-above-high", {"space": {"optim.lr": {"low": 0.1, "high": 0.01}}, "trials": 3}, "low 0.1 > high 0.01"),
    ("log-low-zero", {"space": {"optim.lr": {"low": 0, "high": 0.1, "log": True}}, "trials": 3}, "a log scale needs low > 0"),
    ("log-low-negative", {"space": {"train.batch_size": {"low": -8, "high": 64, "log": True}}, "trials": 3}, "a log scale needs low > 0"),
    ("empty-choices", {"space": {"optim.name": {"choices": []}}}, "space.optim.name.choices"),
    ("empty-list", {"space": {"optim.name": []}}, "space.optim.name.choices"),
    ("twice-listed", {"space": {"optim.name": ["adam", "adam"]}}, "choice 'adam' is listed twice"),
    ("bad-type", {"space": {"optim.lr": {"type": "floatt", "low": 0.1, "high": 1}}}, "expected one of float, int, categorical — did you mean float?"),
    ("range-typo", {"space": {"optim.lr": {"low": 0.001, "high": 0.1, "logg": True}}}, "unknown key space.optim.lr.logg — did you mean log?"),
    ("int-step-zero", {"space": {"train.batch_size": {"low": 16, "high": 64, "step": 0}}, "trials": 3}, "space.train.batch_size.step = 0"),
    ("int-log-step", {"space": {"train.batch_size": {"low": 16, "high": 64, "step": 16, "log": True}}, "trials": 3}, "log needs step 1"),
    ("float-log-step", {"space": {"optim.lr": {"low": 0.001, "high": 0.1, "step": 0.01, "log": True}}, "trials": 3}, "log and step exclude each other"),
    ("untyped-text-range", {"space": {"data.name": {"low": 1, "high": 2}}, "trials": 3}, "space.data.name: give type: float or int"),
    ("scalar-entry", {"space": {"optim.lr": 0.1}}, "space.optim.lr: expected a list of values or a mapping"),
    ("float-as-int", {"space": {"train.epochs": {"low": 1.5, "high": 3}}, "trials": 3}, "space.train.epochs.low = 1.5"),
    ("bad-sampler", {"space": {"optim.lr": LR}, "sampler": "tpee", "trials": 3}, "sampler.name = 'tpee': expected one of grid, random, tpe, qmc — did you mean tpe?"),
    ("sampler-option-typo", {"space": {"optim.lr": LR}, "sampler": {"name": "tpe", "n_startup": 3}, "trials": 3}, "unknown key sampler.n_startup — did you mean n_startup_trials?"),
    ("sampler-option-of-another", {"space": {"optim.lr": LR}, "sampler": {"name": "random", "n_startup_trials": 3}, "trials": 3}, "unknown key sampler.n_startup_trials"),
    ("sampler-not-a-name", {"space": {"optim.lr": LR}, "sampler": 3, "trials": 3}, "sampler: expected a name or a mapping with name:, got 3"),
    ("bad-pruner", {"space": {"optim.lr": LR}, "pruner": "mediann", "trials": 3}, "pruner.name = 'mediann': expected one of none, median, hyperband — did you mean median?"),
    ("pruner-negative", {"space": {"optim.lr": LR}, "pruner": {"name": "median", "n_warmup_steps": -1}, "trials": 3}, "pruner.n_warmup_steps = -1"),
    ("hyperband-factor", {"space": {"optim.lr": LR}, "pruner": {"name": "hyperband", "reduction_factor": 1}, "trials": 3}, "pruner.reduction_factor = 1"),
    ("unknown-metric", {"space": {"optim.lr": LR}, "objective": {"metric": "val_accuracy"}, "trials": 3}, "objective.metric = 'val_accuracy'"),
    ("metric-did-you-mean", {"space": {"optim.lr": LR}, "objective": {"metric": "test_accc"}, "trials": 3}, "did you mean test_acc?"),
    ("bad-direction", {"space": {"optim.lr": LR}, "objective": {"metric": "val_acc", "direction": "up"}, "trials": 3}, "objective.direction = 'up'"),
    ("objective-typo", {"space": {"optim.lr": LR}, "objective": {"metrc": "val_acc"}, "trials": 3}, "unknown key objective.metrc — did you mean metric?"),
    ("repeats-zero", {"space": {"optim.lr": LR}, "repeats": 0, "trials": 3}, "repeats = 0"),
    ("trials-zero", {"space": {"optim.lr": LR}, "trials": 0}, "trials = 0"),
    ("workers-zero", {"space": {"optim.lr": LR}, "workers": 0, "trials": 3}, "workers = 0"),
    ("timeout-negative", {"space": {"optim.lr": LR}, "timeout": -1}, "timeout = -1"),
    ("no-budget", {"space": {"optim.lr": LR}}, "trials: a tpe sweep needs trials: N or timeout: MIN"),
    ("grid-float-range", {"space": {"optim.lr": LR}, "sampler": "grid"}, "sampler grid: a grid needs the values"),
    ("grid-too-big", {"space": {k: list(range(1, 12)) for k in ("model.width", "train.epochs", "train.batch_size", "train.accumulate")}}, "the grid has more than 10,000 points"),
    ("when-unknown-key", {"space": {"optim.name": ["adam", "sgd"], "optim.momentum": {"low": 0.5, "high": 0.9, "when": {"optim.nam": "sgd"}}}, "trials": 3}, "space.optim.momentum.when: optim.nam must be a list or choices key above optim.momentum"),
    ("when-later-key", {"space": {"optim.momentum": {"low": 0.5, "high": 0.9, "when": {"optim.name": "sgd"}}, "optim.name": ["adam", "sgd"]}, "trials": 3}, "optim.name must be a list or choices key above"),
    ("when-not-a-choice", {"space": {"optim.name": ["adam", "sgd"], "optim.momentum": {"low": 0.5, "high": 0.9, "when": {"optim.name": "sgdd"}}}, "trials": 3}, "optim.name = 'sgdd' is not one of its choices"),
    ("value-out-of-range", {"space": {"optim.momentum": [0.9, 1.5]}}, "space.optim.momentum = 1.5: optim.momentum = 1.5: Input should be less than 1"),
    ("range-end-invalid", {"space": {"optim.lr": {"low": 0.0, "high": 0.1}}, "trials": 3}, "space.optim.lr = 0.0: optim.lr = 0.0: Input should be greater than 0"),
    ("unknown-optimizer", {"space": {"optim.name": ["adam", "sgdd"]}}, "unknown optimizer 'sgdd' — did you mean sgd?"),
    ("unknown-model", {"space": {"model.name": ["cnn", "resnet99"]}}, "space.model.name = 'resnet99': model.name: unknown model"),
    ("unknown-dataset", {"space": {"data.name": ["digits", "digitz"]}}, "unknown dataset 'digitz' — did you mean digits?"),
    ("base-unknown-key", {"space": {"optim.lr": LR}, "trials": 3, "base": {"overrides": {"optim.lrr": 0.1}}}, "base: unknown key optim.lrr — did you mean optim.lr?"),
    ("base-bad-value", {"space": {"optim.lr": LR}, "trials": 3, "base": {"overrides": {"train.epochs": 0}}}, "base: train.epochs = 0"),
    ("base-missing-file", {"space": {"optim.lr": LR}, "trials": 3, "base": {"config": ["missing.yaml"]}}, "missing.yaml: config file not found"),
    ("base-typo", {"space": {"optim.lr": LR}, "trials": 3, "base": {"recipie": "default"}}, "unknown key base.recipie — did you mean recipe?"),
    ("base-unknown-recipe", {"space": {"optim.lr": LR}, "trials": 3, "base": {"recipe": "nope"}}, "recipe: unknown recipe 'nope'"),
    ("prune-without-epochs", {"space": {"optim.lr": LR}, "trials": 3, "pruner": "median", "objective": {"metric": "train_seconds"}}, "pruner median: objective.metric train_seconds has no per-epoch value"),
    ("seed-with-repeats", {"space": {"train.seed": [1, 2]}, "repeats": 2}, "space.train.seed: with repeats each trial trains seeds of its own"),
    ("bad-name", {"space": {"optim.lr": LR}, "trials": 3, "name": "my sweep/1"}, "name = 'my sweep/1'"),
]  # fmt: skip


@pytest.mark.parametrize(("keys", "says"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_spec_is_one_line_and_exit_2(spec_file, tmp_path, capsys, keys, says):
    path = spec_file(**keys)
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"cnnlab: error: {path}: "), err
    assert says in err, err
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.parametrize(
    ("text", "says"),
    [("- a\n- b\n", "expected a mapping of sections, got list"), ("space: [\n", "not valid YAML")],
    ids=["not-a-mapping", "not-yaml"],
)
def test_unreadable_spec_file(tmp_path, capsys, text, says):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and str(path) in err, err


def test_cli_flags_are_validated_like_the_spec(spec_file, capsys):
    path = spec_file(space={"optim.lr": LR}, trials=3)
    assert main(["sweep", str(path), "--workers", "0"]) == 2
    assert "workers = 0" in capsys.readouterr().err


def test_short_forms_are_read_as_their_long_forms(spec_file):
    plan = load_spec(
        spec_file(
            space={
                "optim.lr": {"low": 1.0e-4, "high": 0.1, "log": True},
                "train.batch_size": {"low": 16, "high": 64, "step": 16},
                "optim.name": ["adam", "sgd"],
                "optim.momentum": {"low": 0.5, "high": 0.9, "when": {"optim.name": "sgd"}},
                "augment.train": [[], [{"op": "flip"}]],
            },
            sampler="random",
            pruner="median",
            trials=4,
        )
    )
    space = plan.spec.space
    assert space["optim.lr"].type == "float"  # from the schema: optim.lr is a float
    assert space["train.batch_size"].type == "int"
    assert space["optim.name"].choices == ["adam", "sgd"]
    assert space["optim.momentum"].when == {"optim.name": ["sgd"]}
    assert plan.spec.sampler == {"name": "random"} and plan.spec.pruner == {"name": "median"}
    assert plan.spec.name == "sweep"  # the file's stem
    assert plan.spec.objective.metric == "val_acc" and not plan.spec.objective.minimize
    assert plan.base["train"]["epochs"] == 1  # the base config, resolved


def test_lists_only_make_a_grid_and_losses_are_minimised(spec_file):
    plan = load_spec(spec_file(space={"optim.lr": [0.01, 0.02]}, objective={"metric": "val_loss"}))
    assert plan.spec.is_grid
    assert plan.spec.objective.minimize


def test_yaml_floats_without_a_dot_are_numbers(tmp_path):
    """PyYAML reads 1e-3 as text; a choice like that is still the number."""
    path = tmp_path / "spec.yaml"
    path.write_text(
        f"base: {{overrides: {{run.dir: {tmp_path}}}}}\nspace:\n  optim.lr: [1e-3, 1e-2]\n"
    )
    plan = load_spec(path)
    assert plan.spec.space["optim.lr"].choices == [0.001, 0.01]


@pytest.mark.parametrize(
    "example", sorted((Path(__file__).parents[2] / "examples").glob("sweep-*.yaml")), ids=str
)
def test_the_shipped_example_specs_pass_the_checks(example):
    load_spec(example)  # README's worked sweep must stay runnable as written
