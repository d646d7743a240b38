"""The link between one CRM contact and its address-book copy, as the ledger stores it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType


class Side(StrEnum):
    """The two roles a contact lives in, whatever the services behind them.

    The CRM is the authority on rights and scope: it says which contacts a user syncs and what
    the user may edit or delete there. The address book holds the user's copies of them, in one
    folder. A service package names the role it plays (:func:`name_side`), so that messages speak
    of the service the user knows; ``str(side)`` is that name, ``side.value`` what is stored.
    """

    CRM = "crm"
    BOOK = "book"

    @classmethod
    def _missing_(cls, value: object) -> Side | None:
        """A side given by its service's name (``Side("...")`` with what ``str`` gave)."""
        for side, (name, _) in _NAMES.items():
            if value == name:
                return side
        return None

    @property
    def other(self) -> Side:
        return Side.BOOK if self is Side.CRM else Side.CRM

    @property
    def service(self) -> str | None:
        """The name of the service playing this side, if one named itself."""
        named = _NAMES.get(self)
        return named[0] if named else None

    @property
    def title(self) -> str:
        """The service's name as written in a sentence."""
        return _NAMES.get(self, _DEFAULT_NAMES[self])[1]

    def __str__(self) -> str:
        return _NAMES.get(self, _DEFAULT_NAMES[self])[0]

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


#: What a side is called before a service names it: its role.
_DEFAULT_NAMES: dict[Side, tuple[str, str]] = {
    Side.CRM: ("crm", "the CRM"),
    Side.BOOK: ("address book", "the address book"),
}
_NAMES: dict[Side, tuple[str, str]] = {}


def name_side(side: Side, name: str, title: str) -> None:
    """Name the service that plays ``side`` (``name`` in lower case, ``title`` as written)."""
    _NAMES[side] = (name, title)


@dataclass(frozen=True)
class Partition:
    """The ledger partition a link lives in: links are never shared between users, spaces,
    mailboxes or folders (not to be confused with a user's sync scope, the contacts they sync).

    A new folder therefore starts a new partition, and one user's deactivation cannot touch
    another user's rows.
    """

    user: str
    space: str
    mailbox: str
    folder: str

    def __post_init__(self) -> None:
        for name in ("user", "space", "mailbox", "folder"):
            if not getattr(self, name):
                raise ValueError(f"Partition.{name} must not be empty")

    def __str__(self) -> str:
        return f"{self.user}@{self.space}/{self.mailbox}/{self.folder}"


class LinkState(StrEnum):
    """Work a link still owes, so that a crash between two legs cannot lose it."""

    ACTIVE = "active"
    #: The contact left the user's scope: its address-book copy is being removed. A tombstone of
    #: that copy must never turn into a CRM delete.
    LEAVING = "leaving"
    #: The address-book copy was deleted by a user without deletion rights in the CRM:
    #: recreate it from the agreed values on the next CRM -> address book leg.
    RESTORE_BOOK = "restore_book"
    #: The address-book copy was moved to another folder: nothing is written on either side
    #: (no second copy in the folder, no delete in the CRM) until it is moved back.
    MOVED = "moved"


@dataclass(frozen=True)
class Link:
    """One pair of linked contacts, the last values both sides agreed on, and their versions.

    ``agreed`` holds normalised values of the field-table keys (see ``contactsync.sync.fields``).
    ``book_id`` is None while the address-book copy is missing and owed a restore.

    ``pinned`` holds, per key, the value the address-book copy keeps because the address book
    refused the agreed one (a value longer than it accepts, say): the two sides then agree to differ
    on that key until either changes it, so that neither retries the refused write every run nor
    takes the other's unchanged value for an edit."""

    crm_id: str
    book_id: str | None
    agreed: Mapping[str, str | None] = field(default_factory=dict)
    crm_version: str | None = None
    book_version: str | None = None
    state: LinkState = LinkState.ACTIVE
    pinned: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "agreed", MappingProxyType(dict(self.agreed)))
        object.__setattr__(self, "pinned", MappingProxyType(dict(self.pinned)))

    def agreed_on(self, side: Side) -> Mapping[str, str | None]:
        """The agreed values as ``side`` holds them: the address book's pinned values on its
        side."""
        if side is Side.BOOK and self.pinned:
            return {**self.agreed, **self.pinned}
        return self.agreed

    def id_on(self, side: Side) -> str | None:
        return self.crm_id if side is Side.CRM else self.book_id

    def version_on(self, side: Side) -> str | None:
        return self.crm_version if side is Side.CRM else self.book_version

    def with_changes(self, **changes: object) -> Link:
        return replace(self, **changes)  # type: ignore[arg-type]
