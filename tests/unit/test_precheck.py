"""contactsync.ops.precheck: the decision to skip a user's `meltano run`, case by case
(issue #15)."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine

from contactsync.ops import precheck
from contactsync.ops.precheck import LastRun, LocalFacts, Waiting, local_decision
from contactsync.sync.ledger import Ledger
from contactsync.sync.link import Link, LinkState, Partition, Side

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
BOOKMARKS = {
    "tap-pipeliner-contacts": {"replication_key_value": "2026-12-05T11:00:00Z"},
    "tap-outlook-contacts": {"folder_id": "F", "delta_link": "https://graph/delta?t=1"},
}
QUIET = LocalFacts(
    now=NOW,
    last=LastRun(NOW - timedelta(minutes=15), True, "fp", "w"),
    fingerprint="fp",
    max_interval=3600,
    states=BOOKMARKS,
    waiting=Waiting(digest="w"),
    phase=1800,  # this user's hourly windows start at half past
)


def test_a_quiet_user_is_left_to_the_apis() -> None:
    assert local_decision(QUIET) is None


def test_the_full_check_comes_at_the_users_window_boundary() -> None:
    """Last run 11:45, windows starting at half past: due from 12:30 on, not before."""
    assert local_decision(replace(QUIET, now=NOW + timedelta(minutes=29))) is None
    due = local_decision(replace(QUIET, now=NOW + timedelta(minutes=30)))
    assert due is not None and "a full check is due" in due.reason and "45 min old" in due.reason


@given(
    last=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1)),
    phase=st.floats(min_value=0, max_value=3599.999),
    after=st.floats(min_value=0, max_value=7200),
)
def test_a_real_run_comes_at_least_once_an_interval_and_once_per_window(
    last: datetime, phase: float, after: float
) -> None:
    last = last.replace(tzinfo=UTC)
    now = last + timedelta(seconds=after)
    due = precheck.full_check_due(now, last, 3600, phase)
    if after >= 3600:
        assert due  # never longer than the interval
    elif after < 1800:
        assert not due  # never sooner than half of it
    else:
        # The user's next window starts at the first instant after ``last`` where the clock
        # plus the phase is a whole number of hours: due from then on.
        next_start = (math.floor((last.timestamp() + phase) / 3600) + 1) * 3600 - phase
        assert due == (now.timestamp() >= next_start)


def test_users_activated_together_come_due_in_different_ticks() -> None:
    """200 users whose last real run was the same tick: at a 15-minute schedule, each is due
    exactly once in the next four ticks, spread over three of them (none in the first: half an
    interval at least between real runs)."""
    last = NOW
    due_at: dict[int, int] = {}
    for n in range(200):
        phase = precheck.full_check_phase(f"user{n}@contoso.example", 3600)
        assert 0 <= phase < 3600
        ticks = [
            k
            for k in range(1, 5)
            if precheck.full_check_due(last + timedelta(minutes=15 * k), last, 3600, phase)
            and not precheck.full_check_due(
                last + timedelta(minutes=15 * (k - 1)), last, 3600, phase
            )
        ]
        assert len(ticks) == 1
        due_at[ticks[0]] = due_at.get(ticks[0], 0) + 1
    assert sorted(due_at) == [2, 3, 4] and max(due_at.values()) <= 120, due_at
    assert precheck.full_check_phase("a@b", 3600) == precheck.full_check_phase("a@b", 3600)


@pytest.mark.parametrize(
    ("facts", "why"),
    [
        (replace(QUIET, last=None), "no earlier run"),
        (replace(QUIET, last=replace(QUIET.last, ok=False)), "last run failed"),  # type: ignore[type-var]
        (replace(QUIET, fingerprint="other"), "settings changed"),
        (replace(QUIET, now=NOW + timedelta(minutes=46)), "61 min old"),
        # A new window (12:00 with no phase) and half an hour since the last run.
        (replace(QUIET, phase=0, now=NOW + timedelta(minutes=20)), "a full check is due"),
        (replace(QUIET, now=NOW - timedelta(hours=1)), "min old"),  # a clock that went back
        (replace(QUIET, max_interval=0), "interval is 0"),
        (replace(QUIET, states={**BOOKMARKS, "tap-outlook-contacts": None}), "no bookmark"),
        (
            replace(QUIET, states={"tap-pipeliner-contacts": {"progress_markers": {"x": 1}}}),
            "did not finish",
        ),
        (replace(QUIET, state_problem="Meltano holds a partial state"), "partial state"),
        (replace(QUIET, waiting=Waiting(retries=2, digest="w")), "2 record(s) to retry"),
        (replace(QUIET, waiting=Waiting(owed=1, digest="w")), "owed"),
        (replace(QUIET, waiting=Waiting(digest="new parked")), "parked records"),
    ],
)
def test_the_job_runs_whenever_in_doubt(facts: LocalFacts, why: str) -> None:
    decision = local_decision(facts)
    assert decision is not None and decision.run and why in decision.reason, decision


ALEX_ID = "c0000000-0000-4000-8000-000000000001"


def _contact(cid: str, revision: int, *, mine: bool = True, deleted: bool = False) -> dict:
    return {"id": cid, "revision": revision, "is_deleted": deleted, "mine": mine}


def _mine(contact: dict[str, Any]) -> bool:
    return bool(contact["mine"])


def test_pipeliner_changes_ignore_seen_revisions_and_other_users_contacts() -> None:
    links = {"a": Link("a", "oa", crm_version="3"), "b": Link("b", "ob")}
    contacts = [
        _contact("a", 3),  # the bookmark's own contact, seen at this revision: nothing to do
        _contact("x", 1, mine=False),  # another user's edit in the same space
        _contact("y", 2, mine=False, deleted=True),  # another user's delete
        _contact("z", 1, mine=True, deleted=True),  # never linked, deleted: nothing to do
    ]
    assert precheck.pipeliner_changes(contacts, links, _mine) == []
    assert precheck.pipeliner_changes([_contact("a", 4)], links, _mine) == ["a"]  # edited
    assert precheck.pipeliner_changes([_contact("n", 1)], links, _mine) == ["n"]  # new of mine
    assert precheck.pipeliner_changes([_contact("a", 3, deleted=True)], links, _mine) == ["a"]
    assert precheck.pipeliner_changes([_contact("a", 3, mine=False)], links, _mine) == ["a"]
    assert precheck.pipeliner_changes([_contact("b", 1)], links, _mine) == ["b"]  # no version


def test_outlook_changes_ignore_our_own_writes() -> None:
    links = {"o1": Link("p1", "o1", book_version="ck1")}
    assert precheck.outlook_changes([{"id": "o1", "changeKey": "ck1"}], [], links) == []
    assert precheck.outlook_changes([{"id": "o1", "changeKey": "ck2"}], [], links) == ["o1"]
    assert precheck.outlook_changes([{"id": "new", "changeKey": "k"}], [], links) == ["new"]
    assert precheck.outlook_changes([], ["o1", "unlinked"], links) == ["o1"]


def test_the_fingerprint_follows_settings_and_meltano_yml_but_never_holds_a_secret(
    tmp_path: Path,
) -> None:
    (tmp_path / "meltano.yml").write_text("version: 1\n")
    env = {
        "TAP_PIPELINER_CONTACTS_USER_EMAIL": "alex@contoso.example",
        "CONTACTSYNC_SYNC_OPTION": "owner",
        "TAP_PIPELINER_CONTACTS_API_PASSWORD": "s3cret",
        "MELTANO_SYS_DIR_ROOT": "/work/1",
        "HOME": "/root",
    }
    base = precheck.settings_fingerprint("two-way-your-contacts", {}, env, tmp_path)
    same = {**env, "TAP_PIPELINER_CONTACTS_API_PASSWORD": "other", "MELTANO_SYS_DIR_ROOT": "/2"}
    assert precheck.settings_fingerprint("two-way-your-contacts", {}, same, tmp_path) == base
    assert (
        precheck.settings_fingerprint("two-way-your-contacts", {}, {**env, "HOME": "/x"}, tmp_path)
        == base
    )
    widened = {**env, "CONTACTSYNC_SYNC_OPTION": "owner_or_editor"}
    assert precheck.settings_fingerprint("two-way-your-contacts", {}, widened, tmp_path) != base
    assert precheck.settings_fingerprint("one-way-your-contacts", {}, env, tmp_path) != base
    (tmp_path / "meltano.yml").write_text("version: 1\n# meltano select ...\n")
    assert precheck.settings_fingerprint("two-way-your-contacts", {}, env, tmp_path) != base


def test_bookmarks_come_from_meltanos_state_table(tmp_path: Path) -> None:
    db = tmp_path / "meltano.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE state (state_id TEXT, partial_state TEXT, completed_state TEXT)")
        ids = precheck.state_ids("sandbox", "two-way-your-contacts", "alex_contoso.example")
        assert ids["tap-outlook-contacts"] == (
            "sandbox:tap-outlook-contacts-to-target-pipeliner-contacts:alex_contoso.example"
        )
        done = {"singer_state": {"bookmarks": {"contacts": {"replication_key_value": "t"}}}}
        conn.execute(
            "INSERT INTO state VALUES (?, ?, ?)",
            (ids["tap-pipeliner-contacts"], "{}", json.dumps(done)),
        )
    found, problem = precheck.read_bookmarks(f"sqlite:///{db}", ids)
    assert problem is None
    assert found == {
        "tap-pipeliner-contacts": {"replication_key_value": "t"},
        "tap-outlook-contacts": None,  # never stored: the job runs
    }
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE state SET partial_state = ?", (json.dumps(done),))
    _, problem = precheck.read_bookmarks(f"sqlite:///{db}", ids)
    assert problem and "partial state" in problem


def test_the_store_keeps_the_last_real_run(tmp_path: Path) -> None:
    store = precheck.Store(create_engine(f"sqlite:///{tmp_path / 'r.sqlite'}"))
    assert store.get("alex@contoso.example") is None
    last = LastRun(NOW, True, "fp", "w")
    store.put("alex@contoso.example", last)
    store.put("alex@contoso.example", replace(last, ok=False))
    assert store.get("alex@contoso.example") == replace(last, ok=False)


def test_waiting_work_counts_retries_and_owed_links_and_digests_the_inert_ones(
    tmp_path: Path,
) -> None:
    scope_key = Partition("alex@contoso.example", "space", "mailbox", "folder")
    with Ledger(str(tmp_path / "l.sqlite")) as ledger, ledger.open_partition(scope_key) as scope:
        quiet = precheck.waiting_work(scope)
        assert (quiet.retries, quiet.owed) == (0, 0)
        scope.put(Link("p1", "o1", state=LinkState.MOVED))
        moved = precheck.waiting_work(scope)
        assert (moved.retries, moved.owed) == (0, 0) and moved.digest != quiet.digest
        scope.record_failure(Side.BOOK, "o9", {"id": "o9"}, "needs a name", park_after=1)
        parked = precheck.waiting_work(scope)
        assert parked.retries == 0 and parked.digest != moved.digest
        assert precheck.waiting_work(scope) == parked  # stable while nothing changes
        scope.record_failure(Side.CRM, "p2", {"id": "p2"}, "503")
        scope.put(Link("p3", None, state=LinkState.RESTORE_BOOK))
        busy = precheck.waiting_work(scope)
        assert (busy.retries, busy.owed) == (1, 1)


def test_plugin_settings_are_the_runs_variables_with_short_patience() -> None:
    env = {
        "TAP_OUTLOOK_CONTACTS_MAILBOX": "alex@contoso.example",
        "TAP_OUTLOOK_CONTACTS_FOLDER": "AAMk",
        "TAP_PIPELINER_CONTACTS_SPACE_ID": "s",
    }
    config = precheck.plugin_settings(env, "tap-outlook-contacts")
    assert config["mailbox"] == "alex@contoso.example" and config["folder"] == "AAMk"
    assert "space_id" not in config and config["max_attempts"] == 2


def test_contacts_at_the_bookmark_were_read_by_the_last_run() -> None:
    since = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)
    contacts = [
        {"id": "at", "modified": "2026-12-05T11:00:00Z"},
        {"id": "before", "modified": "2026-12-05 10:59:59.999"},
        {"id": "after", "modified": "2026-12-05T11:00:00.000001Z"},
        {"id": "unreadable", "modified": None},
    ]
    assert [c["id"] for c in precheck.after_bookmark(contacts, since)] == ["after", "unreadable"]
