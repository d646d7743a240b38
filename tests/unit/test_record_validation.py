"""contactsync_singer.validation: the compiled check of a SCHEMA never accepts a record that
jsonschema (singer-sdk's validator) refuses, and it accepts our own records without asking it."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from contactsync_singer.validation import RecordValidator, compile_check
from hypothesis import given, settings
from hypothesis import strategies as st

from contactsync.mapping import outlook_schema, pipeliner_schema
from contactsync.outlook.records import CONTACT_SCHEMA as OUTLOOK_TAP_SCHEMA
from contactsync.pipeliner.records import CONTACT_SCHEMA as PIPELINER_TAP_SCHEMA

SCHEMAS = {
    "mapper to Outlook": outlook_schema(),
    "mapper to Pipeliner": pipeliner_schema(),
    "tap-outlook-contacts": OUTLOOK_TAP_SCHEMA,
    "tap-pipeliner-contacts": PIPELINER_TAP_SCHEMA,
}

CHECKS = {name: compile_check(schema) for name, schema in SCHEMAS.items()}
VALIDATORS = {name: jsonschema.Draft202012Validator(schema) for name, schema in SCHEMAS.items()}

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3)
)
#: Nested objects' field names (the addresses', the e-mail slots'), or any.
FIELDS = st.sampled_from(["name", "address", "city", "street", "postalCode"])
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(FIELDS | st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def records(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Records of the schema's fields with values of any JSON type (mostly wrong ones)."""
    names = sorted(schema["properties"])
    return st.dictionaries(st.sampled_from(names) | st.text(max_size=4), values, max_size=8)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_what_the_check_accepts_jsonschema_accepts(name: str, data: st.DataObject) -> None:
    schema = SCHEMAS[name]
    record = data.draw(records(schema))
    if CHECKS[name](record):
        VALIDATORS[name].validate(record)


def test_a_record_of_the_right_types_never_reaches_jsonschema() -> None:
    record = {
        "_source_id": "p1",
        "givenName": "Ann",
        "businessPhones": ["+1 555"],
        "emailAddresses": [{"name": "", "address": "ann@example.com"}],
        "businessAddress": {"city": "Oslo", "street": None},
        "_sdc_deleted_at": None,
    }
    assert compile_check(outlook_schema())(record)


def test_a_value_the_check_is_unsure_of_goes_to_jsonschema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": ["integer"]}}}
    assert not compile_check(schema)({"n": 1.0})  # an integer to jsonschema, decided there
    assert not compile_check({"type": "object", "patternProperties": {}})({})  # unknown keyword


def test_a_refused_record_is_handed_over_with_field_and_rule_not_value() -> None:
    seen: list[str] = []
    validator = RecordValidator(outlook_schema(), lambda record, why: seen.append(why))
    validator.validate({"_source_id": "p1", "givenName": "Ann"})
    validator.validate({"_source_id": "p1", "businessPhones": "secret-number"})
    assert seen == ["field businessPhones does not match type ['array', 'null']"]
