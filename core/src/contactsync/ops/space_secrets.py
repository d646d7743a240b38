"""The space's two secrets: the Pipeliner API password and (app-only) the Microsoft client secret.

They never go into meltano.yml or the registry database. A run takes each from its environment
variable (the names of the `prod` Meltano environment), else from the secrets file recorded by
`contactsync enable`: a JSON object, mode 0600, readable by the account that runs the syncs.
The environment wins, so a secret can be rotated by a deployment without touching the file.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from contactsync.outlook.auth import _write_private  # atomic, 0600 from the first byte

#: secret name -> environment variable.
ENV: Final = {"api_password": "PIPELINER_API_PASSWORD", "client_secret": "MS_CLIENT_SECRET"}


class SecretsError(Exception):
    """A secret is missing or its file is unusable; the message names it and what to do."""


@dataclass(frozen=True)
class SpaceSecrets:
    api_password: str = field(repr=False)
    client_secret: str | None = field(default=None, repr=False)


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The secrets set (non-empty) in ``environ``."""
    return {name: environ[var] for name, var in ENV.items() if environ.get(var, "").strip()}


def read_file(path: str | Path) -> dict[str, str]:
    """The secrets file's values; refuses a file other accounts can read."""
    target = Path(path)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
        if mode & 0o077:
            raise SecretsError(
                f"the secrets file {target} is readable by others (mode {mode:04o}); "
                f"run `chmod 600 {target}`"
            )
        data = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SecretsError(
            f"the secrets file {target} recorded by `contactsync enable` is missing; run "
            "`contactsync enable` again, or set "
            + " and ".join(ENV.values())
            + " in the environment"
        ) from None
    except (OSError, ValueError) as exc:
        raise SecretsError(f"cannot read the secrets file {target}: {exc}") from None
    if not isinstance(data, dict):
        raise SecretsError(f"the secrets file {target} is not a JSON object")
    return {k: str(v) for k, v in data.items() if k in ENV and v}


def write_file(path: str | Path, values: Mapping[str, str]) -> Path:
    """Write the secrets (mode 0600, atomically); returns the absolute path to record."""
    target = Path(path).expanduser().resolve()
    _write_private(target, json.dumps(dict(values), indent=2) + "\n")
    return target


def resolve(
    secrets_file: str | None, environ: Mapping[str, str] = os.environ, *, app_only: bool
) -> SpaceSecrets:
    """The secrets a run needs: environment first, then the recorded file."""
    values = read_file(secrets_file) if secrets_file else {}
    values.update(from_environment(environ))
    if not values.get("api_password"):
        raise SecretsError(
            "the Pipeliner API password is not set: set PIPELINER_API_PASSWORD, or store it "
            "with `contactsync enable --secrets-file PATH`"
        )
    if app_only and not values.get("client_secret"):
        raise SecretsError(
            "the space was enabled for app-only access but the client secret is not set: set "
            "MS_CLIENT_SECRET, or store it with `contactsync enable --secrets-file PATH`"
        )
    return SpaceSecrets(
        api_password=values["api_password"],
        client_secret=values.get("client_secret") if app_only else None,
    )
