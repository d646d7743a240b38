"""The run report (DESIGN §4): counts and one line per failed or rejected record.

Written as JSON for machines and as a short summary for people. It never holds a secret:
only ids, table keys, counts and reasons.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: What happened to the records of a leg: one vocabulary, in one order, for the JSON report, the
#: log summary, `contactsync run` and `contactsync status`. Each record ends in exactly one
#: of these outcomes.
OUTCOMES = (
    "created",
    "updated",
    "deleted",
    "restored",
    "unchanged",
    "out_of_scope",
    "moved_out",
    "rejected",
    "needs_attention",
)
#: Facts beside the outcomes: records read, linked to an existing contact (created or updated
#: as well), conflicts decided, writes that failed and are retried next run, records retried
#: from an earlier run, links forgotten (deleted on both sides).
DETAILS = ("read", "linked", "conflicts", "failed", "retried", "forgotten")
#: Every counter, in the order the summary prints them.
COUNTERS = (*OUTCOMES, *DETAILS)


#: Counters whose name does not read as a sentence by itself.
_LABELS = {"moved_out": "moved out of the folder"}


def counter_label(name: str) -> str:
    """How a counter reads in a sentence: ``out_of_scope`` → ``out of scope``."""
    return _LABELS.get(name) or name.replace("_", " ")


def describe(counts: Mapping[str, int]) -> str:
    """``3 created, 1 needs attention`` (outcomes first, in their order; zeros and ``read`` left
    out); ``no change`` when nothing happened."""
    order = [*COUNTERS, *sorted(set(counts) - set(COUNTERS))]
    shown = [f"{counts[n]} {counter_label(n)}" for n in order if counts.get(n) and n != "read"]
    return ", ".join(shown) or "no change"


@dataclass(frozen=True)
class RecordIssue:
    """One record the run could not (or would not) write, and why."""

    record_id: str
    outcome: str
    reason: str


@dataclass
class RunReport:
    """Counts for one leg (``source`` -> ``dest``) of a run."""

    source: str
    dest: str
    dry_run: bool = False
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    counts: Counter[str] = field(default_factory=Counter)
    issues: list[RecordIssue] = field(default_factory=list)
    error: str | None = None

    def count(self, name: str, n: int = 1) -> None:
        if name not in COUNTERS:
            raise KeyError(f"unknown report counter {name!r}")
        self.counts[name] += n

    def issue(self, record_id: str, outcome: str, reason: str) -> None:
        self.issues.append(RecordIssue(record_id, outcome, reason))

    def to_dict(self) -> dict[str, Any]:
        return {
            "leg": f"{self.source}->{self.dest}",
            "dry_run": self.dry_run,
            "started_at": self.started_at,
            "counts": {name: self.counts[name] for name in COUNTERS},
            "issues": [vars(i) for i in self.issues],
            "error": self.error,
        }

    def summary(self) -> str:
        head = f"{self.source} -> {self.dest}{' (dry run)' if self.dry_run else ''}: "
        read = f"{self.counts['read']} read; " if self.counts["read"] else ""
        lines = [head + read + describe(self.counts)]
        lines += [f"  {i.outcome} {i.record_id}: {i.reason}" for i in self.issues]
        if self.error:
            lines.append(f"  stopped: {self.error}")
        return "\n".join(lines)

    def write(self, path: str | Path) -> None:
        """Write the JSON report atomically, so a reader never sees half a file."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", "utf-8")
        tmp.replace(target)
