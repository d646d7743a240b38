"""A dry run consumes nothing (issue #12 item 3), through real `meltano run`s of the two-way job:
edits on both sides, a dry run that plans them, then a real run that still applies every one.

A dry run makes no API write, changes nothing in the ledger, creates no folder, and its targets
emit no Singer STATE (Meltano saves what a target emits): the Pipeliner bookmark and Graph's
delta link stay where the last real run left them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_meltano_sync import ROOT, Project, _contact, agree

pytestmark = pytest.mark.skipif(
    not (ROOT / ".meltano" / "mappers" / "contactsync-mapper").exists(),
    reason="Meltano plugins are not installed: run `make plugins` (make test does)",
)


@pytest.fixture
def project(sandbox: Any, token_cache: Path, tmp_path: Path) -> Project:
    return Project(sandbox, token_cache, tmp_path)


def _dry(project: Project, on: bool) -> None:
    """The job-wide switch, as the README says: one variable for every plugin of the job."""
    if on:
        project.env["CONTACTSYNC_DRY_RUN"] = "true"
    else:
        project.env.pop("CONTACTSYNC_DRY_RUN", None)


def _states(project: Project) -> dict[str, str]:
    """Every Meltano state of this user's runs, as Meltano stores it."""
    listed = project.meltano("state", "list", "--pattern", f"*{project.suffix}*").stdout
    ids = [line.strip() for line in listed.splitlines() if project.suffix in line]
    return {i: project.meltano("state", "get", i).stdout.strip() for i in ids}


def _ledger_rows(project: Project) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every ledger table but the run locks (whose holder is who runs now)."""
    path = project.workdir / "ledger.sqlite"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        tables = [
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if name != "run_locks"
        ]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}


def _both_sides(project: Project) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    return (
        {i: c["revision"] for i, c in project.pipeliner_contacts().items()},
        {i: c["changeKey"] for i, c in project.outlook_contacts().items()},
        sorted(f["displayName"] for f in project.outlook.folders()),
    )


def test_a_dry_run_plans_the_edits_and_the_next_real_run_applies_them(project: Project) -> None:
    project.pipeliner.seed([_contact(n, "alex") for n in range(1, 5)])
    project.outlook.new_folder(project.folder)
    project.run("two-way-your-contacts")
    links = project.links()
    assert len(links) == 4
    (p1, o1), (p2, o2), (p3, o3), (p4, o4) = links.items()

    # Edits as users make them, on both sides.
    project.pipeliner.edit("alex", p1, phone1="+47 22 00 00 01")
    project.outlook.edit(o2, jobTitle="Chief Buyer")
    project.outlook.edit(o3, personalNotes="met at the fair")
    project.pipeliner.delete("alex", p4)
    new_crm = project.pipeliner.create("alex", **_contact(5, "alex", email1="new@crm.example"))
    new_outlook = project.outlook.create(
        project.folder,
        givenName="Olga",
        surname="Outlook",
        emailAddresses=[{"address": "olga@x.example", "name": "Olga"}],
    )
    before = _both_sides(project)
    states, ledger = _states(project), _ledger_rows(project)
    assert states  # the real run saved state: the dry run must leave it as it is

    _dry(project, True)
    done = project.run("two-way-your-contacts")
    to_outlook = project.report("target-outlook-contacts")
    to_pipeliner = project.report("target-pipeliner-contacts")
    assert to_outlook["dry_run"] is True and to_pipeliner["dry_run"] is True
    assert (to_outlook["counts"]["created"], to_outlook["counts"]["updated"]) == (1, 1)
    assert to_outlook["counts"]["deleted"] == 1
    assert (to_pipeliner["counts"]["created"], to_pipeliner["counts"]["updated"]) == (1, 2)
    assert _both_sides(project) == before  # no write anywhere
    assert _ledger_rows(project) == ledger  # no ledger change
    assert _states(project) == states  # no bookmark, no delta link moved
    assert "dry run: no state is emitted" in done.stderr

    _dry(project, False)
    project.run("two-way-your-contacts")
    pipeliner, outlook = project.pipeliner_contacts(), project.outlook_contacts()
    assert outlook[o1]["businessPhones"] == ["+47 22 00 00 01"]
    assert pipeliner[p2]["position"] == "Chief Buyer"
    assert pipeliner[p3]["comments"] == "met at the fair"
    assert o4 not in outlook and p4 not in project.links()
    assert new_crm["id"] in project.links()
    [olga] = [c for c in pipeliner.values() if c.get("email1") == "olga@x.example"]
    assert project.links()[olga["id"]] == new_outlook["id"]
    agree(project)
    assert _states(project) != states  # a real run moves the bookmarks


def test_a_dry_run_creates_no_folder(project: Project) -> None:
    project.pipeliner.seed([_contact(n, "alex") for n in range(1, 3)])
    _dry(project, True)  # the folder does not exist; create_folder is on (sandbox environment)
    project.run("two-way-your-contacts")
    assert project.folder not in {f["displayName"] for f in project.outlook.folders()}
    report = project.report("target-outlook-contacts")
    assert report["dry_run"] is True and report["counts"]["created"] == 2
    assert _states(project) == {}

    _dry(project, False)
    project.run("two-way-your-contacts")
    assert len(project.outlook_contacts()) == 2
    agree(project)
