"""target-outlook-contacts against the Graph and identity emulators: the SDK's standard tests,
the Other-phone property, preservation of what lies outside the table, request economy,
throttling, token expiry, a kill mid-run, and bad input."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.runners import TargetTestRunner
from target_outlook_contacts.target import TargetOutlookContacts

from contactsync.outlook.projection import OTHER_PHONE_PROPERTY_ID, PIPELINER_ID_PROPERTY_ID
from contactsync.outlook.records import CONTACT_SCHEMA
from contactsync.sync.record import SOURCE_PROPERTIES
from contactsync_sandbox.client import SandboxControlError
from tests.support.plugins import (
    OutlookActor,
    run_plugin,
    sign_in,
    singer_stream,
    start_plugin,
    wait_for,
)

TARGET = "target-outlook-contacts"
SCHEMA = {"type": "object", "properties": {**CONTACT_SCHEMA["properties"], **SOURCE_PROPERTIES}}
SECRET = "Marker-0b7e-not-a-secret"


@pytest.fixture(scope="session")
def token_cache(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sign_in(sandbox, tmp_path_factory.mktemp("auth") / "token-cache.json")


def target_config(sandbox: Any, cache: Path, workdir: Path, folder: str, **extra: Any) -> dict:
    info = sandbox.info
    return {
        "authority": info["authority"],
        "client_id": info["identity_client_id"],
        "token_cache_path": str(cache),
        "ca_bundle": info["ca_path"],
        "graph_url": info["graph_url"],
        "mailbox": "me",
        "folder": folder,
        "create_folder": True,
        "space_id": info["pipeliner_space_id"],
        "user_email": "alex@contoso.example",
        "ledger_url": str(workdir / "ledger.sqlite"),
        "report_path": str(workdir / "report.json"),
        **extra,
    }


@pytest.fixture
def outlook(sandbox: Any) -> OutlookActor:
    actor = OutlookActor(sandbox.control("graph"))
    actor.control.reset_counters()
    actor.control.clear_faults()
    actor.throttle(requests=None)
    actor.storage(string_limits=False, compact_empty_entries=False)
    return actor


@pytest.fixture
def folder() -> str:
    return f"Pipeliner {uuid.uuid4().hex[:8]}"


def pipeliner_record(n: int, **extra: Any) -> dict[str, Any]:
    """A contact as the mapper hands it over from Pipeliner, keyed by the Pipeliner id."""
    return {
        "_source_id": f"p-{n}",
        "givenName": f"Grace{n}",
        "surname": "Hopper",
        "emailAddresses": [{"address": f"grace{n}@navy.example", "name": f"grace{n}@navy.example"}],
        **extra,
    }


def report(workdir: Path) -> dict[str, Any]:
    return json.loads((workdir / "report.json").read_text())


def ext(contact: dict[str, Any], prop: str) -> str | None:
    for item in contact.get("singleValueExtendedProperties") or ():
        if item["id"].casefold() == prop.casefold():
            return item["value"]
    return None


# --- the SDK's standard target tests -----------------------------------------------------------

_PLACEHOLDER = {
    "authority": "https://127.0.0.1:9/tenant",
    "client_id": "client",
    "token_cache_path": "/nonexistent/cache.json",
    "space_id": "space",
    "user_email": "alex@contoso.example",
}
_StandardTests = get_target_test_class(TargetOutlookContacts, config=_PLACEHOLDER)


class TestTargetStandard(_StandardTests):  # type: ignore[valid-type,misc]
    """singer-sdk's own target tests; their streams hold no contacts, so nothing is written."""

    @pytest.fixture
    def runner(self, sandbox: Any, token_cache: Path, tmp_path: Path) -> TargetTestRunner:
        config = target_config(sandbox, token_cache, tmp_path, f"Std {uuid.uuid4().hex[:8]}")
        return TargetTestRunner(TargetOutlookContacts, config=config)


# --- writes ------------------------------------------------------------------------------------


def test_other_phone_and_stamp_round_trip(outlook, folder, sandbox, token_cache, tmp_path) -> None:
    config = target_config(sandbox, token_cache, tmp_path, folder)
    record = pipeliner_record(1, other_phone="+1 555 0199", jobTitle="Rear Admiral")
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream([record], SCHEMA))
    assert run.returncode == 0, run.stderr
    [contact] = outlook.contacts(folder)
    assert ext(contact, OTHER_PHONE_PROPERTY_ID) == "+1 555 0199"
    assert ext(contact, PIPELINER_ID_PROPERTY_ID) == "p-1"
    assert contact["jobTitle"] == "Rear Admiral" and contact["displayName"] == "Grace1 Hopper"


def test_an_unlinked_contact_known_only_by_name_is_linked_not_copied(
    outlook, folder, sandbox, token_cache, tmp_path
) -> None:
    # E.g. an Outlook contact whose create reached Pipeliner in a run killed before it could
    # write the link: the Pipeliner contact comes back unlinked, with no e-mail and no stamp.
    outlook.new_folder(folder)
    origin = outlook.create(folder, givenName="Olga", surname="Nomail", jobTitle="Buyer")
    config = target_config(sandbox, token_cache, tmp_path, folder)
    record = pipeliner_record(7, givenName="Olga", surname="Nomail", jobTitle="Buyer")
    del record["emailAddresses"]
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream([record], SCHEMA))
    assert run.returncode == 0, run.stderr
    assert [c["id"] for c in outlook.contacts(folder)] == [origin["id"]]
    assert report(tmp_path)["counts"]["linked"] == 1


def test_what_lies_outside_the_table_survives_updates(
    outlook, folder, sandbox, token_cache, tmp_path
) -> None:
    config = target_config(sandbox, token_cache, tmp_path, folder)
    record = pipeliner_record(1, businessPhones=["+1 555 0100"], homePhones=["+1 555 0200"])
    run_plugin(TARGET, config, tmp_path, stdin=singer_stream([record], SCHEMA))
    [contact] = outlook.contacts(folder)
    outlook.edit(
        contact["id"],
        businessPhones=["+1 555 0100", "+1 555 0101"],
        homePhones=["+1 555 0200", "+1 555 0201"],
        birthday="1906-12-09T00:00:00Z",
        categories=["Navy"],
    )
    changed = pipeliner_record(
        1, businessPhones=["+1 555 0111"], homePhones=["+1 555 0222"], jobTitle="Commodore"
    )
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream([changed], SCHEMA))
    assert run.returncode == 0, run.stderr
    [after] = outlook.contacts(folder)
    assert after["businessPhones"] == ["+1 555 0111", "+1 555 0101"]
    assert after["homePhones"] == ["+1 555 0222", "+1 555 0201"]
    assert after["birthday"].startswith("1906-12-09") and after["categories"] == ["Navy"]
    assert after["jobTitle"] == "Commodore"


def test_a_thousand_creates_take_at_most_55_requests(
    outlook, folder, sandbox, token_cache, tmp_path
) -> None:
    records = [pipeliner_record(n) for n in range(1000)]
    config = target_config(sandbox, token_cache, tmp_path, folder)
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream(records, SCHEMA))
    assert run.returncode == 0, run.stderr
    assert len(outlook.contacts(folder)) == 1000
    assert outlook.control.counters()["total"]["requests"] <= 55


def test_under_a_low_budget_every_contact_is_written_once(
    outlook, folder, sandbox, token_cache, tmp_path
) -> None:
    outlook.throttle(requests=15, window_seconds=1.0)
    before = outlook.throttled()
    records = [pipeliner_record(n) for n in range(300)]
    config = target_config(sandbox, token_cache, tmp_path, folder)
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream(records, SCHEMA))
    outlook.throttle(requests=None)
    assert run.returncode == 0, run.stderr
    contacts = outlook.contacts(folder)
    assert len(contacts) == 300
    assert len({ext(c, PIPELINER_ID_PROPERTY_ID) for c in contacts}) == 300
    assert outlook.control.counters()["total"]["max_in_flight"] <= 4
    assert outlook.throttled() > before  # the budget did bite (inside $batch)


def test_an_access_token_expiring_mid_run_is_refreshed(
    outlook, folder, sandbox, token_cache, tmp_path
) -> None:
    records = [pipeliner_record(n) for n in range(200)]
    config = target_config(sandbox, token_cache, tmp_path, folder)
    outlook.control.latency(0.3, method="POST")
    proc = start_plugin(TARGET, config, tmp_path, singer_stream(records, SCHEMA))
    wait_for(lambda: outlook.requests("POST", "$batch") >= 2)
    outlook.expire_access_tokens()
    outlook.control.clear_faults()
    assert proc.wait(timeout=120) == 0
    assert len(outlook.contacts(folder)) == 200
    assert outlook.control.counters()["total"]["statuses"].get("401", 0) >= 1


def test_killed_mid_run_then_rerun_creates_no_duplicate(
    outlook, folder, sandbox, token_cache, tmp_path
) -> None:
    records = [pipeliner_record(n) for n in range(300)]
    config = target_config(sandbox, token_cache, tmp_path, folder)
    outlook.control.latency(0.3, method="POST")
    proc = start_plugin(TARGET, config, tmp_path, singer_stream(records, SCHEMA))
    wait_for(lambda: _count(outlook, folder) >= 40)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    outlook.control.clear_faults()
    written = len(outlook.contacts(folder))
    assert 0 < written < 300
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream(records, SCHEMA))
    assert run.returncode == 0, run.stderr
    contacts = outlook.contacts(folder)
    assert len(contacts) == 300
    assert len({ext(c, PIPELINER_ID_PROPERTY_ID) for c in contacts}) == 300


# --- bad input --------------------------------------------------------------------------------


def test_bad_records_are_rejected_one_by_one(
    outlook, folder, sandbox, token_cache, tmp_path
) -> None:
    four = [{"address": f"g{i}@navy.example", "name": ""} for i in range(4)]
    records = [
        pipeliner_record(1),
        pipeliner_record(2, emailAddresses=four),
        pipeliner_record(3, givenName="G" * 400),
        pipeliner_record(4),
    ]
    config = target_config(sandbox, token_cache, tmp_path, folder)
    # Graph documents no length limit; a service that has one answers 400 for that record.
    outlook.storage(string_limits=True)
    try:
        run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream(records, SCHEMA))
    finally:
        outlook.storage(string_limits=False)
    assert run.returncode == 0, run.stderr
    # The record with too many addresses is refused whole; the over-long name is left out and
    # the rest of its record written (one bad field does not block the others, issue #12).
    contacts = {c["emailAddresses"][0]["address"]: c for c in outlook.contacts(folder)}
    assert sorted(contacts) == [f"grace{n}@navy.example" for n in (1, 3, 4)]
    assert "givenName" not in contacts["grace3@navy.example"]
    assert contacts["grace3@navy.example"]["surname"] == "Hopper"
    issues = {i["record_id"]: i["reason"] for i in report(tmp_path)["issues"]}
    assert "3 e-mail" in issues["p-2"]
    assert "givenName" in issues["p-3"]  # the refused field, named
    # Neither is sent again while it is unchanged: the value Outlook refused is kept aside
    # (pinned) until it changes, and the same record would be refused for the same reason.
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream([], SCHEMA))
    assert run.returncode == 0, run.stderr
    assert report(tmp_path)["counts"]["created"] == 0
    contacts = {c["emailAddresses"][0]["address"]: c for c in outlook.contacts(folder)}
    assert sorted(contacts) == [f"grace{n}@navy.example" for n in (1, 3, 4)]
    assert "givenName" not in contacts["grace3@navy.example"]


def test_a_revoked_sign_in_asks_to_sign_in_again(outlook, folder, sandbox, tmp_path) -> None:
    cache = sign_in(sandbox, tmp_path / "megan-cache.json", upn="megan@contoso.example")
    sandbox.control("identity")._call(
        "POST", "/identity/users/megan@contoso.example/revoke", json={"access_tokens": True}
    )
    config = target_config(sandbox, cache, tmp_path, folder)
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream([pipeliner_record(1)], SCHEMA))
    assert run.returncode != 0
    assert "contactsync login" in run.stderr


def test_a_secret_never_reaches_the_log(outlook, folder, sandbox, tmp_path) -> None:
    config = target_config(
        sandbox,
        tmp_path / "c.json",
        tmp_path,
        folder,
        client_id="not-our-app",
        client_secret=SECRET,
    )
    run = run_plugin(TARGET, config, tmp_path, stdin=singer_stream([pipeliner_record(1)], SCHEMA))
    assert run.returncode != 0
    assert "not-our-app" in run.stderr and SECRET not in run.stderr


# --- helpers ----------------------------------------------------------------------------------


def _count(outlook: OutlookActor, folder: str) -> int:
    try:
        return len(outlook.contacts(folder))
    except SandboxControlError:  # the target has not created the folder yet
        return 0
