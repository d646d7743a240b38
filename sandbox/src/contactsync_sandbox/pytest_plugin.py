"""pytest fixtures: `sandbox` (one per session, on free ports) and `sandbox_reset` (per test).

Registered through the `pytest11` entry point, so any test of the project can ask for them.
The session fixture starts the servers lazily, the first time a test requests it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .client import SandboxControl, sandbox_session
from .runner import Sandbox


class SandboxHandle:
    """What the `sandbox` fixture yields: URLs, the CA, control clients and an https session."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.info: dict[str, Any] = sandbox.info()
        self.ca_path = Path(self.info["ca_path"])
        self._controls: dict[str, SandboxControl] = {}

    def url(self, name: str) -> str:
        return str(self.info["urls"][name])

    def control(self, name: str) -> SandboxControl:
        """The control-API client of emulator `name` (cached)."""
        if name not in self._controls:
            self._controls[name] = SandboxControl(self.url(name), self.ca_path)
        return self._controls[name]

    def session(self) -> requests.Session:
        """A new requests Session trusting the sandbox CA (and ignoring REQUESTS_CA_BUNDLE)."""
        return sandbox_session(self.ca_path)

    def reset(self) -> None:
        """Every emulator back to its default seed, with no faults and zero counters."""
        for name in self.info["urls"]:
            self.control(name).reset()

    def close(self) -> None:
        for control in self._controls.values():
            control.close()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    """All emulators on free ports with a fresh CA; shared by the whole session."""
    state_dir = tmp_path_factory.mktemp("sandbox-state")
    with Sandbox(state_dir, free_ports=True) as running:
        handle = SandboxHandle(running)
        try:
            yield handle
        finally:
            handle.close()


@pytest.fixture
def sandbox_reset(sandbox: SandboxHandle) -> SandboxHandle:
    """The session sandbox, reset (default seed, no faults, zero counters) for this test."""
    sandbox.reset()
    return sandbox
