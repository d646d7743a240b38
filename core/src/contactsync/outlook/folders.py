"""Folder identity: a sync is bound to its Outlook folder's id, not to the name it was set up by.

The ``folder`` setting (a display name, or an id) is resolved once; from then on the sync follows
that folder by id (the ledger's ``contactsync_folders`` row for the targets, the Singer state's
``folder_id`` for tap-outlook-contacts). A folder renamed in Outlook is the same folder: the sync
goes on in it, and never creates a new one under the old name. A folder deleted in Outlook stops
the run with a message saying so: its contacts are not taken for deleted (nothing is deleted in
Pipeliner), and no folder is created in its place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from contactsync.outlook.graph_api import Folder, GraphClient, GraphFolderError

if TYPE_CHECKING:
    from contactsync.sync.ledger import PartitionLedger

log = logging.getLogger("contactsync.outlook.folders")

#: What a Graph (Exchange) folder id looks like: long base64url. A name like this is never
#: created as a folder: it is an id whose folder is gone.
_GRAPH_ID = re.compile(r"^[A-Za-z0-9_-]{30,}={0,2}$")


class FolderGone(GraphFolderError):
    """The folder a sync is bound to no longer exists in the mailbox."""


def looks_like_id(name: str) -> bool:
    """Whether ``name`` is a Graph folder id rather than a display name."""
    return bool(_GRAPH_ID.match(name.strip()))


def gone_message(folder_id: str, name: str | None, configured: str) -> str:
    known = f" ({name!r} when last seen)" if name else ""
    return (
        f"the Outlook contacts folder this sync is bound to{known}, id {folder_id}, no longer "
        "exists in the mailbox: it was deleted (or moved out of the personal contacts folders). "
        "The run stopped: its contacts are not taken for deleted, nothing was deleted in "
        "Pipeliner, and no folder was created in its place. Restore the folder in Outlook (from "
        "Deleted Items) to go on; or, to sync into a new folder, set `folder` to it (a new folder "
        f"is a new sync, which links the contacts again by e-mail and name; now {configured!r})."
    )


def resolve_by_setting(
    graph: GraphClient, configured: str, *, create: bool, dry_run: bool = False
) -> Folder | None:
    """The folder the ``folder`` setting names now; created only for a name, never for an id.
    A dry run creates nothing: a folder that a real run would create is None (no contacts)."""
    wanted = (configured or "").strip()
    create = create and not looks_like_id(wanted)
    if not (create and dry_run):
        return graph.resolve_folder(wanted, create=create)
    try:
        return graph.resolve_folder(wanted, create=False)
    except GraphFolderError:
        return None


def follow(graph: GraphClient, folder_id: str, name: str | None, configured: str) -> Folder:
    """The folder with this id, under its current name; :class:`FolderGone` when it is gone."""
    folder = graph.personal_folder(folder_id)
    if folder is None:
        raise FolderGone(gone_message(folder_id, name, configured), status=404)
    if name and folder.display_name != name:
        log.warning(
            "the Outlook folder %r was renamed to %r: the sync follows it (same folder, id %s)",
            name,
            folder.display_name,
            folder.id,
        )
    return folder


def bound_folder(
    graph: GraphClient, ledger: PartitionLedger, config: Mapping[str, Any]
) -> Folder | None:
    """The scope's folder: the bound one (by id, renamed or not), else the one the ``folder``
    setting names, which is bound from then on. A dry run binds nothing (it writes nothing),
    and its folder is None when a real run would create it."""
    configured = str(config.get("folder") or "Pipeliner")
    dry_run = bool(config.get("dry_run"))
    binding = ledger.folder_binding()
    if binding is not None:
        folder: Folder | None = follow(graph, binding.folder_id, binding.display_name, configured)
    else:
        folder = resolve_by_setting(
            graph, configured, create=bool(config.get("create_folder")), dry_run=dry_run
        )
    if folder is None or dry_run:
        return folder
    if binding is None or binding.display_name != folder.display_name:
        ledger.bind_folder(folder.id, folder.display_name)
    return folder


def folder_changed(ledger: PartitionLedger, configured: str) -> str | None:
    """Why the folder this sync reads may not be the one it is bound to (None: no sign of it):
    the bound folder was renamed, so a folder found by the configured name would be another."""
    binding = ledger.folder_binding()
    if binding is None or looks_like_id(configured) or binding.folder_id == configured:
        return None
    if binding.display_name.casefold() != configured.strip().casefold():
        return (
            f"the Outlook folder this sync is bound to was renamed from {configured!r} to "
            f"{binding.display_name!r} (id {binding.folder_id})"
        )
    return None
