"""Moved contacts and folder identity (issue #12 items 5 and 6), through real `meltano run`s of
the two-way job: a contact the user files into another Outlook folder is not deleted in
Pipeliner and not copied again, and comes back into the sync when moved back; a folder renamed
in Outlook is followed (same folder, nothing deleted or duplicated); a deleted folder stops the
run with a message saying so, and nothing is deleted in Pipeliner.

Users act as they do: the Outlook client's move (the sandbox actor's `move`; Graph has no move
action for contacts), and folder renames and deletes through Graph (`PATCH`/`DELETE
/me/contactFolders/{id}`).
"""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import pytest

from contactsync.sync.ledger import Ledger
from contactsync.sync.link import LinkState, Partition
from tests.e2e.test_meltano_sync import MELTANO, ROOT, SPACE, Project, _contact, agree

pytestmark = pytest.mark.skipif(
    not (ROOT / ".meltano" / "mappers" / "contactsync-mapper").exists(),
    reason="Meltano plugins are not installed: run `make plugins` (make test does)",
)

JOB = "two-way-your-contacts"


@pytest.fixture
def project(sandbox: Any, token_cache: Any, tmp_path: Any) -> Project:
    proj = Project(sandbox, token_cache, tmp_path)
    proj.pipeliner.seed([_contact(n, "alex", email1=f"p{n}@client.example") for n in (1, 2, 3)])
    proj.outlook.new_folder(proj.folder)
    proj.run(JOB)
    assert len(proj.links()) == 3 and len(proj.outlook_contacts()) == 3
    return proj


def _fails(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [MELTANO, "run", f"--state-id-suffix={project.suffix}", *args]
    done = subprocess.run(
        cmd, cwd=project.root, env=project.env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode != 0, done.stderr[-3000:]
    return done


def _states(project: Project) -> dict[str, LinkState]:
    scope = Partition(project.user, SPACE, "me", project.folder)
    with (
        Ledger(str(project.workdir / "ledger.sqlite")) as ledger,
        ledger.open_partition(scope) as s,
    ):
        return {lk.crm_id: lk.state for lk in s.iter_links()}


def _live(project: Project) -> dict[str, dict[str, Any]]:
    return {k: c for k, c in project.pipeliner_contacts().items() if not c.get("is_deleted")}


def test_a_contact_moved_to_another_folder_stays_in_pipeliner_and_comes_back(
    project: Project,
) -> None:
    family = f"Family {uuid.uuid4().hex[:6]}"
    project.outlook.new_folder(family)
    pid, oid = next(iter(project.links().items()))
    project.outlook.move(oid, family)  # the user files it in Outlook

    project.run(JOB)
    assert pid in _live(project) and len(_live(project)) == 3  # not deleted in Pipeliner
    report = project.report("target-pipeliner-contacts")
    assert report["counts"]["moved_out"] == 1 and report["counts"]["deleted"] == 0
    assert any(i["outcome"] == "moved out of the folder" for i in report["issues"])
    assert _states(project)[pid] is LinkState.MOVED
    assert oid not in project.outlook_contacts() and len(project.outlook_contacts()) == 2

    # Edited in Pipeliner while it is away: no second copy in the folder, no write into Family.
    project.pipeliner.edit("alex", pid, position="Moved Buyer")
    before = project.outlook.contacts(family)
    project.run(JOB)
    assert len(project.outlook_contacts()) == 2
    assert project.outlook.contacts(family) == before
    assert project.report("target-outlook-contacts")["counts"]["moved_out"] == 1

    # Edited in Family, then moved back: the sync resumes, both edits arrive.
    project.outlook.edit(oid, personalNotes="Filed back")
    project.outlook.move(oid, project.folder)
    project.run(JOB)
    project.run(JOB)
    assert _states(project)[pid] is LinkState.ACTIVE
    assert _live(project)[pid]["comments"] == "Filed back"
    assert project.outlook_contacts()[oid]["jobTitle"] == "Moved Buyer"
    agree(project)
    assert len(_live(project)) == 3


def test_a_renamed_folder_is_followed(project: Project) -> None:
    renamed = f"Clients {uuid.uuid4().hex[:6]}"
    project.outlook.rename_folder(project.folder, renamed)  # through Graph, as Outlook does
    new = project.pipeliner.create("alex", **_contact(4, "alex", email1="p4@client.example"))

    project.run(JOB)
    names = [f["displayName"] for f in project.outlook.folders()]
    assert project.folder not in names  # no new folder under the old name
    in_renamed = project.outlook.contacts(renamed)
    assert len(in_renamed) == 4  # the new contact landed in the renamed folder, nothing twice
    assert len(_live(project)) == 4
    for target in ("target-outlook-contacts", "target-pipeliner-contacts"):
        assert project.report(target)["counts"]["deleted"] == 0
    assert new["id"] in project.links()

    # A full refresh forgets the tap's bookmark: it reads a folder by the setting's name (a new,
    # empty one), not the one the sync is bound to. Its absences delete nothing: the run stops,
    # saying so, and never advises overriding the guard.
    done = _fails(project, "--full-refresh", JOB)
    assert "not from the folder this sync is bound to" in done.stderr
    assert "allow_mass_delete=true" not in done.stderr
    assert len(_live(project)) == 4  # nothing deleted in Pipeliner


def test_a_deleted_folder_stops_the_run_and_deletes_nothing(project: Project) -> None:
    folder_id = project.outlook.folder_id(project.folder)
    project.outlook.delete_folder(project.folder)  # through Graph, with its contacts

    done = _fails(project, JOB)
    assert "no longer exists" in done.stderr and folder_id in done.stderr
    assert len(_live(project)) == 3  # nothing deleted in Pipeliner
    names = [f["displayName"] for f in project.outlook.folders()]
    assert project.folder not in names and folder_id not in names  # no folder recreated

    # Pipeliner work pending: the Outlook leg stops too, before writing anything.
    project.pipeliner.edit("alex", next(iter(project.links())), position="Still here")
    done = _fails(project, JOB)
    assert "no longer exists" in done.stderr
    assert [f["displayName"] for f in project.outlook.folders()] == names
    assert len(_live(project)) == 3


def test_a_folder_segment_that_does_not_scope_writes_never_reaches_a_moved_contact(
    project: Project,
) -> None:
    """Where Graph ignores the folder of `contactFolders/{f}/contacts/{id}` (the sandbox's
    `folder_scoped_item_urls` false), a PATCH or DELETE through the synced folder's URL would
    reach the contact in its new folder: the sync checks `parentFolderId` first."""
    family = f"Family {uuid.uuid4().hex[:6]}"
    project.outlook.new_folder(family)
    links = list(project.links().items())
    (edited, oid_edited), (deleted, oid_deleted) = links[0], links[1]
    project.outlook.move(oid_edited, family)
    project.outlook.move(oid_deleted, family)
    before = {c["id"]: c for c in project.outlook.contacts(family)}
    project.outlook.storage(folder_scoped_item_urls=False)
    try:
        project.pipeliner.edit("alex", edited, position="Not for Family")
        project.pipeliner.delete("alex", deleted)
        project.run(JOB)
        project.run(JOB)
    finally:
        project.outlook.storage(folder_scoped_item_urls=True)
    assert {c["id"]: c for c in project.outlook.contacts(family)} == before
    assert len(project.outlook_contacts()) == 1  # no copy made again in the synced folder
    assert edited in _live(project)


def test_a_contact_deleted_into_deleted_items_is_still_a_delete(project: Project) -> None:
    """The Outlook client deletes a contact by moving it to Deleted Items (the sandbox's
    `deleted_items` option), where it can still be read by id: that folder is no contact folder,
    so this is a delete, not a move, and it reaches Pipeliner."""
    pid, oid = next(iter(project.links().items()))
    project.outlook.storage(deleted_items=True)
    try:
        project.outlook.delete(oid)
        project.run(JOB)
    finally:
        project.outlook.storage(deleted_items=False)
    report = project.report("target-pipeliner-contacts")
    assert report["counts"]["deleted"] == 1 and report["counts"]["moved_out"] == 0
    assert pid not in _live(project) and len(_live(project)) == 2
