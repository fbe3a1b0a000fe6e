"""What a run tells its user as it starts: the faster recipe when a CPU run will take long."""

import pytest

from cnnlab.config import load_config
from cnnlab.training import record
from cnnlab.training.experiment import train


@pytest.mark.slow
def test_a_long_cpu_run_names_the_cpu_recipe_once(quick, monkeypatch):
    monkeypatch.setattr(record, "LONG_ON_CPU_S", 0.0)  # every run is "long"
    result = train(quick("train.epochs=2"), quiet=True)
    log = (result.path / "log.txt").read_text()
    assert log.count("recipe=cpu-fast is made for CPUs") == 1
    assert "this run will train for about" in log


@pytest.mark.slow
def test_no_hint_for_short_runs_or_the_cpu_recipe_itself(quick, tmp_path, monkeypatch):
    short = train(quick("train.epochs=1"), quiet=True)  # seconds, far under the threshold
    assert "recipe=cpu-fast" not in (short.path / "log.txt").read_text()
    monkeypatch.setattr(record, "LONG_ON_CPU_S", 0.0)
    fast_config = load_config(
        overrides=["recipe=cpu-fast", "train.epochs=1", "data.val_split=0.2", f"run.dir={tmp_path}"]
    )
    fast = train(fast_config, quiet=True)
    assert "recipe=cpu-fast is made" not in (fast.path / "log.txt").read_text()


def test_the_first_line_of_a_run_says_where_the_data_was_read_from(quick):
    result = train(quick("train.epochs=1"), quiet=True)
    first = (result.path / "log.txt").read_text().splitlines()[0]
    assert first.startswith("digits read from ")
