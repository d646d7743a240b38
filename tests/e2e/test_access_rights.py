"""Access rights are the law (issue #11), through real `meltano run`s against the sandbox.

An administrator changes what a user may see and edit the way it is done in Pipeliner: unit
membership through the REST API (`PATCH Clients/{id}`), roles and the unit tree in the admin
module (the sandbox's control API: the REST API has no route for them). After the next run the
Outlook folder holds exactly what docs/access-rules.md says, checked against an oracle written
from that table (tests/support/access_oracle.py), and no Pipeliner contact was written without
the right to write it.
"""

from __future__ import annotations

from typing import Any

import pytest

from contactsync.outlook.projection import pipeliner_stamp
from tests.e2e.test_meltano_sync import AMERICAS, EUROPE, ROOT, Project, _contact
from tests.support import access_oracle
from tests.support.plugins import USERS

pytestmark = pytest.mark.skipif(
    not (ROOT / ".meltano" / "mappers" / "contactsync-mapper").exists(),
    reason="Meltano plugins are not installed: run `make plugins` (make test does)",
)

MEGAN, ALEX = "megan@contoso.example", "alex@contoso.example"
SALES_REP_NO_DELETE = "b0000000-0000-4000-8000-000000000002"  # Megan's role, hers alone
CONTOSO = "a0000000-0000-4000-8000-000000000003"  # the root unit


def _state(project: Project) -> dict[str, Any]:
    return project.pipeliner.control.state()


def _copies(project: Project) -> set[str]:
    return {pipeliner_stamp(c) or "?" for c in project.outlook_contacts().values()}


def _check_folder(project: Project, expected: set[str]) -> None:
    copies = _copies(project)
    assert not copies - expected, f"{len(copies - expected)} leaked"
    assert not expected - copies, f"{len(expected - copies)} missing"


def test_one_way_all_follows_unit_moves_role_changes_and_the_unit_tree(
    project: Project,
) -> None:
    project.pipeliner.control.reset()  # the demo space: 300 contacts, every kind of sharing
    project.sync_as(MEGAN)
    project.run("one-way-all-contacts")
    _check_folder(project, access_oracle.visible(_state(project), MEGAN))
    before = len(_copies(project))

    # An administrator moves Megan to the other sales unit (Administration → Users).
    project.pipeliner.move_user("megan", AMERICAS)
    project.run("one-way-all-contacts")
    moved = access_oracle.visible(_state(project), MEGAN)
    _check_folder(project, moved)
    assert len(moved) != before  # the move mattered

    # Her role now reaches sub-units, and Sales Europe is put under Sales Americas.
    project.pipeliner.edit_role(SALES_REP_NO_DELETE, access_entity_contact_direction=4)
    project.pipeliner.move_unit(EUROPE, AMERICAS)
    project.run("one-way-all-contacts")
    wider = access_oracle.visible(_state(project), MEGAN)
    _check_folder(project, wider)
    assert len(wider) > len(moved)

    # Narrowed to "only owned records": only her own and those shared with her stay.
    project.pipeliner.edit_role(SALES_REP_NO_DELETE, access_entity_contact_direction=1)
    project.pipeliner.move_unit(EUROPE, CONTOSO)
    project.run("one-way-all-contacts")
    narrow = access_oracle.visible(_state(project), MEGAN)
    _check_folder(project, narrow)
    assert len(narrow) < len(moved)
    report = project.report("target-outlook-contacts-one-way")
    # Every copy removed is counted out of scope (so are records re-read that were already
    # out of it and have no copy: a full read lists them again).
    assert report["counts"]["out_of_scope"] >= len(wider - narrow)
    assert report["counts"]["deleted"] == 0  # leaving the scope is not a deletion


def _seed_alex(project: Project) -> dict[str, str]:
    """Alex's own contacts, Nestor's contacts shared with the Europe unit as editor, one shared
    with Alex himself, and Nestor's unshared Europe contacts (visible to Alex, never his)."""
    contacts = [
        _contact(1, "alex", email1="own1@client.example"),
        _contact(2, "alex", email1="own2@client.example"),
        *(_contact(10 + n, "nestor", email1=f"unit{n}@client.example") for n in range(4)),
        _contact(20, "nestor", email1="direct@client.example"),
        *(_contact(30 + n, "nestor", email1=f"seen{n}@client.example") for n in range(3)),
    ]
    project.pipeliner.seed(contacts)
    ids = {c["email1"]: c["id"] for c in project.pipeliner.contacts()}
    for n in range(4):
        project.pipeliner.share("nestor", ids[f"unit{n}@client.example"], unit_id=EUROPE, role=2)
    project.pipeliner.share("nestor", ids["direct@client.example"], client_id=USERS["alex"], role=2)
    return ids


def _revisions(project: Project) -> dict[str, int]:
    return {c["id"]: c["revision"] for c in project.pipeliner.contacts(include_deleted=True)}


def test_two_way_owner_or_editor_never_writes_without_the_right(project: Project) -> None:
    ids = _seed_alex(project)
    project.set_option("owner_or_editor")
    project.run("two-way-your-contacts")
    # "Editor" means an explicit grant: never Nestor's contacts merely visible in the unit.
    mine = access_oracle.theirs(_state(project), ALEX, "owner_or_editor")
    assert {ids[f"seen{n}@client.example"] for n in range(3)}.isdisjoint(mine)
    _check_folder(project, mine)
    assert len(mine) == 2 + 4 + 1

    # Alex moves to Sales Americas, then edits the copy of a contact he could edit only as a
    # member of Sales Europe, before any run noticed the move.
    project.pipeliner.move_user("alex", AMERICAS)
    copy = next(
        c
        for c in project.outlook_contacts().values()
        if pipeliner_stamp(c) == ids["unit0@client.example"]
    )
    project.outlook.edit(copy["id"], jobTitle="Written into Nestor's contact?")
    revisions = _revisions(project)

    # The way back alone: its target checks the rights of this moment, and writes nothing.
    project.run("tap-outlook-contacts", "outlook-to-pipeliner", "target-pipeliner-contacts")
    assert _revisions(project) == revisions
    report = project.report("target-pipeliner-contacts")
    [issue] = [i for i in report["issues"] if i["outcome"] == "out of scope"]
    assert "alex@contoso.example can no longer edit" in issue["reason"]

    # The whole job: copies of what left the scope leave the folder; Pipeliner is untouched.
    project.run("two-way-your-contacts")
    now = access_oracle.theirs(_state(project), ALEX, "owner_or_editor")
    assert now == {ids["own1@client.example"], ids["own2@client.example"]} | {
        ids["direct@client.example"]
    }
    _check_folder(project, now)
    assert _revisions(project) == revisions
    project.run("two-way-your-contacts")  # and it stays so
    _check_folder(project, now)
    assert _revisions(project) == revisions
