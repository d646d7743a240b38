"""The Graph emulator's state: mailboxes, their contact folders and contacts, and the indexes.

Every mailbox has a hidden root (only ever seen as the default folder's `parentFolderId`), the
default folder `Contacts` (alias `contactFolders/Contacts`) and any tree of folders below it —
`/contactFolders` lists the default folder's children, as Graph does. Every change of a contact
takes the next number of its mailbox's change sequence; each folder keeps a change log
(contact id → last change number, oldest first) that delta reads backwards, so an incremental
delta costs O(changes), not O(folder). E-mail addresses and extended-property values are indexed
per mailbox, so the two supported `$filter`s are O(1) lookups.

Callers hold the emulator's lock; nothing here locks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from ..server import ApiError
from . import fields as F
from . import ids

#: (matching key, id as returned, value) of extended properties to upsert
Extended = Iterable[tuple[str, str, str | None]]


_clock: list[Any] = [-1, ""]


def now_iso() -> str:
    """The current time as Graph writes it (UTC, whole seconds); cached per second."""
    second = int(time.time())
    if _clock[0] != second:
        stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        _clock[0], _clock[1] = second, stamp
    return str(_clock[1])


def not_found() -> ApiError:
    return ApiError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def malformed() -> ApiError:
    return ApiError(400, "ErrorInvalidIdMalformed", "Id is malformed.")


class Contact:
    __slots__ = (
        "change_key",
        "counter",
        "created",
        "ext",
        "folder",
        "id",
        "mailbox",
        "modified",
        "props",
        "seq",
    )

    def __init__(self, cid: str, mailbox: Mailbox, folder: Folder, counter: int) -> None:
        self.id = cid
        self.mailbox = mailbox
        self.folder = folder
        self.counter = counter
        self.props: dict[str, Any] = {}
        #: matching key (case-folded id) → (id as returned, value)
        self.ext: dict[str, tuple[str, str | None]] = {}
        self.change_key = ""
        self.created = ""
        self.modified = ""
        self.seq = 0

    @property
    def etag(self) -> str:
        return f'W/"{self.change_key}"'


class Folder:
    __slots__ = (
        "changelog",
        "children",
        "contacts",
        "epoch",
        "id",
        "is_default",
        "mailbox",
        "name",
        "parent_id",
        "shared_with",
    )

    def __init__(self, fid: str, mailbox: Mailbox, name: str, parent_id: str) -> None:
        self.id = fid
        self.mailbox = mailbox
        self.name = name
        self.parent_id = parent_id
        self.children: dict[str, Folder] = {}
        self.contacts: dict[str, Contact] = {}
        #: contact id → change number of its last change here (oldest first); an id no longer
        #: in `contacts` is a removal (deleted or moved out).
        self.changelog: dict[str, int] = {}
        #: mailbox id → can edit
        self.shared_with: dict[str, bool] = {}
        #: bumped to invalidate every delta token of the folder
        self.epoch = 0
        self.is_default = False


class Mailbox:
    def __init__(self, mid: str, upn: str, display_name: str | None, extra: dict[str, Any]) -> None:
        self.id = mid
        self.upn = upn
        self.display_name = display_name
        self.extra = extra
        self.key = ids.mailbox_bytes(mid)
        self.root_id = ids.make_id(self.key, ids.ROOT, 0)
        self.counter = 1
        self.seq = 0
        self.default: Folder | None = None
        self.email_index: dict[str, set[str]] = {}
        self.ext_index: dict[tuple[str, str], set[str]] = {}

    @property
    def default_folder(self) -> Folder:
        assert self.default is not None
        return self.default


class GraphState:
    """All mailboxes of the tenant."""

    def __init__(self) -> None:
        self.meta: dict[str, Any] = {}
        #: How writes are stored where Graph's docs are silent (the emulator's storage options).
        self.storage = F.DOCUMENTED
        self.mailboxes: dict[str, Mailbox] = {}
        self._by_name: dict[str, Mailbox] = {}
        self.folders: dict[str, Folder] = {}
        self.contacts: dict[str, Contact] = {}

    # ------------------------------------------------------------------ mailboxes

    def add_mailbox(
        self,
        mid: str,
        upn: str,
        display_name: str | None = None,
        extra: dict[str, Any] | None = None,
        default_folder_id: str | None = None,
    ) -> Mailbox:
        for key in (mid.lower(), upn.lower()):
            if key in self._by_name:
                raise ValueError(f"mailbox {key!r} is defined twice")
        box = Mailbox(mid, upn, display_name, dict(extra or {}))
        self.mailboxes[mid] = box
        self._by_name[mid.lower()] = box
        self._by_name[upn.lower()] = box
        fid = default_folder_id or self.new_id(box, ids.FOLDER)
        folder = Folder(fid, box, "Contacts", box.root_id)
        folder.is_default = True
        self._register_folder(folder)
        box.default = folder
        return box

    def mailbox(self, ref: str) -> Mailbox | None:
        """By id or user principal name (case-insensitive)."""
        return self._by_name.get(ref.lower())

    def new_id(self, box: Mailbox, kind: int) -> str:
        return self._new_id(box, kind)[0]

    def _new_id(self, box: Mailbox, kind: int) -> tuple[str, int]:
        while True:
            counter = box.counter
            candidate = ids.make_id(box.key, kind, counter)
            box.counter += 1
            if candidate not in self.folders and candidate not in self.contacts:
                return candidate, counter

    def _claim_id(self, box: Mailbox, wanted: str | None, kind: int) -> str:
        if wanted is None:
            return self.new_id(box, kind)
        if not isinstance(wanted, str) or not wanted or "/" in wanted:
            raise ValueError(f"invalid id {wanted!r}")
        if wanted in self.folders or wanted in self.contacts:
            raise ValueError(f"id {wanted!r} is used twice")
        parsed = ids.parse_id(wanted)
        if parsed is not None and parsed[0] == box.key:
            box.counter = max(box.counter, parsed[2] + 1)
        return wanted

    # ------------------------------------------------------------------ folders

    def _register_folder(self, folder: Folder) -> None:
        if folder.id in self.folders or folder.id in self.contacts:
            raise ValueError(f"id {folder.id!r} is used twice")
        self.folders[folder.id] = folder
        parent = self.folders.get(folder.parent_id)
        if parent is not None:
            parent.children[folder.id] = folder

    def folder(self, box: Mailbox, ref: str) -> Folder:
        """A folder of `box` by id or the `Contacts` alias; 400 malformed / 404 unknown."""
        if ref.lower() == "contacts":
            return box.default_folder
        found = self.folders.get(ref)
        if found is None:
            raise malformed() if not ids.well_formed(ref) else not_found()
        if found.mailbox is not box:
            raise not_found()
        return found

    def create_folder(
        self, parent: Folder, name: Any, *, fid: str | None = None, check: bool = True
    ) -> Folder:
        name = self._folder_name(name)
        if check:
            self._unique_name(parent, name)
        box = parent.mailbox
        folder = Folder(self._claim_id(box, fid, ids.FOLDER), box, name, parent.id)
        self._register_folder(folder)
        return folder

    def rename_folder(self, folder: Folder, name: Any) -> None:
        name = self._folder_name(name)
        if folder.is_default:
            raise ApiError(
                403, "ErrorAccessDenied", "The default contacts folder cannot be renamed."
            )
        parent = self.folders.get(folder.parent_id)
        if parent is not None and name.lower() != folder.name.lower():
            self._unique_name(parent, name)
        folder.name = name

    def delete_folder(self, folder: Folder) -> None:
        if folder.is_default:
            raise ApiError(
                400, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted."
            )
        for child in list(folder.children.values()):
            self.delete_folder(child)
        for contact in list(folder.contacts.values()):
            self._unindex(contact)
            del self.contacts[contact.id]
        folder.contacts.clear()
        parent = self.folders.get(folder.parent_id)
        if parent is not None:
            parent.children.pop(folder.id, None)
        del self.folders[folder.id]

    def _folder_name(self, name: Any) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "ErrorInvalidRequest", "A folder needs a non-empty displayName.")
        if self.storage.string_limits and len(name) > F.MAX_STRING:
            raise ApiError(
                400,
                "ErrorInvalidProperty",
                f"displayName is longer than {F.MAX_STRING} characters.",
            )
        return name

    @staticmethod
    def _unique_name(parent: Folder, name: str) -> None:
        if any(child.name.lower() == name.lower() for child in parent.children.values()):
            raise ApiError(
                409,
                "ErrorFolderExists",
                f"A folder with the specified name already exists., Could not create folder "
                f"'{name}'.",
            )

    def folder_path(self, folder: Folder) -> list[Folder]:
        """The folder and its ancestors up to the default folder."""
        path = [folder]
        while not path[-1].is_default and path[-1].parent_id in self.folders:
            path.append(self.folders[path[-1].parent_id])
        return path

    @staticmethod
    def render_folder(folder: Folder) -> dict[str, Any]:
        return {"id": folder.id, "displayName": folder.name, "parentFolderId": folder.parent_id}

    # ------------------------------------------------------------------ contacts

    def contact(self, box: Mailbox, cid: str, folder: Folder | None = None) -> Contact:
        found = self.contacts.get(cid)
        if found is None:
            raise malformed() if not ids.well_formed(cid) else not_found()
        if found.mailbox is not box or (folder is not None and found.folder is not folder):
            raise not_found()
        return found

    def create_contact(
        self,
        folder: Folder,
        props: Mapping[str, Any],
        extended: Extended = (),
        *,
        cid: str | None = None,
        change_key: str | None = None,
        created: str | None = None,
        modified: str | None = None,
    ) -> Contact:
        box = folder.mailbox
        if cid is None:
            contact_id, counter = self._new_id(box, ids.CONTACT)
        else:
            contact_id = self._claim_id(box, cid, ids.CONTACT)
            parsed = ids.parse_id(contact_id)
            counter = parsed[2] if parsed is not None and parsed[0] == box.key else box.counter
        contact = Contact(contact_id, box, folder, counter)
        defaults = F.DEFAULTS
        stored = {k: v for k, v in props.items() if v != defaults[k]}
        if stored.get("displayName") is None:
            stored["displayName"] = F.derived_display_name(stored)
        contact.props = stored
        for key, shown, value in extended:
            contact.ext[key] = (shown, value)
        stamp = now_iso()
        contact.created = created or modified or stamp
        self.contacts[contact_id] = contact
        folder.contacts[contact_id] = contact
        self._touch(contact, folder, modified=modified or stamp, change_key=change_key)
        self._index(contact)
        return contact

    def update_contact(
        self,
        contact: Contact,
        props: Mapping[str, Any],
        extended: Extended = (),
    ) -> None:
        """Replace the given top-level properties; upsert the given extended properties."""
        self._unindex(contact)
        stored = contact.props
        renamed = any(
            name in props and props[name] != stored.get(name, F.default_value(name))
            for name in (*F.NAME_PROPS, "companyName")
        )
        for name, value in props.items():
            if value == F.default_value(name):
                stored.pop(name, None)
            else:
                stored[name] = value
        if props.get("displayName") is None and ("displayName" in props or renamed):
            # Graph regenerates displayName when the names change and none is sent.
            stored["displayName"] = F.derived_display_name(stored)
        for key, shown, value in extended:
            contact.ext[key] = (contact.ext.get(key, (shown, None))[0], value)
        self._touch(contact, contact.folder)
        self._index(contact)

    def delete_contact(self, contact: Contact) -> None:
        self._unindex(contact)
        del self.contacts[contact.id]
        folder = contact.folder
        del folder.contacts[contact.id]
        self._log_removal(contact, folder)

    def deleted_items(self, box: Mailbox) -> Folder:
        """The mailbox's Deleted Items: a mail folder below the hidden root, not a contact folder
        (never listed as a child of `Contacts`); made when first used."""
        for folder in self.folders.values():
            if folder.mailbox is box and folder.parent_id == box.root_id and not folder.is_default:
                return folder
        folder = Folder(self.new_id(box, ids.FOLDER), box, "Deleted Items", box.root_id)
        self._register_folder(folder)
        return folder

    def move_contact(self, contact: Contact, target: Folder) -> None:
        if target.mailbox is not contact.mailbox:
            raise ApiError(
                400, "ErrorInvalidRequest", "A contact can only move within its mailbox."
            )
        source = contact.folder
        if source is target:
            return
        del source.contacts[contact.id]
        self._log_removal(contact, source)
        contact.folder = target
        target.contacts[contact.id] = contact
        self._touch(contact, target)

    def _log_removal(self, contact: Contact, folder: Folder) -> None:
        box = contact.mailbox
        box.seq += 1
        folder.changelog.pop(contact.id, None)
        folder.changelog[contact.id] = box.seq

    def _touch(
        self,
        contact: Contact,
        folder: Folder,
        *,
        modified: str | None = None,
        change_key: str | None = None,
    ) -> None:
        box = contact.mailbox
        box.seq += 1
        contact.seq = box.seq
        contact.change_key = change_key or ids.change_key(box.key, box.seq)
        contact.modified = modified or now_iso()
        folder.changelog.pop(contact.id, None)
        folder.changelog[contact.id] = box.seq

    # ------------------------------------------------------------------ indexes and filters

    @staticmethod
    def _index_keys(contact: Contact) -> Iterator[tuple[dict[Any, set[str]], Any]]:
        box = contact.mailbox
        emails: dict[Any, set[str]] = box.email_index
        extended: dict[Any, set[str]] = box.ext_index
        for email in contact.props.get("emailAddresses", ()):
            if email.get("address"):
                yield emails, email["address"].casefold()
        for key, (_, value) in contact.ext.items():
            if value is not None:
                yield extended, (key, value.casefold())

    def _index(self, contact: Contact) -> None:
        for index, key in self._index_keys(contact):
            index.setdefault(key, set()).add(contact.id)

    def _unindex(self, contact: Contact) -> None:
        for index, key in self._index_keys(contact):
            bucket = index.get(key)
            if bucket is not None:
                bucket.discard(contact.id)
                if not bucket:
                    del index[key]

    def with_email(self, box: Mailbox, address: str) -> set[str]:
        return set(box.email_index.get(address.casefold(), ()))

    def with_extended(self, box: Mailbox, key: str, value: str) -> set[str]:
        return set(box.ext_index.get((key, value.casefold()), ()))

    # ------------------------------------------------------------------ rendering

    @staticmethod
    def render_contact(
        contact: Contact,
        select: frozenset[str] | None = None,
        expand_ext: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """The contact as Graph returns it (`select`: names to keep; `expand_ext`: ext keys)."""
        props = contact.props
        out: dict[str, Any] = {"@odata.etag": contact.etag}
        for name in F.CONTACT_ORDER:
            if select is not None and name not in select and name != "id":
                continue
            if name == "id":
                out["id"] = contact.id
            elif name == "createdDateTime":
                out[name] = contact.created
            elif name == "lastModifiedDateTime":
                out[name] = contact.modified
            elif name == "changeKey":
                out[name] = contact.change_key
            elif name == "parentFolderId":
                out[name] = contact.folder.id
            else:
                out[name] = props.get(name, F.default_value(name))
        if expand_ext is not None:
            found = [
                {"id": contact.ext[key][0], "value": contact.ext[key][1]}
                for key in expand_ext
                if key in contact.ext
            ]
            if found:
                out[F.EXTENDED] = found
        return out

    @staticmethod
    def raw_contact(contact: Contact) -> dict[str, Any]:
        """The stored contact in seed form (only set properties, extended ones included)."""
        out: dict[str, Any] = {
            "id": contact.id,
            "changeKey": contact.change_key,
            "createdDateTime": contact.created,
            "lastModifiedDateTime": contact.modified,
            "parentFolderId": contact.folder.id,
        }
        out.update(contact.props)
        if contact.ext:
            out[F.EXTENDED] = [
                {"id": shown, "value": value} for shown, value in contact.ext.values()
            ]
        return out
