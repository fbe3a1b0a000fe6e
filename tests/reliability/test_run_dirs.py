"""Run directories under crashes and hostile storage, as separate processes meet them (issue
27): a run SIGKILLed at random points and resumed each time ends bit-identical to one never
stopped, with no half-written file in between; a full disk and a read-only run directory are
one line and exit 2 with the last checkpoint intact and resumable; two runs started in the
same second never share a directory."""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import pytest
import reliability_forked as forked
import torch
import yaml

from cnnlab.checkpoint import load_state, load_weights

# The fastest deterministic run there is: the embedded digits at 8 px, a 4-wide cnn (about
# 0.3 s an epoch on one core).
TINY = ["model.width=4", "data.image_size=8", "train.deterministic=true"]


def train(tmp_path: Path, name: str, epochs: int, *more: str) -> list[str]:
    return ["train", *TINY, f"train.epochs={epochs}", f"run.dir={tmp_path / 'runs'}",
            f"run.name={name}", *more]  # fmt: skip


def run_dirs(tmp_path: Path, name: str) -> list[Path]:
    return sorted((tmp_path / "runs").glob(f"*-{name}*"))


def temps(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if ".tmp" in p.name]


def check_whole(run: Path) -> None:
    """Every file cnnlab writes in a run directory reads back complete (temporaries aside:
    they are never read, and removed when the run is next opened for writing)."""
    for path in run.rglob("*"):
        if ".tmp" in path.name or not path.is_file() or "tensorboard" in path.parts:
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.name == "metrics.jsonl":
            for line in path.read_text().splitlines():
                json.loads(line)
        elif path.suffix == ".yaml":
            assert isinstance(yaml.safe_load(path.read_text()), dict), path
        elif path.name == "last.ckpt":
            load_state(path)
        elif path.suffix == ".safetensors":
            load_weights(path)


def same_weights(a: Path, b: Path) -> None:
    for name, load in (("best.safetensors", load_weights), ("last.ckpt", load_state)):
        mine, theirs = load(a / "checkpoints" / name), load(b / "checkpoints" / name)
        if name == "last.ckpt":
            mine, theirs = mine["model"], theirs["model"]
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert torch.equal(mine[key], theirs[key]), (name, key)


@pytest.mark.slow
def test_a_run_killed_twenty_times_ends_bit_identical_to_one_never_stopped(tmp_path, capsys):
    epochs, kills, rng = 24, 20, random.Random(27)
    reference = forked.run(train(tmp_path, "whole", epochs), tmp_path / "whole.log")
    assert reference.wait() == 0, reference.output()[-2000:]
    child = forked.start(train(tmp_path, "killed", epochs), tmp_path / "0.log")
    while not list((tmp_path / "runs").glob("*-killed/checkpoints/last.ckpt")):
        time.sleep(0.02)  # the first kill needs something to resume from
    (run,) = run_dirs(tmp_path, "killed")
    done = 0
    for i in range(1, kills + 1):
        # up to ~2 epochs after a resumed child starts: a kill while it reads the checkpoint,
        # while it rewrites the metrics, mid-epoch or mid-write of a checkpoint
        time.sleep(rng.uniform(0.0, 1.0))
        if child.process.exitcode is not None:
            break  # finished before this kill: the rest of the test still holds
        child.kill()
        done += 1
        check_whole(run)
        child = forked.start(["train", "--resume", str(run)], tmp_path / f"{i}.log")
    assert child.wait() == 0, child.output()[-2000:]
    assert done >= kills - 2, f"only {done} kills landed before the run ended"
    with capsys.disabled():
        print(f"\nkill test: {done} SIGKILLs, each resumed; {epochs} epochs")
    assert temps(run) == []  # the resumes removed what the kills left
    check_whole(run)
    same_weights(run, run_dirs(tmp_path, "whole")[0])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_last_checkpoint_stays_resumable(tmp_path):
    first = forked.run(train(tmp_path, "full", 1), tmp_path / "first.log")
    assert first.wait() == 0, first.output()[-2000:]
    (run,) = run_dirs(tmp_path, "full")
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    # a file may grow to half a checkpoint: the next last.ckpt cannot be written
    resume = ["train", "--resume", str(run), "train.epochs=2"]
    full = forked.run(resume, tmp_path / "full.log", max_file_bytes=len(before) // 2)
    assert full.wait() == 2, full.output()[-2000:]
    (line,) = full.stderr_lines()
    assert "last.ckpt" in line and "File too large" in line, line
    assert "Traceback" not in full.output()
    assert last.read_bytes() == before
    assert temps(run) == []
    again = forked.run(resume, tmp_path / "again.log")
    assert again.wait() == 0, again.output()[-2000:]
    assert "resuming after epoch 1" in again.output()


@pytest.mark.slow
def test_a_read_only_run_directory_is_one_line_for_every_command_that_writes(tmp_path):
    first = forked.run(train(tmp_path, "ro", 1), tmp_path / "first.log")
    assert first.wait() == 0, first.output()[-2000:]
    (run,) = run_dirs(tmp_path, "ro")
    if not forked.can_mount_read_only(run):
        pytest.skip("no mount namespaces here (needs root or user namespaces)")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    commands = {
        "resume": ["train", "--resume", str(run), "train.epochs=2"],
        "eval": ["eval", str(run)],
        "report": ["report", str(run)],
        "viz": ["viz", "filters", str(run)],
        "robustness": ["robustness", str(run), "--limit", "16"],
    }
    for what, argv in commands.items():
        child = forked.run(argv, tmp_path / f"{what}.log", read_only=run)
        assert child.wait() == 2, (what, child.output()[-2000:])
        assert "Traceback" not in child.output(), what
        (line,) = child.stderr_lines()
        assert str(run) in line and "Read-only file system" in line, (what, line)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    again = forked.run(commands["resume"], tmp_path / "again.log")
    assert again.wait() == 0, again.output()[-2000:]


@pytest.mark.slow
def test_two_runs_started_in_the_same_second_get_two_directories(tmp_path):
    argv = train(tmp_path, "twin", 1)
    children = [forked.start(argv, tmp_path / f"{i}.log") for i in range(2)]
    assert [c.wait() for c in children] == [0, 0], [c.output()[-1000:] for c in children]
    runs = run_dirs(tmp_path, "twin")
    assert len(runs) == 2
    stamps = {r.name.split("-twin")[0] for r in runs}
    assert len(stamps) == 1 or all(r.name.endswith(("-twin", "-twin-2")) for r in runs)
    for run in runs:
        rows = (run / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(r)["epoch"] for r in rows] == [1]  # neither wrote into the other


@pytest.mark.slow
def test_a_killed_writers_temporaries_are_removed_when_the_run_is_resumed(tmp_path):
    first = forked.run(train(tmp_path, "tmp", 1), tmp_path / "first.log")
    assert first.wait() == 0
    (run,) = run_dirs(tmp_path, "tmp")
    dead = forked.run(["--version"], tmp_path / "dead.log").process.pid  # a pid no one holds
    left = [
        run / "checkpoints" / f".last.ckpt.tmp-{dead}-0123abcd",
        run / "checkpoints" / f".best.safetensors.tmp-{dead}-4567cdef",
        run / f".summary.json.tmp-{dead}-89abcdef",
    ]
    for path in left:
        path.write_bytes(b"half a file")
    mine = run / "notes.tmp"  # not a cnnlab temporary: never touched
    mine.write_text("keep")
    resumed = forked.run(["train", "--resume", str(run), "train.epochs=2"], tmp_path / "r.log")
    assert resumed.wait() == 0, resumed.output()[-2000:]
    assert not any(p.exists() for p in left)
    assert mine.read_text() == "keep"


@pytest.mark.slow
def test_the_kill_test_compares_what_it_says(tmp_path):
    """same_weights and check_whole fail on what they are meant to catch."""
    runs = tmp_path / "copy"
    first = forked.run(train(tmp_path, "a", 1), tmp_path / "a.log")
    assert first.wait() == 0
    (run,) = run_dirs(tmp_path, "a")
    shutil.copytree(run, runs)
    same_weights(run, runs)
    other = forked.run(train(tmp_path, "b", 1, "train.seed=1"), tmp_path / "b.log")
    assert other.wait() == 0
    with pytest.raises(AssertionError):
        same_weights(run, run_dirs(tmp_path, "b")[0])
    torn = runs / "checkpoints" / "last.ckpt"
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    with pytest.raises(Exception):  # noqa: B017 - whatever the reader raises on a torn file
        check_whole(runs)
