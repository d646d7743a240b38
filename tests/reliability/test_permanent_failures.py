"""Records that could fail every run, forever (issues #12 item 9, #18 item 3), through real
tap | mapper | target processes: each ends within a bounded number of runs.

* One bad field does not block the others: a field the destination refuses is left out of an
  otherwise written contact, reported once, and kept apart (Pipeliner's value goes back to Outlook;
  a value Outlook cannot hold stays in Pipeliner only) instead of being retried every run.
* A record refused for its data is tried a bounded number of times, then parked as "needs
  attention" (listed in every report) until its source changes.
* An Outlook edit to the copy of an archived Pipeliner contact is not written, and the copy is
  put back as Pipeliner has it.
"""

from __future__ import annotations

from typing import Any

from contactsync.outlook.projection import pipeliner_stamp
from contactsync.sync.engine import PARK_AFTER
from tests.reliability.conftest import Sync, contact

RUNS = 10  # "after 10 runs" in docs/reliability.md


def _copy_of(sync: Sync, pipeliner_id: str) -> dict[str, Any]:
    return next(c for c in sync.outlook_contacts() if pipeliner_stamp(c) == pipeliner_id)


def _issues(legs: list[Any], outcome: str) -> list[dict[str, Any]]:
    return [i for leg in legs for i in leg.report["issues"] if i["outcome"] == outcome]


def test_clearing_both_names_keeps_one_and_the_other_edits_arrive(
    sync: Sync, record_outcome: Any
) -> None:
    sync.pipeliner.seed([contact(1, position="Buyer")])
    sync.outlook.new_folder(sync.folder)
    sync.run_ok()
    [pid] = [c["id"] for c in sync.pipeliner.contacts()]
    copy = _copy_of(sync, pid)
    # In Outlook both names are cleared, and the job title changed, in one edit.
    sync.outlook.edit(copy["id"], givenName="", surname="", jobTitle="Head of buying")
    legs = sync.run_ok()
    row = sync.pipeliner.raw(pid)
    assert row.get("position") == "Head of buying"  # the valid change arrived
    assert row.get("first_name") == "Pat1"  # the required name was kept
    [refused] = _issues(legs, "field refused")
    assert refused["reason"].startswith("first_name not written to pipeliner")
    legs = sync.run_ok()  # the Outlook copy gets Pipeliner's first name back
    assert _copy_of(sync, pid)["givenName"] == "Pat1"
    quiet = [sync.run_ok() for _ in range(2)]
    assert not any(_issues(run, "field refused") for run in quiet)
    assert all(leg.report["counts"]["updated"] == 0 for run in quiet for leg in run)
    record_outcome(
        section="permanent",
        cell="both names cleared in Outlook with another edit",
        outcome="the other edit written, the first name kept and put back; reported once",
        lost=0,
        survived=True,
    )


def test_a_nameless_outlook_contact_is_parked_until_it_gets_a_name(
    sync: Sync, record_outcome: Any
) -> None:
    sync.pipeliner.seed([contact(1)])
    sync.outlook.new_folder(sync.folder)
    sync.outlook.create(sync.folder, companyName="Fabrikam Ltd")  # only a company
    attempts = []
    for _ in range(RUNS):
        legs = sync.run_ok()
        back = legs[1].report
        attempts.append(
            sum(1 for i in back["issues"] if "has no first or last name" in i["reason"])
        )
        parked = back["counts"]["needs_attention"]
    assert sum(1 for n in attempts if n) == RUNS  # named in every report…
    assert parked == 1  # …as parked, after PARK_AFTER tries
    creates = sync.pipeliner.requests("POST", "/Contacts/batch-modify")
    assert len(sync.pipeliner.contacts()) == 1  # no nameless CRM contact
    assert "has no first or last name" in back["issues"][-1]["reason"]
    # The user adds a name: the changed contact is tried afresh and created.
    [nameless] = [c for c in sync.outlook_contacts() if c.get("companyName") == "Fabrikam Ltd"]
    sync.outlook.edit(nameless["id"], surname="Fabrikam")
    legs = sync.run_ok()
    assert legs[1].report["counts"]["created"] == 1
    assert legs[1].report["counts"]["needs_attention"] == 0
    assert len(sync.pipeliner.contacts()) == 2
    record_outcome(
        section="permanent",
        cell=f"Outlook contact with only a company, {RUNS} runs",
        outcome=f"refused {PARK_AFTER} times, then parked (needs attention) in every report; "
        f"created once it got a name ({creates} batch writes meanwhile)",
        lost=0,
        survived=True,
    )


def test_a_job_title_longer_than_outlook_accepts_is_reported_once(
    sync: Sync, record_outcome: Any
) -> None:
    long_title = "Senior " * 60  # 420 characters: over the sandbox's labelled 255 limit
    sync.pipeliner.seed([contact(1, position=long_title, phone1="+1 555 0101")])
    sync.outlook.new_folder(sync.folder)
    sync.outlook.storage(string_limits=True)
    try:
        runs = [sync.run_ok() for _ in range(RUNS)]
        [pid] = [c["id"] for c in sync.pipeliner.contacts()]
        copy = _copy_of(sync, pid)
        assert copy["businessPhones"] == ["+1 555 0101"]  # the rest of the contact arrived
        assert not copy.get("jobTitle")
        refused = [i for run in runs for i in _issues(run, "field refused")]
        assert len(refused) == 1 and refused[0]["reason"].startswith("job_title not written")
        # Never written back over Pipeliner's title, never retried while it stays as it is.
        assert sync.pipeliner.raw(pid)["position"].strip() == long_title.strip()
        assert all(leg.report["counts"]["failed"] == 0 for run in runs for leg in run)
        # A shorter title in Pipeliner reaches Outlook again.
        sync.pipeliner.edit("alex", pid, position="Senior buyer")
        sync.run_ok()
        assert _copy_of(sync, pid)["jobTitle"] == "Senior buyer"
    finally:
        sync.outlook.storage(string_limits=False)
    record_outcome(
        section="permanent",
        cell=f"Pipeliner job title longer than Outlook accepts, {RUNS} runs",
        outcome="the rest of the contact synced; reported once; not retried until changed",
        lost=0,
        survived=True,
    )


def test_an_outlook_edit_of_an_archived_contact_is_put_back(
    sync: Sync, record_outcome: Any
) -> None:
    sync.pipeliner.seed([contact(1, position="Buyer")])
    sync.outlook.new_folder(sync.folder)
    sync.run_ok()
    [pid] = [c["id"] for c in sync.pipeliner.contacts()]
    sync.pipeliner.edit("alex", pid, is_archived=True)
    sync.outlook.edit(_copy_of(sync, pid)["id"], jobTitle="Edited in Outlook")
    runs = [sync.run_ok() for _ in range(3)]
    assert sync.pipeliner.raw(pid)["position"] == "Buyer"  # archived: not edited
    assert _copy_of(sync, pid)["jobTitle"] == "Buyer"  # the copy as Pipeliner has it
    [refused] = _issues(runs[0], "rejected")
    assert "archived" in refused["reason"]
    assert not any(_issues(run, "rejected") for run in runs[1:])  # ended, not repeated
    record_outcome(
        section="permanent",
        cell="Outlook edit to the copy of an archived Pipeliner contact",
        outcome="not written; the copy put back from Pipeliner on the next run; reported once",
        lost=0,
        survived=True,
    )
