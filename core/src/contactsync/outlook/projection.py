"""Graph's projection of the field table: where each table key lives in an Outlook contact, how a
contact is read onto the table and written back from it, and (derived from that) the properties
``$select`` reads and the Singer schema declares, so the two cannot drift from the table.

Graph replaces whole arrays and address objects on PATCH, so the payload carries the *current*
array/object with only the table's slots changed (``businessPhones[1]``, ``homePhones[1]``, the
e-mail display names of untouched slots… survive).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from contactsync.sync.fields import (
    BY_KEY,
    EMAIL_KEYS,
    Values,
    align_email_slots,
    check_projection,
    display_name,
    empty_values,
    normalize,
    normalize_values,
    selected,
)

#: Graph has no v1.0 field for Outlook's "Other phone"; it lives in this MAPI property.
OTHER_PHONE_PROPERTY_ID = "String 0x3A1F"
#: Our stamp on every Outlook copy: the Pipeliner id, so links can be rebuilt if the ledger is lost.
PIPELINER_ID_PROPERTY_ID = "String {8f7d2c2e-3b0a-4d55-9a55-2f3b6c1e9a41} Name PipelinerContactId"
#: On an Outlook copy whose business or home phone we left empty while a second one (outside the
#: table) stays: that list's entries after the empty first one, as JSON. Graph documents nothing
#: about empty entries in a list; where they are dropped, the second phone moves up to the first
#: slot, and this tells it apart from a first phone typed in Outlook.
EMPTY_SLOT_PROPERTY_ID = "String {8f7d2c2e-3b0a-4d55-9a55-2f3b6c1e9a41} Name PipelinerEmptySlot"

Getter = Callable[[Mapping[str, Any]], object]
Setter = Callable[[dict[str, Any], Mapping[str, Any], str | None], None]


def _working(body: dict[str, Any], current: Mapping[str, Any], name: str, empty: Any) -> Any:
    """The value being built for ``name``: already in the body, else a copy of the current one."""
    if name not in body:
        existing = current.get(name)
        body[name] = copy.deepcopy(existing) if existing is not None else empty
    return body[name]


def _scalar(name: str) -> tuple[Getter, Setter]:
    def get(contact: Mapping[str, Any]) -> object:
        return contact.get(name)

    def put(body: dict[str, Any], current: Mapping[str, Any], value: str | None) -> None:
        body[name] = value

    return get, put


def empty_slots(contact: Mapping[str, Any]) -> dict[str, list[str]]:
    """Our :data:`EMPTY_SLOT_PROPERTY_ID` note on an Outlook contact (or the tap's flattened
    copy): per phone list, the entries that followed the first slot we left empty."""
    raw = extended_property(contact, EMPTY_SLOT_PROPERTY_ID) or contact.get("empty_slots")
    try:
        note = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    if not isinstance(note, dict):
        return {}
    return {k: v for k, v in note.items() if isinstance(v, list)}


def _phone_slot(name: str) -> tuple[Getter, Setter]:
    """The first entry of a phone list; the others lie outside the table, are kept and never
    shift. An empty first entry is written as "" so they stay second; where Graph drops it, our
    note (:func:`empty_slots`) says the list still starts with an empty slot."""

    def get(contact: Mapping[str, Any]) -> object:
        items = contact.get(name) or []
        if items and empty_slots(contact).get(name) == list(items):
            return None  # what we wrote after an empty first slot, moved up
        return items[0] if items else None

    def put(body: dict[str, Any], current: Mapping[str, Any], value: str | None) -> None:
        items: list[str] = _working(body, current, name, [])
        if items and get(current) is None and items[0]:
            items.insert(0, "")  # the empty first slot Graph dropped, back in place
        if not items:
            items.append("")
        items[0] = value or ""
        while items and not items[-1]:
            items.pop()

    return get, put


def _email_slot(index: int) -> Getter:
    """One of the three e-mail slots as listed (:func:`align_email_slots` puts them back in
    their agreed slots where Graph dropped an empty one)."""

    def get(contact: Mapping[str, Any]) -> object:
        items = contact.get("emailAddresses") or []
        if index >= len(items) or not isinstance(items[index], Mapping):
            return None
        return items[index].get("address")

    return get


def _email_list(addresses: list[str | None], current: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``emailAddresses`` holding ``addresses`` in slot order: an empty slot before a filled
    one as an empty entry; a current entry with the same address (case aside) is kept, with its
    display name, and takes the address as written (a change of case reaches Outlook)."""
    entries = [e for e in current.get("emailAddresses") or () if isinstance(e, Mapping)]
    by_address = {(normalize(e.get("address")) or "").casefold(): e for e in reversed(entries)}
    items: list[dict[str, Any]] = []
    for address in addresses:
        same = by_address.get(address.casefold()) if address else None
        if same is None:
            items.append({"name": address or "", "address": address or ""})
            continue
        entry = copy.deepcopy(dict(same))
        if normalize(entry.get("address")) != address:
            entry["address"] = address
        if not entry.get("name"):
            entry["name"] = address
        items.append(entry)
    while items and not items[-1].get("address"):
        items.pop()
    return items


def _address_part(part: str, name: str = "businessAddress") -> tuple[Getter, Setter]:
    def get(contact: Mapping[str, Any]) -> object:
        address = contact.get(name) or {}
        return address.get(part)

    def put(body: dict[str, Any], current: Mapping[str, Any], value: str | None) -> None:
        _working(body, current, name, {})[part] = value

    return get, put


def extended_property(contact: Mapping[str, Any], property_id: str) -> str | None:
    """A single-value extended property, as returned by ``$expand`` (Graph lower-cases ids)."""
    for prop in contact.get("singleValueExtendedProperties") or ():
        if str(prop.get("id", "")).casefold() == property_id.casefold():
            return prop.get("value")
    return None


def _set_extended(body: dict[str, Any], property_id: str, value: str) -> None:
    props: list[dict[str, str]] = body.setdefault("singleValueExtendedProperties", [])
    props[:] = [p for p in props if p["id"].casefold() != property_id.casefold()]
    props.append({"id": property_id, "value": value})


def _other_phone() -> tuple[Getter, Setter]:
    def get(contact: Mapping[str, Any]) -> object:
        found = extended_property(contact, OTHER_PHONE_PROPERTY_ID)
        return found if found is not None else contact.get("other_phone")

    def put(body: dict[str, Any], current: Mapping[str, Any], value: str | None) -> None:
        _set_extended(body, OTHER_PHONE_PROPERTY_ID, value or "")

    return get, put


#: JSON schema of a string property and of a list of strings, in a record.
_STRING: Mapping[str, Any] = {"type": ["string", "null"]}
_STRINGS: Mapping[str, Any] = {"type": ["array", "null"], "items": {"type": ["string", "null"]}}
_EMAILS: Mapping[str, Any] = {
    "type": ["array", "null"],
    "items": {"type": "object", "properties": {"name": _STRING, "address": _STRING}},
}
_ADDRESS_PARTS = ("street", "city", "state", "postalCode", "countryOrRegion")
_ADDRESS: Mapping[str, Any] = {
    "type": ["object", "null"],
    "properties": {name: _STRING for name in _ADDRESS_PARTS},
}


@dataclass(frozen=True)
class Slot:
    """Where one table key lives in a Graph contact, and how it is read and written.

    ``property`` is the contact property that holds it (what ``$select`` asks for, and the
    record property of that name); ``schema`` its JSON schema in a record. A key kept in an
    extended property names it in ``extended``: it is read by ``$expand``, not ``$select``, and
    tap-outlook-contacts flattens it into a record property named ``property``.
    """

    property: str
    schema: Mapping[str, Any]
    get: Getter
    put: Setter | None
    #: Where in the contact, for humans and tests: ``businessPhones[0]``, ``businessAddress.city``.
    location: str
    extended: str | None = None


def _scalar_slot(name: str) -> Slot:
    return Slot(name, _STRING, *_scalar(name), location=name)


def _phone(name: str) -> Slot:
    return Slot(name, _STRINGS, *_phone_slot(name), location=f"{name}[0]")


def _email(index: int) -> Slot:
    return Slot(
        "emailAddresses", _EMAILS, _email_slot(index), None, f"emailAddresses[{index}].address"
    )


def _address(part: str) -> Slot:
    return Slot("businessAddress", _ADDRESS, *_address_part(part), f"businessAddress.{part}")


#: Graph's projection of the field table: one line per key of ``contactsync.sync.fields.FIELDS``.
#: The e-mail slots are written together (:func:`_email_list`).
GRAPH: Mapping[str, Slot] = {
    "first_name": _scalar_slot("givenName"),
    "last_name": _scalar_slot("surname"),
    "company": _scalar_slot("companyName"),
    "job_title": _scalar_slot("jobTitle"),
    "business_phone": _phone("businessPhones"),
    "other_phone": Slot(
        "other_phone",
        {**_STRING, "description": f"Outlook's Other phone ({OTHER_PHONE_PROPERTY_ID})"},
        *_other_phone(),
        location=f"singleValueExtendedProperties[{OTHER_PHONE_PROPERTY_ID}]",
        extended=OTHER_PHONE_PROPERTY_ID,
    ),
    "mobile_phone": _scalar_slot("mobilePhone"),
    "home_phone": _phone("homePhones"),
    "email1": _email(0),
    "email2": _email(1),
    "email3": _email(2),
    "street": _address("street"),
    "city": _address("city"),
    "state": _address("state"),
    "postal_code": _address("postalCode"),
    "country": _address("countryOrRegion"),
    "notes": _scalar_slot("personalNotes"),
}
check_projection("Graph", GRAPH)

#: The record property that holds each table key (what must be present for the key to be known).
GRAPH_PROPERTY: Mapping[str, str] = {key: slot.property for key, slot in GRAPH.items()}
#: Contact properties the table is read from with ``$select``, in table order, derived from
#: :data:`GRAPH` (an extended property is read with ``$expand`` instead).
SELECTED_PROPERTIES: tuple[str, ...] = tuple(
    dict.fromkeys(slot.property for slot in GRAPH.values() if slot.extended is None)
)
#: Extended properties the table is read from (``$expand``), derived from :data:`GRAPH`.
EXTENDED_PROPERTIES: tuple[str, ...] = tuple(
    dict.fromkeys(slot.extended for slot in GRAPH.values() if slot.extended is not None)
)
#: Record properties of the table and their JSON schemas (a property shared by several keys,
#: like ``businessAddress``, once), derived from :data:`GRAPH`.
RECORD_PROPERTIES: Mapping[str, Mapping[str, Any]] = {
    slot.property: slot.schema for slot in GRAPH.values()
}


_PHONE_LISTS = ("businessPhones", "homePhones")


def _note_empty_slots(body: dict[str, Any], current: Mapping[str, Any]) -> None:
    """Keep our :data:`EMPTY_SLOT_PROPERTY_ID` note in step with the phone lists written."""
    note = empty_slots(current)
    for name in _PHONE_LISTS:
        items = body.get(name)
        if items is None:
            continue
        if len(items) > 1 and not items[0]:
            note[name] = list(items[1:])
        else:
            note.pop(name, None)
    if note != empty_slots(current):
        _set_extended(
            body, EMPTY_SLOT_PROPERTY_ID, json.dumps(note, sort_keys=True) if note else ""
        )


#: Per table key, in table order: its getter, its record property, and whether it is kept in an
#: extended property (then known from the tap's flattened property or the expanded list).
_READ_PLAN: tuple[tuple[str, Getter, str, bool], ...] = tuple(
    (key, slot.get, slot.property, slot.extended is not None) for key, slot in GRAPH.items()
)


def from_graph(contact: Mapping[str, Any], *, partial: bool = False) -> dict[str, str | None]:
    """Table values of a Graph contact (with the Other-phone extended property expanded).

    The flattened ``other_phone`` emitted by tap-outlook-contacts is read too. With ``partial``,
    a key whose Graph property is absent from ``contact`` is left out (unknown).
    """
    if not partial:
        return normalize_values({key: get(contact) for key, get, _, _ in _READ_PLAN})
    expanded = "singleValueExtendedProperties" in contact
    raw = {
        key: get(contact)
        for key, get, name, extended in _READ_PLAN
        if name in contact or (extended and expanded)
    }
    return normalize_values(raw, partial=True)


def pipeliner_stamp(contact: Mapping[str, Any]) -> str | None:
    """The Pipeliner id we stamped on an Outlook contact (or the tap's flattened copy)."""
    return extended_property(contact, PIPELINER_ID_PROPERTY_ID) or contact.get("pipeliner_id")


def _normal(values: Values, key: str) -> str | None:
    value = values.get(key)
    return None if value is None else normalize(value, multiline=BY_KEY[key].multiline)


def to_graph(
    values: Values,
    current: Mapping[str, Any] | None = None,
    keys: Iterable[str] | None = None,
    *,
    stamp: str | None = None,
    agreed: Values | None = None,
) -> dict[str, Any]:
    """A Graph create/PATCH body for ``keys`` (default: those ``values`` has), merged into
    ``current``.

    ``displayName`` is always sent (Graph may regenerate it otherwise): a name the user typed
    in Outlook is kept; one that was derived from the table follows the table. ``agreed`` (the
    values the sides agree on once this is written) places the current e-mail addresses back
    in their slots (:func:`align_email_slots`) before the written ones go into theirs.
    """
    current = current or {}
    covered = selected(values, keys)
    body: dict[str, Any] = {}
    written: dict[str, str | None] = {}
    for key in covered:  # each value normalised once; the e-mail slots after the current ones
        put = GRAPH[key].put
        if put is not None:
            written[key] = _normal(values, key)
            put(body, current, written[key])
    before = from_graph(current) if current else None
    if any(k in covered for k in EMAIL_KEYS):
        # A new contact has no addresses to put back in their slots (all slots empty).
        slots = align_email_slots(before, agreed) if before is not None else empty_values()
        written.update((k, _normal(values, k)) for k in EMAIL_KEYS if k in covered)
        addresses = [written[k] if k in covered else slots[k] for k in EMAIL_KEYS]
        body["emailAddresses"] = _email_list(addresses, current)
    if current:  # a new contact's lists have one entry at most: nothing to note
        _note_empty_slots(body, current)
    after = dict(before or empty_values())
    after.update(written)
    if not current:
        body["displayName"] = display_name(after)
    else:
        shown = current.get("displayName")
        derived = before is not None and normalize(shown) in (None, normalize(display_name(before)))
        body["displayName"] = display_name(after) if derived else shown
    if stamp is not None:
        _set_extended(body, PIPELINER_ID_PROPERTY_ID, stamp)
    return body
