"""Contacts in Pipeliner's vocabulary as Singer records: what the tap emits, what the target reads.

One record shape for both directions, so ``tap-pipeliner-contacts | target-pipeliner-contacts``
composes and any other tap can feed the target by using the same field names.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from contactsync.fieldmap import BY_KEY, QUICK_POSITION, from_pipeliner
from contactsync.plan import DeleteReason, SourceRecord
from contactsync.scope import ContactSharing, SyncUser, can_delete, can_edit, relation

#: Pipeliner fields of the table, in table order (company is ``quick_account_name``, the job
#: title ``account_position``).
TABLE_FIELDS: tuple[str, ...] = tuple(f.pipeliner for f in BY_KEY.values())
#: Emitted beside them: the Quick Account Position (the job title of an unlinked contact, kept
#: by Pipeliner but hidden while the contact has a primary account).
EXTRA_FIELDS: tuple[str, ...] = (QUICK_POSITION,)

#: Why a tombstone was emitted; ``out_of_scope`` only ever removes the Outlook copy, ``moved``
#: (an Outlook contact filed into another folder) never deletes anything.
DELETED_REASON = "_sync_deleted_reason"
#: The name of the Outlook folder a ``moved`` contact lives in now.
MOVED_TO = "_sync_moved_to"
SOURCE_ID = "_source_id"
SOURCE_VERSION = "_source_version"
SOURCE_MODIFIED = "_source_modified"
#: Set (to the reason) on a record the mapper could not map: the target rejects it by name, and
#: a complete listing still counts its key as listed, so its copy is not taken for deleted.
UNMAPPABLE = "_sync_unmappable"
#: Table keys whose value the source record does not know (its property was deselected or not
#: in its SCHEMA), when the record's own shape cannot say so: the target leaves them alone.
UNKNOWN_FIELDS = "_sync_unknown_fields"

_STRING = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_SHARES = {
    "type": ["array", "null"],
    "items": {
        "type": "object",
        "properties": {
            "client_id": _STRING,
            "unit_id": _STRING,
            "role": {"type": ["integer", "null"]},
        },
    },
}

#: JSON schema of a contact record as the tap emits it.
CONTACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": ["string", "null"]},
        **{name: _STRING for name in (*TABLE_FIELDS, *EXTRA_FIELDS)},
        "primary_account_id": _STRING,
        "primary_account_name": _STRING,
        "owner_id": _STRING,
        "unit_id": _STRING,
        "share_mode": {"type": ["integer", "null"]},
        "sharing_clients": _SHARES,
        "sharing_units": _SHARES,
        "is_deleted": {"type": ["boolean", "null"]},
        "is_delete_protected": {"type": ["boolean", "null"]},
        "is_archived": {"type": ["boolean", "null"]},
        "created": _TIME,
        "modified": _TIME,
        "revision": {"type": ["integer", "null"]},
        "_sync_user_relation": {
            "type": ["string", "null"],
            "enum": ["owner", "editor", "viewer", "none", None],
        },
        "_sync_user_can_edit": {"type": ["boolean", "null"]},
        "_sync_user_can_delete": {"type": ["boolean", "null"]},
        "_sdc_deleted_at": _TIME,
    },
}

#: What a record from another system adds, for target-pipeliner-contacts (e.g. from the mapper).
SOURCE_PROPERTIES: dict[str, Any] = {
    DELETED_REASON: {
        "type": ["string", "null"],
        "enum": ["deleted", "out_of_scope", "moved", None],
    },
    MOVED_TO: _STRING,
    SOURCE_ID: _STRING,
    SOURCE_VERSION: _STRING,
    SOURCE_MODIFIED: _TIME,
    UNMAPPABLE: _STRING,
    UNKNOWN_FIELDS: {"type": ["array", "null"], "items": {"type": "string"}},
}


def _shares(items: Any, key: str) -> list[dict[str, Any]]:
    return [
        {key: item.get(key), "role": item.get("role")}
        for item in items or ()
        if isinstance(item, Mapping) and not item.get("is_deleted")
    ]


def tap_record(contact: Mapping[str, Any], user: SyncUser) -> dict[str, Any]:
    """A Pipeliner API contact (read with ``expand=primary_account,sharing_*``) as a record,
    with the syncing user's relation to it and their rights to edit and delete it."""
    sharing = ContactSharing.from_api(contact)
    rel = relation(sharing, user)
    record: dict[str, Any] = {name: contact.get(name) for name in (*TABLE_FIELDS, *EXTRA_FIELDS)}
    account = contact.get("primary_account")
    record.update(
        id=contact["id"],
        primary_account_id=contact.get("primary_account_id"),
        primary_account_name=account.get("name") if isinstance(account, Mapping) else None,
        owner_id=contact.get("owner_id"),
        unit_id=contact.get("unit_id"),
        share_mode=contact.get("share_mode"),
        sharing_clients=_shares(contact.get("sharing_clients"), "client_id"),
        sharing_units=_shares(contact.get("sharing_units"), "unit_id"),
        is_deleted=bool(contact.get("is_deleted")),
        is_delete_protected=contact.get("is_delete_protected"),
        is_archived=contact.get("is_archived"),
        created=contact.get("created"),
        modified=contact.get("modified"),
        revision=contact.get("revision"),
        _sync_user_relation=rel.value,
        _sync_user_can_edit=can_edit(sharing, user, rel),
        _sync_user_can_delete=can_delete(sharing, user, rel),
    )
    if record["is_deleted"]:
        record["_sdc_deleted_at"] = contact.get("modified")
    return record


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict, Mapping),
    "null": (type(None),),
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    for name in ("string", "integer", "number", "array", "object", "null"):
        if isinstance(value, _JSON_TYPES[name]):
            return name
    return type(value).__name__


def _expected(schema: Mapping[str, Any]) -> str:
    declared = schema.get("type", [])
    names = [t for t in ([declared] if isinstance(declared, str) else declared) if t != "null"]
    text = " or ".join(f"an {t}" if t[0] in "aeiou" else f"a {t}" for t in names)
    items = schema.get("items")
    if "array" in names and isinstance(items, Mapping) and _expected(items):
        text += f" of {_expected(items).split(' ', 1)[1]}s"
    return text


def type_problem(record: Mapping[str, Any], properties: Mapping[str, Any]) -> str | None:
    """The first property of ``record`` whose value is not of the type ``properties`` declare
    (arrays' items included), named with what was expected and what came, never the value.

    A target validates records against their stream's own SCHEMA; another tap's SCHEMA may well
    declare a string where we read an array (``emailAddresses``), which would otherwise surface
    as a misleading error further on."""
    for name, schema in properties.items():
        value = record.get(name)
        if value is None or not isinstance(schema, Mapping) or schema.get("format"):
            continue  # absent/null is for the merge to judge; date-times are parsed by the SDK
        if problem := _mismatch(name, value, schema):
            return problem
    return None


def _mismatch(path: str, value: Any, schema: Mapping[str, Any]) -> str | None:
    declared = schema.get("type")
    if declared is None:
        return None
    names = [declared] if isinstance(declared, str) else list(declared)
    actual = _json_type(value)
    if actual not in names and not (actual == "integer" and "number" in names):
        return f"field {path}: expected {_expected(schema)}, got {_article(actual)}"
    items = schema.get("items")
    if actual == "array" and isinstance(items, Mapping):
        for n, item in enumerate(value):
            if item is not None and (problem := _mismatch(f"{path}[{n}]", item, items)):
                return problem
    return None


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime ("Z" accepted); None when absent or garbage."""
    if not value:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def source_record(record: Mapping[str, Any]) -> SourceRecord:
    """A record in Pipeliner's vocabulary, as the engine sees it.

    Keyed by ``_source_id`` (a record from another system, linked through the ledger) or else by
    the Pipeliner ``id``; an ``id`` is also the stamp that finds the contact on the first write.
    """
    key = record.get(SOURCE_ID) or record.get("id")
    if not key:
        raise ValueError("a contact record needs a key: `_source_id` or the Pipeliner `id`")
    if record.get(UNMAPPABLE):
        raise ValueError(str(record[UNMAPPABLE]))
    if problem := type_problem(record, CONTACT_SCHEMA["properties"]):
        raise ValueError(problem)
    # A Pipeliner id on the record is the strongest evidence of its counterpart.
    stamp = record.get("id") or None
    version = record.get(SOURCE_VERSION)
    if version is None and record.get("revision") is not None:
        version = str(record["revision"])
    modified = parse_time(record.get(SOURCE_MODIFIED) or record.get("modified"))
    if record.get("_sdc_deleted_at") or record.get("is_deleted"):
        reason = DeleteReason(record.get(DELETED_REASON) or DeleteReason.DELETED)
        moved_to = record.get(MOVED_TO) if reason is DeleteReason.MOVED else None
        return SourceRecord(str(key), None, reason, modified, version, stamp, moved_to)
    values = known_values(from_pipeliner(record, partial=True), record)
    if not any(values.values()):
        raise ValueError(
            f"record {key} carries none of the contact fields ({', '.join(TABLE_FIELDS[:4])}, …)"
        )
    return SourceRecord(str(key), values, None, modified, version, stamp)


def known_values(values: dict[str, str | None], record: Mapping[str, Any]) -> dict[str, str | None]:
    """``values`` without the keys the record declares unknown (:data:`UNKNOWN_FIELDS`)."""
    unknown = record.get(UNKNOWN_FIELDS) or ()
    if isinstance(unknown, str) or not all(isinstance(k, str) for k in unknown):
        raise ValueError(f"field {UNKNOWN_FIELDS}: expected a list of field-table keys")
    return {k: v for k, v in values.items() if k not in unknown}


__all__ = [
    "CONTACT_SCHEMA",
    "DELETED_REASON",
    "EXTRA_FIELDS",
    "MOVED_TO",
    "SOURCE_ID",
    "SOURCE_PROPERTIES",
    "TABLE_FIELDS",
    "UNKNOWN_FIELDS",
    "UNMAPPABLE",
    "known_values",
    "parse_time",
    "source_record",
    "tap_record",
    "type_problem",
]
