"""One user's plugin settings, as their runs get them: for commands that act on both services
outside a run (`link`, `conflicts`)."""

from __future__ import annotations

import os
from typing import Any

from contactsync.ops import space_secrets
from contactsync.ops.cli._common import Project
from contactsync.ops.users import RegistryError, UserSync, normalize_email


class ConfigError(Exception):
    """The user or the space cannot be used; the message says why."""


def user_config(project: Project, email: str) -> tuple[UserSync, dict[str, Any]]:
    """The registered user and the settings their plugins run with (secrets from the
    environment or the space's secrets file, never from the database)."""
    try:
        with project.registry() as registry:
            space, user = registry.require_space(), registry.require(normalize_email(email))
        secrets = space_secrets.resolve(space.secrets_file, os.environ, app_only=space.app_only)
    except (RegistryError, space_secrets.SecretsError) as exc:
        raise ConfigError(str(exc)) from None
    return user, {
        "service_url": space.service_url,
        "space_id": space.space_id,
        "api_username": space.api_username,
        "api_password": secrets.api_password,
        "ca_bundle": space.ca_bundle,
        "user_email": user.email,
        "authority": space.authority,
        "client_id": space.client_id,
        "client_secret": secrets.client_secret,
        "token_cache_path": user.token_cache,
        "graph_url": space.graph_url,
        "mailbox": user.mailbox,
        "folder": user.folder_id,
        "sync_type": user.sync_type,
        "sync_option": user.sync_option,
    }
