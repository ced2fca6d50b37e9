"""Structural OpenAPI v3 schemas of custom resources: validation, pruning, defaulting.

As upstream's apiextensions-apiserver: a CRD version's `openAPIV3Schema` validates custom
objects with kube-openapi's messages and field paths
(`spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer:
"string"`), drops fields the schema does not declare (unless
`x-kubernetes-preserve-unknown-fields`), and fills `default`s (on requests and when reading
from storage). `apiVersion`, `kind` and `metadata` at the root (and in
`x-kubernetes-embedded-resource` objects) are always known. Pure data, no I/O.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from pyk8s.api import errors
from pyk8s.api.errors import StatusCause

Schema = dict[str, Any]

_META_KEYS = ("apiVersion", "kind", "metadata")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_ok(t: str, v: Any) -> bool:
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        return (isinstance(v, int) and not isinstance(v, bool)) or \
            (isinstance(v, float) and v.is_integer())
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return True


def _go_value(v: Any) -> str:
    """A value as kube-openapi prints it after the type error (`"string"`, `5`, `null`)."""
    return errors._fmt(v)  # noqa: SLF001 — same formatting as field errors


# --- validation --------------------------------------------------------------------------------

_NO_OLD = object()


def validate(obj: Any, schema: Schema | None, old: Any = _NO_OLD) -> list[StatusCause]:
    """Causes for everything in `obj` the schema rejects ([] when valid); `old` (the object
    before an update) lets CEL transition rules (`oldSelf`) run."""
    if not schema:
        return []
    out: list[StatusCause] = []
    _validate(obj, schema, "", out, root=True, old=old if old is not None else _NO_OLD)
    return out


def _validate(v: Any, s: Schema, path: str, out: list[StatusCause], *, root: bool = False,
              old: Any = _NO_OLD) -> None:
    shown = path or "<root>"
    if v is None:
        if s.get("nullable"):
            return
        if s.get("type"):
            out.append(errors.cause(shown, f"Invalid value: \"null\": {shown} in body must be "
                                    f"of type {s['type']}: \"null\"", "FieldValueTypeInvalid"))
        return
    if s.get("x-kubernetes-int-or-string"):
        if not (isinstance(v, str) or _type_ok("integer", v)):
            out.append(errors.cause(shown, f"Invalid value: {_go_value(v)}: {shown} in body must "
                                    f"be of type integer-or-string: {_go_value(v)}",
                                    "FieldValueTypeInvalid"))
            return
    t = s.get("type")
    if t and not _type_ok(t, v):
        tname = {"object": "object", "array": "array"}.get(t, t)
        out.append(errors.cause(shown, f"Invalid value: {_go_value(_type_name_value(v))}: {shown} "
                                f"in body must be of type {tname}: {_go_value(_type_name_value(v))}",
                                "FieldValueTypeInvalid"))
        return
    if "enum" in s and v not in s["enum"]:
        out.append(errors.field_not_supported(shown, v, [
            e if isinstance(e, str) else str(e) for e in s["enum"]]))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if "minimum" in s:
            lo = s["minimum"]
            if (v <= lo) if s.get("exclusiveMinimum") else (v < lo):
                rel = "greater than" if s.get("exclusiveMinimum") else "greater than or equal to"
                out.append(errors.field_invalid(shown, v, f"{shown} in body should be {rel} {lo}"))
        if "maximum" in s:
            hi = s["maximum"]
            if (v >= hi) if s.get("exclusiveMaximum") else (v > hi):
                rel = "less than" if s.get("exclusiveMaximum") else "less than or equal to"
                out.append(errors.field_invalid(shown, v, f"{shown} in body should be {rel} {hi}"))
        if s.get("multipleOf") and v % s["multipleOf"]:
            out.append(errors.field_invalid(
                shown, v, f"{shown} in body should be a multiple of {s['multipleOf']}"))
    if isinstance(v, str):
        if "minLength" in s and len(v) < s["minLength"]:
            out.append(errors.field_invalid(
                shown, v, f"{shown} in body should be at least {s['minLength']} chars long"))
        if "maxLength" in s and len(v) > s["maxLength"]:
            out.append(errors.cause(shown, f"Too long: may not be more than {s['maxLength']} "
                                    "bytes", "FieldValueTooLong"))
        if "pattern" in s:
            try:
                ok = re.search(s["pattern"], v) is not None
            except re.error:
                ok = True
            if not ok:
                out.append(errors.field_invalid(
                    shown, v, f"{shown} in body should match '{s['pattern']}'"))
    if isinstance(v, list):
        if "minItems" in s and len(v) < s["minItems"]:
            out.append(errors.field_invalid(
                shown, v, f"{shown} in body should have at least {s['minItems']} items"))
        if "maxItems" in s and len(v) > s["maxItems"]:
            out.append(errors.cause(shown, f"Too many: {len(v)}: must have at most "
                                    f"{s['maxItems']} items", "FieldValueTooMany"))
        _validate_list_type(v, s, path, out)
        items = s.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(v):
                _validate(item, items, f"{path}[{i}]", out)
    if isinstance(v, dict):
        props = s.get("properties") or {}
        for req in s.get("required") or []:
            if req not in v:
                out.append(errors.field_required(_join(path, req)))
        if "minProperties" in s and len(v) < s["minProperties"]:
            out.append(errors.field_invalid(shown, v, f"{shown} in body should have at least "
                                            f"{s['minProperties']} properties"))
        if "maxProperties" in s and len(v) > s["maxProperties"]:
            out.append(errors.cause(shown, f"Too many: {len(v)}: must have at most "
                                    f"{s['maxProperties']} items", "FieldValueTooMany"))
        extra = s.get("additionalProperties")
        for k, sub in v.items():
            if (root or s.get("x-kubernetes-embedded-resource")) and k == "metadata":
                continue
            p = props.get(k)
            sub_old = old.get(k, _NO_OLD) if isinstance(old, dict) else _NO_OLD
            if isinstance(p, dict):
                _validate(sub, p, _join(path, k), out, old=sub_old)
            elif isinstance(extra, dict):
                _validate(sub, extra, _join(path, k), out, old=sub_old)
        if s.get("x-kubernetes-embedded-resource"):
            for k in ("apiVersion", "kind"):
                if not v.get(k):
                    out.append(errors.field_required(_join(path, k),
                                                     "must not be empty"))
    if s.get("x-kubernetes-validations"):
        _validate_cel(v, s["x-kubernetes-validations"], path, old, out)
    for sub in s.get("allOf") or []:
        if isinstance(sub, dict):
            _validate(v, sub, path, out)
    if isinstance(s.get("not"), dict):
        tmp: list[StatusCause] = []
        _validate(v, s["not"], path, tmp)
        if not tmp:
            out.append(errors.field_invalid(shown, v, f"{shown} in body must not validate the "
                                            "schema (not)"))
    for key in ("anyOf", "oneOf"):
        alts = [a for a in s.get(key) or [] if isinstance(a, dict)]
        if alts:
            passing = 0
            for a in alts:
                tmp = []
                _validate(v, a, path, tmp)
                passing += not tmp
            if passing == 0 or (key == "oneOf" and passing > 1):
                what = "any of" if key == "anyOf" else "only one of"
                out.append(errors.field_invalid(shown, v, f"{shown} in body must validate "
                                                f"{what} the schemas ({key})"))


def _type_name_value(v: Any) -> Any:
    """kube-openapi prints the Go type name for composite values."""
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number" if isinstance(v, float) and not v.is_integer() else "integer"
    if isinstance(v, str):
        return "string"
    return v


def _validate_list_type(v: list, s: Schema, path: str, out: list[StatusCause]) -> None:
    lt = s.get("x-kubernetes-list-type")
    if lt == "set":
        seen: list[Any] = []
        for i, item in enumerate(v):
            if item in seen:
                out.append(errors.field_duplicate(f"{path}[{i}]", item))
            else:
                seen.append(item)
    elif lt == "map":
        keys = s.get("x-kubernetes-list-map-keys") or []
        seen_keys: set[tuple] = set()
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                continue
            k = tuple(repr(item.get(mk)) for mk in keys)
            if k in seen_keys:
                shown = ", ".join(f'"{mk}":{errors._fmt(item.get(mk))}' for mk in keys)  # noqa: SLF001
                out.append(errors.cause(f"{path}[{i}]",
                                        f"Duplicate value: map[string]interface {{}}{{{shown}}}",
                                        "FieldValueDuplicate"))
            seen_keys.add(k)


_COMPILED: dict[str, Any] = {}


def _validate_cel(v: Any, rules: list, path: str, old: Any, out: list[StatusCause]) -> None:
    """`x-kubernetes-validations`: CEL rules (the subset `pyk8s.api.cel` knows)."""
    from pyk8s.api import cel
    shown = path or "<root>"
    for rule in rules:
        if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str):
            continue
        src = rule["rule"]
        try:
            ast = _COMPILED.get(src)
            if ast is None:
                ast = _COMPILED[src] = cel.compile_rule(src)
            if cel.uses_old_self(ast) and old is _NO_OLD:
                continue  # transition rules run on updates only
            env = {"self": v} if old is _NO_OLD else {"self": v, "oldSelf": old}
            ok = cel.evaluate(ast, env)
            detail = None if ok is True else (rule.get("message") or f"failed rule: {src}")
        except cel.CELError as e:
            detail = f"{e} evaluating rule: {src}"
        if detail is None:
            continue
        field = shown
        fp = rule.get("fieldPath")
        if isinstance(fp, str) and fp:
            field = (path + fp) if fp.startswith(".") and path else fp.lstrip(".")
        reason = {"FieldValueForbidden": "FieldValueForbidden",
                  "FieldValueRequired": "FieldValueRequired",
                  "FieldValueDuplicate": "FieldValueDuplicate"}.get(rule.get("reason", ""),
                                                                     "FieldValueInvalid")
        out.append(errors.cause(field, f"Invalid value: {_go_value(_type_name_value(v))}: "
                                f"{detail}", reason))


# --- pruning -------------------------------------------------------------------------------------

def prune(obj: Any, schema: Schema | None) -> list[str]:
    """Remove fields the schema does not declare from `obj` in place; return their paths."""
    if not schema or not isinstance(obj, dict):
        return []
    unknown: list[str] = []
    _prune(obj, schema, "", unknown, root=True)
    return unknown


def _prune(v: Any, s: Schema, path: str, unknown: list[str], *, root: bool = False) -> None:
    if isinstance(v, dict):
        props = s.get("properties") or {}
        extra = s.get("additionalProperties")
        preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
        meta_ok = root or bool(s.get("x-kubernetes-embedded-resource"))
        for k in list(v):
            if meta_ok and k in _META_KEYS:
                continue
            p = props.get(k)
            if isinstance(p, dict):
                _prune(v[k], p, _join(path, k), unknown)
            elif isinstance(extra, dict):
                _prune(v[k], extra, _join(path, k), unknown)
            elif extra is True or preserve:
                continue
            else:
                unknown.append(_join(path, k))
                del v[k]
    elif isinstance(v, list) and isinstance(s.get("items"), dict):
        for i, item in enumerate(v):
            _prune(item, s["items"], f"{path}[{i}]", unknown)


# --- defaulting ----------------------------------------------------------------------------------

def default(obj: Any, schema: Schema | None) -> None:
    """Fill `default`s of missing (or null, non-nullable) properties into `obj` in place."""
    if schema:
        _default(obj, schema)


def _default(v: Any, s: Schema) -> None:
    if isinstance(v, dict):
        for k, p in (s.get("properties") or {}).items():
            if not isinstance(p, dict):
                continue
            if "default" in p and (k not in v or (v[k] is None and not p.get("nullable"))):
                v[k] = copy.deepcopy(p["default"])
            if k in v:
                _default(v[k], p)
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            for k in list(v):
                if k not in (s.get("properties") or {}):
                    _default(v[k], extra)
    elif isinstance(v, list) and isinstance(s.get("items"), dict):
        for item in v:
            _default(item, s["items"])


# --- the schema itself ---------------------------------------------------------------------------

def check_structural(schema: Any, path: str) -> list[StatusCause]:
    """Upstream's structural-schema basics: every specified node has a type (except below
    `x-kubernetes-preserve-unknown-fields` / int-or-string), the root is an object."""
    out: list[StatusCause] = []
    if not isinstance(schema, dict):
        return [errors.field_required(path)]
    if schema.get("type") != "object":
        out.append(errors.field_invalid(f"{path}.type", schema.get("type", ""),
                                        "must be object at the root"))
    _check_node(schema, path, out)
    return out


def _check_node(s: Schema, path: str, out: list[StatusCause]) -> None:
    from pyk8s.api import cel
    for i, rule in enumerate(s.get("x-kubernetes-validations") or []):
        src = rule.get("rule") if isinstance(rule, dict) else None
        p = f"{path}.x-kubernetes-validations[{i}].rule"
        if not isinstance(src, str) or not src:
            out.append(errors.field_required(p))
            continue
        try:
            cel.compile_rule(src)
        except cel.CELError as e:
            out.append(errors.field_invalid(p, src, f"compilation failed: {e}"))
    if not s.get("type") and not s.get("x-kubernetes-int-or-string") and \
            not s.get("x-kubernetes-preserve-unknown-fields"):
        out.append(errors.field_required(f"{path}.type",
                                         "must not be empty for specified object fields"))
    for k, p in (s.get("properties") or {}).items():
        if isinstance(p, dict):
            _check_node(p, f"{path}.properties[{k}]", out)
    if isinstance(s.get("items"), dict):
        _check_node(s["items"], f"{path}.items", out)
    if isinstance(s.get("additionalProperties"), dict):
        _check_node(s["additionalProperties"], f"{path}.additionalProperties", out)
    if s.get("properties") and isinstance(s.get("additionalProperties"), dict):
        out.append(errors.field_forbidden(f"{path}.additionalProperties",
                                          "additionalProperties and properties are mutual "
                                          "exclusive"))
