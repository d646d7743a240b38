"""contactsync.sync.report: counters, the JSON shape, the human summary, atomic writing."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from contactsync.sync.report import COUNTERS, RunReport

#: Issue #14: one vocabulary of outcomes in one order, then the details.
EXPECTED_COUNTERS = (
    "created",
    "updated",
    "deleted",
    "restored",
    "unchanged",
    "out_of_scope",
    "moved_out",  # issue #12 item 5: a contact filed into another Outlook folder
    "rejected",
    "needs_attention",
    "read",
    "linked",
    "conflicts",
    "failed",
    "retried",
    "forgotten",
)


def test_the_design_counters_exist():
    # DESIGN §4 names read, created, updated, deleted, unchanged, conflicts, rejected, retried.
    assert COUNTERS == EXPECTED_COUNTERS


def test_count_adds_up():
    report = RunReport("pipeliner", "outlook")
    report.count("read")
    report.count("read", 99)
    report.count("created", 3)
    report.count("conflicts", 0)
    counts = report.to_dict()["counts"]
    assert counts["read"] == 100
    assert counts["created"] == 3
    assert counts["conflicts"] == 0


@pytest.mark.parametrize("bad", ["reads", "Created", "skipped", ""])
def test_unknown_counter_is_an_error(bad):
    report = RunReport("pipeliner", "outlook")
    with pytest.raises(KeyError, match="unknown report counter"):
        report.count(bad)
    assert report.to_dict()["counts"] == dict.fromkeys(EXPECTED_COUNTERS, 0)


def test_to_dict_shape():
    report = RunReport("outlook", "pipeliner", dry_run=True)
    report.count("updated", 2)
    report.issue("AAMk=", "rejected", "Graph 400: too many emailAddresses")
    report.error = "max_delete_ratio exceeded"
    data = report.to_dict()
    assert list(data) == ["leg", "dry_run", "started_at", "counts", "issues", "error"]
    assert data["leg"] == "outlook->pipeliner"
    assert data["dry_run"] is True
    assert datetime.fromisoformat(data["started_at"]).utcoffset() is not None
    assert list(data["counts"]) == list(EXPECTED_COUNTERS)
    assert data["counts"] == {**dict.fromkeys(EXPECTED_COUNTERS, 0), "updated": 2}
    assert data["issues"] == [
        {
            "record_id": "AAMk=",
            "outcome": "rejected",
            "reason": "Graph 400: too many emailAddresses",
        }
    ]
    assert data["error"] == "max_delete_ratio exceeded"
    assert json.loads(json.dumps(data)) == data


def test_to_dict_of_a_fresh_report():
    data = RunReport("pipeliner", "outlook").to_dict()
    assert data["dry_run"] is False
    assert data["issues"] == []
    assert data["error"] is None


def test_summary_lists_nonzero_counts_in_order():
    report = RunReport("pipeliner", "outlook")
    report.count("unchanged", 40)
    report.count("read", 42)
    report.count("created", 2)
    report.count("out_of_scope", 3)
    report.count("needs_attention")
    assert report.summary() == (
        "pipeliner -> outlook: 42 read; 2 created, 40 unchanged, 3 out of scope, 1 needs attention"
    )


def test_summary_with_issues_error_and_dry_run():
    report = RunReport("outlook", "pipeliner", dry_run=True)
    report.count("read", 3)
    report.count("failed")
    report.issue("p-1", "failed", "HTTP 500 after 5 retries")
    report.issue("p-2", "rejected", "no delete right")
    report.error = "token expired"
    assert report.summary().splitlines() == [
        "outlook -> pipeliner (dry run): 3 read; 1 failed",
        "  failed p-1: HTTP 500 after 5 retries",
        "  rejected p-2: no delete right",
        "  stopped: token expired",
    ]


def test_summary_of_an_idle_run():
    assert RunReport("pipeliner", "outlook").summary() == "pipeliner -> outlook: no change"
    assert "(dry run)" not in RunReport("pipeliner", "outlook").summary()


def test_write_creates_parents_and_valid_json(tmp_path: Path):
    report = RunReport("pipeliner", "outlook")
    report.count("read", 5)
    report.issue("p-1", "rejected", "Zoë’s e-mail is invalid")
    target = tmp_path / "reports" / "2024" / "run.json"
    report.write(target)
    assert json.loads(target.read_text("utf-8")) == report.to_dict()
    assert "Zoë’s" in target.read_text("utf-8")
    assert sorted(p.name for p in target.parent.iterdir()) == ["run.json"]


def test_write_replaces_an_existing_report(tmp_path: Path):
    target = tmp_path / "run.json"
    target.write_text("old, and longer than the new one " * 100, "utf-8")
    report = RunReport("pipeliner", "outlook")
    report.write(str(target))
    assert json.loads(target.read_text("utf-8")) == report.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_failed_write_leaves_the_previous_report_intact(tmp_path: Path, monkeypatch):
    target = tmp_path / "run.json"
    previous = RunReport("pipeliner", "outlook")
    previous.count("read", 7)
    previous.write(target)
    before = target.read_text("utf-8")

    real_write_text = Path.write_text

    def disk_full(self: Path, data: str, *args, **kwargs) -> int:
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        RunReport("pipeliner", "outlook").write(target)
    monkeypatch.undo()
    assert target.read_text("utf-8") == before
    assert json.loads(before)["counts"]["read"] == 7
