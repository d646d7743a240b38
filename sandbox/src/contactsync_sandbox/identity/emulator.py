"""The Microsoft identity platform (Entra ID v2.0 endpoints) emulator.

Routes below `https://127.0.0.1:<port>/{tenant}` (tenant id, tenant domain, `common` or
`organizations`), as MSAL uses them with `authority=https://127.0.0.1:<port>/{tenant}` and
`instance_discovery=False`:

* `GET  /{tenant}/v2.0/.well-known/openid-configuration` - OpenID discovery (MSAL's "tenant
  discovery"; MSAL reads `authorization_endpoint`, `token_endpoint`,
  `device_authorization_endpoint` and `issuer`, and takes the tenant from the token endpoint)
* `GET  /{tenant}/discovery/v2.0/keys` - the JWKS of the id-token signing key
* `POST /{tenant}/oauth2/v2.0/devicecode` - device authorization (RFC 8628 §3.1)
* `POST /{tenant}/oauth2/v2.0/token` - grants `client_credentials`, `device_code`
  (`urn:ietf:params:oauth:grant-type:device_code`) and `refresh_token` (rotating)
* `GET  /{tenant}/oauth2/v2.0/authorize` - present for discovery; answers 400 (no browser flows)
* `GET|POST /devicelogin` - the page a person uses to approve a device code

Access tokens are opaque strings issued through `contactsync_sandbox.tokens.REGISTRY`, which
the Graph emulator consults. The control API (`/_sandbox/identity/...`) lives in `control.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..seed import default_seed
from ..server import ApiError, Emulator
from ..tokens import REGISTRY
from . import model
from .control import IdentityControl
from .jwt import b64url_json, signing_key
from .model import (
    GRAPH_RESOURCE,
    AppRegistration,
    DeviceCode,
    IdentityState,
    RefreshToken,
    User,
    oauth_error,
)
from .page import done_page, form_page

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_AADSTS = re.compile(r"AADSTS(\d+)")
#: Codes of the base framework's errors (faults, routing) → OAuth `error` values.
_BASE_ERRORS = {
    "TooManyRequests": "temporarily_unavailable",
    "ServiceUnavailable": "temporarily_unavailable",
    "InternalServerError": "server_error",
    "NotFound": "invalid_request",
    "MethodNotAllowed": "invalid_request",
    "BadRequest": "invalid_request",
}


def _timestamp(now: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


class IdentityEmulator(Emulator):
    """Entra ID for one tenant: discovery, device code, refresh tokens, client credentials."""

    name = "identity"

    def __init__(self) -> None:
        self.state: IdentityState | None = None
        #: Access tokens this emulator issued: (token, upn or None for app-only).
        self._issued: list[tuple[str, str | None]] = []
        super().__init__()

    # ------------------------------------------------------------------ framework hooks

    def default_seed(self) -> Any:
        return default_seed()["microsoft"]

    def seed(self, data: Any) -> None:
        state = model.load(data)
        # Tokens derived from the replaced state stop working (as after a restart).
        self.expire_issued(lambda upn: True)
        self._issued = []
        self.state = state

    def snapshot(self) -> Any:
        return model.dump(self._state)

    def control_rules(self) -> Iterable[Rule]:
        return IdentityControl(self).rules()

    def info(self, base_url: str) -> dict[str, Any]:
        state = self._state
        app = next(iter(state.apps.values()), None)
        return {
            "authority": f"{base_url}/{state.tenant_id}",
            "identity_tenant_id": state.tenant_id,
            "identity_client_id": app.client_id if app else None,
            "identity_client_secret": app.client_secret if app else None,
        }

    def error_response(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Entra's error body: `error`, `error_description` (with trace/correlation ids and a
        timestamp, CRLF-separated), `error_codes`, `timestamp`, `trace_id`, `correlation_id`."""
        now = time.time()
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        codes = [int(c) for c in _AADSTS.findall(message)]
        body: dict[str, Any] = {
            "error": _BASE_ERRORS.get(code, code),
            "error_description": (
                f"{message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}"
                f"\r\nTimestamp: {_timestamp(now)}"
            ),
            "error_codes": codes,
            "timestamp": _timestamp(now),
            "trace_id": trace_id,
            "correlation_id": correlation_id,
        }
        if codes:
            body["error_uri"] = f"https://login.microsoftonline.com/error?code={codes[0]}"
        return self.json_response(body, status, headers)

    @property
    def _state(self) -> IdentityState:
        assert self.state is not None
        return self.state

    # ------------------------------------------------------------------ routes

    def rules(self) -> Iterable[Rule]:
        t = "/<tenant>"
        return [
            Rule(
                f"{t}/v2.0/.well-known/openid-configuration",
                endpoint=self.discovery,
                methods=["GET"],
            ),
            Rule(f"{t}/discovery/v2.0/keys", endpoint=self.keys, methods=["GET"]),
            Rule(f"{t}/oauth2/v2.0/devicecode", endpoint=self.devicecode, methods=["POST"]),
            Rule(f"{t}/oauth2/v2.0/token", endpoint=self.token, methods=["POST"]),
            Rule(f"{t}/oauth2/v2.0/authorize", endpoint=self.authorize, methods=["GET", "POST"]),
            Rule("/devicelogin", endpoint=self.devicelogin_form, methods=["GET"]),
            Rule("/devicelogin", endpoint=self.devicelogin_submit, methods=["POST"]),
        ]

    def _tenant(self, tenant: str) -> str:
        """The tenant segment as the endpoints should carry it; 400 for an unknown tenant."""
        state = self._state
        if tenant.lower() in (state.tenant_id.lower(), state.tenant_domain.lower()):
            return state.tenant_id
        if tenant.lower() in model.TENANT_ALIASES:
            return tenant.lower()
        raise model.tenant_not_found(tenant)

    @staticmethod
    def _host(request: Request) -> str:
        return request.host_url.rstrip("/")

    def _issuer(self, request: Request) -> str:
        return f"{self._host(request)}/{self._state.tenant_id}/v2.0"

    def discovery(self, request: Request, tenant: str) -> Response:
        segment = self._tenant(tenant)
        base = f"{self._host(request)}/{segment}"
        state = self._state
        return self.json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "grant_types_supported": [
                    "client_credentials",
                    "refresh_token",
                    DEVICE_CODE_GRANT,
                ],
                # Real Entra ID keeps the literal "{tenantid}" for common/organizations.
                "issuer": (
                    f"{self._host(request)}/{{tenantid}}/v2.0"
                    if segment in model.TENANT_ALIASES
                    else self._issuer(request)
                ),
                "request_uri_parameter_supported": False,
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": False,
                "frontchannel_logout_supported": False,
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "nbf",
                    "name",
                    "oid",
                    "tid",
                    "preferred_username",
                    "ver",
                ],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "sandbox.invalid",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "tenant_domain": state.tenant_domain,
            }
        )

    def keys(self, request: Request, tenant: str) -> Response:
        self._tenant(tenant)
        return self.json_response({"keys": [signing_key().jwk()]})

    def authorize(self, request: Request, tenant: str) -> Response:
        self._tenant(tenant)
        raise oauth_error(
            400,
            "unsupported_response_type",
            "AADSTS70000: The sandbox identity provider has no browser sign-in; use the device "
            "code flow (devicecode endpoint), refresh tokens, or client credentials.",
        )

    # ------------------------------------------------------------------ device authorization

    def devicecode(self, request: Request, tenant: str) -> Response:
        self._tenant(tenant)
        form = request.form
        client_id = form.get("client_id") or ""
        if not client_id:
            raise model.missing_parameter("client_id")
        app = self._app(client_id)
        scopes = model.split_scopes(form.get("scope"))
        if not scopes:
            raise model.missing_parameter("scope")
        self._check_delegated_scopes(app, scopes)
        state, now = self._state, time.time()
        settings = state.settings
        record = DeviceCode(
            device_code=model.new_device_code(),
            user_code=self._unique_user_code(),
            client_id=client_id,
            scopes=scopes,
            created_at=now,
            expires_at=now + float(settings["device_code_lifetime"]),
            interval=int(settings["device_code_interval"]),
        )
        state.device_codes[record.device_code] = record
        uri = f"{self._host(request)}/devicelogin"
        return self.json_response(
            {
                "user_code": record.user_code,
                "device_code": record.device_code,
                "verification_uri": uri,
                "expires_in": round(record.expires_at - now),
                "interval": record.interval,
                "message": (
                    f"To sign in, use a web browser to open the page {uri} and enter the code "
                    f"{record.user_code} to authenticate."
                ),
            }
        )

    def _unique_user_code(self) -> str:
        while True:
            code = model.new_user_code()
            if self._state.by_user_code(code) is None:
                return code

    def _check_delegated_scopes(self, app: AppRegistration, scopes: list[str]) -> None:
        for scope in scopes:
            if scope.lower() in model.OIDC_SCOPES:
                continue
            name = model.graph_scope_name(scope)
            if name == ".default":
                continue
            if name is None or not app.allows_delegated(name):
                granted = ", ".join(app.delegated_scopes) or "none"
                raise oauth_error(
                    400,
                    "invalid_scope",
                    f"AADSTS70011: The provided value for the input parameter 'scope' isn't "
                    f"valid. The scope {scope} isn't valid. (Sandbox: the app registration "
                    f"'{app.display_name}' has the delegated permissions {granted}.)",
                )

    def _delegated_grant_scopes(self, app: AppRegistration, scopes: list[str]) -> list[str]:
        """Permission names an access token carries (`.default` = every consented one)."""
        names = model.resource_scopes(scopes)
        if ".default" in names:
            names = [n for n in names if n != ".default"]
            names += [s for s in app.delegated_scopes if s.lower() not in model.OIDC_SCOPES]
        return list(dict.fromkeys(names))

    # ------------------------------------------------------------------ token endpoint

    def token(self, request: Request, tenant: str) -> Response:
        self._tenant(tenant)
        form = request.form
        grant_type = form.get("grant_type") or ""
        if not grant_type:
            raise model.missing_parameter("grant_type")
        client_id, secret = self._client_auth(request)
        if not client_id:
            raise model.missing_parameter("client_id")
        app = self._app(client_id)
        if secret is not None:
            self._check_secret(app, secret)
        elif grant_type in (DEVICE_CODE_GRANT, "refresh_token") and not app.allow_public_client:
            # A confidential client must authenticate; only "Allow public client flows" lets
            # these grants go without a secret (see AppRegistration.allow_public_client).
            raise oauth_error(
                401,
                "invalid_client",
                "AADSTS7000218: The request body must contain the following parameter: "
                "'client_assertion' or 'client_secret'.",
            )
        if grant_type == "client_credentials":
            return self._client_credentials(app, secret, form.get("scope"))
        if grant_type == DEVICE_CODE_GRANT:
            return self._device_code_grant(request, app, form.get("device_code") or "")
        if grant_type == "refresh_token":
            return self._refresh_grant(request, app, form.get("refresh_token") or "", form)
        raise oauth_error(
            400,
            "unsupported_grant_type",
            f"AADSTS70003: The app requested an unsupported grant type '{grant_type}'. "
            "(Sandbox: client_credentials, device_code and refresh_token only.)",
        )

    @staticmethod
    def _client_auth(request: Request) -> tuple[str, str | None]:
        """client_id and client_secret from the body (client_secret_post) or HTTP Basic."""
        form = request.form
        client_id, secret = form.get("client_id") or "", form.get("client_secret")
        auth = request.authorization
        if auth is not None and auth.type.lower() == "basic":
            client_id = client_id or (auth.username or "")
            if secret is None:
                secret = auth.password
        return client_id, secret

    def _app(self, client_id: str) -> AppRegistration:
        app = self._state.apps.get(client_id)
        if app is None:
            raise model.client_not_found(client_id, self._state.tenant_domain)
        return app

    @staticmethod
    def _check_secret(app: AppRegistration, secret: str) -> None:
        expected = (app.client_secret or "").encode("utf-8")
        if not expected or not hmac.compare_digest(expected, secret.encode("utf-8")):
            raise oauth_error(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                "the request is the client secret value, not the client secret ID, for a secret "
                f"added to app '{app.client_id}'.",
            )

    def _client_credentials(
        self, app: AppRegistration, secret: str | None, raw_scope: str | None
    ) -> Response:
        if secret is None:
            raise oauth_error(
                401,
                "invalid_client",
                "AADSTS7000218: The request body must contain the following parameter: "
                "'client_assertion' or 'client_secret'.",
            )
        scopes = model.split_scopes(raw_scope)
        if not scopes:
            raise model.missing_parameter("scope")
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise oauth_error(
                400,
                "invalid_scope",
                f"AADSTS1002012: The provided value for scope {' '.join(scopes)} is not valid. "
                "Client credential flows must have a scope value with /.default suffixed to "
                "the resource identifier (application ID URI).",
            )
        resource = scopes[0][: -len("/.default")].rstrip("/")
        if resource.lower() != GRAPH_RESOURCE:
            raise oauth_error(
                400,
                "invalid_resource",
                f"AADSTS500011: The resource principal named {resource} was not found in the "
                f"tenant named {self._state.tenant_domain}. (Sandbox: only {GRAPH_RESOURCE}.)",
            )
        lifetime = float(self._state.settings["access_token_lifetime"])
        grant = REGISTRY.issue(
            client_id=app.client_id,
            tenant_id=self._state.tenant_id,
            mailbox_id=None,
            upn=None,
            scopes=app.application_permissions,
            lifetime=lifetime,
        )
        self._issued.append((grant.token, None))
        return self._token_response(
            {
                "token_type": "Bearer",
                "expires_in": round(lifetime),
                "ext_expires_in": round(lifetime),
                "access_token": grant.token,
            }
        )

    def _device_code_grant(self, request: Request, app: AppRegistration, code: str) -> Response:
        if not code:
            raise model.missing_parameter("device_code")
        state, now = self._state, time.time()
        record = state.device_codes.get(code)
        if record is None or record.client_id != app.client_id:
            raise oauth_error(
                400,
                "bad_verification_code",
                "AADSTS70000: The provided value for the input parameter 'device_code' is not "
                "valid.",
            )
        record.polls += 1
        status = record.current_status(now)
        if status == "pending":
            raise oauth_error(
                400,
                "authorization_pending",
                "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue "
                "polling.",
            )
        if status == "expired":
            raise oauth_error(
                400,
                "expired_token",
                "AADSTS70019: Verification code expired. Have the user retry the sign-in.",
            )
        if status == "denied":
            raise oauth_error(
                400,
                "authorization_declined",
                "AADSTS65004: User declined to consent to access the app.",
            )
        if status == "redeemed":
            raise oauth_error(
                400,
                "invalid_grant",
                "AADSTS54005: OAuth2 Authorization code was already redeemed, please retry with "
                "a new valid code or use an existing refresh token.",
            )
        user = state.user(record.upn or "")
        if user is None:
            raise oauth_error(
                400,
                "invalid_grant",
                f"AADSTS50034: The user account {record.upn} does not exist in the "
                f"{state.tenant_domain} directory.",
            )
        record.status = "redeemed"
        return self._user_tokens(request, app, user, record.scopes)

    def _refresh_grant(
        self, request: Request, app: AppRegistration, token: str, form: Mapping[str, str]
    ) -> Response:
        if not token:
            raise model.missing_parameter("refresh_token")
        state, now = self._state, time.time()
        record = state.refresh_tokens.get(token)
        if record is None or record.status == "rotated":
            reason = (
                "this refresh token was already redeemed and rotated"
                if record is not None
                else "unknown refresh token"
            )
            raise oauth_error(
                400,
                "invalid_grant",
                "AADSTS70008: The provided authorization code or refresh token has expired due "
                "to inactivity. Send a new interactive authorization request for this user and "
                f"resource. (Sandbox: {reason}.)",
            )
        if record.status == "revoked":
            raise oauth_error(
                400,
                "invalid_grant",
                "AADSTS50173: The provided grant has expired due to it being revoked, a fresh "
                "auth token is needed. The user might have changed or reset their password.",
            )
        if now >= record.expires_at:
            raise oauth_error(
                400,
                "invalid_grant",
                "AADSTS700082: The refresh token has expired due to inactivity. The token was "
                f"issued on {_timestamp(record.issued_at)}.",
            )
        if record.client_id != app.client_id:
            raise oauth_error(
                400,
                "invalid_grant",
                "AADSTS70000: Provided grant is invalid or malformed. (Sandbox: the refresh "
                f"token was issued to client {record.client_id}.)",
            )
        user = state.user(record.upn)
        if user is None:
            raise oauth_error(
                400,
                "invalid_grant",
                f"AADSTS50034: The user account {record.upn} does not exist in the "
                f"{state.tenant_domain} directory.",
            )
        requested = model.split_scopes(form.get("scope")) or list(record.scopes)
        consented = {s.lower() for s in self._delegated_grant_scopes(app, record.scopes)}
        missing = [
            s for s in self._delegated_grant_scopes(app, requested) if s.lower() not in consented
        ]
        if missing:
            raise oauth_error(
                400,
                "invalid_grant",
                f"AADSTS65001: The user or administrator has not consented to use the "
                f"application with ID '{app.client_id}' named '{app.display_name}'. Send an "
                f"interactive authorization request for this user and resource. (Sandbox: "
                f"{', '.join(missing)} was not part of the sign-in.)",
            )
        record.status = "rotated"
        return self._user_tokens(request, app, user, requested)

    def _user_tokens(
        self, request: Request, app: AppRegistration, user: User, scopes: list[str]
    ) -> Response:
        """Access token (in the registry), rotating refresh token, id token, client_info."""
        state, now = self._state, time.time()
        lifetime = float(state.settings["access_token_lifetime"])
        grant = REGISTRY.issue(
            client_id=app.client_id,
            tenant_id=state.tenant_id,
            mailbox_id=user.id,
            upn=user.user_principal_name,
            scopes=self._delegated_grant_scopes(app, scopes),
            lifetime=lifetime,
        )
        self._issued.append((grant.token, user.user_principal_name.lower()))
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(scopes),
            "expires_in": round(lifetime),
            "ext_expires_in": round(lifetime),
            "access_token": grant.token,
        }
        lowered = {s.lower() for s in scopes}
        if "offline_access" in lowered:
            refresh = RefreshToken(
                refresh_token=model.new_refresh_token(),
                client_id=app.client_id,
                upn=user.user_principal_name,
                scopes=list(scopes),
                issued_at=now,
                expires_at=now + float(state.settings["refresh_token_lifetime"]),
            )
            state.refresh_tokens[refresh.refresh_token] = refresh
            body["refresh_token"] = refresh.refresh_token
        if "openid" in lowered:
            body["id_token"] = self._id_token(request, app, user, now)
        # client_info (requested by MSAL with client_info=1): {uid, utid}, base64url JSON;
        # MSAL builds the account's home_account_id "<uid>.<utid>" from it.
        body["client_info"] = b64url_json({"uid": user.id, "utid": state.tenant_id})
        return self._token_response(body)

    def _id_token(self, request: Request, app: AppRegistration, user: User, now: float) -> str:
        state = self._state
        # Entra ID's `sub` is pairwise (per app); `oid` is the user's object id.
        sub = hashlib.sha256(f"{user.id}:{app.client_id}".encode()).hexdigest()[:43]
        claims = {
            "aud": app.client_id,
            "iss": self._issuer(request),
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + 3600,
            "name": user.display_name,
            "oid": user.id,
            "preferred_username": user.user_principal_name,
            "sub": sub,
            "tid": state.tenant_id,
            "ver": "2.0",
        }
        return signing_key().encode(claims)

    def _token_response(self, body: dict[str, Any]) -> Response:
        return self.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    # ------------------------------------------------------------------ the /devicelogin page

    def _page_users(self) -> list[tuple[str, str]]:
        return [(u.user_principal_name, u.display_name) for u in self._state.users.values()]

    def _html(self, text: str, status: int = 200) -> Response:
        return Response(text, status=status, mimetype="text/html")

    def devicelogin_form(self, request: Request) -> Response:
        return self._html(form_page(self._page_users(), None, request.args.get("code", "")))

    def devicelogin_submit(self, request: Request) -> Response:
        form = request.form
        code, upn = form.get("code", ""), form.get("upn", "")
        accept = form.get("action", "accept") != "cancel"
        try:
            record = self.decide(code, upn if accept else None, accept)
        except ApiError as exc:
            return self._html(form_page(self._page_users(), None, code, exc.message), 400)
        app = self._state.apps.get(record.client_id)
        return self._html(done_page(accept, record.upn, app.display_name if app else None))

    def decide(self, user_code: str | None, upn: str | None, approve: bool) -> DeviceCode:
        """Approve (as `upn`) or deny a pending device code; ApiError when that cannot be."""
        state, now = self._state, time.time()
        if user_code:
            record = state.by_user_code(user_code)
            if record is None:
                raise ApiError(404, "NotFound", f"no device code with user code {user_code!r}")
        else:
            pending = [r for r in state.device_codes.values() if r.current_status(now) == "pending"]
            if len(pending) != 1:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"{len(pending)} device codes are pending: give user_code",
                )
            record = pending[0]
        status = record.current_status(now)
        if status != "pending":
            raise ApiError(409, "Conflict", f"device code {record.user_code} is {status}")
        if approve:
            user = state.user(upn or "")
            if user is None:
                raise ApiError(404, "NotFound", f"no user {upn!r} in {state.tenant_domain}")
            record.status, record.upn = "approved", user.user_principal_name
        else:
            record.status = "denied"
        return record

    def expire_issued(self, which: Any) -> int:
        """Expire the live access tokens this emulator issued to users `which(upn)` accepts
        (upn None: app-only); how many."""
        count = 0
        for token, upn in self._issued:
            grant = REGISTRY.lookup(token)
            if which(upn) and grant is not None and not grant.expired:
                REGISTRY.expire(token)
                count += 1
        return count
