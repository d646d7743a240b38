"""tap-pipeliner-contacts against the Pipeliner emulator: the SDK's standard tests, paging,
incremental reads, tombstones, the user's relation to each contact, and bad settings."""

from __future__ import annotations

from typing import Any

import pytest
from singer_sdk.testing import get_tap_test_class
from singer_sdk.testing.runners import TapTestRunner
from tap_pipeliner_contacts.tap import TapPipelinerContacts

from tests.support.plugins import (
    ACCOUNTS,
    UNITS,
    USERS,
    PipelinerActor,
    pipeliner_connection,
    run_plugin,
)

TAP = "tap-pipeliner-contacts"
EUROPE, AMERICAS = UNITS["Sales Europe"], UNITS["Sales Americas"]
SECRET = "Marker-9f3a-not-the-password"


def tap_config(sandbox: Any, user: str = "alex", **extra: Any) -> dict[str, Any]:
    return {**pipeliner_connection(sandbox.info, user), **extra}


@pytest.fixture
def pipeliner(sandbox: Any) -> PipelinerActor:
    actor = PipelinerActor(sandbox.control("pipeliner"))
    actor.seed()
    return actor


def contact(n: int, owner: str = "alex", unit: str = EUROPE, **fields: Any) -> dict[str, Any]:
    return {
        "owner_id": USERS[owner],
        "unit_id": unit,
        "first_name": f"Person{n}",
        "last_name": "Tester",
        "email1": f"person{n}@client.example",
        **fields,
    }


# --- the SDK's standard tap tests ------------------------------------------------------------

_PLACEHOLDER = {
    "service_url": "https://127.0.0.1:9",
    "space_id": "space",
    "api_username": "u",
    "api_password": "p",
    "user_email": "alex@contoso.example",
}
_StandardTests = get_tap_test_class(TapPipelinerContacts, config=_PLACEHOLDER)


class TestTapStandard(_StandardTests):  # type: ignore[valid-type,misc]
    """singer-sdk's own tap, stream and attribute tests, reading the seeded demo space."""

    @pytest.fixture(scope="class")
    @classmethod
    def runner(cls, sandbox: Any) -> TapTestRunner:
        control = sandbox.control("pipeliner")
        control.reset()  # the default seed: identities, accounts, 300 demo contacts
        runner = TapTestRunner(TapPipelinerContacts, config=tap_config(sandbox))
        runner.sync_all()
        return runner


# --- paging, incremental, tombstones -----------------------------------------------------------


def test_pages_then_reads_only_what_changed(pipeliner: PipelinerActor, sandbox, tmp_path) -> None:
    pipeliner.seed([contact(n) for n in range(250)])
    first = run_plugin(TAP, tap_config(sandbox), tmp_path)
    assert first.returncode == 0, first.stderr
    records = first.records()
    assert len(records) == 250 and len({r["id"] for r in records}) == 250
    assert pipeliner.requests("GET", "/entities/Contacts") == 3  # pages of 100
    assert first.state is not None

    changed = [records[10]["id"], records[200]["id"]]
    pipeliner.edit("alex", changed[0], city="Lisboa")
    pipeliner.edit("alex", changed[1], phone1="+351 555 0101")
    pipeliner.control.reset_counters()
    second = run_plugin(TAP, tap_config(sandbox), tmp_path, state=first.state)
    assert second.returncode == 0, second.stderr
    ids = {r["id"] for r in second.records()}
    # `gte` on the bookmark may repeat the last contact of the previous run, never more.
    assert set(changed) <= ids and len(ids - set(changed)) <= 1
    assert pipeliner.requests("GET", "/entities/Contacts") == 1


def test_deleted_contacts_arrive_as_tombstones(pipeliner, sandbox, tmp_path) -> None:
    pipeliner.seed([contact(n) for n in range(3)])
    first = run_plugin(TAP, tap_config(sandbox), tmp_path)
    victim = first.records()[1]["id"]
    pipeliner.delete("alex", victim)
    second = run_plugin(TAP, tap_config(sandbox), tmp_path, state=first.state)
    [tombstone] = [r for r in second.records() if r["id"] == victim]
    assert tombstone["is_deleted"] is True and tombstone["_sdc_deleted_at"]


def test_primary_account_name_and_unmapped_fields(pipeliner, sandbox, tmp_path) -> None:
    pipeliner.seed(
        [
            contact(
                1,
                account_relations=[{"account_id": ACCOUNTS["Fabrikam"], "is_primary": True}],
                phone3="fax",
                position="CTO",
                title="Dr.",
            )
        ]
    )
    [record] = run_plugin(TAP, tap_config(sandbox), tmp_path).records()
    assert record["primary_account_name"] == "Fabrikam"
    assert record["position"] == "CTO"
    assert "title" not in record and "phone3" not in record


# --- the syncing user's relation ----------------------------------------------------------------

RELATION_CASES = [
    # (id, owner, unit, share_mode, shares, user, relation, can edit, can delete); the rules are
    # docs/access-rules.md: only the owner deletes, visibility through the unit is never editor.
    ("owner", "alex", EUROPE, 0, [], "alex", "owner", True, True),
    (
        "client editor",
        "lynne",
        AMERICAS,
        0,
        [("client_id", "alex", 2)],
        "alex",
        "editor",
        True,
        False,
    ),
    (
        "client watcher",
        "lynne",
        AMERICAS,
        0,
        [("client_id", "alex", 1)],
        "alex",
        "viewer",
        False,
        False,
    ),
    ("unit editor", "lynne", AMERICAS, 0, [("unit_id", EUROPE, 2)], "alex", "editor", True, False),
    ("other unit", "lynne", AMERICAS, 0, [], "alex", "none", False, False),
    ("all view", "lynne", AMERICAS, 2, [], "alex", "viewer", False, False),
    ("all edit", "lynne", AMERICAS, 3, [], "alex", "editor", True, False),
    ("private in own unit", "megan", EUROPE, 1, [], "alex", "none", False, False),
    ("role level editor, own unit", "megan", EUROPE, 0, [], "alex", "viewer", False, False),
    (
        "read-only role caps editor",
        "alex",
        EUROPE,
        0,
        [("client_id", "lynne", 2)],
        "lynne",
        "viewer",
        False,
        False,
    ),
    (
        "editor without delete right",
        "lynne",
        AMERICAS,
        0,
        [("client_id", "megan", 2)],
        "megan",
        "editor",
        True,
        False,
    ),
]


@pytest.mark.parametrize(
    ("owner", "unit", "share_mode", "shares", "user", "relation", "can_edit", "can_delete"),
    [pytest.param(*case[1:], id=case[0]) for case in RELATION_CASES],
)
def test_sync_user_relation(
    pipeliner,
    sandbox,
    tmp_path,
    owner,
    unit,
    share_mode,
    shares,
    user,
    relation,
    can_edit,
    can_delete,
) -> None:
    pipeliner.seed([contact(1, owner, unit, share_mode=share_mode)])
    [seeded] = pipeliner.contacts()
    for key, target, role in shares:
        value = USERS.get(target, target)
        pipeliner.share(owner, seeded["id"], **{key: value, "role": role})
    [record] = run_plugin(TAP, tap_config(sandbox, user), tmp_path).records()
    assert record["_sync_user_relation"] == relation
    assert record["_sync_user_can_edit"] is can_edit
    assert record["_sync_user_can_delete"] is can_delete


# --- bad settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"api_password": SECRET}, "api_username/api_password", id="bad keys"),
        pytest.param({"space_id": "no-such-space"}, "space", id="unknown space"),
        pytest.param({"service_url": "http://pipeliner.example"}, "service_url", id="plain http"),
        pytest.param({"user_email": "nobody@contoso.example"}, "user_email", id="unknown user"),
        pytest.param({"user_email": None}, "user_id or user_email", id="no user"),
    ],
)
def test_bad_settings_stop_with_a_message_naming_them(
    pipeliner, sandbox, tmp_path, change, message
) -> None:
    config = {k: v for k, v in {**tap_config(sandbox), **change}.items() if v is not None}
    run = run_plugin(TAP, config, tmp_path, timeout=60)
    assert run.returncode != 0
    assert message in run.stderr
    assert SECRET not in run.stderr
    assert run.records() == []


def test_unreachable_host_fails_fast_with_a_clear_message(sandbox, tmp_path) -> None:
    config = {
        **tap_config(sandbox),
        "service_url": "https://127.0.0.1:9",
        "max_attempts": 2,
        "request_budget_seconds": 5,
    }
    run = run_plugin(TAP, config, tmp_path, timeout=60)
    assert run.returncode != 0
    assert "127.0.0.1:9" in run.stderr


def test_a_changed_sync_scope_reads_everything_again(pipeliner, sandbox, tmp_path) -> None:
    pipeliner.seed([contact(n) for n in range(5)])
    first = run_plugin(TAP, tap_config(sandbox), tmp_path)
    assert first.state is not None
    quiet = run_plugin(TAP, tap_config(sandbox), tmp_path, state=first.state)
    assert len(quiet.records()) <= 1  # only the bookmark's own contact again
    wider = tap_config(sandbox, sync_option="owner_or_editor")
    again = run_plugin(TAP, wider, tmp_path, state=quiet.state)
    assert again.returncode == 0, again.stderr
    assert len(again.records()) == 5
    assert "reading every contact in Pipeliner: sync scope changed" in again.stderr
