"""`contactsync enable`: the administrator turns the contact sync on for the Pipeliner space."""

from __future__ import annotations

import argparse
import contextlib
import os
from dataclasses import replace
from pathlib import Path

from contactsync.http import HttpClient, HttpError, HttpPolicy
from contactsync.ops import space_secrets
from contactsync.ops.cli._common import (
    EXIT_OK,
    Commands,
    Project,
    add_project_options,
    env_default,
    fail,
    project_of,
)
from contactsync.ops.users import RegistryError, SpaceConfig
from contactsync.outlook.auth import AuthConfigError, normalize_authority
from contactsync.outlook.graph_api import GraphConfigError, normalize_graph_url
from contactsync.pipeliner.api import (
    PipelinerClient,
    PipelinerConfigError,
    PipelinerError,
    PipelinerSettings,
    normalize_service_url,
)

#: (flag, dest, environment variables, help); the same names as the plugins' settings.
OPTIONS = (
    ("--service-url", "service_url", ("PIPELINER_SERVICE_URL",), "Pipeliner API service URL"),
    ("--space-id", "space_id", ("PIPELINER_SPACE_ID",), "Pipeliner space id"),
    (
        "--api-username",
        "api_username",
        ("PIPELINER_API_USERNAME",),
        "username of the space's API application keys",
    ),
    (
        "--authority",
        "authority",
        ("MS_AUTHORITY", "CONTACTSYNC_AUTHORITY"),
        "Microsoft authority with the tenant: https://login.microsoftonline.com/<tenant>",
    ),
    (
        "--client-id",
        "client_id",
        ("MS_CLIENT_ID", "CONTACTSYNC_CLIENT_ID"),
        "Application (client) ID of the app registration",
    ),
)


def add(commands: Commands) -> None:
    parser = commands.add_parser(
        "enable",
        help="administrator: enable the contact sync for the Pipeliner space",
        description=(
            "Store the space's Pipeliner API application keys and the Microsoft app registration, "
            "so that the space's users can activate their sync. Run it again to change them. "
            "The secrets (Pipeliner API password, and the client secret for app-only access) "
            "are read from PIPELINER_API_PASSWORD and MS_CLIENT_SECRET and are never stored in "
            "meltano.yml or the database: either in a secrets file (mode 0600, --secrets-file) "
            "or, with --no-secrets-file, in the environment of every later run."
        ),
        epilog="Exit codes: 0 enabled, 1 failed (the message says why), 2 bad arguments.",
    )
    for flag, dest, envs, text in OPTIONS:
        parser.add_argument(
            flag,
            dest=dest,
            default=env_default(*envs),
            metavar=dest.upper().replace("_", "-"),
            help=f"{text} (env {' or '.join(envs)}; required)",
        )
    parser.add_argument(
        "--graph-url",
        default=env_default("CONTACTSYNC_GRAPH_URL") or "https://graph.microsoft.com",
        metavar="URL",
        help="Microsoft Graph base URL (env CONTACTSYNC_GRAPH_URL; default %(default)s)",
    )
    parser.add_argument(
        "--ca-bundle",
        default=env_default("CONTACTSYNC_CA_BUNDLE"),
        metavar="PATH",
        help="PEM file of the CAs to trust instead of the system's (env CONTACTSYNC_CA_BUNDLE)",
    )
    parser.add_argument(
        "--app-only",
        action="store_true",
        help="use the app's client secret (MS_CLIENT_SECRET) for every mailbox: users then "
        "activate without signing in",
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="store the settings without first checking the Pipeliner API keys (one request) "
        "and the Microsoft identity provider (its OpenID discovery document)",
    )
    secrets = parser.add_mutually_exclusive_group()
    secrets.add_argument(
        "--secrets-file",
        default=env_default("CONTACTSYNC_SECRETS_FILE"),
        metavar="PATH",
        help="write the secrets there (mode 0600) and record its path; default "
        "<project>/.contactsync/secrets.json (env CONTACTSYNC_SECRETS_FILE)",
    )
    secrets.add_argument(
        "--no-secrets-file",
        action="store_true",
        help="store no secret: every run reads PIPELINER_API_PASSWORD (and MS_CLIENT_SECRET) "
        "from its environment",
    )
    add_project_options(parser)
    parser.set_defaults(run=run, command_parser=parser)


def _stored_password(args: argparse.Namespace, project: Project) -> str:
    """The API password of an earlier `enable`, when this one does not give a new one."""
    if args.no_secrets_file:
        return ""
    path = Path(args.secrets_file or project.data_dir / "secrets.json")
    path = path if path.is_absolute() else project.root / path
    try:
        return space_secrets.read_file(path).get("api_password", "") if path.exists() else ""
    except space_secrets.SecretsError:
        return ""


def check_space(config: SpaceConfig, api_password: str) -> list[str]:
    """What is wrong with the space's settings, found by asking the two services: the
    Pipeliner keys (one authenticated request) and the identity provider (its discovery
    document). Empty when both answer as they should."""
    problems = []
    verify: bool | str = config.ca_bundle or True
    policy = HttpPolicy(max_attempts=2, total_budget=20)
    if not api_password:
        problems.append("PIPELINER_API_PASSWORD is not set: the API keys cannot be checked")
    else:
        try:
            settings = PipelinerSettings(
                service_url=config.service_url,
                space_id=config.space_id,
                api_username=config.api_username,
                api_password=api_password,
                ca_bundle=config.ca_bundle,
                policy=policy,
            )
            with contextlib.closing(PipelinerClient(settings)) as client:
                client.find_accounts(["contactsync enable check"])
        except (HttpError, PipelinerError) as exc:
            problems.append(f"Pipeliner at {config.service_url} refused the API keys: {exc}")
    discovery = f"{config.authority}/v2.0/.well-known/openid-configuration"
    try:
        with HttpClient(config.authority, policy, verify=verify) as http:
            document = http.get(discovery).json()
        if not isinstance(document, dict) or "token_endpoint" not in document:
            problems.append(f"{discovery} is not an OpenID discovery document")
    except (HttpError, ValueError) as exc:
        problems.append(f"the identity provider {config.authority} does not answer: {exc}")
    return problems


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    missing = [
        f"{flag} (or {envs[0]})" for flag, dest, envs, _ in OPTIONS if not getattr(args, dest)
    ]
    if missing:
        parser.error("missing " + ", ".join(missing))
    project = project_of(args, parser)
    ca_bundle = str(Path(args.ca_bundle).expanduser().resolve()) if args.ca_bundle else None
    if ca_bundle and not Path(ca_bundle).is_file():
        parser.error(f"--ca-bundle {ca_bundle} is not a readable file")
    try:
        config = SpaceConfig(
            service_url=normalize_service_url(args.service_url),
            space_id=args.space_id.strip(),
            api_username=args.api_username.strip(),
            authority=normalize_authority(args.authority),
            client_id=args.client_id.strip(),
            graph_url=normalize_graph_url(args.graph_url),
            ca_bundle=ca_bundle,
            app_only=args.app_only,
        )
    except (PipelinerConfigError, AuthConfigError, GraphConfigError) as exc:
        parser.error(str(exc))
    given = space_secrets.from_environment(os.environ)
    if not args.no_check:
        problems = check_space(config, given.get("api_password") or _stored_password(args, project))
        if problems:
            return fail(
                "enable",
                "nothing stored: " + "; ".join(problems) + " (--no-check stores them unchecked)",
            )
    if not args.app_only:
        given.pop("client_secret", None)  # delegated: the secret must not turn runs app-only
    path: Path | None = None
    try:
        if not args.no_secrets_file:
            path = Path(args.secrets_file or project.data_dir / "secrets.json")
            if not path.is_absolute():
                path = project.root / path
            if path.exists():  # keep what is there, update what is given
                given = {**space_secrets.read_file(path), **given}
            path = space_secrets.write_file(path, given)
        space_secrets.resolve(
            str(path) if path else None, {} if path else os.environ, app_only=args.app_only
        )
    except space_secrets.SecretsError as exc:
        return fail("enable", str(exc))
    config = replace(config, secrets_file=str(path) if path else None)
    try:
        with project.registry() as registry:
            stored, url = registry.enable(config), registry.url
    except RegistryError as exc:
        return fail("enable", str(exc))
    mode = "app-only (client secret)" if config.app_only else "delegated (each user signs in)"
    where = f"secrets file {path} (mode 0600)" if path else "the environment of each run"
    print(
        f"Contact sync enabled for Pipeliner space {stored.space_id} at {stored.service_url}; "
        f"Microsoft: {mode}; secrets: {where}; registry: {url}.\n"
        "Users can now activate: contactsync activate --user EMAIL --create-folder"
    )
    return EXIT_OK
