"""The sandbox's access-token registry, shared by the identity-provider and Graph emulators.

Real Microsoft Graph access tokens are JWTs signed by Entra ID; the sandbox does not need that.
The identity-provider emulator (`contactsync_sandbox.identity`) hands out *opaque* bearer strings
and records what each one grants here; the Graph emulator (`contactsync_sandbox.graph`) looks the
string of every `Authorization: Bearer ...` header up here. Both emulators run in the same
process (`Sandbox` starts them together), so a process-wide registry is all the "signature
check" needed. Clients must treat the strings as opaque, exactly as with real tokens.

API (thread-safe; use the module-level `REGISTRY`):

* `REGISTRY.issue(client_id=..., tenant_id=..., mailbox_id=..., upn=..., scopes=..., lifetime=...)`
  → `Grant`. `mailbox_id=None` means an app-only (client-credentials) token; otherwise the token is
  delegated and acts as that mailbox's owner (`/me` resolves to it). The token string is
  `"sbx." + secrets.token_urlsafe(32)`. `lifetime` is seconds (default 3600, like Entra ID's
  typical 60–90 minutes); `expires_at` may be given instead (absolute `time.time()`).
* `REGISTRY.lookup(token)` → `Grant | None`. Returns the grant even when it has expired: callers
  check `grant.expired` (the Graph emulator answers 401 `InvalidAuthenticationToken` for both
  unknown and expired tokens). Revoked tokens are forgotten, so they look unknown.
* `REGISTRY.expire(token)` / `REGISTRY.expire_all()` make tokens expired now (they stay known, so
  an emulator can tell "expired" from "never issued" in its error message).
* `REGISTRY.revoke_for_client(client_id)` forgets every token of one app registration.
* `REGISTRY.clear()` forgets everything (sandbox reset); `REGISTRY.grants()` lists a snapshot.

`Grant.has_scope(name)` compares case-insensitively, as Entra ID scope names are.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

__all__ = ["DEFAULT_LIFETIME", "REGISTRY", "TOKEN_PREFIX", "Grant", "TokenRegistry"]

#: Prefix of every sandbox token, so one is recognisable in logs (never parse it otherwise).
TOKEN_PREFIX = "sbx."
#: Default access-token lifetime in seconds.
DEFAULT_LIFETIME = 3600.0


@dataclass(frozen=True)
class Grant:
    """What one access token allows."""

    token: str
    client_id: str
    tenant_id: str
    #: The mailbox the token acts for (delegated); None = app-only token.
    mailbox_id: str | None
    #: User principal name of the signed-in user (delegated); None for app-only.
    upn: str | None
    scopes: frozenset[str]
    #: Absolute expiry, `time.time()` seconds.
    expires_at: float

    @property
    def app_only(self) -> bool:
        return self.mailbox_id is None

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires_at

    def has_scope(self, name: str) -> bool:
        wanted = name.lower()
        return any(s.lower() == wanted for s in self.scopes)


class TokenRegistry:
    """Opaque access token → `Grant`; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[str, Grant] = {}

    def issue(
        self,
        *,
        client_id: str,
        tenant_id: str,
        mailbox_id: str | None = None,
        upn: str | None = None,
        scopes: Iterable[str] = (),
        lifetime: float = DEFAULT_LIFETIME,
        expires_at: float | None = None,
    ) -> Grant:
        """Create a new token and remember what it grants."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        grant = Grant(
            token=token,
            client_id=client_id,
            tenant_id=tenant_id,
            mailbox_id=mailbox_id,
            upn=upn,
            scopes=frozenset(scopes),
            expires_at=expires_at if expires_at is not None else time.time() + lifetime,
        )
        with self._lock:
            self._grants[token] = grant
        return grant

    def lookup(self, token: str) -> Grant | None:
        """The grant of `token` (possibly expired), or None when never issued or revoked."""
        with self._lock:
            return self._grants.get(token)

    def expire(self, token: str) -> bool:
        """Make one token expired now; False when unknown."""
        now = time.time()
        with self._lock:
            grant = self._grants.get(token)
            if grant is None:
                return False
            self._grants[token] = replace(grant, expires_at=min(grant.expires_at, now))
            return True

    def expire_all(self) -> int:
        """Make every known token expired now; returns how many were still valid."""
        now = time.time()
        count = 0
        with self._lock:
            for token, grant in self._grants.items():
                if grant.expires_at > now:
                    count += 1
                self._grants[token] = replace(grant, expires_at=min(grant.expires_at, now))
        return count

    def revoke_for_client(self, client_id: str) -> int:
        """Forget every token of one client id; returns how many were forgotten."""
        with self._lock:
            doomed = [t for t, g in self._grants.items() if g.client_id == client_id]
            for token in doomed:
                del self._grants[token]
        return len(doomed)

    def clear(self) -> None:
        """Forget every token."""
        with self._lock:
            self._grants.clear()

    def grants(self) -> list[Grant]:
        """A snapshot of every known grant."""
        with self._lock:
            return list(self._grants.values())


#: The process-wide registry both emulators use.
REGISTRY = TokenRegistry()
