"""Delta query per contact folder: rounds, pages, tokens, replays and expiry.

A *round* starts with `GET …/contactFolders/{id}/contacts/delta` (every contact now in the
folder) or with a `$deltatoken` (what changed since that token: contacts created, changed or
moved in — as full objects — and contacts deleted or moved out, as `@removed` tombstones). The
ids of a round are fixed when it starts; its pages render each item's *current* state, so an
item changed during paging is sent as it is now and again in the next round (Graph documents
that an item may come more than once). `$skiptoken`s name (round, position), so requesting the
same nextLink twice gives the same page. The last page carries a `$deltatoken` naming the
change number the round started at.

Tokens are opaque random strings kept in a bounded LRU (like Exchange's sync-state cache): an
evicted, unknown or expired token — or one whose folder's epoch was bumped through the control
API — answers 410 `syncStateNotFound`, and the client must start over. That holds for a
nextLink's `$skiptoken` as for a `$deltatoken`: Graph's delta-query overview (microsoft-graph-
docs-contrib, concepts/delta-query-overview.md, "State tokens", "Token duration") calls both
state tokens, says Outlook's live in a cache whose older tokens are deleted once it is full, and
that an expired token answers a 40X error with a code such as `syncStateNotFound`.

Replays: with probability `replay_rate` per page, one item already sent in the round (or on
this page) is appended again (current state).
"""

from __future__ import annotations

import random
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..server import ApiError
from .model import Folder, GraphState

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 200
TOKEN_CAPACITY = 50_000
_REPLAY_WINDOW = 50


def sync_state_not_found() -> ApiError:
    return ApiError(
        410,
        "syncStateNotFound",
        "The sync state for this delta token was not found or has expired; start a full "
        "synchronization without a token.",
    )


@dataclass(frozen=True)
class Round:
    mailbox_id: str
    folder_id: str
    epoch: int
    ids: tuple[str, ...]
    upto: int
    incremental: bool
    select: frozenset[str] | None


@dataclass(frozen=True)
class PageToken:
    round: Round
    pos: int


@dataclass(frozen=True)
class DeltaToken:
    mailbox_id: str
    folder_id: str
    epoch: int
    since: int
    select: frozenset[str] | None


def tombstone(cid: str) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.contact", "id": cid, "@removed": {"reason": "deleted"}}


class DeltaStore:
    def __init__(self) -> None:
        self.tokens: OrderedDict[str, PageToken | DeltaToken] = OrderedDict()
        self.replay_rate = 0.0
        self.rng = random.Random(0)

    def clear(self) -> None:
        self.tokens.clear()

    def _remember(self, entry: PageToken | DeltaToken) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = entry
        while len(self.tokens) > TOKEN_CAPACITY:
            self.tokens.popitem(last=False)
        return token

    def lookup(self, token: str, folder: Folder) -> PageToken | DeltaToken:
        entry = self.tokens.get(token)
        if entry is None:
            raise sync_state_not_found()
        self.tokens.move_to_end(token)
        owner = entry.round if isinstance(entry, PageToken) else entry
        if (
            owner.folder_id != folder.id
            or owner.mailbox_id != folder.mailbox.id
            or owner.epoch != folder.epoch
        ):
            raise sync_state_not_found()
        return entry

    def start(
        self, folder: Folder, select: frozenset[str] | None, since: int | None = None
    ) -> Round:
        box = folder.mailbox
        if since is None:
            ids = tuple(cid for cid in folder.changelog if cid in folder.contacts)
        else:
            changed: list[str] = []
            for cid, seq in reversed(folder.changelog.items()):
                if seq <= since:
                    break
                changed.append(cid)
            changed.reverse()
            ids = tuple(changed)
        return Round(box.id, folder.id, folder.epoch, ids, box.seq, since is not None, select)

    def page(
        self, state: GraphState, folder: Folder, rnd: Round, pos: int, size: int
    ) -> tuple[list[dict[str, Any]], str | None, str | None]:
        """(items, skiptoken or None, deltatoken or None) of the page at `pos`."""
        chunk = rnd.ids[pos : pos + size]
        items = [item for cid in chunk if (item := self._item(state, folder, rnd, cid))]
        if self.replay_rate > 0 and self.rng.random() < self.replay_rate:
            candidates = rnd.ids[max(0, pos - _REPLAY_WINDOW) : pos + size]
            if candidates:
                again = self._item(state, folder, rnd, self.rng.choice(candidates))
                if again:
                    items.append(again)
        end = pos + len(chunk)
        if end < len(rnd.ids):
            return items, self._remember(PageToken(rnd, end)), None
        cursor = DeltaToken(rnd.mailbox_id, rnd.folder_id, rnd.epoch, rnd.upto, rnd.select)
        return items, None, self._remember(cursor)

    @staticmethod
    def _item(state: GraphState, folder: Folder, rnd: Round, cid: str) -> dict[str, Any] | None:
        contact = folder.contacts.get(cid)
        if contact is not None:
            return state.render_contact(contact, rnd.select)
        return tombstone(cid) if rnd.incremental else None
