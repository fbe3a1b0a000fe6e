"""Requests to stop a run between two steps: Ctrl-C, train.max_minutes, and a callback's
request after an epoch (a sweep's pruner).

The loop asks `reason()` after every step (with several processes, `agree()` at each logging
point). Stopping there, not wherever SIGINT happens to land, means the model and optimizer are
never saved half-updated, so the checkpoint written on the way out resumes exactly. A second
Ctrl-C raises KeyboardInterrupt at once, for a stuck step.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cnnlab.training.distributed import World

_URGENCY = {"interrupted": 0, "time_limit": 1}  # which stop wins when ranks ask for several


class Stopper:
    def __init__(self, max_minutes: float | None = None, on_request: Callable[[], None] = None):
        self.deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
        self.requested: str | None = None
        self._on_request = on_request  # e.g. tell the user the run will stop after this step

    def request(self, status: str) -> None:
        """Stop at the next chance with `status`; the first request wins."""
        if self.requested is None:
            self.requested = status
            if self._on_request is not None and status == "interrupted":
                self._on_request()

    def reason(self) -> str | None:
        """None to go on, or the status to end with: interrupted | time_limit | pruned."""
        if self.requested is None and self.deadline is not None:
            if time.monotonic() >= self.deadline:
                self.requested = "time_limit"
        return self.requested

    def agree(self, world: World) -> str | None:
        """reason(), the same on every rank of `world`: the most urgent asked for on any rank
        (Ctrl-C, then the time limit, then a callback's request, which only rank 0 hears), so
        that all ranks stop at the same step and none is left waiting for the others."""
        if world.size == 1:
            return self.reason()
        asked = [r for r in world.all_gather(self.reason()) if r is not None]
        if asked:
            self.requested = min(asked, key=lambda r: _URGENCY.get(r, len(_URGENCY)))
        return self.requested

    @contextmanager
    def catching_ctrl_c(self) -> Iterator[None]:
        """While inside, the first SIGINT asks for a stop; outside the main thread (where no
        handler can be installed) Ctrl-C keeps its default behaviour."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum, frame):
            if self.requested == "interrupted":
                raise KeyboardInterrupt
            self.request("interrupted")

        previous = signal.signal(signal.SIGINT, handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
