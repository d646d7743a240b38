"""contactsync.pipeliner.full_read: when the Pipeliner tap reads the whole scope again, case by
case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contactsync.pipeliner.full_read import (
    DEFAULT_INTERVAL_SECONDS,
    FINGERPRINT_KEY,
    LAST_FULL_READ_KEY,
    SCOPE_KEY,
    full_read_reason,
    stamp,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SCOPE, PRINT = "two_way_your_contacts/owner", "f1"
SETTLED = {SCOPE_KEY: SCOPE, FINGERPRINT_KEY: PRINT, LAST_FULL_READ_KEY: stamp(NOW)}


def reason(
    state: dict,
    *,
    bookmark: bool = True,
    interval: float = DEFAULT_INTERVAL_SECONDS,
    now: datetime = NOW,
    scope: str = SCOPE,
    fingerprint: str = PRINT,
) -> str | None:
    return full_read_reason(
        state,
        has_bookmark=bookmark,
        scope=scope,
        fingerprint=fingerprint,
        interval_seconds=interval,
        now=now,
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param({}, None, id="settled, read a minute ago"),
        pytest.param({"bookmark": False}, "first read", id="no bookmark"),
        pytest.param({"scope": "two_way_your_contacts/owner_or_editor"}, "sync scope changed",
                     id="option changed"),
        pytest.param({"fingerprint": "f2"}, "units, role or the unit tree", id="rights changed"),
        pytest.param({"now": NOW + timedelta(hours=23, minutes=59)}, None, id="within a day"),
        pytest.param({"now": NOW + timedelta(hours=24)}, "periodic full read", id="a day later"),
        pytest.param({"interval": 0}, "every run", id="interval 0"),
        pytest.param({"interval": 60, "now": NOW + timedelta(seconds=61)}, "periodic",
                     id="short interval"),
    ],
)  # fmt: skip
def test_when_everything_is_read_again(case: dict, expected: str | None) -> None:
    found = reason(dict(SETTLED), **case)
    if expected is None:
        assert found is None
    else:
        assert found is not None and expected in found


def test_a_state_from_before_the_fingerprint_reads_once_then_settles() -> None:
    # An upgrade: the old state knows the scope but neither the fingerprint nor a full read.
    old = {SCOPE_KEY: SCOPE}
    assert "no complete read" in (reason(old) or "")
    assert reason({**old, LAST_FULL_READ_KEY: stamp(NOW)}) is None


def test_a_garbled_time_counts_as_no_full_read() -> None:
    assert reason({**SETTLED, LAST_FULL_READ_KEY: "yesterday"}) is not None
