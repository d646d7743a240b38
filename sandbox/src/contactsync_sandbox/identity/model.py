"""The identity emulator's state: tenant, app registrations, users, settings, device codes and
refresh tokens; how it is seeded and dumped; and the Entra ID (AADSTS) errors it answers.

Access tokens are not kept here: they live in the process-wide `contactsync_sandbox.tokens`
registry, where the Graph emulator looks them up.
"""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..jsonvalues import is_number
from ..server import ApiError

GRAPH_RESOURCE = "https://graph.microsoft.com"
#: OpenID Connect scopes: they ask for an id token / refresh token, not for Graph permissions.
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
#: `common` and `organizations` resolve to the one tenant (the sandbox has no guests).
TENANT_ALIASES = frozenset({"common", "organizations"})
#: User codes use letters and digits that cannot be misread (no 0/O, 1/I).
USER_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
USER_CODE_LENGTH = 9

#: Settings and their defaults (seconds). Entra ID: access tokens 60-90 min, refresh tokens
#: 90 days sliding, device codes 15 min, poll interval 5 s.
DEFAULT_SETTINGS: Mapping[str, int | float] = {
    "access_token_lifetime": 3600,
    "refresh_token_lifetime": 90 * 24 * 3600,
    "device_code_lifetime": 900,
    "device_code_interval": 5,
}
#: Settings that must be whole seconds (MSAL sleeps `interval` one-second steps).
INTEGER_SETTINGS = frozenset({"device_code_interval"})

DEVICE_STATUSES = ("pending", "approved", "denied", "redeemed", "expired")
REFRESH_STATUSES = ("active", "rotated", "revoked")


# ----------------------------------------------------------------------------- errors


def oauth_error(status: int, error: str, description: str) -> ApiError:
    """An OAuth 2.0 error (RFC 6749 §5.2) with an Entra-style `AADSTSnnnn: ...` description."""
    return ApiError(status, error, description)


def tenant_not_found(tenant: str) -> ApiError:
    return oauth_error(
        400,
        "invalid_tenant",
        f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct "
        "tenant ID and are signing into the correct cloud.",
    )


def missing_parameter(name: str) -> ApiError:
    return oauth_error(
        400,
        "invalid_request",
        f"AADSTS900144: The request body must contain the following parameter: '{name}'.",
    )


def client_not_found(client_id: str, tenant_domain: str) -> ApiError:
    return oauth_error(
        400,
        "unauthorized_client",
        f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
        f"directory '{tenant_domain}'. This can happen if the application has not been "
        "installed by the administrator of the tenant or consented to by any user in the "
        "tenant. You may have sent your authentication request to the wrong tenant.",
    )


# ----------------------------------------------------------------------------- records


@dataclass
class AppRegistration:
    client_id: str
    client_secret: str | None
    display_name: str = "app"
    delegated_scopes: list[str] = field(default_factory=list)
    application_permissions: list[str] = field(default_factory=list)
    #: Authentication → Advanced settings → "Allow public client flows" (the manifest's
    #: `allowPublicClient`). Entra's default is No: the registration is then a confidential
    #: client, and a token request without its secret (device code, a public client's refresh)
    #: fails with AADSTS7000218 ("Error AADSTS7000218 when a confidential client application
    #: authenticates to Microsoft Entra ID", MicrosoftDocs/SupportArticles-docs,
    #: support/entra/entra-id/app-integration/confidential-client-application-authentication-
    #: error-aadsts7000218.md: without a reply URL, as in the device authorization grant, Entra
    #: uses the registration's default client type).
    allow_public_client: bool = False

    def allows_delegated(self, scope: str) -> bool:
        wanted = scope.lower()
        return any(s.lower() == wanted for s in self.delegated_scopes)


@dataclass
class User:
    id: str
    user_principal_name: str
    display_name: str


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    scopes: list[str]
    created_at: float
    expires_at: float
    interval: int
    status: str = "pending"
    upn: str | None = None
    polls: int = 0

    def current_status(self, now: float) -> str:
        if self.status in ("pending", "approved") and now >= self.expires_at:
            return "expired"
        return self.status

    def to_json(self, now: float) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.current_status(now)
        data["expires_in"] = max(0, round(self.expires_at - now))
        return data


@dataclass
class RefreshToken:
    refresh_token: str
    client_id: str
    upn: str
    #: The scopes of the original grant, as the client asked for them.
    scopes: list[str]
    issued_at: float
    expires_at: float
    status: str = "active"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def new_device_code() -> str:
    return "sbxdc." + secrets.token_urlsafe(32)


def new_refresh_token() -> str:
    return "sbxrt." + secrets.token_urlsafe(48)


# ----------------------------------------------------------------------------- scopes


def split_scopes(raw: str | None) -> list[str]:
    """`"a b  a"` → `["a", "b"]` (order kept, duplicates dropped)."""
    seen: dict[str, None] = {}
    for scope in (raw or "").split():
        seen.setdefault(scope, None)
    return list(seen)


def graph_scope_name(scope: str) -> str | None:
    """`Contacts.ReadWrite` or `https://graph.microsoft.com/Contacts.ReadWrite` →
    `Contacts.ReadWrite`; None for another resource's scope."""
    lowered = scope.lower()
    prefix = GRAPH_RESOURCE + "/"
    if lowered.startswith(prefix):
        return scope[len(prefix) :]
    if "://" in scope or scope.startswith("api://"):
        return None
    return scope


def resource_scopes(scopes: Iterable[str]) -> list[str]:
    """The Graph permission names among `scopes` (OIDC scopes left out)."""
    names = []
    for scope in scopes:
        if scope.lower() in OIDC_SCOPES:
            continue
        name = graph_scope_name(scope)
        if name is not None:
            names.append(name)
    return names


# ----------------------------------------------------------------------------- state


@dataclass
class IdentityState:
    tenant_id: str
    tenant_domain: str
    apps: dict[str, AppRegistration]
    users: dict[str, User]  # by lower-case UPN
    settings: dict[str, int | float]
    device_codes: dict[str, DeviceCode] = field(default_factory=dict)  # by device_code
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)

    def user(self, upn: str) -> User | None:
        return self.users.get(upn.lower())

    def by_user_code(self, user_code: str) -> DeviceCode | None:
        wanted = user_code.strip().upper().replace("-", "")
        for record in self.device_codes.values():
            if record.user_code == wanted:
                return record
        return None


def _require(mapping: Mapping[str, Any], key: str, what: str) -> Any:
    value = mapping.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}: {key!r} must be a non-empty string")
    return value


def _string_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings")
    return list(value)


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false")
    return value


def check_settings(values: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, int | float]:
    """`base` updated with `values`; every value a positive number (ValueError otherwise)."""
    unknown = sorted(set(values) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(
            f"unknown identity setting(s) {unknown}; known: {sorted(DEFAULT_SETTINGS)}"
        )
    merged = dict(base)
    for key, value in values.items():
        ok = is_number(value) and value > 0
        if key in INTEGER_SETTINGS:
            ok = ok and float(value).is_integer()
            value = int(value) if ok else value
        if not ok:
            kind = "a whole number of seconds >= 1" if key in INTEGER_SETTINGS else "seconds > 0"
            raise ValueError(f"{key} must be {kind}, got {value!r}")
        merged[key] = value
    return merged


def load(data: Any) -> IdentityState:
    """Parse a seed (the `microsoft` part of the default seed, optionally with `settings`,
    `app_registrations`, `device_codes` and `refresh_tokens`). Other keys are ignored: the
    Graph emulator reads the same section."""
    if not isinstance(data, dict):
        raise ValueError("the identity seed must be a JSON object")
    tenant_id = _require(data, "tenant_id", "identity seed")
    tenant_domain = data.get("tenant_domain") or tenant_id
    raw_apps: list[Any] = []
    if data.get("app_registration") is not None:
        raw_apps.append(data["app_registration"])
    extra = data.get("app_registrations")
    if extra is not None:
        if not isinstance(extra, list):
            raise ValueError("app_registrations must be a list")
        raw_apps.extend(extra)
    apps: dict[str, AppRegistration] = {}
    for raw in raw_apps:
        if not isinstance(raw, dict):
            raise ValueError("an app registration must be an object")
        app = AppRegistration(
            client_id=_require(raw, "client_id", "app registration"),
            client_secret=raw.get("client_secret") or None,
            display_name=raw.get("display_name") or "app",
            delegated_scopes=_string_list(raw.get("delegated_scopes"), "delegated_scopes"),
            application_permissions=_string_list(
                raw.get("application_permissions"), "application_permissions"
            ),
            allow_public_client=_flag(raw.get("allow_public_client", False), "allow_public_client"),
        )
        apps[app.client_id] = app
    users: dict[str, User] = {}
    for raw in data.get("mailboxes") or []:
        if not isinstance(raw, dict):
            raise ValueError("a mailbox must be an object")
        user = User(
            id=_require(raw, "id", "mailbox"),
            user_principal_name=_require(raw, "user_principal_name", "mailbox"),
            display_name=raw.get("display_name") or raw["user_principal_name"],
        )
        users[user.user_principal_name.lower()] = user
    settings = check_settings(data.get("settings") or {}, DEFAULT_SETTINGS)
    state = IdentityState(tenant_id, tenant_domain, apps, users, settings)
    for raw in data.get("device_codes") or []:
        try:
            record = DeviceCode(
                **{k: v for k, v in raw.items() if k not in ("expires_in",)},
            )
        except TypeError as exc:
            raise ValueError(f"malformed device code: {exc}") from None
        if record.status not in DEVICE_STATUSES:
            raise ValueError(f"device code status must be one of {DEVICE_STATUSES}")
        state.device_codes[record.device_code] = record
    for raw in data.get("refresh_tokens") or []:
        try:
            token = RefreshToken(**raw)
        except TypeError as exc:
            raise ValueError(f"malformed refresh token: {exc}") from None
        if token.status not in REFRESH_STATUSES:
            raise ValueError(f"refresh token status must be one of {REFRESH_STATUSES}")
        state.refresh_tokens[token.refresh_token] = token
    return state


def dump(state: IdentityState) -> dict[str, Any]:
    now = time.time()
    return {
        "tenant_id": state.tenant_id,
        "tenant_domain": state.tenant_domain,
        "app_registrations": [asdict(app) for app in state.apps.values()],
        "mailboxes": [asdict(user) for user in state.users.values()],
        "settings": copy.deepcopy(state.settings),
        "device_codes": [r.to_json(now) for r in state.device_codes.values()],
        "refresh_tokens": [t.to_json() for t in state.refresh_tokens.values()],
    }
