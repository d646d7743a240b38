"""The field table (DESIGN §2): the keys every other part reads, and their one normal form.

A contact is compared, merged and stored as *table values*: a mapping of the table keys below to
normalised strings (or None for empty). Each service package projects its records onto the table
and back in its ``projection`` module (one entry per key, checked against :data:`KEYS` at import)
and derives from that projection the properties it reads. Adding a field is one line here and one
line in each projection.

Both sides go through the same :func:`normalize`, so a value read back equals the value written.

**Absent is not empty** (DESIGN §4). A Singer record may lack a property: deselected with
``meltano select``, or not in its stream's SCHEMA. Read with ``partial=True``, such a record's
values simply have no key for it, meaning "unknown: leave it alone"; only an explicit null or ""
clears. The merge and the writers act on the keys present and nothing else. A destination copy
read from an API is complete: there a missing property is empty.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: A UTF-16 surrogate on its own: never valid text.
_SURROGATE = re.compile("[\ud800-\udfff]")

Values = Mapping[str, str | None]
"""Table values: keys of :data:`KEYS` to a normalised string or None (empty). A key may be missing
from a source record's values: its value is unknown and must be left alone."""


@dataclass(frozen=True)
class Field:
    """One row of the table: the key, and whether its text keeps line breaks."""

    key: str
    multiline: bool = False


FIELDS: tuple[Field, ...] = (
    Field("first_name"),
    Field("last_name"),
    Field("company"),
    Field("job_title"),
    Field("business_phone"),
    Field("other_phone"),
    Field("mobile_phone"),
    Field("home_phone"),
    Field("email1"),
    Field("email2"),
    Field("email3"),
    Field("street"),
    Field("city"),
    Field("state"),
    Field("postal_code"),
    Field("country"),
    Field("notes", multiline=True),
)
KEYS: tuple[str, ...] = tuple(f.key for f in FIELDS)
BY_KEY: Mapping[str, Field] = {f.key: f for f in FIELDS}
EMAIL_KEYS: tuple[str, ...] = ("email1", "email2", "email3")


def check_projection(service: str, keys: Iterable[str]) -> None:
    """Fail at import when a service's projection does not cover exactly the table's keys."""
    got = set(keys)
    if got != set(KEYS):
        missing = ", ".join(sorted(set(KEYS) - got)) or "none"
        extra = ", ".join(sorted(got - set(KEYS))) or "none"
        raise AssertionError(f"{service} projection: missing keys {missing}; unknown keys {extra}")


# --- normalisation -----------------------------------------------------------------------------


#: Recent results of :func:`normalize` by (text, multiline), canonical forms included (the
#: function is idempotent): a value is normalised when the record is read and again where a
#: body is built from it (a projection's writer), and the second time is a lookup (issue #15).
_SEEN: dict[tuple[str, bool], str | None] = {}
_SEEN_MAX = 50_000
_SEEN_LONGEST = 256  # notes can be long: those are computed each time, memory stays small
_MISSING = object()


def normalize(value: object, *, multiline: bool = False) -> str | None:
    """The one canonical form of a value, used on both sides before any comparison.

    NFC (a service may store composed or decomposed accents), control characters
    dropped, whitespace collapsed; in notes, line breaks and indentation are kept but CRLF/CR
    become LF and trailing spaces go. Empty means None, so "" and a missing field compare equal.
    """
    if value is None:
        return None
    if isinstance(value, str):
        # Already in normal form, cheaply (issue #15): printable ASCII (no control character,
        # no accent to compose, no whitespace but the space), no space at either end and, on
        # one line, never two in a row. Most names, addresses and phone numbers are.
        if (
            value.isascii()
            and value.isprintable()
            and value[:1] != " "
            and value[-1:] != " "
            and (multiline or "  " not in value)
        ):
            return value or None
        if len(value) <= _SEEN_LONGEST:
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


#: The table keys as a set, and each key with its ``multiline`` flag, in table order.
KEY_SET: frozenset[str] = frozenset(KEYS)
_MULTILINE: tuple[tuple[str, bool], ...] = tuple((f.key, f.multiline) for f in FIELDS)


def normalize_values(
    values: Mapping[str, object], *, partial: bool = False
) -> dict[str, str | None]:
    """Every table key, normalised (with ``partial``, only the keys present); a key outside the
    table is a programming error."""
    if not KEY_SET.issuperset(values):
        unknown = set(values) - KEY_SET
        raise KeyError(f"not field-table keys: {', '.join(sorted(unknown))}")
    out: dict[str, str | None] = {}
    for key, multiline in _MULTILINE:
        if key in values:
            value = values[key]
            if value is None:
                out[key] = None
                continue
            try:
                out[key] = normalize(value, multiline=multiline)
            except ValueError as exc:
                raise ValueError(f"field {key}: {exc}") from None
        elif not partial:
            out[key] = None
    return out


def normalized(values: Mapping[str, object], key: str) -> str | None:
    value = values.get(key)
    return None if value is None else normalize(value, multiline=BY_KEY[key].multiline)


def empty_values() -> dict[str, str | None]:
    return dict.fromkeys(KEYS)


def changed_keys(a: Values, b: Values) -> set[str]:
    """Keys whose values differ (both sides are expected to be normalised; missing is empty)."""
    return {k for k in KEYS if a.get(k) != b.get(k)}


def source_changes(source: Values, agreed: Values) -> set[str]:
    """Keys a source record changes: only those it carries (a missing key is unknown)."""
    return {k for k, v in source.items() if v != agreed.get(k)}


def display_name(values: Values) -> str:
    """What an address book shows: the name, else the company, else the first e-mail address."""
    name = " ".join(v for v in (values.get("first_name"), values.get("last_name")) if v)
    if name:
        return name
    return values.get("company") or next((values[k] for k in EMAIL_KEYS if values.get(k)), "")


def selected(values: Values, keys: Iterable[str] | None) -> tuple[str, ...]:
    """The keys a write covers, in table order: ``keys``, or those ``values`` carries."""
    wanted = set(values) if keys is None else set(keys)
    if not KEY_SET.issuperset(wanted):
        raise KeyError(f"not field-table keys: {', '.join(sorted(wanted - KEY_SET))}")
    return tuple(k for k in KEYS if k in wanted)


def align_email_slots(values: Values, agreed: Values | None) -> dict[str, str | None]:
    """The address book's e-mail addresses in the slots the two sides last agreed on.

    An empty slot is written as an empty entry, so that ``email2`` stays second; a service may
    drop such entries (a client re-saving the list), and then the addresses after it move up.
    Dropping keeps their order, so when the listed addresses leave no gap, they are placed in
    order into the slots that match the agreed values best: the same address in the same slot,
    then an address edited where one was, then the earliest slots. With a gap (the empty entries
    were kept), or no agreed values, the positions are taken as listed.
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
