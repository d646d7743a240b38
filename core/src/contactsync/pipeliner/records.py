"""Contacts in Pipeliner's vocabulary as Singer records: what the tap emits, what the target reads.

One record shape for both directions, so ``tap-pipeliner-contacts | target-pipeliner-contacts``
composes and any other tap can feed the target by using the same field names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contactsync.pipeliner.projection import QUICK_POSITION, TABLE_FIELDS, from_pipeliner
from contactsync.pipeliner.scope import ContactSharing, SyncUser, can_delete, can_edit, relation
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

#: Emitted beside them: the Quick Account Position (the job title of an unlinked contact, kept
#: by Pipeliner but hidden while the contact has a primary account).
EXTRA_FIELDS: tuple[str, ...] = (QUICK_POSITION,)

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


__all__ = [
    "CONTACT_SCHEMA",
    "EXTRA_FIELDS",
    "TABLE_FIELDS",
    "source_record",
    "tap_record",
]
