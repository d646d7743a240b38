"""A trivial emulator that exists to prove the framework (routes, state, control API, faults).

It imitates no real service. Its API: `GET /echo/items`, `GET|PUT|DELETE /echo/items/{item_id}`;
its state is `{"items": {id: object}}`; it adds one control route, `POST /_sandbox/echo/clear`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .server import ApiError, Emulator


class EchoEmulator(Emulator):
    """A dict of JSON objects by id."""

    name = "echo"

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}
        super().__init__()

    def rules(self) -> Iterable[Rule]:
        return [
            Rule("/echo/items", endpoint=self.list_items, methods=["GET"]),
            Rule("/echo/items/<item_id>", endpoint=self.get_item, methods=["GET"]),
            Rule("/echo/items/<item_id>", endpoint=self.put_item, methods=["PUT"]),
            Rule("/echo/items/<item_id>", endpoint=self.delete_item, methods=["DELETE"]),
        ]

    def control_rules(self) -> Iterable[Rule]:
        return [Rule("/_sandbox/echo/clear", endpoint=self.clear, methods=["POST"])]

    def default_seed(self) -> Any:
        return {"items": {"1": {"id": "1", "name": "first item"}}}

    def seed(self, data: Any) -> None:
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, dict) or not all(isinstance(v, dict) for v in items.values()):
            raise ValueError('the echo seed is {"items": {"<id>": {...}, ...}}')
        self.items = copy.deepcopy(items)

    def snapshot(self) -> Any:
        return {"items": copy.deepcopy(self.items)}

    def info(self, base_url: str) -> dict[str, Any]:
        return {"echo_url": base_url}

    # ----------------------------------------------------------------- routes

    def list_items(self, request: Request) -> Response:
        return self.json_response({"value": [self.items[k] for k in sorted(self.items)]})

    def get_item(self, request: Request, item_id: str) -> Response:
        return self.json_response(self._item(item_id))

    def put_item(self, request: Request, item_id: str) -> Response:
        body = self.read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        created = item_id not in self.items
        self.items[item_id] = {**body, "id": item_id}
        return self.json_response(self.items[item_id], 201 if created else 200)

    def delete_item(self, request: Request, item_id: str) -> Response:
        self._item(item_id)
        del self.items[item_id]
        return Response(status=204)

    def clear(self, request: Request) -> Response:
        with self.lock:
            self.items.clear()
            return self.json_response(self.snapshot())

    def _item(self, item_id: str) -> Any:
        try:
            return self.items[item_id]
        except KeyError:
            raise ApiError(404, "NotFound", f"no item {item_id!r}") from None
