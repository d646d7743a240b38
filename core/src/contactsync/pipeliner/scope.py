"""Which Pipeliner contacts a syncing user may see, edit and delete, and which ones a sync includes.

Pipeliner documents the *fields* of its sharing model (contact ``share_mode``, the
``sharing_clients`` / ``sharing_units`` relations, the role's ``access_entity_contact*`` fields)
in its OpenAPI, and their meaning in its help centre. The rules below follow that help; every rule
and its source is in ``docs/access-rules.md`` (one tested row per case). They live in this one
pure module so that the tap, the mapper and the targets agree.

A user's **relation** to a contact (what ``sync_option`` and ``one_way_all_contacts`` select on)
is the strongest of OWNER > EDITOR > VIEWER > NONE:

1. No contact access (role ``access_contacts`` false or ``access_entity_contact`` NoAccess): NONE,
   even for owned contacts (Pipeliner hides the module; syncing them would leak them).
2. ``owner_id`` is the user: OWNER.
3. EDITOR only by an explicit grant: a ``sharing_clients`` row for the user or a ``sharing_units``
   row for a unit the user belongs to (member or manager) with role Editor, or share mode AllEdit.
   Never by mere visibility through the role's unit direction ("Editor: additional user(s) added
   to the record who can update all details").
4. VIEWER: a Watcher share, share mode AllView, or visibility through the role's unit direction
   (Private contacts only with ``access_entity_contact_private``): Owned: none; Current: the
   user's units; CurrentAndParent: also their ancestors; CurrentAndSubunit: also their
   descendants; CurrentAndParentAndSubunit: both; All: every contact.
5. Level Readonly caps every non-owner relation at VIEWER.

**Rights** are separate from the relation, since a role can grant edit rights wider than the
explicit editors (they never widen a sync's scope, only what the user may write):

* edit (:func:`can_edit`): a role with write access (level Editor, EditorOrUnitManager or All;
  never Readonly), on a contact that is not archived, where the user is owner or editor; under
  level All also every contact visible through the unit direction; under EditorOrUnitManager also
  visible contacts of a unit the user manages (or one below it).
* delete (:func:`can_delete`): edit rights, the user is the **owner** ("Only the owner can delete
  data … an Editor cannot delete the record"), the role's ``access_entity_contact_delete``, and no
  ``is_delete_protected``.
* create (:func:`can_create`): contact access with write access.

The sync settings of DESIGN §1 (:class:`SyncScope`) turn a relation into "in scope or not", and
:func:`scope_fingerprint` sums up everything a user's scope depends on besides the contact itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Any

__all__ = [
    "AccessLevel",
    "ContactSharing",
    "Relation",
    "ScopeSettingError",
    "ShareMode",
    "SharingRole",
    "SyncOption",
    "SyncScope",
    "SyncType",
    "SyncUser",
    "UnitReach",
    "UnitTree",
    "UserRole",
    "can_create",
    "can_delete",
    "can_edit",
    "relation",
    "scope_fingerprint",
]


# --------------------------------------------------------------------------------------------
# Vocabulary


class Relation(StrEnum):
    """A user's relation to one contact; compare with :attr:`rank`, never with ``<`` on strings."""

    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"
    NONE = "none"

    @property
    def rank(self) -> int:
        """Higher is stronger, so that several grants combine by taking the maximum."""
        return _RANK[self]

    @classmethod
    def strongest(cls, relations: Iterable[Relation]) -> Relation:
        """The strongest of ``relations`` (NONE when there are none)."""
        return max(relations, key=lambda rel: rel.rank, default=cls.NONE)


_RANK = {Relation.NONE: 0, Relation.VIEWER: 1, Relation.EDITOR: 2, Relation.OWNER: 3}


class ShareMode(IntEnum):
    """Contact ``share_mode``."""

    STANDARD = 0
    PRIVATE = 1
    ALL_VIEW = 2
    ALL_EDIT = 3


class SharingRole(IntEnum):
    """``role`` of a ContactSharingClientRelation / ContactSharingSalesUnitRelation."""

    WATCHER = 1
    EDITOR = 2


class AccessLevel(IntEnum):
    """MasterRight ``access_entity_contact``."""

    NO_ACCESS = 0
    READONLY = 1
    EDITOR = 2
    EDITOR_OR_UNIT_MANAGER = 3
    ALL = 4


class UnitReach(IntEnum):
    """MasterRight ``access_entity_contact_direction``: which sales units' contacts a role sees
    (named for what it is, apart from the mapper's ``Direction``, the direction of a leg)."""

    OWNED = 1
    CURRENT = 2
    CURRENT_AND_PARENT = 3
    CURRENT_AND_SUBUNIT = 4
    CURRENT_AND_PARENT_AND_SUBUNIT = 5
    ALL = 6


def _enum(enum: type[IntEnum], value: Any, what: str) -> Any:
    """Parse an API integer into ``enum`` with an error that names the field."""
    try:
        return enum(value)
    except (ValueError, TypeError):
        allowed = ", ".join(f"{m.value} ({m.name})" for m in enum)
        raise ValueError(f"{what}: unexpected value {value!r}; expected one of {allowed}") from None


def _flag(data: Mapping[str, Any], key: str, default: bool) -> bool:
    """Read a boolean; absent or null means ``default``."""
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValueError(f"{key}: expected a boolean, got {value!r}")
    return value


def _is_live(relation: Mapping[str, Any]) -> bool:
    return not relation.get("is_deleted", False)


# --------------------------------------------------------------------------------------------
# The contact side


@dataclass(frozen=True)
class ContactSharing:
    """The sharing facts of one contact: everything :func:`relation` needs, nothing more."""

    owner_id: str
    unit_id: str | None
    share_mode: ShareMode = ShareMode.STANDARD
    sharing_clients: tuple[tuple[str, SharingRole], ...] = ()
    sharing_units: tuple[tuple[str, SharingRole], ...] = ()
    is_delete_protected: bool = False
    is_archived: bool = False

    def __post_init__(self) -> None:
        # Coerce, so that plain ints and lists from callers compare like the enums they mean.
        object.__setattr__(self, "share_mode", ShareMode(self.share_mode))
        for name in ("sharing_clients", "sharing_units"):
            rows = tuple((str(g), SharingRole(r)) for g, r in getattr(self, name))
            object.__setattr__(self, name, rows)

    @classmethod
    def from_api(cls, contact: Mapping[str, Any]) -> ContactSharing:
        """Read a Pipeliner Contact fetched with ``expand=sharing_clients,sharing_units``.

        Without the expansion the relations are bare URIs that carry neither the grantee nor the
        role, so guessing would silently shrink or widen the scope: that is refused. A missing
        ``share_mode`` means Standard; a missing relation list means none; a sharing row without
        ``role`` counts as Watcher (the weaker grant); a missing ``is_delete_protected`` counts as
        protected, so that an incomplete read can never turn into a Pipeliner delete. Archived
        contacts "cannot be edited until reactivated" (the spec's ``is_archived``).
        """
        owner_id = contact.get("owner_id")
        if not owner_id:
            raise ValueError(f"contact {contact.get('id')!r} has no owner_id")
        share_mode = contact.get("share_mode")
        return cls(
            owner_id=str(owner_id),
            unit_id=contact.get("unit_id") or None,
            share_mode=(
                ShareMode.STANDARD
                if share_mode is None
                else _enum(ShareMode, share_mode, "share_mode")
            ),
            sharing_clients=_sharing(contact, "sharing_clients", "client_id"),
            sharing_units=_sharing(contact, "sharing_units", "unit_id"),
            is_delete_protected=_flag(contact, "is_delete_protected", default=True),
            is_archived=_flag(contact, "is_archived", default=False),
        )


def _sharing(
    contact: Mapping[str, Any], key: str, id_key: str
) -> tuple[tuple[str, SharingRole], ...]:
    rows = contact.get(key) or ()
    out: list[tuple[str, SharingRole]] = []
    for row in rows:
        if not isinstance(row, Mapping):
            raise ValueError(
                f"contact {contact.get('id')!r}: {key} holds {type(row).__name__} values "
                f"(relation URIs?), not relation objects; the contact must be read with "
                f"expand=sharing_clients,sharing_units"
            )
        if not _is_live(row):
            continue
        grantee = row.get(id_key)
        if not grantee:
            raise ValueError(f"contact {contact.get('id')!r}: a {key} entry has no {id_key}")
        role = row.get("role")
        out.append(
            (
                str(grantee),
                SharingRole.WATCHER if role is None else _enum(SharingRole, role, f"{key}.role"),
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------------------------
# The user side


@dataclass(frozen=True)
class UserRole:
    """The contact-related part of the user's MasterRight."""

    access_contacts: bool
    level: AccessLevel
    direction: UnitReach
    can_delete: bool = False
    see_private: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", AccessLevel(self.level))
        object.__setattr__(self, "direction", UnitReach(self.direction))

    @property
    def has_contact_access(self) -> bool:
        return self.access_contacts and self.level is not AccessLevel.NO_ACCESS

    @classmethod
    def from_api(cls, master_right: Mapping[str, Any]) -> UserRole:
        """Read a Pipeliner MasterRight.

        Absent or null fields take the most restrictive value: flags False, level NoAccess,
        direction Owned. A role read without its contact fields therefore syncs nothing rather
        than too much; the delete-ratio rail of DESIGN §4 is what should stop such an emptied run.
        """
        level = master_right.get("access_entity_contact")
        direction = master_right.get("access_entity_contact_direction")
        return cls(
            access_contacts=_flag(master_right, "access_contacts", default=False),
            level=(
                AccessLevel.NO_ACCESS
                if level is None
                else _enum(AccessLevel, level, "access_entity_contact")
            ),
            direction=(
                UnitReach.OWNED
                if direction is None
                else _enum(UnitReach, direction, "access_entity_contact_direction")
            ),
            can_delete=_flag(master_right, "access_entity_contact_delete", default=False),
            see_private=_flag(master_right, "access_entity_contact_private", default=False),
        )


@dataclass(frozen=True, eq=True)
class UnitTree:
    """The sales-unit hierarchy: ``parents[unit] = parent unit`` (None for a root).

    Unknown units have no ancestors and no descendants; a cycle in bad data ends the walk
    instead of looping.
    """

    parents: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parents", MappingProxyType(dict(self.parents)))

    def __hash__(self) -> int:
        return hash(frozenset(self.parents.items()))

    @classmethod
    def from_api(cls, units: Iterable[Mapping[str, Any]]) -> UnitTree:
        """Build from Pipeliner SalesUnit dicts (``id``, ``parent_id``: empty for the root)."""
        return cls({str(u["id"]): (u.get("parent_id") or None) for u in units})

    @cached_property
    def _children(self) -> Mapping[str, tuple[str, ...]]:
        children: dict[str, list[str]] = {}
        for unit, parent in self.parents.items():
            if parent is not None:
                children.setdefault(parent, []).append(unit)
        return {parent: tuple(kids) for parent, kids in children.items()}

    def ancestors(self, unit: str) -> frozenset[str]:
        """Every unit above ``unit`` (not ``unit`` itself)."""
        seen: set[str] = set()
        parent = self.parents.get(unit)
        while parent is not None and parent not in seen and parent != unit:
            seen.add(parent)
            parent = self.parents.get(parent)
        return frozenset(seen)

    def descendants(self, unit: str) -> frozenset[str]:
        """Every unit below ``unit`` (not ``unit`` itself)."""
        seen: set[str] = set()
        stack = list(self._children.get(unit, ()))
        while stack:
            child = stack.pop()
            if child in seen or child == unit:
                continue
            seen.add(child)
            stack.extend(self._children.get(child, ()))
        return frozenset(seen)


@dataclass(frozen=True)
class SyncUser:
    """The syncing Pipeliner user (a Client), their role and where they sit in the unit tree.

    ``unit_ids`` are the units the user belongs to, as member or as manager; ``managed_unit_ids``
    the units they manage (Pipeliner lists these expanded to whole subtrees).
    """

    id: str
    role: UserRole
    unit_ids: frozenset[str] = frozenset()
    managed_unit_ids: frozenset[str] = frozenset()
    units: UnitTree = field(default_factory=UnitTree)

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit_ids", frozenset(self.unit_ids))
        object.__setattr__(self, "managed_unit_ids", frozenset(self.managed_unit_ids))

    @classmethod
    def from_api(
        cls,
        client: Mapping[str, Any],
        role: Mapping[str, Any],
        units: Iterable[Mapping[str, Any]],
    ) -> SyncUser:
        """Build from a Pipeliner Client, its MasterRight and the space's SalesUnits.

        Memberships come from ``unit_membership`` when it was expanded (SalesUnitClientRelation
        rows: ``unit_id``, ``unit_role`` 1 member / 2 manager, ``is_deleted``). Otherwise from
        ``unit_member_ids`` (member-only units) plus the *roots* of ``unit_manager_ids``: that
        list is expanded to whole managed subtrees, and counting every unit of the subtree as a
        membership would make direction Current behave like CurrentAndSubunit.
        """
        tree = UnitTree.from_api(units)
        client_id = client.get("id")
        if not client_id:
            raise ValueError("client has no id")
        role_id, wanted = role.get("id"), client.get("master_right_id")
        if role_id and wanted and role_id != wanted:
            raise ValueError(
                f"client {client_id} has master_right_id {wanted}, but role {role_id} was given"
            )

        membership = client.get("unit_membership") or ()
        if membership and all(isinstance(row, Mapping) for row in membership):
            live = [row for row in membership if _is_live(row)]
            if any(not row.get("unit_id") for row in live):
                raise ValueError(f"client {client_id}: a unit_membership entry has no unit_id")
            direct_managed = {str(row["unit_id"]) for row in live if row.get("unit_role") == 2}
            unit_ids = {str(row["unit_id"]) for row in live}
            managed = set(direct_managed)
            for unit in direct_managed:
                managed |= tree.descendants(unit)
        else:
            managed = {str(u) for u in client.get("unit_manager_ids") or ()}
            roots = {u for u in managed if not (tree.ancestors(u) & managed)}
            unit_ids = {str(u) for u in client.get("unit_member_ids") or ()} | roots
        return cls(
            id=str(client_id),
            role=UserRole.from_api(role),
            unit_ids=frozenset(unit_ids),
            managed_unit_ids=frozenset(managed),
            units=tree,
        )

    def manages(self, unit_id: str | None) -> bool:
        """True when the user manages ``unit_id`` or a unit above it."""
        if unit_id is None:
            return False
        return unit_id in self.managed_unit_ids or bool(
            self.units.ancestors(unit_id) & self.managed_unit_ids
        )

    def sees_unit(self, unit_id: str | None) -> bool:
        """Whether the role's direction reaches contacts of ``unit_id``."""
        direction = self.role.direction
        if direction is UnitReach.ALL:
            return True
        if direction is UnitReach.OWNED or unit_id is None:
            return False
        if unit_id in self.unit_ids:
            return True
        up = direction in (UnitReach.CURRENT_AND_PARENT, UnitReach.CURRENT_AND_PARENT_AND_SUBUNIT)
        down = direction in (
            UnitReach.CURRENT_AND_SUBUNIT,
            UnitReach.CURRENT_AND_PARENT_AND_SUBUNIT,
        )
        # The contact's unit is a parent of one of the user's units ⇔ a user unit lies below it.
        if up and self.units.descendants(unit_id) & self.unit_ids:
            return True
        return down and bool(self.units.ancestors(unit_id) & self.unit_ids)


# --------------------------------------------------------------------------------------------
# The rules


_BY_SHARING_ROLE = {SharingRole.EDITOR: Relation.EDITOR, SharingRole.WATCHER: Relation.VIEWER}
_BY_SHARE_MODE = {ShareMode.ALL_EDIT: Relation.EDITOR, ShareMode.ALL_VIEW: Relation.VIEWER}


def visible_by_role(contact: ContactSharing, user: SyncUser) -> bool:
    """Whether the role's unit direction shows the contact (Private ones need the private flag)."""
    if contact.share_mode is ShareMode.PRIVATE and not user.role.see_private:
        return False
    return user.sees_unit(contact.unit_id)


def relation(contact: ContactSharing, user: SyncUser) -> Relation:
    """The user's relation to the contact, by the rules in the module docstring."""
    role = user.role
    if not role.has_contact_access:
        return Relation.NONE
    if contact.owner_id == user.id:
        return Relation.OWNER

    grants: list[Relation] = [
        _BY_SHARING_ROLE[r] for client_id, r in contact.sharing_clients if client_id == user.id
    ]
    grants += [
        _BY_SHARING_ROLE[r] for unit_id, r in contact.sharing_units if unit_id in user.unit_ids
    ]
    grants.append(_BY_SHARE_MODE.get(contact.share_mode, Relation.NONE))
    if visible_by_role(contact, user):
        grants.append(Relation.VIEWER)

    best = Relation.strongest(grants)
    if role.level is AccessLevel.READONLY and best.rank > Relation.VIEWER.rank:
        return Relation.VIEWER
    return best


def can_edit(contact: ContactSharing, user: SyncUser, rel: Relation | None = None) -> bool:
    """Whether the user may change the contact in Pipeliner (see the module docstring).

    Pass ``rel`` when it is already known, to avoid computing it twice.
    """
    role = user.role
    if not role.has_contact_access or role.level is AccessLevel.READONLY or contact.is_archived:
        return False
    if rel is None:
        rel = relation(contact, user)
    if rel in (Relation.OWNER, Relation.EDITOR):
        return True
    if role.level is AccessLevel.ALL:
        return visible_by_role(contact, user)
    if role.level is AccessLevel.EDITOR_OR_UNIT_MANAGER:
        return visible_by_role(contact, user) and user.manages(contact.unit_id)
    return False


def can_delete(contact: ContactSharing, user: SyncUser, rel: Relation | None = None) -> bool:
    """Whether an Outlook-side delete may delete the contact in Pipeliner (DESIGN §1)."""
    if rel is None:
        rel = relation(contact, user)
    return (
        rel is Relation.OWNER
        and user.role.can_delete
        and not contact.is_delete_protected
        and can_edit(contact, user, rel)
    )


def can_create(user: SyncUser) -> bool:
    """Whether the user may create contacts (they are owned by the user)."""
    return user.role.has_contact_access and user.role.level is not AccessLevel.READONLY


def scope_fingerprint(user: SyncUser) -> str:
    """A digest of everything the user's scope depends on besides the contacts themselves.

    The user, their role's contact rights, their unit memberships and the unit tree. The tap keeps
    it in its state: when it changes (a unit move, a narrowed role, a new sub-unit), contacts may
    have entered or left the scope without being modified, so the whole scope is read again.
    """
    role = user.role
    facts = {
        "user": user.id,
        "role": [
            role.access_contacts,
            int(role.level),
            int(role.direction),
            role.can_delete,
            role.see_private,
        ],
        "units": sorted(user.unit_ids),
        "managed": sorted(user.managed_unit_ids),
        "tree": sorted((unit, parent or "") for unit, parent in user.units.parents.items()),
    }
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------------------------
# Sync settings (DESIGN §1)


class ScopeSettingError(ValueError):
    """A ``sync_type`` / ``sync_option`` setting that cannot be used; the message says how."""


class SyncType(StrEnum):
    ONE_WAY_YOUR_CONTACTS = "one_way_your_contacts"
    ONE_WAY_ALL_CONTACTS = "one_way_all_contacts"
    TWO_WAY_YOUR_CONTACTS = "two_way_your_contacts"


class SyncOption(StrEnum):
    OWNER = "owner"
    OWNER_OR_EDITOR = "owner_or_editor"


def _allowed(enum: type[StrEnum]) -> str:
    return ", ".join(m.value for m in enum)


@dataclass(frozen=True)
class SyncScope:
    """A user's sync type and option: which relations put a Pipeliner contact in scope."""

    sync_type: SyncType
    option: SyncOption | None = None

    def __post_init__(self) -> None:
        try:
            kind = SyncType(self.sync_type)
        except ValueError:
            raise ScopeSettingError(
                f"sync_type: invalid value {self.sync_type!r}; allowed: {_allowed(SyncType)}"
            ) from None
        object.__setattr__(self, "sync_type", kind)
        if kind is SyncType.ONE_WAY_ALL_CONTACTS:
            if self.option is not None:
                raise ScopeSettingError(
                    f"sync_option does not apply to {kind}; remove it (got {str(self.option)!r})"
                )
            return
        if self.option is None:
            raise ScopeSettingError(
                f"sync_option is required for {kind}; allowed: {_allowed(SyncOption)}"
            )
        try:
            object.__setattr__(self, "option", SyncOption(self.option))
        except ValueError:
            raise ScopeSettingError(
                f"sync_option: invalid value {str(self.option)!r} for {kind}; "
                f"allowed: {_allowed(SyncOption)}"
            ) from None

    @classmethod
    def parse(cls, sync_type: str, option: str | None = None) -> SyncScope:
        """Validate the two settings; an empty option means owner where an option applies."""
        if isinstance(option, str):
            option = option.strip()
        if not option:
            option = None
            if sync_type != SyncType.ONE_WAY_ALL_CONTACTS and sync_type in tuple(SyncType):
                option = SyncOption.OWNER
        return cls(sync_type, option)  # type: ignore[arg-type] - __post_init__ validates

    @property
    def two_way(self) -> bool:
        return self.sync_type is SyncType.TWO_WAY_YOUR_CONTACTS

    def includes(self, rel: Relation) -> bool:
        """Whether a contact the user has relation ``rel`` to belongs in the Outlook folder."""
        rel = Relation(rel)
        if self.sync_type is SyncType.ONE_WAY_ALL_CONTACTS:
            return rel is not Relation.NONE
        if self.option is SyncOption.OWNER_OR_EDITOR:
            return rel in (Relation.OWNER, Relation.EDITOR)
        return rel is Relation.OWNER

    def admits(self, contact: ContactSharing, user: SyncUser) -> bool:
        """The scope filter: ``includes(relation(contact, user))``."""
        return self.includes(relation(contact, user))

    def is_wider_than(self, other: SyncScope) -> bool:
        """True when this scope includes a relation ``other`` excluded.

        Contacts of that relation were never read into the folder under ``other``, so moving from
        ``other`` to ``self`` needs a full re-read of Pipeliner. Only the Pipeliner-side filter
        counts: switching one-way ↔ two-way alone is not wider.
        """
        return any(self.includes(rel) and not other.includes(rel) for rel in Relation)
