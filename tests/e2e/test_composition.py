"""Composing with other plugins (issue #12 items 1 and 4), through real `meltano run`s of the
published plugins meltano.yml declares (pinned):

* our taps into MeltanoLabs' target-postgres: a full listing (ACTIVATE_VERSION, versioned
  records) keeps every live row, soft or hard delete alike, against the machine's PostgreSQL
  (CONTACTSYNC_TEST_PG_URL, default trust auth on 127.0.0.1:5432, database `test`; a schema of
  its own per test, dropped afterwards; skipped, saying why, where no server answers);
* a CSV imported into Pipeliner with tap-spreadsheets (rows keyed by their own `ext_id`): the
  import has its own link scope, so a full two-way run afterwards neither deletes nor copies
  the imported contacts twice.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contactsync.sync.ledger import Ledger
from tests.e2e.test_meltano_sync import ROOT, Project, _contact, agree
from tests.support.plugins import USERS

PG_URL = os.environ.get("CONTACTSYNC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
INSTALLED = ROOT / ".meltano"

pytestmark = pytest.mark.skipif(
    not (INSTALLED / "mappers" / "contactsync-mapper").exists(),
    reason="Meltano plugins are not installed: run `make plugins` (make test does)",
)


def _installed(kind: str, name: str) -> None:
    if not (INSTALLED / kind / name).exists():
        pytest.skip(f"{name} is not installed: run `make plugins` (make test does)")


# --- target-postgres --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres() -> str:
    """The machine's PostgreSQL; skipped, saying why, when none answers."""
    import psycopg

    try:
        with psycopg.connect(PG_URL, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL answers at {PG_URL} (set CONTACTSYNC_TEST_PG_URL): {exc}")
    return PG_URL


@pytest.fixture
def pg_schema(postgres: str, project: Project) -> Iterator[str]:
    """target-postgres pointed at a schema of this test's own, dropped afterwards."""
    import psycopg
    from psycopg import sql

    _installed("loaders", "target-postgres")
    schema = f"cs_compose_{uuid.uuid4().hex[:10]}"
    url = postgres.replace("postgresql://", "postgresql+psycopg://", 1)
    project.env["TARGET_POSTGRES_SQLALCHEMY_URL"] = url
    project.env["TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA"] = schema
    yield schema
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _rows(schema: str) -> list[dict[str, Any]]:
    import psycopg
    from psycopg import sql
    from psycopg.rows import dict_row

    query = sql.SQL("SELECT id, _sdc_deleted_at, _sdc_table_version FROM {}.contacts")
    with psycopg.connect(PG_URL, autocommit=True, row_factory=dict_row) as conn:
        return list(conn.execute(query.format(sql.Identifier(schema))))


def _live(rows: list[dict[str, Any]]) -> set[str]:
    """The rows target-postgres holds as live (not soft-deleted)."""
    return {r["id"] for r in rows if r["_sdc_deleted_at"] is None}


@pytest.mark.postgres
def test_the_pipeliner_tap_into_target_postgres_keeps_every_row(
    project: Project, pg_schema: str
) -> None:
    project.pipeliner.seed([_contact(n, "alex") for n in range(1, 4)] + [_contact(4, "nestor")])
    ids = {c["id"] for c in project.pipeliner.contacts()}
    project.run("tap-pipeliner-contacts", "target-postgres")  # first run: a full listing
    rows = _rows(pg_schema)
    assert len(rows) == len(ids) and _live(rows) == ids  # no row soft-deleted
    assert all(r["_sdc_table_version"] for r in rows)  # each record carried its version

    project.run("tap-pipeliner-contacts", "target-postgres")  # incremental: nothing new
    assert _live(_rows(pg_schema)) == ids

    project.env["TARGET_POSTGRES_HARD_DELETE"] = "true"  # a full listing again, hard deletes
    project.run("--full-refresh", "tap-pipeliner-contacts", "target-postgres")
    rows = _rows(pg_schema)
    assert len(rows) == len(ids) and _live(rows) == ids


@pytest.mark.postgres
def test_the_outlook_tap_into_target_postgres_keeps_every_row(
    project: Project, pg_schema: str
) -> None:
    for n in range(3):
        project.outlook.create(project.folder, givenName=f"Row{n}", surname="Outlook")
    ids = set(project.outlook_contacts())
    project.run("tap-outlook-contacts", "target-postgres")  # first run: the whole folder
    rows = _rows(pg_schema)
    assert len(rows) == 3 and _live(rows) == ids
    assert all(r["_sdc_table_version"] for r in rows)

    project.env["TARGET_POSTGRES_HARD_DELETE"] = "true"
    project.run("--full-refresh", "tap-outlook-contacts", "target-postgres")
    rows = _rows(pg_schema)
    assert len(rows) == 3 and _live(rows) == ids


# --- an import from a CSV file ---------------------------------------------------------------

ROWS = [
    ("x1", "Ada", "Lovelace", "ada@import.example"),
    ("x2", "Alan", "Turing", "alan@import.example"),
    ("x3", "Grace", "Hopper", "grace@import.example"),
]


def _write_csv(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    lines = ["ext_id,first_name,last_name,email1", *(",".join(r) for r in rows)]
    path.write_text("\n".join(lines) + "\n")


def _imported(project: Project) -> dict[str, dict[str, Any]]:
    return {
        c["email1"]: c
        for c in project.pipeliner.contacts()
        if (c.get("email1") or "").endswith("@import.example")
    }


def test_an_imported_csv_is_never_deleted_or_copied_twice_by_the_sync(project: Project) -> None:
    _installed("extractors", "tap-spreadsheets")
    project.pipeliner.seed([_contact(1, "alex"), _contact(2, "alex")])
    csv = project.workdir / "people.csv"
    _write_csv(csv, ROWS)
    files = [{"path": str(csv), "format": "csv", "table_name": "people"}]
    files[0]["primary_keys"] = ["ext_id"]
    project.env["TAP_SPREADSHEETS_FILES"] = json.dumps(files)

    project.run("tap-spreadsheets", "target-pipeliner-contacts")
    imported = _imported(project)
    assert len(imported) == 3
    assert {c["owner_id"] for c in imported.values()} == {USERS["alex"]}
    ledger = Ledger(str(project.workdir / "ledger.sqlite"))
    [scope] = ledger.partitions()
    assert (scope.mailbox, scope.folder) == ("(import)", "tap-spreadsheets")

    # A full two-way run (everything listed on both sides): the imported contacts are the
    # user's, so they get Outlook copies, but none is deleted and none is copied twice.
    project.run("--full-refresh", "two-way-your-contacts")
    project.run("--full-refresh", "two-way-your-contacts")
    assert set(_imported(project)) == set(imported)
    assert not project.pipeliner_contacts().keys() - {c["id"] for c in project.pipeliner.contacts()}
    emails = [
        a["address"]
        for c in project.outlook_contacts().values()
        for a in c.get("emailAddresses") or ()
    ]
    assert sorted(e for e in emails if e.endswith("@import.example")) == sorted(imported)
    assert project.report("target-pipeliner-contacts")["counts"]["deleted"] == 0
    agree(project)

    # The file changes: the import updates its contacts in place, creates no second copy.
    _write_csv(csv, [(*ROWS[0][:2], "Byron", ROWS[0][3]), *ROWS[1:]])
    project.run("tap-spreadsheets", "target-pipeliner-contacts")
    after = _imported(project)
    assert set(after) == set(imported)
    assert after["ada@import.example"]["id"] == imported["ada@import.example"]["id"]
    assert after["ada@import.example"]["last_name"] == "Byron"
