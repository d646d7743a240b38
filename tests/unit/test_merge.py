"""contactsync.sync.merge: the field-level three-way merge and the conflict policy (DESIGN §4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contactsync.sync.fields import KEYS
from contactsync.sync.link import Side
from contactsync.sync.merge import Conflict, ConflictPolicy, conflict_winner, merge

PL, OL = Side.CRM, Side.BOOK
T0 = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)
EARLIER, LATER = T0, T0 + timedelta(seconds=1)
PW, OW, NW = ConflictPolicy.CRM_WINS, ConflictPolicy.BOOK_WINS, ConflictPolicy.NEWEST_WINS
KEY = "job_title"


def values(**kw: str | None) -> dict[str, str | None]:
    return {**dict.fromkeys(KEYS), **kw}


# --- one key, every rule -----------------------------------------------------------------------

# (agreed, source, dest, expected merged value) for the cases that are never a conflict.
NO_CONFLICT = [
    pytest.param("a", "b", "b", "b", id="S==D-both-changed-alike"),
    pytest.param("a", "a", "a", "a", id="nothing-changed"),
    pytest.param("a", None, None, None, id="S==D-both-cleared"),
    pytest.param("a", "a", "d", "d", id="S==A-keep-D"),
    pytest.param("a", "a", None, None, id="S==A-keep-D-cleared"),
    pytest.param(None, None, "d", "d", id="S==A-None-keep-D"),
    pytest.param("a", "s", "a", "s", id="D==A-take-S"),
    pytest.param("a", None, "a", None, id="D==A-take-S-cleared"),
    pytest.param(None, "s", None, "s", id="D==A-None-take-S"),
]


@pytest.mark.parametrize("source_side", [PL, OL])
@pytest.mark.parametrize("policy", list(ConflictPolicy))
@pytest.mark.parametrize(("a", "s", "d", "expected"), NO_CONFLICT)
def test_rules_without_conflict(a, s, d, expected, policy, source_side):
    result = merge(
        values(**{KEY: a}),
        values(**{KEY: s}),
        values(**{KEY: d}),
        source_side=source_side,
        policy=policy,
        source_modified=LATER,
        dest_modified=EARLIER,
    )
    assert result.values[KEY] == expected
    assert result.conflicts == ()
    assert result.writes == ({} if expected == d else {KEY: expected})


# (policy, source side, source modified, dest modified, winning side)
CONFLICTS = [
    pytest.param(PW, PL, None, None, PL, id="pipeliner_wins-source-pipeliner"),
    pytest.param(PW, OL, None, None, PL, id="pipeliner_wins-source-outlook"),
    pytest.param(PW, OL, LATER, EARLIER, PL, id="pipeliner_wins-ignores-time"),
    pytest.param(OW, PL, None, None, OL, id="outlook_wins-source-pipeliner"),
    pytest.param(OW, OL, None, None, OL, id="outlook_wins-source-outlook"),
    pytest.param(OW, PL, LATER, EARLIER, OL, id="outlook_wins-ignores-time"),
    pytest.param(NW, PL, LATER, EARLIER, PL, id="newest-source-pipeliner-newer"),
    pytest.param(NW, PL, EARLIER, LATER, OL, id="newest-source-pipeliner-older"),
    pytest.param(NW, OL, LATER, EARLIER, OL, id="newest-source-outlook-newer"),
    pytest.param(NW, OL, EARLIER, LATER, PL, id="newest-source-outlook-older"),
    pytest.param(NW, PL, T0, T0, PL, id="newest-tie-source-pipeliner"),
    pytest.param(NW, OL, T0, T0, PL, id="newest-tie-source-outlook"),
    pytest.param(NW, OL, None, EARLIER, PL, id="newest-source-time-missing"),
    pytest.param(NW, OL, LATER, None, PL, id="newest-dest-time-missing"),
    pytest.param(NW, OL, None, None, PL, id="newest-both-times-missing"),
    pytest.param(NW, PL, None, LATER, PL, id="newest-missing-source-pipeliner"),
]


@pytest.mark.parametrize(("policy", "side", "s_mod", "d_mod", "winner"), CONFLICTS)
@pytest.mark.parametrize(
    ("a", "s", "d"),
    [
        pytest.param("a", "s", "d", id="both-edited"),
        pytest.param("a", None, "d", id="source-cleared-dest-edited"),
        pytest.param("a", "s", None, id="source-edited-dest-cleared"),
        pytest.param(None, "s", "d", id="both-filled-from-empty"),
    ],
)
def test_conflicts_follow_the_policy(a, s, d, policy, side, s_mod, d_mod, winner):
    result = merge(
        values(**{KEY: a}),
        values(**{KEY: s}),
        values(**{KEY: d}),
        source_side=side,
        policy=policy,
        source_modified=s_mod,
        dest_modified=d_mod,
    )
    expected = s if winner is side else d
    assert result.values[KEY] == expected
    assert result.conflicts == (Conflict(KEY, s, d, winner),)
    assert result.writes == ({} if expected == d else {KEY: expected})
    assert conflict_winner(policy, side, s_mod, d_mod) is winner


def test_default_policy_is_pipeliner_wins():
    result = merge(values(city="a"), values(city="s"), values(city="d"), source_side=OL)
    assert result.values["city"] == "d"
    assert result.conflicts == (Conflict("city", "s", "d", PL),)


def test_newest_wins_compares_instants_not_wall_clock():
    plus2 = datetime(2024, 5, 2, 13, 30, tzinfo=timezone(timedelta(hours=2)))  # 11:30Z
    assert conflict_winner(NW, OL, plus2, datetime(2024, 5, 2, 12, 0, tzinfo=UTC)) is PL
    assert conflict_winner(NW, OL, plus2, datetime(2024, 5, 2, 11, 0, tzinfo=UTC)) is OL


# --- initial link (no agreed values) -----------------------------------------------------------


@pytest.mark.parametrize("source_side", [PL, OL])
@pytest.mark.parametrize(
    ("s", "d", "expected", "conflict"),
    [
        pytest.param(None, "d", "d", False, id="source-empty-keeps-dest"),
        pytest.param("s", None, "s", False, id="dest-empty-fills-from-source"),
        pytest.param("x", "x", "x", False, id="same-value"),
        pytest.param(None, None, None, False, id="both-empty"),
        pytest.param("s", "d", None, True, id="different-values-conflict"),
    ],
)
def test_initial_link(s, d, expected, conflict, source_side):
    result = merge(None, values(city=s), values(city=d), source_side=source_side)
    if conflict:
        # pipeliner_wins: the Pipeliner side's value is kept whichever way the leg runs.
        expected = s if source_side is PL else d
        assert result.conflicts == (Conflict("city", s, d, PL),)
    else:
        assert result.conflicts == ()
    assert result.values["city"] == expected
    assert result.writes == ({} if expected == d else {"city": expected})


def test_initial_link_of_two_full_records():
    source = values(first_name="Ann", last_name="Smith", email1="ann@x.example", city=None)
    dest = values(first_name="Ann", last_name="Smyth", email1=None, city="Berlin")
    result = merge(None, source, dest, source_side=PL)
    assert result.values == {
        **dest,
        "last_name": "Smith",
        "email1": "ann@x.example",
        "city": "Berlin",
    }
    assert result.writes == {"last_name": "Smith", "email1": "ann@x.example"}
    assert [c.key for c in result.conflicts] == ["last_name"]


# --- several keys at once ------------------------------------------------------------------------


def test_edits_to_different_fields_are_both_kept_and_writes_are_exact():
    agreed = values(first_name="Ann", last_name="Smith", city="Berlin", email1="a@x.example")
    # Pipeliner changed the city, Outlook changed the last name and cleared the e-mail.
    source = {**agreed, "city": "Köln"}
    dest = {**agreed, "last_name": "Jones", "email1": None}
    result = merge(agreed, source, dest, source_side=PL)
    assert result.values == {**agreed, "city": "Köln", "last_name": "Jones", "email1": None}
    assert result.writes == {"city": "Köln"}
    assert result.conflicts == ()

    back = merge(agreed, dest, {**dest, "city": "Köln"}, source_side=OL)
    assert back.values == result.values
    assert back.writes == {}


def test_result_covers_every_key_even_from_partial_mappings():
    result = merge({}, {"city": "Köln"}, {"notes": "n"}, source_side=PL)
    assert set(result.values) == set(KEYS)
    assert result.values["city"] == "Köln"
    assert result.values["notes"] == "n"
    assert result.writes == {"city": "Köln"}


def test_writes_is_empty_when_source_echoes_destination():
    same = values(first_name="Ann", notes="x\ny")
    result = merge(values(first_name="Old"), same, dict(same), source_side=OL)
    assert result.writes == {}
    assert result.conflicts == ()


# --- ConflictPolicy.parse ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("pipeliner_wins", PW, id="pipeliner_wins"),
        pytest.param("outlook_wins", OW, id="outlook_wins"),
        pytest.param("newest_wins", NW, id="newest_wins"),
        pytest.param(None, PW, id="none-is-default"),
        pytest.param("", PW, id="empty-is-default"),
    ],
)
def test_policy_parse(raw, expected):
    assert ConflictPolicy.parse(raw) is expected


@pytest.mark.parametrize("raw", ["newest", "source_wins", "PIPELINER_WINS ", "last_write"])
def test_policy_parse_rejects_unknown_values(raw):
    with pytest.raises(ValueError, match="conflict_policy") as info:
        ConflictPolicy.parse(raw)
    message = str(info.value)
    assert repr(raw) in message
    for allowed in ("pipeliner_wins", "outlook_wins", "newest_wins"):
        assert allowed in message


# --- properties --------------------------------------------------------------------------------

VALUE = st.sampled_from([None, "a", "b", "c"])
RECORD = st.fixed_dictionaries({k: VALUE for k in KEYS})
TIME = st.none() | st.sampled_from([EARLIER, LATER])


@settings(max_examples=200, deadline=None)
@given(
    agreed=st.none() | RECORD,
    source=RECORD,
    dest=RECORD,
    side=st.sampled_from([PL, OL]),
    policy=st.sampled_from(list(ConflictPolicy)),
    s_mod=TIME,
    d_mod=TIME,
)
def test_merge_properties(agreed, source, dest, side, policy, s_mod, d_mod):
    kwargs = {
        "source_side": side,
        "policy": policy,
        "source_modified": s_mod,
        "dest_modified": d_mod,
    }
    result = merge(agreed, source, dest, **kwargs)
    conflicted = {c.key for c in result.conflicts}
    for k in KEYS:
        s, d, merged = source[k], dest[k], result.values[k]
        assert merged in (s, d)
        if agreed is not None:
            a = agreed[k]
            if s != a and d == a:
                assert merged == s
            if d != a and s == a:
                assert merged == d
            assert (k in conflicted) == (s != d and s != a and d != a)
        else:
            if s is None or d is None:
                assert merged == (d if s is None else s)
            assert (k in conflicted) == (s is not None and d is not None and s != d)
    for c in result.conflicts:
        assert (c.source_value, c.dest_value) == (source[c.key], dest[c.key])
        assert c.winner is conflict_winner(policy, side, s_mod, d_mod)
        assert result.values[c.key] == (c.source_value if c.winner is side else c.dest_value)
    assert result.writes == {k: v for k, v in result.values.items() if v != dest[k]}

    def reverse(mapping):
        return None if mapping is None else dict(reversed(list(mapping.items())))

    again = merge(reverse(agreed), reverse(source), reverse(dest), **kwargs)
    assert dict(again.values) == dict(result.values)
    assert dict(again.writes) == dict(result.writes)
    assert set(again.conflicts) == set(result.conflicts)


# --- absent is not empty (DESIGN §4) --------------------------------------------------------------


def test_a_key_the_source_does_not_carry_is_left_as_the_destination_has_it():
    agreed = values(notes="kept", city="Wien")
    dest = values(notes="kept", city="Wien")
    # A record without `notes` (deselected) and with an explicit empty city.
    source = {k: v for k, v in values(city=None).items() if k != "notes"}
    result = merge(agreed, source, dest, source_side=PL)
    assert result.values["notes"] == "kept"
    assert result.writes == {"city": None}  # only an explicit null clears


@settings(max_examples=200, deadline=None)
@given(
    agreed=st.none() | RECORD,
    source=RECORD,
    dest=RECORD,
    unknown=st.sets(st.sampled_from(KEYS)),
    side=st.sampled_from([PL, OL]),
    policy=st.sampled_from(list(ConflictPolicy)),
)
def test_unknown_keys_are_never_written_nor_conflicts(agreed, source, dest, unknown, side, policy):
    partial = {k: v for k, v in source.items() if k not in unknown}
    result = merge(agreed, partial, dest, source_side=side, policy=policy)
    for key in unknown:
        assert result.values[key] == dest[key]
        assert key not in result.writes
    assert not {c.key for c in result.conflicts} & unknown
    # The known keys merge exactly as they would in a full record.
    full = merge(agreed, {**dest, **partial}, dest, source_side=side, policy=policy)
    for key in set(KEYS) - unknown:
        assert result.values[key] == full.values[key]


# --- the registry of resolvers ------------------------------------------------------------------


def test_the_policies_are_the_registry_and_the_setting_offers_them_by_service_name():
    from contactsync import settings as cs
    from contactsync.sync.merge import RESOLVERS, policy_names

    assert {p.value for p in ConflictPolicy} == set(RESOLVERS)
    assert policy_names() == ["pipeliner_wins", "outlook_wins", "newest_wins"]
    assert cs.SYNC_WRITES["conflict_policy"]["enum"] == policy_names()
    assert cs.SYNC_WRITES["conflict_policy"]["default"] == "pipeliner_wins"
    for name in policy_names():  # what a user writes, and the role's own name, both parse
        policy = ConflictPolicy.parse(name)
        assert str(policy) == name and ConflictPolicy.parse(policy.value) is policy
    assert [ConflictPolicy(n).resolve(Side.BOOK, None, None) for n in RESOLVERS] == [
        Side.CRM,
        Side.BOOK,
        Side.CRM,  # newest_wins without times: the CRM
    ]
