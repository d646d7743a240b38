"""The users' registry and the space's secrets (contactsync.ops.users,
contactsync.ops.space_secrets), and the Meltano environment of one user's run
(contactsync.ops.meltano_runs.user_env)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contactsync.ops import space_secrets
from contactsync.ops.meltano_runs import RunSetup, WorkingCopies, read_reports, user_env
from contactsync.ops.users import (
    NotEnabled,
    Registry,
    RegistryError,
    RunRecord,
    SpaceConfig,
    UnknownUser,
    UserSync,
    state_suffix_for,
)

SPACE = SpaceConfig(
    service_url="https://eu-central.api.pipelinersales.com",
    space_id="5a5a5a5a-0000-4000-8000-000000000001",
    api_username="app-key",
    authority="https://login.microsoftonline.com/contoso.example",
    client_id="f0000000-0000-4000-8000-000000000001",
)


def _user(email: str = "Alex@Contoso.example", **changes: object) -> UserSync:
    base = UserSync(
        email=email,
        sync_type="two_way_your_contacts",
        sync_option="owner",
        folder_id="folder-1",
        folder_name="Pipeliner",
        mailbox=email.lower(),
        token_cache="/tmp/tokens/alex.json",
        pipeliner_user_id="c0000000-0000-4000-8000-000000000001",
        state_suffix=state_suffix_for(email),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(str(tmp_path / "registry.sqlite"))


def test_nothing_before_enable(registry: Registry) -> None:
    assert registry.space() is None
    with pytest.raises(NotEnabled, match="contactsync enable"):
        registry.require_space()
    with pytest.raises(UnknownUser, match=r"contactsync activate --user alex@contoso\.example"):
        registry.require("alex@contoso.example")


def test_enable_then_users_round_trip(registry: Registry, tmp_path: Path) -> None:
    stored = registry.enable(SPACE)
    assert stored.enabled_at is not None and registry.require_space().space_id == SPACE.space_id
    saved = registry.save(_user())
    assert saved.email == "alex@contoso.example"  # e-mails are keys: lower-cased
    again = Registry(str(tmp_path / "registry.sqlite"))  # another process, same database
    [user] = again.users()
    assert user == replace(saved, activated_at=user.activated_at, updated_at=user.updated_at)
    assert user.job == "two-way-your-contacts" and user.last_run is None
    run = RunRecord(
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
        status="failed",
        counts={"pipeliner->outlook": {"created": 3}},
        error="boom",
    )
    again.record_run("ALEX@contoso.example", run)
    assert again.require("alex@contoso.example").last_run == run
    # Settings saved later keep the last run; a deactivation keeps everything else.
    registry.save(replace(user, active=False))
    kept = registry.require("alex@contoso.example")
    assert not kept.active and kept.last_run == run and kept.state_suffix == user.state_suffix


def test_a_registry_serves_one_space(registry: Registry) -> None:
    registry.enable(SPACE)
    registry.enable(replace(SPACE, api_username="rotated"))  # same space: updated
    registry.save(_user())
    with pytest.raises(RegistryError, match="one space"):
        registry.enable(replace(SPACE, space_id="another"))


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        _user(sync_type="one_way_all_contacts", sync_option="owner")
    with pytest.raises(RegistryError, match="not an e-mail"):
        state_suffix_for("alex")
    assert state_suffix_for("Alex+Test@Contoso.example") == "alex_test_contoso.example"


def test_secrets_come_from_the_environment_before_the_file(tmp_path: Path) -> None:
    path = space_secrets.write_file(tmp_path / "s" / "secrets.json", {"api_password": "file"})
    assert (path.stat().st_mode & 0o777) == 0o600
    assert space_secrets.resolve(str(path), {}, app_only=False).api_password == "file"
    env = {"PIPELINER_API_PASSWORD": "env", "MS_CLIENT_SECRET": "cs"}
    found = space_secrets.resolve(str(path), env, app_only=False)
    assert found.api_password == "env" and found.client_secret is None  # delegated: unused
    assert "env" not in repr(found)
    with pytest.raises(space_secrets.SecretsError, match="MS_CLIENT_SECRET"):
        space_secrets.resolve(str(path), {}, app_only=True)
    os.chmod(path, 0o644)
    with pytest.raises(space_secrets.SecretsError, match="chmod 600"):
        space_secrets.resolve(str(path), {}, app_only=False)
    with pytest.raises(space_secrets.SecretsError, match="PIPELINER_API_PASSWORD"):
        space_secrets.resolve(None, {}, app_only=False)


def _setup(tmp_path: Path) -> RunSetup:
    project = tmp_path / "project"
    (project / ".meltano" / "extractors").mkdir(parents=True)
    (project / "meltano.yml").write_text("version: 1\n")
    return RunSetup(
        project_dir=project,
        data_dir=tmp_path / "data",
        ledger_url="/abs/ledger.sqlite",
        state_db_uri="sqlite:////abs/meltano.db",
    )


def test_user_env_scopes_each_plugin_to_the_user(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    secrets = space_secrets.SpaceSecrets(api_password="pw")
    env = user_env(setup, SPACE, secrets, _user())
    assert env["TARGET_OUTLOOK_CONTACTS_FOLDER"] == "folder-1"  # the id, not the name
    assert env["TAP_PIPELINER_CONTACTS_ALL_USER_EMAIL"] == "Alex@Contoso.example"
    assert env["TARGET_PIPELINER_CONTACTS_LEDGER_URL"] == "/abs/ledger.sqlite"
    assert env["CONTACTSYNC_SYNC_OPTION"] == "owner"  # one value for the whole job
    assert not any(k.endswith("_SYNC_OPTION") and k != "CONTACTSYNC_SYNC_OPTION" for k in env)
    assert env["TAP_OUTLOOK_CONTACTS_CLIENT_SECRET"] == ""  # delegated
    reports = {v for k, v in env.items() if k.endswith("_REPORT_PATH")}
    assert all(str(setup.data_dir / "reports" / "alex_contoso.example") in r for r in reports)
    every = user_env(
        setup, SPACE, secrets, _user(sync_type="one_way_all_contacts", sync_option=None)
    )
    assert not any(k.endswith("_SYNC_OPTION") for k in every)  # refused by one-way-all


def test_working_copies_are_exclusive_and_share_the_plugins(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    copies = WorkingCopies(setup)
    with copies.acquire() as first, copies.acquire() as second:
        assert first != second
        for slot in (first, second):
            assert (slot / "meltano.yml").read_text() == "version: 1\n"
            link = slot / ".meltano" / "extractors"
            assert link.is_symlink() and link.resolve() == setup.project_dir / ".meltano" / (
                "extractors"
            )
    with copies.acquire() as reused:
        assert reused == first  # a free slot is reused, with its own .meltano/run


def test_read_reports(tmp_path: Path) -> None:
    (tmp_path / "pipeliner-to-outlook.json").write_text(
        json.dumps({"leg": "pipeliner->outlook", "counts": {"read": 2, "created": 2, "deleted": 0}})
    )
    (tmp_path / "outlook-to-pipeliner.json").write_text(
        json.dumps({"leg": "outlook->pipeliner", "counts": {}, "error": "stopped"})
    )
    counts, error = read_reports(tmp_path)
    assert list(counts) == ["pipeliner->outlook", "outlook->pipeliner"]
    assert counts["pipeliner->outlook"] == {"read": 2, "created": 2} and error == "stopped"
