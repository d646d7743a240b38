"""The Graph emulator's seed (what `POST /_sandbox/seed` takes and `GET /_sandbox/state` returns)
and the bulk generator.

A seed is the `microsoft` object of the shared default seed (or the whole default seed, whose
`microsoft` key is then used):

    {"tenant_id": ..., "tenant_domain": ..., "app_registration": {...},
     "mailboxes": [
       {"id": "<mailbox id>", "user_principal_name": "alex@contoso.example",
        "display_name": ..., "pipeliner_user_id": ..., <other keys kept as they are>,
        "contacts_folder": {                       # the default folder "Contacts"
          "id": "<optional folder id>",
          "shared_with": ["<upn or mailbox id>", {"mailbox": "...", "can_edit": true}],
          "contacts": [{<Graph contact properties>, "id"?, "changeKey"?, "createdDateTime"?,
                        "lastModifiedDateTime"?, "singleValueExtendedProperties"?: [...]}],
          "childFolders": [{"id"?, "displayName": "Pipeliner", "shared_with"?, "contacts"?,
                            "childFolders"?: [...]}]}}]}

Contacts are checked like API writes (types, the 3/2/2 array limits, lengths); ids, change keys
and timestamps are filled deterministically when absent (ids from the mailbox and a counter in
seed order), so the same seed always gives the same ids. `GET /_sandbox/state` returns this form
with everything explicit (it round-trips through `/_sandbox/seed`). Keys of the `microsoft`
object other than these (the identity emulator's settings) are ignored here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..jsonvalues import is_integer
from ..server import ApiError
from . import fields as F
from .model import Folder, GraphState, Mailbox

META_KEYS = ("tenant_id", "tenant_domain", "app_registration")
MAILBOX_KEYS = {"id", "user_principal_name", "display_name", "contacts_folder"}
FOLDER_KEYS = {"id", "displayName", "shared_with", "contacts", "childFolders"}
CONTACT_META = ("id", "changeKey", "createdDateTime", "lastModifiedDateTime")
SEED_TIME = "2025-01-02T08:00:00Z"


def load(data: Any) -> GraphState:
    if isinstance(data, Mapping) and "microsoft" in data:
        data = data["microsoft"]
    if not isinstance(data, Mapping):
        raise ValueError('the Graph seed is {"mailboxes": [...]} (or a seed with "microsoft")')
    # Other keys of the shared `microsoft` object belong to the identity emulator.
    state = GraphState()
    state.meta = {k: data[k] for k in META_KEYS if k in data}
    boxes = data.get("mailboxes", [])
    if not isinstance(boxes, list) or not all(isinstance(b, Mapping) for b in boxes):
        raise ValueError("mailboxes must be a list of objects")
    pending: list[tuple[Folder, Any]] = []
    for raw in boxes:
        mid, upn = raw.get("id"), raw.get("user_principal_name")
        if not isinstance(mid, str) or not mid or not isinstance(upn, str) or "@" not in upn:
            raise ValueError("every mailbox needs an 'id' and a 'user_principal_name'")
        tree = raw.get("contacts_folder") or {}
        if not isinstance(tree, Mapping):
            raise ValueError(f"{upn}: contacts_folder must be an object")
        extra = {k: v for k, v in raw.items() if k not in MAILBOX_KEYS}
        box = state.add_mailbox(
            mid, upn, raw.get("display_name"), extra, default_folder_id=tree.get("id")
        )
        _load_folder(state, box.default_folder, tree, pending, default=True)
    for folder, shares in pending:
        _load_shares(state, folder, shares)
    return state


def _load_folder(
    state: GraphState,
    folder: Folder,
    tree: Mapping[str, Any],
    pending: list[tuple[Folder, Any]],
    *,
    default: bool = False,
) -> None:
    where = f"{folder.mailbox.upn}/{folder.name}"
    unknown = set(tree) - FOLDER_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown folder key(s): {', '.join(sorted(unknown))}")
    if default and tree.get("displayName") not in (None, "Contacts"):
        raise ValueError(f"{where}: the default folder is always named 'Contacts'")
    if tree.get("shared_with"):
        pending.append((folder, tree["shared_with"]))
    contacts = tree.get("contacts", [])
    if not isinstance(contacts, list):
        raise ValueError(f"{where}: contacts must be a list")
    for index, raw in enumerate(contacts):
        try:
            load_contact(state, folder, raw)
        except (ApiError, ValueError) as exc:
            message = exc.message if isinstance(exc, ApiError) else str(exc)
            raise ValueError(f"{where}: contact #{index}: {message}") from None
    children = tree.get("childFolders", [])
    if not isinstance(children, list):
        raise ValueError(f"{where}: childFolders must be a list")
    for child in children:
        if not isinstance(child, Mapping):
            raise ValueError(f"{where}: childFolders must hold objects")
        try:
            created = state.create_folder(folder, child.get("displayName"), fid=child.get("id"))
        except ApiError as exc:
            raise ValueError(f"{where}: {exc.message}") from None
        _load_folder(state, created, child, pending)


def load_contact(state: GraphState, folder: Folder, raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        raise ValueError("a contact must be an object")
    props, extended = F.parse_write({k: v for k, v in raw.items() if k not in CONTACT_META})
    stamps = {}
    for key in ("createdDateTime", "lastModifiedDateTime"):
        if raw.get(key) is not None:
            stamps[key] = F.parse_datetime(key, raw[key])
    return state.create_contact(
        folder,
        props,
        extended,
        cid=raw.get("id"),
        change_key=raw.get("changeKey"),
        created=stamps.get("createdDateTime") or SEED_TIME,
        modified=stamps.get("lastModifiedDateTime") or stamps.get("createdDateTime") or SEED_TIME,
    )


def parse_share(state: GraphState, item: Any) -> tuple[Mailbox, bool]:
    if isinstance(item, str):
        ref, can_edit = item, False
    elif isinstance(item, Mapping) and isinstance(item.get("mailbox"), str):
        ref, can_edit = item["mailbox"], bool(item.get("can_edit", False))
    else:
        raise ValueError('a share is "<upn or id>" or {"mailbox": "...", "can_edit": false}')
    box = state.mailbox(ref)
    if box is None:
        raise ValueError(f"no mailbox {ref!r} to share with")
    return box, can_edit


def _load_shares(state: GraphState, folder: Folder, shares: Any) -> None:
    if not isinstance(shares, list):
        raise ValueError("shared_with must be a list")
    for item in shares:
        box, can_edit = parse_share(state, item)
        if box is folder.mailbox:
            raise ValueError("a folder cannot be shared with its own mailbox")
        folder.shared_with[box.id] = can_edit


# ---------------------------------------------------------------------- dump


def dump(state: GraphState) -> dict[str, Any]:
    out: dict[str, Any] = dict(state.meta)
    out["mailboxes"] = []
    for box in state.mailboxes.values():
        row: dict[str, Any] = {
            "id": box.id,
            "user_principal_name": box.upn,
            "display_name": box.display_name,
            **box.extra,
        }
        row["contacts_folder"] = dump_folder(state, box.default_folder, default=True)
        out["mailboxes"].append(row)
    return out


def dump_folder(state: GraphState, folder: Folder, *, default: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {"id": folder.id}
    if not default:
        row["displayName"] = folder.name
    if folder.shared_with:
        row["shared_with"] = [
            {"mailbox": state.mailboxes[mid].upn, "can_edit": can_edit}
            for mid, can_edit in folder.shared_with.items()
        ]
    contacts = []
    for contact in folder.contacts.values():
        raw = state.raw_contact(contact)
        raw.pop("parentFolderId")
        contacts.append(raw)
    row["contacts"] = contacts
    row["childFolders"] = [dump_folder(state, child) for child in folder.children.values()]
    return row


# ---------------------------------------------------------------------- bulk generator

_GIVEN = ("Ada", "Ben", "Chloé", "Dmitri", "Eva", "Farid", "Greta", "Hiro", "Inès", "Jonas")
_SURNAMES = ("Adams", "Berg", "Costa", "Dvořák", "Eriksen", "Fischer", "García", "Huang")
_COMPANIES = ("Contoso", "Fabrikam", "Northwind Traders", "Tailspin Toys", None)


def generate(state: GraphState, folder: Folder, count: int) -> dict[str, Any]:
    """Add `count` plain contacts to `folder` (fast: no per-contact validation)."""
    if not is_integer(count) or not 1 <= count <= 1_000_000:
        raise ValueError("count must be an integer 1..1000000")
    started = time.perf_counter()
    box = folder.mailbox
    first = last = None
    for _ in range(count):
        n = box.counter
        given, surname = _GIVEN[n % len(_GIVEN)], _SURNAMES[(n // 7) % len(_SURNAMES)]
        address = f"bulk{n}@bulk.example"
        props: dict[str, Any] = {
            "givenName": given,
            "surname": f"{surname} {n}",
            "displayName": f"{given} {surname} {n}",
            "emailAddresses": [{"name": address, "address": address}],
            "businessPhones": [f"+1 555 {n % 10_000:04d}"],
        }
        company = _COMPANIES[n % len(_COMPANIES)]
        if company:
            props["companyName"] = company
        contact = state.create_contact(folder, props)
        first = first or contact.id
        last = contact.id
    return {
        "mailbox": box.id,
        "folder": folder.id,
        "created": count,
        "first_id": first,
        "last_id": last,
        "folder_contacts": len(folder.contacts),
        "seconds": round(time.perf_counter() - started, 3),
    }
