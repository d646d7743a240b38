"""The product as a user runs it: real `meltano run` processes of the project's jobs against the
sandbox (started on free ports; Meltano pointed at it through its setting environment variables).

Needs the Meltano plugins installed (`make plugins`, which `make test` runs first).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from contactsync.outlook.projection import from_graph
from contactsync.pipeliner.projection import from_pipeliner
from contactsync.sync.ledger import Ledger
from contactsync.sync.link import Partition
from tests.support.meltano_env import meltano_env
from tests.support.plugins import USERS, OutlookActor, PipelinerActor

ROOT = Path(__file__).resolve().parents[2]
MELTANO = str(Path(sys.executable).parent / "meltano")
SPACE = "5a5a5a5a-0000-4000-8000-000000000001"
ALEX = "alex@contoso.example"
EUROPE, AMERICAS = "a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000002"

pytestmark = pytest.mark.skipif(
    not (ROOT / ".meltano" / "mappers" / "contactsync-mapper").exists(),
    reason="Meltano plugins are not installed: run `make plugins` (make test does)",
)


class Project:
    """One user's sync through Meltano, isolated: own folder, ledger, state, reports."""

    def __init__(self, sandbox: Any, cache: Path, workdir: Path) -> None:
        self.workdir = workdir
        self.folder = f"Pipeliner {uuid.uuid4().hex[:8]}"
        self.suffix = uuid.uuid4().hex[:8]
        self.user = ALEX
        self.pipeliner = PipelinerActor(sandbox.control("pipeliner"))
        self.outlook = OutlookActor(sandbox.control("graph"))
        self.env = meltano_env(sandbox.info, cache, workdir, self.folder)
        #: The Meltano project it runs in (a copy, where a test changes meltano.yml).
        self.root = ROOT

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [MELTANO, "run", f"--state-id-suffix={self.suffix}", *args]
        done = subprocess.run(
            cmd, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    def meltano(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Any other `meltano` command in the project (``select``, ``config``, ``state``…)."""
        done = subprocess.run(
            [MELTANO, *args], cwd=self.root, env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    def own_copy(self) -> None:
        """Run in a copy of the project (its meltano.yml), so that ``meltano select`` may change
        it; the installed plugins are shared."""
        root = self.workdir / "project"
        root.mkdir()
        (root / "meltano.yml").write_text((ROOT / "meltano.yml").read_text())
        for kept in ("constraints.txt", "catalogs"):
            if (ROOT / kept).exists():
                (root / kept).symlink_to(ROOT / kept)
        self.root = root

    def report(self, target: str) -> dict[str, Any]:
        return json.loads((self.workdir / f"{target.replace('-', '_')}.json").read_text())

    def set_option(self, option: str) -> None:
        """Configure sync_option the way the README says: once, for the whole job."""
        self.env["CONTACTSYNC_SYNC_OPTION"] = option

    def sync_as(self, email: str) -> None:
        """Another Pipeliner user's sync into the same (signed-in) mailbox."""
        self.user = email
        for plugin in (
            "TAP_PIPELINER_CONTACTS",
            "TAP_PIPELINER_CONTACTS_ALL",
            "TARGET_PIPELINER_CONTACTS",
            "TARGET_OUTLOOK_CONTACTS",
            "TARGET_OUTLOOK_CONTACTS_ONE_WAY",
        ):
            self.env[f"{plugin}_USER_EMAIL"] = email

    def links(self) -> dict[str, str]:
        scope = Partition(self.user, SPACE, "me", self.folder)
        with (
            Ledger(str(self.workdir / "ledger.sqlite")) as ledger,
            ledger.open_partition(scope) as s,
        ):
            return {lk.crm_id: lk.book_id or "" for lk in s.iter_links()}

    def outlook_contacts(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.outlook.contacts(self.folder)}

    def pipeliner_contacts(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.pipeliner.contacts()}


@pytest.fixture
def project(sandbox: Any, token_cache: Path, tmp_path: Path) -> Project:
    proj = Project(sandbox, token_cache, tmp_path)
    proj.pipeliner.seed(
        [
            _contact(1, "alex", email1="kim@client.example", position="Buyer"),
            _contact(2, "alex", phone1="+1 555 0102", comments="line one\nline two"),
            _contact(3, "megan", email1="megan-owned@client.example", unit_id=AMERICAS),
            _contact(4, "lynne", email1="shared@client.example"),
        ]
    )
    shared = next(
        c for c in proj.pipeliner.contacts() if c.get("email1") == "shared@client.example"
    )
    proj.pipeliner.share("lynne", shared["id"], client_id=USERS["alex"], role=2)
    proj.outlook.new_folder(proj.folder)
    proj.outlook.control.reset_counters()
    return proj


def _contact(n: int, owner: str, **fields: Any) -> dict[str, Any]:
    unit = AMERICAS if owner == "lynne" else EUROPE
    return {
        "owner_id": USERS[owner],
        "unit_id": unit,
        "first_name": f"Person{n}",
        "last_name": "Example",
        **fields,
    }


def agree(project: Project) -> None:
    """Every link joins two contacts equal on every table key; nothing in the folder unlinked."""
    links = project.links()
    pipeliner, outlook = project.pipeliner_contacts(), project.outlook_contacts()
    for pid, oid in links.items():
        assert from_pipeliner(pipeliner[pid]) == from_graph(outlook[oid]), pid
    assert set(outlook) == set(links.values())


def test_two_way_links_then_writes_nothing_on_a_quiet_run(project: Project) -> None:
    project.outlook.create(
        project.folder,
        givenName="Person1",
        surname="Example",
        emailAddresses=[{"address": "KIM@client.example", "name": "Kim"}],
        categories=["VIP"],
    )
    done = project.run("two-way-your-contacts")
    # The taps' shipped catalogs are used: no tap is started a second time to discover one.
    assert "Using custom catalog" in done.stderr
    assert "Running catalog discovery" not in done.stderr
    links = project.links()
    owned = {c["id"] for c in project.pipeliner.contacts() if c["owner_id"] == USERS["alex"]}
    assert set(links) == owned  # owner option: only Alex's own contacts
    assert len(project.outlook_contacts()) == 2  # the existing Kim was linked, not duplicated
    agree(project)
    assert project.report("target-outlook-contacts")["counts"]["linked"] == 1

    # A quiet run: no contact changes version on either side (no write at all).
    before = _versions(project)
    project.run("two-way-your-contacts")
    assert _versions(project) == before
    counts = project.report("target-outlook-contacts")["counts"]
    assert counts["created"] == counts["updated"] == counts["deleted"] == 0


def _versions(project: Project) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        {i: c["changeKey"] for i, c in project.outlook_contacts().items()},
        {i: c["revision"] for i, c in project.pipeliner_contacts().items()},
    )


def test_edits_on_both_sides_reach_the_other_and_merge(project: Project) -> None:
    project.run("two-way-your-contacts")
    pid, oid = next(iter(project.links().items()))
    project.pipeliner.edit("alex", pid, phone1="+47 22 00 00 00")
    project.outlook.edit(oid, jobTitle="Chief Buyer")
    new = project.outlook.create(
        project.folder,
        givenName="Olga",
        surname="Outlook",
        emailAddresses=[{"address": "olga@x.example", "name": "Olga"}],
    )
    project.run("two-way-your-contacts")
    pipeliner = project.pipeliner_contacts()
    assert pipeliner[pid]["position"] == "Chief Buyer"
    assert project.outlook_contacts()[oid]["businessPhones"][0] == "+47 22 00 00 00"
    created = [c for c in pipeliner.values() if c.get("email1") == "olga@x.example"]
    assert len(created) == 1 and created[0]["owner_id"] == USERS["alex"]
    assert project.links()[created[0]["id"]] == new["id"]
    agree(project)


def test_deletes_follow_rights_and_scope(project: Project) -> None:
    project.run("two-way-your-contacts")
    links = project.links()
    first, second = list(links)[:2]
    project.pipeliner.delete("alex", first)  # deleted in Pipeliner: the Outlook copy goes
    project.outlook.delete(links[second])  # deleted in Outlook by a user with rights
    project.run("two-way-your-contacts")
    assert links[first] not in project.outlook_contacts()
    assert second not in project.pipeliner_contacts()  # soft-deleted in Pipeliner
    agree(project)


def test_changing_the_option_widens_then_narrows_the_folder(project: Project) -> None:
    project.run("two-way-your-contacts")
    assert "shared@client.example" not in _emails(project)
    project.set_option("owner_or_editor")  # wider: the editor contact comes
    project.run("two-way-your-contacts")
    emails = _emails(project)
    assert "shared@client.example" in emails
    assert "megan-owned@client.example" not in emails
    agree(project)
    project.set_option("owner")  # narrower: its Outlook copy goes, Pipeliner keeps it
    project.run("two-way-your-contacts")
    assert "shared@client.example" not in _emails(project)
    assert any(c.get("email1") == "shared@client.example" for c in project.pipeliner.contacts())
    agree(project)


def _emails(project: Project) -> set[str]:
    return {
        c["emailAddresses"][0]["address"]
        for c in project.outlook_contacts().values()
        if c.get("emailAddresses")
    }


def test_one_way_all_contacts_brings_what_the_user_can_see(project: Project) -> None:
    project.run("one-way-all-contacts")
    emails = {
        c["emailAddresses"][0]["address"]
        for c in project.outlook_contacts().values()
        if c.get("emailAddresses")
    }
    # Alex sees his own and the shared contact; Megan's is in another unit he cannot see.
    assert {"kim@client.example", "shared@client.example"} <= emails
    assert "megan-owned@client.example" not in emails


def test_the_tap_composes_with_the_published_target_jsonl(project: Project) -> None:
    out = project.workdir / "jsonl"
    project.env["TARGET_JSONL_DESTINATION_PATH"] = str(out)
    project.run("tap-pipeliner-contacts", "target-jsonl")
    [written] = out.glob("contacts*.jsonl")  # target-jsonl adds a timestamp to the name
    lines = written.read_text().splitlines()
    assert len(lines) == len(project.pipeliner.contacts(include_deleted=True))


def test_without_rights_the_outlook_copy_comes_back(project: Project, sandbox: Any) -> None:
    project.sync_as("megan@contoso.example")
    # Megan (no contact deletion right) syncs into Alex's signed-in mailbox: a deletion in
    # Outlook must not reach Pipeliner, and the copy must come back.
    project.run("two-way-your-contacts")
    pid, oid = next(iter(project.links().items()))
    project.outlook.delete(oid)
    project.run("two-way-your-contacts")
    assert pid in project.pipeliner_contacts()
    issues = project.report("target-pipeliner-contacts")["issues"]
    assert any("may not delete" in i["reason"] for i in issues)
    project.run("two-way-your-contacts")
    assert project.links()[pid] in project.outlook_contacts()  # restored, a new copy
    agree(project)


def test_leaving_the_scope_removes_only_the_outlook_copy(project: Project) -> None:
    project.run("two-way-your-contacts")
    pid, oid = next(iter(project.links().items()))
    project.pipeliner._call(
        "POST", f"/users/{USERS['alex']}/contacts/{pid}/owner", {"owner_id": USERS["lynne"]}
    )
    project.run("two-way-your-contacts")
    assert oid not in project.outlook_contacts()
    assert pid in project.pipeliner_contacts()  # never deleted in Pipeliner for that
    assert pid not in project.links()
    agree(project)


def test_same_field_conflict_follows_the_policy_and_an_edit_beats_a_delete(
    project: Project,
) -> None:
    project.env["CONTACTSYNC_CONFLICT_POLICY"] = "outlook_wins"  # one value for the job
    project.run("two-way-your-contacts")
    (pid, oid), (pid2, oid2) = list(project.links().items())[:2]
    project.pipeliner.edit("alex", pid, position="From Pipeliner")
    project.outlook.edit(oid, jobTitle="From Outlook")
    project.pipeliner.delete("alex", pid2)  # deleted in Pipeliner …
    project.outlook.edit(oid2, jobTitle="Edited in Outlook")  # … but edited in Outlook
    project.run("two-way-your-contacts")
    project.run("two-way-your-contacts")
    contacts = project.pipeliner_contacts()
    assert contacts[pid]["position"] == "From Outlook"
    assert pid2 in contacts and contacts[pid2]["position"] == "Edited in Outlook"
    agree(project)


def test_the_mass_delete_guard_stops_a_run_whose_pipeliner_side_vanished(
    project: Project, sandbox: Any
) -> None:
    for n in range(5, 12):
        project.pipeliner.create("alex", **_contact(n, "alex"))
    project.run("two-way-your-contacts")
    linked = project.links()
    for pid in list(linked)[:-1]:
        project.pipeliner.delete("alex", pid)
    cmd = [MELTANO, "run", f"--state-id-suffix={project.suffix}", "two-way-your-contacts"]
    done = subprocess.run(cmd, cwd=ROOT, env=project.env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "allow_mass_delete" in done.stderr
    assert set(linked.values()) <= set(project.outlook_contacts())  # nothing deleted


def test_one_way_your_contacts_never_writes_to_pipeliner(project: Project) -> None:
    project.run("one-way-your-contacts")
    links = project.links()
    owned = {c["id"] for c in project.pipeliner.contacts() if c["owner_id"] == USERS["alex"]}
    assert set(links) == owned
    agree(project)
    revisions = {i: c["revision"] for i, c in project.pipeliner_contacts().items()}
    gone = next(iter(links))
    project.pipeliner.delete("alex", gone)
    project.outlook.create(project.folder, givenName="Only", surname="InOutlook")
    project.run("one-way-your-contacts")
    assert links[gone] not in project.outlook_contacts()
    after = project.pipeliner_contacts()
    assert all(after[i]["revision"] == r for i, r in revisions.items() if i != gone)
    assert not any(c.get("last_name") == "InOutlook" for c in after.values())


def test_a_job_setting_on_one_plugin_alone_is_refused_naming_it(project: Project) -> None:
    """conflict_policy set on target-pipeliner-contacts alone would never apply in the two-way
    job (its first leg decides conflicts): the run stops at start with one ERROR line (at error
    level under Meltano) naming the setting and the job-wide variable, and writes nothing."""
    project.env["TARGET_PIPELINER_CONTACTS_CONFLICT_POLICY"] = "outlook_wins"
    project.outlook.create(project.folder, givenName="Only", surname="InOutlook")
    before = len(project.pipeliner.contacts())
    cmd = [MELTANO, "run", f"--state-id-suffix={project.suffix}"]
    cmd += ["tap-outlook-contacts", "outlook-to-pipeliner", "target-pipeliner-contacts"]
    done = subprocess.run(cmd, cwd=ROOT, env=project.env, capture_output=True, text=True)
    assert done.returncode != 0
    errors = [ln for ln in done.stderr.splitlines() if re.search(r"\[error\s*\] target-pip", ln)]
    assert len(errors) == 1, done.stderr[-3000:]
    assert "conflict_policy" in errors[0] and "CONTACTSYNC_CONFLICT_POLICY" in errors[0]
    assert "Traceback" not in done.stderr
    assert len(project.pipeliner.contacts()) == before
