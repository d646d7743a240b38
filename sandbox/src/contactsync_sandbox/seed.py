"""The default seed: the identities shared by every emulator, test and the `sandbox` environment.

One file (`data/default_seed.json`) so that the Pipeliner, Graph and identity emulators agree on
who exists (a Pipeliner user's e-mail is their mailbox's UPN) and so that docs and configs can
quote the same values. All secrets in it are sandbox-only fakes, published on purpose.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

DEMO_USER_EMAIL = "alex@contoso.example"


@cache
def _load() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("data", "default_seed.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def default_seed() -> dict[str, Any]:
    """A fresh deep copy of the default seed (callers may mutate it)."""
    return copy.deepcopy(_load())


def pipeliner_user(email: str = DEMO_USER_EMAIL) -> dict[str, Any]:
    """The seeded Pipeliner user (Client) with this e-mail (case-insensitive)."""
    for user in _load()["pipeliner"]["users"]:
        if user["email"].lower() == email.lower():
            return copy.deepcopy(user)
    raise KeyError(f"no seeded Pipeliner user {email!r}")


def mailbox(user_principal_name: str = DEMO_USER_EMAIL) -> dict[str, Any]:
    """The seeded mailbox with this UPN (case-insensitive)."""
    for box in _load()["microsoft"]["mailboxes"]:
        if box["user_principal_name"].lower() == user_principal_name.lower():
            return copy.deepcopy(box)
    raise KeyError(f"no seeded mailbox {user_principal_name!r}")
