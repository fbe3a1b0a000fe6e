"""The writer lock of a run directory: one process writes a run, a second is refused with the
holder's name, and a run whose writer died without a summary lists as `killed`, not `running`."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import yaml

from cnnlab.cli import main
from cnnlab.config.schema import Config
from cnnlab.errors import ConfigError
from cnnlab.track import runs
from cnnlab.track.registry import load_run
from cnnlab.track.rundir import LOCK_NAME, RunDir


def started_run(tmp_path) -> RunDir:
    """A run as the trainer leaves it after its first epoch: config written, no summary yet."""
    run = RunDir.create(tmp_path, "r")
    run.write_text("config.yaml", yaml.safe_dump(Config().to_dict()))
    run.log_epoch({"epoch": 1, "val_acc": 0.5})
    return run


def status_of(root) -> str:
    [row] = runs.index_runs(root)
    return row.status


def test_the_writer_holds_the_lock_and_a_second_writer_is_refused(tmp_path):
    run = started_run(tmp_path)
    holder = json.loads((run.path / LOCK_NAME).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    metrics = (run.path / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError) as e:
        RunDir.reopen(run.path, [])  # a second `cnnlab train --resume` of the same run
    message = str(e.value)
    assert f"pid {os.getpid()}@{socket.gethostname()} (since {holder['since']})" in message
    assert str(run.path) in message and "\n" not in message
    assert (run.path / "metrics.jsonl").read_text() == metrics  # nothing was rewritten
    run.close()
    RunDir.reopen(run.path, []).close()  # released: the next writer may go on


def test_a_running_run_lists_as_running_and_after_close_without_summary_as_killed(tmp_path):
    run = started_run(tmp_path)
    assert status_of(tmp_path) == "running"
    assert load_run(run.path).status == "running"
    run.close()  # the trainer ended without writing summary.json
    assert status_of(tmp_path) == "killed"
    run.write_summary({"status": "interrupted"})
    assert status_of(tmp_path) == "interrupted"


WRITER = """
import sys, time, yaml
from cnnlab.config.schema import Config
from cnnlab.track.rundir import RunDir
run = RunDir.create(sys.argv[1], "victim")
run.write_text("config.yaml", yaml.safe_dump(Config().to_dict()))
print(run.path, flush=True)
time.sleep(60)
"""


def test_a_writer_killed_by_sigkill_leaves_no_stale_lock(tmp_path, capsys):
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        path = writer.stdout.readline().strip()
        assert status_of(tmp_path) == "running"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    assert status_of(tmp_path) == "killed"
    assert main(["runs", "list", "--root", str(tmp_path)]) == 0
    assert "killed" in capsys.readouterr().out
    RunDir.reopen(tmp_path / os.path.basename(path), []).close()  # resumable at once


def test_another_hosts_lock_cannot_be_tested_so_the_run_shows_running_there(tmp_path, capsys):
    run = started_run(tmp_path)
    run.close()
    lock = {"pid": 4242, "host": "gpu-node-7", "since": "2026-01-01 00:00:00"}
    (run.path / LOCK_NAME).write_text(json.dumps(lock))
    assert status_of(tmp_path) == "running"
    assert main(["runs", "list", "--root", str(tmp_path)]) == 0
    assert "running (on gpu-node-7)" in capsys.readouterr().out


def test_a_run_without_lock_or_summary_is_killed(tmp_path):
    run = started_run(tmp_path)
    run.close()
    (run.path / LOCK_NAME).unlink()  # written by hand, or by a cnnlab before the lock
    assert status_of(tmp_path) == "killed"


def test_a_lock_that_is_a_fifo_never_blocks(tmp_path):
    run = started_run(tmp_path)
    run.close()
    (run.path / LOCK_NAME).unlink()
    os.mkfifo(run.path / LOCK_NAME)
    assert status_of(tmp_path) == "killed"
    with pytest.raises(ConfigError, match=LOCK_NAME):
        RunDir.reopen(run.path, [])


def test_a_run_name_longer_than_the_file_system_allows_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"run.name = 'xxx.*: .* more than the 255") as e:
        RunDir.create(tmp_path, "x" * 300)
    assert "\n" not in str(e.value)
    deep = tmp_path / "/".join(["d" * 200] * 25)  # a path past PATH_MAX (4,096 bytes)
    with pytest.raises(ConfigError, match="run.dir"):
        RunDir.create(deep, "r")


def test_close_releases_the_lock_even_while_a_forked_child_lives(tmp_path):
    """DataLoader workers are forked with the lock's descriptor: closing must still free it."""
    run = started_run(tmp_path)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only waits
        signal.pause()
    try:
        run.close()
        assert status_of(tmp_path) == "killed"
        RunDir.reopen(run.path, []).close()
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
