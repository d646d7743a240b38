"""Initial matching: link a contact to an existing, unlinked copy instead of duplicating it.

Order of evidence (DESIGN §4): our own stamp (the CRM id on an address-book contact), then any
shared e-mail address (case-insensitive), then first + last name + company — but only when one of
the two has no e-mail address at all: same name, different addresses means two people. More than one
candidate at the first level that finds any is ambiguous: it is reported and nothing is guessed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from contactsync.sync.fields import EMAIL_KEYS, Values


class MatchBy(StrEnum):
    STAMP = "stamp"
    EMAIL = "email"
    NAME = "name"


@dataclass(frozen=True)
class Match:
    """The candidates found for one record, and the evidence that found them."""

    ids: tuple[str, ...]
    by: MatchBy | None

    @property
    def unique(self) -> str | None:
        return self.ids[0] if len(self.ids) == 1 else None

    @property
    def ambiguous(self) -> bool:
        return len(self.ids) > 1


NO_MATCH = Match((), None)


def emails(values: Values) -> frozenset[str]:
    return frozenset(v.casefold() for k in EMAIL_KEYS if (v := values.get(k)))


def name_key(values: Values) -> tuple[str, str, str] | None:
    """First + last name + company, case-folded; None when there is no name to go by."""
    first, last = values.get("first_name") or "", values.get("last_name") or ""
    if not (first or last):
        return None
    return first.casefold(), last.casefold(), (values.get("company") or "").casefold()


@dataclass(frozen=True)
class _Evidence:
    stamp: str | None
    emails: frozenset[str]
    name: tuple[str, str, str] | None


class CandidateIndex:
    """Unlinked destination contacts, indexed by every kind of evidence.

    A candidate that gets linked is :meth:`claim`-ed so no second record can take it.
    """

    def __init__(self, candidates: Iterable[tuple[str, Values, str | None]] = ()) -> None:
        self._by_stamp: dict[str, set[str]] = defaultdict(set)
        self._by_email: dict[str, set[str]] = defaultdict(set)
        self._by_name: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self._evidence: dict[str, _Evidence] = {}
        for record_id, values, stamp in candidates:
            self.add(record_id, values, stamp)

    def add(self, record_id: str, values: Values, stamp: str | None = None) -> None:
        if record_id in self._evidence:
            return
        evidence = _Evidence(stamp or None, emails(values), name_key(values))
        self._evidence[record_id] = evidence
        if evidence.stamp:
            self._by_stamp[evidence.stamp].add(record_id)
        for address in evidence.emails:
            self._by_email[address].add(record_id)
        if evidence.name is not None:
            self._by_name[evidence.name].add(record_id)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._evidence

    def __len__(self) -> int:
        return len(self._evidence)

    def claim(self, record_id: str) -> None:
        evidence = self._evidence.pop(record_id, None)
        if evidence is None:
            return
        if evidence.stamp:
            self._by_stamp[evidence.stamp].discard(record_id)
        for address in evidence.emails:
            self._by_email[address].discard(record_id)
        if evidence.name is not None:
            self._by_name[evidence.name].discard(record_id)

    def find(self, values: Values, stamp_for: str | None = None) -> Match:
        """Candidates for a record with ``values``; ``stamp_for`` is its id when the
        candidates carry stamps (a CRM record looking at address-book copies)."""
        if not self._evidence:  # nothing left to match (a first sync into an empty folder)
            return NO_MATCH
        if stamp_for and (found := self._by_stamp.get(stamp_for)):
            return Match(tuple(sorted(found)), MatchBy.STAMP)
        by_email: set[str] = set()
        for address in emails(values):
            by_email |= self._by_email.get(address, set())
        if by_email:
            return Match(tuple(sorted(by_email)), MatchBy.EMAIL)
        key = name_key(values)
        mine = emails(values)
        # Same name and company but different e-mail addresses are two people, not one.
        found = (
            {i for i in self._by_name.get(key, ()) if not (mine and self._evidence[i].emails)}
            if key is not None
            else set()
        )
        if found:
            return Match(tuple(sorted(found)), MatchBy.NAME)
        return NO_MATCH
