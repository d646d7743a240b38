"""The identity emulator's control API (`/_sandbox/identity/...`): what tests and `env` use to
sign people in and to break their sign-in on purpose.

Token and code lifetimes (settings), device codes (list, approve as a user, deny), refresh
tokens (list, revoke a user's), and expiring access tokens. The routes and their bodies are in
sandbox/README.md.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..jsonbody import read_object
from ..server import ApiError, Emulator
from ..tokens import REGISTRY
from . import model
from .model import IdentityState

if TYPE_CHECKING:
    from .emulator import IdentityEmulator

CONTROL = "/_sandbox/identity"


class IdentityControl:
    """The control routes of one `IdentityEmulator`, over its state."""

    def __init__(self, emulator: IdentityEmulator) -> None:
        self.emulator = emulator

    @property
    def state(self) -> IdentityState:
        """The emulator's state now (a seed or a reset replaces it)."""
        state = self.emulator.state
        assert state is not None
        return state

    def rules(self) -> list[Rule]:
        c = CONTROL
        return [
            Rule(f"{c}/settings", endpoint=self.get_settings, methods=["GET"]),
            Rule(f"{c}/settings", endpoint=self.set_settings, methods=["POST"]),
            Rule(f"{c}/device", endpoint=self.device_codes, methods=["GET"]),
            Rule(f"{c}/device/approve", endpoint=self.approve, methods=["POST"]),
            Rule(f"{c}/device/deny", endpoint=self.deny, methods=["POST"]),
            Rule(f"{c}/refresh-tokens", endpoint=self.refresh_tokens, methods=["GET"]),
            Rule(f"{c}/users/<upn>/revoke", endpoint=self.revoke_user, methods=["POST"]),
            Rule(f"{c}/expire-access-tokens", endpoint=self.expire_all, methods=["POST"]),
        ]

    def get_settings(self, request: Request) -> Response:
        with self.emulator.lock:
            return Emulator.json_response(dict(self.state.settings))

    def set_settings(self, request: Request) -> Response:
        body = read_object(request)
        with self.emulator.lock:
            self.state.settings = model.check_settings(body, self.state.settings)
            return Emulator.json_response(dict(self.state.settings))

    def device_codes(self, request: Request) -> Response:
        wanted = request.args.get("status")
        if wanted is not None and wanted not in model.DEVICE_STATUSES:
            raise ValueError(f"status must be one of {list(model.DEVICE_STATUSES)}")
        now = time.time()
        with self.emulator.lock:
            codes = [
                r.to_json(now)
                for r in self.state.device_codes.values()
                if wanted is None or r.current_status(now) == wanted
            ]
        codes.sort(key=lambda r: r["created_at"])
        return Emulator.json_response({"device_codes": codes})

    def approve(self, request: Request) -> Response:
        body = read_object(request)
        if set(body) - {"user_code", "upn"} or not isinstance(body.get("upn"), str):
            raise ValueError('the body is {"upn": "<user>", "user_code": "<code>"}')
        with self.emulator.lock:
            record = self.emulator.decide(body.get("user_code"), body["upn"], approve=True)
            return Emulator.json_response(record.to_json(time.time()))

    def deny(self, request: Request) -> Response:
        body = read_object(request)
        if set(body) - {"user_code"}:
            raise ValueError('the body is {"user_code": "<code>"}')
        with self.emulator.lock:
            record = self.emulator.decide(body.get("user_code"), None, approve=False)
            return Emulator.json_response(record.to_json(time.time()))

    def refresh_tokens(self, request: Request) -> Response:
        upn = (request.args.get("upn") or "").lower()
        status = request.args.get("status")
        with self.emulator.lock:
            tokens = [
                t.to_json()
                for t in self.state.refresh_tokens.values()
                if (not upn or t.upn.lower() == upn) and (status is None or t.status == status)
            ]
        return Emulator.json_response({"refresh_tokens": tokens})

    def revoke_user(self, request: Request, upn: str) -> Response:
        body = read_object(request)
        if set(body) - {"access_tokens"} or not isinstance(body.get("access_tokens", False), bool):
            raise ValueError('the body is empty or {"access_tokens": true}')
        with self.emulator.lock:
            user = self.state.user(upn)
            if user is None:
                raise ApiError(404, "NotFound", f"no user {upn!r}")
            revoked = 0
            for token in self.state.refresh_tokens.values():
                if token.upn.lower() == upn.lower() and token.status == "active":
                    token.status = "revoked"
                    revoked += 1
            expired = 0
            if body.get("access_tokens"):
                expired = self.emulator.expire_issued(lambda who: who == upn.lower())
            return Emulator.json_response(
                {
                    "upn": user.user_principal_name,
                    "revoked_refresh_tokens": revoked,
                    "expired_access_tokens": expired,
                }
            )

    def expire_all(self, request: Request) -> Response:
        return Emulator.json_response({"expired_access_tokens": REGISTRY.expire_all()})
