"""Fixtures shared by the end-to-end tests: one signed-in token cache per module, and a user's
project with its empty folder (modules that need seeded data define their own ``project``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.plugins import sign_in


@pytest.fixture(scope="module")
def token_cache(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A delegated sign-in to the sandbox, done once per module (the MSAL cache file)."""
    return sign_in(sandbox, tmp_path_factory.mktemp("auth") / "token-cache.json")


@pytest.fixture
def project(sandbox: Any, token_cache: Path, tmp_path: Path) -> Any:
    """Alex's sync through Meltano, isolated, with its Outlook folder created."""
    from tests.e2e.test_meltano_sync import Project

    proj = Project(sandbox, token_cache, tmp_path)
    proj.outlook.new_folder(proj.folder)
    return proj
