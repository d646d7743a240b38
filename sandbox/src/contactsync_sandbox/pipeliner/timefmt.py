"""Timestamps: microseconds since the epoch inside, the vendor's text form on the wire.

The vendor's own tutorials show what the live API sends, e.g. `"modified": "2019-02-01
10:01:23.011709+00:00"` (space separator, microseconds, `+00:00`); the OpenAPI examples show
`2019-01-01T00:00:00`. The emulator answers in one of these styles (`timestamp_format` setting):

- `vendor` (default): `2026-11-26 10:00:00.123456+00:00`
- `iso_z`: `2026-11-26T10:00:00.123Z` (milliseconds, `Z`; values are still stored in µs)
- `naive`: `2026-11-26T10:00:00.123456` (the spec examples' shape: no zone, UTC implied)

Whatever the style, filters accept all of them and any ISO 8601 form with `Z`, `+hh:mm` or no
zone (taken as UTC), with `T` or a space, with or without fractions, or a bare date.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

TIMESTAMP_FORMATS = ("vendor", "iso_z", "naive")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(moment: datetime) -> int:
    """An aware (or naive = UTC) datetime → integer microseconds since the epoch."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def format_us(us: int, style: str = "vendor") -> str:
    moment = from_us(us)
    if style == "iso_z":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if style == "naive":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00"


def parse_us(text: str) -> int:
    """Parse an ISO 8601 timestamp (see the module docstring); ValueError if it is none."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"not a timestamp: {text!r}")
    value = text.strip()
    if len(value) == 10:  # a bare date
        return to_us(datetime.fromisoformat(value))
    if len(value) < 16 or value[10] not in "T ":
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}")
    return to_us(datetime.fromisoformat(value))


def now_us() -> int:
    return time.time_ns() // 1000


class Clock:
    """The emulator's clock: wall time plus an adjustable offset, strictly increasing.

    Two changes never get the same `modified`, and `modified` never goes backwards even if the
    wall clock does (or if the seed holds timestamps in the future).
    """

    def __init__(self) -> None:
        self.offset_us = 0
        self.last_us = 0

    def now(self) -> int:
        current = max(now_us() + self.offset_us, self.last_us + 1)
        self.last_us = current
        return current

    def peek(self) -> int:
        return max(now_us() + self.offset_us, self.last_us + 1)

    def observe(self, us: int) -> None:
        """Make later `now()` values exceed `us` (a seeded timestamp)."""
        self.last_us = max(self.last_us, us)

    def advance(self, seconds: float) -> None:
        self.offset_us += int(seconds * 1_000_000)


def iso(us: int) -> str:
    """A timestamp for the control API and snapshots (ISO 8601, µs, `Z`)."""
    return from_us(us).isoformat().replace("+00:00", "Z")
