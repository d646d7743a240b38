"""Nothing lost at the seams (issue #12), through real `meltano run`s: a deselected field is not
a cleared field, narrowing the scope is not a mass delete, and a contact that exists in Pipeliner
but is not the user's to edit is reported, never created a second time.

(The other seams of the issue have their own tests: ACTIVATE_VERSION with target-postgres, dry
runs and imports in tests/e2e/test_composition.py and test_dry_run.py; one bad field and parking
in tests/reliability/test_permanent_failures.py; moves and folder identity in
tests/e2e/test_folders.py.)
"""

from __future__ import annotations

from typing import Any

import pytest

from contactsync.outlook.projection import pipeliner_stamp
from tests.e2e.test_meltano_sync import EUROPE, ROOT, Project, _contact
from tests.support.plugins import USERS

pytestmark = pytest.mark.skipif(
    not (ROOT / ".meltano" / "mappers" / "contactsync-mapper").exists(),
    reason="Meltano plugins are not installed: run `make plugins` (make test does)",
)


def _notes(project: Project) -> dict[str, Any]:
    return {pipeliner_stamp(c): c.get("personalNotes") for c in project.outlook_contacts().values()}


def test_a_deselected_field_is_left_alone_both_ways(project: Project) -> None:
    project.pipeliner.seed(
        [_contact(n, "alex", comments=f"Notes of {n}\nsecond line") for n in range(1, 4)]
    )
    project.own_copy()
    project.run("two-way-your-contacts")
    notes = _notes(project)
    assert all(notes.values()) and len(notes) == 3

    # A data engineer leaves `comments` out of the Pipeliner tap's catalog, then re-reads all.
    project.meltano("select", "tap-pipeliner-contacts", "--exclude", "contacts", "comments")
    project.run("--full-refresh", "two-way-your-contacts")
    assert _notes(project) == notes  # not blanked in Outlook
    comments = {c["id"]: c.get("comments") for c in project.pipeliner.contacts()}
    assert all(comments.values())  # nor in Pipeliner

    # The other way: the Outlook tap's personalNotes left out; a dry run plans no wipe.
    project.meltano("select", "tap-outlook-contacts", "--exclude", "contacts", "personalNotes")
    project.env["CONTACTSYNC_DRY_RUN"] = "true"
    for target in ("TARGET_OUTLOOK_CONTACTS", "TARGET_PIPELINER_CONTACTS"):
        project.env[f"{target}_DRY_RUN"] = "true"
    project.run("--full-refresh", "two-way-your-contacts")
    planned = project.report("target-pipeliner-contacts")
    assert planned["dry_run"] is True
    assert planned["counts"]["updated"] == 0 and planned["counts"]["deleted"] == 0
    assert {c["id"]: c.get("comments") for c in project.pipeliner.contacts()} == comments


def test_narrowing_the_option_removes_copies_without_the_guard(project: Project) -> None:
    owned = [_contact(1, "alex")]
    shared = [_contact(10 + n, "nestor", email1=f"shared{n}@client.example") for n in range(3)]
    project.pipeliner.seed(owned + shared)
    for row in project.pipeliner.contacts():
        if row["owner_id"] == USERS["nestor"]:
            project.pipeliner.share("nestor", row["id"], client_id=USERS["alex"], role=2)
    project.set_option("owner_or_editor")
    project.run("two-way-your-contacts")
    assert len(project.outlook_contacts()) == 4
    revisions = {c["id"]: c["revision"] for c in project.pipeliner.contacts()}

    # Back to "owner": 3 of 4 copies (75% > max_delete_ratio 50%) leave, as expected.
    project.set_option("owner")
    project.run("two-way-your-contacts")
    assert len(project.outlook_contacts()) == 1
    report = project.report("target-outlook-contacts")
    assert (report["counts"]["out_of_scope"], report["counts"]["deleted"]) == (3, 0)
    assert report["error"] is None
    assert {c["id"]: c["revision"] for c in project.pipeliner.contacts()} == revisions


def test_an_outlook_contact_matching_a_colleagues_contact_is_reported_not_copied(
    project: Project,
) -> None:
    # Nestor's contact in Alex's unit: Alex sees it, but it is not his to edit or sync.
    project.pipeliner.seed(
        [_contact(1, "alex"), _contact(2, "nestor", email1="colleague@client.example")]
    )
    assert {c["unit_id"] for c in project.pipeliner.contacts()} == {EUROPE}
    project.outlook.create(
        project.folder,
        givenName="Colleague",
        surname="Contact",
        emailAddresses=[{"address": "Colleague@Client.example", "name": "C"}],
    )
    project.run("two-way-your-contacts")
    assert len(project.pipeliner.contacts()) == 2  # no second CRM contact
    report = project.report("target-pipeliner-contacts")
    [issue] = [i for i in report["issues"] if "exists in pipeliner" in i["reason"]]
    assert "owner nestor@contoso.example" in issue["reason"]
