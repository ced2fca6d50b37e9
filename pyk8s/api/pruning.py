"""Drop fields a built-in kind does not have, as upstream's decoder does.

Decoding a built-in object into its Go type silently loses unknown JSON fields; with
`fieldValidation=Strict` (kubectl's default) the same fields are reported instead, as
`strict decoding error: unknown field "spec.template.spec.containers[0].foo"`, and with
`Warn` as warnings. `prune_unknown_fields` does both halves: it removes the fields from the
object in place and returns their paths in that format (dotted field names, list indices in
brackets, in document order), for the caller to turn into errors or warnings.

The walk follows the kind's published schema (`pyk8s.api.schemas`): an object with
`properties` accepts only those; one with `additionalProperties` is a map whose values are
walked with that schema; objects without either (RawExtension, FieldsV1) and
`x-kubernetes-preserve-unknown-fields` accept anything. Type mismatches are not this
module's business: values of an unexpected type are left as they are.
"""
from __future__ import annotations

from typing import Any

from pyk8s.api import schemas

# Keys every object has whatever its schema says.
_ALWAYS_KNOWN = frozenset({"apiVersion", "kind", "metadata"})


def prune_unknown_fields(group: str, version: str, kind: str, obj: dict) -> list[str]:
    """Remove fields unknown to the kind's schema from `obj`; return their paths.

    Returns [] and leaves `obj` alone for kinds without a published schema.
    """
    schema = schemas.schema_for(group, version, kind)
    if schema is None or not isinstance(obj, dict):
        return []
    unknown: list[str] = []
    _prune_object(obj, schema, "", unknown, top_level=True)
    return unknown


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _resolve(schema: Any) -> dict | None:
    return schemas.resolve(schema) if isinstance(schema, dict) else None


def _prune(value: Any, schema: Any, path: str, unknown: list[str]) -> None:
    schema = _resolve(schema)
    if schema is None or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        _prune_object(value, schema, path, unknown)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _prune(item, schema["items"], f"{path}[{i}]", unknown)


def _prune_object(obj: dict, schema: dict, path: str, unknown: list[str], *,
                  top_level: bool = False) -> None:
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    if isinstance(props, dict):
        for key in list(obj):
            if key in props:
                _prune(obj[key], props[key], _join(path, key), unknown)
            elif top_level and key in _ALWAYS_KNOWN:
                continue
            elif isinstance(extra, dict):
                _prune(obj[key], extra, _join(path, key), unknown)
            elif extra is True:
                continue
            else:
                unknown.append(_join(path, key))
                del obj[key]
    elif isinstance(extra, dict):
        for key, value in obj.items():
            _prune(value, extra, _join(path, key), unknown)
