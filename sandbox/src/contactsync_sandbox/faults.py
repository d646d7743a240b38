"""Fault injection for one emulator: throttling, server errors, latency and dropped connections.

Our clients must survive what the real services do under load (429 with `Retry-After`, 5xx,
slow answers, connections cut mid-request). Tests script those faults through the control
API; the emulator consults `FaultInjector.next_for` before routing each ordinary request.
Requests under `/_sandbox/` never reach the injector.

Semantics: count-based faults (`429`, `5xx`, `drop`) form one FIFO queue, so "3 x 429 then
2 x 503" is two calls; each request consumes at most one of them, the oldest that matches its
method and path. Latency faults stack (their delays add up) and last until cleared unless given
a count.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .jsonvalues import is_integer, is_number

MAX_LATENCY_SECONDS = 120.0
CONTROL_PREFIX = "/_sandbox"


class FaultKind(StrEnum):
    """The fault kinds of the control API (`{"kind": ...}`)."""

    TOO_MANY_REQUESTS = "429"
    SERVER_ERROR = "5xx"
    LATENCY = "latency"
    DROP = "drop"


class FaultSpecError(ValueError):
    """A fault request that makes no sense; the control API answers 400 with this message."""


@dataclass
class Fault:
    """One scheduled fault. `remaining` is None for a latency that lasts until cleared."""

    id: int
    kind: FaultKind
    remaining: int | None
    path_prefix: str | None = None
    method: str | None = None
    retry_after: float | None = None
    status: int | None = None
    seconds: float | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method.upper():
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "kind": str(self.kind), "remaining": self.remaining}
        for key in ("path_prefix", "method", "retry_after", "status", "seconds"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


@dataclass(frozen=True)
class Verdict:
    """What to do to one request: wait `delay` seconds, then apply `fault` (None = serve it)."""

    delay: float = 0.0
    fault: Fault | None = None


def format_retry_after(seconds: float) -> str:
    """Header value as Graph sends it: whole seconds without a dot, fractions as decimals."""
    value = float(seconds)
    return str(int(value)) if value.is_integer() else repr(value)


class FaultInjector:
    """Thread-safe schedule of faults for one emulator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def burst_429(
        self,
        count: int,
        retry_after: float | None,
        path_prefix: str | None = None,
        method: str | None = None,
    ) -> Fault:
        """Answer the next `count` matching requests 429, with `Retry-After` unless None."""
        if retry_after is not None:
            retry_after = _non_negative(retry_after, "retry_after")
        return self._add(
            FaultKind.TOO_MANY_REQUESTS, _count(count), path_prefix, method, retry_after=retry_after
        )

    def fail_5xx(
        self,
        count: int,
        status: int = 503,
        path_prefix: str | None = None,
        method: str | None = None,
    ) -> Fault:
        """Answer the next `count` matching requests with a 5xx `status`."""
        if not is_integer(status) or not 500 <= status <= 599:
            raise FaultSpecError(f"status must be an integer 500..599, got {status!r}")
        return self._add(FaultKind.SERVER_ERROR, _count(count), path_prefix, method, status=status)

    def latency(
        self,
        seconds: float,
        path_prefix: str | None = None,
        method: str | None = None,
        count: int | None = None,
    ) -> Fault:
        """Delay matching requests by `seconds` (the next `count`, or all until cleared)."""
        seconds = _non_negative(seconds, "seconds")
        if seconds > MAX_LATENCY_SECONDS:
            raise FaultSpecError(f"seconds must be at most {MAX_LATENCY_SECONDS:g}")
        remaining = None if count is None else _count(count)
        return self._add(FaultKind.LATENCY, remaining, path_prefix, method, seconds=seconds)

    def drop(self, count: int, path_prefix: str | None = None, method: str | None = None) -> Fault:
        """Close the connection of the next `count` matching requests without any response."""
        return self._add(FaultKind.DROP, _count(count), path_prefix, method)

    def add(self, spec: Mapping[str, Any]) -> Fault:
        """Schedule a fault from its control-API JSON form."""
        if not isinstance(spec, Mapping):
            raise FaultSpecError("a fault must be a JSON object")
        allowed = {"kind", "count", "retry_after", "status", "seconds", "path_prefix", "method"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise FaultSpecError(f"unknown fault field(s): {', '.join(unknown)}")
        try:
            kind = FaultKind(str(spec.get("kind")))
        except ValueError:
            kinds = ", ".join(repr(str(k)) for k in FaultKind)
            raise FaultSpecError(f"kind must be one of {kinds}") from None
        where = {"path_prefix": spec.get("path_prefix"), "method": spec.get("method")}
        if kind is FaultKind.TOO_MANY_REQUESTS:
            return self.burst_429(spec.get("count", 1), spec.get("retry_after"), **where)
        if kind is FaultKind.SERVER_ERROR:
            return self.fail_5xx(spec.get("count", 1), spec.get("status", 503), **where)
        if kind is FaultKind.LATENCY:
            if "seconds" not in spec:
                raise FaultSpecError("a latency fault needs 'seconds'")
            return self.latency(spec["seconds"], count=spec.get("count"), **where)
        return self.drop(spec.get("count", 1), **where)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.to_json() for fault in self._faults]

    def next_for(self, method: str, path: str) -> Verdict:
        """Consume and return the faults that apply to one request."""
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return Verdict()
        with self._lock:
            delay = 0.0
            chosen: Fault | None = None
            for fault in self._faults:
                if not fault.matches(method, path):
                    continue
                if fault.kind is FaultKind.LATENCY:
                    delay += fault.seconds or 0.0
                elif chosen is None:
                    chosen = fault
                else:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
            self._faults = [f for f in self._faults if f.remaining is None or f.remaining > 0]
            return Verdict(delay=delay, fault=chosen)

    def _add(
        self,
        kind: FaultKind,
        remaining: int | None,
        path_prefix: str | None,
        method: str | None,
        **params: Any,
    ) -> Fault:
        fault = Fault(
            id=0,
            kind=kind,
            remaining=remaining,
            path_prefix=_prefix(path_prefix),
            method=_method(method),
            **params,
        )
        with self._lock:
            fault.id = next(self._ids)
            self._faults.append(fault)
        return fault


def _count(count: Any) -> int:
    if not is_integer(count) or count < 1:
        raise FaultSpecError(f"count must be a positive integer, got {count!r}")
    return count


def _non_negative(value: Any, name: str) -> float:
    if not is_number(value):
        raise FaultSpecError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise FaultSpecError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _prefix(path_prefix: Any) -> str | None:
    if path_prefix is None:
        return None
    if not isinstance(path_prefix, str) or not path_prefix.startswith("/"):
        raise FaultSpecError(f"path_prefix must be a path starting with '/', got {path_prefix!r}")
    if path_prefix.startswith(CONTROL_PREFIX):
        raise FaultSpecError("faults never apply to the control API under /_sandbox/")
    return path_prefix


def _method(method: Any) -> str | None:
    if method is None:
        return None
    if not isinstance(method, str) or not method.isalpha():
        raise FaultSpecError(f"method must be an HTTP method name, got {method!r}")
    return method.upper()
