"""The Pipeliner emulator's control API (`/_sandbox/pipeliner/...`): what tests and seeding use
to see and change the space from outside, and to switch the emulator's behaviour.

People at work (`users/{id}/contacts/...`: create, edit, delete, restore, hand over, share as
that user, which sets `modified_by_user`), a contact as stored, delete protection, users, units,
roles and accounts as an administrator adds them, bulk contacts, the rate limit, the settings
and the clock. The routes and their bodies are in sandbox/README.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..jsonbody import read_object
from ..jsonvalues import is_number
from ..server import ApiError, Emulator
from . import relations, seeding, writes
from .render import render
from .settings import check_rate_limit
from .space import Row, Space
from .timefmt import format_us, iso

if TYPE_CHECKING:
    from .emulator import PipelinerEmulator

CONTROL = "/_sandbox/pipeliner"


class PipelinerControl:
    """The control routes of one `PipelinerEmulator`, over its space."""

    def __init__(self, emulator: PipelinerEmulator) -> None:
        self.emulator = emulator

    @property
    def space(self) -> Space:
        """The emulator's space now (a seed or a reset replaces it)."""
        return self.emulator.space

    def rules(self) -> list[Rule]:
        c, u = CONTROL, f"{CONTROL}/users/<user_id>/contacts"
        return [
            Rule(f"{c}/contacts/<contact_id>", endpoint=self.raw_contact, methods=["GET"]),
            Rule(
                f"{c}/contacts/<contact_id>/delete-protection",
                endpoint=self.delete_protection,
                methods=["POST"],
            ),
            Rule(u, endpoint=self.user_create, methods=["POST"]),
            Rule(f"{u}/<contact_id>", endpoint=self.user_edit, methods=["PATCH"]),
            Rule(f"{u}/<contact_id>", endpoint=self.user_delete, methods=["DELETE"]),
            Rule(f"{u}/<contact_id>/restore", endpoint=self.user_restore, methods=["POST"]),
            Rule(f"{u}/<contact_id>/owner", endpoint=self.user_owner, methods=["POST"]),
            Rule(f"{u}/<contact_id>/share", endpoint=self.user_share, methods=["POST"]),
            Rule(f"{u}/<contact_id>/unshare", endpoint=self.user_unshare, methods=["POST"]),
            *(
                Rule(f"{c}/{kind}", endpoint=self._create_identity(kind), methods=["POST"])
                for kind in seeding.IDENTITY_KINDS
            ),
            *(
                Rule(f"{c}/{kind}/<rid>", endpoint=self._edit_identity(kind), methods=["PATCH"])
                for kind in seeding.EDITABLE_IDENTITIES
            ),
            Rule(f"{c}/generate", endpoint=self.generate, methods=["POST"]),
            Rule(f"{c}/rate-limit", endpoint=self.get_rate_limit, methods=["GET"]),
            Rule(f"{c}/rate-limit", endpoint=self.set_rate_limit, methods=["POST"]),
            Rule(f"{c}/settings", endpoint=self.get_settings, methods=["GET"]),
            Rule(f"{c}/settings", endpoint=self.set_settings, methods=["POST"]),
            Rule(f"{c}/clock", endpoint=self.get_clock, methods=["GET"]),
            Rule(f"{c}/clock", endpoint=self.advance_clock, methods=["POST"]),
        ]

    def _actor(self, user_id: str) -> str:
        row = self.space.rows("Client").get(user_id)
        if row is None or row.get("is_deleted"):
            raise ApiError(404, "NotFound", f"no Pipeliner user {user_id}")
        return user_id

    def _contact_view(self, request: Request, row: Row, status: int = 200) -> Response:
        return Emulator.json_response(
            render(self.space, "Contact", row, self.emulator.entities_url(request)), status
        )

    def raw_contact(self, request: Request, contact_id: str) -> Response:
        with self.emulator.lock:
            row = self.space.rows("Contact").get(contact_id)
            if row is None:
                raise ApiError(404, "NotFound", f"no contact {contact_id}")
            return Emulator.json_response(seeding.dump_contact(self.space, row))

    def delete_protection(self, request: Request, contact_id: str) -> Response:
        body = read_object(request)
        flag = body.get("is_delete_protected", True)
        if not isinstance(flag, bool):
            raise ValueError("is_delete_protected must be true or false")
        with self.emulator.lock:
            row = self.space.get("Contact", contact_id, include_deleted=True)
            if bool(row.get("is_delete_protected")) != flag:
                row["is_delete_protected"] = flag
                self.space.bump("Contact", row)
            return self._contact_view(request, row)

    def user_create(self, request: Request, user_id: str) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            actor = self._actor(user_id)
            body.setdefault("owner_id", actor)
            row = writes.plan_contact_create(self.space, body, actor=actor)()
            return self._contact_view(request, row, 201)

    def user_edit(self, request: Request, user_id: str, contact_id: str) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            actor = self._actor(user_id)
            row = writes.plan_contact_update(self.space, contact_id, body, actor=actor)()
            return self._contact_view(request, row)

    def user_delete(self, request: Request, user_id: str, contact_id: str) -> Response:
        with self.emulator.lock:
            actor = self._actor(user_id)
            row = writes.plan_contact_delete(self.space, contact_id, actor=actor)()
            return self._contact_view(request, row)

    def user_restore(self, request: Request, user_id: str, contact_id: str) -> Response:
        with self.emulator.lock:
            actor = self._actor(user_id)
            row = writes.plan_contact_restore(self.space, contact_id, actor=actor)()
            return self._contact_view(request, row)

    def user_owner(self, request: Request, user_id: str, contact_id: str) -> Response:
        body = read_object(request)
        if set(body) - {"owner_id", "unit_id"} or "owner_id" not in body:
            raise ValueError('the body is {"owner_id": <user id>} (optionally "unit_id")')
        with self.emulator.lock:
            actor = self._actor(user_id)
            row = writes.plan_contact_update(self.space, contact_id, body, actor=actor)()
            return self._contact_view(request, row)

    def user_share(self, request: Request, user_id: str, contact_id: str) -> Response:
        body = read_object(request)
        field, key = self._share_target(body, {"role"})
        role = body.get("role", 2)
        with self.emulator.lock:
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

    def user_unshare(self, request: Request, user_id: str, contact_id: str) -> Response:
        body = read_object(request)
        field, key = self._share_target(body, set())
        with self.emulator.lock:
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

    def _create_identity(self, kind: str) -> Callable[..., Response]:
        type_name = seeding.IDENTITY_KINDS[kind][0]

        def create(request: Request) -> Response:
            body = read_object(request)
            with self.emulator.lock:
                row = seeding.add_identity(self.space, kind, body)
                data = render(self.space, type_name, row, self.emulator.entities_url(request))
                return Emulator.json_response(data, 201)

        create.__name__ = f"create_{kind}"
        return create

    def _edit_identity(self, kind: str) -> Callable[..., Response]:
        type_name = seeding.EDITABLE_IDENTITIES[kind]

        def edit(request: Request, rid: str) -> Response:
            body = read_object(request)
            with self.emulator.lock:
                try:
                    row = seeding.update_identity(self.space, kind, rid, body)
                except LookupError as exc:
                    raise ApiError(404, "NotFound", str(exc)) from None
                return Emulator.json_response(
                    render(self.space, type_name, row, self.emulator.entities_url(request))
                )

        edit.__name__ = f"edit_{kind}"
        return edit

    def generate(self, request: Request) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            started = time.perf_counter()
            result = seeding.generate(self.space, body)
            result["seconds"] = round(time.perf_counter() - started, 3)
            return Emulator.json_response(result, 201)

    def get_rate_limit(self, request: Request) -> Response:
        with self.emulator.lock:
            return Emulator.json_response({"rate_limit": self.space.settings["rate_limit"]})

    def set_rate_limit(self, request: Request) -> Response:
        limit = check_rate_limit(Emulator.read_json(request))
        with self.emulator.lock:
            self.space.settings["rate_limit"] = limit
            self.emulator.restart_rate_window()
            return Emulator.json_response({"rate_limit": limit})

    def get_settings(self, request: Request) -> Response:
        with self.emulator.lock:
            return Emulator.json_response(dict(self.space.settings))

    def set_settings(self, request: Request) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            settings = self.space.update_settings(body)
            self.emulator.restart_rate_window()
            return Emulator.json_response(settings)

    def get_clock(self, request: Request) -> Response:
        with self.emulator.lock:
            return Emulator.json_response(self._clock_view())

    def advance_clock(self, request: Request) -> Response:
        body = read_object(request)
        seconds = body.get("advance_seconds")
        if (
            set(body) != {"advance_seconds"}
            or not is_number(seconds)
            or not 0 <= seconds <= 10 * 365 * 86_400
        ):
            raise ValueError('the body is {"advance_seconds": <seconds, >= 0>}')
        with self.emulator.lock:
            self.space.clock.advance(seconds)
            return Emulator.json_response(self._clock_view())

    def _clock_view(self) -> dict[str, Any]:
        now = self.space.clock.peek()
        return {
            "now": iso(now),
            "now_api": format_us(now, self.space.settings["timestamp_format"]),
            "offset_seconds": self.space.clock.offset_us / 1_000_000,
            "revision": self.space.revision,
        }
