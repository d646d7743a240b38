"""The checks `activate` and `configure` make against the two services before storing anything:
the Pipeliner user exists, the Microsoft account signs in, the folder is a personal one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from contactsync.ops.space_secrets import SpaceSecrets
from contactsync.ops.users import SpaceConfig
from contactsync.outlook.auth import AuthError, AuthSettings, TokenProvider
from contactsync.outlook.graph_api import Folder, GraphClient, GraphError, GraphSettings
from contactsync.pipeliner.api import PipelinerClient, PipelinerError, PipelinerSettings


class CheckFailed(Exception):
    """A service said no; the message says what to do."""


def pipeliner_user_id(space: SpaceConfig, secrets: SpaceSecrets, email: str) -> str:
    """The Pipeliner Client id of ``email`` (case-insensitive), or CheckFailed."""
    settings = PipelinerSettings(
        service_url=space.service_url,
        space_id=space.space_id,
        api_username=space.api_username,
        api_password=secrets.api_password,
        ca_bundle=space.ca_bundle,
    )
    try:
        with PipelinerClient(settings) as client:
            return str(client.resolve_user(email=email).client["id"])
    except PipelinerError as exc:
        raise CheckFailed(f"Pipeliner: {exc}") from None


def token_provider(
    space: SpaceConfig, secrets: SpaceSecrets, email: str, token_cache: Path | None
) -> TokenProvider:
    """App-only when the space was enabled with a client secret, else the user's own cache."""
    return TokenProvider(
        AuthSettings(
            authority=space.authority,
            client_id=space.client_id,
            client_secret=secrets.client_secret if space.app_only else None,
            token_cache_path=None if space.app_only else str(token_cache),
            ca_bundle=space.ca_bundle,
            account=None if space.app_only else email,
        )
    )


def sign_in(
    provider: TokenProvider, *, echo: Callable[[str], None], timeout: float, interactive: bool
) -> str:
    """A token silently (cache, or app-only) or, when ``interactive``, by the device code.

    Returns how: "app-only", "token cache" or "device code"."""
    try:
        provider.token()
        return "app-only" if provider.settings.app_only else "token cache"
    except AuthError:
        if provider.settings.app_only or not interactive:
            raise
    provider.login_device_code(echo=echo, timeout=timeout)
    return "device code"


def personal_folder(
    space: SpaceConfig, provider: TokenProvider, mailbox: str, folder: str, *, create: bool
) -> Folder:
    """The folder, checked to be a personal contacts folder of ``mailbox`` (created if asked)."""
    settings = GraphSettings(graph_url=space.graph_url, mailbox=mailbox, ca_bundle=space.ca_bundle)
    try:
        with GraphClient(settings, provider) as graph:
            return graph.resolve_folder(folder, create=create)
    except (GraphError, AuthError) as exc:
        raise CheckFailed(f"Outlook: {exc}") from None
