import os
import subprocess

import pytest

from cnnlab.atomic import atomic_path, check_writable, remove_stale_temps, write_text_atomic


def test_stale_temporaries_of_dead_writers_are_removed_and_nothing_else(tmp_path):
    dead = _dead_pid()
    stale = [
        tmp_path / f".last.ckpt.tmp-{dead}-0123abcd",
        tmp_path / f".x.json.tmp-{dead}-aaaaaaaa",
    ]
    live = tmp_path / f".y.json.tmp-{os.getppid()}-bbbbbbbb"  # a running process's
    others = [tmp_path / "last.ckpt", tmp_path / "notes.tmp", tmp_path / f".z.tmp-{dead}-nothex!"]
    for path in [*stale, live, *others]:
        path.write_text("x")
    assert sorted(remove_stale_temps(tmp_path, tmp_path / "missing")) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted([live, *others])


def test_a_failed_write_is_named_by_its_file_not_its_temporary(tmp_path):
    target = tmp_path / "summary.json"
    with pytest.raises(OSError) as e, atomic_path(target):
        raise OSError(28, "No space left on device")
    assert e.value.filename == str(target) and e.value.errno == 28
    assert list(tmp_path.iterdir()) == []
    write_text_atomic(target, "{}")
    assert target.read_text() == "{}"


def test_check_writable_names_the_folder(tmp_path):
    check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError) as e:
        check_writable(tmp_path / "missing")
    assert e.value.filename == str(tmp_path / "missing")


def _dead_pid() -> int:
    """The pid of a process that has ended (and, for the moment, nobody else's)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
