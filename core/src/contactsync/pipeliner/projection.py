"""Pipeliner's projection of the field table: where each table key lives in a Pipeliner contact,
and how a contact is read onto the table and written back from it.

:data:`FIELD_NAMES` has one entry per table key; the fields the tap emits and the target writes
(:data:`TABLE_FIELDS`) are derived from it. Pipeliner PATCH is partial, so a payload simply
names only table fields; ``phone3``, ``email4`` and ``email5`` never appear in one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from contactsync.sync.fields import (
    KEYS,
    Values,
    check_projection,
    normalize_values,
    normalized,
    selected,
)

#: Pipeliner's job title as it shows it (API v100 Contact): "Job position of Contact in his primary
#: Account or quick account position if Contact has no primary Account".
ACCOUNT_POSITION = "account_position"
#: The "Quick Account Position": the job title of a contact *without* a primary account. The
#: create-contact tutorial (developers.pipelinersales.com/api-docs/tutorials-and-articles/
#: create-contact, "Setting up the Position") says to use it only for a contact not linked to
#: an Account; a linked contact's job title is the account relation's position.
QUICK_POSITION = "position"

#: The Pipeliner field of each table key (company is ``quick_account_name``, the job title
#: ``account_position``): one line per key of ``contactsync.sync.fields.FIELDS``.
FIELD_NAMES: Mapping[str, str] = {
    "first_name": "first_name",
    "last_name": "last_name",
    "company": "quick_account_name",
    "job_title": ACCOUNT_POSITION,
    "business_phone": "phone1",
    "other_phone": "phone2",
    "mobile_phone": "phone4",
    "home_phone": "phone5",
    "email1": "email1",
    "email2": "email2",
    "email3": "email3",
    "street": "address",
    "city": "city",
    "state": "state_province",
    "postal_code": "zip_code",
    "country": "country",
    "notes": "comments",
}
check_projection("Pipeliner", FIELD_NAMES)
#: Pipeliner fields of the table, in table order: what the tap reads and emits.
TABLE_FIELDS: tuple[str, ...] = tuple(FIELD_NAMES[k] for k in KEYS)
#: Pipeliner fields a sync must never write (fax, additional e-mails).
NEVER_WRITTEN = frozenset({"phone3", "email4", "email5"})
if NEVER_WRITTEN & set(TABLE_FIELDS):
    raise AssertionError("a field the sync must never write is in the table")


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


#: Per table key, in table order: its field, the reader of a key read from more than one field
#: (else None), and the fields whose presence makes the key known.
_READ_PLAN: tuple[
    tuple[str, str, Callable[[Mapping[str, Any]], object] | None, tuple[str, ...]], ...
] = tuple(
    (
        key,
        FIELD_NAMES[key],
        {"company": pipeliner_company, "job_title": pipeliner_job_title}.get(key),
        _PIPELINER_SOURCES.get(key, (FIELD_NAMES[key],)),
    )
    for key in KEYS
)


def from_pipeliner(contact: Mapping[str, Any], *, partial: bool = False) -> dict[str, str | None]:
    """Table values of a Pipeliner contact as the API returns it (``expand=primary_account``).

    The flattened ``primary_account_name`` emitted by tap-pipeliner-contacts is read too. With
    ``partial``, a key whose Pipeliner field is absent from ``contact`` is left out (unknown).
    """
    raw: dict[str, object] = {}
    for key, name, reader, sources in _READ_PLAN:
        if partial and not (name in contact if reader is None else _known(contact, sources)):
            continue
        raw[key] = contact.get(name) if reader is None else reader(contact)
    return normalize_values(raw, partial=partial)


def _known(contact: Mapping[str, Any], sources: tuple[str, ...]) -> bool:
    return any(name in contact for name in sources)


def to_pipeliner(values: Values, keys: Iterable[str] | None = None) -> dict[str, str]:
    """A Pipeliner create/PATCH body for ``keys`` (default: those ``values`` has) of ``values``.

    Empty values are sent as "" (the vendor schema declares plain strings, not nullable ones).
    The company goes to ``quick_account_name``; linking an existing Account instead is the
    target's decision, since it needs an API lookup. The job title goes to
    ``account_position``; for a contact without a primary account the target sends it as
    ``position`` instead (:func:`pipeliner_job_title_field`).
    """
    covered = selected(values, keys)
    return {FIELD_NAMES[k]: normalized(values, k) or "" for k in covered}


def pipeliner_job_title_field(linked_to_account: bool) -> str:
    """Where a write puts the job title: the primary account relation's position for a contact
    linked to an account (``account_position``), the Quick Account Position otherwise.

    Only the field Pipeliner shows is written, so a hidden Quick Account Position of a linked
    contact is never overwritten, and an unlinked contact's job title does not depend on how
    Pipeliner treats ``account_position`` without a primary account (the spec does not say).
    """
    return ACCOUNT_POSITION if linked_to_account else QUICK_POSITION
