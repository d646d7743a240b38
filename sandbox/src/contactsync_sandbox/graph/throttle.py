"""Outlook's limits: concurrent requests and a request budget per window.

Graph's throttling page (microsoft-graph-docs-contrib, includes/throttling-outlook.md, included
by concepts/throttling-limits.md), for Outlook resources, "Limits per mailbox": "10,000 API
requests in a 10-minute period" and "Four concurrent requests", evaluated per app ID and
mailbox. An earlier version of that page (concepts/throttling-limits.md at commit 01351749…,
"Limits per app ID") read the concurrency limit per app: "Outlook can execute up to 4 concurrent
requests … regardless of whether the requests all access the same mailbox, or access different
mailboxes"; `concurrency_scope: "app"` models that reading. And "Outlook service limits for
JSON batching": Graph sends the requests of a batch without `dependsOn` to Outlook "up to four
… at a time", executed in parallel, each within those concurrency limits; with `dependsOn`,
"one request from the batch at a time". The sandbox's model (sandbox/README.md):

* Concurrency: every request to a mailbox — top level, or inside a `$batch` — holds one slot of
  (app, mailbox) (or of the app, with `concurrency_scope: "app"`) while it is served (latency
  faults and `request_seconds` included). A batch runs its requests `batch_parallelism` (4) at a
  time, or one at a time when any of them has `dependsOn`. Over the limit → 429
  `ApplicationThrottled` ("Application is over its MailboxConcurrency limit.") with
  `Retry-After` (`concurrency_retry_after`, default 1); inside a batch that request gets the
  429 and the batch itself answers 200.
* Budget (off by default): every request to a mailbox — each inner request of a batch, not the
  batch itself — spends one unit of (app, mailbox) in a sliding window; refused requests spend
  nothing. Over → 429 `ApplicationThrottled` with a fractional `Retry-After`: the seconds until
  the oldest counted request leaves the window.
* `request_seconds` (default 0): how long Outlook takes to execute each request (not
  documented; measurements set it so that requests overlap as they do against the service).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from ..faults import format_retry_after
from ..jsonvalues import is_integer, is_number
from ..server import ApiError

Key = tuple[str, str]  # (client id, mailbox id)
DEFAULTS: Mapping[str, Any] = {
    "concurrency": 4,
    "concurrency_scope": "mailbox",
    "batch_parallelism": 4,
    "request_seconds": 0.0,
    "requests": None,
    "window_seconds": 600.0,
    "concurrency_retry_after": 1.0,
}
SCOPES = ("mailbox", "app")


def _number(value: Any, name: str, *, integer: bool = False, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    ok = is_integer(value) if integer else is_number(value)
    if not ok or not math.isfinite(value) or value <= 0:
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
        if "concurrency_scope" in body:
            if body["concurrency_scope"] not in SCOPES:
                raise ValueError(f"concurrency_scope must be one of {', '.join(SCOPES)}")
            new["concurrency_scope"] = body["concurrency_scope"]
        if "batch_parallelism" in body:
            new["batch_parallelism"] = _number(
                body["batch_parallelism"], "batch_parallelism", integer=True
            )
        if "request_seconds" in body:
            seconds = body["request_seconds"]
            if seconds not in (0, 0.0):
                seconds = _number(seconds, "request_seconds")
            new["request_seconds"] = float(seconds)
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

    def _slot(self, key: Key) -> Key:
        return key if self.settings["concurrency_scope"] == "mailbox" else (key[0], "*")

    def enter(self, key: Key) -> bool:
        """Take a slot; False (and counted) when the mailbox (or the app) is at its limit."""
        with self._lock:
            limit = self.settings["concurrency"]
            slot = self._slot(key)
            current = self._in_flight.get(slot, 0)
            stat = self._stat(key[1])
            if limit is not None and current >= limit:
                stat["throttled_concurrency"] += 1
                return False
            self._in_flight[slot] = current + 1
            stat["in_flight"] += 1
            stat["max_in_flight"] = max(stat["max_in_flight"], stat["in_flight"])
            return True

    def leave(self, key: Key) -> None:
        with self._lock:
            slot = self._slot(key)
            left = self._in_flight.get(slot, 0) - 1
            if left > 0:
                self._in_flight[slot] = left
            else:
                self._in_flight.pop(slot, None)
            stat = self._stat(key[1])
            stat["in_flight"] = max(0, stat["in_flight"] - 1)

    def serve(self) -> None:
        """Outlook's time to execute a request (``request_seconds``), spent holding its slot."""
        seconds = self.settings["request_seconds"]
        if seconds:
            time.sleep(seconds)

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
                # Up to the millisecond: waiting that long finds the unit free. (Rounding to
                # 0.01 s said "1" for a burst sent within 5 ms, as on a kept-alive connection.)
                return max(0.001, math.ceil((spent[0] + window - now) * 1000) / 1000)
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
