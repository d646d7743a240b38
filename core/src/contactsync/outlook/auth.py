"""Signing in to Microsoft Graph with MSAL, the three ways a sync signs in.

* **Device code** (a person, once, ahead of runs): ``contactsync login`` prints Microsoft's
  message ("To sign in, use a web browser to open the page … and enter the code …"); the person
  opens the page, enters the code, picks their Microsoft account and clicks Accept. The tokens
  land in a token cache file (mode 0600).
* **Silent refresh** (every run): the access token comes from the cache file, or is renewed
  with the cached refresh token; the rotated refresh token is written back.
* **App-only client credentials** (an administrator syncing many mailboxes): the app's
  ``client_secret`` gets ``https://graph.microsoft.com/.default`` tokens; nobody signs in.

MSAL is used unmodified: ``instance_discovery=False`` with an explicit https authority (so MSAL
never asks ``login.microsoftonline.com`` to validate a private authority), and an
``http_client`` session that verifies TLS with ``ca_bundle`` (``trust_env=False``: otherwise
``REQUESTS_CA_BUNDLE`` would override it). Nothing here logs or raises with a token or secret in
the text; account usernames are logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
import shlex
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from msal.exceptions import MsalServiceError
from msal.oauth2cli.oidc import decode_part
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from contactsync.http import DEFAULT_USER_AGENT

try:  # POSIX: serialise refreshes between processes sharing a cache file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("contactsync.outlook.auth")

#: Delegated permission the sync needs (MSAL adds openid, profile and offline_access).
GRAPH_SCOPES_DELEGATED = ["Contacts.ReadWrite"]
#: App-only: every application permission granted to the app registration.
GRAPH_SCOPES_APP = ["https://graph.microsoft.com/.default"]
#: Seconds to connect / to wait for an answer from the identity provider.
DEFAULT_TIMEOUT = (10.0, 30.0)
CACHE_MODE = 0o600

AUTH_SETTINGS_SCHEMA: Mapping[str, dict[str, Any]] = {
    "authority": {
        "type": ["string"],
        "description": (
            "Microsoft identity platform authority, tenant included: "
            "https://login.microsoftonline.com/<tenant id or domain> (https only)."
        ),
    },
    "client_id": {
        "type": ["string"],
        "description": "Application (client) ID of the app registration.",
    },
    "client_secret": {
        "type": ["string"],
        "secret": True,
        "writeOnly": True,
        "description": (
            "Client secret of the app registration. Set it for app-only sign-in (client "
            "credentials, an administrator syncing many mailboxes); leave it unset for a "
            "person signed in with `contactsync login`."
        ),
    },
    "token_cache_path": {
        "type": ["string"],
        "description": (
            "Token cache file written by `contactsync login` and kept up to date by every "
            "run (mode 0600). Required unless client_secret is set."
        ),
    },
    "ca_bundle": {
        "type": ["string"],
        "description": "Path to a PEM bundle of CAs to trust instead of the system's.",
    },
    "account": {
        "type": ["string"],
        "description": "Delegated: the signed-in account (UPN) to use from the token cache when "
        "it holds several; by default the mailbox's UPN, or the only account.",
    },
}


class AuthError(Exception):
    """Signing in failed; the message says what to do. Never holds a token or secret."""

    #: The identity provider could not be reached or failed: trying later may work, signing
    #: in again would not help.
    transient = False


class AuthUnavailable(AuthError):
    """The identity provider was unreachable, throttling or failing (after our retries)."""

    transient = True


class AuthConfigError(AuthError, ValueError):
    """The auth settings are wrong (raised on construction); the message names the setting."""


# --------------------------------------------------------------------------- settings


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class AuthSettings:
    """How to sign in; validated and normalised on construction."""

    authority: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    token_cache_path: str | None = None
    ca_bundle: str | None = None
    account: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "authority", normalize_authority(self.authority))
        client_id = _text(self.client_id)
        if client_id is None:
            raise AuthConfigError(
                "client_id is empty: set it to the Application (client) ID of the app registration"
            )
        object.__setattr__(self, "client_id", client_id)
        if self.client_secret is not None and not isinstance(self.client_secret, str):
            raise AuthConfigError("client_secret must be a string")
        object.__setattr__(self, "client_secret", self.client_secret or None)
        cache = _text(self.token_cache_path)
        if cache is not None:
            cache = str(Path(cache).expanduser())
            if Path(cache).is_dir():
                raise AuthConfigError(
                    f"token_cache_path {cache!r} is a directory; give a file path such as "
                    f"{str(Path(cache) / 'contactsync-token-cache.json')!r}"
                )
        elif self.client_secret is None:
            raise AuthConfigError(
                "token_cache_path is empty: a person's sign-in (no client_secret) is kept in a "
                "token cache file; set token_cache_path and sign in once with `contactsync "
                "login` (or set client_secret for app-only sign-in)"
            )
        object.__setattr__(self, "token_cache_path", cache)
        bundle = _text(self.ca_bundle)
        if bundle is not None:
            bundle = str(Path(bundle).expanduser())
            if not Path(bundle).is_file():
                raise AuthConfigError(
                    f"ca_bundle {bundle!r} is not a readable file; point it at a PEM file of "
                    "the CA certificates to trust, or leave it empty for the system store"
                )
        object.__setattr__(self, "ca_bundle", bundle)
        object.__setattr__(self, "account", _text(self.account))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AuthSettings:
        """From plugin settings: ``authority``, ``client_id``, ``client_secret``,
        ``token_cache_path``, ``ca_bundle``; ``mailbox`` picks the cached account when it is a
        UPN (``account`` does so explicitly)."""
        mailbox = _text(config.get("mailbox"))
        account = _text(config.get("account")) or (mailbox if mailbox and "@" in mailbox else None)
        secret = config.get("client_secret")
        return cls(
            authority=_text(config.get("authority")) or "",
            client_id=_text(config.get("client_id")) or "",
            client_secret=secret if isinstance(secret, str) and secret else None,
            token_cache_path=_text(config.get("token_cache_path")),
            ca_bundle=_text(config.get("ca_bundle")),
            account=account,
        )

    @property
    def app_only(self) -> bool:
        """Client credentials (a secret is set) rather than a person's delegated sign-in."""
        return self.client_secret is not None

    @property
    def scopes(self) -> list[str]:
        return list(GRAPH_SCOPES_APP if self.app_only else GRAPH_SCOPES_DELEGATED)

    def login_command(self) -> str:
        """The `contactsync login` command line for these settings (no secret in it)."""
        parts = ["contactsync", "login", "--authority", self.authority, "--client-id"]
        parts.append(self.client_id)
        parts += ["--token-cache", self.token_cache_path or "PATH"]
        if self.ca_bundle:
            parts += ["--ca-bundle", self.ca_bundle]
        if self.account:
            parts += ["--account", self.account]
        return shlex.join(parts)


def normalize_authority(value: object) -> str:
    """``https://host[:port]/<tenant>[/...]`` without a trailing slash, or AuthConfigError."""
    text = _text(value)
    example = "https://login.microsoftonline.com/<tenant id or domain>"
    if text is None:
        raise AuthConfigError(f"authority is empty: set it to {example}")
    parts = urlsplit(text)
    if parts.scheme.lower() != "https":
        raise AuthConfigError(
            f"authority {text!r} must be an https URL (MSAL refuses anything else), e.g. {example}"
        )
    if not parts.hostname or parts.username or parts.password:
        raise AuthConfigError(
            f"authority {text!r} needs a host (and no user:password), e.g. {example}"
        )
    if parts.fragment or parts.query:
        raise AuthConfigError(f"authority {text!r} must not have a query or fragment")
    if not parts.path.strip("/"):
        raise AuthConfigError(
            f"authority {text!r} has no tenant: append the tenant id or domain, e.g. {example}"
        )
    return text.rstrip("/")


# --------------------------------------------------------------------------- HTTP for MSAL


class _TokenRetry(Retry):
    """urllib3's retry, reading a fractional ``Retry-After`` ("0.5") as seconds: urllib3 takes
    only whole seconds and raises ``InvalidHeader`` otherwise, failing the token request."""

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = float(retry_after)
        except ValueError:
            return super().parse_retry_after(retry_after)
        if not math.isfinite(seconds) or seconds < 0:
            return super().parse_retry_after(retry_after)
        return seconds


class IdentitySession(requests.Session):
    """The ``http_client`` handed to MSAL.

    ``trust_env=False`` so that ``REQUESTS_CA_BUNDLE`` cannot override ``verify`` (and proxy
    variables cannot reroute loopback traffic); a default timeout on every call (MSAL sets
    none); no redirects (a token request carries credentials in its body). The identity
    provider throttles and fails transiently like any service, and one failed refresh stops a
    whole run, so connection failures, dropped answers, 429 (after its ``Retry-After``) and
    500/502/503/504 are retried a few times. Presenting a refresh token again after a dropped
    answer is safe: Entra ID accepts a just-rotated one for a while.
    """

    def __init__(self, verify: bool | str, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.trust_env = False
        self.verify = verify
        self._timeout = timeout
        retry = _TokenRetry(
            total=6,
            connect=2,
            read=2,
            status=3,
            other=0,
            redirect=0,
            allowed_methods=None,
            status_forcelist=(429, 500, 502, 503, 504),
            backoff_factor=0.25,
            backoff_max=5.0,
            retry_after_max=10,
            raise_on_status=False,
            raise_on_redirect=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self.headers["User-Agent"] = DEFAULT_USER_AGENT

    def request(  # type: ignore[override]
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        kwargs.setdefault("allow_redirects", False)
        return super().request(method, url, *args, **kwargs)


# --------------------------------------------------------------------------- messages


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")
_TLS = re.compile(r"certificate verify failed: [^'\"()\]]+|hostname mismatch[^'\"()\]]*")


def _first_line(text: object) -> str:
    """The first line of an OAuth ``error_description`` (Entra adds trace ids below it)."""
    line = str(text or "").replace("\r\n", "\n").split("\n", 1)[0].strip()
    return line[:400]


def _reason(exc: BaseException) -> str:
    """A short cause of a connection failure ("[Errno 111] Connection refused")."""
    text = str(exc)
    match = _TLS.search(text) or _ERRNO.search(text)
    if match:
        return match.group(0).strip()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return type(exc).__name__


# --------------------------------------------------------------------------- the provider


class TokenProvider:
    """Access tokens for Microsoft Graph, as `settings` say (delegated or app-only).

    Thread-safe. Processes sharing one token cache file take turns (an advisory lock on
    ``<cache>.lock``) and re-read the file when another process changed it, so a rotated
    refresh token is never used twice. Creating the provider does no I/O; the first call
    reads the cache and the authority's OpenID configuration.
    """

    def __init__(
        self, settings: AuthSettings, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT
    ) -> None:
        if not isinstance(settings, AuthSettings):
            raise TypeError("settings must be an AuthSettings")
        self.settings = settings
        self._timeout = timeout
        self._lock = threading.RLock()
        self._cache = msal.SerializableTokenCache()
        self._stamp: tuple[int, int, int] | None = None
        self._app: msal.ClientApplication | None = None
        self._session: IdentitySession | None = None
        self._generation = 0
        self._current: str | None = None
        self._username: str | None = None

    # ----------------------------------------------------------------- public API

    def token(self) -> str:
        """A valid access token: from the cache, renewed with the refresh token, or (app-only)
        from client credentials. AuthError when not signed in or refused."""
        with self._locked():
            app = self._application()
            if self.settings.app_only:
                with self._calling("get an app-only token"):
                    result = app.acquire_token_for_client(self.settings.scopes)  # type: ignore[attr-defined]
            else:
                account = self._account(app)
                with self._calling("renew the access token"):
                    result = app.acquire_token_silent_with_error(
                        self.settings.scopes, account=account
                    )
            self._save()
            return self._accept(result)

    def refresh(self, failed_token: str | None = None) -> str:
        """A new access token after Graph refused one (401): delegated, a forced refresh with
        the refresh token; app-only, new client credentials. When another thread refreshed
        while this one waited (or the cache already holds a token other than
        ``failed_token``), that newer token is returned instead of refreshing again."""
        generation = self._generation
        with self._locked():
            if self._generation != generation and self._current is not None:
                return self._current
            app = self._application()
            if self.settings.app_only:
                with self._calling("get a new app-only token"):
                    app.remove_tokens_for_client()  # type: ignore[attr-defined]
                    result = app.acquire_token_for_client(self.settings.scopes)  # type: ignore[attr-defined]
            else:
                account = self._account(app)
                with self._calling("refresh the access token"):
                    result = None
                    if failed_token is not None:
                        cached = app.acquire_token_silent_with_error(
                            self.settings.scopes, account=account
                        )
                        if cached and cached.get("access_token") not in (None, failed_token):
                            result = cached
                    if result is None:
                        result = app.acquire_token_silent_with_error(
                            self.settings.scopes, account=account, force_refresh=True
                        )
            self._save()
            token = self._accept(result)
            self._generation += 1
            log.info("access token refreshed for %s", self._who())
            return token

    def login_device_code(
        self, *, echo: Callable[[str], None] = print, timeout: float = 900
    ) -> dict[str, Any]:
        """Sign a person in with the device code flow and keep the tokens in the cache file.

        ``echo`` receives Microsoft's message (the page to open and the code to enter); the
        call then waits, up to ``timeout`` seconds, until the person has picked their account
        and clicked Accept. Returns the account: ``username``, ``name``, ``home_account_id``,
        ``tenant_id``, ``token_cache_path``.
        """
        if self.settings.app_only:
            raise AuthError(
                "client_secret is set, so this is app-only sign-in: nobody logs in. Unset "
                "client_secret to sign in as a person with the device code."
            )
        with self._locked():
            app = self._application()
        with self._calling("start the device-code sign-in"):
            flow = app.initiate_device_flow(scopes=self.settings.scopes)  # type: ignore[attr-defined]
        if "user_code" not in flow:
            raise self._failure(flow, "start the device-code sign-in")
        echo(flow["message"])
        flow["expires_at"] = min(float(flow["expires_at"]), time.time() + timeout)
        with self._calling("complete the device-code sign-in"):
            result = app.acquire_token_by_device_flow(flow)  # type: ignore[attr-defined]
        if "access_token" not in result:
            if result.get("error") in ("authorization_pending", "slow_down"):
                raise AuthError(
                    f"sign-in was not completed within {timeout:g} s: open "
                    f"{flow.get('verification_uri', 'the page')}, enter the code, pick the "
                    "account and click Accept before the code expires; run `contactsync "
                    "login` again for a new code"
                )
            raise self._failure(result, "complete the device-code sign-in")
        claims = result.get("id_token_claims") or {}
        username = claims.get("preferred_username") or claims.get("upn") or ""
        wanted = self.settings.account
        with self._locked(reload=False):
            if wanted and username.lower() != wanted.lower():
                for account in app.get_accounts(username=username):
                    app.remove_account(account)
                self._save()
                raise AuthError(
                    f"signed in as {username or 'an unknown account'}, but the account to use "
                    f"is {wanted}: nothing was kept; run `contactsync login` again and pick "
                    f"{wanted}"
                )
            self._save()
            self._current = result["access_token"]
            self._generation += 1
            self._username = username
        log.info("signed in as %s (token cache %s)", username, self.settings.token_cache_path)
        client_info = result.get("client_info")
        home = None
        if isinstance(client_info, str):
            with contextlib.suppress(ValueError, TypeError):
                info = json.loads(decode_part(client_info))
                home = f"{info['uid']}.{info['utid']}"
        return {
            "username": username,
            "name": claims.get("name"),
            "home_account_id": home,
            "tenant_id": claims.get("tid"),
            "token_cache_path": self.settings.token_cache_path,
        }

    def accounts(self) -> list[str]:
        """Usernames of the accounts in the token cache for this authority (no network)."""
        with self._locked():
            entries = list(self._cache.search(msal.TokenCache.CredentialType.ACCOUNT))
        host = (urlsplit(self.settings.authority).hostname or "").lower()
        names = {
            str(a.get("username"))
            for a in entries
            if str(a.get("environment", "")).lower() == host and a.get("username")
        }
        return sorted(names, key=str.lower)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def __repr__(self) -> str:
        mode = "app-only" if self.settings.app_only else "delegated"
        return f"TokenProvider({mode}, authority={self.settings.authority!r})"

    # ----------------------------------------------------------------- MSAL

    def _application(self) -> msal.ClientApplication:
        if self._app is not None:
            return self._app
        settings = self.settings
        session = IdentitySession(settings.ca_bundle or True, self._timeout)
        common: dict[str, Any] = {
            "authority": settings.authority,
            "instance_discovery": False,
            "token_cache": self._cache,
            "http_client": session,
        }
        try:
            with self._calling("read the authority's OpenID configuration"):
                if settings.app_only:
                    app: msal.ClientApplication = msal.ConfidentialClientApplication(
                        settings.client_id, client_credential=settings.client_secret, **common
                    )
                else:
                    app = msal.PublicClientApplication(settings.client_id, **common)
        except AuthError:
            session.close()
            raise
        except ValueError as exc:  # MSAL: the OpenID discovery document was refused
            session.close()
            raise AuthError(
                f"the identity provider did not accept the authority {settings.authority} "
                f"(OpenID discovery at {settings.authority}/v2.0/.well-known/openid-"
                f"configuration: {self._discovery_detail(exc)}); check the tenant id or "
                "domain in authority"
            ) from None
        self._app, self._session = app, session
        return app

    def _discovery_detail(self, exc: ValueError) -> str:
        cause = exc.__context__
        match = re.search(r"HTTP status: (\d+), Error: (.*)", str(cause or ""), re.S)
        if not match:
            return "the answer is not an OpenID configuration"
        detail = f"HTTP {match.group(1)}"
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            body = json.loads(match.group(2))
            line = _first_line(body.get("error_description"))
            if line:
                detail += f", {self._scrub(line)}"
        return detail

    def _account(self, app: msal.ClientApplication) -> dict[str, Any]:
        wanted = self.settings.account
        accounts = app.get_accounts()
        names = sorted({str(a.get("username")) for a in accounts}, key=str.lower)
        if wanted:
            accounts = [a for a in accounts if str(a.get("username", "")).lower() == wanted.lower()]
        if not accounts:
            held = f" (it holds {', '.join(names)})" if names and wanted else ""
            who = f" as {wanted}" if wanted else ""
            raise AuthError(
                f"not signed in{who}: the token cache {self.settings.token_cache_path} has no "
                f"such account{held}; sign in once with `{self.settings.login_command()}`"
            )
        if len(accounts) > 1:
            raise AuthError(
                f"the token cache {self.settings.token_cache_path} holds several accounts "
                f"({', '.join(names)}): set the mailbox setting to the UPN of the one to use "
                "(or --account)"
            )
        account: dict[str, Any] = accounts[0]
        self._username = str(account.get("username") or "")
        return account

    def _accept(self, result: Mapping[str, Any] | None) -> str:
        if result is None:  # no refresh token for the account in the cache
            raise AuthError(
                f"not signed in: the token cache {self.settings.token_cache_path} holds no "
                f"refresh token for {self._who()}; sign in again with "
                f"`{self.settings.login_command()}`"
            )
        token = result.get("access_token")
        if not token:
            raise self._failure(result, "get an access token")
        if token != self._current:
            source = result.get("token_source", "identity provider")
            log.debug("new access token for %s (from %s)", self._who(), source)
        self._current = str(token)
        return self._current

    def _failure(self, result: Mapping[str, Any], action: str) -> AuthError:
        """An AuthError for an OAuth error answer (`error`, `error_description`)."""
        error = str(result.get("error") or "unknown_error")
        detail = self._scrub(_first_line(result.get("error_description")))
        cid = self.settings.client_id
        if error == "unauthorized_client" or "AADSTS700016" in detail:
            return AuthError(
                f"the identity provider at {self.settings.authority} does not know client_id "
                f"{cid!r} ({detail}); set client_id to the Application (client) ID of the app "
                "registration in that tenant"
            )
        if "AADSTS7000218" in detail and not self.settings.app_only:
            # Entra's answer when a registration that is not a public client redeems a device
            # code without a secret (Microsoft's troubleshooting article "AADSTS7000218 … for
            # confidential client applications"; the v2 device code flow page names the switch).
            return AuthError(
                f"the app registration {cid!r} does not allow public client flows, which "
                f"device-code sign-in needs ({detail}). In the Microsoft Entra admin center, "
                'open the app registration → Authentication → Advanced settings, set "Allow '
                'public client flows" (older portals: "Treat application as a public '
                'client") to Yes, save, and sign in again'
            )
        if error == "invalid_client":
            what = "client_secret" if self.settings.app_only else "client_id"
            return AuthError(
                f"the identity provider refused the app's credentials for client_id {cid!r} "
                f"({detail}); check {what} (a secret's value, not its id, and not expired)"
            )
        if error == "invalid_grant":
            return AuthError(
                f"the sign-in of {self._who()} is no longer valid ({detail}); sign in again "
                f"with `{self.settings.login_command()}`"
            )
        if error == "authorization_declined":
            return AuthError(
                "sign-in was declined (Cancel was clicked, or consent was refused); run "
                "`contactsync login` again and click Accept"
            )
        if error in ("expired_token", "code_expired"):
            return AuthError(
                "the device code expired before sign-in was completed; run `contactsync login` "
                "again and finish within the time shown"
            )
        if error == "invalid_scope":
            return AuthError(
                f"the app registration {cid!r} may not ask for {' '.join(self.settings.scopes)} "
                f"({detail}); grant it the Microsoft Graph permission Contacts.ReadWrite"
            )
        return AuthError(f"could not {action}: {error} ({detail})")

    @contextlib.contextmanager
    def _calling(self, action: str) -> Iterator[None]:
        """Turn transport and protocol failures of MSAL calls into AuthErrors."""
        authority = self.settings.authority
        try:
            yield
        except requests.exceptions.SSLError as exc:
            raise AuthError(
                f"could not {action}: TLS verification of the identity provider at "
                f"{authority} failed ({_reason(exc)}); set ca_bundle to the CA certificate "
                "that signed its certificate"
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise AuthUnavailable(
                f"could not {action}: cannot reach the identity provider at {authority} "
                f"({_reason(exc)}); check authority and the network"
            ) from None
        except requests.RequestException as exc:
            raise AuthUnavailable(
                f"could not {action}: request to {authority} failed ({type(exc).__name__})"
            ) from None
        except MsalServiceError as exc:
            raise AuthUnavailable(
                f"could not {action}: the identity provider at {authority} failed "
                f"({self._scrub(str(exc))}); try again later"
            ) from None
        except json.JSONDecodeError:
            raise AuthError(
                f"could not {action}: the identity provider at {authority} answered with "
                "something that is not JSON; is authority the right URL?"
            ) from None

    def _scrub(self, text: str) -> str:
        secret = self.settings.client_secret
        if secret and len(secret) >= 8 and secret in text:  # shorter ones are no secret
            text = text.replace(secret, "***")
        return text

    def _who(self) -> str:
        if self.settings.app_only:
            return f"app {self.settings.client_id}"
        return self._username or self.settings.account or "the signed-in account"

    # ----------------------------------------------------------------- the cache file

    @contextlib.contextmanager
    def _locked(self, *, reload: bool = True) -> Iterator[None]:
        """This thread alone, and (with a cache file) this process alone; the cache re-read
        first if another process rewrote the file."""
        with self._lock:
            path = self.settings.token_cache_path
            if path is None:
                yield
                return
            with _file_lock(Path(path)):
                if reload:
                    self._load_if_changed(Path(path))
                yield

    def _load_if_changed(self, path: Path) -> None:
        try:
            st = path.stat()
        except FileNotFoundError:
            if self._stamp is not None:  # deleted since: signed out
                self._cache.deserialize("{}")
                self._stamp = None
            return
        except OSError as exc:
            raise AuthError(f"cannot read the token cache {path}: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        if stat.S_IMODE(st.st_mode) & 0o077:
            log.warning(
                "token cache %s was accessible to others (mode %o); set to 0600",
                path,
                stat.S_IMODE(st.st_mode),
            )
            try:
                os.chmod(path, CACHE_MODE)
            except OSError as exc:
                raise AuthError(
                    f"token cache {path} is readable by others and cannot be made private "
                    f"({exc.strerror}); fix its permissions (chmod 600)"
                ) from None
        try:
            text = path.read_text(encoding="utf-8")
            self._cache.deserialize(text)
        except OSError as exc:
            raise AuthError(f"cannot read the token cache {path}: {exc.strerror}") from None
        except (ValueError, UnicodeDecodeError):
            raise AuthError(
                f"the token cache {path} is not an MSAL token cache; delete it and sign in "
                f"again with `{self.settings.login_command()}`"
            ) from None
        self._stamp = stamp

    def _save(self) -> None:
        path = self.settings.token_cache_path
        if path is None or not self._cache.has_state_changed:
            return
        target = Path(path)
        data = self._cache.serialize()
        try:
            _write_private(target, data)
            st = target.stat()
        except OSError as exc:
            raise AuthError(
                f"cannot write the token cache {target}: {exc.strerror}; check that its "
                "directory exists and is writable"
            ) from None
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)


def _write_private(target: Path, data: str) -> None:
    """Write `data` to `target` atomically, mode 0600 from the first byte."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, CACHE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, CACHE_MODE)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def _file_lock(cache: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``<cache>.lock`` (no-op where fcntl is missing)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock_path = cache.with_name(cache.name + ".lock")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, CACHE_MODE)
    except OSError as exc:
        raise AuthError(
            f"cannot use the token cache {cache}: {exc.strerror} ({lock_path})"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` from a TokenProvider, fetched for every request (so a
    refreshed token is used from the next request on)."""

    def __init__(self, provider: TokenProvider) -> None:
        self.provider = provider

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.provider.token()}"
        return request

    def __repr__(self) -> str:
        return f"BearerAuth({self.provider!r})"
