"""contactsync_sandbox: local HTTPS emulators of the services contactsync talks to.

The framework (TLS from a local CA, the `/_sandbox/` control API, faults, counters, the
runner, the CLI and the pytest fixture) lives here; each emulator is an `Emulator` subclass
registered in `contactsync_sandbox.runner`. See sandbox/README.md.

Public API for tests and scripts of other projects: `connect()` (a handle on a sandbox that
`contactsync-sandbox serve` runs), `SandboxHandle` (what the pytest fixtures yield), and
`load_seed_files()`/`SeedError` (seed files, as `serve --seed` reads them).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["SandboxHandle", "SeedError", "connect", "load_seed_files"]


def __getattr__(name: str) -> Any:
    # Lazily: importing a small module (the control client) must not start every emulator's.
    if name in ("SandboxHandle", "connect"):
        from . import handle

        return getattr(handle, name)
    if name in ("SeedError", "load_seed_files"):
        from . import fixture

        return getattr(fixture, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
