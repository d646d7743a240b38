"""Which input of a target is the sync, and which is an import from another tap.

The sync's records come from our own taps (through the mapper or straight): they are keyed by
``_source_id`` or ``id`` and linked in the folder's link scope, where a complete listing of one
side may delete on the other. Records of any other tap (a CSV file, another CRM) are an import:
they are keyed by what their SCHEMA's ``key_properties`` name when they carry neither key, and
linked in a scope of their own (``contactsync.settings.import_scope``), so that the sync never
takes an imported contact for one deleted on its side, and an import never deletes by absence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: The tap whose ``contacts`` stream each mapping reads (Meltano namespaces).
PARTNER_TAPS: Mapping[str, str] = {
    "pipeliner_to_outlook": "tap_pipeliner_contacts",
    "outlook_to_pipeliner": "tap_outlook_contacts",
}
#: Meltano namespaces of the taps whose streams are the sync's (inheriting plugins share them).
OUR_TAPS = frozenset(PARTNER_TAPS.values())
#: The keys of a record of the sync (the mapper's, and our taps').
SYNC_KEYS = frozenset({"_source_id", "id"})
#: The stream our taps and the mapper send.
SYNC_STREAM = "contacts"
#: The import's name outside Meltano, where a target cannot know which tap feeds it.
UNNAMED_IMPORT = "singer"


#: Properties only our plugins declare: the mapper's (``_sync_deleted_reason``,
#: ``_sync_unknown_fields``, …) and tap-pipeliner-contacts' (``_sync_user_relation``, …).
SYNC_MARK = "_sync_"


def import_source(
    stream: str,
    key_properties: Sequence[str] | None,
    environ: Mapping[str, str],
    properties: Mapping[str, Any] | None = None,
) -> str | None:
    """None when ``stream`` is the sync's own input; else the name of the import.

    A SCHEMA declaring one of our own ``_sync_…`` properties is the sync's (the mapper always
    declares them, whatever the project calls its plugins). Otherwise, under Meltano, the
    extractor of the run says (``MELTANO_EXTRACTOR_NAMESPACE``, set for every plugin of a
    `meltano run` block): one of our taps is the sync, any other tap is an import named after
    it. In a plain pipeline the SCHEMA says: the sync's stream is ``contacts``, keyed by
    ``_source_id`` or ``id``.
    """
    if any(name.startswith(SYNC_MARK) for name in properties or ()):
        return None
    namespace = extractor_namespace(environ)
    if namespace:
        if namespace in OUR_TAPS:
            return None
        return environ.get("MELTANO_EXTRACTOR_NAME", "").strip() or namespace
    if stream == SYNC_STREAM and set(key_properties or ()) <= SYNC_KEYS:
        return None
    return UNNAMED_IMPORT


def partner_tap(mapping: str, environ: Mapping[str, str]) -> bool | None:
    """Whether the run's extractor is the tap ``mapping`` reads; None outside Meltano."""
    namespace = extractor_namespace(environ)
    return namespace == PARTNER_TAPS[mapping] if namespace else None


def extractor_namespace(environ: Mapping[str, str]) -> str:
    """The Meltano namespace of the run's extractor ("" outside Meltano): Meltano sets
    ``MELTANO_EXTRACTOR_NAMESPACE`` for every plugin of a `meltano run` block."""
    return environ.get("MELTANO_EXTRACTOR_NAMESPACE", "").strip()


def record_key(
    record: Mapping[str, Any], key_properties: Sequence[str] | None, stream: str | None
) -> str:
    """The key of one record: ``_source_id``, else ``id``, else its SCHEMA ``key_properties``
    (joined by ``|``). An import's key is prefixed by its stream (``stream:key``), since one tap
    may send several streams whose keys overlap. Raises ``ValueError`` naming what is missing."""
    key = record.get("_source_id") or record.get("id")
    if not key and key_properties:
        absent = [k for k in key_properties if record.get(k) in (None, "")]
        if absent:
            raise ValueError(
                f"key property {', '.join(absent)} (the stream's key_properties) is empty"
            )
        key = "|".join(str(record[k]) for k in key_properties)
    if not key:
        raise ValueError(
            "a contact record needs a key: `_source_id`, the contact's `id`, or the properties "
            "its stream's SCHEMA names in `key_properties`"
        )
    return f"{stream}:{key}" if stream else str(key)
