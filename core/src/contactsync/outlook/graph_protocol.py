"""What the Graph client and its ``$batch`` executor share: the errors they raise (messages never
contain a token), Graph's error shape (``{"error": {"code", "message"}}``) and the ``Prefer``
header every contact request carries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import requests

from contactsync.http import redact_text

#: Contact ids that survive moves between folders.
PREFER_IMMUTABLE_ID = 'IdType="ImmutableId"'
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s,;\"']+")


class GraphError(Exception):
    """Any failure talking to Microsoft Graph. ``status`` (HTTP) and ``code`` (Graph's
    ``error.code``) let callers branch; the message says what to check."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(_scrub(message))
        self.status = status
        self.code = code


class GraphAuthError(GraphError):
    """The token was refused (401 even after one refresh) or lacks access to the mailbox (403)."""


class GraphFolderError(GraphError, ValueError):
    """The ``folder`` setting names no usable personal folder (not found, ambiguous, shared…)."""


class GraphConfigError(GraphError, ValueError):
    """A setting cannot be used; the message names the setting and says what to do."""


class GraphThrottled(GraphError):
    """Graph kept answering 429 (or 503) until the retry policy gave up."""


class SyncStateExpired(GraphError):
    """410 on a delta link (``syncStateNotFound``): the folder must be read from scratch.

    :meth:`GraphClient.iter_delta` handles it; it escapes only if the restart fails alike.
    """


def _scrub(text: str) -> str:
    return _BEARER.sub(r"\1***", redact_text(text))


def _graph_error_of(body: Any) -> tuple[str | None, str | None]:
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
        code = error.get("code")
        message = error.get("message")
        return (str(code) if code else None, str(message) if message else None)
    return None, None


def _describe(code: str | None, message: str | None, status: int) -> str:
    head = code or f"HTTP {status}"
    return f"{head}: {message}" if message else head


def _auth_header(response: requests.Response) -> str | None:
    request = response.request
    return request.headers.get("Authorization") if request is not None else None


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
