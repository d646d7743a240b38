"""Outlook's per app-and-mailbox limits: concurrent requests and a request budget per window.

Graph documents, for Outlook resources, "4 concurrent requests" and "10,000 API requests in a
10 minute period", evaluated per app id and mailbox. The sandbox's model (sandbox/README.md):

* Concurrency: a top-level request to a mailbox holds one slot of (app, mailbox) while it is
  served (latency faults included). A `$batch` holds one slot per mailbox its inner requests
  address, from the first such inner request until the batch ends (the emulator runs inner
  requests one after the other). Over the limit → 429 `ApplicationThrottled` ("Application is
  over its MailboxConcurrency limit.") with `Retry-After` (`concurrency_retry_after`, default 1);
  for a batch, the inner requests get the 429 and the batch itself answers 200.
* Budget (off by default): every request to a mailbox — each inner request of a batch, not the
  batch itself — spends one unit of (app, mailbox) in a sliding window; refused requests spend
  nothing. Over → 429 `ApplicationThrottled` with a fractional `Retry-After`: the seconds until
  the oldest counted request leaves the window.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from ..faults import format_retry_after
from ..server import ApiError

Key = tuple[str, str]  # (client id, mailbox id)
DEFAULTS: Mapping[str, Any] = {
    "concurrency": 4,
    "requests": None,
    "window_seconds": 600.0,
    "concurrency_retry_after": 1.0,
}


def _number(value: Any, name: str, *, integer: bool = False, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{name} must be {kind}{' or null' if allow_none else ''}, got {value!r}")
    return value


class Limiter:
    """Thread-safe slots and budgets, plus per-mailbox statistics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.settings: dict[str, Any] = dict(DEFAULTS)
        self._in_flight: dict[Key, int] = {}
        self._windows: dict[Key, deque[float]] = {}
        self._stats: dict[str, dict[str, int]] = {}

    # ------------------------------------------------------------------ settings

    def configure(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ValueError("the throttle settings are a JSON object")
        unknown = set(body) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown throttle setting(s): {', '.join(sorted(unknown))}")
        new = dict(self.settings)
        if "concurrency" in body:
            new["concurrency"] = _number(
                body["concurrency"], "concurrency", integer=True, allow_none=True
            )
        if "requests" in body:
            new["requests"] = _number(body["requests"], "requests", integer=True, allow_none=True)
        if "window_seconds" in body:
            new["window_seconds"] = float(_number(body["window_seconds"], "window_seconds"))
        if "concurrency_retry_after" in body:
            new["concurrency_retry_after"] = float(
                _number(body["concurrency_retry_after"], "concurrency_retry_after")
            )
        with self._lock:
            if new["window_seconds"] != self.settings["window_seconds"]:
                self._windows.clear()
            self.settings = new
        return dict(new)

    def reset(self) -> None:
        """Default settings, empty windows and statistics (slots in use stay counted)."""
        with self._lock:
            self.settings = dict(DEFAULTS)
            self._windows.clear()
            self._stats.clear()

    # ------------------------------------------------------------------ slots and budget

    def _stat(self, mailbox_id: str) -> dict[str, int]:
        return self._stats.setdefault(
            mailbox_id,
            {
                "requests": 0,
                "throttled_concurrency": 0,
                "throttled_budget": 0,
                "in_flight": 0,
                "max_in_flight": 0,
            },
        )

    def enter(self, key: Key) -> bool:
        """Take a slot; False (and counted) when the mailbox is at its concurrency limit."""
        with self._lock:
            limit = self.settings["concurrency"]
            current = self._in_flight.get(key, 0)
            stat = self._stat(key[1])
            if limit is not None and current >= limit:
                stat["throttled_concurrency"] += 1
                return False
            self._in_flight[key] = current + 1
            stat["in_flight"] += 1
            stat["max_in_flight"] = max(stat["max_in_flight"], stat["in_flight"])
            return True

    def leave(self, key: Key) -> None:
        with self._lock:
            left = self._in_flight.get(key, 0) - 1
            if left > 0:
                self._in_flight[key] = left
            else:
                self._in_flight.pop(key, None)
            stat = self._stat(key[1])
            stat["in_flight"] = max(0, stat["in_flight"] - 1)

    def spend(self, key: Key) -> float | None:
        """Spend one request of the budget; the seconds to wait when there is none left."""
        with self._lock:
            stat = self._stat(key[1])
            limit = self.settings["requests"]
            if limit is None:
                stat["requests"] += 1
                return None
            window = self.settings["window_seconds"]
            now = time.monotonic()
            spent = self._windows.setdefault(key, deque())
            while spent and spent[0] <= now - window:
                spent.popleft()
            if len(spent) >= limit:
                stat["throttled_budget"] += 1
                return max(0.01, round(spent[0] + window - now, 2))
            spent.append(now)
            stat["requests"] += 1
            return None

    def concurrency_error(self) -> ApiError:
        return throttled(
            "Application is over its MailboxConcurrency limit.",
            self.settings["concurrency_retry_after"],
        )

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "settings": dict(self.settings),
                "mailboxes": {mid: dict(s) for mid, s in sorted(self._stats.items())},
            }


def throttled(message: str, retry_after: float) -> ApiError:
    return ApiError(
        429, "ApplicationThrottled", message, {"Retry-After": format_retry_after(retry_after)}
    )


def budget_error(retry_after: float) -> ApiError:
    return throttled("Application is over its MailboxRequests limit.", retry_after)
