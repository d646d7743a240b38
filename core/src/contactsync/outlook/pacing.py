"""Client-side pacing of Microsoft Graph requests: one budget and one set of concurrency slots per
mailbox, shared by every client of that mailbox in the process.

Graph's throttling page (microsoft-graph-docs-contrib, includes/throttling-outlook.md, included
by concepts/throttling-limits.md, "Outlook service limits"), per app ID and mailbox: "10,000 API
requests in a 10-minute period" and "Four concurrent requests"; and "Outlook service limits for
JSON batching": the requests of a ``$batch`` are evaluated one by one against those limits, up
to four without ``dependsOn`` run in parallel, one at a time with it. A client that sends at the
rate the service refuses wastes its budget on 429s; so each request takes a grant here first:

* **budget**: ``requests_per_window`` units in any ``window_seconds`` (sliding), one unit per
  request (each inner request of a batch). A unit counts from the moment it is granted and stays
  counted until ``window_seconds`` after its answer came back: the service counts the request at
  some time in between, so a new request sent once a unit left our window cannot meet it in the
  service's window, whatever the network delay. Refused (429) requests are counted too: the
  documentation does not say they are free, and counting them only makes us slower, never
  throttled.
* **concurrency**: ``concurrency`` slots; an unordered batch takes one per request Graph runs at
  once (up to 4), a ``dependsOn``-chained batch or a single request takes one.

Without a budget (``requests_per_window`` 0 or None) only the slots apply. The documentation
does not say whether the concurrency limit is per mailbox or per app (an older version of the
page said per app; the sandbox offers both, ``concurrency_scope``); we pace per mailbox, and
one app serving several mailboxes from one process stays safe because each target process
writes one mailbox. Across processes nothing is shared: each process paces itself, and the
reactive pacing of ``GraphClient._execute`` (Retry-After) remains for what others spend.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

#: Graph's documented Outlook limits per app ID and mailbox.
DEFAULT_REQUESTS_PER_WINDOW: Final = 10_000
DEFAULT_WINDOW_SECONDS: Final = 600.0
DEFAULT_CONCURRENCY: Final = 4
#: Requests of an unordered ``$batch`` Graph runs at once ("up to four … at a time").
BATCH_PARALLELISM: Final = 4


@dataclass(frozen=True)
class Grant:
    """What one :meth:`MailboxPacer.acquire` took; :meth:`MailboxPacer.release` gives it back."""

    units: int
    slots: int


class MailboxPacer:
    """A sliding-window budget and concurrency slots of one mailbox. Thread-safe.

    ``clock`` and ``sleep`` are injectable (tests with a fake clock): a wait for the budget goes
    through ``sleep``; a wait for a slot or for units still in flight waits for a release.
    """

    def __init__(
        self,
        requests_per_window: int | None = DEFAULT_REQUESTS_PER_WINDOW,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        concurrency: int = DEFAULT_CONCURRENCY,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_window is not None and requests_per_window < 0:
            raise ValueError(f"requests_per_window must be 0 or more, got {requests_per_window}")
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.limit = requests_per_window or None
        self.window = float(window_seconds)
        self.concurrency = concurrency
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._free_slots = concurrency
        self._in_flight = 0  # units granted and not yet answered
        self._answered: deque[tuple[float, int]] = deque()  # (answered at, units), in order
        self._answered_units = 0
        #: Seconds spent waiting for the budget (for the run's figures and tests).
        self.waited = 0.0

    @property
    def used(self) -> int:
        """Units counted in the window now."""
        with self._cond:
            self._expire(self._clock())
            return self._in_flight + self._answered_units

    def room(self) -> int | None:
        """Units that would be granted now without waiting (None: no budget). A client cuts
        its next batch to it, so that the window is used to the last unit instead of leaving
        a remainder smaller than a batch unused."""
        if self.limit is None:
            return None
        with self._cond:
            self._expire(self._clock())
            return max(0, self.limit - self._in_flight - self._answered_units)

    def acquire(self, units: int = 1, slots: int = 1) -> Grant:
        """Wait until ``units`` requests fit the budget and ``slots`` concurrency slots are free,
        and take them. A request larger than the whole budget goes alone in an empty window."""
        units, slots = max(0, units), min(max(1, slots), self.concurrency)
        while True:
            with self._cond:
                now = self._clock()
                self._expire(now)
                delay: float | None = None  # None: wait for a release
                if self._free_slots >= slots:
                    delay = self._budget_delay(units, now)
                    if delay == 0.0:
                        self._free_slots -= slots
                        self._in_flight += units
                        return Grant(units, slots)
                if delay is None:
                    self._cond.wait(timeout=1.0)
                    continue
            self.waited += delay
            self._sleep(delay)

    def release(self, grant: Grant) -> None:
        """The answer came back: free the slots; the units leave the window ``window_seconds``
        from now."""
        with self._cond:
            now = self._clock()
            self._free_slots += grant.slots
            self._in_flight -= grant.units
            if self.limit is not None and grant.units:
                self._answered.append((now, grant.units))
                self._answered_units += grant.units
            self._cond.notify_all()

    def _expire(self, now: float) -> None:
        while self._answered and self._answered[0][0] + self.window <= now:
            self._answered_units -= self._answered.popleft()[1]

    def _budget_delay(self, units: int, now: float) -> float | None:
        """0 when ``units`` fit now; else the seconds until enough answered units leave the
        window, or None when units still in flight must come back first."""
        if self.limit is None:
            return 0.0
        used = self._in_flight + self._answered_units
        if used + units <= self.limit or used == 0:
            return 0.0
        need = used + units - self.limit
        for answered_at, n in self._answered:
            need -= n
            if need <= 0:
                return max(answered_at + self.window - now, 1e-3)
        return None


_registry: dict[tuple[str, str, int | None, float, int], MailboxPacer] = {}
_registry_lock = threading.Lock()


def mailbox_pacer(
    api_url: str,
    mailbox: str,
    requests_per_window: int | None = DEFAULT_REQUESTS_PER_WINDOW,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> MailboxPacer:
    """The process's pacer of one mailbox (``me`` is the signed-in user's own), shared by the
    clients that give the same limits."""
    limit = requests_per_window or None
    key = (api_url.rstrip("/").casefold(), mailbox.casefold(), limit, window_seconds, concurrency)
    with _registry_lock:
        pacer = _registry.get(key)
        if pacer is None:
            pacer = _registry[key] = MailboxPacer(limit, window_seconds, concurrency)
        return pacer
