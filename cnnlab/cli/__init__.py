# PYTHON_ARGCOMPLETE_OK (argcomplete's global completion looks for this mark in the entry point)
"""Command line: parse arguments, call one function per command, map outcomes to exit codes.

Exit codes: 0 success (completed or early-stopped), 2 user error (one line, no traceback unless
--debug), 3 the run diverged, 130 interrupted with Ctrl-C, 1 a bug (traceback shown)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence

from cnnlab.cli.codes import EXIT_INTERRUPTED, EXIT_USER_ERROR
from cnnlab.cli.parser import build_parser
from cnnlab.errors import CnnlabError

__all__ = ["main"]

# OSErrors that say where the user asked cnnlab to write cannot take it (a full or read-only
# disk, a file-size limit, no permission, a name too long, a folder where a file goes): the
# user's to fix, so one line.
STORAGE_ERRORS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
    | {errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR}
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # a shell asks for completions: answer and exit
        from cnnlab.cli.complete import autocomplete

        autocomplete(parser)
    args, extra = parser.parse_known_args(argv)
    # argparse hands positionals that follow an option (`-o g.png optim.lr=1`) back as extras;
    # key=value ones are overrides wherever they stand.
    if extra and hasattr(args, "overrides") and all("=" in e and e[0] != "-" for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    debug = getattr(args, "debug", False)
    try:
        return args.func(args)
    except CnnlabError as e:
        if debug:
            raise
        print(f"cnnlab: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:
        if debug or e.errno not in STORAGE_ERRORS:
            raise
        why = e.strerror or str(e)
        if e.filename is None:
            message = f"cannot write ({why})"
        elif e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
            message = f"cannot write {e.filename} ({why})"
        else:
            message = f"{e.filename}: {why}"
        print(f"cnnlab: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        print("cnnlab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
