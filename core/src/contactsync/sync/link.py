"""The link between one Pipeliner contact and its Outlook copy, as the ledger stores it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType


class Side(StrEnum):
    """The two systems a contact lives in."""

    PIPELINER = "pipeliner"
    OUTLOOK = "outlook"

    @property
    def other(self) -> Side:
        return Side.OUTLOOK if self is Side.PIPELINER else Side.PIPELINER


@dataclass(frozen=True)
class ScopeKey:
    """Links are never shared between users, spaces, mailboxes or folders.

    A new folder therefore starts a new link scope, and one user's deactivation
    cannot touch another user's rows.
    """

    user: str
    space: str
    mailbox: str
    folder: str

    def __post_init__(self) -> None:
        for name in ("user", "space", "mailbox", "folder"):
            if not getattr(self, name):
                raise ValueError(f"ScopeKey.{name} must not be empty")

    def __str__(self) -> str:
        return f"{self.user}@{self.space}/{self.mailbox}/{self.folder}"


class LinkState(StrEnum):
    """Work a link still owes, so that a crash between two legs cannot lose it."""

    ACTIVE = "active"
    #: The contact left the user's scope: its Outlook copy is being removed. A tombstone of
    #: that copy must never turn into a Pipeliner delete.
    LEAVING = "leaving"
    #: The Outlook copy was deleted by a user without deletion rights in Pipeliner:
    #: recreate it from the agreed values on the next Pipeliner -> Outlook leg.
    RESTORE_OUTLOOK = "restore_outlook"
    #: The Outlook copy was moved to another folder of the mailbox: nothing is written on either
    #: side (no second copy in the folder, no delete in Pipeliner) until it is moved back.
    MOVED = "moved"


@dataclass(frozen=True)
class Link:
    """One pair of linked contacts, the last values both sides agreed on, and their versions.

    ``agreed`` holds normalised values of the field-table keys (see ``contactsync.sync.fields``).
    ``outlook_id`` is None while the Outlook copy is missing and owed a restore.

    ``pinned`` holds, per key, the value the Outlook copy keeps because Outlook refused the agreed
    one (a value longer than it accepts, say): the two sides then agree to differ on that key
    until either changes it, so that neither retries the refused write every run nor takes the
    other's unchanged value for an edit.
    """

    pipeliner_id: str
    outlook_id: str | None
    agreed: Mapping[str, str | None] = field(default_factory=dict)
    pipeliner_version: str | None = None
    outlook_version: str | None = None
    state: LinkState = LinkState.ACTIVE
    pinned: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "agreed", MappingProxyType(dict(self.agreed)))
        object.__setattr__(self, "pinned", MappingProxyType(dict(self.pinned)))

    def agreed_on(self, side: Side) -> Mapping[str, str | None]:
        """The agreed values as ``side`` holds them: Outlook's pinned values on its side."""
        if side is Side.OUTLOOK and self.pinned:
            return {**self.agreed, **self.pinned}
        return self.agreed

    def id_on(self, side: Side) -> str | None:
        return self.pipeliner_id if side is Side.PIPELINER else self.outlook_id

    def version_on(self, side: Side) -> str | None:
        return self.pipeliner_version if side is Side.PIPELINER else self.outlook_version

    def with_changes(self, **changes: object) -> Link:
        return replace(self, **changes)  # type: ignore[arg-type]
