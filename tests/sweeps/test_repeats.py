"""cnnlab train --seeds: a group folder of one run per seed, and each metric's mean ± std."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.sweeps.repeats import parse_seeds
from cnnlab.track.registry import load_run


@pytest.mark.slow
def test_seeds_3_is_a_group_whose_mean_and_std_are_numpys(tmp_path, capsys):
    argv = ["train", "--seeds", "3", "data.name=digits-with-test", "train.epochs=1"]
    argv += ["model.width=4", f"run.dir={tmp_path}"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    (group,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert out[-1] == f"group: {group}"
    runs = [load_run(p) for p in sorted(p for p in group.iterdir() if p.is_dir())]
    assert [r.config["train"]["seed"] for r in runs] == [0, 1, 2]
    record = json.loads((group / "group.json").read_text())
    for key in ("test_acc", "best_val_acc", "final_val_acc", "train_seconds"):
        values = np.array([r.summary[key] for r in runs])
        got = record["metrics"][key]
        assert got["mean"] == pytest.approx(values.mean())
        assert got["std"] == pytest.approx(values.std(ddof=1))
        assert (got["min"], got["max"], got["n"]) == (values.min(), values.max(), 3)
    test = np.array([r.summary["test_acc"] for r in runs]) * 100
    assert f"test_acc {test.mean():.2f} ± {test.std(ddof=1):.2f} % (n=3)" in out
    assert [row["seed"] for row in record["runs"]] == [0, 1, 2]


@pytest.mark.parametrize(
    ("text", "first", "seeds"), [("3", 0, [0, 1, 2]), ("2", 10, [10, 11]), ("4,1,7", 0, [4, 1, 7])]
)
def test_seeds_are_a_count_from_train_seed_or_a_list(text, first, seeds):
    assert parse_seeds(text, first) == seeds


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--seeds", "x"], "--seeds 'x': expected a count (5) or a list of seeds (0,1,2)"),
        (["--seeds", "0"], "--seeds '0': expected at least 1 seed"),
        (["--seeds", "1,1"], "--seeds '1,1': a seed is listed twice"),
        (["--seeds", "2", "--resume", "runs/x"], "--seeds starts new runs"),
    ],
    ids=["not-a-number", "zero", "twice", "with-resume"],
)
def test_a_bad_seeds_flag_is_one_line_and_exit_2(tmp_path, capsys, argv, says):
    assert main(["train", *argv, f"run.dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
    assert not any(tmp_path.iterdir())


def test_parse_seeds_raises_config_errors():
    with pytest.raises(ConfigError):
        parse_seeds("-1")
