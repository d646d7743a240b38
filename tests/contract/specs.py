"""Contract-test harness: validate bodies against the vendor schemas in `specs/`.

The emulators must not invent the APIs they imitate, and our clients must not send what the
services do not accept; both are checked against the schemas the vendors publish (see
`specs/README.md`), never against our own idea of them.

Where the schemas come from: `$CONTACTSYNC_SPECS_DIR` if set (e.g. `../shared/specs` while the
research copy evolves), else the byte-identical copy in `tests/contract/specs/` (so a fresh
clone needs nothing outside the repository; `test_harness.py` checks the copy is current).

What the harness reads into the Pipeliner OpenAPI document (`openapi: 3.2.0`, so its schemas are
JSON Schema 2020-12), and why:
- Schemas with `properties` but no `type` (all of its components) are taken as `type: object`.
  Without that, `oneOf: [uuid string, Error]` in the batch responses matches a uuid twice.
- `nullable: true` (OpenAPI 3.0) would become a `null` type union; the document has none today.
- `closed=True` (the default) forbids properties the document does not list, so an emulator
  cannot invent fields and our client cannot send a misspelt one.
- Success responses must carry the wrapper's `success` and `data` (listed, not `required`).
- Relations are URI strings unless `expand` names them; `expand=("primary_account",)` validates
  them as the entity the description points to ("See: 'Account' object").
- An error status the operation does not document (400, 401, 429…) is checked against `Error`.
- `readOnly` properties are refused in request bodies (OpenAPI: "SHOULD NOT be sent").
- `format` stays an annotation (JSON Schema 2020-12 default).
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPECS_DIR_ENV = "CONTACTSYNC_SPECS_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_SPECS_DIR = Path(__file__).resolve().with_name("specs")
#: The research copy next to the repository (absent in a fresh clone).
SHARED_SPECS_DIR = REPO_ROOT.parent / "shared" / "specs"
GRAPH_SCHEMA_FILE = "graph-contact.schema.json"
PIPELINER_OPENAPI_FILE = "pipeliner-contacts-openapi.json"
PIPELINER_URI = "urn:contactsync:specs:pipeliner-contacts-openapi.json"
#: Path prefix of the real service in front of the document's paths.
_PIPELINER_PREFIX = re.compile(r"^(?:https?://[^/]+)?/api/v100/rest/spaces/[^/]+")
_RELATION = re.compile(r"See: '(\w+)' object")
_MAX_REPORTED = 10


class ContractViolation(AssertionError):
    """A body does not match the vendor schema; `errors` holds the jsonschema errors."""

    def __init__(self, message: str, errors: list[ValidationError]) -> None:
        super().__init__(message)
        self.errors = errors


# --------------------------------------------------------------------------- loading


def specs_dir() -> Path:
    override = os.environ.get(SPECS_DIR_ENV)
    return Path(override) if override else BUNDLED_SPECS_DIR


@cache
def _load(name: str, directory: str) -> Any:
    return json.loads((Path(directory) / name).read_text(encoding="utf-8"))


def load_spec(name: str) -> Any:
    """A spec file as JSON (cached; do not mutate)."""
    return _load(name, str(specs_dir()))


# --------------------------------------------------------------------------- Graph


def graph_schema() -> dict[str, Any]:
    return load_spec(GRAPH_SCHEMA_FILE)


def graph_definitions() -> list[str]:
    return sorted(graph_schema()["$defs"])


def validate_graph(instance: Any, definition: str = "contact") -> None:
    """Validate a Graph resource (`contact`, `contactFolder`, `emailAddress`…)."""
    _check(
        Draft202012Validator(_graph_ref(definition), registry=_graph_registry()),
        instance,
        f"Graph {definition}",
    )


def validate_graph_collection(body: Any, definition: str = "contact") -> None:
    """Validate a Graph collection page (`value` plus OData `@odata.*Link` annotations).

    The wrapper follows the OData conventions shown throughout the Graph docs; it is not part
    of the spec file. Delta tombstones (`{"id", "@removed"}`) pass the open `contact` schema.
    """
    schema = {
        "type": "object",
        "required": ["value"],
        "properties": {
            "value": {"type": "array", "items": _graph_ref(definition)},
            "@odata.context": {"type": "string"},
            "@odata.nextLink": {"type": "string"},
            "@odata.deltaLink": {"type": "string"},
        },
    }
    _check(
        Draft202012Validator(schema, registry=_graph_registry()),
        body,
        f"Graph collection of {definition}",
    )


def _graph_ref(definition: str) -> dict[str, Any]:
    schema = graph_schema()
    if definition not in schema["$defs"]:
        raise KeyError(f"no Graph definition {definition!r}; known: {graph_definitions()}")
    return {"$ref": f"{schema['$id']}#/$defs/{definition}"}


def _graph_registry() -> Registry:
    return _graph_registry_for(str(specs_dir()))


@cache
def _graph_registry_for(directory: str) -> Registry:
    schema = _load(GRAPH_SCHEMA_FILE, directory)
    return Registry().with_resource(schema["$id"], Resource.from_contents(schema))


# --------------------------------------------------------------------------- Pipeliner


def pipeliner_document(closed: bool = True) -> dict[str, Any]:
    """The OpenAPI document as the harness reads it (see the module docstring)."""
    return _pipeliner_document(str(specs_dir()), closed)


def pipeliner_paths() -> list[str]:
    return sorted(pipeliner_document()["paths"])


def pipeliner_schema(
    schema_name: str, expand: str | Iterable[str] = (), closed: bool = True
) -> dict[str, Any]:
    """A schema for `components.schemas[schema_name]`, with `expand`ed relations."""
    document = pipeliner_document(closed)
    if schema_name not in document["components"]["schemas"]:
        known = sorted(document["components"]["schemas"])
        raise KeyError(f"no Pipeliner schema {schema_name!r}; known: {known}")
    tree = _expand_tree(expand)
    if tree:
        return _expanded_component(document, schema_name, tree)
    return _component_ref(schema_name)


def validate_pipeliner_schema(
    instance: Any,
    schema_name: str,
    *,
    expand: str | Iterable[str] = (),
    closed: bool = True,
) -> None:
    """Validate an entity (e.g. one `Contact`) against `components.schemas[schema_name]`."""
    schema = pipeliner_schema(schema_name, expand, closed)
    _check(
        Draft202012Validator(schema, registry=_pipeliner_registry(closed)),
        instance,
        f"Pipeliner {schema_name}",
    )


def pipeliner_operation(method: str, path_template: str) -> dict[str, Any]:
    """The OpenAPI operation object for `GET /entities/Contacts` and the like.

    `path_template` may be the document's path (`/entities/Contacts/{id}`) or the full service
    path (`/api/v100/rest/spaces/{space_id}/entities/Contacts/{id}`, `<id>` also accepted).
    """
    document = pipeliner_document()
    path = _document_path(path_template)
    item = document["paths"].get(path)
    if item is None:
        raise KeyError(f"Pipeliner path {path!r} is not in the spec; known: {pipeliner_paths()}")
    operation = item.get(method.lower())
    if operation is None:
        methods = sorted(m.upper() for m in item if m in _HTTP_METHODS)
        raise KeyError(f"{method.upper()} {path} is not in the spec; documented: {methods}")
    return operation


def pipeliner_response_schema(
    method: str,
    path_template: str,
    status: int | str,
    *,
    expand: str | Iterable[str] = (),
    closed: bool = True,
    strict_status: bool = False,
) -> dict[str, Any]:
    """The JSON schema of a response body (see the module docstring for undocumented errors)."""
    document = pipeliner_document(closed)
    operation = pipeliner_operation(method, path_template)
    responses = operation["responses"]
    code = str(status)
    response = responses.get(code) or responses.get("default")
    if response is None:
        if strict_status or int(code) < 400:
            raise ContractViolation(
                f"{method.upper()} {_document_path(path_template)} does not document status "
                f"{code} (documented: {sorted(responses)})",
                [],
            )
        return pipeliner_schema("Error", closed=closed)
    schema = _absolute_refs(copy.deepcopy(_json_media(response.get("content", {}), code)))
    if 200 <= int(code) < 300:
        present = [k for k in ("success", "data") if k in schema.get("properties", {})]
        if present:
            schema["required"] = sorted({*schema.get("required", []), *present})
    tree = _expand_tree(expand)
    if tree:
        schema = _expand_refs(document, schema, tree)
    return schema


def validate_pipeliner_response(
    method: str,
    path_template: str,
    status: int | str,
    body: Any,
    *,
    expand: str | Iterable[str] = (),
    closed: bool = True,
    strict_status: bool = False,
) -> None:
    """Validate a response body of a documented operation, wrapper included."""
    schema = pipeliner_response_schema(
        method, path_template, status, expand=expand, closed=closed, strict_status=strict_status
    )
    _check(
        Draft202012Validator(schema, registry=_pipeliner_registry(closed)),
        body,
        f"Pipeliner {method.upper()} {_document_path(path_template)} -> {status}",
    )


def pipeliner_request_schema(method: str, path_template: str) -> dict[str, Any]:
    """The JSON schema of an operation's request body (media key `application / json` too)."""
    operation = pipeliner_operation(method, path_template)
    body = operation.get("requestBody")
    if body is None:
        raise KeyError(f"{method.upper()} {_document_path(path_template)} takes no request body")
    return _absolute_refs(copy.deepcopy(_json_media(body.get("content", {}), "requestBody")))


def validate_pipeliner_request(
    method: str,
    path_template: str,
    body: Any,
    *,
    closed: bool = True,
) -> None:
    """Validate a request body our client is about to send (readOnly fields refused)."""
    schema = pipeliner_request_schema(method, path_template)
    validator = _RequestValidator(schema, registry=_pipeliner_registry(closed))
    _check(validator, body, f"Pipeliner request {method.upper()} {_document_path(path_template)}")


# --------------------------------------------------------------------------- internals

_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_ONES = (
    "items",
    "additionalProperties",
    "not",
    "contains",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
)


@cache
def _pipeliner_document(directory: str, closed: bool) -> dict[str, Any]:
    document = copy.deepcopy(_load(PIPELINER_OPENAPI_FILE, directory))
    for schema in _document_schemas(document):
        _normalize(schema, closed)
    return document


@cache
def _pipeliner_registry_for(directory: str, closed: bool) -> Registry:
    document = _pipeliner_document(directory, closed)
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return Registry().with_resource(PIPELINER_URI, resource)


def _pipeliner_registry(closed: bool) -> Registry:
    return _pipeliner_registry_for(str(specs_dir()), closed)


def _document_schemas(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from document.get("components", {}).get("schemas", {}).values()
    for item in document["paths"].values():
        for method, operation in item.items():
            if method not in _HTTP_METHODS:
                continue
            bodies = [operation.get("requestBody") or {}, *operation.get("responses", {}).values()]
            for body in bodies:
                for media in body.get("content", {}).values():
                    if isinstance(media.get("schema"), dict):
                        yield media["schema"]


def _normalize(schema: Any, closed: bool) -> None:
    """OpenAPI-isms to plain JSON Schema, in place (see the module docstring)."""
    if not isinstance(schema, dict):
        return
    if isinstance(schema.get("properties"), dict) and "type" not in schema:
        schema["type"] = "object"
    if schema.pop("nullable", False) is True:
        types = schema.get("type")
        if isinstance(types, str):
            schema["type"] = [types, "null"]
        elif isinstance(types, list) and "null" not in types:
            schema["type"] = [*types, "null"]
        if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
    if closed and isinstance(schema.get("properties"), dict):
        schema.setdefault("additionalProperties", False)
    for key in _SCHEMA_MAPS:
        for sub in (schema.get(key) or {}).values():
            _normalize(sub, closed)
    for key in _SCHEMA_LISTS:
        for sub in schema.get(key) or []:
            _normalize(sub, closed)
    for key in _SCHEMA_ONES:
        _normalize(schema.get(key), closed)


def _json_media(content: Mapping[str, Any], where: str) -> Any:
    for media_type, media in content.items():
        if media_type.replace(" ", "") == "application/json":  # vendor quirk: 'application / json'
            return media.get("schema", {})
    raise KeyError(f"{where}: no application/json content (has {sorted(content)})")


def _document_path(path_template: str) -> str:
    path = _PIPELINER_PREFIX.sub("", path_template.split("?")[0])
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", path)


def _component_ref(name: str) -> dict[str, Any]:
    return {"$ref": f"{PIPELINER_URI}#/components/schemas/{name}"}


def _absolute_refs(schema: Any) -> Any:
    """Make the document's `#/...` refs absolute so an extracted schema resolves them."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            schema["$ref"] = PIPELINER_URI + ref
        for value in schema.values():
            _absolute_refs(value)
    elif isinstance(schema, list):
        for value in schema:
            _absolute_refs(value)
    return schema


def _expand_tree(expand: str | Iterable[str]) -> dict[str, Any]:
    """`"owner,account_relations.account"` → `{"owner": {}, "account_relations": {"account": {}}}`.

    (Same syntax as the API's own `expand` query parameter.)
    """
    names = expand.split(",") if isinstance(expand, str) else list(expand)
    tree: dict[str, Any] = {}
    for name in (n.strip() for n in names):
        node = tree
        for part in filter(None, name.split(".")):
            node = node.setdefault(part, {})
    return tree


def _expand_refs(document: dict[str, Any], schema: Any, tree: dict[str, Any]) -> Any:
    """Replace refs to entity components (not `Error`) by their expanded form."""
    if isinstance(schema, list):
        return [_expand_refs(document, value, tree) for value in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref", "")
    prefix = f"{PIPELINER_URI}#/components/schemas/"
    if isinstance(ref, str) and ref.startswith(prefix) and ref[len(prefix) :] != "Error":
        return _expanded_component(document, ref[len(prefix) :], tree)
    return {key: _expand_refs(document, value, tree) for key, value in schema.items()}


def _expanded_component(document: dict[str, Any], name: str, tree: dict[str, Any]) -> Any:
    components = document["components"]["schemas"]
    schema = _absolute_refs(copy.deepcopy(components[name]))
    properties = schema.get("properties", {})
    for relation, subtree in tree.items():
        prop = properties.get(relation)
        is_list = isinstance(prop, dict) and prop.get("type") == "array"
        target_schema = (prop.get("items", {}) if is_list else prop) if prop else {}
        found = _RELATION.search(target_schema.get("description", ""))
        if not found:
            raise KeyError(f"{name}.{relation} is not a relation in the spec, cannot expand it")
        target = found.group(1)
        if target in components:
            entity = (
                _expanded_component(document, target, subtree)
                if subtree
                else _component_ref(target)
            )
        elif subtree:
            raise KeyError(f"cannot expand inside {target}: the pruned spec does not define it")
        else:  # the pruned spec leaves this entity out: any object
            entity = {"type": "object"}
        properties[relation] = {"type": "array", "items": entity} if is_list else entity
    return schema


def _refuse_read_only(
    validator: Any,
    read_only: Any,
    instance: Any,
    schema: Mapping[str, Any],
) -> Iterator[ValidationError]:
    if read_only is True:
        yield ValidationError("is readOnly in the vendor schema: a client must not send it")


_RequestValidator = validators.extend(Draft202012Validator, {"readOnly": _refuse_read_only})


def _check(validator: Any, instance: Any, what: str) -> None:
    errors = sorted(
        validator.iter_errors(instance),
        key=lambda e: ([str(p) for p in e.absolute_path], e.message),
    )
    if not errors:
        return
    leaves = [leaf for error in errors for leaf in _leaves(error)]
    lines = []
    for leaf in leaves[:_MAX_REPORTED]:
        message = leaf.message if len(leaf.message) <= 200 else leaf.message[:200] + "…"
        schema_path = "/".join(str(p) for p in leaf.absolute_schema_path)
        lines.append(f"  at {leaf.json_path}: {message}  (schema: {schema_path})")
    if len(leaves) > _MAX_REPORTED:
        lines.append(f"  … and {len(leaves) - _MAX_REPORTED} more")
    raise ContractViolation(f"{what}: {len(leaves)} violation(s)\n" + "\n".join(lines), errors)


def _leaves(error: ValidationError) -> list[ValidationError]:
    """The errors worth showing for a failed `oneOf`/`anyOf`.

    Those of the one branch whose type fits the instance (`{"success": false}` against
    `[uuid string, Error]` reports Error's missing fields), else the aggregate error.
    """
    if not error.context:
        return [error]
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    plausible = [
        subs
        for subs in branches.values()
        if not any(sub.validator == "type" and not sub.relative_path for sub in subs)
    ]
    if len(plausible) != 1:
        return [best_match([error])]
    return [leaf for sub in plausible[0] for leaf in _leaves(sub)]
