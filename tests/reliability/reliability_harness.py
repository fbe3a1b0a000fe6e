"""Run generated bad inputs through the real CLI and sort each outcome into issue 27's classes.

A case is (argv, files to create, expectation). Generators (functions of a seeded
random.Random that yield cases) live in the reliability_*_cases modules, each listing its own in
GENERATORS; adding a kind of input (run directories, checkpoints) is one more such module.

Every case runs in its own directory: its files are written, the tree is hashed, then
`cnnlab.cli.main(argv)` runs in-process with stdout and stderr captured and a 30 s alarm (or,
for a case marked `isolate`, in a subprocess killed after 30 s). The outcome is one of:

    clean error        exit 2 and exactly one stderr line, "cnnlab: error: ...", holding every
                       fragment the case names (the key, file or value at fault)
    accepted           exit 0 where the input is valid (stdout holding what the case names)
    traceback          an uncaught exception (exit 1)
    hang               still running after 30 s
    payload ran        a hostile pickle/YAML created the case's marker file
    files changed      a command that failed added, removed or changed a file of the case
    wrong outcome      anything else: exit 0 for a bad input, an error for a good one, a
                       message of several lines or not naming the problem, exit 3 ...
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import multiprocessing
import os
import signal
import subprocess
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

from cnnlab.track.runindex import INDEX_NAME

HANG_SECONDS = 30
MARKER = "PAYLOAD-RAN"  # a hostile input's payload creates this file in the case directory
# Caches a command may (re)write even when it fails; they are not run directories or inputs.
# The run index: a cache of the runs under a root, rebuilt when missing (README "Comparing runs").
CACHE_NAMES = frozenset(
    {INDEX_NAME, f"{INDEX_NAME}-journal", f"{INDEX_NAME}-wal", f"{INDEX_NAME}-shm"}
)

# What a case file is: its bytes, in which "{tmp}" and "{marker}" stand for the case directory
# and the marker file (only where lengths are not encoded: text, not pickles); or a function
# of (path, marker) that makes the file (a FIFO, a link, a pickle naming the marker) and may
# return bytes to write there instead.
Content = bytes | Callable[[Path, Path], bytes | None]


@dataclass(frozen=True)
class Case:
    kind: str  # "override", "config-file", "filter", "idx", "cifar", "arrays", "folder", ...
    label: str  # what was tried, in a few words, for the failure list
    argv: tuple[str, ...]  # cnnlab's arguments; "{tmp}" is the case directory
    files: Mapping[str, Content] = field(default_factory=dict)  # relative path -> content
    expect: str = "error"  # "error" | "accept" | "either"
    names: tuple[str, ...] = ()  # fragments the error line (or stdout, if accepted) must hold
    isolate: bool = False  # run in a subprocess with a hard 30 s limit


Generator = Callable[[Random], Iterable[Case]]

OUTCOMES = (
    "clean error",
    "accepted",
    "traceback",
    "hang",
    "payload ran",
    "files changed",
    "wrong outcome",
)
FAILURES = OUTCOMES[2:]


@dataclass(frozen=True)
class Result:
    case: Case
    outcome: str
    detail: str  # the error line, the traceback's last line, what differed


class _Hang(BaseException):
    """Raised by the alarm; a BaseException so that no `except Exception` in cnnlab eats it."""


def generate(generators: Iterable[Generator], seed: int = 27) -> list[Case]:
    """Every generator's cases, each generator with its own seeded Random (adding one does
    not change the cases of the others)."""
    return [case for gen in generators for case in gen(Random(f"{seed}:{gen.__qualname__}"))]


def run_cases(cases: Iterable[Case], root: Path) -> list[Result]:
    """Every case, on as many forked processes as there are cores (at most 4): each case has
    its own directory and process state is what a case must not depend on anyway. A case's
    files may be functions (not picklable), so the children get them by inheritance and send
    back only (outcome, detail)."""
    cases = list(cases)
    jobs = min(4, len(os.sched_getaffinity(0)))
    if jobs < 2 or len(cases) < 200:
        return [run_case(case, root / f"case-{i:04d}") for i, case in enumerate(cases)]
    global _FORKED
    _FORKED = (cases, root)
    try:
        with multiprocessing.get_context("fork").Pool(jobs, initializer=_one_thread) as pool:
            found = pool.map(_run_forked, range(len(cases)), chunksize=8)
    finally:
        _FORKED = None
    return [
        Result(case, outcome, detail) for case, (outcome, detail) in zip(cases, found, strict=True)
    ]


_FORKED: tuple[list[Case], Path] | None = None  # what run_cases' children inherit


def _one_thread() -> None:
    """A forked child has none of the parent's OpenMP threads; a parallel region would wait on
    them forever. One thread, as torch's DataLoader workers run."""
    import torch

    torch.set_num_threads(1)


def _run_forked(i: int) -> tuple[str, str]:
    cases, root = _FORKED
    result = run_case(cases[i], root / f"case-{i:04d}")
    return result.outcome, result.detail


def run_case(case: Case, where: Path) -> Result:
    where.mkdir(parents=True)
    for rel, content in case.files.items():
        _make(where / rel, content, where)
    before = snapshot(where)
    marker = str(where / MARKER)
    argv = [arg.replace("{tmp}", str(where)).replace("{marker}", marker) for arg in case.argv]
    code, out, err, crash = (_in_subprocess if case.isolate else _in_process)(argv)
    changed = _diff(before, snapshot(where)) if code != 0 else ""
    return Result(case, *_classify(case, code, out, err, crash, (where / MARKER).exists(), changed))


def _classify(
    case: Case, code: int | None, out: str, err: str, crash: str, payload: bool, changed: str
) -> tuple[str, str]:
    lines = err.splitlines()
    if payload:
        return "payload ran", crash or err
    if code is None:
        return "hang", f"still running after {HANG_SECONDS} s"
    if crash:
        return "traceback", crash
    if changed:
        return "files changed", changed
    if code == 2 and case.expect in ("error", "either"):
        if len(lines) != 1 or not lines[0].startswith("cnnlab: error: "):
            return "wrong outcome", f"stderr of {len(lines)} lines: {err[:300]!r}"
        missing = [n for n in case.names if n not in lines[0]]
        if missing:
            return "wrong outcome", f"error does not name {missing}: {lines[0][:300]}"
        return "clean error", lines[0]
    if code == 0 and case.expect in ("accept", "either"):
        missing = [n for n in case.names if n not in out] if case.expect == "accept" else []
        if missing:
            return "wrong outcome", f"accepted, but stdout lacks {missing}"
        return "accepted", ""
    return "wrong outcome", f"exit {code}, expected {case.expect}: {err[-300:]!r}"


def _in_process(argv: list[str]) -> tuple[int | None, str, str, str]:
    from cnnlab.cli import main

    out, err = io.StringIO(), io.StringIO()

    def alarm(signum, frame):
        raise _Hang

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    crash = ""
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except _Hang:
        code = None
    except SystemExit as e:  # argparse: usage errors exit 2 after printing the usage
        code = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - every escape from main is what we count
        code = 1
        crash = "".join(traceback.format_exception_only(type(e), e)).strip()[-500:]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), err.getvalue(), crash


def _in_subprocess(argv: list[str]) -> tuple[int | None, str, str, str]:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cnnlab", *argv],
            capture_output=True,
            text=True,
            timeout=HANG_SECONDS,
            env=os.environ.copy(),
        )
    except subprocess.TimeoutExpired:
        return None, "", "", ""
    crash = proc.stderr.strip().splitlines()[-1] if "Traceback" in proc.stderr else ""
    return proc.returncode, proc.stdout, proc.stderr, crash


def _make(path: Path, content: Content, where: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if callable(content):
        data = content(path, where / MARKER)
    else:
        data = content.replace(b"{tmp}", str(where).encode())
        data = data.replace(b"{marker}", str(where / MARKER).encode())
    if data is not None:
        path.write_bytes(data)


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> what it is: a regular file's sha256, a link's target, or its type.
    Nothing but regular files is opened (a FIFO would block)."""
    seen: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if name in CACHE_NAMES:
                continue
            if path.is_symlink():
                seen[rel] = f"link -> {os.readlink(path)}"
            elif path.is_file():
                seen[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[rel] = "dir" if path.is_dir() else "special"
    return seen


def _diff(before: dict[str, str], after: dict[str, str]) -> str:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    parts = [
        f"{what}: {paths[:3]}"
        for what, paths in (("added", added), ("removed", removed), ("changed", changed))
        if paths
    ]
    return "; ".join(parts)


def summary(results: list[Result]) -> str:
    """Issue 27's report line."""
    n = Counter(r.outcome for r in results)
    line = (
        f"{len(results)} tried: {n['clean error']} clean errors (exit 2, one line naming the "
        f"problem), {n['accepted']} accepted correctly, {n['traceback']} tracebacks, "
        f"{n['hang']} hangs over {HANG_SECONDS} s, {n['payload ran']} payloads run, "
        f"{n['files changed']} run directories changed by a command that failed"
    )
    if n["wrong outcome"]:
        line += f", {n['wrong outcome']} wrong outcomes"
    return line


def by_kind(results: list[Result]) -> str:
    """'override 1405 (1100 clean errors, 305 accepted), ...': where the cases went."""
    kinds: dict[str, Counter] = {}
    for r in results:
        kinds.setdefault(r.case.kind, Counter())[r.outcome] += 1
    return ", ".join(
        f"{kind} {sum(n.values())} ({n['clean error']} clean errors, {n['accepted']} accepted)"
        for kind, n in kinds.items()
    )


def failures(results: list[Result], shown: int = 40) -> Iterator[str]:
    bad = [r for r in results if r.outcome in FAILURES]
    for r in bad[:shown]:
        yield f"[{r.case.kind}] {r.case.label}: {r.outcome}: {r.detail}"
    if len(bad) > shown:
        yield f"... and {len(bad) - shown} more"
