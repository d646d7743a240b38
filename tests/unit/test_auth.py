"""contactsync.outlook.auth: MSAL, unmodified, obtains tokens from the identity-provider emulator
over TLS in all three flows (device code, silent refresh from the cache file, client
credentials)."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import requests

from contactsync.outlook.auth import (
    AUTH_SETTINGS_SCHEMA,
    GRAPH_SCOPES_APP,
    GRAPH_SCOPES_DELEGATED,
    AuthConfigError,
    AuthError,
    AuthSettings,
    BearerAuth,
    TokenProvider,
)
from contactsync_sandbox.tokens import REGISTRY

ALEX = "alex@contoso.example"
MEGAN = "megan@contoso.example"
ALEX_ID = "d0000000-0000-4000-8000-000000000001"
REPO = Path(__file__).resolve().parents[2]


class Idp:
    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.info = sandbox.info
        self.authority = sandbox.info["authority"]
        self.client_id = sandbox.info["identity_client_id"]
        self.secret = sandbox.info["identity_client_secret"]
        self.ca = str(sandbox.ca_path)
        self.control = sandbox.control("identity")

    def ctl(self, method: str, path: str, body: Any = None) -> Any:
        response = self.control.session.request(
            method, f"{self.control.control_url}/identity{path}", json=body, timeout=10
        )
        assert response.status_code < 400, response.text
        return response.json()

    def settings(self, tmp_path: Path, **overrides: Any) -> AuthSettings:
        values: dict[str, Any] = {
            "authority": self.authority,
            "client_id": self.client_id,
            "token_cache_path": str(tmp_path / "cache" / "tokens.json"),
            "ca_bundle": self.ca,
        }
        values.update(overrides)
        return AuthSettings(**values)

    def approve_when_pending(self, upn: str = ALEX, deny: bool = False) -> Approver:
        return Approver(self, upn, deny)

    def refresh_tokens(self, status: str | None = None) -> list[dict[str, Any]]:
        query = f"?status={status}" if status else ""
        return self.ctl("GET", f"/refresh-tokens{query}")["refresh_tokens"]


class Approver(threading.Thread):
    """The person at the browser: waits for a pending device code, then Accepts (or Cancels)."""

    def __init__(self, idp: Idp, upn: str, deny: bool) -> None:
        super().__init__(daemon=True)
        self.idp, self.upn, self.deny = idp, upn, deny
        self.user_code: str | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                pending = self.idp.ctl("GET", "/device?status=pending")["device_codes"]
                if pending:
                    self.user_code = pending[0]["user_code"]
                    if self.deny:
                        self.idp.ctl("POST", "/device/deny", {"user_code": self.user_code})
                    else:
                        body = {"user_code": self.user_code, "upn": self.upn}
                        self.idp.ctl("POST", "/device/approve", body)
                    return
                time.sleep(0.05)
            raise TimeoutError("no device code became pending")
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> str:
        self.join(10)
        if self.error is not None:
            raise self.error
        assert self.user_code
        return self.user_code


@pytest.fixture
def idp(sandbox):
    control = sandbox.control("identity")
    control.reset()
    client = Idp(sandbox)
    client.ctl("POST", "/settings", {"device_code_interval": 1})
    return client


def login(idp: Idp, settings: AuthSettings, upn: str = ALEX) -> tuple[TokenProvider, dict]:
    provider = TokenProvider(settings)
    approver = idp.approve_when_pending(upn)
    messages: list[str] = []
    account = provider.login_device_code(echo=messages.append, timeout=20)
    user_code = approver.finish()
    assert len(messages) == 1 and user_code in messages[0]
    return provider, account


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def cache_refresh_tokens(path: str | Path) -> list[str]:
    data = json.loads(Path(path).read_text())
    return [rt["secret"] for rt in data.get("RefreshToken", {}).values()]


# --------------------------------------------------------------------------- device code


def test_device_code_login_then_silent_from_the_cache_in_a_new_provider(idp, tmp_path):
    settings = idp.settings(tmp_path)
    provider = TokenProvider(settings)
    approver = idp.approve_when_pending(ALEX)
    messages: list[str] = []
    account = provider.login_device_code(echo=messages.append, timeout=20)
    user_code = approver.finish()

    assert len(messages) == 1
    assert user_code in messages[0]
    assert f"{idp.info['urls']['identity']}/devicelogin" in messages[0]
    assert account["username"] == ALEX and account["name"] == "Alex Wilber"
    assert account["home_account_id"] == f"{ALEX_ID}.{idp.info['identity_tenant_id']}"
    assert account["token_cache_path"] == settings.token_cache_path
    assert mode(settings.token_cache_path) == 0o600
    assert provider.accounts() == [ALEX]

    fresh = TokenProvider(settings)  # as in the next run: only the file is shared
    token = fresh.token()
    grant = REGISTRY.lookup(token)
    assert grant is not None and not grant.expired
    assert (grant.mailbox_id, grant.upn) == (ALEX_ID, ALEX)
    assert grant.has_scope("Contacts.ReadWrite")
    assert fresh.token() == token  # cached, no refresh
    assert idp.refresh_tokens("rotated") == []


def test_contactsync_login_as_a_subprocess_then_silent_sign_in(idp, tmp_path):
    cache = tmp_path / "login" / "cache.json"
    env = {
        **os.environ,
        "CONTACTSYNC_AUTHORITY": idp.authority,
        "CONTACTSYNC_CLIENT_ID": idp.client_id,
        "CONTACTSYNC_TOKEN_CACHE": str(cache),
    }
    approver = idp.approve_when_pending(ALEX)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "contactsync.ops.cli",
            "login",
            "--ca-bundle",
            idp.ca,
            "--timeout",
            "20",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    user_code = approver.finish()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert user_code in lines[0] and "/devicelogin" in lines[0]
    assert lines[-1] == f"Signed in as {ALEX}; token cache: {cache} (mode 0600)"
    assert mode(cache) == 0o600

    provider = TokenProvider(idp.settings(tmp_path, token_cache_path=str(cache)))
    grant = REGISTRY.lookup(provider.token())
    assert grant is not None and grant.upn == ALEX


def test_contactsync_cli_arguments(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CONTACTSYNC_")
    }  # no defaults from the caller's shell

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "contactsync.ops.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert run("--help").returncode == 0
    helped = run("login", "--help")
    assert helped.returncode == 0 and "CONTACTSYNC_TOKEN_CACHE" in helped.stdout
    missing = run("login")
    assert missing.returncode == 2
    assert "--authority" in missing.stderr and "--token-cache" in missing.stderr
    plain_http = run(
        "login", "--authority", "http://127.0.0.1:1/t", "--client-id", "x", "--token-cache", "c"
    )
    assert plain_http.returncode == 2 and "https" in plain_http.stderr
    assert run().returncode == 2
    assert run("nonsense").returncode == 2
    scripts = tomllib.loads((REPO / "core" / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["contactsync"] == "contactsync.ops.cli:main"


def test_device_flow_declined_and_timed_out(idp, tmp_path):
    provider = TokenProvider(idp.settings(tmp_path))
    approver = idp.approve_when_pending(deny=True)
    with pytest.raises(AuthError, match="declined"):
        provider.login_device_code(echo=lambda m: None, timeout=20)
    approver.finish()

    started = time.monotonic()
    with pytest.raises(AuthError, match=r"not completed within 1\.5 s"):
        provider.login_device_code(echo=lambda m: None, timeout=1.5)
    assert time.monotonic() - started < 5
    assert not Path(provider.settings.token_cache_path).exists()


def test_a_registration_without_public_client_flows_is_named_in_the_error(idp, tmp_path):
    seed = idp.control.state()
    seed["app_registrations"][0]["allow_public_client"] = False
    idp.control.seed(seed)
    provider = TokenProvider(idp.settings(tmp_path))
    approver = idp.approve_when_pending(ALEX)
    # Entra answers the device-code redemption with AADSTS7000218; the message must name the
    # switch to turn on, not suggest a wrong client_id.
    with pytest.raises(AuthError, match='"Allow public client flows"') as raised:
        provider.login_device_code(echo=lambda m: None, timeout=20)
    approver.finish()
    assert "AADSTS7000218" in str(raised.value) and "check client_id" not in str(raised.value)
    assert not Path(provider.settings.token_cache_path).exists()


def test_login_as_another_account_than_asked_keeps_nothing(idp, tmp_path):
    provider = TokenProvider(idp.settings(tmp_path, account=MEGAN))
    approver = idp.approve_when_pending(ALEX)
    with pytest.raises(AuthError, match=f"signed in as {ALEX}, but the account to use is {MEGAN}"):
        provider.login_device_code(echo=lambda m: None, timeout=20)
    approver.finish()
    assert provider.accounts() == []


def test_several_accounts_need_the_account_setting(idp, tmp_path):
    settings = idp.settings(tmp_path)
    login(idp, settings, ALEX)
    login(idp, settings, MEGAN)
    with pytest.raises(AuthError, match="several accounts"):
        TokenProvider(settings).token()
    megan = TokenProvider(idp.settings(tmp_path, account=MEGAN))
    assert megan.accounts() == [ALEX, MEGAN]
    assert REGISTRY.lookup(megan.token()).upn == MEGAN
    nobody = TokenProvider(idp.settings(tmp_path, account="lynne@contoso.example"))
    with pytest.raises(AuthError, match=r"not signed in as lynne@contoso\.example") as err:
        nobody.token()
    assert "contactsync login" in str(err.value) and "--account lynne@contoso.example" in str(
        err.value
    )


def test_not_signed_in(idp, tmp_path):
    with pytest.raises(AuthError, match="not signed in") as err:
        TokenProvider(idp.settings(tmp_path)).token()
    assert "contactsync login --authority" in str(err.value)


# --------------------------------------------------------------------------- silent refresh


def test_refresh_after_the_access_tokens_expired(idp, tmp_path):
    settings = idp.settings(tmp_path)
    provider, _ = login(idp, settings)
    first = provider.token()
    rt_before = cache_refresh_tokens(settings.token_cache_path)
    expired = idp.ctl("POST", "/expire-access-tokens")["expired_access_tokens"]
    assert expired >= 1 and REGISTRY.lookup(first).expired

    # MSAL cannot know the server expired it: Graph answers 401, and the client refreshes once.
    assert provider.token() == first
    second = provider.refresh()
    assert second != first and not REGISTRY.lookup(second).expired
    assert provider.token() == second
    rt_after = cache_refresh_tokens(settings.token_cache_path)
    assert len(rt_after) == 1 and rt_after != rt_before  # rotated, and written back
    assert [t["status"] for t in idp.refresh_tokens()] == ["rotated", "active"]
    assert mode(settings.token_cache_path) == 0o600


def test_processes_sharing_a_cache_never_reuse_a_rotated_refresh_token(idp, tmp_path):
    settings = idp.settings(tmp_path)
    login(idp, settings)
    tap, target = TokenProvider(settings), TokenProvider(settings)
    assert tap.token() == target.token()
    a = tap.refresh()
    b = target.refresh()  # re-reads the file: uses the refresh token `tap` got
    assert b != a and not REGISTRY.lookup(b).expired
    # `a` failed in `tap`, but `target` already renewed it: that token is used, no refresh.
    assert tap.refresh(failed_token=a) == b
    c = tap.refresh()
    assert c not in (a, b) and not REGISTRY.lookup(c).expired
    assert [t["status"] for t in idp.refresh_tokens()] == ["rotated"] * 3 + ["active"]
    assert len(idp.refresh_tokens("active")) == 1


def test_concurrent_401s_refresh_once(idp, tmp_path):
    settings = idp.settings(tmp_path)
    provider, _ = login(idp, settings)
    provider.token()
    results: list[str] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        results.append(provider.refresh())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(results) == 4
    rotated = len(idp.refresh_tokens("rotated"))
    assert 1 <= rotated < 4, "concurrent refreshes should coalesce"


def test_revoked_refresh_token_tells_to_sign_in_again(idp, tmp_path):
    settings = idp.settings(tmp_path)
    provider, _ = login(idp, settings)
    idp.ctl("POST", f"/users/{ALEX}/revoke", {"access_tokens": True})
    with pytest.raises(AuthError) as err:
        provider.refresh()
    message = str(err.value)
    assert "AADSTS50173" in message and ALEX in message
    assert "sign in again with `contactsync login --authority" in message


def test_a_transient_503_from_the_token_endpoint_is_retried(idp, tmp_path):
    settings = idp.settings(tmp_path)
    provider, _ = login(idp, settings)
    idp.control.fail_5xx(1, status=503, path_prefix="/", method="POST")
    assert provider.refresh()


def test_a_loose_cache_file_mode_is_tightened(idp, tmp_path):
    settings = idp.settings(tmp_path)
    login(idp, settings)
    os.chmod(settings.token_cache_path, 0o644)
    assert TokenProvider(settings).token()
    assert mode(settings.token_cache_path) == 0o600


def test_a_corrupt_cache_file(idp, tmp_path):
    settings = idp.settings(tmp_path)
    path = Path(settings.token_cache_path)
    path.parent.mkdir(parents=True)
    path.write_text("not json")
    with pytest.raises(AuthError, match="not an MSAL token cache"):
        TokenProvider(settings).token()


# --------------------------------------------------------------------------- app-only


def test_app_only_client_credentials(idp, tmp_path):
    settings = idp.settings(tmp_path, client_secret=idp.secret, token_cache_path=None)
    assert settings.app_only and settings.scopes == GRAPH_SCOPES_APP
    provider = TokenProvider(settings)
    token = provider.token()
    grant = REGISTRY.lookup(token)
    assert grant is not None and grant.app_only and grant.client_id == idp.client_id
    assert provider.token() == token
    renewed = provider.refresh()
    assert renewed != token and REGISTRY.lookup(renewed).app_only
    with pytest.raises(AuthError, match="app-only"):
        provider.login_device_code(echo=print)


def test_wrong_client_id_and_wrong_secret(idp, tmp_path):
    wrong = "f0000000-0000-4000-8000-0000000000ff"
    with pytest.raises(AuthError) as err:
        TokenProvider(idp.settings(tmp_path, client_id=wrong)).login_device_code(echo=print)
    assert f"client_id {wrong!r}" in str(err.value) and "AADSTS700016" in str(err.value)
    app_only = idp.settings(tmp_path, client_id=wrong, client_secret=idp.secret)
    with pytest.raises(AuthError, match=f"client_id {wrong!r}"):
        TokenProvider(app_only).token()
    bad_secret = "definitely-wrong-secret"
    with pytest.raises(AuthError) as err:
        TokenProvider(idp.settings(tmp_path, client_secret=bad_secret)).token()
    assert "client_secret" in str(err.value) and bad_secret not in str(err.value)


# --------------------------------------------------------------------------- failures to reach


def test_unreachable_authority_fails_fast_naming_the_url(idp, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    authority = f"https://127.0.0.1:{port}/{idp.info['identity_tenant_id']}"
    provider = TokenProvider(idp.settings(tmp_path, authority=authority))
    started = time.monotonic()
    with pytest.raises(AuthError) as err:
        provider.token()
    assert time.monotonic() - started < 3
    assert authority in str(err.value) and "cannot reach" in str(err.value)


def test_untrusted_certificate_and_unknown_tenant(idp, tmp_path):
    default_trust = idp.settings(tmp_path, ca_bundle=None)
    with pytest.raises(AuthError, match=r"TLS verification .* ca_bundle"):
        TokenProvider(default_trust).token()
    unknown = f"{idp.info['urls']['identity']}/nope.example"
    with pytest.raises(AuthError, match="AADSTS90002") as err:
        TokenProvider(idp.settings(tmp_path, authority=unknown)).token()
    assert unknown in str(err.value) and "tenant" in str(err.value)


# --------------------------------------------------------------------------- secrets & logs


def test_no_token_or_secret_in_any_log_line_and_the_cache_stays_0600(idp, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    settings = idp.settings(tmp_path)
    provider, _ = login(idp, settings)
    tokens = [provider.token()]
    idp.ctl("POST", "/expire-access-tokens")
    tokens.append(provider.refresh())
    assert mode(settings.token_cache_path) == 0o600
    tokens.append(provider.refresh())
    app = TokenProvider(idp.settings(tmp_path, client_secret=idp.secret, token_cache_path=None))
    tokens += [app.token(), app.refresh()]
    idp.ctl("POST", f"/users/{ALEX}/revoke")
    with pytest.raises(AuthError) as err:
        provider.refresh()

    secrets = [*tokens, idp.secret, *(t["refresh_token"] for t in idp.refresh_tokens())]
    assert len(secrets) >= 8
    records = [r.getMessage() for r in caplog.records]
    assert any("signed in as alex@contoso.example" in line for line in records)
    assert any(r.name.startswith("msal") for r in caplog.records)  # MSAL's DEBUG lines included
    for line in [*records, str(err.value), repr(settings), repr(provider)]:
        for secret in secrets:
            assert secret not in line
    assert mode(settings.token_cache_path) == 0o600


# --------------------------------------------------------------------------- settings & auth


def test_settings_validation_and_from_config(tmp_path):
    ok = {"authority": "https://login.microsoftonline.com/contoso.example/", "client_id": " c "}
    settings = AuthSettings(**ok, token_cache_path=str(tmp_path / "c.json"))
    assert settings.authority == "https://login.microsoftonline.com/contoso.example"
    assert settings.client_id == "c" and not settings.app_only
    assert settings.scopes == GRAPH_SCOPES_DELEGATED == ["Contacts.ReadWrite"]

    def refused(match: str, **values: Any) -> None:
        with pytest.raises(AuthConfigError, match=match):
            AuthSettings(**{**ok, "token_cache_path": "c.json", **values})

    refused("https", authority="http://login.microsoftonline.com/t")
    refused("no tenant", authority="https://login.microsoftonline.com/")
    refused("authority is empty", authority="")
    refused("client_id is empty", client_id=" ")
    refused("token_cache_path is empty", token_cache_path=None)
    refused("ca_bundle", ca_bundle=str(tmp_path / "missing.pem"))
    refused("is a directory", token_cache_path=str(tmp_path))

    config = {
        **ok,
        "client_secret": "s3cret",
        "mailbox": MEGAN,
        "ca_bundle": "",
        "token_cache_path": "",
    }
    app = AuthSettings.from_config(config)
    assert app.app_only and app.account == MEGAN and app.ca_bundle is None
    assert "s3cret" not in repr(app)
    delegated = AuthSettings.from_config({**ok, "mailbox": "me", "token_cache_path": "~/t.json"})
    assert delegated.account is None and delegated.token_cache_path == str(Path.home() / "t.json")
    assert set(AUTH_SETTINGS_SCHEMA) == {
        "authority",
        "client_id",
        "client_secret",
        "token_cache_path",
        "ca_bundle",
        "account",
    }
    assert AUTH_SETTINGS_SCHEMA["client_secret"]["secret"] is True
    assert AUTH_SETTINGS_SCHEMA["client_secret"]["writeOnly"] is True


def test_bearer_auth_uses_the_current_token():
    class Provider:
        def __init__(self) -> None:
            self.value = "t1"

        def token(self) -> str:
            return self.value

    provider = Provider()
    auth = BearerAuth(provider)  # type: ignore[arg-type]
    first = requests.Request("GET", "https://graph.example/v1.0/me", auth=auth).prepare()
    assert first.headers["Authorization"] == "Bearer t1"
    provider.value = "t2"
    second = requests.Request("GET", "https://graph.example/v1.0/me", auth=auth).prepare()
    assert second.headers["Authorization"] == "Bearer t2"
    assert "t2" not in repr(auth)
