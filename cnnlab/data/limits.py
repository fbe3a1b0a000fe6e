"""Size checks made before a dataset file is read into memory, so a header that lies or a
compressed bomb ends as one line instead of a MemoryError (or the OOM killer).

A file's header says how many bytes follow; those are checked against what the file can hold
(its size, or for compressed members the most deflate can expand: DEFLATE_RATIO) and against
the memory this machine has, and then read with exactly that cap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from cnnlab.errors import DataError

# Deflate emits at least one bit per 258-byte match, so 1 compressed byte inflates to at most
# ~1032 bytes (zlib's technical notes); a larger claim cannot be in the file.
DEFLATE_RATIO = 1032


def memory_bytes() -> int | None:
    """Memory a new allocation can use: MemAvailable on Linux, else physical memory; None
    where neither can be read."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_claim(nbytes: int, holds: int, where: str | Path, what: str) -> None:
    """DataError unless `nbytes` (what a header claims follows) fits in `holds` (the most the
    file can give) and in memory. `what` describes the claim: "images (60000, 28, 28)"."""
    if nbytes > holds:
        raise DataError(
            f"{where}: the header promises {nbytes:,} bytes of {what}, but the file can hold at "
            f"most {holds:,}; it is truncated or not what its header says"
        )
    check_memory(nbytes, where, what)


def check_memory(nbytes: int, where: str | Path, what: str) -> None:
    free = memory_bytes()
    if free is not None and nbytes > free:
        raise DataError(
            f"{where}: {what} need {_gib(nbytes)} of memory and {_gib(free)} is available"
        )


def read_exactly(f: IO[bytes], nbytes: int, where: str | Path, what: str) -> bytes:
    """The next `nbytes` of `f`, checking that the stream ends there (no more, no less)."""
    data = f.read(nbytes)
    if len(data) < nbytes:
        raise DataError(
            f"{where}: truncated: the header promises {nbytes:,} bytes of {what}, "
            f"the file holds {len(data):,}"
        )
    if f.read(1):
        raise DataError(f"{where}: has extra bytes after the {nbytes:,} its header promises")
    return data


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.1f} GiB"
