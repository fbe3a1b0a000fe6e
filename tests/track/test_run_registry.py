"""load_run: read a run directory back (what every command other than `train` works from).

(Named test_run_registry.py, not test_registry.py: tests/ has no __init__.py files, so two
test modules with the same basename cannot be collected together.)
"""

import pytest
import yaml

from cnnlab.config.schema import Config
from cnnlab.errors import CnnlabError
from cnnlab.track.registry import load_run
from cnnlab.track.rundir import RunDir


def written_run(tmp_path):
    run = RunDir.create(tmp_path, "r")
    config = Config().to_dict()
    run.write_text("config.yaml", yaml.safe_dump(config))
    metrics = [
        {"epoch": 1, "train_loss": 1.0, "val_acc": 0.5},
        {"epoch": 2, "train_loss": 0.5, "val_acc": 0.75},
    ]
    for m in metrics:
        run.log_epoch(m)
    run.close()
    summary = {"status": "completed", "best_val_acc": 0.75, "best_epoch": 2}
    run.write_summary(summary)
    return run, config, summary, metrics


def test_load_run_reads_config_summary_and_metrics(tmp_path):
    run, config, summary, metrics = written_run(tmp_path)
    loaded = load_run(run.path)
    assert loaded.path == run.path
    assert loaded.config == config
    assert Config.model_validate(loaded.config) == Config()  # re-runnable
    assert loaded.summary == summary
    assert loaded.metrics == metrics


def test_load_run_accepts_a_string_path(tmp_path):
    run, *_ = written_run(tmp_path)
    assert load_run(str(run.path)).summary["status"] == "completed"


def test_a_run_still_going_has_no_summary_yet(tmp_path):
    run = RunDir.create(tmp_path, "r")
    run.write_text("config.yaml", yaml.safe_dump(Config().to_dict()))
    loaded = load_run(run.path)
    assert loaded.summary == {} and loaded.metrics == []


def test_directory_without_config_yaml_is_a_cnnlab_error(tmp_path):
    with pytest.raises(CnnlabError, match="not a run directory") as e:
        load_run(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_missing_directory_is_a_cnnlab_error(tmp_path):
    with pytest.raises(CnnlabError, match="not a run directory"):
        load_run(tmp_path / "nope")


@pytest.mark.parametrize(
    "name,text",
    [
        ("summary.json", "{not json"),
        ("metrics.jsonl", '{"epoch": 1}\n{trunc'),
        ("config.yaml", "a: ["),
    ],
)
def test_corrupt_files_are_a_cnnlab_error_naming_the_run(tmp_path, name, text):
    run, *_ = written_run(tmp_path)
    (run.path / name).write_text(text)
    with pytest.raises(CnnlabError, match="unreadable run directory") as e:
        load_run(run.path).metrics  # noqa: B018 - metrics.jsonl is read when first used
    assert str(run.path) in str(e.value) and name in str(e.value)


def test_blank_lines_in_metrics_are_ignored(tmp_path):
    run, *_ = written_run(tmp_path)
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write("\n\n")
    assert [m["epoch"] for m in load_run(run.path).metrics] == [1, 2]
