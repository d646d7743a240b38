"""Twenty users synced by the Dagster deployment of `orchestrator/`, against the sandbox, with
the registry, the ledger, Meltano's state and Dagster's own storage in PostgreSQL.

What runs is what docs/orchestrator.md deploys: `dagster-daemon` from the orchestrator's own
virtualenv with the shipped `orchestrator/dagster.yaml` and `workspace.yaml`. Its sensor turns
the registry's active users into partitions and requests a first run for each; the queued run
coordinator runs them two at a time (never two of one user); each run calls
`contactsync run --user EMAIL`. The test then checks every folder: it holds exactly its user's
scope (owned, or owned + editor; two-way also brings the folder's own contact into Pipeliner),
converged with Pipeliner on the field table, and nothing of anyone else.

Needs `make plugins orchestrator` (make test runs both) and PostgreSQL
($CONTACTSYNC_TEST_PG_URL, default postgresql://postgres@127.0.0.1:5432/test); skipped, saying
why, without either. Each run gets fresh schemas, dropped at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from contactsync.ops.cli import main
from contactsync.outlook.projection import from_graph
from contactsync.pipeliner.projection import from_pipeliner
from contactsync.sync.ledger import Ledger
from contactsync.sync.link import Partition
from contactsync_sandbox.seed import default_seed
from tests.support.plugins import PIPELINER, OutlookActor, PipelinerActor

ROOT = Path(__file__).resolve().parents[2]
ORCHESTRATOR = ROOT / "orchestrator"
ORCH_BIN = ORCHESTRATOR / ".venv" / "bin"
PG_URL_ENV = "CONTACTSYNC_TEST_PG_URL"
PG_URL_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
EUROPE = "a0000000-0000-4000-8000-000000000001"
#: A role that sees only owned and explicitly shared contacts (direction Owned), so that each
#: user's scope is exactly: owned, plus (owner_or_editor) those shared with them as editor.
OWN_CONTACTS = {
    "id": "b0000000-0000-4000-8000-000000000010",
    "name": "Own contacts",
    "access_contacts": True,
    "access_entity_contact": 2,
    "access_entity_contact_direction": 1,
    "access_entity_contact_delete": True,
}
N_USERS = 20
RUN_BUDGET = 900.0  # seconds for the 20 runs (measured: ~8 min at load average 15 on 2 cores)

pytestmark = pytest.mark.skipif(
    not (ORCH_BIN / "dagster-daemon").exists(),
    reason="the orchestrator virtualenv is missing: run `make orchestrator` (make test does)",
)
needs_plugins = pytest.mark.skipif(
    not (ROOT / ".meltano" / "mappers" / "contactsync-mapper").exists(),
    reason="Meltano plugins are not installed: run `make plugins` (make test does)",
)


def test_dagster_definitions_against_a_stand_in_cli() -> None:
    """Sensor, schedule and asset logic, in the orchestrator's Python (the project venv has no
    Dagster): partitions follow the registry, runs follow settings changes, busy users wait."""
    done = subprocess.run(
        [str(ORCH_BIN / "python"), str(ORCHESTRATOR / "checks" / "check_definitions.py")],
        env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr


# ------------------------------------------------------------------------------ PostgreSQL


def _libpq(url: str) -> str:
    """The URL as libpq takes it (no SQLAlchemy driver name)."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


@dataclass(frozen=True)
class Databases:
    """One schema each: registry + ledger, Meltano's system database, Dagster's storage."""

    registry: str  # postgresql:// (the ledger turns it into psycopg 3)
    meltano: str  # postgresql+psycopg://
    dagster: str  # postgresql+psycopg2:// (dagster-postgres; SQLAlchemy 2.1 means psycopg 3)
    dagster_schema: str


@pytest.fixture
def databases() -> Iterator[Databases]:
    psycopg = pytest.importorskip("psycopg", reason=f"psycopg is not installed ({PG_URL_ENV})")
    from psycopg import sql

    server = os.environ.get(PG_URL_ENV, PG_URL_DEFAULT)
    shown = make_url(server).render_as_string(hide_password=True)
    try:
        with psycopg.connect(_libpq(server), connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL reachable at {shown} (set {PG_URL_ENV} to one): {exc}")
    tag = uuid.uuid4().hex[:10]
    schemas = {part: f"cs_orch_{tag}_{part}" for part in ("registry", "meltano", "dagster")}

    def url(schema: str, driver: str) -> str:
        return (
            make_url(_libpq(server))
            .set(drivername=driver)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )

    with psycopg.connect(_libpq(server), autocommit=True) as conn:
        for schema in schemas.values():
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield Databases(
            registry=url(schemas["registry"], "postgresql"),
            meltano=url(schemas["meltano"], "postgresql+psycopg"),
            dagster=url(schemas["dagster"], "postgresql+psycopg2"),
            dagster_schema=schemas["dagster"],
        )
    finally:
        with psycopg.connect(_libpq(server), autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            for schema in schemas.values():
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


# ------------------------------------------------------------------------------ the space


@dataclass(frozen=True)
class User:
    n: int
    sync_type: str
    option: str

    @property
    def email(self) -> str:
        return f"user{self.n:02d}@contoso.example"

    @property
    def client_id(self) -> str:
        return f"c0000000-0000-4000-8000-{0x100 + self.n:012x}"

    @property
    def two_way(self) -> bool:
        return self.sync_type == "two_way_your_contacts"

    @property
    def folder(self) -> str:  # two-way users sync an existing folder, the others a new one
        return "Clients" if self.two_way else "Pipeliner"


def _users() -> list[User]:
    """16 one-way and 4 two-way users, half of each with owner_or_editor; user 21 deactivates."""
    users = []
    for n in range(1, N_USERS + 2):
        kind = "two_way_your_contacts" if n % 5 == 0 else "one_way_your_contacts"
        users.append(User(n, kind, "owner_or_editor" if n % 2 else "owner"))
    return users


def _seed(sandbox: Any, users: list[User]) -> None:
    """Each user owns 3 contacts, shares one with the next user as editor and one with the
    user after as watcher; two-way users' folders hold one contact of their own, and every
    mailbox's default folder a private contact that no sync may touch."""
    people = [
        {
            "id": u.client_id,
            "email": u.email,
            "first_name": "User",
            "last_name": f"{u.n:02d}",
            "default_unit_id": EUROPE,
            "unit_member_ids": [EUROPE],
            "unit_manager_ids": [],
            "master_right_id": OWN_CONTACTS["id"],
        }
        for u in users
    ]
    contacts = []
    for i, u in enumerate(users):
        editor, watcher = users[(i + 1) % len(users)], users[(i + 2) % len(users)]
        for k in range(3):
            sharing = []
            if k == 0:
                sharing = [{"client_id": editor.client_id, "role": 2}]
            elif k == 1:
                sharing = [{"client_id": watcher.client_id, "role": 1}]
            contacts.append(
                {
                    "owner_id": u.client_id,
                    "unit_id": EUROPE,
                    "first_name": f"Client{k}",
                    "last_name": f"Of{u.n:02d}",
                    "email1": f"c{k}.u{u.n:02d}@client.example",
                    "position": "Buyer" if k == 2 else None,
                    "phone1": f"+1 555 {u.n:02d}{k:02d}",
                    "sharing_clients": sharing,
                }
            )
    PipelinerActor(sandbox.control("pipeliner")).seed(
        contacts, users=PIPELINER["users"] + people, roles=[*PIPELINER["roles"], OWN_CONTACTS]
    )

    microsoft = {k: v for k, v in default_seed()["microsoft"].items() if k != "mailboxes"}
    microsoft["mailboxes"] = [
        {
            "id": f"d0000000-0000-4000-8000-{0x100 + u.n:012x}",
            "user_principal_name": u.email,
            "display_name": f"User {u.n:02d}",
            "contacts_folder": {
                "contacts": [_outlook_contact(f"private.u{u.n:02d}@home.example", "Private")],
                "childFolders": (
                    [
                        {
                            "displayName": "Clients",
                            "contacts": [_outlook_contact(f"own.u{u.n:02d}@met.example", "Met")],
                        }
                    ]
                    if u.two_way
                    else []
                ),
            },
        }
        for u in users
    ]
    sandbox.control("graph").seed(microsoft)


def _outlook_contact(address: str, surname: str) -> dict[str, Any]:
    given = address.split("@")[0].replace(".", " ").title().replace(" ", "")
    return {
        "givenName": given,
        "surname": surname,
        "displayName": f"{given} {surname}",
        "emailAddresses": [{"name": given, "address": address}],
    }


# ------------------------------------------------------------------------------ the deployment


class Deployment:
    """The environment every process of the deployment shares, and the Dagster daemon."""

    def __init__(self, sandbox: Any, dbs: Databases, workdir: Path) -> None:
        info = sandbox.info
        self.dbs = dbs
        self.home = workdir / "dagster-home"
        self.home.mkdir()
        shutil.copy(ORCHESTRATOR / "dagster.yaml", self.home / "dagster.yaml")
        shutil.copy(ORCHESTRATOR / "workspace.yaml", self.home / "workspace.yaml")
        self.env = {
            "MELTANO_PROJECT_ROOT": str(ROOT),
            "CONTACTSYNC_BIN": str(ROOT / ".venv" / "bin" / "contactsync"),
            "CONTACTSYNC_DATA_DIR": str(workdir / "data"),
            "CONTACTSYNC_LEDGER_URL": dbs.registry,
            "MELTANO_DATABASE_URI": dbs.meltano,
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PIPELINER_API_PASSWORD": info["pipeliner_api_password"],
            "MS_CLIENT_SECRET": info["identity_client_secret"],
            "DAGSTER_HOME": str(self.home),
            "DAGSTER_PG_URL": dbs.dagster,
            "CONTACTSYNC_MAX_CONCURRENT_RUNS": "2",
            "CONTACTSYNC_SCHEDULE": "off",  # the cron must not add runs in the middle
            "CONTACTSYNC_SENSOR_INTERVAL": "30",  # the first tick comes at once
        }
        self.log = workdir / "dagster-daemon.log"
        self.daemon: subprocess.Popen[bytes] | None = None

    def child_env(self) -> dict[str, str]:
        drop = ("VIRTUAL_ENV", "PYTHONPATH", "CONTACTSYNC_USER_EMAIL")
        base = {k: v for k, v in os.environ.items() if k not in drop}
        return {**base, **self.env}

    def migrate_meltano_state_db(self) -> None:
        """Once, before runs race to create Meltano's tables (docs/orchestrator.md, step 3)."""
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "meltano"), "upgrade", "database"],
            cwd=ROOT,
            env=self.child_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with self.log.open("wb") as log:
            self.daemon = subprocess.Popen(
                [str(ORCH_BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                cwd=self.home,
                env=self.child_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                yield
            finally:
                self.stop()

    def stop(self) -> None:
        """The daemon, then whatever it started (code server, run workers, their `meltano`s):
        all in the daemon's own process group, which outlives it."""
        assert self.daemon is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.daemon.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.daemon.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.daemon.pid, signal.SIGKILL)
        self.daemon.wait(10)
        if os.environ.get("CONTACTSYNC_ORCH_KEEP_LOG"):  # for measuring: where did time go
            shutil.copy(self.log, os.environ["CONTACTSYNC_ORCH_KEEP_LOG"])

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(_libpq(self.dbs.dagster), autocommit=True) as conn:
            try:
                return list(conn.execute(statement).fetchall())
            except psycopg.errors.UndefinedTable:
                return []  # the daemon has not created its tables yet

    def runs(self) -> dict[str, list[str]]:
        """Statuses of the user job's runs, by partition (user)."""
        rows = self.query(
            "SELECT partition, status FROM runs WHERE pipeline_name = 'contactsync_user_job' "
            "ORDER BY create_timestamp"
        )
        found: dict[str, list[str]] = {}
        for partition, status in rows:
            found.setdefault(partition, []).append(status)
        return found

    def partitions(self) -> set[str]:
        rows = self.query(
            "SELECT partition FROM dynamic_partitions "
            "WHERE partitions_def_name = 'contactsync_users'"
        )
        return {r[0] for r in rows}

    def tail(self, path: Path, lines: int = 60) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"({path} missing)"

    def wait_for_runs(self, emails: set[str], budget: float) -> dict[str, list[str]]:
        deadline = time.monotonic() + budget
        runs: dict[str, list[str]] = {}
        while time.monotonic() < deadline:
            assert self.daemon is not None and self.daemon.poll() is None, self.tail(self.log)
            runs = self.runs()
            failed = [e for e, s in runs.items() if "FAILURE" in s or "CANCELED" in s]
            if failed:
                logs = Path(self.env["CONTACTSYNC_DATA_DIR"]) / "logs"
                detail = "\n".join(
                    f"--- {e}\n{self.tail(logs / (e.replace('@', '_') + '.log'))}" for e in failed
                )
                daemon = self.tail(self.log)
                pytest.fail(f"runs failed for {failed}:\n{detail}\n--- daemon\n{daemon}")
            if set(runs) >= emails and all("SUCCESS" in runs[e] for e in emails):
                return runs
            time.sleep(1)
        pytest.fail(f"not all runs succeeded in {budget:.0f} s: {runs}\n{self.tail(self.log)}")


# ------------------------------------------------------------------------------ checks


def _scope(pipeliner: list[dict[str, Any]], user: User) -> dict[str, dict[str, Any]]:
    """The Pipeliner contacts in the user's scope, by id: owned, or owned + editor."""
    mine = {}
    for contact in pipeliner:
        owned = contact.get("owner_id") == user.client_id
        editor = any(
            s.get("client_id") == user.client_id and s.get("role") == 2
            for s in contact.get("sharing_clients") or ()
        )
        if owned or (editor and user.option == "owner_or_editor"):
            mine[contact["id"]] = contact
    return mine


def _check_folder(
    sandbox: Any, dbs: Databases, user: User, pipeliner: list[dict[str, Any]]
) -> None:
    """Exactly the user's scope, each contact linked and equal on every table key."""
    outlook = OutlookActor(sandbox.control("graph"), upn=user.email)
    folder = next(f for f in outlook.folders() if f["displayName"] == user.folder)
    contacts = {c["id"]: c for c in outlook.contacts(folder["id"])}
    scope = _scope(pipeliner, user)
    key = Partition(user.email, PIPELINER["space_id"], user.email, folder["id"])
    with Ledger(dbs.registry) as ledger, ledger.open_partition(key) as s:
        links = {lk.crm_id: lk.book_id for lk in s.iter_links()}
    assert set(links) == set(scope), user.email  # every scope contact linked, nothing else
    assert set(links.values()) == set(contacts), user.email  # the folder holds only linked ones
    for pid, oid in links.items():
        assert from_pipeliner(scope[pid]) == from_graph(contacts[oid]), (user.email, pid)
    private = next(f for f in outlook.folders() if f["displayName"] == "Contacts")
    assert len(outlook.contacts(private["id"])) == 1, user.email  # the default folder untouched


# ------------------------------------------------------------------------------ the test


@pytest.mark.postgres
@pytest.mark.slow
@needs_plugins
def test_twenty_users_through_dagster_converge_within_their_scopes(
    sandbox: Any,
    databases: Databases,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    users = _users()
    active, leaving = users[:N_USERS], users[N_USERS]
    sandbox.reset()
    try:
        _seed(sandbox, users)
        deployment = Deployment(sandbox, databases, tmp_path)
        for name, value in deployment.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("CONTACTSYNC_USER_EMAIL", raising=False)

        # The administrator enables app-only access; every user activates (no sign-in).
        info = sandbox.info
        code = main(
            [
                "enable",
                *("--service-url", info["pipeliner_url"]),
                *("--space-id", info["pipeliner_space_id"]),
                *("--api-username", info["pipeliner_api_username"]),
                *("--authority", info["authority"]),
                *("--client-id", info["identity_client_id"]),
                *("--graph-url", info["graph_url"]),
                *("--ca-bundle", info["ca_path"]),
                "--app-only",
                "--no-secrets-file",  # the deployment's environment holds the secrets
            ]
        )
        assert code == 0, capsys.readouterr().err
        for user in users:
            folder = ("--folder", "Clients") if user.two_way else ("--create-folder", "Pipeliner")
            code = main(
                [
                    "activate",
                    *("--user", user.email),
                    *folder,
                    *("--sync-type", user.sync_type),
                    *("--option", user.option),
                ]
            )
            assert code == 0, capsys.readouterr().err
        assert main(["deactivate", "--user", leaving.email]) == 0
        deployment.migrate_meltano_state_db()
        setup_seconds = time.monotonic() - started

        with deployment.running():
            runs = deployment.wait_for_runs({u.email for u in active}, RUN_BUDGET)
            partitions = deployment.partitions()
        run_seconds = time.monotonic() - started - setup_seconds

        emails = {u.email for u in active}
        assert partitions == emails  # the deactivated user got no partition
        assert set(runs) == emails and all(s == ["SUCCESS"] for s in runs.values()), runs

        pipeliner = PipelinerActor(sandbox.control("pipeliner")).contacts()
        for user in active:
            _check_folder(sandbox, databases, user, pipeliner)
        by_email = {c.get("email1"): c for c in pipeliner}
        for user in active:  # two-way brought the folder's own contact into Pipeliner...
            own = by_email.get(f"own.u{user.n:02d}@met.example")
            assert (own is not None) == user.two_way, user.email
            if own is not None:
                assert own["owner_id"] == user.client_id
        assert not [e for e in by_email if e and e.startswith("private.")]  # ...nothing else
        leaving_box = OutlookActor(sandbox.control("graph"), upn=leaving.email)
        folders = {f["displayName"]: f["id"] for f in leaving_box.folders()}
        assert set(folders) == {"Contacts", "Pipeliner"}  # activated, then deactivated:
        assert leaving_box.contacts(folders["Pipeliner"]) == []  # never ran

        # The registry recorded every run for `contactsync status`.
        capsys.readouterr()
        assert main(["status", "--json"]) == 0
        status = {u["email"]: u for u in json.loads(capsys.readouterr().out)["users"]}
        assert all(status[e]["last_run"]["status"] == "ok" for e in emails)
        with capsys.disabled():
            print(
                f"\n[orchestrator] {N_USERS} users: setup {setup_seconds:.1f} s, "
                f"dagster runs {run_seconds:.1f} s, total {time.monotonic() - started:.1f} s"
            )
    finally:
        sandbox.reset()
