"""tap-outlook-contacts against the Graph and identity emulators: folders, delta rounds,
tombstones, an expired delta link, the SDK's standard tests, and bad sign-in settings."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.testing import get_tap_test_class
from singer_sdk.testing.runners import TapTestRunner
from tap_outlook_contacts.tap import TapOutlookContacts

from contactsync.outlook.projection import OTHER_PHONE_PROPERTY_ID
from tests.support.plugins import OutlookActor, run_plugin, sign_in

TAP = "tap-outlook-contacts"


@pytest.fixture(scope="session")
def token_cache(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sign_in(sandbox, tmp_path_factory.mktemp("auth") / "token-cache.json")


def tap_config(sandbox: Any, token_cache: Path, folder: str, **extra: Any) -> dict[str, Any]:
    info = sandbox.info
    return {
        "authority": info["authority"],
        "client_id": info["identity_client_id"],
        "token_cache_path": str(token_cache),
        "ca_bundle": info["ca_path"],
        "graph_url": info["graph_url"],
        "mailbox": "me",
        "folder": folder,
        **extra,
    }


@pytest.fixture
def outlook(sandbox: Any) -> OutlookActor:
    actor = OutlookActor(sandbox.control("graph"))
    actor.control.reset_counters()
    actor.control.clear_faults()
    return actor


@pytest.fixture
def folder(outlook: OutlookActor) -> str:
    name = f"Sync {uuid.uuid4().hex[:8]}"
    outlook.new_folder(name)
    return name


def person(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "givenName": f"Ada{n}",
        "surname": "Lovelace",
        "emailAddresses": [{"name": f"ada{n}@engine.example", "address": f"ada{n}@engine.example"}],
        **extra,
    }


# --- the SDK's standard tap tests ------------------------------------------------------------

_PLACEHOLDER = {
    "authority": "https://127.0.0.1:9/tenant",
    "client_id": "client",
    "token_cache_path": "/nonexistent/cache.json",
    "folder": "Pipeliner",
}
_StandardTests = get_tap_test_class(TapOutlookContacts, config=_PLACEHOLDER)


class TestTapStandard(_StandardTests):  # type: ignore[valid-type,misc]
    """singer-sdk's own tap, stream and attribute tests, reading a folder of 5 contacts."""

    @pytest.fixture(scope="class")
    @classmethod
    def runner(cls, sandbox: Any, token_cache: Path) -> TapTestRunner:
        actor = OutlookActor(sandbox.control("graph"))
        name = f"Standard {uuid.uuid4().hex[:8]}"
        actor.new_folder(name)
        for n in range(5):
            actor.create(name, **person(n))
        runner = TapTestRunner(TapOutlookContacts, config=tap_config(sandbox, token_cache, name))
        runner.sync_all()
        return runner


# --- delta rounds ---------------------------------------------------------------------------------


def test_full_round_then_only_changes(outlook, folder, sandbox, token_cache, tmp_path) -> None:
    ids = [outlook.create(folder, **person(n))["id"] for n in range(30)]
    config = tap_config(sandbox, token_cache, folder, delta_page_size=10)
    first = run_plugin(TAP, config, tmp_path)
    assert first.returncode == 0, first.stderr
    assert {r["id"] for r in first.records()} == set(ids)
    assert any(m["type"] == "ACTIVATE_VERSION" for m in first.messages)  # a complete listing

    outlook.control.reset_counters()
    quiet = run_plugin(TAP, config, tmp_path, state=first.state)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.records() == []
    assert outlook.requests("GET", "delta") <= 2
    assert not any(m["type"] == "ACTIVATE_VERSION" for m in quiet.messages)

    outlook.edit(ids[3], jobTitle="Countess")
    outlook.delete(ids[4])
    third = run_plugin(TAP, config, tmp_path, state=quiet.state)
    records = {r["id"]: r for r in third.records()}
    assert records[ids[3]]["jobTitle"] == "Countess"
    assert records[ids[4]]["_sdc_deleted_at"]
    assert len(records) == 2


def test_expired_delta_link_resyncs_once_and_loses_nothing(
    outlook, folder, sandbox, token_cache, tmp_path
) -> None:
    ids = [outlook.create(folder, **person(n))["id"] for n in range(5)]
    config = tap_config(sandbox, token_cache, folder)
    first = run_plugin(TAP, config, tmp_path)
    outlook.edit(ids[0], companyName="Analytical Engines")
    outlook.expire_delta_tokens()
    second = run_plugin(TAP, config, tmp_path, state=first.state)
    assert second.returncode == 0, second.stderr
    records = {r["id"]: r for r in second.records()}
    assert set(records) == set(ids)  # the whole folder again
    assert records[ids[0]]["companyName"] == "Analytical Engines"
    assert any(m["type"] == "ACTIVATE_VERSION" for m in second.messages)


def test_other_phone_and_stamp_come_flat(outlook, folder, sandbox, token_cache, tmp_path) -> None:
    outlook.create(
        folder,
        **person(1),
        singleValueExtendedProperties=[
            {"id": OTHER_PHONE_PROPERTY_ID, "value": "+44 20 7946 0001"}
        ],
    )
    [record] = run_plugin(TAP, tap_config(sandbox, token_cache, folder), tmp_path).records()
    assert record["other_phone"] == "+44 20 7946 0001"
    assert record["changeKey"] and record["lastModifiedDateTime"]


# --- folders ---------------------------------------------------------------------------------


def test_a_created_folder_is_reused(outlook, sandbox, token_cache, tmp_path) -> None:
    name = f"New {uuid.uuid4().hex[:8]}"
    config = tap_config(sandbox, token_cache, name, create_folder=True)
    for _ in range(2):
        run = run_plugin(TAP, config, tmp_path)
        assert run.returncode == 0, run.stderr
    assert [f["displayName"] for f in outlook.folders()].count(name) == 1


@pytest.mark.parametrize(
    ("folder_setting", "message"),
    [
        pytest.param("No Such Folder", "folder", id="unknown folder"),
    ],
)
def test_unknown_folder_is_refused(sandbox, token_cache, tmp_path, folder_setting, message) -> None:
    run = run_plugin(TAP, tap_config(sandbox, token_cache, folder_setting), tmp_path)
    assert run.returncode != 0
    assert message in run.stderr and folder_setting in run.stderr


@pytest.mark.parametrize(
    ("mailbox", "message"),
    [
        pytest.param("megan@contoso.example", "not a personal folder", id="as megan's mailbox"),
        pytest.param("me", "folder", id="by id from alex's own mailbox"),
    ],
)
def test_a_shared_folder_is_refused(sandbox, token_cache, tmp_path, mailbox, message) -> None:
    megan = OutlookActor(sandbox.control("graph"), upn="megan@contoso.example")
    shared = next(f for f in megan.folders() if f["shared_with"])
    config = tap_config(
        sandbox, token_cache, shared["id"], mailbox=mailbox, account="alex@contoso.example"
    )
    run = run_plugin(TAP, config, tmp_path)
    assert run.returncode != 0
    assert message in run.stderr
    assert run.records() == []


# --- bad sign-in settings -------------------------------------------------------------------------


def test_not_signed_in_says_how_to_sign_in(outlook, folder, sandbox, tmp_path) -> None:
    config = tap_config(sandbox, tmp_path / "empty-cache.json", folder)
    run = run_plugin(TAP, config, tmp_path)
    assert run.returncode != 0
    assert "contactsync login" in run.stderr


def test_wrong_client_id_is_named(outlook, folder, sandbox, tmp_path) -> None:
    config = {
        **tap_config(sandbox, tmp_path / "c.json", folder),
        "client_id": "not-our-app",
        "client_secret": "Marker-55e-secret",
    }
    run = run_plugin(TAP, config, tmp_path)
    assert run.returncode != 0
    assert "not-our-app" in run.stderr and "Marker-55e-secret" not in run.stderr


def test_unreachable_authority_is_named(folder, sandbox, tmp_path) -> None:
    config = {
        **tap_config(sandbox, tmp_path / "c.json", folder),
        "authority": "https://127.0.0.1:9/tenant",
        "client_secret": "s",
    }
    run = run_plugin(TAP, config, tmp_path, timeout=60)
    assert run.returncode != 0
    assert "127.0.0.1:9" in run.stderr
