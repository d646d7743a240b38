"""pytest fixtures for any project that installs contactsync-sandbox (entry point `pytest11`).

* `sandbox` (session): every emulator on free ports with a fresh CA, started the first time a
  test asks for it; `sandbox_reset` (per test): the same, back to its start seed.
* `seeded_sandbox` (per test): the session sandbox holding the test's own data, from the marker
  `@pytest.mark.sandbox_seed("seed.json")` (a file or a directory of them, relative to the test
  file) or from the fixture `sandbox_seed` (override it, or parametrize it indirectly); faults
  from `@pytest.mark.sandbox_fault("outlook", "429", count=2)` are scheduled. Back to the
  default seed afterwards.
* `sandbox_env` (per test): the Meltano environment variables of the test's user (marker
  `sandbox_user("alex@contoso.example")`, default: the first user with a mailbox), signed in,
  as a dict to add to the environment of `meltano run`.

Every fixture yields or uses a `contactsync_sandbox.handle.SandboxHandle`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from .handle import SandboxHandle
from .runner import Sandbox

__all__ = ["SandboxHandle"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sandbox_seed(path): the seed file or directory of the seeded_sandbox fixture "
        "(relative to the test file)",
    )
    config.addinivalue_line(
        "markers", "sandbox_user(email): the user whose Meltano environment sandbox_env gives"
    )
    config.addinivalue_line(
        "markers",
        "sandbox_fault(service, kind, **params): a fault seeded_sandbox schedules, "
        "e.g. sandbox_fault('outlook', '429', count=2, retry_after=0.1)",
    )


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    """All emulators on free ports with a fresh CA; shared by the whole session."""
    state_dir = tmp_path_factory.mktemp("sandbox-state")
    with Sandbox(state_dir, free_ports=True) as running:
        handle = SandboxHandle(
            running.info(), running, data_dir=tmp_path_factory.mktemp("sandbox-users")
        )
        try:
            yield handle
        finally:
            handle.close()


@pytest.fixture
def sandbox_reset(sandbox: SandboxHandle) -> SandboxHandle:
    """The session sandbox, reset (start seed, no faults, zero counters) for this test."""
    sandbox.reset()
    return sandbox


@pytest.fixture
def sandbox_seed(request: pytest.FixtureRequest) -> Path | Mapping[str, Any] | None:
    """The seed of `seeded_sandbox`: an indirect parameter, else the `sandbox_seed` marker's
    path (relative to the test file), else None (the default seed)."""
    value = getattr(request, "param", None)
    if value is None:
        marker = request.node.get_closest_marker("sandbox_seed")
        if marker is not None:
            if len(marker.args) != 1:
                raise pytest.UsageError("@pytest.mark.sandbox_seed takes one path")
            value = marker.args[0]
    if value is None or isinstance(value, Mapping):
        return value
    path = Path(value)
    return path if path.is_absolute() else request.path.parent / path


@pytest.fixture
def seeded_sandbox(
    request: pytest.FixtureRequest,
    sandbox: SandboxHandle,
    sandbox_seed: Path | Mapping[str, Any] | None,
    tmp_path: Path,
) -> Iterator[SandboxHandle]:
    """The session sandbox holding this test's seed, its faults scheduled; users' files (token
    caches, ledgers, Meltano state, reports) in the test's tmp_path."""
    previous = sandbox.data_dir
    sandbox.data_dir = tmp_path / "sandbox-users"
    if sandbox_seed is None:
        sandbox.reset()
    else:
        sandbox.seed(sandbox_seed)
    for marker in reversed(list(request.node.iter_markers("sandbox_fault"))):
        sandbox.fault(*marker.args, **marker.kwargs)
    try:
        yield sandbox
    finally:
        sandbox.data_dir = previous
        sandbox.reset()


@pytest.fixture
def sandbox_user(request: pytest.FixtureRequest, seeded_sandbox: SandboxHandle) -> str:
    """The marker `sandbox_user`'s e-mail, else the first Pipeliner user who has a mailbox."""
    marker = request.node.get_closest_marker("sandbox_user")
    if marker is not None:
        return str(marker.args[0])
    boxes = seeded_sandbox.control("graph")._call("GET", "/graph/mailboxes")["mailboxes"]
    upns = {str(b["user_principal_name"]).lower() for b in boxes}
    for user in seeded_sandbox.pipeliner_users():
        if str(user.get("email", "")).lower() in upns:
            return str(user["email"])
    raise pytest.UsageError("the seed has no Pipeliner user with a mailbox")


@pytest.fixture
def sandbox_env(seeded_sandbox: SandboxHandle, sandbox_user: str) -> dict[str, str]:
    """`contactsync-sandbox env --user <sandbox_user>` as a dict (the user signed in)."""
    return seeded_sandbox.env(sandbox_user)
