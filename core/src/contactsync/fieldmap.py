"""The field table (DESIGN §2): one data structure that every other part reads.

A contact is compared, merged and stored as *table values*: a mapping of the table keys below to
normalised strings (or None for empty). Reading projects an API record onto the table; writing
builds a destination payload from table values. Writes never disturb anything outside the table:

* Pipeliner PATCH is partial, so a payload simply names only table fields; ``phone3``, ``email4``
  and ``email5`` never appear in one.
* Graph replaces whole arrays and address objects on PATCH, so the payload carries the *current*
  array/object with only the table's slots changed (``businessPhones[1]``, ``homePhones[1]``,
  the e-mail display names of untouched slots… survive).

Both sides go through the same :func:`normalize`, so a value read back equals the value written.

**Absent is not empty** (DESIGN §4). A Singer record may lack a property: deselected with
``meltano select``, or not in its stream's SCHEMA. Read with ``partial=True``, such a record's
values simply have no key for it, meaning "unknown: leave it alone"; only an explicit null or ""
clears. The merge and the writers act on the keys present and nothing else. A destination copy
read from an API is complete: there a missing property is empty.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: A UTF-16 surrogate on its own: never valid text.
_SURROGATE = re.compile("[\ud800-\udfff]")

Values = Mapping[str, str | None]
"""Table values: keys of :data:`KEYS` to a normalised string or None (empty). A key may be missing
from a source record's values: its value is unknown and must be left alone."""

#: Graph has no v1.0 field for Outlook's "Other phone"; it lives in this MAPI property.
OTHER_PHONE_PROPERTY_ID = "String 0x3A1F"
#: Our stamp on every Outlook copy: the Pipeliner id, so links can be rebuilt if the ledger is lost.
PIPELINER_ID_PROPERTY_ID = "String {8f7d2c2e-3b0a-4d55-9a55-2f3b6c1e9a41} Name PipelinerContactId"
#: On an Outlook copy whose business or home phone we left empty while a second one (outside the
#: table) stays: that list's entries after the empty first one, as JSON. Graph documents nothing
#: about empty entries in a list; where they are dropped, the second phone moves up to the first
#: slot, and this tells it apart from a first phone typed in Outlook.
EMPTY_SLOT_PROPERTY_ID = "String {8f7d2c2e-3b0a-4d55-9a55-2f3b6c1e9a41} Name PipelinerEmptySlot"
#: Pipeliner fields a sync must never write (fax, additional e-mails).
PIPELINER_NEVER_WRITTEN = frozenset({"phone3", "email4", "email5"})
#: Pipeliner's job title as it shows it (API v100 Contact): "Job position of Contact in his primary
#: Account or quick account position if Contact has no primary Account".
ACCOUNT_POSITION = "account_position"
#: The "Quick Account Position": the job title of a contact *without* a primary account. The
#: create-contact tutorial (developers.pipelinersales.com/api-docs/tutorials-and-articles/
#: create-contact, "Setting up the Position") says to use it only for a contact not linked to
#: an Account; a linked contact's job title is the account relation's position.
QUICK_POSITION = "position"


@dataclass(frozen=True)
class Field:
    """One row of the table: the key, the Pipeliner field, and the Graph location (for humans)."""

    key: str
    pipeliner: str
    graph: str
    multiline: bool = False


FIELDS: tuple[Field, ...] = (
    Field("first_name", "first_name", "givenName"),
    Field("last_name", "last_name", "surname"),
    Field("company", "quick_account_name", "companyName"),
    Field("job_title", ACCOUNT_POSITION, "jobTitle"),
    Field("business_phone", "phone1", "businessPhones[0]"),
    Field("other_phone", "phone2", f"singleValueExtendedProperties[{OTHER_PHONE_PROPERTY_ID}]"),
    Field("mobile_phone", "phone4", "mobilePhone"),
    Field("home_phone", "phone5", "homePhones[0]"),
    Field("email1", "email1", "emailAddresses[0].address"),
    Field("email2", "email2", "emailAddresses[1].address"),
    Field("email3", "email3", "emailAddresses[2].address"),
    Field("street", "address", "businessAddress.street"),
    Field("city", "city", "businessAddress.city"),
    Field("state", "state_province", "businessAddress.state"),
    Field("postal_code", "zip_code", "businessAddress.postalCode"),
    Field("country", "country", "businessAddress.countryOrRegion"),
    Field("notes", "comments", "personalNotes", multiline=True),
)
KEYS: tuple[str, ...] = tuple(f.key for f in FIELDS)
BY_KEY: Mapping[str, Field] = {f.key: f for f in FIELDS}
EMAIL_KEYS: tuple[str, ...] = ("email1", "email2", "email3")

assert not PIPELINER_NEVER_WRITTEN & {f.pipeliner for f in FIELDS}


# --- normalisation -----------------------------------------------------------------------------


#: Recent results of :func:`normalize` by (text, multiline), canonical forms included (the
#: function is idempotent): a value is normalised when the record is read and again where a
#: body is built from it (``to_graph``), and the second time is a lookup (issue #15).
_SEEN: dict[tuple[str, bool], str | None] = {}
_SEEN_MAX = 50_000
_SEEN_LONGEST = 256  # notes can be long: those are computed each time, memory stays small
_MISSING = object()


def normalize(value: object, *, multiline: bool = False) -> str | None:
    """The one canonical form of a value, used on both sides before any comparison.

    NFC (Outlook and Pipeliner may store composed or decomposed accents), control characters
    dropped, whitespace collapsed; in notes, line breaks and indentation are kept but CRLF/CR
    become LF and trailing spaces go. Empty means None, so "" and a missing field compare equal.
    """
    if value is None:
        return None
    if isinstance(value, str) and len(value) <= _SEEN_LONGEST:
        seen = _SEEN.get((value, multiline), _MISSING)
        if seen is not _MISSING:
            return seen  # type: ignore[return-value]
        result = _normalize(value, multiline)
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[(value, multiline)] = result
        if result is not None:
            _SEEN[(result, multiline)] = result
        return result
    return _normalize(value, multiline)


def _normalize(value: object, multiline: bool) -> str | None:
    if not isinstance(value, str):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        value = str(value)
    if _SURROGATE.search(value):
        # Invalid UTF-8 read with surrogateescape, or a "\ud800" JSON escape: no API can
        # store it, and encoding it later would fail the whole batch instead of this record.
        raise ValueError("not valid Unicode (a lone surrogate: invalid UTF-8 or escape)")
    # Controls go before NFC: one between a letter and its accent would keep them apart.
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    text = unicodedata.normalize("NFC", text)
    if multiline:
        text = "\n".join(line.rstrip() for line in text.split("\n")).strip()
    else:
        text = " ".join(text.split())
    return text or None


def normalize_values(
    values: Mapping[str, object], *, partial: bool = False
) -> dict[str, str | None]:
    """Every table key, normalised (with ``partial``, only the keys present); a key outside the
    table is a programming error."""
    unknown = set(values) - set(KEYS)
    if unknown:
        raise KeyError(f"not field-table keys: {', '.join(sorted(unknown))}")
    out: dict[str, str | None] = {}
    for f in FIELDS:
        if partial and f.key not in values:
            continue
        try:
            out[f.key] = normalize(values.get(f.key), multiline=f.multiline)
        except ValueError as exc:
            raise ValueError(f"field {f.key}: {exc}") from None
    return out


def _normalized(values: Mapping[str, object], key: str) -> str | None:
    return normalize(values.get(key), multiline=BY_KEY[key].multiline)


def empty_values() -> dict[str, str | None]:
    return dict.fromkeys(KEYS)


def changed_keys(a: Values, b: Values) -> set[str]:
    """Keys whose values differ (both sides are expected to be normalised; missing is empty)."""
    return {k for k in KEYS if a.get(k) != b.get(k)}


def source_changes(source: Values, agreed: Values) -> set[str]:
    """Keys a source record changes: only those it carries (a missing key is unknown)."""
    return {k for k, v in source.items() if v != agreed.get(k)}


def display_name(values: Values) -> str:
    """What Outlook shows: the name, else the company, else the first e-mail address."""
    name = " ".join(v for v in (values.get("first_name"), values.get("last_name")) if v)
    if name:
        return name
    return values.get("company") or next((values[k] for k in EMAIL_KEYS if values.get(k)), "")


# --- Pipeliner -------------------------------------------------------------------------------


def pipeliner_company(contact: Mapping[str, Any]) -> object:
    """The primary account's name, else ``quick_account_name`` (DESIGN §2, company row)."""
    account = contact.get("primary_account")
    if isinstance(account, Mapping) and account.get("name"):
        return account["name"]
    if contact.get("primary_account_name"):
        return contact["primary_account_name"]
    return contact.get("quick_account_name")


def pipeliner_job_title(contact: Mapping[str, Any]) -> object:
    """The job title Pipeliner shows (DESIGN §2, job_title row): ``account_position``.

    The API computes it (the primary account relation's position, else ``position``); a record
    without it (another tap's, in Pipeliner's vocabulary) is read from ``position``.
    """
    shown = contact.get(ACCOUNT_POSITION)
    return shown if shown is not None else contact.get(QUICK_POSITION)


#: Where Pipeliner keeps a key read from more than one field: one present makes it known.
_PIPELINER_SOURCES: Mapping[str, tuple[str, ...]] = {
    "company": ("primary_account", "primary_account_name", "quick_account_name"),
    "job_title": (ACCOUNT_POSITION, QUICK_POSITION),
}


def _pipeliner_known(contact: Mapping[str, Any], f: Field) -> bool:
    return any(name in contact for name in _PIPELINER_SOURCES.get(f.key, (f.pipeliner,)))


def from_pipeliner(contact: Mapping[str, Any], *, partial: bool = False) -> dict[str, str | None]:
    """Table values of a Pipeliner contact as the API returns it (``expand=primary_account``).

    The flattened ``primary_account_name`` emitted by tap-pipeliner-contacts is read too. With
    ``partial``, a key whose Pipeliner field is absent from ``contact`` is left out (unknown).
    """
    readers: dict[str, Callable[[Mapping[str, Any]], object]] = {
        "company": pipeliner_company,
        "job_title": pipeliner_job_title,
    }
    known = _pipeliner_known if partial else None
    raw = {
        f.key: readers[f.key](contact) if f.key in readers else contact.get(f.pipeliner)
        for f in FIELDS
        if known is None or known(contact, f)
    }
    return normalize_values(raw, partial=partial)


def to_pipeliner(values: Values, keys: Iterable[str] | None = None) -> dict[str, str]:
    """A Pipeliner create/PATCH body for ``keys`` (default: those ``values`` has) of ``values``.

    Empty values are sent as "" (the vendor schema declares plain strings, not nullable ones).
    The company goes to ``quick_account_name``; linking an existing Account instead is the
    target's decision, since it needs an API lookup. The job title goes to
    ``account_position``; for a contact without a primary account the target sends it as
    ``position`` instead (:func:`pipeliner_job_title_field`).
    """
    selected = _selected(values, keys)
    return {BY_KEY[k].pipeliner: _normalized(values, k) or "" for k in selected}


def _selected(values: Values, keys: Iterable[str] | None) -> tuple[str, ...]:
    """The keys a write covers, in table order: ``keys``, or those ``values`` carries."""
    wanted = set(values) if keys is None else set(keys)
    if wanted - set(KEYS):
        raise KeyError(f"not field-table keys: {', '.join(sorted(wanted - set(KEYS)))}")
    return tuple(k for k in KEYS if k in wanted)


def pipeliner_job_title_field(linked_to_account: bool) -> str:
    """Where a write puts the job title: the primary account relation's position for a contact
    linked to an account (``account_position``), the Quick Account Position otherwise.

    Only the field Pipeliner shows is written, so a hidden Quick Account Position of a linked
    contact is never overwritten, and an unlinked contact's job title does not depend on how
    Pipeliner treats ``account_position`` without a primary account (the spec does not say).
    """
    return ACCOUNT_POSITION if linked_to_account else QUICK_POSITION


# --- Graph -----------------------------------------------------------------------------------

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


def align_email_slots(values: Values, agreed: Values | None) -> dict[str, str | None]:
    """Outlook's e-mail addresses in the slots the two sides last agreed on.

    We write an empty slot as an empty entry, so that ``email2`` stays second; Graph documents
    nothing about such entries, and where they are dropped (an Outlook client re-saving the
    list) the addresses after it move up. Dropping keeps their order, so when the listed
    addresses leave no gap, they are placed in order into the slots that match the agreed
    values best: the same address in the same slot, then an address edited where one was, then
    the earliest slots. With a gap (the empty entries were kept), or no agreed values, the
    positions are taken as listed.
    """
    out = dict(values)
    if not all(k in values for k in EMAIL_KEYS):
        return out  # some slots unknown (absent from the record): nothing to realign
    listed = [values.get(k) for k in EMAIL_KEYS]
    filled = [v for v in listed if v]
    if not agreed or listed[: len(filled)] != filled or len(filled) in (0, len(EMAIL_KEYS)):
        return out
    wanted = [(agreed.get(k) or "").casefold() or None for k in EMAIL_KEYS]

    def fit(slots: tuple[int, ...]) -> tuple[int, int, list[int]]:
        same = sum(wanted[s] == v.casefold() for s, v in zip(slots, filled, strict=True))
        in_place = sum(wanted[s] is not None for s in slots)
        return same, in_place, [-s for s in slots]

    best = max(itertools.combinations(range(len(EMAIL_KEYS)), len(filled)), key=fit)
    out.update(dict.fromkeys(EMAIL_KEYS))
    out.update({EMAIL_KEYS[s]: v for s, v in zip(best, filled, strict=True)})
    return out


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


#: The Graph property that holds each table key (what must be present for the key to be known).
GRAPH_PROPERTY: Mapping[str, str] = {
    "first_name": "givenName",
    "last_name": "surname",
    "company": "companyName",
    "job_title": "jobTitle",
    "business_phone": "businessPhones",
    "other_phone": "other_phone",
    "mobile_phone": "mobilePhone",
    "home_phone": "homePhones",
    "email1": "emailAddresses",
    "email2": "emailAddresses",
    "email3": "emailAddresses",
    "street": "businessAddress",
    "city": "businessAddress",
    "state": "businessAddress",
    "postal_code": "businessAddress",
    "country": "businessAddress",
    "notes": "personalNotes",
}

#: How each key is read from and written into a Graph contact; the e-mail slots are written
#: together (:func:`_email_list`).
_GRAPH: Mapping[str, tuple[Getter, Setter | None]] = {
    "first_name": _scalar("givenName"),
    "last_name": _scalar("surname"),
    "company": _scalar("companyName"),
    "job_title": _scalar("jobTitle"),
    "business_phone": _phone_slot("businessPhones"),
    "other_phone": _other_phone(),
    "mobile_phone": _scalar("mobilePhone"),
    "home_phone": _phone_slot("homePhones"),
    "email1": (_email_slot(0), None),
    "email2": (_email_slot(1), None),
    "email3": (_email_slot(2), None),
    "street": _address_part("street"),
    "city": _address_part("city"),
    "state": _address_part("state"),
    "postal_code": _address_part("postalCode"),
    "country": _address_part("countryOrRegion"),
    "notes": _scalar("personalNotes"),
}
assert set(_GRAPH) == set(KEYS) == set(GRAPH_PROPERTY)
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


def _graph_known(contact: Mapping[str, Any], key: str) -> bool:
    name = GRAPH_PROPERTY[key]
    if name == "other_phone":  # flattened by the tap, or the extended property itself
        return "other_phone" in contact or "singleValueExtendedProperties" in contact
    return name in contact


def from_graph(contact: Mapping[str, Any], *, partial: bool = False) -> dict[str, str | None]:
    """Table values of a Graph contact (with the Other-phone extended property expanded).

    The flattened ``other_phone`` emitted by tap-outlook-contacts is read too. With ``partial``,
    a key whose Graph property is absent from ``contact`` is left out (unknown).
    """
    raw = {
        key: get(contact)
        for key, (get, _) in _GRAPH.items()
        if not partial or _graph_known(contact, key)
    }
    return normalize_values(raw, partial=partial)


def pipeliner_stamp(contact: Mapping[str, Any]) -> str | None:
    """The Pipeliner id we stamped on an Outlook contact (or the tap's flattened copy)."""
    return extended_property(contact, PIPELINER_ID_PROPERTY_ID) or contact.get("pipeliner_id")


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
    selected = _selected(values, keys)
    body: dict[str, Any] = {}
    for key in selected:
        put = _GRAPH[key][1]
        if put is not None:
            put(body, current, _normalized(values, key))
    before = from_graph(current) if current else None
    if any(k in EMAIL_KEYS for k in selected):
        slots = align_email_slots(before or empty_values(), agreed)
        addresses = [_normalized(values, k) if k in selected else slots[k] for k in EMAIL_KEYS]
        body["emailAddresses"] = _email_list(addresses, current)
    _note_empty_slots(body, current)
    after = dict(before or empty_values())
    after.update({k: _normalized(values, k) for k in selected})
    shown = current.get("displayName")
    derived = before is not None and normalize(shown) in (None, normalize(display_name(before)))
    body["displayName"] = display_name(after) if not current or derived else shown
    if stamp is not None:
        _set_extended(body, PIPELINER_ID_PROPERTY_ID, stamp)
    return body
