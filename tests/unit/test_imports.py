"""contactsync_singer.imports: which input of a target is the sync's, which an import, and the
key of an import's record."""

from __future__ import annotations

import pytest
from contactsync_singer.imports import import_source, record_key

from contactsync.pipeliner.records import CONTACT_SCHEMA
from contactsync.sync.record import SOURCE_PROPERTIES

MAPPER = {**CONTACT_SCHEMA["properties"], **SOURCE_PROPERTIES}
CSV = {"ext_id": {}, "first_name": {}, "email1": {}}


def meltano(namespace: str, name: str | None = None) -> dict[str, str]:
    return {"MELTANO_EXTRACTOR_NAMESPACE": namespace, "MELTANO_EXTRACTOR_NAME": name or namespace}


def test_the_sync_is_our_taps_or_the_mappers_schema() -> None:
    assert import_source("contacts", ["_source_id"], meltano("tap_outlook_contacts")) is None
    assert import_source("contacts", ["id"], meltano("tap_pipeliner_contacts"), CSV) is None
    # Another project may name our plugins otherwise: the mapper's SCHEMA still says so.
    assert import_source("contacts", ["_source_id"], meltano("crm_tap"), MAPPER) is None
    assert import_source("contacts", [], {}, MAPPER) is None
    assert import_source("contacts", ["_source_id"], {}, {"_source_id": {}}) is None


def test_any_other_tap_is_an_import_even_with_our_key_names() -> None:
    assert import_source("people", ["ext_id"], meltano("tap_spreadsheets", "tap-spreadsheets"))
    assert (
        import_source("contacts", ["_source_id"], meltano("tap_csv", "tap-csv"), CSV) == "tap-csv"
    )
    assert import_source("people", ["ext_id"], {}, CSV) == "singer"
    assert import_source("contacts", ["ext_id"], {}, CSV) == "singer"


def test_record_keys() -> None:
    assert record_key({"_source_id": "o-1", "id": "p-1"}, ["id"], None) == "o-1"
    assert record_key({"id": "p-1"}, [], None) == "p-1"
    assert record_key({"ext_id": 7, "region": "eu"}, ["ext_id", "region"], "people") == (
        "people:7|eu"
    )
    with pytest.raises(ValueError, match="key property region"):
        record_key({"ext_id": 7, "region": ""}, ["ext_id", "region"], "people")
    with pytest.raises(ValueError, match="needs a key"):
        record_key({"first_name": "Kim"}, [], None)
