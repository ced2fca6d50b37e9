"""The three Kubernetes PATCH flavours as pure functions over JSON-like values.

* `apply_json_patch` — RFC 6902 JSON Patch (`application/json-patch+json`) as the apiserver
  applies it with `gopkg.in/evanphx/json-patch.v4`: same error messages, negative array indices
  counted from the end, `Atoi`-style indices, `test` treating an absent member as `null`.
* `apply_merge_patch` — RFC 7386 JSON Merge Patch (`application/merge-patch+json`).
* `apply_strategic_merge_patch` — strategic merge patch (`application/strategic-merge-patch+json`)
  as the apiserver applies it (`k8s.io/apimachinery/pkg/util/strategicpatch`,
  `StrategicMergeMapPatch`), driven by the `x-kubernetes-patch-strategy` and
  `x-kubernetes-patch-merge-key` extensions of the kind's schema (`pyk8s.api.schemas`).
* `apply_patch` — dispatch on the request's Content-Type.

Nothing here does I/O and no input is mutated: every function works on deep copies.

Strategic merge patch follows upstream down to its quirks, because clients see them: an item
added to a merge list without `$setElementOrder` lands *before* the live items
(`kubectl patch` adding a container makes it the first one); `$patch: merge` is an error;
a map carrying `$patch` is dropped where the original has nothing; merge keys and list items
compare like Go values (`80` is not `80.0`, nor `"80"`).

Errors are `ApiError`s carrying the status upstream answers with, so the HTTP layer can render
them as they are: JSON-patch application errors 422 Invalid (a failed `test` is the subclass
`PatchTestFailed`), unparseable bodies 400, strategic-merge-patch format errors 400, lists of
lists 422, and the other strategic-merge-patch errors 500 (upstream passes those through
unmapped, so the apiserver reports them as internal errors). Unknown patch types raise
`UnsupportedPatchType` (415).

Deliberate differences from upstream:

* JSON patch: `replace` of an absent member, `copy` from an absent member and `add`/`replace`
  without a `value` fail, as RFC 6902 requires (evanphx v4 adds or copies `null` instead).
* Strategic merge patch: values upstream copies verbatim out of the patch (new list items,
  `$patch: replace` content, wholesale-replaced lists and maps) come without directive keys and
  `null` members — what upstream's typed round trip (decode into the Go struct, encode again)
  leaves of them. Without a schema for a field, maps merge and lists are replaced, as in a
  JSON merge patch (upstream cannot meet such a field: its originals are typed objects).
* Merge patch: `null` members are pruned from every value placed wholesale, also when an
  object is replaced by an array (evanphx prunes in all other cases).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from pyk8s.api import schemas
from pyk8s.api.errors import ApiError, UnsupportedMediaType

__all__ = [
    "JSON_PATCH", "MERGE_PATCH", "STRATEGIC_MERGE_PATCH", "PATCH_TYPES",
    "MAX_JSON_PATCH_OPERATIONS", "PatchError", "PatchTestFailed", "UnsupportedPatchType",
    "apply_json_patch", "apply_merge_patch", "apply_strategic_merge_patch", "apply_patch",
]

JSON = Any
Schema = dict[str, Any]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)

# Upstream's apiserver limit (`maxJSONPatchOperations`).
MAX_JSON_PATCH_OPERATIONS = 10000


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

class PatchError(ApiError):
    """A patch could not be applied. Defaults to 422 Invalid, upstream's status for JSON patch
    application errors; `code`/`reason` carry upstream's status for the other cases."""

    code, reason = 422, "Invalid"


class PatchTestFailed(PatchError):
    """A JSON patch `test` operation did not match (upstream: 422 Invalid)."""


class UnsupportedPatchType(UnsupportedMediaType):
    """The Content-Type is not a patch type we apply (upstream: 415 UnsupportedMediaType)."""


def _bad_request(message: str) -> PatchError:
    return PatchError(message, code=400, reason="BadRequest")


def _smp_error(message: str) -> PatchError:
    """A strategic-merge-patch error upstream passes through unmapped (reported as a 500)."""
    return PatchError(message, code=500, reason="InternalError")


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------

def _deepcopy(value: JSON) -> JSON:
    """A deep copy of a JSON-like value (much faster than `copy.deepcopy`)."""
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


def _json_equal(a: JSON, b: JSON) -> bool:
    """Structural JSON equality, ignoring key order. Scalars must have the same type, as in
    evanphx's comparison of their encodings: `true` is not `1`, and `2` is not `2.0`."""
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(_json_equal(v, b[k]) for k, v in a.items()))
    if isinstance(a, list):
        return (isinstance(b, list) and len(a) == len(b)
                and all(_json_equal(x, y) for x, y in zip(a, b)))
    return type(a) is type(b) and a == b


def _gofmt(value: JSON) -> str:
    """Render a value the way Go's `%v` prints decoded JSON, so messages match upstream's."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_gofmt(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_gofmt(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


# --------------------------------------------------------------------------------------------
# RFC 6902 JSON Patch
# --------------------------------------------------------------------------------------------

_MISSING = object()
_INDEX_RE = re.compile(r"[+-]?[0-9]+")
_ESCAPE_RE = re.compile(r"~[01]")


def apply_json_patch(doc: JSON, ops: JSON) -> JSON:
    """Apply an RFC 6902 patch (a list of operations) to `doc` and return the new document.

    All operations apply or none does. A failed `test` raises `PatchTestFailed`; a malformed
    patch, a bad path or a missing target raises `PatchError`.
    """
    if not isinstance(ops, list):
        raise _bad_request(f"json: cannot unmarshal {_json_type(ops)} into Go value of type "
                           "jsonpatch.Patch")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchError(f"The allowed maximum operations in a JSON patch is "
                         f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}",
                         code=413, reason="RequestEntityTooLarge")
    for op in ops:
        if not isinstance(op, dict):
            raise _bad_request(f"json: cannot unmarshal {_json_type(op)} into Go value of type "
                               "jsonpatch.Operation")
    result = _deepcopy(doc)
    for op in ops:
        kind = op.get("op")
        handler = _OPERATIONS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise PatchError(f"Unexpected kind: {kind if isinstance(kind, str) else 'unknown'}")
        result = handler(result, op)
    return result


def _json_type(value: JSON) -> str:
    """Go's name for a JSON value's type in `json: cannot unmarshal X ...` messages."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def _op_path(op: dict[str, JSON], field: str, name: str) -> str:
    """The `path` (or `from`) member of an operation, which must be a string."""
    value = op.get(field)
    if not isinstance(value, str):
        what = "path" if field == "path" else "from"
        raise PatchError(f"{name} operation failed to decode {what}: missing value")
    return value


def _op_value(op: dict[str, JSON], name: str) -> JSON:
    """A deep copy of the operation's `value` member, which must be present."""
    if "value" not in op:
        raise PatchError(f"{name} operation missing value field: missing value")
    return _deepcopy(op["value"])


def _parse_pointer(path: str) -> list[str] | None:
    """RFC 6901: `/a/b~1c/~0d` → ["a", "b/c", "~d"]; `""` is the whole document; None if
    `path` is not a JSON pointer (does not start with "/")."""
    if path == "":
        return []
    if not path.startswith("/"):
        return None
    return [_ESCAPE_RE.sub(lambda m: "/" if m.group() == "~1" else "~", token)
            for token in path[1:].split("/")]


def _array_index(token: str, length: int, *, for_insert: bool = False) -> int:
    """An array index as evanphx parses it (`Atoi`, negative from the end); -1 if invalid."""
    if not _INDEX_RE.fullmatch(token):
        return -1
    idx = int(token)
    size = length + 1 if for_insert else length
    if idx >= size or idx < -size:
        return -1
    return idx + size if idx < 0 else idx


def _parent(doc: JSON, path: str) -> tuple[JSON, str] | None:
    """The container holding the last token of `path`, and that token; None if unreachable."""
    tokens = _parse_pointer(path)
    if not tokens:
        return None
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node or node[token] is None:
                return None
            node = node[token]
        elif isinstance(node, list):
            idx = _array_index(token, len(node))
            if idx < 0:
                return None
            node = node[idx]
        else:
            return None
    if not isinstance(node, (dict, list)):
        return None
    return node, tokens[-1]


def _require_parent(doc: JSON, path: str, message: str) -> tuple[JSON, str]:
    found = _parent(doc, path)
    if found is None:
        raise PatchError(f"{message}: missing value")
    return found


def _invalid_index(token: str) -> str:
    """evanphx's message for an index that is not a number, or out of range."""
    if not _INDEX_RE.fullmatch(token):
        return _atoi_error(token)
    return f"Unable to access invalid index: {int(token)}: invalid index referenced"


def _atoi_error(token: str) -> str:
    return f'strconv.Atoi: parsing "{token}": invalid syntax'


def _get(container: JSON, key: str, path: str, name: str) -> JSON:
    """The value at `key` of a container; `_MISSING` for an absent object member."""
    if isinstance(container, dict):
        return container.get(key, _MISSING)
    idx = _array_index(key, len(container))
    if idx < 0:
        raise PatchError(f"error in {name} for path: '{path}': {_invalid_index(key)}")
    return container[idx]


def _insert(container: JSON, key: str, value: JSON, path: str, name: str) -> None:
    """RFC 6902 "add" at `key`: set a member, or insert into an array (`-` appends)."""
    if isinstance(container, dict):
        container[key] = value
        return
    if key == "-":
        container.append(value)
        return
    if not _INDEX_RE.fullmatch(key):
        raise PatchError(f"error in {name} for path: '{path}': value was not a proper array "
                         f"index: '{key}': {_atoi_error(key)}")
    idx = _array_index(key, len(container), for_insert=True)
    if idx < 0:
        raise PatchError(f"error in {name} for path: '{path}': {_invalid_index(key)}")
    container.insert(idx, value)


def _delete(container: JSON, key: str, path: str, name: str) -> JSON:
    """Remove and return the value at `key`."""
    if isinstance(container, dict):
        if key not in container:
            raise PatchError(f"error in {name} for path: '{path}': Unable to remove nonexistent "
                             f"key: {key}: missing value")
        return container.pop(key)
    idx = _array_index(key, len(container))
    if idx < 0:
        raise PatchError(f"error in {name} for path: '{path}': {_invalid_index(key)}")
    return container.pop(idx)


def _op_add(doc: JSON, op: dict[str, JSON]) -> JSON:
    path = _op_path(op, "path", "add")
    container, key = _require_parent(
        doc, path, f'add operation does not apply: doc is missing path: "{path}"')
    _insert(container, key, _op_value(op, "add"), path, "add")
    return doc


def _op_remove(doc: JSON, op: dict[str, JSON]) -> JSON:
    path = _op_path(op, "path", "remove")
    container, key = _require_parent(
        doc, path, f'remove operation does not apply: doc is missing path: "{path}"')
    _delete(container, key, path, "remove")
    return doc


def _op_replace(doc: JSON, op: dict[str, JSON]) -> JSON:
    path = _op_path(op, "path", "replace")
    value = _op_value(op, "replace")
    if path == "":
        if not isinstance(value, (dict, list)):
            raise PatchError("replace operation value must be object or array")
        return value
    container, key = _require_parent(
        doc, path, f"replace operation does not apply: doc is missing path: {path}")
    if _get(container, key, path, "replace") is _MISSING:
        raise PatchError(f"replace operation does not apply: doc is missing key: {path}: "
                         "missing value")
    if isinstance(container, dict):
        container[key] = value
    else:
        container[_array_index(key, len(container))] = value
    return doc


def _op_move(doc: JSON, op: dict[str, JSON]) -> JSON:
    source = _op_path(op, "from", "move")
    container, key = _require_parent(
        doc, source, f"move operation does not apply: doc is missing from path: {source}")
    value = _delete(container, key, source, "move")
    path = _op_path(op, "path", "move")
    container, key = _require_parent(
        doc, path, f"move operation does not apply: doc is missing destination path: {path}")
    _insert(container, key, value, path, "move")
    return doc


def _op_copy(doc: JSON, op: dict[str, JSON]) -> JSON:
    source = _op_path(op, "from", "copy")
    container, key = _require_parent(
        doc, source, f"copy operation does not apply: doc is missing from path: {source}")
    value = _get(container, key, source, "copy")
    if value is _MISSING:
        raise PatchError(f"copy operation does not apply: doc is missing from path: {source}: "
                         "missing value")
    path = _op_path(op, "path", "copy")
    container, key = _require_parent(
        doc, path, f"copy operation does not apply: doc is missing destination path: {path}")
    _insert(container, key, _deepcopy(value), path, "copy")
    return doc


def _op_test(doc: JSON, op: dict[str, JSON]) -> JSON:
    path = _op_path(op, "path", "test")
    failed = PatchTestFailed(f"testing value {path} failed: test failed")
    if "value" not in op:
        raise failed
    expected = op["value"]
    if path == "":
        actual = doc
    else:
        container, key = _require_parent(
            doc, path, f"test operation does not apply: is missing path: {path}")
        actual = _get(container, key, path, "test")
        if actual is _MISSING:
            actual = None  # evanphx: an absent member tests equal to null
    if not _json_equal(actual, expected):
        raise failed
    return doc


_OPERATIONS: dict[str, Callable[[JSON, dict[str, JSON]], JSON]] = {
    "add": _op_add, "remove": _op_remove, "replace": _op_replace,
    "move": _op_move, "copy": _op_copy, "test": _op_test,
}


# --------------------------------------------------------------------------------------------
# RFC 7386 JSON Merge Patch
# --------------------------------------------------------------------------------------------

def apply_merge_patch(doc: JSON, patch: JSON) -> JSON:
    """Apply an RFC 7386 merge patch: `null` deletes, objects merge recursively, any other
    value replaces. Like evanphx/json-patch, `null` members of objects placed into the result
    wholesale (including objects inside arrays) are pruned; `null` array elements are kept."""
    return _merge_value(_deepcopy(doc), _deepcopy(patch))


def _merge_value(target: JSON, patch: JSON) -> JSON:
    if not isinstance(patch, dict):
        return _prune_nulls(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_value(result.get(key), value)
    return result


def _prune_nulls(value: JSON) -> JSON:
    """Drop `null` object members at any depth (array elements are left alone)."""
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Strategic merge patch
# --------------------------------------------------------------------------------------------

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"
_SET_ELEMENT_ORDER = "$setElementOrder"
_DROP = object()  # "leave this value out" marker of the cleaning helpers


@dataclass(frozen=True)
class _FieldMeta:
    """Patch metadata of one field: its schema (for lists, the items' schema), its patch
    strategy ("", "merge" or "replace"; retainKeys only matters to the client) and merge key."""

    schema: Schema | None = None
    strategy: str = ""
    merge_key: str = ""


def apply_strategic_merge_patch(doc: JSON, patch: JSON, schema: Schema | None = None) -> JSON:
    """Apply a strategic merge patch to the object `doc`, the way the apiserver does.

    `schema` is the kind's definition (`schemas.schema_for(group, version, kind)`); where it is
    missing (None, or a field it does not describe) maps merge and lists are replaced, as in a
    JSON merge patch. Supports `$patch: replace|delete` (maps and list items),
    `$deleteFromPrimitiveList/<f>`, `$setElementOrder/<f>` and `$retainKeys`.
    """
    if patch is None:  # upstream decodes a `null` patch into an empty map
        patch = {}
    if not isinstance(patch, dict):
        raise _bad_request(f"json: cannot unmarshal {_json_type(patch)} into Go value of type "
                           "map[string]interface {}")
    if not isinstance(doc, dict):
        raise _bad_request("invalid JSON document")
    resolved = schemas.resolve(schema) if schema is not None else None
    return _merge_map(_deepcopy(doc), _deepcopy(patch), resolved)


# -- schema metadata --------------------------------------------------------------------------

def _field_meta(schema: Schema | None, key: str, *, is_list: bool) -> _FieldMeta:
    """Patch metadata for `key` of an object described by `schema`."""
    if not schema:
        return _FieldMeta()
    prop = (schema.get("properties") or {}).get(key)
    is_map_value = prop is None
    if is_map_value:  # a map's values: their schema, but no patch strategy of their own
        prop = schema.get("additionalProperties")
        if not isinstance(prop, dict):
            return _FieldMeta()
    resolved = schemas.resolve(prop)
    if is_list:
        items = resolved.get("items") if resolved else None
        resolved = schemas.resolve(items) if isinstance(items, dict) else None
    if is_map_value:
        return _FieldMeta(resolved)
    return _FieldMeta(resolved, _patch_strategy(prop),
                      prop.get("x-kubernetes-patch-merge-key", ""))


def _patch_strategy(prop: Schema) -> str:
    """The field's strategy apart from retainKeys (upstream `extractRetainKeysPatchStrategy`)."""
    raw = prop.get("x-kubernetes-patch-strategy") or ""
    parts = raw.split(",") if raw else []
    others = [p for p in parts if p != "retainKeys"]
    if len(parts) > 2 or (len(parts) == 2 and len(others) != 1):
        raise _smp_error(f"unexpected patch strategy: {_gofmt(parts)}")
    return others[0] if others else ""


def _directive_target(key: str, prefix: str) -> str:
    """`$setElementOrder/containers` → `containers` (upstream `extractKey`)."""
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        if prefix == _DELETE_FROM_PRIMITIVE_LIST:
            raise _bad_request("invalid patch format of primitive list")
        raise _bad_request("invalid patch format of setElementOrder list")
    return rest


# -- cleaning values taken from the patch -------------------------------------------------------

def _is_directive_key(key: str) -> bool:
    return (key in (_DIRECTIVE, _RETAIN_KEYS) or key.startswith(_SET_ELEMENT_ORDER)
            or key.startswith(_DELETE_FROM_PRIMITIVE_LIST))


def _clean(value: JSON, *, drop_marked: bool) -> JSON:
    """A patch value without `null` members and directive keys.

    With `drop_marked` (upstream's `removeDirectives`, used where the original has nothing),
    maps carrying `$patch` are dropped entirely, returning `_DROP` at the top.
    """
    if isinstance(value, dict):
        if drop_marked and value.get(_DIRECTIVE) is not None:
            return _DROP
        out = {}
        for key, item in value.items():
            if item is None or _is_directive_key(key):
                continue
            cleaned = _clean(item, drop_marked=drop_marked)
            if cleaned is not _DROP:
                out[key] = cleaned
        return out
    if isinstance(value, list):
        cleaned_items = (_clean(item, drop_marked=drop_marked) for item in value)
        return [item for item in cleaned_items if item is not _DROP]
    return value


def _literal(value: JSON) -> JSON:
    """A patch value upstream copies verbatim, as its typed round trip leaves it."""
    return _clean(value, drop_marked=False)


# -- maps ---------------------------------------------------------------------------------------

def _merge_map(original: dict[str, JSON], patch: dict[str, JSON],
               schema: Schema | None) -> dict[str, JSON]:
    """Merge `patch` into `original` (both owned by us; `original` is updated in place)."""
    if _DIRECTIVE in patch:
        return _map_directive(patch)
    _apply_retain_keys(original, patch)
    _apply_set_element_order(original, patch, schema)
    for key, value in list(patch.items()):
        _merge_field(original, key, value, schema)
    return original


def _map_directive(patch: dict[str, JSON]) -> dict[str, JSON]:
    """`$patch: replace` → the patch itself; `$patch: delete` → an empty map."""
    directive = patch[_DIRECTIVE]
    if directive == "replace":
        del patch[_DIRECTIVE]
        return _literal(patch)
    if directive == "delete":
        return {}
    raise _smp_error(f"unknown patch type: {_gofmt(directive)} in map: {_gofmt(patch)}")


def _apply_retain_keys(original: dict[str, JSON], patch: dict[str, JSON]) -> None:
    """`$retainKeys: [...]` clears every original key not listed; the patch may only set
    listed keys (nulls and parallel-list directives excepted)."""
    if _RETAIN_KEYS not in patch:
        return
    retained = patch.pop(_RETAIN_KEYS)
    if not isinstance(retained, list):
        raise _bad_request("invalid patch format of retainKeys")
    keep = {k for k in retained if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or key.startswith(_DELETE_FROM_PRIMITIVE_LIST) \
                or key.startswith(_SET_ELEMENT_ORDER):
            continue
        if key not in keep:
            raise _bad_request("invalid patch format of retainKeys")
    for key in [k for k in original if k not in keep]:
        del original[key]


def _merge_field(original: dict[str, JSON], key: str, value: JSON,
                 schema: Schema | None) -> None:
    """Merge one patch member into `original` (upstream `mergeMap`'s loop body)."""
    is_delete_list = key.startswith(_DELETE_FROM_PRIMITIVE_LIST)
    if is_delete_list:
        key = _directive_target(key, _DELETE_FROM_PRIMITIVE_LIST)
    if value is None:
        original.pop(key, None)
        return
    current = original.get(key, _MISSING)
    if current is _MISSING or _container_kind(current) != _container_kind(value):
        if not is_delete_list:
            _set_fresh(original, key, value)
        return
    if isinstance(value, dict):
        meta = _field_meta(schema, key, is_list=False)
        original[key] = (_literal(value) if meta.strategy == "replace"
                         else _merge_map(current, value, meta.schema))
    elif isinstance(value, list):
        meta = _field_meta(schema, key, is_list=True)
        original[key] = _merge_list_field(current, value, meta, is_delete_list)[0]
    else:
        original[key] = value


def _container_kind(value: JSON) -> str:
    return "map" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"


def _set_fresh(original: dict[str, JSON], key: str, value: JSON) -> None:
    """Take a patch value where the original has nothing comparable: nulls and directives go,
    and a map carrying `$patch` is dropped altogether (upstream #117568)."""
    cleaned = _clean(value, drop_marked=True)
    if cleaned is _DROP:
        original.pop(key, None)
    else:
        original[key] = cleaned


# -- lists --------------------------------------------------------------------------------------

# Merging a list of maps returns the merged list and `view`: what upstream's caller still sees
# of the original list afterwards. Go's `mergeSlice` deletes from that slice in place (shifting
# its backing array) and then appends into the room freed, so the caller's slice header shows
# the survivors, then the first new items, then stale entries. `$setElementOrder` orders the
# live items by that view, which decides where new items land; we reproduce it.

def _merge_list_field(original: list[JSON], patch: list[JSON], meta: _FieldMeta,
                      is_delete_list: bool) -> tuple[list[JSON], list[JSON]]:
    """Lists with strategy `merge` (and deletion lists) merge; all others are replaced.
    Returns the result and upstream's view of `original` afterwards."""
    if meta.strategy == "merge" or is_delete_list:
        return _merge_list(original, patch, meta, is_delete_list)
    return _literal(patch), original


def _merge_list(original: list[JSON], patch: list[JSON], meta: _FieldMeta,
                is_delete_list: bool) -> tuple[list[JSON], list[JSON]]:
    """Upstream `mergeSlice`: primitives are unioned (or deleted, for a deletion list), maps are
    merged by merge key; then the order is normalized (see `_normalize_order`)."""
    if not original and not patch:
        return original, original
    view = list(original)
    kind = _element_kind(original, patch)
    if kind == "scalar":
        if is_delete_list:
            return [v for v in original if not any(_scalar_eq(v, d) for d in patch)], view
        merged = _dedupe(original + patch)
        merge_key = ""
    else:
        merge_key = meta.merge_key
        if not merge_key:
            raise _smp_error("cannot merge lists without merge key for type map")
        original, patch, replaced = _apply_list_directives(original, patch, merge_key, view)
        merged = _merge_items_by_key(original, patch, merge_key, meta.schema,
                                     None if replaced else view)
    patch_items, server_only = _partition(merged, patch, merge_key, kind)
    return _normalize_order(patch_items, server_only, patch, original, merge_key, kind), view


def _element_kind(*lists: list[JSON]) -> str:
    """"map" or "scalar" for the elements of the lists, which must all be of one JSON type."""
    first: str | None = None
    for items in lists:
        for item in items:
            kind = _value_type(item)
            if first is None:
                if kind == "list":
                    raise PatchError("lists of lists are not supported")
                first = kind
            elif kind != first:
                raise _smp_error("list element types are not identical: "
                                 + _gofmt([list(items) for items in lists]))
    return "map" if first == "map" else "scalar"


def _value_type(value: JSON) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    return "string" if isinstance(value, str) else "null"


def _scalar_eq(a: JSON, b: JSON) -> bool:
    """Go's `==` on decoded JSON scalars: equal values of the same type, so `80` (an int64 to
    upstream's decoder) is not `80.0` (a float64) and `true` is not `1`."""
    return type(a) is type(b) and a == b


def _dedupe(items: list[JSON]) -> list[JSON]:
    out: list[JSON] = []
    for item in items:
        if not any(_scalar_eq(item, seen) for seen in out):
            out.append(item)
    return out


def _apply_list_directives(original: list[JSON], patch: list[JSON], merge_key: str,
                           view: list[JSON]) -> tuple[list[JSON], list[JSON], bool]:
    """Upstream `mergeSliceWithSpecialElements`: `{$patch: delete, <key>: v}` items delete the
    matching originals; a `{$patch: replace}` item makes the other patch items the whole list.
    Returns the (possibly reduced or replaced) original, the patch without directive items and
    whether the list was replaced; deletions are mirrored into `view`."""
    plain: list[JSON] = []
    replace = False
    original = list(original)
    for item in patch:
        if _DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            while (idx := _find_by_key(original, merge_key, item[merge_key])) is not None:
                del original[idx]
                view[:len(original)] = original  # Go shifts the shared backing array
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _smp_error("merging lists cannot yet be specified in the patch")
        else:
            raise _smp_error(f"unknown patch type: {_gofmt(directive)} in map: {_gofmt(item)}")
    if replace:
        return [_literal(item) for item in plain], [], True
    return original, plain, False


def _no_merge_key(item: JSON, merge_key: str) -> PatchError:
    return _smp_error(f"map: {_gofmt(item)} does not contain declared merge key: {merge_key}")


def _has_key_value(item: JSON, merge_key: str, value: JSON) -> bool:
    return isinstance(item, dict) and merge_key in item and _scalar_eq(item[merge_key], value)


def _find_by_key(items: list[JSON], merge_key: str, value: JSON) -> int | None:
    for i, item in enumerate(items):
        if _has_key_value(item, merge_key, value):
            return i
    return None


def _merge_items_by_key(original: list[JSON], patch: list[JSON], merge_key: str,
                        item_schema: Schema | None, view: list[JSON] | None) -> list[JSON]:
    """Merge each patch item into the original item with the same merge-key value, or append
    it (mirroring appends that land in the original's backing array into `view`)."""
    merged = list(original)
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        idx = _find_by_key(merged, merge_key, item[merge_key])
        if idx is None:
            new_item = _literal(item)
            if view is not None and len(merged) < len(view):
                view[len(merged)] = new_item
            merged.append(new_item)
        else:
            merged[idx] = _merge_map(merged[idx], item, item_schema)
    return merged


# -- ordering -----------------------------------------------------------------------------------

def _sort_value(item: JSON, merge_key: str, kind: str) -> JSON:
    """What identifies an item when ordering: its merge-key value, or the item itself."""
    if kind == "map":
        return item.get(merge_key) if isinstance(item, dict) else None
    return item


def _index(order: list[JSON], item: JSON, merge_key: str, kind: str) -> int:
    wanted = _sort_value(item, merge_key, kind)
    for i, candidate in enumerate(order):
        if _scalar_eq(_sort_value(candidate, merge_key, kind), wanted):
            return i
    return -1


def _partition(merged: list[JSON], present: list[JSON], merge_key: str,
               kind: str) -> tuple[list[JSON], list[JSON]]:
    """Split `merged` into the items that appear in `present` and the others."""
    if kind == "map":
        if not merge_key:
            raise _smp_error("cannot merge lists without merge key for type map")
        for item in merged:
            if not isinstance(item, dict) or merge_key not in item:
                raise _no_merge_key(item, merge_key)
    inside, outside = [], []
    for item in merged:
        (inside if _index(present, item, merge_key, kind) >= 0 else outside).append(item)
    return inside, outside


def _sort_by(items: list[JSON], order: list[JSON], merge_key: str, kind: str) -> list[JSON]:
    """Upstream `normalizeSliceOrder`: sort `items` by their position in `order`, items carrying
    `$patch: delete` last. Upstream's comparator calls any item missing from `order` "less"
    than its neighbour, so the outcome depends on Go's sort algorithm, which we replay."""
    deleted: list[JSON] = []
    if kind == "map":
        for item in (*items, *order):
            if not isinstance(item, dict) or merge_key not in item:
                raise _no_merge_key(item, merge_key)
        deleted = [i for i in items if i.get(_DIRECTIVE) == "delete"]
        items = [i for i in items if i.get(_DIRECTIVE) != "delete"]
    ranked = [(_index(order, item, merge_key, kind), item) for item in items]

    def less(i: int, j: int) -> bool:
        pi, pj = ranked[i][0], ranked[j][0]
        return pi < pj if pi >= 0 and pj >= 0 else True

    _go_stable_sort(ranked, less)
    return [item for _, item in ranked] + deleted


def _go_stable_sort(data: list[Any], less: Callable[[int, int], bool]) -> None:
    """Go's `sort.SliceStable` (insertion-sorted blocks of 20, then SymMerge), in place."""
    n = len(data)
    block = 20
    a, b = 0, block
    while b <= n:
        _go_insertion_sort(data, less, a, b)
        a, b = b, b + block
    _go_insertion_sort(data, less, a, n)
    while block < n:
        a, b = 0, 2 * block
        while b <= n:
            _go_sym_merge(data, less, a, a + block, b)
            a, b = b, b + 2 * block
        if a + block < n:
            _go_sym_merge(data, less, a, a + block, n)
        block *= 2


def _go_swap(data: list[Any], i: int, j: int) -> None:
    data[i], data[j] = data[j], data[i]


def _go_insertion_sort(data: list[Any], less: Callable[[int, int], bool], a: int, b: int) -> None:
    for i in range(a + 1, b):
        j = i
        while j > a and less(j, j - 1):
            _go_swap(data, j, j - 1)
            j -= 1


def _go_sym_merge(data: list[Any], less: Callable[[int, int], bool], a: int, m: int,
                  b: int) -> None:
    if m - a == 1:
        i, j = m, b
        while i < j:
            h = (i + j) // 2
            if less(h, a):
                i = h + 1
            else:
                j = h
        for k in range(a, i - 1):
            _go_swap(data, k, k + 1)
        return
    if b - m == 1:
        i, j = a, m
        while i < j:
            h = (i + j) // 2
            if not less(m, h):
                i = h + 1
            else:
                j = h
        for k in range(m, i, -1):
            _go_swap(data, k, k - 1)
        return
    mid = (a + b) // 2
    n = mid + m
    start, r = (n - b, mid) if m > mid else (a, m)
    p = n - 1
    while start < r:
        c = (start + r) // 2
        if not less(p - c, c):
            start = c + 1
        else:
            r = c
    end = n - start
    if start < m < end:
        _go_rotate(data, start, m, end)
    if a < start < mid:
        _go_sym_merge(data, less, a, start, mid)
    if mid < end < b:
        _go_sym_merge(data, less, mid, end, b)


def _go_rotate(data: list[Any], a: int, m: int, b: int) -> None:
    i, j = m - a, b - m
    while i != j:
        if i > j:
            _go_swap_range(data, m - i, m, j)
            i -= j
        else:
            _go_swap_range(data, m - i, m + j - i, i)
            j -= i
    _go_swap_range(data, m - i, m, i)


def _go_swap_range(data: list[Any], a: int, b: int, n: int) -> None:
    for i in range(n):
        _go_swap(data, a + i, b + i)


def _normalize_order(patch_items: list[JSON], server_only: list[JSON], patch_order: list[JSON],
                     server_order: list[JSON], merge_key: str, kind: str) -> list[JSON]:
    """Upstream `normalizeElementOrder`: patch items in patch order, server-only items in live
    order, interleaved by `_merge_sorted`. Note an item new to the list comes before the
    server-only items that follow it — adding an item without `$setElementOrder` prepends it."""
    patch_items = _sort_by(patch_items, patch_order, merge_key, kind)
    server_only = _sort_by(server_only, server_order, merge_key, kind)
    return _merge_sorted(server_only, patch_items, server_order, merge_key, kind)


def _merge_sorted(left: list[JSON], right: list[JSON], server_order: list[JSON],
                  merge_key: str, kind: str) -> list[JSON]:
    """Upstream `mergeSortedSlice`: take `left` (server-only) items first only while both items
    are in the live list and the left one comes earlier there; otherwise take `right`."""
    out: list[JSON] = []
    i = j = 0
    while i < len(left) and j < len(right):
        li = _index(server_order, left[i], merge_key, kind)
        ri = _index(server_order, right[j], merge_key, kind)
        if li >= 0 and ri >= 0 and li < ri:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    return out + left[i:] + right[j:]


# -- $setElementOrder ---------------------------------------------------------------------------

def _apply_set_element_order(original: dict[str, JSON], patch: dict[str, JSON],
                             schema: Schema | None) -> None:
    """Upstream `mergePatchIntoOriginal`: for each `$setElementOrder/<f>`, merge list `<f>` now
    and order it: listed items in the directive's order, the live list's other items
    interleaved by their live position. Both the directive and `<f>` leave the patch."""
    for directive_key in [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]:
        order = patch.pop(directive_key)
        if not isinstance(order, list):
            raise _smp_error(f"expected a []interface {{}}, but received a {_go_type(order)}")
        field = _directive_target(directive_key, _SET_ELEMENT_ORDER)
        current = _list_member(original, field)
        patch_list = _list_member(patch, field)
        meta = _field_meta(schema, field, is_list=True)
        _validate_set_element_order(patch_list or [], order, meta.merge_key)
        server_order = current or []
        if current is not None and patch_list is not None:
            merged, server_order = _merge_list_field(current, patch_list, meta, False)
        elif current is not None:
            merged = current
        elif patch_list is not None:
            merged = _clean(patch_list, drop_marked=True)
        else:
            continue
        if not current and not patch_list:
            raise _smp_error("no elements in any of the given slices")
        kind = _element_kind(server_order, patch_list or [])
        merge_key = meta.merge_key if kind == "map" else ""
        listed, others = _partition(merged, order, merge_key, kind)
        original[field] = _normalize_order(listed, others, order, server_order, merge_key, kind)
        patch.pop(field, None)


def _list_member(container: dict[str, JSON], key: str) -> list[JSON] | None:
    """`container[key]`, which must be a list if present."""
    if key not in container:
        return None
    value = container[key]
    if not isinstance(value, list):
        raise _smp_error(f"expected a []interface {{}}, but received a {_go_type(value)}")
    return value


def _go_type(value: JSON) -> str:
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    return "string" if isinstance(value, str) else "%!s(<nil>)"


def _validate_set_element_order(patch_list: list[JSON], order: list[JSON],
                                merge_key: str) -> None:
    """The patch list's items (deletions aside) must appear in `order`, in the same order."""
    if not order or not patch_list:
        return
    items = patch_list
    if merge_key:
        for item in patch_list:
            if not isinstance(item, dict):
                raise _smp_error(f"expected a map[string]interface {{}}, but received a "
                                 f"{_go_type(item)}")
        items = [i for i in patch_list if i.get(_DIRECTIVE) != "delete"]
    pi = si = 0
    while pi < len(items) and si < len(order):
        if isinstance(items[pi], dict) and _DIRECTIVE in items[pi]:
            pi += 1
            continue
        if _merge_key_equal(items[pi], order[si], merge_key):
            pi += 1
        si += 1
    if pi < len(items) and si >= len(order):
        raise _smp_error(f"The order in patch list:\n{_gofmt(patch_list)}\n doesn't match "
                         f"{_SET_ELEMENT_ORDER} list:\n{_gofmt(order)}")


def _merge_key_equal(left: JSON, right: JSON, merge_key: str) -> bool:
    if not merge_key:
        return _json_equal(left, right)
    for item in (left, right):
        if not isinstance(item, dict):
            raise _smp_error(f"expected a map[string]interface {{}}, but received a "
                             f"{_go_type(item)}")
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
    return _scalar_eq(left[merge_key], right[merge_key])


# --------------------------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------------------------

def apply_patch(doc: JSON, patch: JSON | bytes | str, content_type: str,
                schema: Schema | None = None) -> JSON:
    """Apply a PATCH request body to `doc` according to its Content-Type.

    `patch` is the raw body (bytes/str, decoded as JSON; undecodable → 400) or an already
    decoded value. Media-type parameters (`; charset=utf-8`) are ignored. Any other type
    raises `UnsupportedPatchType` (415).
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in PATCH_TYPES:
        raise UnsupportedPatchType(
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(PATCH_TYPES))
    body = _decode(patch) if isinstance(patch, (bytes, bytearray, memoryview, str)) else patch
    if media_type == JSON_PATCH:
        return apply_json_patch(doc, body)
    if media_type == MERGE_PATCH:
        if not isinstance(body, dict) or not isinstance(doc, dict):
            raise _bad_request("Invalid JSON Patch")
        return apply_merge_patch(doc, body)
    return apply_strategic_merge_patch(doc, body, schema)


def _decode(raw: bytes | bytearray | memoryview | str) -> JSON:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad_request(f"error decoding patch: {exc}") from None
