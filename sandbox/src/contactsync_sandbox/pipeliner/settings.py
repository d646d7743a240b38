"""The space's settings: the switches of behaviours the vendor leaves open, and their checks.

Changes of a contact's account relations always bump the contact (its `primary_account` /
`account_relations` change); changes of its sharing relations bump it while the
`sharing_bumps_contact` setting is true. The vendor documents neither that, nor that a delete
moves `modified` (`delete_bumps_modified`), nor how long deleted contacts stay listable with
`include-deleted=true` (`purge_deleted_after`: seconds after which a deleted contact is gone for
good, null = never). Each of the three is a switch, so that the product is tested under both
readings (its periodic full read must heal a missed change).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..jsonvalues import is_integer, is_number
from .entities import CUSTOM_FIELD_RE, Kinds
from .timefmt import TIMESTAMP_FORMATS

DEFAULT_SETTINGS: dict[str, Any] = {
    "sharing_bumps_contact": True,
    "delete_bumps_modified": True,
    "purge_deleted_after": None,
    "timestamp_format": "vendor",
    "include_total": False,
    "batch_max_items": 100,
    "rate_limit": None,
    # Contact fields the space makes required (Administration → Fields), e.g. custom fields.
    "contact_required_fields": [],
}


def check_settings(current: Mapping[str, Any], data: Any, contact_kinds: Kinds) -> dict[str, Any]:
    """`current` updated with `data`, every value checked (ValueError naming the setting)."""
    if not isinstance(data, dict):
        raise ValueError("settings must be a JSON object")
    unknown = sorted(set(data) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    new = {**current, **data}
    for name in ("sharing_bumps_contact", "delete_bumps_modified", "include_total"):
        if not isinstance(new[name], bool):
            raise ValueError(f"{name} must be true or false")
    if new["timestamp_format"] not in TIMESTAMP_FORMATS:
        raise ValueError(f"timestamp_format must be one of {', '.join(TIMESTAMP_FORMATS)}")
    size = new["batch_max_items"]
    if not is_integer(size) or size < 1:
        raise ValueError("batch_max_items must be a positive integer")
    new["rate_limit"] = check_rate_limit(new["rate_limit"])
    purge = new["purge_deleted_after"]
    if purge is not None and (not is_number(purge) or purge < 0):
        raise ValueError("purge_deleted_after must be a number of seconds >= 0, or null")
    fields = new["contact_required_fields"]
    if not isinstance(fields, list) or not all(
        isinstance(f, str) and (CUSTOM_FIELD_RE.match(f) or contact_kinds.kind(f) == "str")
        for f in fields
    ):
        raise ValueError(
            "contact_required_fields must be a list of Contact text fields or custom fields (cf_…)"
        )
    new["contact_required_fields"] = list(dict.fromkeys(fields))
    return new


def check_rate_limit(spec: Any) -> dict[str, Any] | None:
    """`{"requests": N, "per_seconds": S}` (N ≥ 1, S > 0), or None / `{"requests": null}`."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) - {"requests", "per_seconds"}:
        raise ValueError('rate_limit is {"requests": N, "per_seconds": S} or null')
    requests, seconds = spec.get("requests"), spec.get("per_seconds", 1)
    if requests is None:
        return None
    if not is_integer(requests) or requests < 1:
        raise ValueError("rate_limit.requests must be a positive integer (or null to disable)")
    if not is_number(seconds) or not seconds > 0:
        raise ValueError("rate_limit.per_seconds must be a positive number")
    return {"requests": requests, "per_seconds": seconds}
