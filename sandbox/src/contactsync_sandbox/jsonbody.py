"""JSON request bodies, read the same way by every emulator.

A control route takes a JSON object (or nothing); anything else is a `ValueError`, which the
control API answers 400 (`Emulator._serve_control`).
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from .server import Emulator


def read_object(request: Request) -> dict[str, Any]:
    """The body of a control route: a JSON object, `{}` when empty (ValueError otherwise)."""
    body = Emulator.read_json(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body
