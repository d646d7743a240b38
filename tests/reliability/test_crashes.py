"""Crashes: the target killed (SIGKILL) after 0, 1 and several batches, run after run, with
edits in between; the tap killed in the middle of its pages. Each rerun picks up what the
killed one left (ledger, stamps, Singer state) and converges with no duplicate and no lost edit.

Also covered in tests/plugins (a single kill after several batches), in test_target_outlook.py
and test_target_pipeliner.py: test_killed_mid_run_then_rerun_creates_no_duplicate.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from contactsync.fieldmap import from_graph, pipeliner_stamp
from tests.reliability.conftest import (
    GRAPH_DATA,
    PIPELINER_DATA,
    Sync,
    contact,
    email_of_graph,
    person,
)
from tests.support.plugins import wait_for

KILLS = (0, 1, 3)  # batches written before the kill, run after run


def _safe_count(sync: Sync) -> int:
    try:
        return len(sync.outlook_contacts())
    except Exception:  # the folder does not exist yet
        return 0


def test_target_outlook_killed_after_0_1_several_batches(sync: Sync, record_outcome: Any) -> None:
    total = 150
    sync.pipeliner.seed([contact(n) for n in range(1, total + 1)])
    sync.outlook.new_folder(sync.folder)
    sync.extra["target-outlook-contacts"] = {"max_concurrency": 1}  # one $batch at a time
    graph = sync.outlook.control
    edits: dict[str, str] = {}
    written: dict[int, int] = {}
    for batches in KILLS:
        before = _safe_count(sync)
        graph.latency(0.4, path_prefix=GRAPH_DATA + "$batch", method="POST")
        if batches == 0:  # slow reads: the kill lands while the target's first read is out
            graph.latency(1.0, path_prefix=GRAPH_DATA, method="GET")
        pipeline = sync.start_leg("pipeliner_to_outlook")
        if batches == 0:  # counted on arrival: the target is up, nothing written yet
            wait_for(lambda: sync.outlook.requests("GET") >= 1, what="the target to start")
        else:  # each $batch writes 20 contacts
            wait_for(
                lambda n=batches, b=before, p=pipeline: (
                    _safe_count(sync) >= b + 20 * n
                    or p.procs["target-outlook-contacts"].poll() is not None
                ),
                what=f"{batches} batches",
            )
        pipeline.kill("target-outlook-contacts")
        leg = sync.finish_leg(pipeline)
        graph.clear_faults()
        assert leg.returncodes["target-outlook-contacts"] == -9
        copies = sync.outlook_contacts()
        stamps = Counter(pipeliner_stamp(c) for c in copies)
        assert all(n == 1 for n in stamps.values()), "a contact was written twice"
        assert len(copies) < total
        # Edit a contact the killed run already wrote (or not): the edit must arrive.
        target = sorted(sync.in_scope_pipeliner(), key=lambda c: c["email1"])[batches]
        sync.pipeliner.edit("alex", target["id"], position=f"after kill {batches}")
        edits[target["email1"]] = f"after kill {batches}"
        written[batches] = len(copies) - before
    leg = sync.leg("pipeliner_to_outlook")
    assert leg.ok, leg.stderr[-3000:]
    copies = sync.outlook_contacts()
    emails = Counter(email_of_graph(c) for c in copies)
    lost = total - len(emails)
    duplicates = sum(n - 1 for n in emails.values())
    titles = {email_of_graph(c): from_graph(c)["job_title"] for c in copies}
    lost_edits = sum(titles.get(e) != v for e, v in edits.items())
    assert len(sync.links()) == total
    for row in KILLS:
        record_outcome(
            section="crashes",
            cell=f"target-outlook-contacts killed after {row} batch(es)",
            outcome=f"{written[row]} contacts written before the kill",
            lost=lost + lost_edits,
            duplicates=duplicates,
            survived=lost == duplicates == lost_edits == 0,
        )
    assert (lost, duplicates, lost_edits) == (0, 0, 0)


def test_target_pipeliner_killed_after_0_and_1_batches(sync: Sync, record_outcome: Any) -> None:
    total = 150
    sync.pipeliner.seed([])
    sync.outlook.new_folder(sync.folder)
    for n in range(1, total + 1):
        sync.outlook.create(sync.folder, **person(n))
    pipeliner = sync.pipeliner.control
    edits: dict[str, str] = {}
    written: dict[int, int] = {}
    for batches in (0, 1):
        before = len(sync.pipeliner.contacts())
        pipeliner.latency(0.5, path_prefix=PIPELINER_DATA, method="POST")
        if batches == 0:  # slow reads: the kill lands while the target's first read is out
            pipeliner.latency(1.0, path_prefix=PIPELINER_DATA, method="GET")
        pipeline = sync.start_leg("outlook_to_pipeliner")
        if batches == 0:  # counted on arrival: the target is up, nothing written yet
            wait_for(
                lambda: sync.pipeliner.requests("GET", "") >= 1, what="the target to read Pipeliner"
            )
        else:
            wait_for(
                lambda b=before, p=pipeline: (
                    len(sync.pipeliner.contacts()) >= b + 100
                    or p.procs["target-pipeliner-contacts"].poll() is not None
                ),
                what="one batch",
            )
        pipeline.kill("target-pipeliner-contacts")
        leg = sync.finish_leg(pipeline)
        pipeliner.clear_faults()
        assert leg.returncodes["target-pipeliner-contacts"] == -9, "finished before the kill"
        contacts = sync.pipeliner.contacts()
        emails = Counter(c["email1"] for c in contacts)
        assert all(n == 1 for n in emails.values()), "a contact was created twice"
        written[batches] = len(contacts) - before
        # An Outlook edit after the kill, to a contact the killed run did (or did not) write.
        copy = sorted(sync.outlook_contacts(), key=lambda c: email_of_graph(c) or "")[batches]
        sync.outlook.edit(copy["id"], jobTitle=f"after kill {batches}")
        edits[email_of_graph(copy) or ""] = f"after kill {batches}"
    leg = sync.leg("outlook_to_pipeliner")
    assert leg.ok, leg.stderr[-3000:]
    contacts = sync.pipeliner.contacts()
    emails = Counter(c["email1"] for c in contacts)
    lost = total - len(emails)
    duplicates = sum(n - 1 for n in emails.values())
    positions = {c["email1"]: c.get("position") for c in contacts}
    lost_edits = sum(positions.get(e) != v for e, v in edits.items())
    for row in (0, 1):
        record_outcome(
            section="crashes",
            cell=f"target-pipeliner-contacts killed after {row} batch(es)",
            outcome=f"{written[row]} contacts written before the kill",
            lost=lost + lost_edits,
            duplicates=duplicates,
            survived=lost == duplicates == lost_edits == 0,
        )
    assert (lost, duplicates, lost_edits) == (0, 0, 0)


@pytest.mark.parametrize("tap", ["tap-pipeliner-contacts", "tap-outlook-contacts"])
def test_tap_killed_mid_page_then_rerun_converges(
    tap: str, sync: Sync, record_outcome: Any
) -> None:
    total = 40
    pipeliner_side = tap == "tap-pipeliner-contacts"
    sync.pipeliner.seed([contact(n) for n in range(1, total + 1)] if pipeliner_side else [])
    sync.outlook.new_folder(sync.folder)
    if not pipeliner_side:
        for n in range(1, total + 1):
            sync.outlook.create(sync.folder, **person(n))
    direction = "pipeliner_to_outlook" if pipeliner_side else "outlook_to_pipeliner"
    control = sync.pipeliner.control if pipeliner_side else sync.outlook.control
    prefix = PIPELINER_DATA if pipeliner_side else GRAPH_DATA
    control.latency(0.3, path_prefix=prefix, method="GET")

    def pages() -> int:
        if pipeliner_side:
            return sync.pipeliner.requests("GET", "/entities/Contacts")
        return sync.outlook.requests("GET", "delta")

    pipeline = sync.start_leg(direction)
    wait_for(lambda: pages() >= 3, what="three pages")  # pages of 5: mid-listing
    pipeline.kill(tap)
    killed = sync.finish_leg(pipeline)
    control.clear_faults()
    assert killed.returncodes[tap] == -9
    # A partial listing deletes nothing, and nothing is written twice.
    if pipeliner_side:
        partial = Counter(email_of_graph(c) for c in sync.outlook_contacts())
    else:
        partial = Counter(c["email1"] for c in sync.pipeliner.contacts())
    assert all(n == 1 for n in partial.values())
    assert sum(partial.values()) < total

    # An edit after the kill, then the rerun.
    if pipeliner_side:
        first = sorted(sync.pipeliner.contacts(), key=lambda c: c["email1"])[0]
        sync.pipeliner.edit("alex", first["id"], position="after the kill")
        edited = first["email1"]
    else:
        first = sorted(sync.outlook_contacts(), key=lambda c: email_of_graph(c) or "")[0]
        sync.outlook.edit(first["id"], jobTitle="after the kill")
        edited = email_of_graph(first)
    rerun = sync.leg(direction)
    assert rerun.ok, rerun.stderr[-3000:]
    if pipeliner_side:
        rows = {email_of_graph(c): from_graph(c)["job_title"] for c in sync.outlook_contacts()}
        emails = Counter(email_of_graph(c) for c in sync.outlook_contacts())
    else:
        rows = {c["email1"]: c.get("position") for c in sync.pipeliner.contacts()}
        emails = Counter(c["email1"] for c in sync.pipeliner.contacts())
    lost = total - len(emails) + (rows.get(edited) != "after the kill")
    duplicates = sum(n - 1 for n in emails.values())
    record_outcome(
        section="crashes",
        cell=f"{tap} killed mid-page (after 3 pages of 5)",
        outcome=f"{sum(partial.values())} of {total} written before the kill",
        lost=lost,
        duplicates=duplicates,
        survived=lost == duplicates == 0,
    )
    assert (lost, duplicates) == (0, 0)
