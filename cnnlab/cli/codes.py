"""Exit codes of every command: 0 success (completed, early-stopped, time limit, or pruned by a
sweep), 2 user error (one line, no traceback unless --debug), 3 the run diverged, 130
interrupted with Ctrl-C, 1 a bug."""

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


def exit_code(status: str) -> int:
    """A run's summary status -> the process exit code."""
    return {"diverged": EXIT_DIVERGED, "interrupted": EXIT_INTERRUPTED}.get(status, 0)
