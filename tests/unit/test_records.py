"""contactsync.pipeliner.records / outlook_records: a record of the wrong type is refused naming
the field, what was expected and what came (never the value)."""

from __future__ import annotations

import pytest

from contactsync.outlook import records as outlook_records
from contactsync.pipeliner import records as pipeliner_records
from contactsync.pipeliner.records import CONTACT_SCHEMA
from contactsync.sync.record import type_problem


def test_a_string_where_outlook_holds_an_array_says_so() -> None:
    record = {"id": "o-1", "givenName": "Kim", "emailAddresses": "kim@x.example,kim@y.example"}
    with pytest.raises(ValueError) as caught:
        outlook_records.source_record(record)
    assert str(caught.value) == "field emailAddresses: expected an array of objects, got a string"
    assert "kim@" not in str(caught.value)


def test_items_and_pipeliner_fields_are_checked_too() -> None:
    outlook = {"id": "o-1", "givenName": "Kim", "emailAddresses": ["kim@x.example"]}
    with pytest.raises(ValueError, match=r"emailAddresses\[0\]: expected an object, got a str"):
        outlook_records.source_record(outlook)
    pipeliner = {"_source_id": "x", "first_name": "Kim", "email1": ["a@x.example"]}
    with pytest.raises(ValueError, match="field email1: expected a string, got an array"):
        pipeliner_records.source_record(pipeliner)


def test_right_types_nulls_and_unknown_properties_pass() -> None:
    record = {
        "id": "p-1",
        "first_name": "Kim",
        "email1": None,
        "revision": 3,
        "sharing_clients": [{"client_id": "c", "role": 2}],
        "modified": "2026-01-01T00:00:00Z",
        "ext_column": ["anything"],
    }
    assert type_problem(record, CONTACT_SCHEMA["properties"]) is None
    assert type_problem({"revision": True}, CONTACT_SCHEMA["properties"]) == (
        "field revision: expected an integer, got a boolean"
    )
