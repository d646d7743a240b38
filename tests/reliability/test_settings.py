"""Every setting of every plugin missing or of the wrong type, from the plugins' own schemas
(declared once in contactsync.settings): the plugin refuses to start and names the setting.
Then settings of the right type but a wrong value, run as processes: a clear message naming
the setting, nothing written, no secret in the log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from contactsync_mapper.mapper import ContactsyncMapper
from singer_sdk.exceptions import ConfigValidationError
from tap_outlook_contacts.tap import TapOutlookContacts
from tap_pipeliner_contacts.tap import TapPipelinerContacts
from target_outlook_contacts.target import TargetOutlookContacts
from target_pipeliner_contacts.target import TargetPipelinerContacts

from tests.reliability.conftest import Sync
from tests.support.plugins import run_plugin, singer_stream

PLUGINS: dict[str, Any] = {
    "tap-pipeliner-contacts": TapPipelinerContacts,
    "tap-outlook-contacts": TapOutlookContacts,
    "target-pipeliner-contacts": TargetPipelinerContacts,
    "target-outlook-contacts": TargetOutlookContacts,
    "contactsync-mapper": ContactsyncMapper,
}

VALID: dict[str, Any] = {
    "service_url": "https://127.0.0.1:9",
    "space_id": "space",
    "api_username": "u",
    "api_password": "p",
    "user_email": "alex@contoso.example",
    "authority": "https://127.0.0.1:9/tenant",
    "client_id": "client",
    "token_cache_path": "/nonexistent/cache.json",
    "direction": "pipeliner_to_outlook",
}


def _wrong(schema: dict[str, Any]) -> Any:
    """A value of a type the property does not allow."""
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if "enum" in schema:
        return "no-such-value"
    if "string" in types:
        return 12345
    return "not-a-number-or-flag"


def _cases() -> list[Any]:
    cases = []
    for name, plugin in PLUGINS.items():
        schema = plugin.config_jsonschema
        required = set(schema.get("required", []))
        for key, prop in schema["properties"].items():
            cases.append(pytest.param(name, key, "wrong", _wrong(prop), id=f"{name}-{key}-wrong"))
            if key in required:
                cases.append(pytest.param(name, key, "missing", None, id=f"{name}-{key}-missing"))
    return cases


def _config(plugin: Any) -> dict[str, Any]:
    keys = plugin.config_jsonschema["properties"]
    return {k: v for k, v in VALID.items() if k in keys}


def test_the_valid_base_configs_are_accepted() -> None:
    for plugin in PLUGINS.values():
        plugin(config=_config(plugin), validate_config=True)


@pytest.mark.parametrize(("name", "key", "how", "value"), _cases())
def test_a_setting_missing_or_of_the_wrong_type_is_named(
    name: str, key: str, how: str, value: Any, record_outcome: Any
) -> None:
    plugin = PLUGINS[name]
    config = _config(plugin)
    if how == "missing":
        config.pop(key, None)
    else:
        config[key] = value
    try:
        plugin(config=config, validate_config=True)
    except ConfigValidationError as refused:
        errors = " ".join(refused.errors)
    else:
        errors = "(accepted)"
    named = f"config['{key}']" in errors or f"'{key}' is a required property" in errors
    record_outcome(section="settings-schema", cell=f"{name} {key} {how}", survived=named)
    assert named, errors


def test_every_setting_is_covered() -> None:
    """Each plugin's every setting has a wrong-type case; each required one a missing case."""
    cases = _cases()
    settings = sum(len(p.config_jsonschema["properties"]) for p in PLUGINS.values())
    required = sum(len(p.config_jsonschema.get("required", [])) for p in PLUGINS.values())
    assert len(cases) == settings + required


# --- right type, wrong value: at run time ---------------------------------------------------

MARKER = "Marker-set-7f1d-not-a-secret"

#: (plugin, settings to change, what the message must contain)
RUNTIME = [
    ("target-outlook-contacts", {"graph_url": "http://graph.example"}, "graph_url"),
    ("target-outlook-contacts", {"authority": "http://login.example/tenant"}, "authority"),
    ("target-outlook-contacts", {"mailbox": "nobody@contoso.example"}, "nobody@contoso.example"),
    ("target-outlook-contacts", {"folder": "No Such Folder", "create_folder": False}, "folder"),
    ("target-outlook-contacts", {"token_cache_path": None}, "token_cache_path"),
    ("target-outlook-contacts", {"ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle"),
    (
        "target-outlook-contacts",
        {"ledger_url": f"postgresql://sync:{MARKER}@127.0.0.1:1/ledger"},
        "ledger",
    ),
    (
        "target-outlook-contacts",
        {"sync_type": "one_way_all_contacts", "sync_option": "owner"},
        "sync_option",
    ),
    ("target-pipeliner-contacts", {"space_id": "no-such-space"}, "space"),
    ("target-pipeliner-contacts", {"user_email": "nobody@contoso.example"}, "user_email"),
    ("target-pipeliner-contacts", {"api_password": MARKER}, "api_password"),
    ("tap-outlook-contacts", {"graph_url": "https://127.0.0.1:9"}, "127.0.0.1:9"),
]


@pytest.mark.parametrize(
    ("plugin", "change", "message"),
    RUNTIME,
    ids=[f"{p}-{'+'.join(c)}" for p, c, _ in RUNTIME],
)
def test_a_wrong_setting_value_stops_with_its_name_and_writes_nothing(
    plugin: str, change: dict[str, Any], message: str, sync: Sync, record_outcome: Any
) -> None:
    sync.pipeliner.seed([])
    sync.outlook.new_folder(sync.folder)
    config = {k: v for k, v in {**sync.config(plugin), **change}.items() if v is not None}
    if plugin.startswith("target-outlook"):
        record = {"_source_id": "p-1", "givenName": "Set", "surname": "Tings"}
        stdin = singer_stream(
            [record],
            {
                "type": "object",
                "properties": {
                    "_source_id": {"type": "string"},
                    "givenName": {"type": "string"},
                    "surname": {"type": "string"},
                },
            },
        )
    elif plugin.startswith("target-pipeliner"):
        record = {"_source_id": "o-1", "first_name": "Set", "last_name": "Tings"}
        stdin = singer_stream(
            [record],
            {
                "type": "object",
                "properties": {
                    "_source_id": {"type": "string"},
                    "first_name": {"type": "string"},
                    "last_name": {"type": "string"},
                },
            },
        )
    else:
        stdin = None
    config.setdefault("max_attempts", 2)
    config.setdefault("request_budget_seconds", 5)
    run = run_plugin(plugin, config, sync.workdir, stdin=stdin, timeout=90)
    written = len(sync.outlook_contacts()) + len(sync.pipeliner.contacts())
    ok = run.returncode != 0 and message in run.stderr and MARKER not in run.stderr
    record_outcome(
        section="settings",
        cell=f"{plugin}: {json.dumps(change)}",
        survived=ok and written == 0,
    )
    assert run.returncode != 0
    assert message in run.stderr, run.stderr[-2000:]
    assert MARKER not in run.stderr
    assert written == 0
    report = Path(sync.workdir / f"{plugin}.report.json")
    if report.exists():
        assert MARKER not in report.read_text()


@pytest.mark.parametrize(
    ("policy", "refused"),
    [(None, False), ("pipeliner_wins", False), ("outlook_wins", True), ("newest_wins", True)],
)
def test_a_one_way_outlook_target_refuses_a_policy_other_than_pipeliner_wins(
    policy: str | None, refused: bool
) -> None:
    """A one-way sync never reads Outlook back: only Pipeliner's values can win."""
    config = {**_config(TargetOutlookContacts), "sync_type": "one_way_your_contacts"}
    if policy is not None:
        config["conflict_policy"] = policy
    if not refused:
        TargetOutlookContacts(config=config, validate_config=True)
        return
    with pytest.raises(ConfigValidationError) as raised:
        TargetOutlookContacts(config=config, validate_config=True)
    assert f"conflict_policy {policy!r} does not apply to a one-way sync" in str(
        raised.value.errors
    )
