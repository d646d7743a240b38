"""Sign a sandbox user in the way the Outlook plugins expect to find them signed in.

A device-code sign-in through unmodified MSAL over TLS, as `contactsync login` does it, where the
sandbox plays the person's part (open the page, enter the code, pick the account, Accept) through
the identity emulator's control API. The tokens land in an MSAL token cache file (mode 0600) that
every plugin run then refreshes silently. App-only runs (a client secret) need no sign-in.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msal

from .client import SandboxControl, SandboxControlError, sandbox_session

#: The delegated permission the Outlook plugins ask for (MSAL adds the OpenID scopes).
DELEGATED_SCOPES = ["Contacts.ReadWrite"]
CACHE_MODE = 0o600


class SignInError(RuntimeError):
    """The sandbox could not sign the user in (the message says why)."""


def approve_device_code(identity: SandboxControl, upn: str, user_code: str | None = None) -> None:
    """The person's part of a device-code sign-in: pick the account `upn`, click Accept."""
    body = {"upn": upn} if user_code is None else {"upn": upn, "user_code": user_code}
    try:
        identity._call("POST", "/identity/device/approve", json=body)
    except SandboxControlError as exc:
        raise SignInError(f"the sandbox could not approve the sign-in of {upn}: {exc}") from None


@contextlib.contextmanager
def approving(identity: SandboxControl, upn: str, timeout: float = 60) -> Iterator[None]:
    """Approve, as `upn`, the next device code someone else starts inside the block (for
    `contactsync login`/`activate` run as a process: they print the code, the sandbox accepts)."""
    stop = threading.Event()

    def approve() -> None:
        waited = 0.0
        while not stop.is_set() and waited < timeout:
            pending = identity._call("GET", "/identity/device", params={"status": "pending"})
            codes = [d["user_code"] for d in pending["device_codes"]]
            if codes:
                approve_device_code(identity, upn, codes[0])
                return
            stop.wait(0.05)
            waited += 0.05

    approver = threading.Thread(target=approve, daemon=True)
    approver.start()
    try:
        yield
    finally:
        stop.set()
        approver.join(5)


def sign_in(
    info: Mapping[str, Any], upn: str, cache_path: Path, identity: SandboxControl | None = None
) -> Path:
    """Make `cache_path` hold a working sign-in of `upn`: kept if the cache already has one that
    the sandbox still honours, else a new device-code sign-in approved by the sandbox."""
    own_control = identity is None
    if identity is None:
        identity = SandboxControl(info["urls"]["identity"], info["ca_path"])
    http = sandbox_session(info["ca_path"])
    cache = msal.SerializableTokenCache()
    if cache_path.exists():
        with contextlib.suppress(ValueError, OSError):
            cache.deserialize(cache_path.read_text(encoding="utf-8"))
    try:
        app = msal.PublicClientApplication(
            info["identity_client_id"],
            authority=info["authority"],
            instance_discovery=False,  # never ask login.microsoftonline.com about it
            http_client=http,
            token_cache=cache,
        )
        if not _still_signed_in(app, upn):
            _device_code(app, identity, upn)
        _save(cache, cache_path)
    finally:
        http.close()
        if own_control:
            identity.close()
    return cache_path


def _still_signed_in(app: msal.PublicClientApplication, upn: str) -> bool:
    for account in app.get_accounts(username=upn):
        result = app.acquire_token_silent(DELEGATED_SCOPES, account=account)
        if result and "access_token" in result:
            return True
        app.remove_account(account)  # a sign-in the sandbox no longer knows (restarted, reseeded)
    return False


def _device_code(app: msal.PublicClientApplication, identity: SandboxControl, upn: str) -> None:
    flow = app.initiate_device_flow(scopes=DELEGATED_SCOPES)
    if "user_code" not in flow:
        raise SignInError(f"the sandbox refused to start a sign-in: {_reason(flow)}")
    approve_device_code(identity, upn, flow["user_code"])
    result = app.acquire_token_by_device_flow(flow)
    if "access_token" not in result:
        raise SignInError(f"the sign-in of {upn} failed: {_reason(result)}")


def _reason(result: Mapping[str, Any]) -> str:
    description = str(result.get("error_description") or "").splitlines()
    return f"{result.get('error', 'error')}: {description[0] if description else ''}".strip()


def _save(cache: msal.SerializableTokenCache, path: Path) -> None:
    """Atomically, mode 0600 from the first byte (a token cache holds a refresh token)."""
    if not cache.has_state_changed and path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, CACHE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(cache.serialize())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
