"""The identity-provider emulator over real HTTPS: discovery, the three grants, the control API."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from contactsync_sandbox.identity.jwt import decode_unverified
from contactsync_sandbox.seed import default_seed
from contactsync_sandbox.tokens import REGISTRY

MS = default_seed()["microsoft"]
TENANT = MS["tenant_id"]
CLIENT_ID = MS["app_registration"]["client_id"]
SECRET = MS["app_registration"]["client_secret"]
ALEX = "alex@contoso.example"
ALEX_ID = "d0000000-0000-4000-8000-000000000001"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"
DELEGATED = "Contacts.ReadWrite offline_access openid profile"


class Idp:
    """Raw OAuth calls to the emulator plus its control API."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.authority = sandbox.info["authority"]
        self.base = sandbox.url("identity")
        self.http = sandbox.session()
        self.control = sandbox.control("identity")

    def post(self, endpoint: str, data: dict[str, str], **kwargs: Any) -> Any:
        return self.http.post(
            f"{self.authority}/oauth2/v2.0/{endpoint}", data=data, timeout=10, **kwargs
        )

    def token(self, **data: str) -> Any:
        return self.post("token", data)

    def ctl(self, method: str, path: str, json_body: Any = None, status: int = 200) -> Any:
        response = self.http.request(
            method, f"{self.control.control_url}/identity{path}", json=json_body, timeout=10
        )
        assert response.status_code == status, response.text
        return response.json()

    def device_code(self, scope: str = DELEGATED) -> dict[str, Any]:
        response = self.post("devicecode", {"client_id": CLIENT_ID, "scope": scope})
        assert response.status_code == 200, response.text
        return response.json()

    def poll(self, device_code: str, client_id: str = CLIENT_ID) -> Any:
        return self.token(grant_type=DEVICE_GRANT, client_id=client_id, device_code=device_code)

    def sign_in(self, upn: str = ALEX, scope: str = DELEGATED) -> dict[str, Any]:
        flow = self.device_code(scope)
        self.ctl("POST", "/device/approve", {"user_code": flow["user_code"], "upn": upn})
        response = self.poll(flow["device_code"])
        assert response.status_code == 200, response.text
        return response.json()

    def refresh(self, refresh_token: str, scope: str | None = DELEGATED) -> Any:
        data = {"grant_type": "refresh_token", "client_id": CLIENT_ID}
        data["refresh_token"] = refresh_token
        if scope is not None:
            data["scope"] = scope
        return self.token(**data)


@pytest.fixture
def idp(sandbox):
    sandbox.control("identity").reset()
    client = Idp(sandbox)
    yield client
    client.http.close()


def oauth_error(response: Any, status: int, error: str, code: int | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error, body
    if code is not None:
        assert body["error_codes"] == [code]
        assert body["error_description"].startswith(f"AADSTS{code}:")
    assert "\r\nTrace ID: " in body["error_description"] and body["correlation_id"]
    return body


def b64json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# --------------------------------------------------------------------------- discovery


def test_info_names_the_authority_and_the_app(idp):
    info = idp.sandbox.info
    assert info["authority"] == f"{info['urls']['identity']}/{TENANT}"
    assert info["identity_tenant_id"] == TENANT
    assert info["identity_client_id"] == CLIENT_ID
    assert info["identity_client_secret"] == SECRET


def test_openid_discovery_has_what_msal_reads(idp):
    response = idp.http.get(f"{idp.authority}/v2.0/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200
    doc = response.json()
    assert doc["token_endpoint"] == f"{idp.authority}/oauth2/v2.0/token"
    assert doc["device_authorization_endpoint"] == f"{idp.authority}/oauth2/v2.0/devicecode"
    assert doc["authorization_endpoint"] == f"{idp.authority}/oauth2/v2.0/authorize"
    assert doc["issuer"] == f"{idp.authority}/v2.0"
    assert doc["jwks_uri"] == f"{idp.authority}/discovery/v2.0/keys"
    assert DEVICE_GRANT in doc["grant_types_supported"]


def test_discovery_accepts_the_tenant_domain_and_refuses_unknown_tenants(idp):
    by_domain = idp.http.get(
        f"{idp.base}/contoso.example/v2.0/.well-known/openid-configuration", timeout=10
    ).json()
    assert by_domain["token_endpoint"] == f"{idp.authority}/oauth2/v2.0/token"
    common = idp.http.get(f"{idp.base}/organizations/v2.0/.well-known/openid-configuration")
    assert common.json()["issuer"] == f"{idp.base}/{{tenantid}}/v2.0"
    unknown = idp.http.get(f"{idp.base}/nope.example/v2.0/.well-known/openid-configuration")
    oauth_error(unknown, 400, "invalid_tenant", 90002)


# --------------------------------------------------------------------------- client credentials


def test_client_credentials_issue_an_app_only_token_the_registry_knows(idp):
    response = idp.token(
        grant_type="client_credentials",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        scope=GRAPH_DEFAULT,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert "refresh_token" not in body and "id_token" not in body
    grant = REGISTRY.lookup(body["access_token"])
    assert grant is not None and grant.app_only and grant.upn is None
    assert grant.client_id == CLIENT_ID and grant.tenant_id == TENANT
    assert grant.has_scope("Contacts.ReadWrite") and not grant.expired


def test_client_credentials_with_http_basic(idp):
    response = idp.post(
        "token",
        {"grant_type": "client_credentials", "scope": GRAPH_DEFAULT},
        auth=(CLIENT_ID, SECRET),
    )
    assert response.status_code == 200, response.text


def test_client_credentials_refusals(idp):
    base = {"grant_type": "client_credentials", "scope": GRAPH_DEFAULT}
    wrong_secret = idp.token(**base, client_id=CLIENT_ID, client_secret="nope")
    body = oauth_error(wrong_secret, 401, "invalid_client", 7000215)
    assert "nope" not in body["error_description"]
    unknown = idp.token(
        **base, client_id="f0000000-0000-4000-8000-00000000dead", client_secret=SECRET
    )
    body = oauth_error(unknown, 400, "unauthorized_client", 700016)
    assert "f0000000-0000-4000-8000-00000000dead" in body["error_description"]
    no_secret = idp.token(**base, client_id=CLIENT_ID)
    oauth_error(no_secret, 401, "invalid_client", 7000218)
    not_default = idp.token(
        grant_type="client_credentials",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        scope="Contacts.ReadWrite",
    )
    oauth_error(not_default, 400, "invalid_scope", 1002012)
    other_resource = idp.token(
        grant_type="client_credentials",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        scope="https://outlook.office.com/.default",
    )
    oauth_error(other_resource, 400, "invalid_resource", 500011)
    oauth_error(idp.token(client_id=CLIENT_ID), 400, "invalid_request", 900144)
    oauth_error(
        idp.token(grant_type="password", client_id=CLIENT_ID), 400, "unsupported_grant_type", 70003
    )


# --------------------------------------------------------------------------- device code


def test_device_code_is_pending_until_approved_then_yields_tokens(idp):
    flow = idp.device_code()
    assert set(flow) == {
        "user_code",
        "device_code",
        "verification_uri",
        "expires_in",
        "interval",
        "message",
    }
    assert flow["verification_uri"] == f"{idp.base}/devicelogin"
    assert flow["expires_in"] == 900 and flow["interval"] == 5
    assert flow["user_code"] in flow["message"] and flow["verification_uri"] in flow["message"]
    oauth_error(idp.poll(flow["device_code"]), 400, "authorization_pending", 70016)

    pending = idp.ctl("GET", "/device?status=pending")["device_codes"]
    assert [(p["user_code"], p["polls"]) for p in pending] == [(flow["user_code"], 1)]
    approved = idp.ctl("POST", "/device/approve", {"user_code": flow["user_code"], "upn": ALEX})
    assert approved["status"] == "approved" and approved["upn"] == ALEX

    response = idp.poll(flow["device_code"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(DELEGATED.split()) == set(body["scope"].split())
    assert body["refresh_token"] and body["expires_in"] == 3600
    assert b64json(body["client_info"]) == {"uid": ALEX_ID, "utid": TENANT}
    claims = decode_unverified(body["id_token"])
    assert claims["aud"] == CLIENT_ID and claims["iss"] == f"{idp.authority}/v2.0"
    assert claims["preferred_username"] == ALEX and claims["oid"] == ALEX_ID
    assert claims["tid"] == TENANT and claims["exp"] > time.time()
    grant = REGISTRY.lookup(body["access_token"])
    assert grant is not None and not grant.app_only
    assert (grant.mailbox_id, grant.upn) == (ALEX_ID, ALEX)
    assert grant.scopes == frozenset({"Contacts.ReadWrite"})
    # A device code is redeemed once.
    oauth_error(idp.poll(flow["device_code"]), 400, "invalid_grant", 54005)
    assert idp.ctl("GET", "/device?status=pending")["device_codes"] == []


def test_id_token_signature_verifies_with_the_published_key(idp):
    body = idp.sign_in()
    header_b64, claims_b64, signature_b64 = body["id_token"].split(".")
    header = b64json(header_b64)
    assert header["alg"] == "RS256"
    keys = idp.http.get(f"{idp.authority}/discovery/v2.0/keys", timeout=10).json()["keys"]
    (jwk,) = [k for k in keys if k["kid"] == header["kid"]]

    def number(value: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")

    public = rsa.RSAPublicNumbers(number(jwk["e"]), number(jwk["n"])).public_key()
    signature = base64.urlsafe_b64decode(signature_b64 + "=" * (-len(signature_b64) % 4))
    public.verify(
        signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )


def test_device_code_denied_expired_unknown(idp):
    denied = idp.device_code()
    result = idp.ctl("POST", "/device/deny", {"user_code": denied["user_code"]})
    assert result["status"] == "denied"
    oauth_error(idp.poll(denied["device_code"]), 400, "authorization_declined", 65004)
    # Deciding twice is a conflict.
    idp.ctl("POST", "/device/approve", {"user_code": denied["user_code"], "upn": ALEX}, status=409)

    idp.ctl("POST", "/settings", {"device_code_lifetime": 0.3})
    expired = idp.device_code()
    assert expired["expires_in"] == 0
    time.sleep(0.35)
    oauth_error(idp.poll(expired["device_code"]), 400, "expired_token", 70019)
    assert (
        idp.ctl("GET", "/device?status=expired")["device_codes"][0]["user_code"]
        == (expired["user_code"])
    )
    idp.ctl("POST", "/device/approve", {"user_code": expired["user_code"], "upn": ALEX}, status=409)

    oauth_error(idp.poll("sbxdc.never-issued"), 400, "bad_verification_code")
    idp.ctl("POST", "/device/approve", {"user_code": "NOSUCHCODE", "upn": ALEX}, status=404)


def test_device_code_approval_checks_user_and_scope(idp):
    flow = idp.device_code()
    idp.ctl(
        "POST",
        "/device/approve",
        {"user_code": flow["user_code"], "upn": "nobody@contoso.example"},
        status=404,
    )
    # Without user_code, the only pending code is approved.
    assert idp.ctl("POST", "/device/approve", {"upn": "megan@contoso.example"})["status"] == (
        "approved"
    )
    grant = REGISTRY.lookup(idp.poll(flow["device_code"]).json()["access_token"])
    assert grant is not None and grant.upn == "megan@contoso.example"

    refused = idp.post("devicecode", {"client_id": CLIENT_ID, "scope": "Mail.Read openid"})
    oauth_error(refused, 400, "invalid_scope", 70011)
    unknown = idp.post("devicecode", {"client_id": "not-registered", "scope": DELEGATED})
    oauth_error(unknown, 400, "unauthorized_client", 700016)


def test_device_code_needs_a_public_client_registration(idp):
    """Entra's default client type is confidential: without "Allow public client flows" the
    device-code redemption (no secret) is AADSTS7000218; with the secret it is a confidential
    client's request and goes through."""
    seed = idp.control.state()
    seed["app_registrations"][0]["allow_public_client"] = False
    idp.control.seed(seed)
    flow = idp.device_code()  # the device authorization itself is not refused
    idp.ctl("POST", "/device/approve", {"user_code": flow["user_code"], "upn": ALEX})
    oauth_error(idp.poll(flow["device_code"]), 401, "invalid_client", 7000218)
    with_secret = idp.token(
        grant_type=DEVICE_GRANT,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        device_code=flow["device_code"],
    )
    assert with_secret.status_code == 200, with_secret.text
    assert idp.control.state()["app_registrations"][0]["allow_public_client"] is False


def test_devicelogin_page_pick_the_account_and_accept(idp):
    flow = idp.device_code()
    page = idp.http.get(f"{flow['verification_uri']}?code={flow['user_code']}", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "alex@contoso.example" in page.text and "Accept" in page.text
    done = idp.http.post(
        flow["verification_uri"],
        data={"code": flow["user_code"].lower(), "upn": ALEX, "action": "accept"},
        timeout=10,
    )
    assert done.status_code == 200 and "signed in" in done.text
    assert idp.poll(flow["device_code"]).status_code == 200

    cancelled = idp.device_code()
    idp.http.post(
        cancelled["verification_uri"],
        data={"code": cancelled["user_code"], "action": "cancel"},
        timeout=10,
    )
    oauth_error(idp.poll(cancelled["device_code"]), 400, "authorization_declined")
    wrong = idp.http.post(flow["verification_uri"], data={"code": "XXXX", "upn": ALEX})
    assert wrong.status_code == 400 and "no device code" in wrong.text


# --------------------------------------------------------------------------- refresh tokens


def test_refresh_token_rotates_and_the_old_one_is_refused(idp):
    first = idp.sign_in()
    second = idp.refresh(first["refresh_token"])
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    assert REGISTRY.lookup(body["access_token"]).upn == ALEX
    assert "id_token" in body and b64json(body["client_info"])["uid"] == ALEX_ID

    reused = oauth_error(idp.refresh(first["refresh_token"]), 400, "invalid_grant", 70008)
    assert "rotated" in reused["error_description"]
    oauth_error(idp.refresh("sbxrt.never-issued"), 400, "invalid_grant", 70008)
    # No scope in the request: the original grant's scopes.
    third = idp.refresh(body["refresh_token"], scope=None)
    assert third.status_code == 200 and set(third.json()["scope"].split()) == set(DELEGATED.split())

    listed = idp.ctl("GET", f"/refresh-tokens?upn={ALEX}")["refresh_tokens"]
    assert sorted(t["status"] for t in listed) == ["active", "rotated", "rotated"]


def test_refresh_token_cannot_widen_the_grant_or_change_client(idp):
    first = idp.sign_in(scope="Contacts.ReadWrite offline_access")
    wider = idp.refresh(first["refresh_token"], scope="Contacts.ReadWrite Mail.Read offline_access")
    oauth_error(wider, 400, "invalid_grant", 65001)
    seed = idp.control.state()
    seed["app_registrations"].append(
        {
            "client_id": "other-app",
            "client_secret": None,
            "delegated_scopes": ["Contacts.ReadWrite"],
            "allow_public_client": True,
        }
    )
    idp.control.seed(seed)
    other = idp.token(
        grant_type="refresh_token", client_id="other-app", refresh_token=first["refresh_token"]
    )
    oauth_error(other, 400, "invalid_grant", 70000)


def test_revoked_sessions_and_expired_refresh_tokens(idp):
    first = idp.sign_in()
    revoked = idp.ctl("POST", f"/users/{ALEX}/revoke", {"access_tokens": True})
    assert revoked == {"upn": ALEX, "revoked_refresh_tokens": 1, "expired_access_tokens": 1}
    assert REGISTRY.lookup(first["access_token"]).expired
    oauth_error(idp.refresh(first["refresh_token"]), 400, "invalid_grant", 50173)
    idp.ctl("POST", "/users/nobody@contoso.example/revoke", status=404)

    idp.ctl("POST", "/settings", {"refresh_token_lifetime": 0.2})
    second = idp.sign_in()
    time.sleep(0.25)
    oauth_error(idp.refresh(second["refresh_token"]), 400, "invalid_grant", 700082)


# --------------------------------------------------------------------------- settings & control


def test_access_token_lifetime_setting(idp):
    assert idp.ctl("GET", "/settings")["access_token_lifetime"] == 3600
    settings = idp.ctl("POST", "/settings", {"access_token_lifetime": 120})
    assert settings["access_token_lifetime"] == 120
    body = idp.sign_in()
    assert body["expires_in"] == 120
    grant = REGISTRY.lookup(body["access_token"])
    assert 110 < grant.expires_at - time.time() <= 120
    app = idp.token(
        grant_type="client_credentials",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        scope=GRAPH_DEFAULT,
    ).json()
    assert app["expires_in"] == 120

    for bad in ({"access_token_lifetime": 0}, {"device_code_interval": 1.5}, {"nope": 1}):
        idp.ctl("POST", "/settings", bad, status=400)
    assert idp.ctl("POST", "/settings", {"device_code_interval": 1})["device_code_interval"] == 1
    assert idp.device_code()["interval"] == 1


def test_expire_all_access_tokens(idp):
    body = idp.sign_in()
    grant = REGISTRY.lookup(body["access_token"])
    assert not grant.expired
    result = idp.ctl("POST", "/expire-access-tokens")
    assert result["expired_access_tokens"] >= 1
    assert REGISTRY.lookup(body["access_token"]).expired
    # The refresh token still works: that is how clients recover from a 401.
    renewed = idp.refresh(body["refresh_token"]).json()
    assert not REGISTRY.lookup(renewed["access_token"]).expired


def test_control_index_state_and_reset(idp):
    routes = idp.control.session.get(idp.control.control_url, timeout=10).json()["control_routes"]
    for route in (
        "GET /_sandbox/identity/settings",
        "POST /_sandbox/identity/settings",
        "GET /_sandbox/identity/device",
        "POST /_sandbox/identity/device/approve",
        "POST /_sandbox/identity/device/deny",
        "GET /_sandbox/identity/refresh-tokens",
        "POST /_sandbox/identity/users/<upn>/revoke",
        "POST /_sandbox/identity/expire-access-tokens",
    ):
        assert route in routes
    idp.ctl("POST", "/settings", {"access_token_lifetime": 60})
    body = idp.sign_in()
    state = idp.control.state()
    assert state["tenant_id"] == TENANT and state["settings"]["access_token_lifetime"] == 60
    assert [a["client_id"] for a in state["app_registrations"]] == [CLIENT_ID]
    assert len(state["mailboxes"]) == 4
    assert [d["status"] for d in state["device_codes"]] == ["redeemed"]
    assert [t["status"] for t in state["refresh_tokens"]] == ["active"]
    # A seed round-trips.
    assert idp.control.seed(state)["refresh_tokens"] == state["refresh_tokens"]

    reset = idp.control.reset()
    assert reset["settings"]["access_token_lifetime"] == 3600
    assert reset["device_codes"] == [] and reset["refresh_tokens"] == []
    assert REGISTRY.lookup(body["access_token"]).expired
    oauth_error(idp.refresh(body["refresh_token"]), 400, "invalid_grant", 70008)
    bad = idp.http.post(f"{idp.control.control_url}/seed", json={"settings": {}}, timeout=10)
    assert bad.status_code == 400


def test_faults_answer_in_the_oauth_error_format(idp):
    idp.control.fail_5xx(1, status=503, path_prefix=f"/{TENANT}/oauth2/v2.0/token")
    failed = idp.token(
        grant_type="client_credentials",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        scope=GRAPH_DEFAULT,
    )
    assert failed.status_code == 503
    assert failed.json()["error"] == "temporarily_unavailable"
    counters = idp.control.endpoint("POST /{tenant}/oauth2/v2.0/token")
    assert counters["statuses"] == {"503": 1}
