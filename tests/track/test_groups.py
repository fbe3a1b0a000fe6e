"""track.groups: runs of one experiment found by config, and mean ± std as numpy gives it."""

import numpy as np
import pytest

from cnnlab.track.groups import experiment_key, group_by_experiment, stats


def test_runs_that_differ_only_by_seed_and_name_are_one_experiment():
    a = {"optim.lr": 0.1, "train.seed": 0, "run.name": "a", "run.dir": "x"}
    b = {"optim.lr": 0.1, "train.seed": 1, "run.name": "b", "run.dir": "y"}
    c = {"optim.lr": 0.2, "train.seed": 0, "run.name": "a", "run.dir": "x"}
    assert experiment_key(a) == experiment_key(b) != experiment_key(c)
    assert group_by_experiment([a, c, b], lambda f: f) == [[a, b], [c]]


@pytest.mark.parametrize("values", [[0.9162, 0.9141, 0.9180], [0.5, 0.7], [1, 2, 3, 4, 5]])
def test_stats_match_numpy(values):
    s = stats(values)
    assert s.mean == pytest.approx(np.mean(values))
    assert s.std == pytest.approx(np.std(values, ddof=1))
    assert (s.min, s.max, s.n) == (min(values), max(values), len(values))


def test_stats_skip_missing_and_non_finite_values_and_format():
    s = stats([0.9, None, float("nan"), "x", True, 0.92])
    assert s.n == 2
    assert s.format(percent=True) == "91.00 ± 1.41 % (n=2)"
    assert stats([0.5]).std is None and stats([0.5]).format() == "0.5000 (n=1)"
    assert stats([None]) is None
