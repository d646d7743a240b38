"""One field table, and what each service reads agrees with it (issue 16).

The kernel holds the keys (contactsync.sync.fields); each service its projection. What Graph is
asked for (``$select`` and ``$expand``), the Singer schema of each tap and the fields the
Pipeliner tap emits are derived from the projections: here every key, filled with a value of
its own, survives a round trip through exactly what each service reads, so a property left out
of ``$select`` or of a schema (a new field read as empty, which the merge would take for an
edit on that side) fails by name.
"""

from __future__ import annotations

from typing import Any

import pytest

from contactsync.outlook import graph_api
from contactsync.outlook import records as outlook_records
from contactsync.outlook.projection import (
    GRAPH,
    PIPELINER_ID_PROPERTY_ID,
    RECORD_PROPERTIES,
    SELECTED_PROPERTIES,
    from_graph,
    to_graph,
)
from contactsync.pipeliner import records as pipeliner_records
from contactsync.pipeliner.projection import FIELD_NAMES, TABLE_FIELDS, from_pipeliner, to_pipeliner
from contactsync.sync.fields import FIELDS, KEYS, check_projection

#: A distinct value per key (e-mail keys hold addresses, so nothing reads them as names).
VALUES = {
    f.key: f"{f.key}@example.com" if f.key.startswith("email") else f"v-{f.key}" for f in FIELDS
}


def _as_graph_returns(body: dict[str, Any]) -> dict[str, Any]:
    """A contact as Graph returns it for our read: only the ``$select``-ed properties, and the
    ``$expand``-ed extended properties (Graph lower-cases their ids)."""
    contact = {"id": "AAMk-1", "changeKey": "ck", **body}
    selected = {name: contact.get(name) for name in graph_api.CONTACT_FIELDS}
    expanded = [
        {"id": p["id"].lower(), "value": p["value"]}
        for p in contact.get("singleValueExtendedProperties", ())
        if p["id"] in graph_api.EXPANDED_PROPERTIES
    ]
    return {**selected, "singleValueExtendedProperties": expanded}


def test_both_projections_cover_exactly_the_table() -> None:
    assert tuple(FIELD_NAMES) == KEYS
    assert tuple(GRAPH) == KEYS
    assert tuple(FIELD_NAMES[k] for k in KEYS) == TABLE_FIELDS
    with pytest.raises(AssertionError, match="missing keys notes"):
        check_projection("a service", [k for k in KEYS if k != "notes"])
    with pytest.raises(AssertionError, match="unknown keys birthday"):
        check_projection("a service", [*KEYS, "birthday"])


def test_select_and_expand_ask_for_every_graph_property_of_the_table() -> None:
    for key, slot in GRAPH.items():
        if slot.extended is None:
            assert slot.property in graph_api.CONTACT_FIELDS, f"{key}: {slot.property} not read"
        else:
            assert slot.extended in graph_api.EXPANDED_PROPERTIES, f"{key}: not expanded"
    assert set(SELECTED_PROPERTIES) <= set(graph_api.CONTACT_FIELDS)
    assert PIPELINER_ID_PROPERTY_ID in graph_api.EXPANDED_PROPERTIES  # the stamp, outside the table


def test_every_key_survives_what_graph_is_asked_for() -> None:
    contact = _as_graph_returns(to_graph(VALUES))
    assert from_graph(contact) == VALUES


def test_the_outlook_schema_declares_every_property_of_the_table() -> None:
    properties = outlook_records.CONTACT_SCHEMA["properties"]
    for key, slot in GRAPH.items():
        assert properties.get(slot.property) == slot.schema, f"{key}: {slot.property}"
    assert set(RECORD_PROPERTIES) <= set(outlook_records.GRAPH_PROPERTIES)
    record = outlook_records.tap_record(_as_graph_returns(to_graph(VALUES)))
    assert set(record) <= set(properties)
    assert from_graph(record, partial=True) == VALUES  # every key known from the record alone


def test_every_key_survives_the_pipeliner_schema() -> None:
    properties = pipeliner_records.CONTACT_SCHEMA["properties"]
    assert set(TABLE_FIELDS) <= set(properties)
    contact = {"id": "p-1", **to_pipeliner(VALUES)}
    record = {name: value for name, value in contact.items() if name in properties}
    assert from_pipeliner(record, partial=True) == VALUES


def test_the_pipeliner_tap_emits_every_field_of_the_table() -> None:
    from contactsync.pipeliner.scope import AccessLevel, SyncUser, UnitReach, UserRole

    user = SyncUser("u-1", UserRole(True, AccessLevel.ALL, UnitReach.OWNED))
    contact = {"id": "p-1", "owner_id": "u-1", **to_pipeliner(VALUES)}
    record = pipeliner_records.tap_record(contact, user)
    assert {name: record[name] for name in TABLE_FIELDS} == to_pipeliner(VALUES)
    assert from_pipeliner(record, partial=True) == VALUES
