"""The Pipeliner API v100 emulator: routes, authentication, rate limit and control API.

Routes (all under `/api/v100/rest/spaces/{space_id}/entities`, HTTP Basic with an application
key of the space) are exactly the paths of the vendor's pruned OpenAPI document, plus
`GET /SalesUnits` (outside the pruned spec; the unit tree only). See sandbox/README.md for the
behaviour, the error table and the control API.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..jsonbody import read_object
from ..jsonvalues import is_number
from ..seed import default_seed
from ..server import ApiError, Emulator
from . import relations, seeding, writes
from .errors import PipelinerError, error_body, invalid
from .params import bool_arg, parse_expand, parse_load_only
from .render import list_body, render
from .settings import check_rate_limit
from .space import Row, Space
from .timefmt import format_us, iso
from .writes import Plan

API_PREFIX = "/api/v100/rest/spaces/<space_id>/entities"
CONTROL = "/_sandbox/pipeliner"
AUTH_REALM = 'Basic realm="restapi"'


def _validation_level(request: Request) -> int:
    raw = request.args.get("validation-level")
    if raw in (None, ""):
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"[validation-level] must be an integer, got {raw!r}") from None
    if value < 0:
        raise invalid("[validation-level] must be >= 0")
    return value


def _rollback_method(request: Request) -> int:
    raw = request.args.get("rollback-method")
    if raw in (None, ""):
        return 0
    if raw not in ("0", "1"):
        raise invalid(
            f"[rollback-method] must be 0 (roll back all) or 1 (only failed), got {raw!r}"
        )
    return int(raw)


class PipelinerEmulator(Emulator):
    """Pipeliner CRM API v100 (contacts and what a contact sync needs around them)."""

    name = "pipeliner"

    def __init__(self) -> None:
        self.space = Space()
        self._window: deque[float] = deque()
        super().__init__()

    # ------------------------------------------------------------------ framework hooks

    def default_seed(self) -> Any:
        return default_seed()["pipeliner"]

    def seed(self, data: Any) -> None:
        self.space = seeding.load(data)
        self._window.clear()

    def snapshot(self) -> Any:
        return seeding.dump(self.space)

    def info(self, base_url: str) -> dict[str, Any]:
        key = self.space.app_keys[0]
        return {
            "pipeliner_url": base_url,
            "pipeliner_space_id": self.space.space_id,
            "pipeliner_api_username": key["api_username"],
            "pipeliner_api_password": key["api_password"],
        }

    def error_response(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        return self.json_response(error_body(status, code, message), status, headers)

    # ------------------------------------------------------------------ routes

    def rules(self) -> Iterable[Rule]:
        def rule(path: str, handler: Callable[..., Response], method: str) -> Rule:
            return Rule(API_PREFIX + path, endpoint=self._endpoint(handler), methods=[method])

        lister, getter = self._lister, self._getter
        return [
            rule("/Contacts", lister("Contact"), "GET"),
            rule("/Contacts", self.create_contact, "POST"),
            rule("/Contacts/batch-modify", self.batch_modify, "POST"),
            rule("/Contacts/batch-delete", self.batch_delete, "POST"),
            rule("/Contacts/batch-restore", self.batch_restore, "POST"),
            rule("/Contacts/<id>", getter("Contact"), "GET"),
            rule("/Contacts/<id>", self.update_contact, "PATCH"),
            rule("/Contacts/<id>", self.delete_contact, "DELETE"),
            rule("/ContactSharingClientRelations", lister("ContactSharingClientRelation"), "GET"),
            rule("/ContactSharingClientRelations", self.create_sharing_client, "POST"),
            rule(
                "/ContactSharingClientRelations/<id>", getter("ContactSharingClientRelation"), "GET"
            ),
            rule("/ContactSharingClientRelations/<id>", self.update_sharing_client, "PATCH"),
            rule("/ContactSharingClientRelations/<id>", self.delete_sharing_client, "DELETE"),
            rule(
                "/ContactSharingSalesUnitRelations",
                lister("ContactSharingSalesUnitRelation"),
                "GET",
            ),
            rule("/ContactSharingSalesUnitRelations", self.create_sharing_unit, "POST"),
            rule("/ContactAccountRelations", lister("ContactAccountRelation"), "GET"),
            rule("/ContactAccountRelations", self.create_account_relation, "POST"),
            rule("/Accounts", lister("Account"), "GET"),
            rule("/Accounts", self.create_account, "POST"),
            rule("/Accounts/<id>", getter("Account"), "GET"),
            rule("/Clients", lister("Client"), "GET"),
            rule("/Clients", self.create_client, "POST"),
            rule("/Clients/<id>", getter("Client"), "GET"),
            rule("/Clients/<id>", self.update_client, "PATCH"),
            rule("/Clients/<id>", self.delete_client, "DELETE"),
            rule("/MasterRights/<id>", getter("MasterRight"), "GET"),
            rule("/SalesUnits", lister("SalesUnit"), "GET"),  # outside the pruned spec
        ]

    def _endpoint(self, handler: Callable[..., Response]) -> Callable[..., Response]:
        """Authenticate, rate-limit, then call `handler(request, **values)`."""

        def endpoint(request: Request, space_id: str, **values: Any) -> Response:
            self._authenticate(request, space_id)
            self._throttle()
            writes.purge_deleted(self.space)
            return handler(request, **values)

        endpoint.__name__ = getattr(handler, "__name__", "endpoint")
        return endpoint

    def _authenticate(self, request: Request, space_id: str) -> None:
        challenge = {"WWW-Authenticate": AUTH_REALM}
        auth = request.authorization
        if auth is None or auth.type.lower() != "basic":
            raise PipelinerError(
                "ERROR_UNAUTHORIZED", "HTTP Basic authentication required", headers=challenge
            )
        if space_id != self.space.space_id:
            raise PipelinerError("ERROR_SPACE_NOT_FOUND", f"Space {space_id} not found")
        username = (auth.username or "").encode("utf-8")
        password = (auth.password or "").encode("utf-8")
        for key in self.space.app_keys:
            if hmac.compare_digest(
                key["api_username"].encode("utf-8"), username
            ) and hmac.compare_digest(key["api_password"].encode("utf-8"), password):
                return
        raise PipelinerError(
            "ERROR_UNAUTHORIZED", "invalid application key for this space", headers=challenge
        )

    def _throttle(self) -> None:
        limit = self.space.settings["rate_limit"]
        if not limit:
            return
        now, window = time.monotonic(), float(limit["per_seconds"])
        while self._window and self._window[0] <= now - window:
            self._window.popleft()
        if len(self._window) >= limit["requests"]:
            retry = max(1, math.ceil(self._window[0] + window - now))
            raise PipelinerError(
                "ERROR_TOO_MANY_REQUESTS",
                f"rate limit exceeded ({limit['requests']} requests per {window:g} s)",
                headers={"Retry-After": str(retry)},
            )
        self._window.append(now)

    def _base(self, request: Request) -> str:
        return f"{request.host_url.rstrip('/')}/api/v100/rest/spaces/{self.space.space_id}/entities"

    def _one(self, request: Request, type_name: str, row: Row, status: int = 200) -> Response:
        body = {"success": True, "data": render(self.space, type_name, row, self._base(request))}
        return self.json_response(body, status)

    def _deleted(self, rid: str) -> Response:
        return self.json_response({"success": True, "data": rid})

    # ------------------------------------------------------------------ generic reads

    def _lister(self, type_name: str) -> Callable[..., Response]:
        def list_entities(request: Request) -> Response:
            body = list_body(self.space, type_name, request.args, self._base(request))
            return self.json_response(body)

        list_entities.__name__ = f"list_{type_name}"
        return list_entities

    def _getter(self, type_name: str) -> Callable[..., Response]:
        def get_entity(request: Request, id: str) -> Response:
            space = self.space
            row = space.get(type_name, id, bool_arg(request.args, "include-deleted"))
            expand = parse_expand(space.types, type_name, request.args.get("expand"))
            load_only = parse_load_only(
                space.types, type_name, request.args.get("load-only"), expand
            )
            data = render(space, type_name, row, self._base(request), expand, load_only)
            return self.json_response({"success": True, "data": data})

        get_entity.__name__ = f"get_{type_name}"
        return get_entity

    # ------------------------------------------------------------------ contacts

    def create_contact(self, request: Request) -> Response:
        plan = writes.plan_contact_create(
            self.space, self.read_json(request), vl=_validation_level(request)
        )
        return self._one(request, "Contact", plan(), 201)

    def update_contact(self, request: Request, id: str) -> Response:
        plan = writes.plan_contact_update(
            self.space, id, self.read_json(request), vl=_validation_level(request)
        )
        return self._one(request, "Contact", plan())

    def delete_contact(self, request: Request, id: str) -> Response:
        _validation_level(request)
        writes.plan_contact_delete(self.space, id)()
        return self._deleted(id)

    def _batch_body(self, request: Request, item_type: type) -> list[Any]:
        body = self.read_json(request)
        if not isinstance(body, list):
            raise invalid("[body] expected an array")
        if not all(isinstance(item, item_type) for item in body):
            what = "objects" if item_type is dict else "id strings"
            raise invalid(f"[body] the array must hold {what}")
        limit = self.space.settings["batch_max_items"]
        if len(body) > limit:
            raise invalid(f"[body] at most {limit} items per batch request, got {len(body)}")
        return body

    def _run_batch(
        self, request: Request, items: list[Any], plan_item: Callable[[Any, int], Plan]
    ) -> Response:
        """rollback-method=0: all items or none (the first error answers the request);
        1: each item on its own, the answer lists ids and `Error` objects."""
        rollback = _rollback_method(request)
        if rollback == 0:
            plans = []
            for index, item in enumerate(items):
                try:
                    plans.append(plan_item(item, index))
                except PipelinerError as exc:
                    raise PipelinerError(
                        exc.code, f"[item {index}] {exc.message}", exc.status
                    ) from None
            return self.json_response({"success": True, "data": [plan()["id"] for plan in plans]})
        results: list[Any] = []
        for index, item in enumerate(items):
            try:
                results.append(plan_item(item, index)()["id"])
            except PipelinerError as exc:
                results.append(exc.body())
        return self.json_response({"success": True, "data": results})

    def batch_modify(self, request: Request) -> Response:
        vl = _validation_level(request)
        items = self._batch_body(request, dict)
        space = self.space

        def plan_item(item: dict[str, Any], index: int) -> Plan:
            if "id" in item:
                return writes.plan_contact_update(
                    space, item["id"], item, vl=vl, schema="batchContactInput"
                )
            return writes.plan_contact_create(space, item, vl=vl, schema="batchContactInput")

        return self._run_batch(request, items, plan_item)

    def batch_delete(self, request: Request) -> Response:
        _validation_level(request)
        items = self._batch_body(request, str)
        return self._run_batch(
            request, items, lambda rid, _i: writes.plan_contact_delete(self.space, rid)
        )

    def batch_restore(self, request: Request) -> Response:
        _validation_level(request)
        items = self._batch_body(request, str)
        return self._run_batch(
            request, items, lambda rid, _i: writes.plan_contact_restore(self.space, rid)
        )

    # ------------------------------------------------------------------ relations

    def create_sharing_client(self, request: Request) -> Response:
        row = relations.create_sharing_client(
            self.space, self.read_json(request), vl=_validation_level(request)
        )
        return self._one(request, "ContactSharingClientRelation", row, 201)

    def update_sharing_client(self, request: Request, id: str) -> Response:
        row = relations.update_sharing_client(
            self.space, id, self.read_json(request), vl=_validation_level(request)
        )
        return self._one(request, "ContactSharingClientRelation", row)

    def delete_sharing_client(self, request: Request, id: str) -> Response:
        _validation_level(request)
        relations.delete_relation(self.space, "sharing_clients", id)
        return self._deleted(id)

    def create_sharing_unit(self, request: Request) -> Response:
        row = relations.create_sharing_unit(
            self.space, self.read_json(request), vl=_validation_level(request)
        )
        return self._one(request, "ContactSharingSalesUnitRelation", row, 201)

    def create_account_relation(self, request: Request) -> Response:
        row = relations.create_account_relation(
            self.space, self.read_json(request), vl=_validation_level(request)
        )
        return self._one(request, "ContactAccountRelation", row, 201)

    # ------------------------------------------------------------------ accounts, clients

    def create_account(self, request: Request) -> Response:
        row = writes.create_account(
            self.space, self.read_json(request), vl=_validation_level(request)
        )
        return self._one(request, "Account", row, 201)

    def create_client(self, request: Request) -> Response:
        row = writes.create_client(
            self.space, self.read_json(request), vl=_validation_level(request)
        )
        return self._one(request, "Client", row, 201)

    def update_client(self, request: Request, id: str) -> Response:
        row = writes.update_client(
            self.space, id, self.read_json(request), vl=_validation_level(request)
        )
        return self._one(request, "Client", row)

    def delete_client(self, request: Request, id: str) -> Response:
        _validation_level(request)
        writes.delete_client(self.space, id)
        return self._deleted(id)

    # ------------------------------------------------------------------ control API

    def control_rules(self) -> Iterable[Rule]:
        c, u = CONTROL, f"{CONTROL}/users/<user_id>/contacts"
        return [
            Rule(f"{c}/contacts/<contact_id>", endpoint=self.c_raw_contact, methods=["GET"]),
            Rule(
                f"{c}/contacts/<contact_id>/delete-protection",
                endpoint=self.c_delete_protection,
                methods=["POST"],
            ),
            Rule(u, endpoint=self.c_user_create, methods=["POST"]),
            Rule(f"{u}/<contact_id>", endpoint=self.c_user_edit, methods=["PATCH"]),
            Rule(f"{u}/<contact_id>", endpoint=self.c_user_delete, methods=["DELETE"]),
            Rule(f"{u}/<contact_id>/restore", endpoint=self.c_user_restore, methods=["POST"]),
            Rule(f"{u}/<contact_id>/owner", endpoint=self.c_user_owner, methods=["POST"]),
            Rule(f"{u}/<contact_id>/share", endpoint=self.c_user_share, methods=["POST"]),
            Rule(f"{u}/<contact_id>/unshare", endpoint=self.c_user_unshare, methods=["POST"]),
            *(
                Rule(f"{c}/{kind}", endpoint=self._c_identity(kind), methods=["POST"])
                for kind in seeding.IDENTITY_KINDS
            ),
            *(
                Rule(f"{c}/{kind}/<rid>", endpoint=self._c_edit_identity(kind), methods=["PATCH"])
                for kind in seeding.EDITABLE_IDENTITIES
            ),
            Rule(f"{c}/generate", endpoint=self.c_generate, methods=["POST"]),
            Rule(f"{c}/rate-limit", endpoint=self.c_get_rate_limit, methods=["GET"]),
            Rule(f"{c}/rate-limit", endpoint=self.c_set_rate_limit, methods=["POST"]),
            Rule(f"{c}/settings", endpoint=self.c_get_settings, methods=["GET"]),
            Rule(f"{c}/settings", endpoint=self.c_set_settings, methods=["POST"]),
            Rule(f"{c}/clock", endpoint=self.c_get_clock, methods=["GET"]),
            Rule(f"{c}/clock", endpoint=self.c_advance_clock, methods=["POST"]),
        ]

    def _actor(self, user_id: str) -> str:
        row = self.space.rows("Client").get(user_id)
        if row is None or row.get("is_deleted"):
            raise ApiError(404, "NotFound", f"no Pipeliner user {user_id}")
        return user_id

    def _contact_view(self, request: Request, row: Row, status: int = 200) -> Response:
        return self.json_response(render(self.space, "Contact", row, self._base(request)), status)

    def c_raw_contact(self, request: Request, contact_id: str) -> Response:
        with self.lock:
            row = self.space.rows("Contact").get(contact_id)
            if row is None:
                raise ApiError(404, "NotFound", f"no contact {contact_id}")
            return self.json_response(seeding.dump_contact(self.space, row))

    def c_delete_protection(self, request: Request, contact_id: str) -> Response:
        body = read_object(request)
        flag = body.get("is_delete_protected", True)
        if not isinstance(flag, bool):
            raise ValueError("is_delete_protected must be true or false")
        with self.lock:
            row = self.space.get("Contact", contact_id, include_deleted=True)
            if bool(row.get("is_delete_protected")) != flag:
                row["is_delete_protected"] = flag
                self.space.bump("Contact", row)
            return self._contact_view(request, row)

    def c_user_create(self, request: Request, user_id: str) -> Response:
        body = read_object(request)
        with self.lock:
            actor = self._actor(user_id)
            body.setdefault("owner_id", actor)
            row = writes.plan_contact_create(self.space, body, actor=actor)()
            return self._contact_view(request, row, 201)

    def c_user_edit(self, request: Request, user_id: str, contact_id: str) -> Response:
        body = read_object(request)
        with self.lock:
            actor = self._actor(user_id)
            row = writes.plan_contact_update(self.space, contact_id, body, actor=actor)()
            return self._contact_view(request, row)

    def c_user_delete(self, request: Request, user_id: str, contact_id: str) -> Response:
        with self.lock:
            actor = self._actor(user_id)
            row = writes.plan_contact_delete(self.space, contact_id, actor=actor)()
            return self._contact_view(request, row)

    def c_user_restore(self, request: Request, user_id: str, contact_id: str) -> Response:
        with self.lock:
            actor = self._actor(user_id)
            row = writes.plan_contact_restore(self.space, contact_id, actor=actor)()
            return self._contact_view(request, row)

    def c_user_owner(self, request: Request, user_id: str, contact_id: str) -> Response:
        body = read_object(request)
        if set(body) - {"owner_id", "unit_id"} or "owner_id" not in body:
            raise ValueError('the body is {"owner_id": <user id>} (optionally "unit_id")')
        with self.lock:
            actor = self._actor(user_id)
            row = writes.plan_contact_update(self.space, contact_id, body, actor=actor)()
            return self._contact_view(request, row)

    def c_user_share(self, request: Request, user_id: str, contact_id: str) -> Response:
        body = read_object(request)
        field, key = self._share_target(body, {"role"})
        role = body.get("role", 2)
        with self.lock:
            actor = self._actor(user_id)
            space = self.space
            space.get("Contact", contact_id)
            existing = relations.find_relation(space, field, contact_id, body[key])
            data = {"contact_id": contact_id, key: body[key], "role": role}
            if existing is None:
                if field == "sharing_clients":
                    relations.create_sharing_client(space, data, actor=actor)
                else:
                    relations.create_sharing_unit(space, data, actor=actor)
            elif existing.get("role") != role:
                relations.set_relation_role(space, field, existing, role, actor=actor)
            return self._contact_view(request, space.get("Contact", contact_id))

    def c_user_unshare(self, request: Request, user_id: str, contact_id: str) -> Response:
        body = read_object(request)
        field, key = self._share_target(body, set())
        with self.lock:
            actor = self._actor(user_id)
            space = self.space
            space.get("Contact", contact_id)
            existing = relations.find_relation(space, field, contact_id, body[key])
            if existing is None:
                raise ApiError(
                    404, "NotFound", f"contact {contact_id} is not shared with {body[key]}"
                )
            relations.delete_relation(space, field, existing["id"], actor=actor)
            return self._contact_view(request, space.get("Contact", contact_id))

    @staticmethod
    def _share_target(body: Mapping[str, Any], extra: set[str]) -> tuple[str, str]:
        keys = set(body) & {"client_id", "unit_id"}
        if len(keys) != 1 or set(body) - {"client_id", "unit_id"} - extra:
            allowed = ", ".join(sorted({"client_id | unit_id", *extra}))
            raise ValueError(
                f"the body takes exactly one of client_id, unit_id (fields: {allowed})"
            )
        key = keys.pop()
        return ("sharing_clients", key) if key == "client_id" else ("sharing_units", key)

    def _c_identity(self, kind: str) -> Callable[..., Response]:
        type_name = seeding.IDENTITY_KINDS[kind][0]

        def create(request: Request) -> Response:
            body = read_object(request)
            with self.lock:
                row = seeding.add_identity(self.space, kind, body)
                data = render(self.space, type_name, row, self._base(request))
                return self.json_response(data, 201)

        create.__name__ = f"c_create_{kind}"
        return create

    def _c_edit_identity(self, kind: str) -> Callable[..., Response]:
        type_name = seeding.EDITABLE_IDENTITIES[kind]

        def edit(request: Request, rid: str) -> Response:
            body = read_object(request)
            with self.lock:
                try:
                    row = seeding.update_identity(self.space, kind, rid, body)
                except LookupError as exc:
                    raise ApiError(404, "NotFound", str(exc)) from None
                return self.json_response(render(self.space, type_name, row, self._base(request)))

        edit.__name__ = f"c_edit_{kind}"
        return edit

    def c_generate(self, request: Request) -> Response:
        body = read_object(request)
        with self.lock:
            started = time.perf_counter()
            result = seeding.generate(self.space, body)
            result["seconds"] = round(time.perf_counter() - started, 3)
            return self.json_response(result, 201)

    def c_get_rate_limit(self, request: Request) -> Response:
        with self.lock:
            return self.json_response({"rate_limit": self.space.settings["rate_limit"]})

    def c_set_rate_limit(self, request: Request) -> Response:
        limit = check_rate_limit(self.read_json(request))
        with self.lock:
            self.space.settings["rate_limit"] = limit
            self._window.clear()
            return self.json_response({"rate_limit": limit})

    def c_get_settings(self, request: Request) -> Response:
        with self.lock:
            return self.json_response(dict(self.space.settings))

    def c_set_settings(self, request: Request) -> Response:
        body = read_object(request)
        with self.lock:
            settings = self.space.update_settings(body)
            self._window.clear()
            return self.json_response(settings)

    def c_get_clock(self, request: Request) -> Response:
        with self.lock:
            return self.json_response(self._clock_view())

    def c_advance_clock(self, request: Request) -> Response:
        body = read_object(request)
        seconds = body.get("advance_seconds")
        if (
            set(body) != {"advance_seconds"}
            or not is_number(seconds)
            or not 0 <= seconds <= 10 * 365 * 86_400
        ):
            raise ValueError('the body is {"advance_seconds": <seconds, >= 0>}')
        with self.lock:
            self.space.clock.advance(seconds)
            return self.json_response(self._clock_view())

    def _clock_view(self) -> dict[str, Any]:
        now = self.space.clock.peek()
        return {
            "now": iso(now),
            "now_api": format_us(now, self.space.settings["timestamp_format"]),
            "offset_seconds": self.space.clock.offset_us / 1_000_000,
            "revision": self.space.revision,
        }
