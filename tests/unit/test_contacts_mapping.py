"""contactsync_singer.contacts_mapping and imports.partner_tap: which streams a target maps
itself, and the mapping's messages (the mapper plugin and the targets share them)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from contactsync_singer.contacts_mapping import ContactsMapping, MapperInputError, maps_in_process
from contactsync_singer.imports import partner_tap

from contactsync.mapping import Direction, outlook_schema, pipeliner_schema
from contactsync.outlook.records import CONTACT_SCHEMA as OUTLOOK_TAP
from contactsync.pipeliner.records import CONTACT_SCHEMA as PIPELINER_TAP

P2O, O2P = Direction.PIPELINER_TO_OUTLOOK, Direction.OUTLOOK_TO_PIPELINER


def test_meltano_names_the_partner_tap_by_namespace() -> None:
    assert partner_tap(P2O, {"MELTANO_EXTRACTOR_NAMESPACE": "tap_pipeliner_contacts"}) is True
    assert partner_tap(O2P, {"MELTANO_EXTRACTOR_NAMESPACE": "tap_outlook_contacts"}) is True
    assert partner_tap(P2O, {"MELTANO_EXTRACTOR_NAMESPACE": "tap_outlook_contacts"}) is False
    assert partner_tap(P2O, {"MELTANO_EXTRACTOR_NAMESPACE": "tap_csv"}) is False
    assert partner_tap(P2O, {}) is None


@pytest.mark.parametrize(
    ("direction", "stream", "schema", "partner", "expected"),
    [
        # outside Meltano, the SCHEMA decides
        (P2O, "contacts", PIPELINER_TAP, None, True),
        (O2P, "contacts", OUTLOOK_TAP, None, True),
        (P2O, "contacts", OUTLOOK_TAP, None, False),  # no user relation: not Pipeliner's tap
        (O2P, "contacts", PIPELINER_TAP, None, False),  # none of Graph's fields
        # already mapped by contactsync-mapper: read as it is
        (P2O, "contacts", outlook_schema(), None, False),
        (O2P, "contacts", pipeliner_schema(), True, False),
        (P2O, "contacts", outlook_schema(), True, False),
        # under Meltano, the extractor decides (a wrong SCHEMA is then the mapping's error)
        (P2O, "contacts", {"properties": {"id": {}}}, True, True),
        (P2O, "contacts", PIPELINER_TAP, False, False),
        # only the contacts stream, and only a SCHEMA with properties
        (P2O, "accounts", PIPELINER_TAP, True, False),
        (P2O, "contacts", {}, True, False),
        (P2O, "contacts", None, None, False),
    ],
)
def test_which_streams_a_target_maps_itself(
    direction: Direction, stream: str, schema: Any, partner: bool | None, expected: bool
) -> None:
    assert maps_in_process(direction, stream, schema, partner) is expected


def _mapping(hint: str = "is `direction` right?") -> ContactsMapping:
    return ContactsMapping(P2O, None, None, logging.getLogger("test"), hint=hint)


def test_the_mapped_schema_and_records_are_the_mappers() -> None:
    mapping = _mapping()
    schema = mapping.schema(
        {
            "type": "SCHEMA",
            "stream": "contacts",
            "schema": PIPELINER_TAP,
            "key_properties": ["id"],
            "bookmark_properties": ["modified"],
        }
    )
    assert schema["schema"] == outlook_schema()
    assert schema["key_properties"] == ["_source_id"]
    assert schema["bookmark_properties"] == ["_source_modified"]
    record = {"id": "p-1", "first_name": "Ada", "_sync_user_relation": "owner", "revision": 3}
    mapped = mapping.record(
        {"type": "RECORD", "stream": "contacts", "record": record, "version": 7}
    )
    assert mapped is not None
    assert mapped["version"] == 7
    assert mapped["record"]["_source_id"] == "p-1" and mapped["record"]["givenName"] == "Ada"
    colleague = {"id": "p-2", "first_name": "Bo", "_sync_user_relation": "none"}
    gone = mapping.record({"type": "RECORD", "stream": "contacts", "record": colleague})
    assert gone is not None and gone["record"]["_sync_deleted_reason"] == "out_of_scope"
    assert mapping.record({"type": "RECORD", "stream": "contacts", "record": "x"}) is None
    keyed = mapping.record({"type": "RECORD", "stream": "contacts", "record": {"id": "p-3"}})
    assert keyed is not None and set(keyed["record"]) == {"_source_id", "_sync_unmappable"}
    assert mapping.summary() == (
        "pipeliner_to_outlook: 4 contact records read; 1 mapped, 0 deleted, 1 out of scope, "
        "2 dropped"
    )


def test_a_record_before_its_schema_and_an_unreadable_schema_stop_the_run() -> None:
    with pytest.raises(MapperInputError, match="before its SCHEMA"):
        _mapping().record({"type": "RECORD", "stream": "contacts", "record": {"id": "p-1"}})
    with pytest.raises(MapperInputError, match=r"no `_sync_user_relation`.*\(deselected\?\)"):
        _mapping("deselected?").schema(
            {"type": "SCHEMA", "stream": "contacts", "schema": OUTLOOK_TAP}
        )
