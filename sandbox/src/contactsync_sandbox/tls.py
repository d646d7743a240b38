"""A persistent local certificate authority for the sandbox's HTTPS servers.

Clients (requests, MSAL, curl) must verify TLS exactly as they would against the real services,
so the sandbox serves real certificates signed by a CA of its own. The CA is generated once per
state directory and reused, so a `ca_path` configured in Meltano or a shell stays valid across
restarts; only the short-lived leaf certificate is issued anew on each start.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

#: Default state directory, relative to the current working directory (the project root when
#: started by `make sandbox`).
DEFAULT_STATE_DIR = Path(".sandbox")
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
#: Names the leaf certificate is valid for. Servers bind 127.0.0.1 only; `localhost` is there
#: for people who type it.
LEAF_IDENTITIES = ("127.0.0.1", "localhost")


class CAError(RuntimeError):
    """The state directory holds a CA that cannot be loaded."""


@dataclass(frozen=True)
class LocalCA:
    """The sandbox CA: `ca_path` is what clients trust."""

    ca: trustme.CA
    ca_path: Path
    key_path: Path

    def server_context(self, *extra_identities: str) -> ssl.SSLContext:
        """A server-side context presenting a fresh leaf certificate for loopback names."""
        identities = dict.fromkeys((*LEAF_IDENTITIES, *extra_identities))
        leaf = self.ca.issue_cert(*identities)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        leaf.configure_cert(ctx)
        return ctx


def load_or_create_ca(state_dir: Path | str = DEFAULT_STATE_DIR) -> LocalCA:
    """Load the CA of `state_dir`, generating it on first use.

    Concurrent first starts on one directory are serialised with a lock file, so two
    processes can never end up serving leaves of different CAs under one `ca.pem`.
    """
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = state / CA_CERT_FILE, state / CA_KEY_FILE
    with _locked(state / ".ca.lock"):
        if cert_path.exists() and key_path.exists():
            try:
                ca = trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes())
            except ValueError as exc:
                raise CAError(
                    f"cannot load the sandbox CA from {state} ({exc}); delete "
                    f"{cert_path.name} and {key_path.name} to generate a new one"
                ) from exc
        else:
            ca = trustme.CA(
                organization_name="contactsync sandbox",
                organization_unit_name="contactsync sandbox local CA",
            )
            _write_private(key_path, ca.private_key_pem.bytes())
            _write_atomic(cert_path, ca.cert_pem.bytes(), mode=0o644)
    return LocalCA(ca=ca, ca_path=cert_path, key_path=key_path)


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret so that it is never readable by others, not even for a moment."""
    _write_atomic(path, data, mode=0o600)


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    if hasattr(os, "fchmod"):  # the umask may have narrowed it; a stale tmp may be wider
        os.fchmod(fd, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no concurrent-start protection
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
