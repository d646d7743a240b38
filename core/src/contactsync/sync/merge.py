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

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from contactsync.sync.fields import KEYS, Values
from contactsync.sync.link import Side


class ConflictPolicy(StrEnum):
    """Who wins when both sides changed the same field to different values."""

    PIPELINER_WINS = "pipeliner_wins"
    OUTLOOK_WINS = "outlook_wins"
    NEWEST_WINS = "newest_wins"

    @classmethod
    def parse(cls, value: str | None) -> ConflictPolicy:
        if value is None or value == "":
            return cls.PIPELINER_WINS
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(p.value for p in cls)
            raise ValueError(f"conflict_policy: {value!r} is not one of {allowed}") from None


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
    """The policy's verdict; ``newest_wins`` falls back to Pipeliner on a tie or a missing time."""
    if policy is ConflictPolicy.PIPELINER_WINS:
        return Side.PIPELINER
    if policy is ConflictPolicy.OUTLOOK_WINS:
        return Side.OUTLOOK
    if source_modified is None or dest_modified is None:
        return Side.PIPELINER
    source_at, dest_at = _aware(source_modified), _aware(dest_modified)
    if source_at == dest_at:
        return Side.PIPELINER
    return source_side if source_at > dest_at else source_side.other


def _aware(moment: datetime) -> datetime:
    """Both APIs speak UTC; a naive timestamp is taken as UTC rather than failing the compare."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def merge(
    agreed: Values | None,
    source: Values,
    dest: Values,
    *,
    source_side: Side,
    policy: ConflictPolicy = ConflictPolicy.PIPELINER_WINS,
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
