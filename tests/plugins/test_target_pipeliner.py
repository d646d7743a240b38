"""target-pipeliner-contacts as a real process against the Pipeliner emulator: the SDK's standard
tests, round trips, preservation of unmapped fields, per-item failures, faults, a kill mid-run,
and bad input."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.runners import TargetTestRunner
from target_pipeliner_contacts.target import TargetPipelinerContacts

from contactsync.pipeliner.records import CONTACT_SCHEMA
from contactsync.sync.ledger import Ledger
from contactsync.sync.link import LinkState
from contactsync.sync.record import SOURCE_PROPERTIES
from tests.support.plugins import (
    ACCOUNTS,
    USERS,
    PipelinerActor,
    pipeliner_connection,
    run_plugin,
    singer_stream,
    start_plugin,
    wait_for,
)

TARGET = "target-pipeliner-contacts"
SCHEMA = {
    "type": "object",
    "properties": {**CONTACT_SCHEMA["properties"], **SOURCE_PROPERTIES},
}
SECRET = "Marker-77c1-not-the-password"


def target_config(sandbox: Any, workdir: Path, **extra: Any) -> dict[str, Any]:
    return {
        **pipeliner_connection(sandbox.info),
        "ledger_url": str(workdir / "ledger.sqlite"),
        "report_path": str(workdir / "report.json"),
        **extra,
    }


@pytest.fixture
def pipeliner(sandbox: Any) -> PipelinerActor:
    actor = PipelinerActor(sandbox.control("pipeliner"))
    actor.seed()
    return actor


def outlook_record(n: int, **fields: Any) -> dict[str, Any]:
    """A contact as the mapper hands it over from Outlook, keyed by the Outlook id."""
    return {
        "_source_id": f"outlook-{n}",
        "first_name": f"Ola{n}",
        "last_name": "Nordmann",
        "email1": f"ola{n}@fjord.example",
        **fields,
    }


def by_email(pipeliner: PipelinerActor) -> dict[str, dict[str, Any]]:
    return {c.get("email1"): c for c in pipeliner.contacts() if c.get("email1")}


def report(workdir: Path) -> dict[str, Any]:
    return json.loads((workdir / "report.json").read_text())


# --- the SDK's standard target tests -----------------------------------------------------------

_PLACEHOLDER = {
    "service_url": "https://127.0.0.1:9",
    "space_id": "space",
    "api_username": "u",
    "api_password": "p",
    "user_email": "alex@contoso.example",
}
_StandardTests = get_target_test_class(TargetPipelinerContacts, config=_PLACEHOLDER)


class TestTargetStandard(_StandardTests):  # type: ignore[valid-type,misc]
    """singer-sdk's own target tests; their streams hold no contacts, so nothing is written."""

    @pytest.fixture
    def runner(self, sandbox: Any, tmp_path: Path) -> TargetTestRunner:
        PipelinerActor(sandbox.control("pipeliner")).seed()
        return TargetTestRunner(TargetPipelinerContacts, config=target_config(sandbox, tmp_path))


# --- round trips ----------------------------------------------------------------------------------


def test_create_update_delete_round_trip(pipeliner, sandbox, tmp_path) -> None:
    config = target_config(sandbox, tmp_path)
    records = [outlook_record(n, position="Skipper") for n in range(3)]
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream(records, SCHEMA))
    assert run.returncode == 0, run.stderr
    created = by_email(pipeliner)
    assert len(created) == 3
    assert {c["owner_id"] for c in created.values()} == {USERS["alex"]}
    assert created["ola1@fjord.example"]["position"] == "Skipper"
    assert report(tmp_path)["counts"]["created"] == 3

    before = created["ola1@fjord.example"]
    edited = outlook_record(1, position="Captain")
    gone = {"_source_id": "outlook-2", "_sdc_deleted_at": "2026-11-26T10:00:00Z"}
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream([edited, gone], SCHEMA))
    assert run.returncode == 0, run.stderr
    after = by_email(pipeliner)
    assert after["ola1@fjord.example"]["position"] == "Captain"
    changed = {k for k, v in after["ola1@fjord.example"].items() if before.get(k) != v}
    assert changed <= {"position", "modified", "revision", "modified_by_user"}
    assert "ola2@fjord.example" not in after  # soft-deleted
    assert len(pipeliner.contacts()) == 2
    counts = report(tmp_path)["counts"]
    assert counts["updated"] == 1 and counts["deleted"] == 1 and counts["created"] == 0


def test_unmapped_fields_survive_every_write(pipeliner, sandbox, tmp_path) -> None:
    pipeliner.seed(
        [
            {
                "owner_id": USERS["alex"],
                "first_name": "Kari",
                "last_name": "Nordmann",
                "email1": "kari@fjord.example",
                "phone3": "+47 fax",
                "email4": "kari4@fjord.example",
                "email5": "kari5@fjord.example",
                "title": "Dr.",
                "cf_shoe_size": "38",
            }
        ]
    )
    [seeded] = pipeliner.contacts()
    record = {
        "id": seeded["id"],
        "first_name": "Kari",
        "last_name": "Nordmann",
        "email1": "kari@fjord.example",
        "position": "Harbour master",
        "city": "Bergen",
    }
    config = target_config(sandbox, tmp_path)
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream([record], SCHEMA))
    assert run.returncode == 0, run.stderr
    raw = pipeliner.raw(seeded["id"])
    assert raw["position"] == "Harbour master" and raw["city"] == "Bergen"
    for name, value in [
        ("phone3", "+47 fax"),
        ("email4", "kari4@fjord.example"),
        ("email5", "kari5@fjord.example"),
        ("title", "Dr."),
        ("cf_shoe_size", "38"),
    ]:
        assert raw[name] == value, name
    assert len(pipeliner.contacts()) == 1  # linked by its id, not created again


def test_one_invalid_item_does_not_sink_the_batch(pipeliner, sandbox, tmp_path) -> None:
    nameless = {"_source_id": "outlook-x", "email1": "info@fjord.example", "company": None}
    records = [outlook_record(1), nameless, outlook_record(2)]
    config = target_config(sandbox, tmp_path)
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream(records, SCHEMA))
    assert run.returncode == 0, run.stderr
    assert set(by_email(pipeliner)) == {"ola1@fjord.example", "ola2@fjord.example"}
    result = report(tmp_path)
    assert result["counts"]["created"] == 2 and result["counts"]["rejected"] == 1
    [issue] = result["issues"]
    assert issue["record_id"] == "outlook-x" and "first or last name" in issue["reason"]
    # The failure is kept and retried by the next run, which has no new records at all.
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream([], SCHEMA))
    assert report(tmp_path)["counts"]["retried"] == 1


def test_throttling_and_server_errors_are_retried_without_duplicates(
    pipeliner, sandbox, tmp_path
) -> None:
    pipeliner.control.burst_429(3, retry_after=0.2)
    pipeliner.control.fail_5xx(2, status=503, path_prefix="/api/v100/rest/spaces/")
    records = [outlook_record(n) for n in range(150)]
    config = target_config(sandbox, tmp_path)
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream(records, SCHEMA))
    assert run.returncode == 0, run.stderr
    assert len(pipeliner.contacts()) == 150 and len(by_email(pipeliner)) == 150
    statuses = pipeliner.control.counters()["total"]["statuses"]
    assert statuses.get("429") == 3 and statuses.get("503") == 2


def test_killed_mid_run_then_rerun_creates_no_duplicate(pipeliner, sandbox, tmp_path) -> None:
    records = [outlook_record(n) for n in range(250)]
    config = target_config(sandbox, tmp_path)
    # Slow batch writes down so the kill lands between batches, after some were written.
    pipeliner.control.latency(0.3, path_prefix="/api/v100/rest/spaces/", method="POST")
    proc = start_plugin(TARGET, config, tmp_path, singer_stream(records, SCHEMA))
    wait_for(
        lambda: pipeliner.requests("POST", "/entities/Contacts/batch-modify") >= 2,
        what="the target to write a batch",
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    written = len(pipeliner.contacts())
    assert 0 < written < 250
    pipeliner.control.clear_faults()
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream(records, SCHEMA))
    assert run.returncode == 0, run.stderr
    assert len(pipeliner.contacts()) == 250 and len(by_email(pipeliner)) == 250


# --- bad input --------------------------------------------------------------------------------


def test_a_record_of_the_wrong_type_is_rejected_naming_it(pipeliner, sandbox, tmp_path) -> None:
    bad = outlook_record(1, share_mode="everyone")
    config = target_config(sandbox, tmp_path)
    records = [bad, outlook_record(2)]
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream(records, SCHEMA))
    assert run.returncode == 0, run.stderr  # one bad record does not sink the run
    [issue] = report(tmp_path)["issues"]
    assert issue["record_id"] == "outlook-1" and "share_mode" in issue["reason"]
    assert "everyone" not in issue["reason"]  # names the field, never the value
    assert set(by_email(pipeliner)) == {"ola2@fjord.example"}


def test_a_record_without_key_or_contact_fields_is_rejected(pipeliner, sandbox, tmp_path) -> None:
    records = [{"first_name": "No", "last_name": "Key"}, {"_source_id": "o-9"}, outlook_record(3)]
    config = target_config(sandbox, tmp_path)
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream(records, SCHEMA))
    assert run.returncode == 0, run.stderr
    assert set(by_email(pipeliner)) == {"ola3@fjord.example"}
    result = report(tmp_path)
    assert result["counts"]["rejected"] == 2
    assert all("contact" in i["reason"] or "key" in i["reason"] for i in result["issues"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"api_password": SECRET}, "api_username/api_password", id="bad keys"),
        pytest.param({"service_url": "http://pipeliner.example"}, "service_url", id="plain http"),
        pytest.param(
            {"service_url": "https://127.0.0.1:9", "max_attempts": 2, "request_budget_seconds": 5},
            "127.0.0.1:9",
            id="unreachable",
        ),
        pytest.param({"conflict_policy": "loudest_wins"}, "conflict_policy", id="bad policy"),
    ],
)
def test_bad_settings_stop_with_a_message_and_write_nothing(
    pipeliner, sandbox, tmp_path, change, message
) -> None:
    config = {**target_config(sandbox, tmp_path), **change}
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream([outlook_record(1)], SCHEMA))
    assert run.returncode != 0
    assert message in run.stderr
    assert SECRET not in run.stderr
    assert pipeliner.contacts() == []


def test_company_becomes_the_primary_account_when_one_matches(pipeliner, sandbox, tmp_path) -> None:
    records = [
        outlook_record(1, quick_account_name="fabrikam"),
        outlook_record(2, quick_account_name="Nowhere Ltd"),
    ]
    config = target_config(sandbox, tmp_path)
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream(records, SCHEMA))
    assert run.returncode == 0, run.stderr
    contacts = by_email(pipeliner)
    linked = pipeliner.raw(contacts["ola1@fjord.example"]["id"])
    primary = [r for r in linked["account_relations"] if r.get("is_primary")]
    assert [r["account_id"] for r in primary] == [ACCOUNTS["Fabrikam"]]
    assert contacts["ola2@fjord.example"]["quick_account_name"] == "Nowhere Ltd"
    assert not pipeliner.raw(contacts["ola2@fjord.example"]["id"]).get("account_relations")
    assert len(pipeliner.control.state()["accounts"]) == len(ACCOUNTS)  # none created


def test_delete_without_rights_is_rejected_and_owed_back(pipeliner, sandbox, tmp_path) -> None:
    config = target_config(sandbox, tmp_path, user_email="megan@contoso.example")
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream([outlook_record(1)], SCHEMA))
    assert run.returncode == 0, run.stderr
    gone = {"_source_id": "outlook-1", "_sdc_deleted_at": "2026-11-26T10:00:00Z"}
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream([gone], SCHEMA))
    assert run.returncode == 0, run.stderr
    assert "ola1@fjord.example" in by_email(pipeliner)  # still there
    result = report(tmp_path)
    # Counted as what happens to the record (its Outlook copy is restored); the issue says why.
    assert result["counts"]["restored"] == 1 and result["counts"]["deleted"] == 0
    assert result["issues"][0]["outcome"] == "rejected"
    assert "may not delete" in result["issues"][0]["reason"]
    with Ledger(config["ledger_url"]) as ledger:
        [scope] = ledger.partitions()
        with ledger.open_partition(scope) as links:
            [link] = list(links.iter_links())
    assert link.state is LinkState.RESTORE_BOOK and link.book_id is None


def test_dry_run_plans_and_reports_but_writes_nothing(pipeliner, sandbox, tmp_path) -> None:
    config = target_config(sandbox, tmp_path, dry_run=True)
    records = [outlook_record(n) for n in range(5)]
    bookmark = {"type": "STATE", "value": {"bookmarks": {"contacts": {"delta_link": "next"}}}}
    run = run_plugin(TARGET, config, tmp_path, stdin=[*singer_stream(records, SCHEMA), bookmark])
    assert run.returncode == 0, run.stderr
    assert pipeliner.contacts() == []
    assert pipeliner.requests("POST", "/entities/Contacts/batch-modify") == 0
    result = report(tmp_path)
    assert result["dry_run"] is True and result["counts"]["created"] == 5
    # A target's stdout is the state Meltano saves: none, or the next run would skip these.
    assert run.messages == []
    real = run_plugin(TARGET, {**config, "dry_run": False}, tmp_path, stdin=[bookmark])
    assert real.messages == [bookmark["value"]]  # a real run passes the tap's state on


# --- imports: another tap's records (issue #12 item 4) ------------------------------------------

IMPORT_SCHEMA = {
    "type": "object",
    "properties": {
        "ext_id": {"type": ["string"]},
        "first_name": {"type": ["string", "null"]},
        "last_name": {"type": ["string", "null"]},
        "email1": {"type": ["string", "null"]},
        "emails": {"type": ["string", "null"]},
    },
}


def import_stream(rows: list[dict[str, Any]], stream: str = "people") -> list[dict[str, Any]]:
    """What a CSV tap sends: its own stream, keyed by its own column in key_properties."""
    schema = {"type": "SCHEMA", "stream": stream, "schema": IMPORT_SCHEMA}
    messages: list[dict[str, Any]] = [{**schema, "key_properties": ["ext_id"]}]
    messages += [{"type": "RECORD", "stream": stream, "record": r} for r in rows]
    return messages


def test_an_import_is_keyed_by_its_key_properties_in_a_scope_of_its_own(
    pipeliner: PipelinerActor, sandbox: Any, tmp_path: Path
) -> None:
    config = target_config(sandbox, tmp_path)
    rows = [
        {"ext_id": f"x{n}", "first_name": f"Imp{n}", "last_name": "Orted", "email1": f"i{n}@c.x"}
        for n in range(3)
    ]
    run = run_plugin(TARGET, config, tmp_path, stdin=import_stream(rows))
    assert run.returncode == 0, run.stderr
    assert report(tmp_path)["counts"]["created"] == 3
    assert len(pipeliner.contacts()) == 3
    assert "an import, linked in a scope of its own" in run.stderr

    # The links are the import's (user, space, "(import)", "singer"), keyed stream:ext_id;
    # the folder's sync scope has none of them.
    ledger = Ledger(config["ledger_url"])
    scopes = ledger.partitions()
    assert [(s.mailbox, s.folder) for s in scopes] == [("(import)", "singer")]
    with ledger.open_partition(scopes[0]) as scope:
        assert sorted(link.book_id for link in scope.iter_links()) == [
            "people:x0",
            "people:x1",
            "people:x2",
        ]

    # The same file again, one row changed: updated in place, nothing created twice; a listing
    # without a row (ACTIVATE_VERSION twice) deletes nothing.
    rows[0]["last_name"] = "Changed"
    listing = [{"type": "ACTIVATE_VERSION", "stream": "people", "version": 7}]
    again = [*import_stream(rows[:2]), *listing]
    again.insert(1, listing[0])
    run = run_plugin(TARGET, config, tmp_path, stdin=again)
    assert run.returncode == 0, run.stderr
    assert report(tmp_path)["counts"]["updated"] == 1
    contacts = pipeliner.contacts()
    assert len(contacts) == 3
    assert {c["last_name"] for c in contacts} == {"Changed", "Orted"}


def test_an_imported_record_of_the_wrong_type_is_rejected_naming_it(
    pipeliner: PipelinerActor, sandbox: Any, tmp_path: Path
) -> None:
    schema = {**IMPORT_SCHEMA, "properties": {**IMPORT_SCHEMA["properties"], "email1": {}}}
    messages = import_stream(
        [
            {"ext_id": "a", "first_name": "Ann", "email1": ["ann@c.x", "ann@d.x"]},
            {"ext_id": "b", "first_name": "Bob", "email1": "bob@c.x"},
        ]
    )
    messages[0]["schema"] = schema
    config = target_config(sandbox, tmp_path)
    run = run_plugin(TARGET, config, tmp_path, stdin=messages)
    assert run.returncode == 0, run.stderr
    result = report(tmp_path)
    assert result["counts"]["created"] == 1 and result["counts"]["rejected"] == 1
    [issue] = result["issues"]
    assert issue["record_id"] == "people:a"
    assert issue["reason"] == "field email1: expected a string, got an array"
    assert "ann@c.x" not in run.stderr  # never the value

    # A record without the key its SCHEMA names breaks the Singer spec: the run stops, saying so.
    run = run_plugin(TARGET, config, tmp_path, stdin=import_stream([{"first_name": "NoKey"}]))
    assert run.returncode != 0
    [error] = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert "stream 'people': a record lacks its key property ext_id" in error
    assert "unexpected" not in error
