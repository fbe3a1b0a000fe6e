"""Write a file so readers see the old version or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_for(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # Some writers (safetensors) create 0600 files; give the usual umask-based mode.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        _fsync_directory(path.parent)  # make the rename itself survive a crash
    except OSError as e:
        # Named by the file being written (the temp is an implementation detail); OSError(errno,
        # ...) is the same subclass again (PermissionError, ...), for callers that tell them apart.
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    finally:
        with contextlib.suppress(OSError):  # a read-only file system refuses even this
            tmp.unlink(missing_ok=True)


def _temp_for(path: Path) -> Path:
    # Unique per call, so two threads or processes writing the same file never share a temp;
    # the pid says whose it is (remove_stale_temps).
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


# What _temp_for names: ".<name>.tmp-<pid>-<8 hex>".
_TEMP = re.compile(r"\..+\.tmp-(\d+)-[0-9a-f]{8}")


def remove_stale_temps(*folders: Path) -> list[Path]:
    """Delete the temporaries that writers killed mid-write left in `folders` (a SIGKILL skips
    atomic_path's cleanup): those whose process no longer runs. The caller holds the folder's
    lock, so no live writer of ours is in there; a temp of a live pid is left alone all the
    same. Returns what was removed."""
    removed = []
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            match = _TEMP.fullmatch(name)
            if match is None or _alive(int(match[1])):
                continue
            with contextlib.suppress(OSError):
                (folder / name).unlink()
                removed.append(folder / name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # it exists, under another user (or is no pid we can ask about)
    return True


def check_writable(folder: Path) -> None:
    """An OSError naming `folder` now when no file can be made in it (read-only, no permission),
    instead of after the work whose results were to go there."""
    probe = _temp_for(folder / "write-probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(folder)) from None
    with contextlib.suppress(OSError):
        probe.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
