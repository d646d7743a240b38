"""The per-record fast paths of issue #15 give what the code before them gave, on any input.

Each ``old_*`` below is the implementation as it stood before the fast path (copied verbatim
but for names), kept here as the oracle: normalising, reading a Pipeliner or Graph contact onto
the table, writing a Graph body, and checking a record's types.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contactsync.outlook import records as outlook_records
from contactsync.outlook.projection import (
    GRAPH,
    OTHER_PHONE_PROPERTY_ID,
    PIPELINER_ID_PROPERTY_ID,
    _email_list,
    _note_empty_slots,
    _set_extended,
    from_graph,
    to_graph,
)
from contactsync.pipeliner import records as pipeliner_records
from contactsync.pipeliner.projection import (
    _PIPELINER_SOURCES,
    FIELD_NAMES,
    from_pipeliner,
    pipeliner_company,
    pipeliner_job_title,
)
from contactsync.sync import fields
from contactsync.sync.fields import (
    BY_KEY,
    EMAIL_KEYS,
    FIELDS,
    KEYS,
    align_email_slots,
    display_name,
    empty_values,
    normalize,
    normalize_values,
)
from contactsync.sync.match import NO_MATCH, CandidateIndex, Match, MatchBy, emails, name_key
from contactsync.sync.record import _mismatch, type_problem

FAST = settings(
    max_examples=int(os.environ.get("FAST_PATH_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# --- the oracles: the code before the fast paths -----------------------------------------------


def old_normalize(value: object, *, multiline: bool = False) -> str | None:
    if value is None:
        return None
    return fields._normalize(value, multiline)  # the slow path, unchanged


def old_normalized(values: Mapping[str, object], key: str) -> str | None:
    return old_normalize(values.get(key), multiline=BY_KEY[key].multiline)


def old_normalize_values(
    values: Mapping[str, object], *, partial: bool = False
) -> dict[str, str | None]:
    unknown = set(values) - set(KEYS)
    if unknown:
        raise KeyError(f"not field-table keys: {', '.join(sorted(unknown))}")
    out: dict[str, str | None] = {}
    for f in FIELDS:
        if partial and f.key not in values:
            continue
        try:
            out[f.key] = old_normalize(values.get(f.key), multiline=f.multiline)
        except ValueError as exc:
            raise ValueError(f"field {f.key}: {exc}") from None
    return out


def old_selected(values: Mapping[str, Any], keys: Iterable[str] | None) -> tuple[str, ...]:
    wanted = set(values) if keys is None else set(keys)
    if wanted - set(KEYS):
        raise KeyError(f"not field-table keys: {', '.join(sorted(wanted - set(KEYS)))}")
    return tuple(k for k in KEYS if k in wanted)


def old_from_pipeliner(
    contact: Mapping[str, Any], *, partial: bool = False
) -> dict[str, str | None]:
    readers: dict[str, Callable[[Mapping[str, Any]], object]] = {
        "company": pipeliner_company,
        "job_title": pipeliner_job_title,
    }

    def known(contact: Mapping[str, Any], key: str) -> bool:
        return any(name in contact for name in _PIPELINER_SOURCES.get(key, (FIELD_NAMES[key],)))

    raw = {
        key: readers[key](contact) if key in readers else contact.get(name)
        for key, name in FIELD_NAMES.items()
        if not partial or known(contact, key)
    }
    return old_normalize_values(raw, partial=partial)


def old_from_graph(contact: Mapping[str, Any], *, partial: bool = False) -> dict[str, str | None]:
    def known(key: str) -> bool:
        slot = GRAPH[key]
        if slot.extended is not None:
            return slot.property in contact or "singleValueExtendedProperties" in contact
        return slot.property in contact

    raw = {key: slot.get(contact) for key, slot in GRAPH.items() if not partial or known(key)}
    return old_normalize_values(raw, partial=partial)


def old_to_graph(
    values: Mapping[str, Any],
    current: Mapping[str, Any] | None = None,
    keys: Iterable[str] | None = None,
    *,
    stamp: str | None = None,
    agreed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    current = current or {}
    covered = old_selected(values, keys)
    body: dict[str, Any] = {}
    for key in covered:
        put = GRAPH[key].put
        if put is not None:
            put(body, current, old_normalized(values, key))
    before = old_from_graph(current) if current else None
    if any(k in EMAIL_KEYS for k in covered):
        slots = align_email_slots(before or empty_values(), agreed)
        addresses = [old_normalized(values, k) if k in covered else slots[k] for k in EMAIL_KEYS]
        body["emailAddresses"] = _email_list(addresses, current)
    _note_empty_slots(body, current)
    after = dict(before or empty_values())
    after.update({k: old_normalized(values, k) for k in covered})
    shown = current.get("displayName")
    derived = before is not None and old_normalize(shown) in (
        None,
        old_normalize(display_name(before)),
    )
    body["displayName"] = display_name(after) if not current or derived else shown
    if stamp is not None:
        _set_extended(body, PIPELINER_ID_PROPERTY_ID, stamp)
    return body


def old_type_problem(record: Mapping[str, Any], properties: Mapping[str, Any]) -> str | None:
    for name, schema in properties.items():
        value = record.get(name)
        if value is None or not isinstance(schema, Mapping) or schema.get("format"):
            continue
        if problem := _mismatch(name, value, schema):
            return problem
    return None


# --- inputs ------------------------------------------------------------------------------------

#: Text where the fast path and the slow one part ways: spaces, tabs, line breaks, controls,
#: accents composed and not, a lone surrogate, non-ASCII spaces.
_PIECES = st.sampled_from(
    [" ", "  ", "\t", "\n", "\r\n", "\r", "\x00", "\x1f", "\x7f", "\x1c", "\x85", "\u00a0",
     "\u2028", "e\u0301", "\u00e9", "Zoë", "\ud800", "-", "@", ".", "a", "Ann", "O'Neil",
     "+1 555", "x" * 300]
)  # fmt: skip
TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F)),
    st.lists(_PIECES, max_size=8).map("".join),
)
VALUE = st.one_of(
    st.none(), TEXT, st.integers(), st.floats(allow_nan=False), st.booleans(), st.just([])
)


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return (type(exc).__name__, str(exc))


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    fields._SEEN.clear()


# --- normalising -------------------------------------------------------------------------------


@FAST
@given(VALUE, st.booleans())
@example("a  b", False)
@example(" a", True)
@example("a\x1fb", False)
@example("", False)
def test_normalize_equals_the_slow_path(value: object, multiline: bool) -> None:
    fields._SEEN.clear()
    expected = _outcome(lambda: old_normalize(value, multiline=multiline))
    assert _outcome(lambda: normalize(value, multiline=multiline)) == expected
    assert _outcome(lambda: normalize(value, multiline=multiline)) == expected  # cached


@FAST
@given(st.dictionaries(st.sampled_from([*KEYS, "birthday"]), VALUE), st.booleans())
def test_normalize_values_equals_the_old_one(values: dict[str, Any], partial: bool) -> None:
    expected = _outcome(lambda: old_normalize_values(values, partial=partial))
    assert _outcome(lambda: normalize_values(values, partial=partial)) == expected


# --- reading -----------------------------------------------------------------------------------

_PIPELINER_NAMES = [*FIELD_NAMES.values(), "primary_account_name", "position", "id"]


@st.composite
def pipeliner_contacts(draw: st.DrawFn) -> dict[str, Any]:
    contact = draw(st.dictionaries(st.sampled_from(_PIPELINER_NAMES), st.one_of(st.none(), TEXT)))
    if draw(st.booleans()):
        contact["primary_account"] = draw(
            st.one_of(st.none(), st.fixed_dictionaries({"name": st.one_of(st.none(), TEXT)}))
        )
    return contact


@FAST
@given(pipeliner_contacts(), st.booleans())
def test_from_pipeliner_equals_the_old_one(contact: dict[str, Any], partial: bool) -> None:
    expected = _outcome(lambda: old_from_pipeliner(contact, partial=partial))
    assert _outcome(lambda: from_pipeliner(contact, partial=partial)) == expected


_MAYBE_TEXT = st.one_of(st.none(), TEXT)
_PHONES = st.one_of(st.none(), st.lists(st.one_of(st.just(""), TEXT), max_size=3))
_EMAILS = st.one_of(
    st.none(),
    st.lists(
        st.fixed_dictionaries({"name": _MAYBE_TEXT, "address": _MAYBE_TEXT}),
        max_size=4,
    ),
)
_ADDRESS = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["street", "city", "state", "postalCode", "countryOrRegion"]),
        _MAYBE_TEXT,
    ),
)
_EXTENDED = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.sampled_from(
                [OTHER_PHONE_PROPERTY_ID, OTHER_PHONE_PROPERTY_ID.lower(), PIPELINER_ID_PROPERTY_ID]
            ),
            "value": _MAYBE_TEXT,
        }
    ),
    max_size=2,
)


@st.composite
def graph_contacts(draw: st.DrawFn) -> dict[str, Any]:
    strategies: dict[str, st.SearchStrategy[Any]] = {
        "givenName": _MAYBE_TEXT,
        "surname": _MAYBE_TEXT,
        "companyName": _MAYBE_TEXT,
        "jobTitle": _MAYBE_TEXT,
        "mobilePhone": _MAYBE_TEXT,
        "personalNotes": _MAYBE_TEXT,
        "displayName": _MAYBE_TEXT,
        "businessPhones": _PHONES,
        "homePhones": _PHONES,
        "emailAddresses": _EMAILS,
        "businessAddress": _ADDRESS,
        "other_phone": _MAYBE_TEXT,
        "singleValueExtendedProperties": _EXTENDED,
        "empty_slots": st.one_of(st.none(), st.just('{"businessPhones": ["2"]}')),
    }
    names = draw(st.sets(st.sampled_from(sorted(strategies))))
    return {name: draw(strategies[name]) for name in sorted(names)}


@FAST
@given(graph_contacts(), st.booleans())
@example({"businessPhones": ["", "2"], "empty_slots": '{"businessPhones": ["2"]}'}, True)
def test_from_graph_equals_the_old_one(contact: dict[str, Any], partial: bool) -> None:
    expected = _outcome(lambda: old_from_graph(contact, partial=partial))
    assert _outcome(lambda: from_graph(contact, partial=partial)) == expected


# --- writing -----------------------------------------------------------------------------------


@st.composite
def table_values(draw: st.DrawFn) -> dict[str, str | None]:
    return draw(st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), TEXT)))


@FAST
@given(
    table_values(),
    st.one_of(st.none(), graph_contacts()),
    st.one_of(st.none(), st.sets(st.sampled_from(KEYS))),
    st.one_of(st.none(), TEXT),
    st.one_of(st.none(), table_values()),
)
@example(  # two invalid values: the same one is named first
    {"first_name": None, "email1": "\ud800"}, {"jobTitle": "\ud800"}, None, None, None
)
def test_to_graph_equals_the_old_one(
    values: dict[str, Any],
    current: dict[str, Any] | None,
    keys: set[str] | None,
    stamp: str | None,
    agreed: dict[str, Any] | None,
) -> None:
    if keys is not None:
        values = {**dict.fromkeys(keys), **values}  # a key to write has a value (maybe None)
    expected = _outcome(lambda: old_to_graph(values, current, keys, stamp=stamp, agreed=agreed))
    got = _outcome(lambda: to_graph(values, current, keys, stamp=stamp, agreed=agreed))
    assert got == expected


# --- checking types ----------------------------------------------------------------------------

_ANY_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@FAST
@given(
    st.sampled_from(
        [outlook_records.GRAPH_PROPERTIES, pipeliner_records.CONTACT_SCHEMA["properties"]]
    ).flatmap(
        lambda properties: st.tuples(
            st.just(properties),
            st.dictionaries(st.sampled_from(sorted(properties)), _ANY_JSON),
        )
    )
)
def test_type_problem_equals_the_old_one(case: tuple[Mapping[str, Any], dict[str, Any]]) -> None:
    properties, record = case
    assert type_problem(record, properties) == old_type_problem(record, properties)


def test_the_fast_normal_form_is_the_one_of_unicode() -> None:
    """The fast path only ever answers for text NFC leaves alone."""
    for text in ("Ann Lee", "ann@corp.example", "+1 555 0100", "O'Neil-Smith"):
        assert normalize(text) == text == unicodedata.normalize("NFC", text)


# --- matching ----------------------------------------------------------------------------------


def old_find(index: CandidateIndex, values: Mapping[str, Any], stamp_for: str | None) -> Match:
    if stamp_for and (found := index._by_stamp.get(stamp_for)):
        return Match(tuple(sorted(found)), MatchBy.STAMP)
    by_email: set[str] = set()
    for address in emails(values):
        by_email |= index._by_email.get(address, set())
    if by_email:
        return Match(tuple(sorted(by_email)), MatchBy.EMAIL)
    key = name_key(values)
    mine = emails(values)
    found = (
        {i for i in index._by_name.get(key, ()) if not (mine and index._evidence[i].emails)}
        if key is not None
        else set()
    )
    if found:
        return Match(tuple(sorted(found)), MatchBy.NAME)
    return NO_MATCH


_PEOPLE = st.fixed_dictionaries(
    {
        "first_name": st.sampled_from([None, "Ann", "Bob"]),
        "last_name": st.sampled_from([None, "Lee"]),
        "company": st.sampled_from([None, "Acme"]),
        "email1": st.sampled_from([None, "ann@x.example", "bob@x.example"]),
    }
)


@FAST
@given(
    st.lists(
        st.tuples(st.sampled_from(["o-1", "o-2", "o-3"]), _PEOPLE, st.sampled_from([None, "p-1"]))
    ),
    st.sets(st.sampled_from(["o-1", "o-2", "o-3"])),
    _PEOPLE,
    st.sampled_from([None, "p-1", "p-2"]),
)
def test_find_in_an_empty_index_equals_the_old_one(
    candidates: list[tuple[str, dict[str, Any], str | None]],
    claimed: set[str],
    values: dict[str, Any],
    stamp_for: str | None,
) -> None:
    index = CandidateIndex(candidates)
    for record_id in claimed:
        index.claim(record_id)
    assert index.find(values, stamp_for) == old_find(index, values, stamp_for)
