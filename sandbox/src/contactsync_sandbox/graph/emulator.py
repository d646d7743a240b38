"""The Microsoft Graph v1.0 emulator: contact folders, contacts, delta, `$batch`, throttling.

Routes (each under `/v1.0/users/{id or UPN}` and `/v1.0/me`, bearer tokens from
`contactsync_sandbox.tokens.REGISTRY`) and `POST /v1.0/$batch`; behaviour, error codes and the
throttling model are described in sandbox/README.md. The control API (`/_sandbox/graph/...`)
lives in `control.py`.

Every request — top-level or inside a `$batch` — runs the same path: a `Call` (method, path,
query, headers, JSON body) is authenticated, its target mailbox resolved and access checked,
then an operation handler answers a `Reply`. Top-level requests hold a concurrency slot of their
(app, mailbox) around everything, latency faults included.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from werkzeug.datastructures import Headers, MultiDict
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .. import tokens
from ..seed import default_seed
from ..server import ApiError, Emulator
from . import fields as F
from . import query as Q
from . import seeding
from .control import GraphControl
from .delta import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, DeltaStore, DeltaToken, PageToken
from .model import Contact, Folder, GraphState, Mailbox
from .throttle import Key, Limiter, budget_error

API = "/v1.0"
JSON_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
    "charset=utf-8"
)
MAX_BATCH = 20
READ_SCOPES = frozenset(
    {
        "contacts.read",
        "contacts.readwrite",
        "contacts.read.shared",
        "contacts.readwrite.shared",
    }
)
WRITE_SCOPES = frozenset({"contacts.readwrite", "contacts.readwrite.shared"})
HTTP_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})

#: (method, path below the user, operation)
OPERATIONS: tuple[tuple[str, str, str], ...] = (
    ("GET", "/contactFolders", "list_folders"),
    ("POST", "/contactFolders", "create_folder"),
    ("GET", "/contactFolders/<folder_id>", "get_folder"),
    ("PATCH", "/contactFolders/<folder_id>", "update_folder"),
    ("DELETE", "/contactFolders/<folder_id>", "delete_folder"),
    ("GET", "/contactFolders/<folder_id>/childFolders", "list_child_folders"),
    ("POST", "/contactFolders/<folder_id>/childFolders", "create_child_folder"),
    ("GET", "/contactFolders/<folder_id>/contacts", "list_contacts"),
    ("POST", "/contactFolders/<folder_id>/contacts", "create_contact"),
    ("GET", "/contactFolders/<folder_id>/contacts/delta", "delta"),
    ("GET", "/contactFolders/<folder_id>/contacts/<contact_id>", "get_contact"),
    ("PATCH", "/contactFolders/<folder_id>/contacts/<contact_id>", "update_contact"),
    ("DELETE", "/contactFolders/<folder_id>/contacts/<contact_id>", "delete_contact"),
    ("GET", "/contacts", "list_contacts"),
    ("POST", "/contacts", "create_contact"),
    ("GET", "/contacts/<contact_id>", "get_contact"),
    ("PATCH", "/contacts/<contact_id>", "update_contact"),
    ("DELETE", "/contacts/<contact_id>", "delete_contact"),
)


def _now_http() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def access_denied() -> ApiError:
    return ApiError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")


@dataclass
class Call:
    """One request to the API, top-level or inside a `$batch`."""

    method: str
    path: str
    args: MultiDict[str, str]
    headers: Headers
    body: Any
    base_url: str
    body_error: str | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def client_request_id(self) -> str:
        return self.headers.get("client-request-id") or self.request_id


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Ctx:
    call: Call
    grant: tokens.Grant
    box: Mailbox
    #: may do anything in `box` (its owner, or an app-only token)
    owner: bool
    #: the caller's own mailbox (delegated tokens)
    caller: Mailbox | None
    #: how the URL named the user, for `@odata.context`
    user_ref: str


class _Endpoint:
    """A route's endpoint: callable by werkzeug for top-level requests, `.op` for batches."""

    def __init__(self, emulator: GraphEmulator, op: str) -> None:
        self.emulator, self.op = emulator, op
        self.__name__ = op

    def __call__(self, request: Request, **values: Any) -> Response:
        emulator = self.emulator
        call = emulator.call_from_request(request)
        return emulator.to_response(emulator.run(call, self.op, values), call)


class GraphEmulator(Emulator):
    """Microsoft Graph v1.0 (Outlook contacts) for several mailboxes."""

    name = "graph"
    serialize_handlers = False  # handlers lock themselves; throttling needs real concurrency

    def __init__(self) -> None:
        self.state = GraphState()
        self.delta_store = DeltaStore()
        self.limiter = Limiter()
        super().__init__()
        self._inner_routes = Map(
            [rule for rule in self._api_rules()], strict_slashes=False, merge_slashes=False
        ).bind("localhost")

    # ------------------------------------------------------------------ framework hooks

    def default_seed(self) -> Any:
        return default_seed()["microsoft"]

    def seed(self, data: Any) -> None:
        storage = self.state.storage
        self.state = seeding.load(data)  # seeds are stored as given
        self.state.storage = storage
        self.delta_store.clear()

    def snapshot(self) -> Any:
        return seeding.dump(self.state)

    def control_rules(self) -> Iterable[Rule]:
        return GraphControl(self).rules()

    def reset(self) -> None:
        super().reset()
        self.limiter.reset()
        with self.lock:
            self.delta_store.replay_rate = 0.0
            self.delta_store.rng.seed(0)
            self.state.storage = F.DOCUMENTED

    def info(self, base_url: str) -> dict[str, Any]:
        with self.lock:
            boxes = {box.upn: box.id for box in self.state.mailboxes.values()}
        return {"graph_url": base_url, "graph_mailboxes": boxes}

    def error_response(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        request_id = str(uuid.uuid4())
        body = error_body(code, message, request_id, request_id)
        response = Response(json.dumps(body), status=status, headers=dict(headers or {}))
        response.headers["Content-Type"] = JSON_TYPE
        response.headers["request-id"] = request_id
        response.headers["client-request-id"] = request_id
        return response

    # ------------------------------------------------------------------ routing

    def _api_rules(self) -> list[Rule]:
        rules = []
        for method, suffix, op in OPERATIONS:
            endpoint = _Endpoint(self, op)
            for prefix in (f"{API}/users/<user_id>", f"{API}/me"):
                rules.append(Rule(prefix + suffix, endpoint=endpoint, methods=[method]))
        return rules

    def rules(self) -> Iterable[Rule]:
        return [*self._api_rules(), Rule(f"{API}/$batch", endpoint=self.batch, methods=["POST"])]

    def call_from_request(self, request: Request) -> Call:
        body: Any = None
        body_error = None
        raw = request.get_data(cache=True)
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                body_error = f"The request body is not valid JSON: {exc}"
        return Call(
            method=request.method,
            path=request.path,
            args=MultiDict(request.args),
            headers=Headers(request.headers),
            body=body,
            base_url=request.host_url.rstrip("/"),
            body_error=body_error,
        )

    def to_response(self, reply: Reply, call: Call) -> Response:
        if reply.status == 204 or reply.body is None:
            response = Response(status=reply.status, headers=reply.headers)
        else:
            response = Response(
                json.dumps(reply.body, ensure_ascii=False),
                status=reply.status,
                headers=reply.headers,
            )
            response.headers["Content-Type"] = JSON_TYPE
        response.headers["request-id"] = call.request_id
        response.headers["client-request-id"] = call.client_request_id
        return response

    def error_reply(self, exc: ApiError, call: Call) -> Reply:
        body = error_body(exc.code, exc.message, call.request_id, call.client_request_id)
        return Reply(exc.status, body, dict(exc.headers))

    # ------------------------------------------------------------------ throttling (top level)

    def _answer(
        self,
        request: Request,
        handler: Any,
        values: dict[str, Any],
        routing_error: Any,
    ) -> Response:
        key = None
        if routing_error is None and isinstance(handler, _Endpoint):
            key = self._throttle_key(request.headers.get("Authorization"), values)
        if key is None:
            return super()._answer(request, handler, values, routing_error)
        if not self.limiter.enter(key):
            return self._throttled_response(self.limiter.concurrency_error(), request)
        try:
            wait = self.limiter.spend(key)
            if wait is not None:
                return self._throttled_response(budget_error(wait), request)
            self.limiter.serve()
            return super()._answer(request, handler, values, routing_error)
        finally:
            self.limiter.leave(key)

    def _throttled_response(self, exc: ApiError, request: Request) -> Response:
        call = self.call_from_request(request)
        return self.to_response(self.error_reply(exc, call), call)

    def _throttle_key(self, authorization: str | None, values: Mapping[str, Any]) -> Key | None:
        grant = self._grant_or_none(authorization)
        if grant is None:
            return None
        ref = values.get("user_id", grant.mailbox_id)
        if ref is None:
            return None
        box = self.state.mailbox(ref)
        return None if box is None else (grant.client_id, box.id)

    # ------------------------------------------------------------------ auth and dispatch

    @staticmethod
    def _bearer(authorization: str | None) -> str | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _grant_or_none(self, authorization: str | None) -> tokens.Grant | None:
        token = self._bearer(authorization)
        grant = tokens.REGISTRY.lookup(token) if token else None
        return None if grant is None or grant.expired else grant

    def authenticate(self, call: Call) -> tokens.Grant:
        token = self._bearer(call.headers.get("Authorization"))
        challenge = {
            "WWW-Authenticate": 'Bearer realm="", authorization_uri="sandbox identity emulator"'
        }
        if token is None:
            raise ApiError(401, "InvalidAuthenticationToken", "Access token is empty.", challenge)
        grant = tokens.REGISTRY.lookup(token)
        if grant is None:
            raise ApiError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience or unknown token.",
                challenge,
            )
        if grant.expired:
            raise ApiError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
                challenge,
            )
        return grant

    def run(self, call: Call, op: str, values: Mapping[str, Any]) -> Reply:
        """Authenticate, resolve the mailbox, check access, run `op`; errors become replies."""
        try:
            grant = self.authenticate(call)
            handler: Callable[..., Reply] = getattr(self, f"op_{op}")
            args = dict(values)
            with self.lock:
                ctx = self._context(call, grant, args.pop("user_id", None))
                return handler(ctx, **args)
        except ApiError as exc:
            return self.error_reply(exc, call)

    def _context(self, call: Call, grant: tokens.Grant, user_ref: str | None) -> Ctx:
        caller = self.state.mailbox(grant.mailbox_id) if grant.mailbox_id else None
        if user_ref is None:  # /me
            if grant.app_only:
                raise ApiError(
                    400,
                    "BadRequest",
                    "/me request is only valid with delegated authentication flow.",
                )
            if caller is None:
                raise ApiError(
                    404, "ErrorInvalidUser", f"The requested user '{grant.upn}' is invalid."
                )
            box, ref = caller, caller.id
        else:
            found = self.state.mailbox(user_ref)
            if found is None:
                raise ApiError(
                    404, "ErrorInvalidUser", f"The requested user '{user_ref}' is invalid."
                )
            box, ref = found, user_ref
        scopes = {s.lower() for s in grant.scopes}
        app_permission = any(s == ".default" or s.endswith("/.default") for s in scopes)
        needed = READ_SCOPES if call.method == "GET" else WRITE_SCOPES
        if not app_permission and not scopes & needed:
            raise access_denied()
        owner = grant.app_only or caller is box
        return Ctx(call, grant, box, owner, caller, ref)

    # ------------------------------------------------------------------ access helpers

    @staticmethod
    def _require_owner(ctx: Ctx) -> None:
        if not ctx.owner:
            raise access_denied()

    @staticmethod
    def _check_folder(ctx: Ctx, folder: Folder, write: bool) -> None:
        if ctx.owner:
            return
        if ctx.caller is None or ctx.caller.id not in folder.shared_with:
            raise access_denied()
        if write and not folder.shared_with[ctx.caller.id]:
            raise access_denied()

    def _folder(self, ctx: Ctx, folder_id: str | None, write: bool = False) -> Folder:
        folder = self.state.folder(ctx.box, folder_id or "Contacts")
        self._check_folder(ctx, folder, write)
        return folder

    def _contact(
        self, ctx: Ctx, contact_id: str, folder_id: str | None, write: bool = False
    ) -> Contact:
        folder = self.state.folder(ctx.box, folder_id) if folder_id is not None else None
        if not self.state.storage.folder_scoped_item_urls:
            folder = None  # the storage option: the folder segment is not checked
        contact = self.state.contact(ctx.box, contact_id, folder)
        self._check_folder(ctx, contact.folder, write)
        return contact

    def _context_url(self, ctx: Ctx, tail: str) -> str:
        return f"{ctx.call.base_url}{API}/$metadata#users('{ctx.user_ref}'){tail}"

    def _next_link(self, call: Call, **changes: Any) -> str:
        args = MultiDict(call.args)
        for key, value in changes.items():
            args.setlist(key, [str(value)])
        query = urllib.parse.urlencode(list(args.items(multi=True)), safe="$,'()=:/ ")
        return f"{call.base_url}{call.path}?{query.replace(' ', '%20')}"

    @staticmethod
    def _body(ctx: Ctx) -> Any:
        if ctx.call.body_error:
            raise ApiError(400, "BadRequest", ctx.call.body_error)
        return ctx.call.body

    @staticmethod
    def _check_if_match(ctx: Ctx, contact: Contact) -> None:
        header = ctx.call.headers.get("If-Match")
        if header is None:
            return
        value = header.strip()
        if value == "*":
            return
        if value.startswith("W/"):
            value = value[2:]
        value = value.strip().strip('"')
        if value != contact.change_key:
            raise ApiError(
                412,
                "ErrorIrresolvableConflict",
                "The send or update operation could not be performed because the change key "
                "passed in the request does not match the current change key for the item.",
            )

    # ------------------------------------------------------------------ folders

    def _folder_page(self, ctx: Ctx, folders: list[Folder], tail: str) -> Reply:
        args = ctx.call.args
        Q.check_options(args, frozenset({"$top", "$skip", "$select", "$filter"}))
        top = Q.parse_int(args, "$top", Q.DEFAULT_TOP)
        if not 1 <= top <= Q.MAX_TOP:
            raise Q.bad_request(f"The value of $top must be between 1 and {Q.MAX_TOP}; got {top}.")
        skip = Q.parse_int(args, "$skip", 0)
        raw_filter = args.get("$filter")
        if raw_filter is not None:
            wanted = _display_name_filter(raw_filter)
            folders = [f for f in folders if f.name.lower() == wanted.lower()]
        select = _folder_select(args.get("$select"))
        page = folders[skip : skip + top]
        value = []
        for folder in page:
            item = self.state.render_folder(folder)
            if select is not None:
                item = {k: v for k, v in item.items() if k == "id" or k in select}
            value.append(item)
        body: dict[str, Any] = {"@odata.context": self._context_url(ctx, tail), "value": value}
        if skip + top < len(folders):
            body["@odata.nextLink"] = self._next_link(ctx.call, **{"$skip": skip + top})
        return Reply(200, body)

    def _folder_reply(self, ctx: Ctx, folder: Folder, status: int = 200) -> Reply:
        body = {
            "@odata.context": self._context_url(ctx, "/contactFolders/$entity"),
            **self.state.render_folder(folder),
        }
        return Reply(status, body)

    def _new_folder(self, ctx: Ctx, parent: Folder) -> Reply:
        body = self._body(ctx)
        if not isinstance(body, dict):
            raise F.bad_body("The request body must be a JSON object (a contactFolder).")
        for key in body:
            if key not in ("displayName", "parentFolderId", "id") and not key.startswith("@odata."):
                raise F.bad_body(
                    f"The property '{key}' does not exist on type 'microsoft.graph.contactFolder'."
                )
        folder = self.state.create_folder(parent, body.get("displayName"))
        return self._folder_reply(ctx, folder, 201)

    def op_list_folders(self, ctx: Ctx) -> Reply:
        self._require_owner(ctx)
        children = list(ctx.box.default_folder.children.values())
        return self._folder_page(ctx, children, "/contactFolders")

    def op_create_folder(self, ctx: Ctx) -> Reply:
        self._require_owner(ctx)
        return self._new_folder(ctx, ctx.box.default_folder)

    def op_get_folder(self, ctx: Ctx, folder_id: str) -> Reply:
        Q.check_options(ctx.call.args, frozenset({"$select"}))
        reply = self._folder_reply(ctx, self._folder(ctx, folder_id))
        select = _folder_select(ctx.call.args.get("$select"))
        if select is not None:
            reply.body = {k: v for k, v in reply.body.items() if k in select or k[0] in "@i"}
        return reply

    def op_update_folder(self, ctx: Ctx, folder_id: str) -> Reply:
        self._require_owner(ctx)
        folder = self._folder(ctx, folder_id, write=True)
        body = self._body(ctx)
        if not isinstance(body, dict):
            raise F.bad_body("The request body must be a JSON object (a contactFolder).")
        for key in body:
            if key != "displayName" and not key.startswith("@odata."):
                raise F.bad_body(f"The property '{key}' cannot be changed on a contactFolder.")
        if "displayName" in body:
            self.state.rename_folder(folder, body["displayName"])
        return self._folder_reply(ctx, folder)

    def op_delete_folder(self, ctx: Ctx, folder_id: str) -> Reply:
        self._require_owner(ctx)
        self.state.delete_folder(self._folder(ctx, folder_id, write=True))
        return Reply(204)

    def op_list_child_folders(self, ctx: Ctx, folder_id: str) -> Reply:
        self._require_owner(ctx)
        folder = self._folder(ctx, folder_id)
        tail = f"/contactFolders('{folder.id}')/childFolders"
        return self._folder_page(ctx, list(folder.children.values()), tail)

    def op_create_child_folder(self, ctx: Ctx, folder_id: str) -> Reply:
        self._require_owner(ctx)
        return self._new_folder(ctx, self._folder(ctx, folder_id, write=True))

    # ------------------------------------------------------------------ contacts

    def op_list_contacts(self, ctx: Ctx, folder_id: str | None = None) -> Reply:
        folder = self._folder(ctx, folder_id)
        q = Q.parse_list(ctx.call.args)
        if q.filter is None:
            chosen = list(islice(folder.contacts.values(), q.skip, q.skip + q.top + 1))
        else:
            if q.filter[0] == "email":
                found = self.state.with_email(ctx.box, q.filter[1])
            else:
                found = self.state.with_extended(ctx.box, q.filter[1], q.filter[2])
            matches = sorted(
                (c for cid in found if (c := folder.contacts.get(cid)) is not None),
                key=lambda c: c.counter,
            )
            chosen = matches[q.skip : q.skip + q.top + 1]
        more = len(chosen) > q.top
        value = [self.state.render_contact(c, q.select, q.expand) for c in chosen[: q.top]]
        tail = "/contacts" if folder_id is None else f"/contactFolders('{folder.id}')/contacts"
        body: dict[str, Any] = {"@odata.context": self._context_url(ctx, tail), "value": value}
        if more:
            body["@odata.nextLink"] = self._next_link(ctx.call, **{"$skip": q.skip + q.top})
        return Reply(200, body)

    def _contact_reply(
        self, ctx: Ctx, contact: Contact, status: int = 200, q: Q.Query | None = None
    ) -> Reply:
        body = {
            "@odata.context": self._context_url(ctx, "/contacts/$entity"),
            **self.state.render_contact(contact, q.select if q else None, q.expand if q else None),
        }
        return Reply(status, body)

    def op_get_contact(self, ctx: Ctx, contact_id: str, folder_id: str | None = None) -> Reply:
        q = Q.parse_get(ctx.call.args)
        return self._contact_reply(ctx, self._contact(ctx, contact_id, folder_id), q=q)

    def op_create_contact(self, ctx: Ctx, folder_id: str | None = None) -> Reply:
        folder = self._folder(ctx, folder_id, write=True)
        props, extended = F.parse_write(self._body(ctx), self.state.storage)
        contact = self.state.create_contact(folder, props, extended)
        return self._contact_reply(ctx, contact, 201)

    def op_update_contact(self, ctx: Ctx, contact_id: str, folder_id: str | None = None) -> Reply:
        contact = self._contact(ctx, contact_id, folder_id, write=True)
        self._check_if_match(ctx, contact)
        props, extended = F.parse_write(self._body(ctx), self.state.storage)
        self.state.update_contact(contact, props, extended)
        return self._contact_reply(ctx, contact)

    def op_delete_contact(self, ctx: Ctx, contact_id: str, folder_id: str | None = None) -> Reply:
        contact = self._contact(ctx, contact_id, folder_id, write=True)
        self._check_if_match(ctx, contact)
        self.state.delete_contact(contact)
        return Reply(204)

    # ------------------------------------------------------------------ delta

    def op_delta(self, ctx: Ctx, folder_id: str) -> Reply:
        folder = self._folder(ctx, folder_id)
        args = ctx.call.args
        Q.check_options(args, frozenset({"$select", "$skiptoken", "$deltatoken"}))
        size, requested = _max_page_size(ctx.call.headers.get("Prefer"))
        store = self.delta_store
        if args.get("$skiptoken") is not None:
            entry = store.lookup(args["$skiptoken"], folder)
            if not isinstance(entry, PageToken):
                raise _bad_token()
            rnd, pos = entry.round, entry.pos
        elif args.get("$deltatoken") is not None:
            cursor = store.lookup(args["$deltatoken"], folder)
            if not isinstance(cursor, DeltaToken):
                raise _bad_token()
            rnd, pos = store.start(folder, cursor.select, cursor.since), 0
        else:
            rnd, pos = store.start(folder, Q.parse_select(args.get("$select"))), 0
        items, skip, delta = store.page(self.state, folder, rnd, pos, size)
        base = f"{ctx.call.base_url}{ctx.call.path}"
        body: dict[str, Any] = {
            "@odata.context": f"{ctx.call.base_url}{API}/$metadata#Collection(contact)",
            "value": items,
        }
        if skip is not None:
            body["@odata.nextLink"] = f"{base}?$skiptoken={skip}"
        else:
            body["@odata.deltaLink"] = f"{base}?$deltatoken={delta}"
        headers = {"Preference-Applied": f"odata.maxpagesize={size}"} if requested else {}
        return Reply(200, body, headers)

    # ------------------------------------------------------------------ $batch

    def batch(self, request: Request) -> Response:
        call = self.call_from_request(request)
        try:
            grant = self.authenticate(call)
            requests = self._batch_requests(call)
        except ApiError as exc:
            return self.to_response(self.error_reply(exc, call), call)
        # Graph's throttling page, "Outlook service limits for JSON batching": requests without
        # dependsOn go to Outlook up to four at a time and run in parallel; with dependsOn, one
        # at a time in the given order (see throttle.py).
        if any(item.get("dependsOn") for item in requests):
            replies = self._run_in_order(call, grant, requests)
        else:
            width = min(self.limiter.settings["batch_parallelism"], len(requests))
            with ThreadPoolExecutor(width, thread_name_prefix="graph-batch-inner") as pool:
                replies = list(pool.map(lambda item: self._inner(call, grant, item), requests))
        responses = []
        for item, reply in zip(requests, replies, strict=True):
            entry: dict[str, Any] = {"id": item["id"], "status": reply.status}
            headers = dict(reply.headers)
            if reply.body is not None and reply.status != 204:
                headers.setdefault("Content-Type", JSON_TYPE)
            entry["headers"] = headers
            if reply.body is not None and reply.status != 204:
                entry["body"] = reply.body
            responses.append(entry)
        return self.to_response(Reply(200, {"responses": responses}), call)

    def _run_in_order(
        self, call: Call, grant: tokens.Grant, requests: list[dict[str, Any]]
    ) -> list[Reply]:
        """One request at a time; one whose dependency did not succeed is not run (424)."""
        statuses: dict[str, int] = {}
        replies = []
        for item in requests:
            failed = [d for d in item.get("dependsOn", ()) if not 200 <= statuses[d] < 300]
            if failed:
                reply = self.error_reply(
                    ApiError(
                        424,
                        "FailedDependency",
                        f"The request depends on request(s) {', '.join(failed)}, which failed.",
                    ),
                    call,
                )
            else:
                reply = self._inner(call, grant, item)
            statuses[item["id"].lower()] = reply.status
            replies.append(reply)
        return replies

    def _batch_requests(self, call: Call) -> list[dict[str, Any]]:
        if call.body_error:
            raise ApiError(400, "BadRequest", call.body_error)
        body = call.body
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            raise ApiError(400, "BadRequest", "Invalid batch payload format: expected 'requests'.")
        requests = body["requests"]
        if not requests:
            raise ApiError(400, "BadRequest", "The batch request contains no requests.")
        if len(requests) > MAX_BATCH:
            raise ApiError(
                400,
                "BadRequest",
                f"The batch contains {len(requests)} requests; at most {MAX_BATCH} are allowed.",
            )
        seen: set[str] = set()
        for item in requests:
            if not isinstance(item, dict):
                raise ApiError(400, "BadRequest", "Each batch request must be an object.")
            rid, method, url = item.get("id"), item.get("method"), item.get("url")
            if not isinstance(rid, str) or not rid:
                raise ApiError(400, "BadRequest", "Each batch request needs a string 'id'.")
            if rid.lower() in seen:
                raise ApiError(400, "BadRequest", f"The batch request id '{rid}' is not unique.")
            if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
                raise ApiError(400, "BadRequest", f"Request '{rid}': invalid method {method!r}.")
            if not isinstance(url, str) or not url:
                raise ApiError(400, "BadRequest", f"Request '{rid}': 'url' is required.")
            headers = item.get("headers", {})
            if not isinstance(headers, dict):
                raise ApiError(400, "BadRequest", f"Request '{rid}': 'headers' must be an object.")
            if "body" in item:
                if not isinstance(item["body"], dict | list):
                    raise ApiError(
                        400, "BadRequest", f"Request '{rid}': the sandbox takes JSON bodies only."
                    )
                if not any(k.lower() == "content-type" for k in headers):
                    raise ApiError(
                        400,
                        "BadRequest",
                        f"Request '{rid}': a Content-Type header is required with a body.",
                    )
            depends = item.get("dependsOn", [])
            if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
                raise ApiError(400, "BadRequest", f"Request '{rid}': 'dependsOn' is a list of ids.")
            missing = [d for d in depends if d.lower() not in seen]
            if missing:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"Request '{rid}' depends on unknown or later request(s): "
                    f"{', '.join(missing)}.",
                )
            item["dependsOn"] = [d.lower() for d in depends]
            seen.add(rid.lower())
        return requests

    def _inner(self, outer: Call, grant: tokens.Grant, item: dict[str, Any]) -> Reply:
        url = item["url"]
        parts = urllib.parse.urlsplit(url)
        method = item["method"].upper()
        call = Call(
            method=method,
            path=API
            + ("" if parts.path.startswith("/") else "/")
            + urllib.parse.unquote(parts.path),
            args=MultiDict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)),
            headers=Headers(item.get("headers") or {}),
            body=item.get("body"),
            base_url=outer.base_url,
        )
        call.headers["Authorization"] = outer.headers.get("Authorization", "")
        if parts.scheme or parts.netloc:
            return self.error_reply(
                ApiError(400, "BadRequest", "Batch request URLs must be relative."), call
            )
        try:
            rule, values = self._inner_routes.match(call.path, method=method, return_rule=True)
        except MethodNotAllowed:
            return self.error_reply(
                ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {call.path}"), call
            )
        except NotFound:
            return self.error_reply(ApiError(404, "NotFound", f"no route for {call.path}"), call)
        key = self._throttle_key(call.headers.get("Authorization"), values)
        if key is None:
            return self.run(call, rule.endpoint.op, values)
        if not self.limiter.enter(key):
            return self.error_reply(self.limiter.concurrency_error(), call)
        try:
            wait = self.limiter.spend(key)
            if wait is not None:
                return self.error_reply(budget_error(wait), call)
            self.limiter.serve()
            return self.run(call, rule.endpoint.op, values)
        finally:
            self.limiter.leave(key)


# ---------------------------------------------------------------------- helpers


def error_body(code: str, message: str, request_id: str, client_request_id: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": _now_http(),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }


def _folder_select(raw: str | None) -> set[str] | None:
    if raw is None:
        return None
    select = {n.strip() for n in raw.split(",") if n.strip()}
    unknown = select - {"id", "displayName", "parentFolderId"}
    if unknown:
        raise ApiError(
            400,
            "RequestBroker--ParseUri",
            f"Could not find a property named '{sorted(unknown)[0]}' on type "
            "'microsoft.graph.contactFolder'.",
        )
    return select


def _bad_token() -> ApiError:
    return ApiError(400, "BadRequest", "The token does not belong to this kind of link.")


def _max_page_size(prefer: str | None) -> tuple[int, bool]:
    """`Prefer: odata.maxpagesize=N` (1..200; more is capped at 200), else the default."""
    if prefer:
        for part in prefer.split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == "odata.maxpagesize":
                try:
                    size = int(value.strip().strip('"'))
                except ValueError:
                    continue
                if size >= 1:
                    return min(size, MAX_PAGE_SIZE), True
    return DEFAULT_PAGE_SIZE, False


_DISPLAY_NAME_FILTER = re.compile(r"^\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)


def _display_name_filter(raw: str) -> str:
    match = _DISPLAY_NAME_FILTER.match(raw)
    if match is None:
        raise ApiError(
            400,
            "ErrorInvalidUrlQueryFilter",
            "The sandbox supports only $filter=displayName eq '...' on contact folders.",
        )
    return match.group(1).replace("''", "'")
