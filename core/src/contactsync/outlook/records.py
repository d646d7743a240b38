"""Contacts in Graph's vocabulary as Singer records: what tap-outlook-contacts emits and what
target-outlook-contacts reads (from the mapper, or from any tap using these names)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from contactsync.outlook.projection import (
    EMPTY_SLOT_PROPERTY_ID,
    GRAPH,
    RECORD_PROPERTIES,
    extended_property,
    from_graph,
    pipeliner_stamp,
)
from contactsync.sync.plan import DeleteReason, SourceRecord
from contactsync.sync.record import (
    DELETED_REASON,
    MOVED_TO,
    SOURCE_ID,
    SOURCE_MODIFIED,
    SOURCE_VERSION,
    UNMAPPABLE,
    known_values,
    parse_time,
    type_problem,
)

_STRING = {"type": ["string", "null"]}

#: Graph properties a record carries: identity and the displayed name, the field table's as
#: Graph's projection names them (``outlook.projection.RECORD_PROPERTIES``), our notes, versions.
GRAPH_PROPERTIES: dict[str, Any] = {
    "id": {"type": ["string"]},
    "displayName": _STRING,
    **RECORD_PROPERTIES,
    "pipeliner_id": {**_STRING, "description": "The Pipeliner id stamped on the contact"},
    "empty_slots": {
        **_STRING,
        "description": "The sync's note of a phone list's empty first slot "
        f"({EMPTY_SLOT_PROPERTY_ID})",
    },
    "changeKey": _STRING,
    "createdDateTime": {"type": ["string", "null"], "format": "date-time"},
    "lastModifiedDateTime": {"type": ["string", "null"], "format": "date-time"},
    "parentFolderId": _STRING,
}

#: JSON schema of a contact record as tap-outlook-contacts emits it.
CONTACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **GRAPH_PROPERTIES,
        "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
        DELETED_REASON: {
            "type": ["string", "null"],
            "enum": ["deleted", "moved", None],
            "description": "Why the contact left the folder: deleted, or moved to another "
            "Outlook folder (parentFolderId, _sync_moved_to)",
        },
        MOVED_TO: {**_STRING, "description": "The folder a moved contact is in now (its name)"},
    },
}


def tap_record(contact: Mapping[str, Any]) -> dict[str, Any]:
    """A Graph contact (extended properties expanded) as a flat record."""
    flattened = {slot.property: slot.extended for slot in GRAPH.values() if slot.extended}
    record = {
        name: contact.get(name)
        for name in GRAPH_PROPERTIES
        if name not in flattened and name not in ("pipeliner_id", "empty_slots")
    }
    for name, property_id in flattened.items():
        record[name] = extended_property(contact, property_id)
    record["pipeliner_id"] = pipeliner_stamp(contact)
    record["empty_slots"] = extended_property(contact, EMPTY_SLOT_PROPERTY_ID)
    return record


def tombstone_record(contact_id: str, at: datetime | None = None) -> dict[str, Any]:
    moment = (at or datetime.now(UTC)).isoformat()
    return {"id": contact_id, "_sdc_deleted_at": moment}


def moved_record(
    contact_id: str, folder_id: str, folder_name: str, at: datetime | None = None
) -> dict[str, Any]:
    """A contact filed into another folder: gone from this folder's stream (a tombstone, for any
    loader), marked ``moved`` so that the sync keeps its Pipeliner contact."""
    return {
        **tombstone_record(contact_id, at),
        DELETED_REASON: "moved",
        MOVED_TO: folder_name,
        "parentFolderId": folder_id,
    }


def removal_records(
    removed: Sequence[str], located: Mapping[str, Any], folder_id: str
) -> Iterator[dict[str, Any]]:
    """What delta's removals (``@removed``) are, once each id was looked up in the mailbox
    (``located``: id → :class:`~contactsync.outlook.graph_api.Located`): a contact found in another
    personal folder was moved there; one found in this folder came back (a live record); one
    found nowhere was deleted."""
    for contact_id in removed:
        where = located.get(contact_id)
        if where is None:
            yield tombstone_record(contact_id)
        elif where.folder.id == folder_id:
            yield tap_record(where.contact)
        else:
            yield moved_record(contact_id, where.folder.id, where.folder.display_name)


def source_record(record: Mapping[str, Any]) -> SourceRecord:
    """A record in Graph's vocabulary, as the engine sees it.

    Keyed by ``_source_id`` (e.g. a Pipeliner id from the mapper, linked through the ledger)
    or else by the Graph ``id``.
    """
    key = record.get(SOURCE_ID) or record.get("id")
    if not key:
        raise ValueError("a contact record needs a key: `_source_id` or the Outlook `id`")
    if record.get(UNMAPPABLE):
        raise ValueError(str(record[UNMAPPABLE]))
    version = record.get(SOURCE_VERSION) or record.get("changeKey")
    modified = parse_time(record.get(SOURCE_MODIFIED) or record.get("lastModifiedDateTime"))
    stamp = None if record.get(SOURCE_ID) else pipeliner_stamp(record)
    if record.get("_sdc_deleted_at"):
        reason = DeleteReason(record.get(DELETED_REASON) or DeleteReason.DELETED)
        moved_to = record.get(MOVED_TO) if reason is DeleteReason.MOVED else None
        return SourceRecord(str(key), None, reason, modified, version, stamp, moved_to)
    if problem := type_problem(record, GRAPH_PROPERTIES):
        raise ValueError(problem)
    if len(record.get("emailAddresses") or ()) > 3:
        raise ValueError(f"record {key} has more than 3 e-mail addresses; Outlook holds at most 3")
    values = known_values(from_graph(record, partial=True), record)
    if not any(values.values()):
        raise ValueError(f"record {key} carries none of the contact fields (givenName, …)")
    return SourceRecord(str(key), values, None, modified, version, stamp)
