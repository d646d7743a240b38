"""The Pipeliner API v100 emulator: routes, authentication and the rate limit.

Routes (all under `/api/v100/rest/spaces/{space_id}/entities`, HTTP Basic with an application
key of the space) are exactly the paths of the vendor's pruned OpenAPI document, plus
`GET /SalesUnits` (outside the pruned spec; the unit tree only). See sandbox/README.md for the
behaviour and the error table. The control API (`/_sandbox/pipeliner/...`) lives in `control.py`.
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

from ..seed import default_seed
from ..server import Emulator
from . import relations, seeding, writes
from .control import PipelinerControl
from .errors import PipelinerError, error_body, invalid
from .params import bool_arg, parse_expand, parse_load_only
from .render import list_body, render
from .space import Row, Space
from .writes import Plan

API_PREFIX = "/api/v100/rest/spaces/<space_id>/entities"
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

    def control_rules(self) -> Iterable[Rule]:
        return PipelinerControl(self).rules()

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

    def restart_rate_window(self) -> None:
        """Forget the requests counted so far (after the rate limit or the settings change)."""
        self._window.clear()

    def entities_url(self, request: Request) -> str:
        """The base of entity URIs in answers: `{host}/api/v100/rest/spaces/{id}/entities`."""
        return f"{request.host_url.rstrip('/')}/api/v100/rest/spaces/{self.space.space_id}/entities"

    def _one(self, request: Request, type_name: str, row: Row, status: int = 200) -> Response:
        body = {
            "success": True,
            "data": render(self.space, type_name, row, self.entities_url(request)),
        }
        return self.json_response(body, status)

    def _deleted(self, rid: str) -> Response:
        return self.json_response({"success": True, "data": rid})

    # ------------------------------------------------------------------ generic reads

    def _lister(self, type_name: str) -> Callable[..., Response]:
        def list_entities(request: Request) -> Response:
            body = list_body(self.space, type_name, request.args, self.entities_url(request))
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
            data = render(space, type_name, row, self.entities_url(request), expand, load_only)
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
