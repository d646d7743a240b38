"""The Graph emulator's control API (`/_sandbox/graph/...`): what tests and seeding use to see
and change the mailboxes from outside, and to switch the emulator's behaviour.

Mailboxes, folders (sharing included) and contacts are read and written as their owner would,
without a token; tokens are issued and expired; the storage options, the throttling model and
delta replay are switched; contacts are generated in bulk. The routes and their bodies are in
sandbox/README.md. Handlers that touch the mailboxes hold the emulator's lock; the limiter and
the token registry lock themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .. import tokens
from ..jsonbody import read_object
from ..jsonvalues import is_number
from ..server import ApiError, Emulator
from . import fields as F
from . import seeding
from .model import Contact, Folder, GraphState, Mailbox

if TYPE_CHECKING:
    from .emulator import GraphEmulator

CONTROL = "/_sandbox/graph"


class GraphControl:
    """The control routes of one `GraphEmulator`, over its state, limiter and delta store."""

    def __init__(self, emulator: GraphEmulator) -> None:
        self.emulator = emulator

    @property
    def state(self) -> GraphState:
        """The emulator's state now (a seed or a reset replaces it)."""
        return self.emulator.state

    def rules(self) -> list[Rule]:
        c = CONTROL
        m = f"{c}/mailboxes/<mailbox>"

        def rule(path: str, endpoint: Callable[..., Response], method: str) -> Rule:
            return Rule(path, endpoint=endpoint, methods=[method])

        return [
            rule(f"{c}/mailboxes", self.mailboxes, "GET"),
            rule(f"{m}/folders", self.folders, "GET"),
            rule(f"{m}/folders", self.create_folder, "POST"),
            rule(f"{m}/folders/<folder>", self.rename_folder, "PATCH"),
            rule(f"{m}/folders/<folder>", self.delete_folder, "DELETE"),
            rule(f"{m}/folders/<folder>/share", self.share, "POST"),
            rule(f"{m}/folders/<folder>/unshare", self.unshare, "POST"),
            rule(f"{m}/folders/<folder>/contacts", self.contacts, "GET"),
            rule(f"{m}/folders/<folder>/contacts", self.create_contact, "POST"),
            rule(f"{m}/contacts/<contact_id>", self.contact, "GET"),
            rule(f"{m}/contacts/<contact_id>", self.update_contact, "PATCH"),
            rule(f"{m}/contacts/<contact_id>", self.delete_contact, "DELETE"),
            rule(f"{m}/contacts/<contact_id>/move", self.move_contact, "POST"),
            rule(f"{c}/tokens", self.issue_token, "POST"),
            rule(f"{c}/expire-tokens", self.expire_tokens, "POST"),
            rule(f"{c}/expire-delta-tokens", self.expire_delta, "POST"),
            rule(f"{c}/storage", self.storage, "GET"),
            rule(f"{c}/storage", self.set_storage, "POST"),
            rule(f"{c}/throttle", self.throttle, "GET"),
            rule(f"{c}/throttle", self.set_throttle, "POST"),
            rule(f"{c}/delta", self.delta, "GET"),
            rule(f"{c}/delta", self.set_delta, "POST"),
            rule(f"{c}/generate", self.generate, "POST"),
            rule(f"{c}/stats", self.stats, "GET"),
        ]

    def _box(self, ref: str) -> Mailbox:
        box = self.state.mailbox(ref)
        if box is None:
            raise ApiError(404, "NotFound", f"no mailbox {ref!r}")
        return box

    def _folder(self, box: Mailbox, ref: str) -> Folder:
        """A folder by id, the `Contacts` alias, or a display name unique in the mailbox."""
        if ref.lower() == "contacts":
            return box.default_folder
        found = self.state.folders.get(ref)
        if found is not None and found.mailbox is box:
            return found
        named = [
            f
            for f in self.state.folders.values()
            if f.mailbox is box and f.name.lower() == ref.lower()
        ]
        if len(named) == 1:
            return named[0]
        if named:
            raise ApiError(400, "BadRequest", f"several folders are named {ref!r}; use the id")
        raise ApiError(404, "NotFound", f"no folder {ref!r} in {box.upn}")

    def _contact(self, box: Mailbox, cid: str) -> Contact:
        found = self.state.contacts.get(cid)
        if found is None or found.mailbox is not box:
            raise ApiError(404, "NotFound", f"no contact {cid!r} in {box.upn}")
        return found

    def _folder_json(self, folder: Folder) -> dict[str, Any]:
        return {
            **self.state.render_folder(folder),
            "is_default": folder.is_default,
            "path": "/".join(f.name for f in reversed(self.state.folder_path(folder))),
            "shared_with": [
                {"mailbox": self.state.mailboxes[mid].upn, "can_edit": can_edit}
                for mid, can_edit in folder.shared_with.items()
            ],
            "contacts": len(folder.contacts),
            "childFolders": len(folder.children),
        }

    def mailboxes(self, request: Request) -> Response:
        with self.emulator.lock:
            rows = [
                {
                    "id": box.id,
                    "user_principal_name": box.upn,
                    "display_name": box.display_name,
                    "default_folder_id": box.default_folder.id,
                    "folders": sum(1 for f in self.state.folders.values() if f.mailbox is box),
                    "contacts": sum(1 for c in self.state.contacts.values() if c.mailbox is box),
                    "change_number": box.seq,
                }
                for box in self.state.mailboxes.values()
            ]
        return Emulator.json_response({"mailboxes": rows})

    def folders(self, request: Request, mailbox: str) -> Response:
        with self.emulator.lock:
            box = self._box(mailbox)
            rows = [self._folder_json(f) for f in self.state.folders.values() if f.mailbox is box]
        return Emulator.json_response({"folders": rows})

    def create_folder(self, request: Request, mailbox: str) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            box = self._box(mailbox)
            parent = self._folder(box, str(body.get("parent") or "Contacts"))
            folder = self.state.create_folder(parent, body.get("displayName"))
            return Emulator.json_response(self._folder_json(folder), 201)

    def rename_folder(self, request: Request, mailbox: str, folder: str) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            found = self._folder(self._box(mailbox), folder)
            self.state.rename_folder(found, body.get("displayName"))
            return Emulator.json_response(self._folder_json(found))

    def delete_folder(self, request: Request, mailbox: str, folder: str) -> Response:
        with self.emulator.lock:
            self.state.delete_folder(self._folder(self._box(mailbox), folder))
        return Response(status=204)

    def share(self, request: Request, mailbox: str, folder: str) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            found = self._folder(self._box(mailbox), folder)
            other, can_edit = seeding.parse_share(self.state, body)
            if other is found.mailbox:
                raise ValueError("a folder cannot be shared with its own mailbox")
            found.shared_with[other.id] = can_edit
            return Emulator.json_response(self._folder_json(found))

    def unshare(self, request: Request, mailbox: str, folder: str) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            found = self._folder(self._box(mailbox), folder)
            other, _ = seeding.parse_share(self.state, body)
            if found.shared_with.pop(other.id, None) is None:
                raise ApiError(404, "NotFound", f"the folder is not shared with {other.upn}")
            return Emulator.json_response(self._folder_json(found))

    def contacts(self, request: Request, mailbox: str, folder: str) -> Response:
        with self.emulator.lock:
            found = self._folder(self._box(mailbox), folder)
            rows = [self.state.raw_contact(c) for c in found.contacts.values()]
        return Emulator.json_response({"folder": found.id, "contacts": rows})

    def create_contact(self, request: Request, mailbox: str, folder: str) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            found = self._folder(self._box(mailbox), folder)
            props, extended = F.parse_write(body, self.state.storage)
            contact = self.state.create_contact(found, props, extended)
            return Emulator.json_response(self.state.raw_contact(contact), 201)

    def contact(self, request: Request, mailbox: str, contact_id: str) -> Response:
        with self.emulator.lock:
            contact = self._contact(self._box(mailbox), contact_id)
            return Emulator.json_response(self.state.raw_contact(contact))

    def update_contact(self, request: Request, mailbox: str, contact_id: str) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            contact = self._contact(self._box(mailbox), contact_id)
            props, extended = F.parse_write(body, self.state.storage)
            self.state.update_contact(contact, props, extended)
            return Emulator.json_response(self.state.raw_contact(contact))

    def delete_contact(self, request: Request, mailbox: str, contact_id: str) -> Response:
        with self.emulator.lock:
            box = self._box(mailbox)
            contact = self._contact(box, contact_id)
            bin_ = self.state.deleted_items(box) if self.state.storage.deleted_items else None
            if bin_ is not None and contact.folder is not bin_:
                self.state.move_contact(contact, bin_)  # the storage option: to Deleted Items
            else:
                self.state.delete_contact(contact)
        return Response(status=204)

    def move_contact(self, request: Request, mailbox: str, contact_id: str) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            box = self._box(mailbox)
            contact = self._contact(box, contact_id)
            self.state.move_contact(contact, self._folder(box, str(body.get("folder", ""))))
            return Emulator.json_response(self.state.raw_contact(contact))

    def issue_token(self, request: Request) -> Response:
        body = read_object(request)
        app = self.state.meta.get("app_registration") or {}
        mailbox = body.get("mailbox")
        with self.emulator.lock:
            box = self._box(mailbox) if mailbox is not None else None
        default_scopes = ["Contacts.ReadWrite"] if box else ["https://graph.microsoft.com/.default"]
        scopes = body.get("scopes", default_scopes)
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError("scopes must be a list of strings")
        lifetime = body.get("lifetime", tokens.DEFAULT_LIFETIME)
        if not is_number(lifetime):
            raise ValueError("lifetime must be a number of seconds")
        grant = tokens.REGISTRY.issue(
            client_id=str(body.get("client_id") or app.get("client_id") or "sandbox-client"),
            tenant_id=str(self.state.meta.get("tenant_id") or "sandbox-tenant"),
            mailbox_id=box.id if box else None,
            upn=box.upn if box else None,
            scopes=scopes,
            lifetime=float(lifetime),
        )
        return Emulator.json_response(
            {
                "access_token": grant.token,
                "token_type": "Bearer",
                "expires_at": grant.expires_at,
                "mailbox_id": grant.mailbox_id,
                "scopes": sorted(grant.scopes),
            },
            201,
        )

    def expire_tokens(self, request: Request) -> Response:
        body = read_object(request)
        if body.get("token") is not None:
            found = tokens.REGISTRY.expire(str(body["token"]))
            if not found:
                raise ApiError(404, "NotFound", "no such token")
            return Emulator.json_response({"expired": 1})
        return Emulator.json_response({"expired": tokens.REGISTRY.expire_all()})

    def expire_delta(self, request: Request) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            if body.get("mailbox") is not None:
                box = self._box(str(body["mailbox"]))
                if body.get("folder") is not None:
                    targets = [self._folder(box, str(body["folder"]))]
                else:
                    targets = [f for f in self.state.folders.values() if f.mailbox is box]
            elif body.get("folder") is not None:
                raise ValueError("'folder' needs 'mailbox'")
            else:
                targets = list(self.state.folders.values())
            for folder in targets:
                folder.epoch += 1
        return Emulator.json_response({"folders": [f.id for f in targets]})

    def storage(self, request: Request) -> Response:
        with self.emulator.lock:
            return Emulator.json_response(self.state.storage.to_json())

    def set_storage(self, request: Request) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            self.state.storage = self.state.storage.updated(body)
            return Emulator.json_response(self.state.storage.to_json())

    def throttle(self, request: Request) -> Response:
        return Emulator.json_response(self.emulator.limiter.stats()["settings"])

    def set_throttle(self, request: Request) -> Response:
        return Emulator.json_response(self.emulator.limiter.configure(read_object(request)))

    def delta(self, request: Request) -> Response:
        with self.emulator.lock:
            return Emulator.json_response(
                {
                    "replay_rate": self.emulator.delta_store.replay_rate,
                    "tokens": len(self.emulator.delta_store.tokens),
                }
            )

    def set_delta(self, request: Request) -> Response:
        body = read_object(request)
        unknown = set(body) - {"replay_rate", "seed"}
        if unknown:
            raise ValueError(f"unknown delta setting(s): {', '.join(sorted(unknown))}")
        with self.emulator.lock:
            if "replay_rate" in body:
                rate = body["replay_rate"]
                if not is_number(rate) or not 0 <= rate <= 1:
                    raise ValueError("replay_rate must be a number 0..1")
                self.emulator.delta_store.replay_rate = float(rate)
            if "seed" in body:
                self.emulator.delta_store.rng.seed(body["seed"])
            return Emulator.json_response(
                {
                    "replay_rate": self.emulator.delta_store.replay_rate,
                    "tokens": len(self.emulator.delta_store.tokens),
                }
            )

    def generate(self, request: Request) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            box = self._box(str(body.get("mailbox", "")))
            folder = self._folder(box, str(body.get("folder") or "Contacts"))
            return Emulator.json_response(
                seeding.generate(self.state, folder, body.get("count")), 201
            )

    def stats(self, request: Request) -> Response:
        return Emulator.json_response(self.emulator.limiter.stats())
