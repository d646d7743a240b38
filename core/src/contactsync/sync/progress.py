"""A progress line at a steady interval while a long read or write goes on.

An operator watching a first sync of 50,000 contacts sees, every ``interval`` seconds, how many
records went by and at what rate, instead of silence between the start and the summary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Progress:
    """Counts records; logs ``<what>: N so far (R/s)`` once per ``interval`` seconds."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.what = what
        self.interval = interval
        self.count = 0
        self._clock = clock
        self._started = clock()
        self._next = self._started + interval

    def add(self, n: int = 1) -> None:
        self.count += n
        now = self._clock()
        if self.interval > 0 and now >= self._next:
            elapsed = max(now - self._started, 1e-9)
            self.log.info(
                "%s: %d so far (%.0f/s over %.0f s)",
                self.what,
                self.count,
                self.count / elapsed,
                elapsed,
            )
            while self._next <= now:
                self._next += self.interval
