"""The two mappings between the services, as pure functions on one record.

contactsync-mapper applies them as a Singer mapper between any tap and target; our targets apply
them in-process to the stream of the partner tap (tap-pipeliner-contacts into
target-outlook-contacts, tap-outlook-contacts into target-pipeliner-contacts), which saves a
process and a JSON round trip per record (issue #15).

``pipeliner_to_outlook`` turns a record of tap-pipeliner-contacts (Pipeliner vocabulary, carrying
the syncing user's ``_sync_user_relation``) into what target-outlook-contacts reads (Graph
vocabulary, keyed by ``_source_id``) and applies the scope filter on the way;
``outlook_to_pipeliner`` turns a record of tap-outlook-contacts into what
target-pipeliner-contacts reads. Both read one side onto the field table and write the table in
the other side's shape with :mod:`contactsync.sync.fields` and the two services' projections,
so the table exists only there and the values come out normalised exactly as the targets will
compare them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from contactsync.outlook.projection import (
    OTHER_PHONE_PROPERTY_ID,
    extended_property,
    from_graph,
    pipeliner_stamp,
    to_graph,
)
from contactsync.outlook.records import GRAPH_PROPERTIES
from contactsync.pipeliner.projection import from_pipeliner, to_pipeliner
from contactsync.pipeliner.records import CONTACT_SCHEMA as PIPELINER_CONTACT_SCHEMA
from contactsync.pipeliner.records import TABLE_FIELDS
from contactsync.pipeliner.scope import Relation, ScopeSettingError, SyncScope, SyncType
from contactsync.sync.fields import KEYS, Values, empty_values
from contactsync.sync.plan import DeleteReason
from contactsync.sync.record import (
    DELETED_REASON,
    MOVED_TO,
    SOURCE_ID,
    SOURCE_MODIFIED,
    SOURCE_PROPERTIES,
    SOURCE_VERSION,
    UNKNOWN_FIELDS,
)

__all__ = [
    "CONTACTS_STREAM",
    "DELETED_AT",
    "GRAPH_TABLE_PROPERTIES",
    "KEY_PROPERTIES",
    "RELATION",
    "Direction",
    "RecordError",
    "graph_fields",
    "input_schema_problem",
    "map_record",
    "outlook_schema",
    "outlook_to_pipeliner",
    "output_bookmarks",
    "output_schema",
    "parse_settings",
    "pipeliner_schema",
    "pipeliner_to_outlook",
]

#: The one stream the mappings rewrite; any other stream passes through unchanged.
CONTACTS_STREAM = "contacts"
#: The syncing user's relation to a Pipeliner contact, as tap-pipeliner-contacts emits it.
RELATION = "_sync_user_relation"
#: The Singer tombstone marker.
DELETED_AT = "_sdc_deleted_at"
#: Every output record is keyed by the id on the side it came from.
KEY_PROPERTIES: tuple[str, ...] = (SOURCE_ID,)

_DEFAULT_SYNC_TYPE = SyncType.TWO_WAY_YOUR_CONTACTS.value


class Direction(StrEnum):
    """The ``direction`` setting: which of the two mappings a mapper process applies."""

    PIPELINER_TO_OUTLOOK = "pipeliner_to_outlook"
    OUTLOOK_TO_PIPELINER = "outlook_to_pipeliner"


class RecordError(ValueError):
    """A record that is neither a contact nor a tombstone; the message names it and says why.

    ``key`` is the record's id when it has one: the mapper then still hands the target the key
    (marked unmappable), so that a complete listing does not take the contact for deleted.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# --- settings ----------------------------------------------------------------------------------


def parse_settings(
    direction: str, sync_type: str | None = None, sync_option: str | None = None
) -> tuple[Direction, SyncScope]:
    """Validate the three settings together; :class:`ScopeSettingError` names the one to fix.

    The scope is checked in both directions, so that both mappings of a job accept and refuse the
    same settings. Outlook → Pipeliner belongs to the two-way type only: a one-way sync never
    writes Pipeliner, and a job that tried to would be misconfigured.
    """
    try:
        leg = Direction(direction)
    except ValueError:
        allowed = ", ".join(d.value for d in Direction)
        raise ScopeSettingError(
            f"direction: invalid value {direction!r}; allowed: {allowed}"
        ) from None
    scope = SyncScope.parse(sync_type or _DEFAULT_SYNC_TYPE, sync_option)
    if leg is Direction.OUTLOOK_TO_PIPELINER and not scope.two_way:
        raise ScopeSettingError(
            f"direction {leg} needs sync_type {SyncType.TWO_WAY_YOUR_CONTACTS}: "
            f"a {scope.sync_type} sync never writes to Pipeliner"
        )
    return leg, scope


# --- Graph's shape of the table ----------------------------------------------------------------

#: Parts of a Graph write body that are not record fields: the target derives the display name,
#: and the Other-phone extended property travels flattened as ``other_phone``.
_BODY_ONLY = ("displayName", "singleValueExtendedProperties")


def graph_fields(values: Values) -> dict[str, Any]:
    """Table values as Graph record fields: the body of a new contact
    (:func:`~contactsync.outlook.projection.to_graph`), with the Other phone flattened the way
    tap-outlook-contacts emits it.

    E-mail slots keep their positions (an empty first slot stays ``{"name": "", "address": ""}``
    so that email2 stays second); empty trailing slots and phones are trimmed. Only the
    properties of the keys ``values`` carries are written (absent is not empty); keys sharing a
    property with an unknown one are listed in :data:`UNKNOWN_FIELDS` by the caller.
    """
    body = to_graph(values)
    if "other_phone" in values:
        body["other_phone"] = extended_property(body, OTHER_PHONE_PROPERTY_ID) or None
    for name in _BODY_ONLY:
        body.pop(name, None)
    return body


def _unknown(values: Values) -> dict[str, Any]:
    """The envelope's list of table keys the source record did not carry (nothing if none)."""
    missing = [key for key in KEYS if key not in values]
    return {UNKNOWN_FIELDS: missing} if missing else {}


#: The Graph record fields that carry the table, in table order (derived from ``to_graph``).
GRAPH_TABLE_PROPERTIES: tuple[str, ...] = tuple(graph_fields(empty_values()))


# --- records -----------------------------------------------------------------------------------


def _fields_of(record: Mapping[str, Any]) -> str:
    """Names (never values: they are personal data) to recognise a record by in a log."""
    names = sorted(str(k) for k in record)[:8]
    more = ", …" if len(record) > len(names) else ""
    return f"fields: {', '.join(names)}{more}" if names else "an empty record"


def _key(record: Mapping[str, Any], side: str) -> str:
    value = record.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise RecordError(
            f"a {side} record without a usable `id` ({_fields_of(record)}): "
            "neither a contact nor a tombstone"
        )
    return str(value)


def _compact(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _tombstone(head: Mapping[str, Any], deleted_at: Any, reason: DeleteReason) -> dict[str, Any]:
    """A tombstone: the key (and version/modified when known), when, and why."""
    when = deleted_at or datetime.now(UTC).isoformat()
    return {**head, DELETED_AT: when, DELETED_REASON: reason.value}


def _relation(record: Mapping[str, Any], key: str) -> Relation:
    value = record.get(RELATION)
    try:
        return Relation(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Relation)
        found = "has no" if value is None else f"has an unknown value {value!r} in"
        raise RecordError(
            f"Pipeliner contact {key} {found} `{RELATION}` (expected {allowed}), so the scope "
            "filter cannot place it; records of tap-pipeliner-contacts carry it",
            key,
        ) from None


def pipeliner_to_outlook(record: Mapping[str, Any], scope: SyncScope) -> dict[str, Any]:
    """A tap-pipeliner-contacts record as a target-outlook-contacts record, scope applied.

    * deleted (``_sdc_deleted_at`` or ``is_deleted``) → tombstone, reason ``deleted``, whatever
      the relation;
    * live, but the user's relation is outside ``scope`` → tombstone, reason ``out_of_scope``
      (the target removes a linked Outlook copy, and never touches Pipeliner for it);
    * live and in scope → the table values in Graph's shape.

    Every output carries ``_source_id`` (the Pipeliner id), ``_source_version`` (the revision)
    and ``_source_modified`` when the input has them. Raises :class:`RecordError`.
    """
    key = _key(record, "Pipeliner")
    revision = record.get("revision")
    modified = record.get("modified")
    head = _compact(
        {
            SOURCE_ID: key,
            SOURCE_VERSION: None if revision is None else str(revision),
            SOURCE_MODIFIED: modified,
        }
    )
    if record.get(DELETED_AT) or record.get("is_deleted"):
        # A tombstone passes through; one already marked out of scope stays so (it only removes
        # the Outlook copy either way).
        reason = (
            DeleteReason.OUT_OF_SCOPE
            if record.get(DELETED_REASON) == DeleteReason.OUT_OF_SCOPE
            else DeleteReason.DELETED
        )
        return _tombstone(head, record.get(DELETED_AT) or modified, reason)
    if not scope.includes(_relation(record, key)):
        return _tombstone(head, modified, DeleteReason.OUT_OF_SCOPE)
    try:
        values = from_pipeliner(record, partial=True)
    except (TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"Pipeliner contact {key}: {exc}", key) from None
    return {**head, **graph_fields(values), **_unknown(values)}


def outlook_to_pipeliner(record: Mapping[str, Any]) -> dict[str, Any]:
    """A tap-outlook-contacts record as a target-pipeliner-contacts record.

    ``_source_id`` is the Outlook id, ``id`` our Pipeliner-id stamp when the contact carries one
    (the target's strongest match), ``_source_version`` the ``changeKey`` and ``_source_modified``
    the ``lastModifiedDateTime``. Tombstones stay tombstones (reason ``deleted``: whether the
    deletion may reach Pipeliner is the target's decision; ``moved``, with the folder's name, for
    a contact filed into another Outlook folder, which never deletes). Raises
    :class:`RecordError`.
    """
    key = _key(record, "Outlook")
    try:
        stamp = pipeliner_stamp(record)
        head = _compact(
            {
                SOURCE_ID: key,
                "id": str(stamp) if stamp else None,
                SOURCE_VERSION: record.get("changeKey"),
                SOURCE_MODIFIED: record.get("lastModifiedDateTime"),
            }
        )
        if record.get(DELETED_AT):
            if record.get(DELETED_REASON) == DeleteReason.MOVED:
                # Filed into another Outlook folder: it left the sync, nobody deleted it.
                moved = {**head, MOVED_TO: record.get(MOVED_TO)}
                return _tombstone(_compact(moved), record[DELETED_AT], DeleteReason.MOVED)
            return _tombstone(head, record[DELETED_AT], DeleteReason.DELETED)
        values = from_graph(record, partial=True)
    except (TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"Outlook contact {key}: {exc}", key) from None
    return {**head, **to_pipeliner(values), **_unknown(values)}


def map_record(direction: Direction, record: Mapping[str, Any], scope: SyncScope) -> dict[str, Any]:
    """The record through the mapping of ``direction`` (``scope`` matters to Pipeliner's side)."""
    if not isinstance(record, Mapping):
        raise RecordError(f"a RECORD message whose record is a {type(record).__name__}")
    if direction is Direction.PIPELINER_TO_OUTLOOK:
        return pipeliner_to_outlook(record, scope)
    return outlook_to_pipeliner(record)


# --- schemas -----------------------------------------------------------------------------------

_PIPELINER_PROPERTIES: Mapping[str, Any] = PIPELINER_CONTACT_SCHEMA["properties"]


def _object(properties: Mapping[str, Any]) -> dict[str, Any]:
    # No `required`: a tombstone carries only its key, the deletion time and the reason.
    return {"type": "object", "properties": copy.deepcopy(dict(properties))}


def outlook_schema() -> dict[str, Any]:
    """The schema of ``pipeliner_to_outlook``'s records (Graph vocabulary, as the target reads)."""
    return _object(
        {
            SOURCE_ID: SOURCE_PROPERTIES[SOURCE_ID],
            **SOURCE_PROPERTIES,
            **{name: GRAPH_PROPERTIES[name] for name in GRAPH_TABLE_PROPERTIES},
            DELETED_AT: _PIPELINER_PROPERTIES[DELETED_AT],
        }
    )


def pipeliner_schema() -> dict[str, Any]:
    """The schema of ``outlook_to_pipeliner``'s records (Pipeliner vocabulary)."""
    return _object(
        {
            SOURCE_ID: SOURCE_PROPERTIES[SOURCE_ID],
            "id": _PIPELINER_PROPERTIES["id"],
            **{name: _PIPELINER_PROPERTIES[name] for name in TABLE_FIELDS},
            **SOURCE_PROPERTIES,
            DELETED_AT: _PIPELINER_PROPERTIES[DELETED_AT],
        }
    )


def output_schema(direction: Direction) -> dict[str, Any]:
    if direction is Direction.PIPELINER_TO_OUTLOOK:
        return outlook_schema()
    return pipeliner_schema()


#: Input bookmark properties that have a counterpart in the output records.
_BOOKMARKS: Mapping[Direction, Mapping[str, str]] = {
    Direction.PIPELINER_TO_OUTLOOK: {"modified": SOURCE_MODIFIED},
    Direction.OUTLOOK_TO_PIPELINER: {"lastModifiedDateTime": SOURCE_MODIFIED},
}


def output_bookmarks(direction: Direction, bookmarks: Any) -> list[str] | None:
    """The input's ``bookmark_properties`` renamed into the output (others have no counterpart)."""
    if isinstance(bookmarks, str):
        bookmarks = [bookmarks]
    renamed = [_BOOKMARKS[direction][b] for b in bookmarks or () if b in _BOOKMARKS[direction]]
    return list(dict.fromkeys(renamed)) or None


#: What the mapper adds to an input problem: its one setting decides what it expects.
DIRECTION_HINT = "is `direction` right?"


def input_schema_problem(
    direction: Direction, schema: Any, hint: str = DIRECTION_HINT
) -> str | None:
    """Why a ``contacts`` SCHEMA cannot feed the mapping of ``direction`` (None when it can);
    ``hint`` ends the message (the mapper's and a target's likely causes differ).

    Caught at the SCHEMA, before any record: a mapping fed the other side's records (a swapped
    ``direction``) would otherwise drop every record one by one.
    """
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping) or not properties:
        return "its SCHEMA declares no properties"
    if "id" not in properties:
        return "its SCHEMA declares no `id`, which keys every record"
    if direction is Direction.PIPELINER_TO_OUTLOOK and RELATION not in properties:
        return (
            f"its SCHEMA has no `{RELATION}`, which the scope filter needs: the {direction} "
            f"mapping reads the records of tap-pipeliner-contacts ({hint})"
        )
    if direction is Direction.OUTLOOK_TO_PIPELINER and not set(properties) & set(
        GRAPH_TABLE_PROPERTIES
    ):
        return (
            f"its SCHEMA has none of Graph's contact fields ({', '.join(GRAPH_TABLE_PROPERTIES)}):"
            f" the {direction} mapping reads the records of tap-outlook-contacts ({hint})"
        )
    return None
