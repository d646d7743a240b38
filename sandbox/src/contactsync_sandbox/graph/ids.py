"""Opaque, stable Graph-like ids and change keys.

Real Outlook ids are long url-safe base64 strings starting `AAMk…` and ending `=`; the sandbox
makes its own of the same look: base64url of a 4-byte prefix, the mailbox (16 bytes), a kind byte
and a per-mailbox counter. They are deterministic (the same seed gives the same ids) and never
change, also when a contact moves: they behave as immutable ids (`Prefer: IdType="ImmutableId"`
is accepted and changes nothing). Clients must treat them as opaque strings.
"""

from __future__ import annotations

import base64
import hashlib
import uuid

_ID_PREFIX = b"\x00\x03\x24\x00"
_CHANGE_KEY_PREFIX = b"\x11\x00\x00\x00\x16\x00\x00\x00"
_ID_BYTES = len(_ID_PREFIX) + 16 + 1 + 8
ROOT, FOLDER, CONTACT = 0, 1, 2


def mailbox_bytes(mailbox_id: str) -> bytes:
    try:
        return uuid.UUID(mailbox_id).bytes
    except ValueError:
        return hashlib.sha256(mailbox_id.encode("utf-8")).digest()[:16]


def make_id(mailbox: bytes, kind: int, counter: int) -> str:
    raw = _ID_PREFIX + mailbox + bytes([kind]) + counter.to_bytes(8, "big")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def parse_id(value: str) -> tuple[bytes, int, int] | None:
    """(mailbox bytes, kind, counter) of a sandbox id, or None when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None
    if len(raw) != _ID_BYTES or not raw.startswith(_ID_PREFIX):
        return None
    start = len(_ID_PREFIX)
    kind = raw[start + 16]
    if kind not in (ROOT, FOLDER, CONTACT):
        return None
    return raw[start : start + 16], kind, int.from_bytes(raw[start + 17 :], "big")


def well_formed(value: str) -> bool:
    return parse_id(value) is not None


def change_key(mailbox: bytes, seq: int) -> str:
    """A new change key for change number `seq` of a mailbox (standard base64, 40 chars)."""
    raw = _CHANGE_KEY_PREFIX + mailbox + seq.to_bytes(6, "big")
    return base64.b64encode(raw).decode("ascii")
