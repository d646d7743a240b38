"""In-process checks of the fixes made for docs/reliability.md (cheap; the process-level
evidence is in the other modules of this package)."""

from __future__ import annotations

import pytest

from contactsync.mapping import Direction, RecordError, map_record
from contactsync.outlook.auth import AuthUnavailable, IdentitySession, _TokenRetry
from contactsync.outlook.projection import from_graph
from contactsync.outlook.records import source_record as outlook_source_record
from contactsync.pipeliner.records import source_record as pipeliner_source_record
from contactsync.pipeliner.scope import SyncScope
from contactsync.sync.fields import normalize
from contactsync.sync.record import UNMAPPABLE


def test_a_fractional_retry_after_is_seconds_for_token_requests() -> None:
    retry = _TokenRetry(total=3)
    assert retry.parse_retry_after("0.3") == pytest.approx(0.3)
    assert retry.parse_retry_after("2") == 2
    assert _TokenRetry(total=3).increment().parse_retry_after("1.5") == 1.5  # survives new()


def test_the_identity_session_retries_throttling_and_server_errors() -> None:
    retry = IdentitySession(True).get_adapter("https://login.example").max_retries
    assert isinstance(retry, _TokenRetry)
    assert {429, 500, 502, 503, 504} <= set(retry.status_forcelist)
    assert retry.read and retry.connect
    assert AuthUnavailable("x").transient


def test_a_lone_surrogate_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        normalize("a\ud800b")
    with pytest.raises(ValueError, match="field first_name"):
        from_graph({"givenName": "\udcff"})
    assert normalize("Bell\x07 ok") == "Bell ok"  # control characters are still just dropped


def test_an_unmappable_record_keeps_its_key_and_is_rejected_by_name() -> None:
    scope = SyncScope.parse("two_way_your_contacts", "owner")
    with pytest.raises(RecordError) as bad:
        map_record(
            Direction.PIPELINER_TO_OUTLOOK,
            {"id": "c-1", "first_name": 7j, "_sync_user_relation": "owner"},
            scope,
        )
    assert bad.value.key == "c-1"
    for source_record in (outlook_source_record, pipeliner_source_record):
        with pytest.raises(ValueError, match="could not"):
            source_record({"_source_id": "c-1", UNMAPPABLE: "the mapper could not map it"})
