"""cnnlab commands in child processes forked from a server that imported cnnlab once.

A fresh interpreter takes 5-8 s on the 2-core CI machine to import torch; a child of
multiprocessing's forkserver, preloaded with cnnlab, starts training in well under a second. So
a test can start a run, SIGKILL it and resume it twenty times, or run a command under a
file-size limit or on a read-only mount, as a user's separate process would. The server never
runs torch code itself, so its children fork clean (no thread pool to inherit).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import resource
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

PRELOAD = ["cnnlab.cli", "cnnlab.training.resume", "cnnlab.analyze.trained", "reliability_forked"]
_CONTEXT = None

# mount(2) flags (linux/mount.h) and unshare(2)'s CLONE_NEWNS (linux/sched.h)
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
CLONE_NEWNS = 0x00020000


def context() -> multiprocessing.context.BaseContext:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


@dataclass
class Child:
    """A cnnlab command running in a forked child; its stdout and stderr go to `log`."""

    process: multiprocessing.process.BaseProcess
    log: Path

    def wait(self, timeout: float = 120) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
            raise TimeoutError(f"still running after {timeout} s: {self.output()[-2000:]}")
        return self.process.exitcode

    def kill(self) -> None:
        """SIGKILL: no handler, no finally, no atexit runs."""
        self.process.kill()
        self.process.join()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stderr_lines(self) -> list[str]:
        """What the command printed as an error (stdout and stderr share the log)."""
        return [line for line in self.output().splitlines() if line.startswith("cnnlab: error")]


def start(
    argv: list[str],
    log: Path,
    *,
    cwd: Path | None = None,
    max_file_bytes: int | None = None,
    read_only: Path | None = None,
) -> Child:
    """`cnnlab ARGV` in a child. max_file_bytes: RLIMIT_FSIZE (a write past it fails with
    EFBIG: a full disk as a process sees it); read_only: that folder mounted read-only in the
    child's own mount namespace (needs root or user namespaces; see can_mount_read_only)."""
    env = dict(os.environ)  # the server kept the environment of the test that started it
    args = (
        argv,
        str(log),
        str(cwd or os.getcwd()),
        env,
        max_file_bytes,
        read_only and str(read_only),
    )
    process = context().Process(target=_main, args=args, daemon=True)
    process.start()
    return Child(process, log)


def run(argv: list[str], log: Path, **kwargs) -> Child:
    child = start(argv, log, **kwargs)
    child.wait()
    return child


def _main(argv, log, cwd, env, max_file_bytes, read_only) -> None:
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the child's stdout until _exit
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    code = 1
    try:
        if read_only is not None:
            mount_read_only(Path(read_only))
        if max_file_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
        from cnnlab.cli import main

        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - a traceback is an outcome the test reads
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def mount_read_only(folder: Path) -> None:
    """Bind-mount `folder` over itself read-only, in this process's own mount namespace (root
    ignores file modes, so chmod cannot make a folder read-only for it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    steps = (
        (None, b"/", MS_REC | MS_PRIVATE),  # nothing done here leaks to the parent's mounts
        (str(folder).encode(), str(folder).encode(), MS_BIND),
        (None, str(folder).encode(), MS_REMOUNT | MS_BIND | MS_RDONLY),
    )
    for source, target, flags in steps:
        if libc.mount(source, target, None, flags, None) != 0:
            raise OSError(ctypes.get_errno(), f"mount {target!r}")


def can_mount_read_only(folder: Path) -> bool:
    child = start(["--version"], folder.parent / "probe.log", read_only=folder)
    return child.wait(60) in (0, 2) and "mount" not in child.output()
