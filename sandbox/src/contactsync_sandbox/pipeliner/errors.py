"""Pipeliner's error body and the codes the emulator answers with.

The spec's `Error` schema is `{success: false, http_status, code, name, message}` (required:
`success`, `http_status`) with the example `400 / 117 / ERROR_PARAMETER_INVALID`. The vendor's
bulk-operations guide shows an entity validation failure as `422 / 40000 /
ERROR_ENTITY_VALIDATION` with messages like `[owner_id] Relation ... doesn't exist!`. Every other
code/name below is the sandbox's own choice (the vendor publishes no table): clients must branch
on `http_status`, never on `code`. The table is repeated in sandbox/README.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..server import ApiError

#: name → (numeric code, default HTTP status)
ERROR_CODES: dict[str, tuple[int, int]] = {
    "ERROR_PARAMETER_INVALID": (117, 400),  # spec example
    "ERROR_ENTITY_VALIDATION": (40000, 422),  # vendor docs (bulk operations)
    "ERROR_UNAUTHORIZED": (101, 401),
    "ERROR_SPACE_NOT_FOUND": (104, 404),
    "ERROR_ENTITY_NOT_FOUND": (112, 404),
    "ERROR_ENTITY_DELETE_PROTECTED": (40003, 422),
    "ERROR_NOT_FOUND": (110, 404),
    "ERROR_METHOD_NOT_ALLOWED": (111, 405),
    "ERROR_TOO_MANY_REQUESTS": (129, 429),
    "ERROR_INTERNAL_SERVER": (100, 500),
    "ERROR_SERVICE_UNAVAILABLE": (103, 503),
}

#: The framework's own error names (routing, faults, body parsing) → Pipeliner names.
FRAMEWORK_NAMES: dict[str, str] = {
    "NotFound": "ERROR_NOT_FOUND",
    "MethodNotAllowed": "ERROR_METHOD_NOT_ALLOWED",
    "TooManyRequests": "ERROR_TOO_MANY_REQUESTS",
    "ServiceUnavailable": "ERROR_SERVICE_UNAVAILABLE",
    "InternalServerError": "ERROR_INTERNAL_SERVER",
    "BadRequest": "ERROR_PARAMETER_INVALID",
    "RequestEntityTooLarge": "ERROR_PARAMETER_INVALID",
}


def error_body(status: int, name: str, message: str) -> dict[str, Any]:
    """The `Error` object for an HTTP status and an error name (any name is accepted)."""
    name = FRAMEWORK_NAMES.get(name, name)
    if name not in ERROR_CODES:
        name = {
            400: "ERROR_PARAMETER_INVALID",
            401: "ERROR_UNAUTHORIZED",
            404: "ERROR_NOT_FOUND",
            405: "ERROR_METHOD_NOT_ALLOWED",
            422: "ERROR_ENTITY_VALIDATION",
            429: "ERROR_TOO_MANY_REQUESTS",
            503: "ERROR_SERVICE_UNAVAILABLE",
        }.get(status, "ERROR_INTERNAL_SERVER")
    return {
        "success": False,
        "http_status": status,
        "code": ERROR_CODES[name][0],
        "name": name,
        "message": message,
    }


class PipelinerError(ApiError):
    """An `ApiError` with a Pipeliner error name; the status defaults from `ERROR_CODES`."""

    def __init__(
        self,
        name: str,
        message: str,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status or ERROR_CODES[name][1], name, message, headers)

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.code, self.message)


def invalid(message: str) -> PipelinerError:
    """400 ERROR_PARAMETER_INVALID: what the spec's schema or parameters refuse."""
    return PipelinerError("ERROR_PARAMETER_INVALID", message)


def validation(message: str) -> PipelinerError:
    """422 ERROR_ENTITY_VALIDATION: a business rule refuses a well-formed entity."""
    return PipelinerError("ERROR_ENTITY_VALIDATION", message)


def not_found(entity: str, entity_id: str) -> PipelinerError:
    return PipelinerError("ERROR_ENTITY_NOT_FOUND", f"{entity} with id {entity_id} not found")
