"""When tap-pipeliner-contacts reads the whole scope instead of what changed since its bookmark.

An incremental read (``modified >= bookmark``) sees only contacts whose ``modified`` moved. Three
things change a user's scope without that:

* the sync settings (``sync_type`` / ``sync_option``): a wider scope has contacts that were never
  read, a narrower one has copies to remove;
* what the scope depends on besides the contact (the user's units, role, the unit tree): kept as a
  fingerprint (:func:`contactsync.pipeliner.scope.scope_fingerprint`);
* what Pipeliner does not document: that a delete or a sharing change moves ``modified``, and how
  long deleted contacts stay listable. So the whole scope is read again every
  ``full_read_interval`` seconds in any case, and the targets take that listing as complete: a
  missed delete or scope change heals within one interval.

The decision is a pure function of the stream state, so it can be tested case by case.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

#: Default of the ``full_read_interval`` setting: once a day.
DEFAULT_INTERVAL_SECONDS = 24 * 3600

#: Keys of the tap's stream state this module reads and writes.
SCOPE_KEY = "sync_scope"
FINGERPRINT_KEY = "scope_fingerprint"
LAST_FULL_READ_KEY = "last_full_read"


def full_read_reason(
    state: Mapping[str, Any],
    *,
    has_bookmark: bool,
    scope: str,
    fingerprint: str,
    interval_seconds: float,
    now: datetime,
) -> str | None:
    """Why this run must read every contact, or None when an incremental read is enough."""
    if not has_bookmark:
        return "first read"
    if state.get(SCOPE_KEY) not in (None, scope):
        return f"sync scope changed from {state[SCOPE_KEY]} to {scope}"
    if state.get(FINGERPRINT_KEY) not in (None, fingerprint):
        return "the user's units, role or the unit tree changed"
    if interval_seconds <= 0:
        return "full_read_interval is 0: every run reads everything"
    last = _parse(state.get(LAST_FULL_READ_KEY))
    if last is None:
        return "no complete read on record yet"
    if now - last >= timedelta(seconds=interval_seconds):
        return f"periodic full read (full_read_interval {interval_seconds:g} s)"
    return None


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def stamp(moment: datetime) -> str:
    """How a full read's time is kept in the state."""
    return moment.astimezone(UTC).isoformat()
