"""The field-level three-way merge (DESIGN §4).

With A = the values both sides last agreed on, S = the incoming source values and D = the
destination's current values, each table key is decided on its own, so edits to different
fields on the two sides are never lost:

    S == D        nothing to do
    S == A        only the destination changed: keep D
    D == A        only the source changed: take S
    otherwise     both changed: a conflict, decided by the conflict policy

After the write the caller records A := S. Where the destination kept its own value, that value
then differs from A and flows back to the source on the reverse leg. A key the source record does
not carry (a deselected or unknown property) is left as the destination has it, whatever A says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from contactsync.sync.fields import KEYS, Values
from contactsync.sync.link import Side

#: A conflict resolver: given the side a record came from and when each side last changed the
#: contact (None: unknown), the side whose value is kept.
Resolver = Callable[[Side, datetime | None, datetime | None], Side]


def crm_wins(source_side: Side, source_at: datetime | None, dest_at: datetime | None) -> Side:
    """The CRM's value is kept."""
    return Side.CRM


def book_wins(source_side: Side, source_at: datetime | None, dest_at: datetime | None) -> Side:
    """The address book's value is kept."""
    return Side.BOOK


def newest_wins(source_side: Side, source_at: datetime | None, dest_at: datetime | None) -> Side:
    """The side changed last is kept; the CRM on a tie or a missing time."""
    if source_at is None or dest_at is None:
        return Side.CRM
    source_at, dest_at = _aware(source_at), _aware(dest_at)
    if source_at == dest_at:
        return Side.CRM
    return source_side if source_at > dest_at else source_side.other


#: The conflict policies by name: a new policy is one small function and one line here.
RESOLVERS: Mapping[str, Resolver] = {
    "crm_wins": crm_wins,
    "book_wins": book_wins,
    "newest_wins": newest_wins,
}
DEFAULT_POLICY = "crm_wins"


class ConflictPolicy(StrEnum):
    """Who wins when both sides changed the same field to different values: the names of
    :data:`RESOLVERS` (a test checks the two agree)."""

    CRM_WINS = "crm_wins"
    BOOK_WINS = "book_wins"
    NEWEST_WINS = "newest_wins"

    @classmethod
    def _missing_(cls, value: object) -> ConflictPolicy | None:
        """A policy named after a side's service (``<service>_wins``, see :func:`policy_names`)."""
        return _service_names().get(value) if isinstance(value, str) else None

    @classmethod
    def parse(cls, value: str | None) -> ConflictPolicy:
        if value is None or value == "":
            return cls(DEFAULT_POLICY)
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(policy_names())
            raise ValueError(f"conflict_policy: {value!r} is not one of {allowed}") from None

    @property
    def resolve(self) -> Resolver:
        return RESOLVERS[self.value]

    def __str__(self) -> str:
        """The name a user gives it (:func:`policy_names`)."""
        return next(name for name, policy in _service_names().items() if policy is self)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


if {p.value for p in ConflictPolicy} != set(RESOLVERS):
    raise AssertionError("ConflictPolicy must name exactly the policies of RESOLVERS")


def _service_names() -> dict[str, ConflictPolicy]:
    by_role = {"crm_wins": Side.CRM, "book_wins": Side.BOOK}
    names: dict[str, ConflictPolicy] = {}
    for name in RESOLVERS:
        side = by_role.get(name)
        service = side.service if side is not None else None
        names[f"{service}_wins" if service else name] = ConflictPolicy(name)
    return names


def policy_names() -> list[str]:
    """The policies as a user names them: after the service of the winning side where a service
    named it (``<service>_wins``), else by role, in :data:`RESOLVERS` order. What settings offer."""
    return list(_service_names())


@dataclass(frozen=True)
class Conflict:
    """One field both sides changed; ``winner`` is the side whose value was kept."""

    key: str
    source_value: str | None
    dest_value: str | None
    winner: Side


@dataclass(frozen=True)
class MergeResult:
    """The destination's values after the merge and what it takes to get there."""

    values: Mapping[str, str | None]
    writes: Mapping[str, str | None]
    conflicts: tuple[Conflict, ...]


def conflict_winner(
    policy: ConflictPolicy,
    source_side: Side,
    source_modified: datetime | None,
    dest_modified: datetime | None,
) -> Side:
    """The policy's verdict (its resolver in :data:`RESOLVERS`)."""
    return policy.resolve(source_side, source_modified, dest_modified)


def _aware(moment: datetime) -> datetime:
    """Both services speak UTC; a naive timestamp is taken as UTC rather than failing the
    compare."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def merge(
    agreed: Values | None,
    source: Values,
    dest: Values,
    *,
    source_side: Side,
    policy: ConflictPolicy = ConflictPolicy.CRM_WINS,
    source_modified: datetime | None = None,
    dest_modified: datetime | None = None,
) -> MergeResult:
    """Merge the source into the destination, key by key.

    ``agreed`` is None for two contacts being linked for the first time: an empty value on
    one side then takes the other side's value, and only two different non-empty values
    are a conflict.
    """
    values: dict[str, str | None] = {}
    writes: dict[str, str | None] = {}
    conflicts: list[Conflict] = []
    for key in KEYS:
        d = dest.get(key)
        if key not in source:  # unknown at the source: leave it alone
            values[key] = d
            continue
        s = source[key]
        if s == d:
            merged = d
        elif agreed is not None and s == agreed.get(key):
            merged = d
        elif agreed is not None and d == agreed.get(key):
            merged = s
        elif agreed is None and (s is None or d is None):
            merged = d if s is None else s
        else:
            winner = conflict_winner(policy, source_side, source_modified, dest_modified)
            merged = s if winner is source_side else d
            conflicts.append(Conflict(key, s, d, winner))
        values[key] = merged
        if merged != d:
            writes[key] = merged
    return MergeResult(values, writes, tuple(conflicts))
