"""Per-endpoint request counters of one emulator.

Performance and politeness claims ("an incremental run costs a handful of requests", "never more
than 4 concurrent requests per mailbox", "retried exactly after Retry-After") are asserted in
tests by reading these counters and the request log through `/_sandbox/counters` and
`/_sandbox/requests`. Endpoints are keyed by method and route template, e.g.
`GET /api/v100/rest/spaces/{space_id}/entities/Contacts`, so ids never explode the key space.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

#: Status recorded for a request whose connection was dropped on purpose.
DROPPED = "dropped"
#: Endpoint key for requests that matched no route (they are counted, by method).
UNMATCHED = "(no route)"
REQUEST_LOG_SIZE = 2000


@dataclass
class _Stats:
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "statuses": dict(sorted(self.statuses.items())),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }


class RequestCounters:
    """Thread-safe counts per endpoint and in total, plus a bounded log of recent requests."""

    def __init__(self, log_size: int = REQUEST_LOG_SIZE) -> None:
        self._lock = threading.Lock()
        self._total = _Stats()
        self._endpoints: dict[str, _Stats] = {}
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self._seq = 0

    def started(self, endpoint: str) -> float:
        """Count a request as in flight; returns its start time for `finished`."""
        with self._lock:
            for stats in (self._total, self._endpoints.setdefault(endpoint, _Stats())):
                stats.requests += 1
                stats.in_flight += 1
                stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        return time.monotonic()

    def finished(
        self,
        endpoint: str,
        status: int | str,
        started: float,
        *,
        method: str,
        path: str,
        query: str = "",
    ) -> None:
        """Record the outcome (an HTTP status or `DROPPED`) of a request counted by `started`."""
        now = time.monotonic()
        with self._lock:
            for stats in (self._total, self._endpoints.setdefault(endpoint, _Stats())):
                stats.in_flight -= 1
                stats.statuses[str(status)] += 1
            self._seq += 1
            self._log.append(
                {
                    "seq": self._seq,
                    "endpoint": endpoint,
                    "method": method,
                    "path": path,
                    "query": query,
                    "status": status,
                    "started": round(started, 6),
                    "duration_ms": round((now - started) * 1000, 3),
                }
            )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total.to_json(),
                "endpoints": {key: s.to_json() for key, s in sorted(self._endpoints.items())},
            }

    def requests(self) -> list[dict[str, Any]]:
        """Recent requests, oldest first; `started` is a monotonic clock in seconds."""
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        """Zero the counts and the log; requests still in flight stay counted as in flight."""
        with self._lock:
            for stats in (self._total, *self._endpoints.values()):
                stats.requests = 0
                stats.statuses.clear()
                stats.max_in_flight = stats.in_flight
            self._endpoints = {k: s for k, s in self._endpoints.items() if s.in_flight}
            self._log.clear()
