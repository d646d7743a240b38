"""contactsync-mapper: both mappings over every row of the field table, e-mail slots, the scope
filter for every sync type × option × relation, tombstones, the stamp, bad records, the output
schemas, and the plugin as a real process (messages in order, settings refused, --about)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.sinks.core import JSONSchemaValidator

from contactsync.mapping import (
    GRAPH_TABLE_PROPERTIES,
    Direction,
    RecordError,
    input_schema_problem,
    map_record,
    outlook_schema,
    outlook_to_pipeliner,
    output_bookmarks,
    parse_settings,
    pipeliner_schema,
    pipeliner_to_outlook,
)
from contactsync.outlook import records as outlook_records
from contactsync.outlook.projection import (
    GRAPH,
    GRAPH_PROPERTY,
    OTHER_PHONE_PROPERTY_ID,
    PIPELINER_ID_PROPERTY_ID,
)
from contactsync.pipeliner import records as pipeliner_records
from contactsync.pipeliner.projection import FIELD_NAMES
from contactsync.pipeliner.scope import Relation, ScopeSettingError, SyncScope
from contactsync.sync.fields import FIELDS, KEYS, Field, empty_values, normalize
from contactsync.sync.plan import DeleteReason, SourceRecord
from contactsync.sync.record import SOURCE_PROPERTIES
from tests.support.plugins import BIN, run_plugin

MAPPER = "contactsync-mapper"
OWNER = SyncScope.parse("two_way_your_contacts", "owner")
MODIFIED = "2025-03-01T10:00:00Z"
MODIFIED_AT = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
GRAPH_MODIFIED = "2025-03-02T08:00:00Z"
GRAPH_MODIFIED_AT = datetime(2025, 3, 2, 8, 0, tzinfo=UTC)


def messy(field: Field) -> str:
    """A value that only normalisation makes equal: padding, a decomposed accent, CRLF."""
    if field.multiline:
        return f"  {field.key} Ze\u0301\r\n    second line   \r\n"
    return f"  {field.key}   Ze\u0301 "


def pipeliner_record(relation: str = "owner", **fields: Any) -> dict[str, Any]:
    """A record as tap-pipeliner-contacts emits it (the fields the mapper looks at): every table
    field is there, null when empty, as the tap sends them (an absent one would be unknown)."""
    return {
        "id": "c-17",
        "revision": 7,
        "modified": MODIFIED,
        "is_deleted": False,
        "_sync_user_relation": relation,
        **dict.fromkeys(pipeliner_records.TABLE_FIELDS),
        "primary_account_name": None,
        **fields,
    }


def outlook_record(**fields: Any) -> dict[str, Any]:
    """A record as tap-outlook-contacts emits it (every table property, null when empty)."""
    return {
        "id": "AAMk-1",
        "changeKey": "EQAAAB",
        "lastModifiedDateTime": GRAPH_MODIFIED,
        "pipeliner_id": None,
        **dict.fromkeys(GRAPH_PROPERTY.values()),
        **fields,
    }


# The Outlook location of each key ("businessPhones[0]", "emailAddresses[1].address",
# "businessAddress.city", "singleValueExtendedProperties[…]"), read independently of the
# projection's readers and writers.
_LOCATION = re.compile(r"(?P<name>\w+)(?:\[(?P<index>\d+)\])?(?:\.(?P<part>\w+))?")


def _location(field: Field) -> tuple[str, int | None, str | None]:
    if GRAPH[field.key].location.startswith("singleValueExtendedProperties"):
        return "other_phone", None, None  # flattened, as tap-outlook-contacts emits it
    match = _LOCATION.fullmatch(GRAPH[field.key].location)
    assert match, GRAPH[field.key].location
    index = match["index"]
    return match["name"], None if index is None else int(index), match["part"]


def graph_value(record: dict[str, Any], field: Field) -> Any:
    name, index, part = _location(field)
    value = record.get(name)
    if index is not None:
        items = value or []
        value = items[index] if index < len(items) else None
    if part is not None:
        value = (value or {}).get(part)
    return value


def with_graph_value(field: Field, value: str) -> dict[str, Any]:
    """Record fields holding ``value`` at the field's Outlook location, and nothing else."""
    name, index, part = _location(field)
    if index is None and part is None:
        return {name: value}
    if part is None:
        return {name: [""] * index + [value]}  # type: ignore[operator]
    if index is None:
        return {name: {part: value}}
    return {name: [{"name": "", "address": ""}] * index + [{"name": "Ada", "address": value}]}


def table(**values: str | None) -> dict[str, str | None]:
    return {**empty_values(), **values}


# --- Pipeliner → Outlook, row by row -----------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.key)
def test_pipeliner_row_lands_in_its_graph_place(field: Field) -> None:
    record = pipeliner_record(**{FIELD_NAMES[field.key]: messy(field)})
    out = pipeliner_to_outlook(record, OWNER)
    expected = normalize(messy(field), multiline=field.multiline)

    assert graph_value(out, field) == expected
    for other in FIELDS:
        if other is not field:
            assert normalize(graph_value(out, other)) is None, other.key
    assert out["_source_id"] == "c-17"
    assert out["_source_version"] == "7"
    assert out["_source_modified"] == MODIFIED
    # What target-outlook-contacts makes of it: the normalised table values, keyed by the id.
    assert outlook_records.source_record(out) == SourceRecord(
        "c-17", table(**{field.key: expected}), None, MODIFIED_AT, "7", None
    )
    # …the same contact target-pipeliner-contacts would see from the tap record itself.
    direct = pipeliner_records.source_record(record)
    assert outlook_records.source_record(out) == dataclasses.replace(direct, stamp=None)


def test_company_is_the_primary_accounts_name_before_the_quick_account_name() -> None:
    record = pipeliner_record(primary_account_name="Engines Ltd", quick_account_name="Old name")
    assert pipeliner_to_outlook(record, OWNER)["companyName"] == "Engines Ltd"


def test_a_full_pipeliner_contact_in_graphs_shape() -> None:
    record = pipeliner_record(
        first_name="Ada",
        last_name="Lovelace",
        quick_account_name="Engines Ltd",
        position="Analyst",
        title="Countess",  # the salutation: not mapped
        phone1="+44 1",
        phone2="+44 2",
        phone3="+44 3 (fax)",  # never mapped
        phone4="+44 4",
        phone5="+44 5",
        email1="",
        email2="ada@engines.example",
        email4="never@engines.example",
        address="1 St James's Sq",
        city="London",
        state_province="",
        zip_code="SW1",
        country="UK",
        comments="met at\r\nthe RS",
    )
    assert pipeliner_to_outlook(record, OWNER) == {
        "_source_id": "c-17",
        "_source_version": "7",
        "_source_modified": MODIFIED,
        "givenName": "Ada",
        "surname": "Lovelace",
        "companyName": "Engines Ltd",
        "jobTitle": "Analyst",
        "businessPhones": ["+44 1"],
        "mobilePhone": "+44 4",
        "homePhones": ["+44 5"],
        "emailAddresses": [
            {"name": "", "address": ""},
            {"name": "ada@engines.example", "address": "ada@engines.example"},
        ],
        "businessAddress": {
            "street": "1 St James's Sq",
            "city": "London",
            "state": None,
            "postalCode": "SW1",
            "countryOrRegion": "UK",
        },
        "personalNotes": "met at\nthe RS",
        "other_phone": "+44 2",
    }


def test_empty_lists_and_no_display_name_or_extended_properties() -> None:
    out = pipeliner_to_outlook(pipeliner_record(first_name="Ada"), OWNER)
    assert out["businessPhones"] == out["homePhones"] == out["emailAddresses"] == []
    assert out["other_phone"] is None
    assert "displayName" not in out and "singleValueExtendedProperties" not in out
    assert "id" not in out  # the Graph id is the target's to find, through the ledger


@pytest.mark.parametrize(
    "filled",
    [("email1",), ("email2",), ("email3",), ("email1", "email3"), ("email2", "email3")],
    ids="+".join,
)
def test_email_slots_keep_their_positions(filled: tuple[str, ...]) -> None:
    emails = {key: f"{key}@x.example" for key in filled}
    out = pipeliner_to_outlook(pipeliner_record(**emails), OWNER)
    slots = out["emailAddresses"]
    last = max(int(key[-1]) for key in filled)
    assert len(slots) == last  # empty slots before a filled one stay; trailing ones go
    for n, slot in enumerate(slots, start=1):
        address = emails.get(f"email{n}", "")
        assert slot == {"name": address, "address": address}
    values = outlook_records.source_record(out).values
    assert values is not None
    assert {k: values[k] for k in ("email1", "email2", "email3")} == {
        f"email{n}": emails.get(f"email{n}") for n in (1, 2, 3)
    }


# --- Outlook → Pipeliner, row by row -----------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.key)
def test_graph_row_lands_in_its_pipeliner_field(field: Field) -> None:
    record = outlook_record(**with_graph_value(field, messy(field)))
    out = outlook_to_pipeliner(record)
    expected = normalize(messy(field), multiline=field.multiline)

    assert out[FIELD_NAMES[field.key]] == expected
    for other in FIELDS:
        if other is not field:
            assert out[FIELD_NAMES[other.key]] == "", other.key
    assert out["_source_id"] == "AAMk-1"
    assert out["_source_version"] == "EQAAAB"
    assert out["_source_modified"] == GRAPH_MODIFIED
    assert "id" not in out  # no stamp on the Outlook contact
    assert pipeliner_records.source_record(out) == SourceRecord(
        "AAMk-1", table(**{field.key: expected}), None, GRAPH_MODIFIED_AT, "EQAAAB", None
    )
    assert pipeliner_records.source_record(out) == outlook_records.source_record(record)


def test_a_full_outlook_contact_in_pipeliners_fields() -> None:
    record = outlook_record(
        displayName="Ada L.",
        givenName="Ada",
        surname="Lovelace",
        companyName="Engines Ltd",
        businessPhones=["+44 1", "+44 9"],  # the second one is outside the table
        homePhones=[],
        emailAddresses=[{"name": "Ada", "address": "ada@engines.example"}],
        businessAddress={"city": "London"},
        homeAddress={"city": "Marylebone"},
        birthday="1815-12-10T00:00:00Z",
        other_phone="+44 2",
        pipeliner_id="c-17",
    )
    assert outlook_to_pipeliner(record) == {
        "_source_id": "AAMk-1",
        "id": "c-17",
        "_source_version": "EQAAAB",
        "_source_modified": GRAPH_MODIFIED,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "quick_account_name": "Engines Ltd",
        "account_position": "",
        "phone1": "+44 1",
        "phone2": "+44 2",
        "phone4": "",
        "phone5": "",
        "email1": "ada@engines.example",
        "email2": "",
        "email3": "",
        "address": "",
        "city": "London",
        "state_province": "",
        "zip_code": "",
        "country": "",
        "comments": "",
    }


@pytest.mark.parametrize(
    "stamp_fields",
    [
        {"pipeliner_id": "c-17"},
        {"singleValueExtendedProperties": [{"id": PIPELINER_ID_PROPERTY_ID, "value": "c-17"}]},
    ],
    ids=["flattened", "extended-property"],
)
def test_the_stamp_becomes_the_pipeliner_id(stamp_fields: dict[str, Any]) -> None:
    out = outlook_to_pipeliner(outlook_record(givenName="Ada", **stamp_fields))
    assert out["id"] == "c-17"
    assert out["_source_id"] == "AAMk-1"
    assert pipeliner_records.source_record(out).stamp == "c-17"


def test_other_phone_from_the_extended_property_too() -> None:
    props = [{"id": OTHER_PHONE_PROPERTY_ID.lower(), "value": "+44 2"}]
    out = outlook_to_pipeliner(outlook_record(singleValueExtendedProperties=props))
    assert out["phone2"] == "+44 2"


def test_both_legs_compose_without_losing_a_value() -> None:
    """Pipeliner → Outlook, then the written copy read back Outlook → Pipeliner."""
    original = {FIELD_NAMES[f.key]: messy(f) for f in FIELDS}
    graph = pipeliner_to_outlook(pipeliner_record(**original), OWNER)
    as_read = outlook_record(**{k: v for k, v in graph.items() if not k.startswith("_")})
    back = outlook_to_pipeliner({**as_read, "pipeliner_id": graph["_source_id"]})
    assert back["id"] == "c-17"
    assert {FIELD_NAMES[f.key]: back[FIELD_NAMES[f.key]] for f in FIELDS} == {
        FIELD_NAMES[f.key]: normalize(messy(f), multiline=f.multiline) for f in FIELDS
    }


# --- the scope filter and tombstones -----------------------------------------------------------

_IN = {
    ("one_way_your_contacts", "owner"): {"owner"},
    ("one_way_your_contacts", "owner_or_editor"): {"owner", "editor"},
    ("two_way_your_contacts", "owner"): {"owner"},
    ("two_way_your_contacts", "owner_or_editor"): {"owner", "editor"},
    ("one_way_all_contacts", None): {"owner", "editor", "viewer"},
}
SCOPE_CASES = [
    (sync_type, option, rel.value, rel.value in included)
    for (sync_type, option), included in _IN.items()
    for rel in Relation
]


@pytest.mark.parametrize(("sync_type", "option", "relation", "included"), SCOPE_CASES)
def test_scope_filter(sync_type: str, option: str | None, relation: str, included: bool) -> None:
    scope = SyncScope.parse(sync_type, option)
    out = pipeliner_to_outlook(pipeliner_record(relation, first_name="Ada"), scope)
    if included:
        assert out["givenName"] == "Ada"
        assert "_sdc_deleted_at" not in out and "_sync_deleted_reason" not in out
    else:
        assert out == {
            "_source_id": "c-17",
            "_source_version": "7",
            "_source_modified": MODIFIED,
            "_sdc_deleted_at": MODIFIED,
            "_sync_deleted_reason": "out_of_scope",
        }
        assert outlook_records.source_record(out) == SourceRecord(
            "c-17", None, DeleteReason.OUT_OF_SCOPE, MODIFIED_AT, "7", None
        )


@pytest.mark.parametrize("relation", [r.value for r in Relation])
@pytest.mark.parametrize(
    "marks",
    [
        {"is_deleted": True, "_sdc_deleted_at": "2025-03-03T00:00:00Z"},
        {"is_deleted": True},
        {"_sdc_deleted_at": "2025-03-03T00:00:00Z"},
    ],
    ids=["tap", "is_deleted-only", "sdc-only"],
)
def test_a_deleted_contact_is_a_deleted_tombstone_whatever_the_relation(
    relation: str, marks: dict[str, Any]
) -> None:
    record = pipeliner_record(relation, first_name="Ada", **marks)
    out = pipeliner_to_outlook(record, OWNER)
    assert out == {
        "_source_id": "c-17",
        "_source_version": "7",
        "_source_modified": MODIFIED,
        "_sdc_deleted_at": marks.get("_sdc_deleted_at", MODIFIED),
        "_sync_deleted_reason": "deleted",
    }
    assert outlook_records.source_record(out) == SourceRecord(
        "c-17", None, DeleteReason.DELETED, MODIFIED_AT, "7", None
    )


def test_an_out_of_scope_tombstone_passes_through_as_such() -> None:
    record = pipeliner_record(
        _sdc_deleted_at=MODIFIED, _sync_deleted_reason="out_of_scope", first_name="Ada"
    )
    assert pipeliner_to_outlook(record, OWNER)["_sync_deleted_reason"] == "out_of_scope"


def test_a_tombstone_without_any_time_gets_one() -> None:
    out = pipeliner_to_outlook({"id": "c-1", "is_deleted": True}, OWNER)
    assert out["_sync_deleted_reason"] == "deleted"
    assert datetime.fromisoformat(out["_sdc_deleted_at"]).tzinfo is not None


def test_an_outlook_tombstone() -> None:
    record = outlook_records.tombstone_record("AAMk-1", datetime(2025, 3, 3, tzinfo=UTC))
    out = outlook_to_pipeliner(record)
    assert out == {
        "_source_id": "AAMk-1",
        "_sdc_deleted_at": "2025-03-03T00:00:00+00:00",
        "_sync_deleted_reason": "deleted",
    }
    assert pipeliner_records.source_record(out) == outlook_records.source_record(record)


# --- bad records -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "record", "message"),
    [
        (Direction.PIPELINER_TO_OUTLOOK, {"first_name": "Ada"}, "without a usable `id`"),
        (Direction.PIPELINER_TO_OUTLOOK, {"id": "", "first_name": "Ada"}, "usable `id`"),
        (Direction.OUTLOOK_TO_PIPELINER, {"givenName": "Ada"}, "without a usable `id`"),
        (Direction.OUTLOOK_TO_PIPELINER, {"id": True}, "usable `id`"),
        (Direction.PIPELINER_TO_OUTLOOK, {"id": "c-1", "first_name": "Ada"}, "c-1 has no"),
        (
            Direction.PIPELINER_TO_OUTLOOK,
            {"id": "c-1", "_sync_user_relation": "boss"},
            "unknown value 'boss'",
        ),
        (
            Direction.PIPELINER_TO_OUTLOOK,
            pipeliner_record(first_name={"nested": "x"}),
            "Pipeliner contact c-17",
        ),
        (Direction.OUTLOOK_TO_PIPELINER, outlook_record(givenName=["x"]), "Outlook contact"),
        (Direction.OUTLOOK_TO_PIPELINER, outlook_record(businessAddress="x"), "Outlook contact"),
        (Direction.OUTLOOK_TO_PIPELINER, ["not", "a", "record"], "record is a list"),
    ],
)
def test_records_that_are_neither_contacts_nor_tombstones(
    direction: Direction, record: Any, message: str
) -> None:
    with pytest.raises(RecordError, match=re.escape(message)):
        map_record(direction, record, OWNER)


def test_a_record_error_names_fields_never_values() -> None:
    with pytest.raises(RecordError) as err:
        pipeliner_to_outlook({"first_name": "Secret-Name"}, OWNER)
    assert "first_name" in str(err.value) and "Secret-Name" not in str(err.value)


# --- settings and schemas ----------------------------------------------------------------------


def test_settings_defaults_and_refusals() -> None:
    assert parse_settings("pipeliner_to_outlook") == (
        Direction.PIPELINER_TO_OUTLOOK,
        SyncScope.parse("two_way_your_contacts", "owner"),
    )
    assert parse_settings("pipeliner_to_outlook", "one_way_all_contacts")[1].option is None
    with pytest.raises(ScopeSettingError, match="sync_option does not apply"):
        parse_settings("pipeliner_to_outlook", "one_way_all_contacts", "owner")
    with pytest.raises(ScopeSettingError, match="sync_type: invalid value"):
        parse_settings("pipeliner_to_outlook", "everything")
    with pytest.raises(ScopeSettingError, match="direction: invalid value"):
        parse_settings("sideways")
    with pytest.raises(ScopeSettingError, match="never writes to Pipeliner"):
        parse_settings("outlook_to_pipeliner", "one_way_your_contacts", "owner")


def _sample_outputs() -> dict[Direction, list[dict[str, Any]]]:
    full_p = pipeliner_record(**{FIELD_NAMES[f.key]: messy(f) for f in FIELDS})
    graph = pipeliner_to_outlook(full_p, OWNER)
    full_o = outlook_record(**{k: v for k, v in graph.items() if not k.startswith("_")})
    return {
        Direction.PIPELINER_TO_OUTLOOK: [
            pipeliner_to_outlook(full_p, OWNER),
            pipeliner_to_outlook(pipeliner_record("viewer", first_name="Ada"), OWNER),
            pipeliner_to_outlook(pipeliner_record(is_deleted=True), OWNER),
            pipeliner_to_outlook({"id": "c-1", "is_deleted": True}, OWNER),
        ],
        Direction.OUTLOOK_TO_PIPELINER: [
            outlook_to_pipeliner(full_o),
            outlook_to_pipeliner({**full_o, "pipeliner_id": "c-17"}),
            outlook_to_pipeliner(outlook_records.tombstone_record("AAMk-1")),
        ],
    }


@pytest.mark.parametrize("direction", list(Direction))
def test_every_output_record_fits_the_output_schema(direction: Direction) -> None:
    schema = outlook_schema() if direction is Direction.PIPELINER_TO_OUTLOOK else pipeliner_schema()
    assert "required" not in schema
    validator = JSONSchemaValidator(schema, validate_formats=True)  # what a singer-sdk target runs
    for record in _sample_outputs()[direction]:
        validator.validate(record)
        assert set(record) <= set(schema["properties"]), set(record) - set(schema["properties"])


def test_output_schemas_speak_the_targets_vocabulary() -> None:
    source = set(SOURCE_PROPERTIES)
    graph = set(outlook_records.CONTACT_SCHEMA["properties"])
    pipeliner = set(pipeliner_records.CONTACT_SCHEMA["properties"])
    assert set(outlook_schema()["properties"]) <= graph | source
    assert set(pipeliner_schema()["properties"]) <= pipeliner | source
    assert {"_source_id", "_sdc_deleted_at", "_sync_deleted_reason"} <= set(
        outlook_schema()["properties"]
    ) & set(pipeliner_schema()["properties"])
    # One Graph property per table location, nothing outside the table.
    assert set(GRAPH_TABLE_PROPERTIES) == {_location(f)[0] for f in FIELDS}
    assert set(pipeliner_schema()["properties"]) >= {FIELD_NAMES[f.key] for f in FIELDS} | {"id"}
    assert len(KEYS) == len(FIELDS)
    # Fresh copies: a caller mutating one cannot change the next.
    outlook_schema()["properties"].clear()
    assert outlook_schema()["properties"]


def test_input_schemas() -> None:
    pipeliner_tap = pipeliner_records.CONTACT_SCHEMA
    outlook_tap = outlook_records.CONTACT_SCHEMA
    assert input_schema_problem(Direction.PIPELINER_TO_OUTLOOK, pipeliner_tap) is None
    assert input_schema_problem(Direction.OUTLOOK_TO_PIPELINER, outlook_tap) is None
    assert "is `direction` right?" in str(
        input_schema_problem(Direction.PIPELINER_TO_OUTLOOK, outlook_tap)
    )
    assert "is `direction` right?" in str(
        input_schema_problem(Direction.OUTLOOK_TO_PIPELINER, pipeliner_tap)
    )
    assert "no properties" in str(input_schema_problem(Direction.OUTLOOK_TO_PIPELINER, {}))
    assert output_bookmarks(Direction.PIPELINER_TO_OUTLOOK, ["modified"]) == ["_source_modified"]
    assert output_bookmarks(Direction.OUTLOOK_TO_PIPELINER, ["other"]) is None


# --- the plugin as a real process --------------------------------------------------------------


def _schema_message(schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "SCHEMA", "stream": "contacts", "schema": schema, **extra}


def _record(record: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "RECORD", "stream": "contacts", "record": record, **extra}


STATE = {"type": "STATE", "value": {"bookmarks": {"contacts": {"replication_key_value": MODIFIED}}}}
ACTIVATE = {"type": "ACTIVATE_VERSION", "stream": "contacts", "version": 1740823200000}


def test_process_pipeliner_to_outlook(tmp_path: Path) -> None:
    owned = pipeliner_record("owner", first_name="Ada", email2="ada@x.example")
    other_stream_schema = {"type": "SCHEMA", "stream": "accounts", "schema": {"properties": {}}}
    other_stream_record = {"type": "RECORD", "stream": "accounts", "record": {"id": "a-1"}}
    messages = [
        _schema_message(
            pipeliner_records.CONTACT_SCHEMA,
            key_properties=["id"],
            bookmark_properties=["modified"],
        ),
        _record(owned, version=1740823200000, time_extracted="2025-03-01T10:00:01+00:00"),
        _record(pipeliner_record("viewer", first_name="Bob", id="c-18")),
        _record({"first_name": "No-Id"}),  # dropped with a warning, the run goes on
        _record(pipeliner_record("owner", id="c-19", is_deleted=True, _sdc_deleted_at=MODIFIED)),
        STATE,
        other_stream_schema,
        other_stream_record,
        ACTIVATE,
    ]
    config = {"direction": "pipeliner_to_outlook", "sync_type": "one_way_your_contacts"}
    run = run_plugin(MAPPER, config, tmp_path, stdin=messages, timeout=30)
    assert run.returncode == 0, run.stderr

    out = run.messages
    assert [m["type"] for m in out] == [
        "SCHEMA",
        "RECORD",
        "RECORD",
        "RECORD",
        "STATE",
        "SCHEMA",
        "RECORD",
        "ACTIVATE_VERSION",
    ]
    assert out[0]["schema"] == outlook_schema()
    assert out[0]["key_properties"] == ["_source_id"]
    assert out[0]["bookmark_properties"] == ["_source_modified"]
    assert out[1]["record"] == pipeliner_to_outlook(owned, OWNER)
    assert out[1]["version"] == 1740823200000
    assert out[1]["time_extracted"] == "2025-03-01T10:00:01+00:00"
    assert out[2]["record"]["_source_id"] == "c-18"
    assert out[2]["record"]["_sync_deleted_reason"] == "out_of_scope"
    assert out[3]["record"]["_source_id"] == "c-19"
    assert out[3]["record"]["_sync_deleted_reason"] == "deleted"
    assert out[4] == STATE
    assert out[5] == other_stream_schema and out[6] == other_stream_record
    assert out[7] == ACTIVATE
    assert "dropped a record: a Pipeliner record without a usable `id`" in run.stderr
    assert "No-Id" not in run.stderr
    assert "4 contact records read; 1 mapped, 1 deleted, 1 out of scope, 1 dropped" in run.stderr


def test_process_outlook_to_pipeliner(tmp_path: Path) -> None:
    contact = outlook_record(givenName="Ada", companyName="Engines Ltd", pipeliner_id="c-17")
    gone = outlook_records.tombstone_record("AAMk-2", datetime(2025, 3, 3, tzinfo=UTC))
    messages = [
        _schema_message(outlook_records.CONTACT_SCHEMA, key_properties=["id"]),
        _record(contact),
        _record(gone),
        STATE,
        ACTIVATE,
    ]
    run = run_plugin(MAPPER, {"direction": "outlook_to_pipeliner"}, tmp_path, stdin=messages)
    assert run.returncode == 0, run.stderr
    out = run.messages
    assert [m["type"] for m in out] == ["SCHEMA", "RECORD", "RECORD", "STATE", "ACTIVATE_VERSION"]
    assert out[0]["schema"] == pipeliner_schema()
    assert out[0]["key_properties"] == ["_source_id"]
    assert "bookmark_properties" not in out[0]
    assert out[1]["record"] == outlook_to_pipeliner(contact)
    assert out[1]["record"]["id"] == "c-17"
    assert out[1]["record"]["quick_account_name"] == "Engines Ltd"
    assert out[2]["record"] == {
        "_source_id": "AAMk-2",
        "_sdc_deleted_at": "2025-03-03T00:00:00+00:00",
        "_sync_deleted_reason": "deleted",
    }
    assert out[3:] == [STATE, ACTIVATE]


@pytest.mark.parametrize(
    ("config", "named"),
    [
        (
            {
                "direction": "pipeliner_to_outlook",
                "sync_type": "one_way_all_contacts",
                "sync_option": "owner",
            },
            "sync_option does not apply to one_way_all_contacts",
        ),
        ({"sync_type": "two_way_your_contacts"}, "'direction' is a required property"),
    ],
    ids=["all-contacts-with-option", "no-direction"],
)
def test_process_refuses_bad_settings_at_startup(
    tmp_path: Path, config: dict[str, Any], named: str
) -> None:
    run = run_plugin(MAPPER, config, tmp_path, stdin=[STATE])
    assert run.returncode != 0
    assert named in run.stderr
    assert run.messages == []  # nothing was read or written


def test_process_stops_on_a_schema_from_the_wrong_side(tmp_path: Path) -> None:
    messages = [_schema_message(outlook_records.CONTACT_SCHEMA), STATE]
    run = run_plugin(MAPPER, {"direction": "pipeliner_to_outlook"}, tmp_path, stdin=messages)
    assert run.returncode != 0
    assert "no `_sync_user_relation`" in run.stderr and "is `direction` right?" in run.stderr


def test_process_refuses_batch_messages(tmp_path: Path) -> None:
    batch = {"type": "BATCH", "stream": "contacts", "encoding": {"format": "jsonl"}, "manifest": []}
    run = run_plugin(MAPPER, {"direction": "outlook_to_pipeliner"}, tmp_path, stdin=[batch])
    assert run.returncode != 0
    assert "BATCH messages are not supported" in run.stderr


def test_process_about() -> None:
    proc = subprocess.run(
        [str(BIN / MAPPER), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    about = json.loads(proc.stdout)
    settings = about["settings"]["properties"]
    assert set(settings) == {"direction", "sync_type", "sync_option"}
    assert settings["direction"]["enum"] == ["pipeliner_to_outlook", "outlook_to_pipeliner"]
    assert about["settings"]["required"] == ["direction"]
    assert "stream-maps" not in about["capabilities"]
