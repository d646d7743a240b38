"""Users of a Pipeliner space through the `contactsync` command line, against the sandbox: the
administrator enables the sync, users activate, configure and deactivate their own, and
`contactsync run` runs their Meltano jobs (in parallel, in isolated working copies).

The commands run in-process (`contactsync.ops.cli.main`, exactly what the console script calls), so
device-code sign-ins can be approved from a thread; `run` starts real `meltano run` processes.
Needs the Meltano plugins installed (`make plugins`, which `make test` runs first).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from contactsync.ops import space_secrets
from contactsync.ops.cli import main
from contactsync.ops.meltano_runs import RunSetup, precheck_decision
from contactsync.ops.users import Registry
from contactsync.outlook.projection import from_graph
from contactsync.pipeliner.projection import from_pipeliner
from contactsync.sync.ledger import Ledger
from contactsync.sync.link import Partition, Side
from tests.support.plugins import USERS, OutlookActor, PipelinerActor, approving

ROOT = Path(__file__).resolve().parents[2]
SPACE = "5a5a5a5a-0000-4000-8000-000000000001"
EUROPE, AMERICAS = "a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000002"
ALEX, MEGAN, NESTOR = (f"{n}@contoso.example" for n in ("alex", "megan", "nestor"))

pytestmark = pytest.mark.skipif(
    not (ROOT / ".meltano" / "mappers" / "contactsync-mapper").exists(),
    reason="Meltano plugins are not installed: run `make plugins` (make test does)",
)


class Cli:
    """`contactsync ...` for one isolated deployment: own data dir, registry and state DB."""

    def __init__(self, sandbox: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sandbox = sandbox
        self.workdir = workdir
        self.db = workdir / "registry.sqlite"
        info = sandbox.info
        for name in ("CONTACTSYNC_LEDGER_URL", "CONTACTSYNC_USER_EMAIL", "MS_CLIENT_SECRET"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("PIPELINER_API_PASSWORD", info["pipeliner_api_password"])
        monkeypatch.setenv("CONTACTSYNC_DATA_DIR", str(workdir / "data"))
        monkeypatch.setenv("CONTACTSYNC_LEDGER_URL", str(self.db))
        monkeypatch.setenv("MELTANO_DATABASE_URI", f"sqlite:///{workdir / 'meltano.db'}")
        monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(ROOT))
        self.enable_args = [
            "enable",
            "--service-url",
            info["pipeliner_url"],
            "--space-id",
            info["pipeliner_space_id"],
            "--api-username",
            info["pipeliner_api_username"],
            "--authority",
            info["authority"],
            "--client-id",
            info["identity_client_id"],
            "--graph-url",
            info["graph_url"],
            "--ca-bundle",
            info["ca_path"],
        ]

    def __call__(self, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    def approving(self, upn: str) -> contextlib.AbstractContextManager[None]:
        return approving(self.sandbox, upn)

    def status(self, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
        code, out, _ = self("status", "--json", capsys=capsys)
        assert code == 0
        return {u["email"]: u for u in json.loads(out)["users"]}


@pytest.fixture
def cli(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    identity = sandbox.control("identity")
    identity._call("POST", "/identity/settings", json={"device_code_interval": 1})  # fast polls
    try:
        yield Cli(sandbox, tmp_path, monkeypatch)
    finally:
        identity._call("POST", "/identity/settings", json={"device_code_interval": 5})


def _contact(n: int, owner: str, **fields: Any) -> dict[str, Any]:
    """Alex's contacts in his unit (Sales Europe), the others' in Sales Americas: a Sales Rep
    edits every contact of his unit, so only sharing makes Alex an editor of theirs."""
    return {
        "owner_id": USERS[owner],
        "unit_id": EUROPE if owner == "alex" else AMERICAS,
        "first_name": f"Person{n}",
        "last_name": owner.title(),
        "email1": f"p{n}.{owner}@client.example",
        **fields,
    }


def test_activation_before_enable_is_refused_and_every_command_has_help(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli("activate", "--user", ALEX, "--create-folder", capsys=capsys)
    assert code == 1
    assert "not enabled" in err and "contactsync enable" in err
    assert not (cli.workdir / "data" / "tokens").exists()  # nobody was asked to sign in
    code, _, err = cli("run", "--all", capsys=capsys)
    assert code == 1 and "not enabled" in err
    for command in ("enable", "activate", "configure", "deactivate", "status", "run", "login"):
        code, out, _ = cli(command, "--help", capsys=capsys)
        assert code == 0 and "usage: contactsync " + command in out
    # The console script and `python -m` are the same entry point.
    done = subprocess.run(
        [sys.executable, "-m", "contactsync.ops.cli", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert all(c in done.stdout for c in ("enable", "activate", "deactivate", "run"))


def test_enable_checks_the_keys_and_the_identity_provider_before_storing(
    cli: Cli, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINER_API_PASSWORD", "not-the-password")
    code, _, err = cli(*cli.enable_args, capsys=capsys)
    assert code == 1 and "refused the API keys" in err and "api_password" in err, err
    assert "not-the-password" not in err
    code, _, err = cli("status", capsys=capsys)
    assert code == 1 and "not enabled" in err  # nothing was stored
    monkeypatch.setenv("PIPELINER_API_PASSWORD", cli.sandbox.info["pipeliner_api_password"])
    authority = cli.enable_args.index("--authority") + 1
    unreachable = list(cli.enable_args)
    unreachable[authority] = "https://127.0.0.1:9/e0000000-0000-4000-8000-000000000001"
    code, _, err = cli(*unreachable, capsys=capsys)
    assert code == 1 and "identity provider" in err and "does not answer" in err, err
    assert not (cli.workdir / "data" / "secrets.json").exists()
    code, _, err = cli(*unreachable, "--no-check", capsys=capsys)
    assert code == 0, err  # the operator's call: stored unchecked


def test_enable_keeps_secrets_out_of_the_database(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(*cli.enable_args, capsys=capsys)
    assert code == 0, err
    password = cli.sandbox.info["pipeliner_api_password"]
    secrets = cli.workdir / "data" / "secrets.json"
    assert (secrets.stat().st_mode & 0o777) == 0o600
    assert json.loads(secrets.read_text())["api_password"] == password
    assert password.encode() not in cli.db.read_bytes()
    assert password not in out + err
    code, _, err = cli("configure", "--user", ALEX, "--option", "owner", capsys=capsys)
    assert code == 1 and "activate it first" in err


class Space:
    """The sandbox seeded for three users; what each user's folder and links hold."""

    def __init__(self, sandbox: Any) -> None:
        self.pipeliner = PipelinerActor(sandbox.control("pipeliner"))
        self.graph = sandbox.control("graph")
        tag = uuid.uuid4().hex[:6]
        self.folders = {ALEX: f"Sync {tag}", MEGAN: f"Pipeliner {tag}", NESTOR: f"CRM {tag}"}
        self.pipeliner.seed(
            [
                _contact(1, "alex"),
                _contact(2, "alex", position="Buyer"),
                _contact(3, "megan"),
                _contact(4, "megan", phone1="+1 555 0104"),
                _contact(5, "nestor"),
                _contact(6, "lynne"),
            ]
        )
        shared = self.pid("p6.lynne@client.example")
        self.pipeliner.share("lynne", shared, client_id=USERS["alex"], role=2)  # alex: editor
        self.outlook(NESTOR).new_folder(self.folders[NESTOR])  # an existing folder

    def outlook(self, email: str) -> OutlookActor:
        return OutlookActor(self.graph, upn=email)

    def pid(self, email1: str) -> str:
        return next(c["id"] for c in self.pipeliner.contacts() if c.get("email1") == email1)

    def folder_id(self, email: str) -> str:
        name = self.folders[email]
        return next(f["id"] for f in self.outlook(email).folders() if f["displayName"] == name)

    def emails(self, email: str) -> list[str]:
        """The e-mails in the user's folder (a list: duplicates would show)."""
        contacts = self.outlook(email).contacts(self.folder_id(email))
        return sorted(c["emailAddresses"][0]["address"] for c in contacts)

    def converged(self, email: str, db: Path) -> None:
        """Every link joins equal contacts; the folder holds exactly the linked contacts."""
        scope = Partition(email, SPACE, email, self.folder_id(email))
        with Ledger(str(db)) as ledger, ledger.open_partition(scope) as s:
            links = {lk.crm_id: lk.book_id for lk in s.iter_links()}
        pipeliner = {c["id"]: c for c in self.pipeliner.contacts()}
        outlook = {c["id"]: c for c in self.outlook(email).contacts(self.folder_id(email))}
        assert set(outlook) == set(links.values()), email
        for pid, oid in links.items():
            assert from_pipeliner(pipeliner[pid]) == from_graph(outlook[oid]), (email, pid)


def test_three_users_run_in_parallel_deactivate_and_configure(
    cli: Cli, sandbox: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    space = Space(sandbox)
    assert cli(*cli.enable_args, capsys=capsys)[0] == 0
    activations = {
        ALEX: ("--create-folder", space.folders[ALEX], "--sync-type", "two_way_your_contacts"),
        MEGAN: (
            "--create-folder",
            space.folders[MEGAN],
            "--sync-type",
            "one_way_your_contacts",
            "--option",
            "owner",
        ),
        NESTOR: ("--folder", space.folders[NESTOR], "--sync-type", "one_way_all_contacts"),
    }
    for email, args in activations.items():
        with cli.approving(email):
            code, out, err = cli("activate", "--user", email, *args, capsys=capsys)
        assert code == 0, err
        assert "devicelogin" in out and f"Activated the contact sync of {email}" in out
    code, _, err = cli("activate", "--user", ALEX, "--create-folder", capsys=capsys)
    assert code == 1 and "already active" in err
    code, _, err = cli("configure", "--user", NESTOR, "--option", "owner_or_editor", capsys=capsys)
    assert code == 2 and "one_way_all_contacts" in err  # the option does not apply there

    code, out, err = cli("run", "--all", "--parallel", "3", capsys=capsys)
    assert code == 0, out + err
    assert "3 succeeded, 0 failed" in out
    assert space.emails(ALEX) == ["p1.alex@client.example", "p2.alex@client.example"]
    assert space.emails(MEGAN) == ["p3.megan@client.example", "p4.megan@client.example"]
    nestor = space.emails(NESTOR)  # every contact the manager of Sales Europe can see
    seen = {"p1.alex@client.example", "p2.alex@client.example", "p5.nestor@client.example"}
    assert seen <= set(nestor) and len(nestor) == len(set(nestor))
    for email in (ALEX, MEGAN, NESTOR):
        space.converged(email, cli.db)
    status = cli.status(capsys)
    runs = [status[e]["last_run"] for e in (ALEX, MEGAN, NESTOR)]
    assert all(r["status"] == "ok" for r in runs)
    # The three ran at once (each in its own working copy): every start before any end.
    start = max(datetime.fromisoformat(r["started_at"]) for r in runs)
    assert start < min(datetime.fromisoformat(r["finished_at"]) for r in runs)
    assert status[ALEX]["last_run"]["counts"]["pipeliner->outlook"]["created"] == 2

    # Megan deactivates; Alex widens to owner_or_editor (Lynne's contact he edits must come).
    assert cli("deactivate", "--user", MEGAN, capsys=capsys)[0] == 0
    code, out, err = cli("configure", "--user", ALEX, "--option", "owner_or_editor", capsys=capsys)
    assert code == 0 and "'owner' -> 'owner_or_editor'" in out, err
    megan_before = space.emails(MEGAN)
    for n, owner in ((7, "alex"), (8, "megan"), (9, "nestor")):
        space.pipeliner.create(owner, **_contact(n, owner))
    code, out, err = cli("run", "--all", "--parallel", "3", capsys=capsys)
    assert code == 0, out + err
    assert "2 succeeded" in out and MEGAN not in out  # the others run; Megan does not
    owned_or_edited = ((1, "alex"), (2, "alex"), (6, "lynne"), (7, "alex"))
    alex = space.emails(ALEX)
    assert alex == [f"p{n}.{o}@client.example" for n, o in owned_or_edited], alex
    assert "p9.nestor@client.example" in space.emails(NESTOR)
    assert space.emails(MEGAN) == megan_before  # her folder as she left it
    assert cli.status(capsys)[MEGAN]["active"] is False

    # Megan re-activates with her previous settings (silently, from her token cache): she
    # resumes in the same scope and state, without duplicates.
    code, out, err = cli("activate", "--user", MEGAN, capsys=capsys)
    assert code == 0 and "Re-activated" in out and "token cache" in out, err
    code, out, err = cli("run", "--user", MEGAN, capsys=capsys)
    assert code == 0, out + err
    assert space.emails(MEGAN) == [f"p{n}.megan@client.example" for n in (3, 4, 8)]
    for email in (ALEX, MEGAN, NESTOR):
        space.converged(email, cli.db)
    code, out, _ = cli("status", capsys=capsys)
    assert code == 0 and "owner_or_editor" in out and space.folders[MEGAN] in out


def test_an_ambiguous_match_is_linked_by_hand(
    cli: Cli, sandbox: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two Outlook contacts share the e-mail of one Pipeliner contact: the run links neither
    and says so; `contactsync link` links the one the user picks; the next run brings it in
    line, and no third copy is made."""
    space = Space(sandbox)
    assert cli(*cli.enable_args, capsys=capsys)[0] == 0
    name = space.folders[ALEX]
    outlook = space.outlook(ALEX)
    outlook.new_folder(name)
    twins = [
        outlook.create(
            name,
            givenName=given,
            surname="Twin",
            emailAddresses=[{"address": "p1.alex@client.example", "name": given}],
        )
        for given in ("Pat", "Patricia")
    ]
    with cli.approving(ALEX):
        args = ("--folder", name, "--sync-type", "one_way_your_contacts")
        assert cli("activate", "--user", ALEX, *args, capsys=capsys)[0] == 0
    code, out, err = cli("run", "--user", ALEX, capsys=capsys)
    assert code == 0, out + err
    report = json.loads(
        (
            cli.workdir / "data" / "reports" / "alex_contoso.example" / "pipeliner-to-outlook.json"
        ).read_text()
    )
    pid = space.pid("p1.alex@client.example")
    assert any(i["record_id"] == pid and "by hand" in i["reason"] for i in report["issues"])
    assert len(space.emails(ALEX)) == 3  # the twins and Alex's other contact

    code, _, err = cli(
        "link",
        "--user",
        ALEX,
        "--pipeliner-id",
        space.pid("p3.megan@client.example"),
        "--outlook-id",
        twins[0]["id"],
        capsys=capsys,
    )
    assert code == 1 and "not in alex@contoso.example's sync scope" in err  # Megan's contact
    code, out, err = cli(
        "link", "--user", ALEX, "--pipeliner-id", pid, "--outlook-id", twins[0]["id"], capsys=capsys
    )
    assert code == 0 and "Linked" in out and "first_name" in out, err
    code, _, err = cli(
        "link", "--user", ALEX, "--pipeliner-id", pid, "--outlook-id", twins[1]["id"], capsys=capsys
    )
    assert code == 1 and "already linked" in err

    code, out, err = cli("run", "--user", ALEX, capsys=capsys)
    assert code == 0, out + err
    contacts = {c["id"]: c for c in outlook.contacts(space.folder_id(ALEX))}
    assert len(contacts) == 3  # no copy was made of the linked contact
    assert contacts[twins[0]["id"]]["givenName"] == "Person1"  # one-way: Pipeliner's values
    assert contacts[twins[1]["id"]]["givenName"] == "Patricia"  # the other twin untouched


def test_a_conflict_names_contact_and_field_and_its_lost_value_can_be_restored(
    cli: Cli, sandbox: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both sides change one field: the report names the contact and the field (never a value),
    the losing value waits in the ledger, `contactsync conflicts` shows it, `--restore` puts it
    back, and the next run carries it to the other side (issue #18)."""
    space = Space(sandbox)
    assert cli(*cli.enable_args, capsys=capsys)[0] == 0
    with cli.approving(ALEX):
        args = ("--create-folder", space.folders[ALEX], "--sync-type", "two_way_your_contacts")
        assert cli("activate", "--user", ALEX, *args, capsys=capsys)[0] == 0
    outlook = space.outlook(ALEX)
    outlook.create(space.folder_id(ALEX), companyName="Fabrikam Ltd")  # needs a name: parked
    assert cli("run", "--user", ALEX, capsys=capsys)[0] == 0
    pid = space.pid("p2.alex@client.example")
    copy = next(
        c
        for c in outlook.contacts(space.folder_id(ALEX))
        if c.get("emailAddresses") and c["emailAddresses"][0]["address"] == "p2.alex@client.example"
    )
    space.pipeliner.edit("alex", pid, position="Chief buyer")  # pipeliner_wins keeps this
    outlook.edit(copy["id"], jobTitle="Head of purchasing")
    code, out, err = cli("run", "--user", ALEX, capsys=capsys)
    assert code == 0, out + err
    reports = cli.workdir / "data" / "reports" / "alex_contoso.example"
    issues = [
        i
        for name in ("pipeliner-to-outlook.json", "outlook-to-pipeliner.json")
        for i in json.loads((reports / name).read_text())["issues"]
        if i["outcome"] == "conflict"
    ]
    assert [(i["record_id"], "job_title" in i["reason"]) for i in issues] == [(pid, True)]
    logs = "".join(p.read_text() for p in (cli.workdir / "data" / "logs").rglob("*.log"))
    assert "Head of purchasing" not in logs and "Head of purchasing" not in str(issues)

    code, out, _ = cli("conflicts", "--user", ALEX, "--json", capsys=capsys)
    [lost] = json.loads(out)
    assert (lost["pipeliner_id"], lost["field"]) == (pid, "job_title")
    assert (lost["kept_value"], lost["lost_value"]) == ("Chief buyer", "Head of purchasing")
    code, out, err = cli("conflicts", "--user", ALEX, "--restore", lost["id"], capsys=capsys)
    assert code == 0 and "Restored job_title" in out, err
    assert space.pipeliner.raw(pid)["position"] == "Head of purchasing"
    assert cli("run", "--user", ALEX, capsys=capsys)[0] == 0
    copy = next(c for c in outlook.contacts(space.folder_id(ALEX)) if c["id"] == copy["id"])
    assert copy["jobTitle"] == "Head of purchasing"
    code, out, _ = cli("conflicts", "--user", ALEX, capsys=capsys)
    assert "No conflicts" in out
    code, _, err = cli("conflicts", "--user", ALEX, "--restore", lost["id"], capsys=capsys)
    assert code == 1 and "restored already" in err
    # The company-only Outlook contact was refused in each of the three runs, then parked:
    # `status` shows what needs attention, and what to do.
    code, out, _ = cli("status", "--user", ALEX, capsys=capsys)
    assert code == 0 and "1 record(s) of alex@contoso.example need attention" in out
    assert "add a name in Outlook" in out
    assert "1 needs attention" in out  # the last run's counts


def test_status_shows_the_folder_by_its_current_name_after_a_rename(
    cli: Cli, sandbox: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #14 item 12, #12 item 6: the sync follows its folder by id; renamed in Outlook, the
    run goes on in it and `contactsync status` names it as it is called now."""
    space = Space(sandbox)
    assert cli(*cli.enable_args, capsys=capsys)[0] == 0
    name = space.folders[ALEX]
    with cli.approving(ALEX):
        args = ("--create-folder", name, "--sync-type", "two_way_your_contacts")
        assert cli("activate", "--user", ALEX, *args, capsys=capsys)[0] == 0
    code, out, err = cli("run", "--user", ALEX, capsys=capsys)
    assert code == 0, out + err
    renamed = f"Clients {uuid.uuid4().hex[:6]}"
    space.outlook(ALEX).rename_folder(name, renamed)  # through Graph, as Outlook does
    space.folders[ALEX] = renamed
    space.pipeliner.create("alex", **_contact(7, "alex"))
    code, out, err = cli("run", "--user", ALEX, capsys=capsys)
    assert code == 0, out + err
    assert "p7.alex@client.example" in space.emails(ALEX)  # written into the renamed folder
    assert name not in [f["displayName"] for f in space.outlook(ALEX).folders()]
    assert cli.status(capsys)[ALEX]["folder_current_name"] == renamed
    code, out, _ = cli("status", capsys=capsys)
    assert code == 0 and f"{renamed} (renamed from {name})" in out


def test_a_quiet_run_is_skipped_and_any_change_runs_it(
    cli: Cli, sandbox: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #15: after a real run, the next `contactsync run` asks Pipeliner and Outlook what
    the taps would and skips `meltano run` (recorded as such); an edit on either side, or a
    parked record, makes the job run again, and the run syncs the edits."""
    space = Space(sandbox)
    assert cli(*cli.enable_args, capsys=capsys)[0] == 0
    with cli.approving(ALEX):
        args = ("--create-folder", space.folders[ALEX], "--sync-type", "two_way_your_contacts")
        assert cli("activate", "--user", ALEX, *args, capsys=capsys)[0] == 0
    code, out, err = cli("run", "--user", ALEX, capsys=capsys)
    assert code == 0 and "(ran: no earlier run on record)" in out, out + err

    code, out, err = cli("run", "--user", ALEX, capsys=capsys)
    assert code == 0 and f"{ALEX}: skipped: nothing changed" in out, out + err
    assert "1 skipped: nothing changed" in out
    assert cli.status(capsys)[ALEX]["last_run"]["status"] == "skipped"
    code, out, _ = cli("status", capsys=capsys)
    assert "skipped: nothing changed" in out

    with Registry(str(cli.db)) as registry:
        space_config, alex = registry.require_space(), registry.require(ALEX)
    secrets = space_secrets.resolve(space_config.secrets_file, os.environ, app_only=False)
    setup = RunSetup(
        project_dir=ROOT,
        data_dir=cli.workdir / "data",
        ledger_url=str(cli.db),
        state_db_uri=f"sqlite:///{cli.workdir / 'meltano.db'}",
    )

    def decision() -> str:
        found = precheck_decision(setup, space_config, secrets, alex)
        return found.reason if found.run else "skip"

    outlook = space.outlook(ALEX)
    copy = next(
        c
        for c in outlook.contacts(space.folder_id(ALEX))
        if c["emailAddresses"][0]["address"] == "p1.alex@client.example"
    )
    outlook.edit(copy["id"], jobTitle="Head of purchasing")  # through Graph, as Outlook does
    assert decision() == "1 contact(s) changed in Outlook"
    pid = space.pid("p2.alex@client.example")
    space.pipeliner.edit("alex", pid, position="Chief buyer")  # through the REST API
    assert decision() == "1 contact(s) changed in Pipeliner"

    code, out, err = cli("run", "--user", ALEX, capsys=capsys)
    assert code == 0 and "(ran: 1 contact(s) changed in Pipeliner)" in out, out + err
    assert space.pipeliner.raw(space.pid("p1.alex@client.example"))["position"] == (
        "Head of purchasing"
    )
    edited = next(c for c in outlook.contacts(space.folder_id(ALEX)) if c["id"] != copy["id"])
    assert edited["jobTitle"] == "Chief buyer"
    space.converged(ALEX, cli.db)

    # A record parked since the last run is a reason to run.
    scope = Partition(ALEX, SPACE, ALEX, space.folder_id(ALEX))
    with Ledger(str(cli.db)) as ledger, ledger.open_partition(scope) as s:
        s.record_failure(Side.BOOK, "AAMk-parked", {"id": "x"}, "needs a name", park_after=1)
    assert decision() == "parked records or moved contacts changed since the last run"
