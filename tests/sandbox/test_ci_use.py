"""The sandbox as another project's CI fixture: `serve --seed` / `env` / `export` as processes,
the environment of one user (signed in, usable by the plugins' own sign-in code), and the
pytest plugin's markers and fixtures. Meltano runs are in examples/ci (tests/e2e)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from contactsync.outlook.auth import AuthSettings, BearerAuth, TokenProvider
from contactsync_sandbox import connect, instance
from contactsync_sandbox.handle import SandboxHandle, UnknownUser
from contactsync_sandbox.instance import SandboxNotRunning
from contactsync_sandbox.plugin_env import NAMESPACES, OPTION_NAMESPACES, render
from contactsync_sandbox.runner import Sandbox

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ci"
EXAMPLE_SEED = EXAMPLE / "tests" / "fixtures" / "seed.json"
CLI = str(Path(sys.executable).parent / "contactsync-sandbox")
ALEX = "alex@contoso.example"


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def test_serve_seed_then_env_and_export_from_other_processes(tmp_path):
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTSYNC_")}
    env["CONTACTSYNC_SANDBOX_STATE_DIR"] = str(state)
    server = subprocess.Popen(
        [CLI, "serve", "--free-ports", "--seed", str(EXAMPLE_SEED)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        # `env` is started at once, as `serve ... &` then `eval "$(... env ...)"` would: it waits.
        exported = _cli("env", "--user", ALEX, "--job", "two-way-your-contacts", env=env)
        assert exported.returncode == 0, exported.stderr
        info = json.loads((state / "sandbox.json").read_text())
        assert info["pid"] == server.pid
        assert info["pipeliner_space_id"] == "5a5a5a5a-0000-4000-8000-0000000000c1"
        variables = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1)
            for line in exported.stdout.splitlines()
        )
        assert variables["TAP_PIPELINER_CONTACTS_SPACE_ID"] == info["pipeliner_space_id"]
        assert variables["TAP_PIPELINER_CONTACTS_API_USERNAME"] == "ci-example"
        assert variables["TAP_OUTLOOK_CONTACTS_CLIENT_ID"] == "f0000000-0000-4000-8000-0000000000c1"
        assert variables["TAP_OUTLOOK_CONTACTS_AUTHORITY"] == info["authority"]
        session = Path(info["session_dir"]) / ALEX
        assert variables["TARGET_OUTLOOK_CONTACTS_REPORT_PATH"] == str(
            session / "reports" / "two-way-your-contacts" / "pipeliner-to-outlook.json"
        )
        cache = Path(variables["TAP_OUTLOOK_CONTACTS_TOKEN_CACHE_PATH"])
        assert cache.parent == session and cache.stat().st_mode & 0o777 == 0o600

        as_json = _cli("env", "--user", ALEX, "--format", "json", env=env)
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout)["TAP_OUTLOOK_CONTACTS_TOKEN_CACHE_PATH"] == str(cache)
        unknown = _cli("env", "--user", "bob@contoso.example", env=env)
        assert unknown.returncode == 1
        assert "bob@contoso.example is not a Pipeliner user of the sandbox" in unknown.stderr
        assert "alex@contoso.example, megan@contoso.example" in unknown.stderr

        dump = _cli("export", env=env)
        assert dump.returncode == 0, dump.stderr
        seed = json.loads(dump.stdout)
        assert {c["email1"] for c in seed["pipeliner"]["contacts"]} == {
            "ada@fabrikam.example",
            "grace@navy.example",
            "alan@bletchley.example",
        }
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=15)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0
    assert not (state / "sandbox.json").exists()
    gone = _cli("env", "--user", ALEX, "--wait", "0", env=env)
    assert gone.returncode == 1 and "no sandbox is running" in gone.stderr


def _delegated_token_works(handle: SandboxHandle, env: dict[str, str]) -> None:
    """The plugins' own sign-in code (contactsync.outlook.auth) gets a token from the cache and
    Graph accepts it for the user's mailbox."""
    settings = AuthSettings(
        authority=env["TAP_OUTLOOK_CONTACTS_AUTHORITY"],
        client_id=env["TAP_OUTLOOK_CONTACTS_CLIENT_ID"],
        token_cache_path=env["TAP_OUTLOOK_CONTACTS_TOKEN_CACHE_PATH"],
        ca_bundle=env["TAP_OUTLOOK_CONTACTS_CA_BUNDLE"],
    )
    provider = TokenProvider(settings)
    try:
        with handle.session() as http:
            reply = http.get(
                f"{env['TAP_OUTLOOK_CONTACTS_GRAPH_URL']}/v1.0/me/contactFolders",
                auth=BearerAuth(provider),
                timeout=10,
            )
    finally:
        provider.close()
    assert reply.status_code == 200, reply.text


@pytest.mark.sandbox_seed("../../examples/ci/tests/fixtures/seed.json")
@pytest.mark.sandbox_fault("pipeliner", "5xx", count=1, status=502)
@pytest.mark.sandbox_fault("outlook", "latency", seconds=0.01, count=1)
@pytest.mark.sandbox_fault("login", "429", count=2, retry_after=0.1)
def test_fixtures_seed_sign_in_and_schedule_faults(seeded_sandbox, sandbox_user, sandbox_env):
    assert sandbox_user == ALEX  # the seed's first user with a mailbox
    assert sandbox_env["TAP_PIPELINER_CONTACTS_SPACE_ID"] == "5a5a5a5a-0000-4000-8000-0000000000c1"
    assert sandbox_env["TAP_OUTLOOK_CONTACTS_MAILBOX"] == "me"
    assert Path(sandbox_env["MELTANO_DATABASE_URI"].removeprefix("sqlite:///")).parent.is_dir()
    assert {f["kind"] for f in seeded_sandbox.control("pipeliner").faults()} == {"5xx"}
    assert {f["kind"] for f in seeded_sandbox.control("graph").faults()} == {"latency"}
    # The sign-in went around the faults meant for the plugins' own token requests.
    (login,) = seeded_sandbox.control("identity").faults()
    assert (login["kind"], login["remaining"], login["retry_after"]) == ("429", 2, 0.1)
    seeded_sandbox.clear_faults()
    _delegated_token_works(seeded_sandbox, sandbox_env)
    identity = seeded_sandbox.control("identity")
    codes = len(identity._call("GET", "/identity/device")["device_codes"])
    again = seeded_sandbox.env(sandbox_user)  # signed in already: no new device code
    assert again == sandbox_env
    assert len(identity._call("GET", "/identity/device")["device_codes"]) == codes
    with pytest.raises(FileNotFoundError, match="no report at"):
        seeded_sandbox.report("outlook-to-pipeliner")


@pytest.mark.parametrize(
    "sandbox_seed",
    [{"pipeliner": {"contacts": [{"owner_id": "megan@contoso.example", "first_name": "Only"}]}}],
    indirect=True,
)
def test_a_seed_given_as_a_parameter(seeded_sandbox):
    (only,) = seeded_sandbox.pipeliner_contacts()
    assert only["owner_id"] == "c0000000-0000-4000-8000-000000000002"
    assert seeded_sandbox.outlook(ALEX).folders()[0]["path"] == "Contacts"


def test_app_only_env_and_who_may_sign_in(seeded_sandbox, tmp_path):
    env = seeded_sandbox.env(ALEX, app_only=True, job="one-way-all-contacts")
    assert (
        env["TAP_OUTLOOK_CONTACTS_CLIENT_SECRET"] == seeded_sandbox.info["identity_client_secret"]
    )
    assert env["TARGET_OUTLOOK_CONTACTS_MAILBOX"] == ALEX
    assert not any(k.endswith("TOKEN_CACHE_PATH") for k in env)
    assert not any(k.endswith("SYNC_OPTION") for k in env)
    assert env["TARGET_PIPELINER_CONTACTS_REPORT_PATH"].endswith(
        "/reports/one-way-all-contacts/outlook-to-pipeliner.json"
    )
    with pytest.raises(ValueError, match="takes no sync option"):
        seeded_sandbox.env(ALEX, job="one-way-all-contacts", sync_option="owner")
    option = seeded_sandbox.env(ALEX, sync_option="owner_or_editor", data_dir=tmp_path)
    assert {k for k in option if k.endswith("_SYNC_OPTION")} == {
        f"{n}_SYNC_OPTION" for n in OPTION_NAMESPACES
    }
    assert option["TARGET_PIPELINER_CONTACTS_LEDGER_URL"] == str(tmp_path / ALEX / "ledger.sqlite")
    seeded_sandbox.seed({"microsoft": {"mailboxes": [{"user_principal_name": ALEX}]}})
    with pytest.raises(UnknownUser, match=r"megan@contoso\.example has no mailbox"):
        seeded_sandbox.env("megan@contoso.example")


def test_faults_by_name(seeded_sandbox):
    seeded_sandbox.fault("login", "429", count=1, retry_after=0.1)
    assert seeded_sandbox.control("identity").faults()[0]["kind"] == "429"
    with pytest.raises(ValueError, match="unknown service 'crm'"):
        seeded_sandbox.fault("crm", "5xx")
    with pytest.raises(ValueError, match="unknown fault 'slow'"):
        seeded_sandbox.fault("outlook", "slow")


def test_formats():
    env = {"A": "one two", "B": "it's"}
    assert render(env, "export") == "export A='one two'\nexport B='it'\"'\"'s'"
    assert render(env, "dotenv") == "A=one two\nB=it's"
    assert json.loads(render(env, "json")) == env
    with pytest.raises(ValueError, match="line break"):
        render({"A": "x\ny"}, "dotenv")


def _kind(kind: str | None) -> str:
    """How Meltano hands the value over: options are strings too."""
    return "string" if kind in (None, "string", "options") else kind


def _settings(meltano_yml: Path) -> dict[str, dict[str, Any]]:
    project = yaml.safe_load(meltano_yml.read_text())
    plugins = [p for kind in project["plugins"].values() for p in kind]
    return {
        p["namespace"].upper(): {s["name"]: _kind(s.get("kind")) for s in p["settings"]}
        for p in plugins
        if "namespace" in p and "settings" in p
    }


def test_the_example_project_declares_every_variable_env_sets():
    example, ours = _settings(EXAMPLE / "meltano.yml"), _settings(ROOT / "meltano.yml")
    for namespace, settings in example.items():
        for name, kind in settings.items():  # the settings of contactsync's meltano.yml
            assert ours[namespace].get(name) == kind, (namespace, name)
    for namespace, settings in {**NAMESPACES, **dict.fromkeys(OPTION_NAMESPACES, ())}.items():
        declared = set(example[namespace])
        wanted = {s.lower() for s in settings}
        if namespace in OPTION_NAMESPACES:
            wanted.add("sync_option")
        assert wanted <= declared, (namespace, wanted - declared)


def test_connect_waits_for_a_sandbox_and_reads_its_current_data(tmp_path):
    started = time.monotonic()
    with pytest.raises(SandboxNotRunning, match="no sandbox is running"):
        connect(tmp_path, wait=0.3)
    assert time.monotonic() - started >= 0.3
    with Sandbox(tmp_path, free_ports=True) as running:
        published = instance.publish(tmp_path, running.info())
        with connect(tmp_path) as first:
            assert first.data_dir == Path(published["session_dir"])
            first.seed(EXAMPLE_SEED)  # what a test in another process may do
        with connect(tmp_path) as second:
            assert second.info["pipeliner_space_id"] == "5a5a5a5a-0000-4000-8000-0000000000c1"
            assert second.info["identity_client_id"] == "f0000000-0000-4000-8000-0000000000c1"
        instance.withdraw(tmp_path, published["instance"])
    with pytest.raises(SandboxNotRunning):
        connect(tmp_path)
