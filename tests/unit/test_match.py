"""contactsync.sync.match: linking to an existing copy by stamp, e-mail, then name + company."""

from __future__ import annotations

import pytest

from contactsync.sync.fields import normalize_values
from contactsync.sync.match import NO_MATCH, CandidateIndex, Match, MatchBy, emails, name_key


def v(**kw: str | None) -> dict[str, str | None]:
    return normalize_values(kw)


ANN = v(first_name="Ann", last_name="Smith", company="Acme", email1="ann@acme.example")


def index(*candidates: tuple[str, dict, str | None]) -> CandidateIndex:
    return CandidateIndex(candidates)


# --- evidence order ----------------------------------------------------------------------------


def test_stamp_wins_over_email_and_name():
    idx = index(
        ("o-email", ANN, None),
        ("o-stamped", v(first_name="Someone", email1="other@x.example"), "p-1"),
    )
    assert idx.find(ANN, stamp_for="p-1") == Match(("o-stamped",), MatchBy.STAMP)


def test_without_a_stamp_for_the_record_email_decides():
    idx = index(
        ("o-email", ANN, None),
        ("o-stamped", v(first_name="Someone", email1="other@x.example"), "p-1"),
    )
    assert idx.find(ANN) == Match(("o-email",), MatchBy.EMAIL)
    assert idx.find(ANN, stamp_for="p-unknown") == Match(("o-email",), MatchBy.EMAIL)


def test_email_wins_over_name_and_company():
    idx = index(
        ("o-name", v(first_name="Ann", last_name="Smith", company="Acme"), None),
        ("o-email", v(first_name="A.", email2="ann@acme.example"), None),
    )
    assert idx.find(ANN) == Match(("o-email",), MatchBy.EMAIL)


def test_name_and_company_when_no_email_matches():
    idx = index(
        ("o-name", v(first_name="ann", last_name="SMITH", company="acme"), None),
        ("o-other", v(first_name="Bob", email1="bob@acme.example"), None),
    )
    assert idx.find(ANN) == Match(("o-name",), MatchBy.NAME)


@pytest.mark.parametrize(
    ("source_email", "candidate_email", "found"),
    [
        pytest.param(None, None, True, id="neither-has-email"),
        pytest.param("ann@acme.example", None, True, id="only-source-has-email"),
        pytest.param(None, "ann@home.example", True, id="only-candidate-has-email"),
        pytest.param("ann@acme.example", "ann@home.example", False, id="different-emails"),
    ],
)
def test_same_name_with_different_emails_is_two_people(source_email, candidate_email, found):
    name = {"first_name": "Ann", "last_name": "Smith", "company": "Acme"}
    idx = index(("o-1", v(**name, email2=candidate_email), None))
    expected = Match(("o-1",), MatchBy.NAME) if found else NO_MATCH
    assert idx.find(v(**name, email3=source_email)) == expected


@pytest.mark.parametrize(
    ("source", "candidate"),
    [
        pytest.param(
            v(email1="Ann.Smith@ACME.example"), v(email1="ann.smith@acme.EXAMPLE"), id="case"
        ),
        pytest.param(v(email2="ann@acme.example"), v(email1="ann@acme.example"), id="src2-cand1"),
        pytest.param(v(email1="ann@acme.example"), v(email3="ann@acme.example"), id="src1-cand3"),
        pytest.param(
            v(email3="ANN@acme.example"), v(email2="ann@ACME.example"), id="src3-cand2-case"
        ),
    ],
)
def test_email_matches_case_insensitively_across_slots(source, candidate):
    assert index(("o-1", candidate, None)).find(source) == Match(("o-1",), MatchBy.EMAIL)


# --- name + company ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "candidate", "found"),
    [
        pytest.param(
            v(first_name="Ann", last_name="Smith", company="Acme"),
            v(first_name="Ann", last_name="Smith", company="Acme"),
            True,
            id="first-last-company",
        ),
        pytest.param(
            v(last_name="Smith", company="Acme"),
            v(last_name="Smith", company="Acme"),
            True,
            id="last-name-only",
        ),
        pytest.param(
            v(first_name="Ann", last_name="Smith"),
            v(first_name="Ann", last_name="Smith"),
            True,
            id="no-company-on-either-side",
        ),
        pytest.param(
            v(first_name="Ann", last_name="Smith", company="Acme"),
            v(first_name="Ann", last_name="Smith", company="Other"),
            False,
            id="different-company",
        ),
        pytest.param(
            v(first_name="Ann", last_name="Smith", company="Acme"),
            v(first_name="Ann", last_name="Smith"),
            False,
            id="company-missing-on-one-side",
        ),
        pytest.param(
            v(first_name="Ann", last_name="Smith", company="Acme"),
            v(first_name="Ann", last_name="Smyth", company="Acme"),
            False,
            id="different-last-name",
        ),
        pytest.param(
            v(first_name="Ann", company="Acme"),
            v(last_name="Ann", company="Acme"),
            False,
            id="first-is-not-last",
        ),
        pytest.param(v(company="Acme"), v(company="Acme"), False, id="company-alone-never"),
        pytest.param(v(city="Berlin"), v(city="Berlin"), False, id="no-evidence-at-all"),
        pytest.param(v(), v(), False, id="empty-records"),
    ],
)
def test_name_and_company_match(source, candidate, found):
    expected = Match(("o-1",), MatchBy.NAME) if found else NO_MATCH
    assert index(("o-1", candidate, None)).find(source) == expected


# --- ambiguity ----------------------------------------------------------------------------------


def test_two_candidates_sharing_the_email_are_ambiguous():
    idx = index(
        ("o-2", v(first_name="Ann", email1="ann@acme.example"), None),
        ("o-1", v(first_name="Annie", email2="ANN@acme.example"), None),
    )
    found = idx.find(ANN)
    assert found == Match(("o-1", "o-2"), MatchBy.EMAIL)
    assert found.ambiguous
    assert found.unique is None


def test_emails_of_the_source_matching_two_different_candidates_are_ambiguous():
    idx = index(
        ("o-1", v(email1="ann@acme.example"), None),
        ("o-2", v(email1="ann@home.example"), None),
    )
    found = idx.find(v(email1="ann@acme.example", email2="ann@home.example"))
    assert found.ambiguous and found.by is MatchBy.EMAIL


def test_two_candidates_with_the_same_name_and_company_are_ambiguous():
    idx = index(
        ("o-1", v(first_name="Ann", last_name="Smith", company="Acme"), None),
        ("o-2", v(first_name="ANN", last_name="smith", company="ACME"), None),
    )
    found = idx.find(v(first_name="Ann", last_name="Smith", company="Acme"))
    assert found == Match(("o-1", "o-2"), MatchBy.NAME)


def test_a_unique_match():
    found = index(("o-1", ANN, None)).find(ANN)
    assert found.unique == "o-1"
    assert not found.ambiguous


# --- claiming --------------------------------------------------------------------------------


def test_claim_removes_a_candidate_from_every_index():
    idx = index(("o-1", ANN, "p-1"), ("o-2", v(first_name="Bob"), None))
    by_stamp = (ANN, "p-1")
    by_email = (v(email1="ann@acme.example"), None)
    by_name = (v(first_name="Ann", last_name="Smith", company="Acme"), None)
    for values, stamp in (by_stamp, by_email, by_name):
        assert idx.find(values, stamp_for=stamp).unique == "o-1"
    assert "o-1" in idx

    idx.claim("o-1")
    assert "o-1" not in idx
    assert len(idx) == 1
    for values, stamp in (by_stamp, by_email, by_name):
        assert idx.find(values, stamp_for=stamp) == NO_MATCH


def test_claim_resolves_an_ambiguity():
    idx = index(
        ("o-1", v(email1="ann@acme.example"), None),
        ("o-2", v(email1="ann@acme.example"), None),
    )
    idx.claim("o-1")
    assert idx.find(ANN) == Match(("o-2",), MatchBy.EMAIL)


def test_claiming_an_unknown_or_already_claimed_id_is_harmless():
    idx = index(("o-1", ANN, None))
    idx.claim("nope")
    idx.claim("o-1")
    idx.claim("o-1")
    assert len(idx) == 0


def test_adding_an_id_twice_keeps_the_first_evidence():
    idx = index(("o-1", ANN, None))
    idx.add("o-1", v(email1="other@x.example"))
    assert len(idx) == 1
    assert idx.find(ANN).unique == "o-1"
    assert idx.find(v(email1="other@x.example")) == NO_MATCH


def test_no_match():
    assert CandidateIndex().find(ANN, stamp_for="p-1") == NO_MATCH
    idx = index(("o-1", v(first_name="Bob", email1="bob@x.example"), "p-9"))
    assert idx.find(ANN, stamp_for="p-1") == NO_MATCH
    assert NO_MATCH.unique is None and not NO_MATCH.ambiguous and NO_MATCH.by is None


def test_stamps_are_exact_ids():
    idx = index(("o-1", v(), "P-1"))
    assert idx.find(v(), stamp_for="p-1") == NO_MATCH
    assert idx.find(v(), stamp_for="P-1") == Match(("o-1",), MatchBy.STAMP)


# --- helpers ----------------------------------------------------------------------------------


def test_emails_helper():
    assert emails(v(email1="A@X.example", email3="b@y.example")) == {"a@x.example", "b@y.example"}
    assert emails(v()) == frozenset()


def test_name_key_helper():
    assert name_key(v(first_name="Ann", last_name="Smith", company="ACME")) == (
        "ann",
        "smith",
        "acme",
    )
    assert name_key(v(last_name="Smith")) == ("", "smith", "")
    assert name_key(v(company="Acme", email1="a@x.example")) is None
