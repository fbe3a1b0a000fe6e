"""What plugs into a run: callbacks (trackers, a sweep's pruner), quiet runs, and failures that
still leave a summary without hiding the first error."""

import json
import logging

import pytest

from cnnlab.training import loop
from cnnlab.training.experiment import Callback, train


class Recording(Callback):
    def __init__(self, prune_after: int | None = None):
        self.events, self.prune_after = [], prune_after

    def on_start(self, run_dir, config):
        self.events.append(("start", run_dir, config.train.epochs))

    def on_epoch(self, metrics):
        self.events.append(("epoch", metrics["epoch"]))
        return "pruned" if metrics["epoch"] == self.prune_after else None

    def on_end(self, run_dir, summary):
        self.events.append(("end", run_dir, summary["status"]))


def test_callbacks_see_the_run_start_every_epoch_and_its_end(quick):
    seen = Recording()
    result = train(quick("train.epochs=2"), quiet=True, callbacks=[seen])
    assert seen.events == [
        ("start", result.path, 2),
        ("epoch", 1),
        ("epoch", 2),
        ("end", result.path, "completed"),
    ]


@pytest.mark.slow
def test_a_callback_prunes_the_run_after_an_epoch_with_its_checkpoint(quick):
    result = train(quick("train.epochs=4"), quiet=True, callbacks=[Recording(prune_after=2)])
    assert result.status == "pruned"
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["status"] == "pruned" and summary["epochs_run"] == 2
    assert summary["test_acc"] is None  # digits has no test split; the run ended cleanly
    assert (result.path / "checkpoints" / "last.ckpt").is_file()


def test_quiet_runs_print_nothing_but_keep_the_log_and_tell_logging(quick, capsys, caplog):
    caplog.set_level(logging.INFO, logger="cnnlab")
    result = train(quick("train.epochs=1"), quiet=True)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert "run: " in (result.path / "log.txt").read_text()
    lines = [r.getMessage() for r in caplog.records if r.name == "cnnlab"]
    assert any(line.startswith("digits: ") for line in lines)  # the header
    assert f"run: {result.path}" in lines


def test_a_failure_writes_a_failed_summary_without_a_test_score_and_raises_itself(
    quick, monkeypatch
):
    original, calls = loop.train_epoch, {"n": 0}

    def second_epoch_fails(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the disk went away")
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", second_epoch_fails)
    scored = {"n": 0}
    monkeypatch.setattr(
        "cnnlab.training.record.Recorder.test_accuracy",
        lambda self: scored.__setitem__("n", scored["n"] + 1),
    )
    seen = Recording()
    with pytest.raises(RuntimeError, match="the disk went away"):
        train(quick("data.name=digits-with-test", "train.epochs=3"), quiet=True, callbacks=[seen])
    run_dir = seen.events[0][1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["epochs_run"] == 1
    assert summary["test_acc"] is None and scored["n"] == 0  # no test evaluation after a failure
    assert seen.events[-1] == ("end", run_dir, "failed")
