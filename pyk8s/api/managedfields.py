"""Field ownership (`metadata.managedFields`) and server-side apply, as pure functions.

This is upstream's structured-merge-diff v4 (`fieldpath`, `typed`, `merge`) plus the field
manager chain of `k8s.io/apimachinery/pkg/util/managedfields/internal` (1.32), over JSON dicts:

* `FieldSet` — a set of field paths, each a tuple of path elements in their FieldsV1 spelling:
  `f:<name>` (struct field or map entry), `k:{"name":"x"}` (item of a list keyed by its map
  keys, JSON with the keys sorted), `v:<json>` (item of a set), `i:<n>` (an index; upstream
  only reads these, from old data). `from_fields_v1` / `to_fields_v1` read and write upstream's
  FieldsV1 JSON: members without children are `{}`, a member that also has children carries
  `".": {}` (written first), keys at each level in upstream's order (fields, then keys, then
  values, then indices; values ordered numbers < strings < bools < lists < maps < null).
* `fieldset_of(obj, schema)` — upstream's `TypedValue.ToFieldSet` minus the metadata fields
  upstream never records (apiVersion, kind, metadata.name/namespace/uid/…).
* `update_managed_fields(live, new, manager, …)` — the managedFields after a create, update
  or non-apply patch (upstream `FieldManager.UpdateNoErrors`).
* `apply(live, applied, manager, …)` — server-side apply: the merged object with its new
  managedFields, or `ApplyConflict` (409) naming the conflicting managers and fields.

Schemas are the kind's OpenAPI definition (`schemas.schema_for`); list and map topology comes
from `x-kubernetes-list-type` / `-list-map-keys` / `-map-type` (lists without a list type are
atomic, as upstream; a `patch-strategy: merge` list without one is associative, as upstream's
schema conversion does). Without a schema (custom resources) values are "deduced": maps are
granular, lists atomic.

Upstream compares the Go structs, not the JSON the client sent: a non-omitempty field is always
there (`containers: null`, `creationTimestamp: null`, `status: {}`), an omitempty field holding
its zero value is not. That is what decides whether a map or list newly appears (and so is owned
as a whole, the `".": {}` entries). Comparisons here see objects the same way, from the Go field
table of `pyk8s.api.protobuf_types` (omitempty flags and zero values of the built-in kinds):
creating an object compares it with the kind's zero value, as upstream does. Kinds outside that
table compare as sent.

Semantics kept from upstream, some of them quirks clients can observe:

* Update: the writer gains every field it added or changed; every other manager loses the
  fields whose value changed and the fields that were removed; the writer's `time` changes only
  when it took some field. Entries are keyed by (manager, operation, apiVersion for Update,
  subresource); at most 10 Update entries are kept, older ones merge into `ancient-changes`.
  A request carrying `managedFields: []` or `[{}]` resets them; a request without any (or with
  undecodable ones) keeps live's; a subresource request always keeps live's. An update of an
  existing object that has no managedFields does not start tracking (only creates and applies
  do). If the field sets cannot be computed (an item of a keyed list without its key, …) the
  managedFields are dropped, as 1.32's `UpdateNoErrors` does.
* Apply: the config is merged into live (keyed lists by key, sets by value, atomic lists and
  maps replaced, list order as upstream's merge); the applier's entry becomes exactly the
  config's field set; fields it applied last time and omits now are removed unless another
  manager owns them; a field whose value the apply changes and that another manager (Apply or
  Update) owns is a conflict unless `force`, which moves ownership. Equal values are shared, not
  conflicts. Manager `kubectl` may take over fields recorded in the last-applied annotation
  (client-side apply upgrade), and keeps that annotation in sync. An apply that changes nothing
  in the object does not update the applier's `time` (and a new applier then gets an entry
  without `time` — upstream issue 127938). An object without managedFields gets a
  `before-first-apply` Update entry for its existing fields first.

Differences from upstream:

* Managers recorded at another apiVersion are compared as if their paths were the same in the
  request's version (no conversion).
* Upstream defaults the merged object after apply (a field removed by apply comes back with its
  default); the caller runs defaulting on the returned object.
* Where apply empties a map or list by removing fields, the key is dropped (upstream leaves a
  `null` that the Go struct turns into an absent or zero field).
* Unchanged sub-objects are detected with Python equality, which takes `true` for `1`.
* An existing object is recognised by `live` not being None and having a `metadata.uid`.

Nothing here does I/O or mutates its inputs. The returned objects are fresh, except inside
managedFields entries: their `fieldsV1` dicts share the parts that did not change with live's
(treat them as immutable, like every object shared through the watch cache).

Cost: updates compare live and new (unchanged sub-objects are skipped whole) and touch only
the managers owning a changed or removed field, editing their encoded FieldsV1 along the
changed paths instead of decoding them; creating a typical Deployment's managedFields takes
about 0.05-0.1 ms.
"""
from __future__ import annotations

import datetime
import functools
import json
import math
import re
import threading
from typing import Any, Iterable, Iterator

import orjson

from pyk8s.api import schemas
from pyk8s.api.errors import ApiError, BadRequest, Conflict, StatusCause

try:  # Go field table of the built-in kinds (omitempty, zero values)
    from pyk8s.api import protobuf as _pb
    from pyk8s.api import protobuf_types as _pb_types
except Exception:  # pragma: no cover - the table is optional
    _pb = None
    _pb_types = None

__all__ = [
    "FieldSet", "ApplyConflict", "TypedError", "fieldset_of", "update_managed_fields", "apply",
    "path_string", "LAST_APPLIED_ANNOTATION", "MAX_UPDATE_MANAGERS",
]

JSON = Any
Path = tuple[str, ...]

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
MAX_UPDATE_MANAGERS = 10  # upstream DefaultMaxUpdateManagers
_ANCIENT = "ancient-changes"
_BEFORE_FIRST_APPLY = "before-first-apply"
_TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


# ============================================================================================
# Go-compatible JSON for path elements (jsoniter ConfigCompatibleWithStandardLibrary)
# ============================================================================================

_NEEDS_ESCAPE = re.compile('["\\\\<>&\x00-\x1f\u2028\u2029]')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
            "<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
            "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_string(s: str) -> str:
    """A JSON string as Go's encoding/json writes it (HTML characters escaped)."""
    if not _NEEDS_ESCAPE.search(s):
        return '"' + s + '"'
    out = []
    for c in s:
        e = _ESCAPES.get(c)
        if e is not None:
            out.append(e)
        elif c < " ":
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _go_float(f: float) -> str:
    """A float64 as encoding/json writes it."""
    if f != f or f in (math.inf, -math.inf):
        raise ValueError(f"json: unsupported value: {f}")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    r = repr(f)
    a = abs(f)
    if 1e-6 <= a < 1e21:
        if "e" in r or "E" in r:
            import decimal
            r = format(decimal.Decimal(r), "f")
        if r.endswith(".0"):
            r = r[:-2]
        return r
    # exponent form, with Go's clean-up of a two-digit negative exponent (e-07 -> e-7)
    mant, _, exp = r.partition("e")
    if mant.endswith(".0"):
        mant = mant[:-2]
    sign = exp[0] if exp[0] in "+-" else "+"
    digits = exp.lstrip("+-")
    if sign == "-" and len(digits) == 2 and digits[0] == "0":
        digits = digits[1]
    elif len(digits) < 2:
        digits = "0" + digits
    return f"{mant}e{sign}{digits}"


def _go_json(v: JSON) -> str:
    """Compact JSON with sorted map keys, as Go marshals decoded JSON values."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    t = type(v)
    if t is str:
        return _go_string(v)
    if t is int:
        return str(v)
    if t is float:
        return _go_float(v)
    if t is dict:
        return "{" + ",".join(_go_string(k) + ":" + _go_json(v[k]) for k in sorted(v)) + "}"
    if t is list or t is tuple:
        return "[" + ",".join(_go_json(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return _go_float(float(v))
    if isinstance(v, str):
        return _go_string(str(v))
    raise TypeError(f"not a JSON value: {type(v).__name__}")


def _go_quote(s: str) -> str:
    """Go's `%q` (strconv.Quote)."""
    out = ['"']
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c.isprintable():
            out.append(c)
        else:
            o = ord(c)
            simple = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}
            if o in simple:
                out.append(simple[o])
            elif o < 0x80:
                out.append("\\x%02x" % o)
            elif o < 0x10000:
                out.append("\\u%04x" % o)
            else:
                out.append("\\U%08x" % o)
    out.append('"')
    return "".join(out)


def _go_format_float(f: float) -> str:
    """Go's `%v` of a float64 (strconv 'g' with the shortest representation)."""
    if f != f:
        return "NaN"
    if f in (math.inf, -math.inf):
        return "+Inf" if f > 0 else "-Inf"
    if f == int(f) and abs(f) < 1e21:
        return str(int(f))
    r = repr(f)
    if "e" in r:
        mant, _, exp = r.partition("e")
        sign = "-" if exp.startswith("-") else "+"
        digits = exp.lstrip("+-").rjust(2, "0")
        return f"{mant}e{sign}{digits}"
    return r


def _go_tostring(v: JSON) -> str:
    """structured-merge-diff's `value.ToString`, used in path strings."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _go_format_float(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _go_quote(v)
    if isinstance(v, list):
        return "[" + ",".join(_go_tostring(x) for x in v) + "]"
    if isinstance(v, dict):
        return "".join(f"{k}={_go_tostring(v[k])}" for k in sorted(v))
    return str(v)


def _loads(text: str) -> JSON:
    return orjson.loads(text)


# ============================================================================================
# Path elements
# ============================================================================================

_INDEX_RE = re.compile(r"[+-]?[0-9]+\Z")


def _key_pe(fields: dict[str, JSON]) -> str:
    return "k:{" + ",".join(_go_string(k) + ":" + _go_json(fields[k]) for k in sorted(fields)) + "}"


@functools.lru_cache(maxsize=1 << 16)
def _canonical_pe(text: str) -> str | None:
    """A FieldsV1 key in its canonical spelling; None for element types upstream skips.
    Raises ValueError for a malformed key."""
    if len(text) < 2:
        raise ValueError("key must be 2 characters long:")
    if text[1] != ":":
        raise ValueError(f"missing colon: {text}")
    c = text[0]
    if c == "f":
        return text
    if c == "v":
        try:
            return "v:" + _go_json(_loads(text[2:]))
        except (orjson.JSONDecodeError, TypeError, ValueError) as e:
            raise ValueError(f"parsing key as path element: {text}: {e}") from None
    if c == "k":
        try:
            fields = _loads(text[2:])
        except orjson.JSONDecodeError as e:
            raise ValueError(f"parsing key as path element: {text}: {e}") from None
        if not isinstance(fields, dict):
            raise ValueError(f"parsing key as path element: {text}: expected an object")
        return _key_pe(fields)
    if c == "i":
        if not _INDEX_RE.match(text[2:]):
            raise ValueError(f'strconv.Atoi: parsing "{text[2:]}": invalid syntax')
        return "i:%d" % int(text[2:])
    return None


def _value_order(v: JSON) -> tuple:
    """structured-merge-diff's `value.Compare` order as a sort key."""
    if v is None:
        return (5,)
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, (int, float)):
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, list):
        return (3, tuple(_value_order(x) for x in v))
    if isinstance(v, dict):
        return (4, tuple((k, _value_order(v[k])) for k in sorted(v)))
    return (6,)


@functools.lru_cache(maxsize=1 << 16)
def _pe_order(e: str) -> tuple:
    """`PathElement.Compare` as a sort key: fields < keys < values < indices."""
    c = e[0]
    if c == "f":
        return (0, e[2:])
    if c == "k":
        d = _loads(e[2:])
        return (1, tuple((k, _value_order(d[k])) for k in sorted(d)))
    if c == "v":
        return (2, _value_order(_loads(e[2:])))
    return (3, int(e[2:]))


@functools.lru_cache(maxsize=1 << 16)
def _pe_string(e: str) -> str:
    """`PathElement.String`: `.name`, `[name="x",port=80]`, `[=value]`, `[3]`."""
    c = e[0]
    if c == "f":
        return "." + e[2:]
    if c == "k":
        d = _loads(e[2:])
        return "[" + ",".join(f"{k}={_go_tostring(d[k])}" for k in sorted(d)) + "]"
    if c == "v":
        return "[=" + _go_tostring(_loads(e[2:])) + "]"
    return "[" + e[2:] + "]"


def path_string(path: Iterable[str]) -> str:
    """Upstream's spelling of a path: `.spec.template.spec.containers[name="nginx"].image`."""
    return "".join(_pe_string(e) for e in path)


def _sorted_pes(keys: Iterable[str]) -> list[str]:
    """Path elements in upstream's order (plain string order among field names)."""
    fields = []
    others = []
    for k in keys:
        (fields if k[0] == "f" else others).append(k)
    fields.sort()
    if others:
        others.sort(key=_pe_order)
        fields.extend(others)
    return fields


def _normalize_path(p: Iterable[str] | str) -> Path:
    """A reset path from the caller: element strings (`"f:status"` or bare `"status"`)."""
    if isinstance(p, str):
        p = (p,)
    out = []
    for e in p:
        if len(e) >= 2 and e[1] == ":" and e[0] in "fkvi":
            out.append(_canonical_pe(e) or e)
        else:
            out.append("f:" + e)
    return tuple(out)


# ============================================================================================
# FieldSet
# ============================================================================================

class FieldSet(frozenset):
    """A set of field paths (tuples of FieldsV1 path elements). Set operations return
    FieldSets; `recursive_difference` also drops everything under the other set's paths."""

    __slots__ = ()

    @classmethod
    def from_fields_v1(cls, fields: JSON) -> "FieldSet":
        """Decode upstream's FieldsV1 JSON. Raises ValueError when it is malformed; path
        elements of unknown types are skipped, as upstream does."""
        if fields is None:
            return cls()
        if not isinstance(fields, dict):
            raise ValueError("FieldsV1 must be a JSON object")
        out: list[Path] = []
        _read_v1(fields, (), out)
        return cls(out)

    def to_fields_v1(self) -> dict[str, JSON]:
        """Encode as upstream's FieldsV1 JSON (deterministic order, as upstream writes it)."""
        root: dict = {}
        for p in self:
            node = root
            for e in p:
                child = node.get(e)
                if child is None:
                    child = node[e] = {}
                node = child
            node["."] = True
        return _emit_v1(root)

    # -- set algebra returning FieldSets ------------------------------------------------
    def union(self, *others: Iterable[Path]) -> "FieldSet":  # type: ignore[override]
        return FieldSet(frozenset.union(self, *others))

    def intersection(self, *others: Iterable[Path]) -> "FieldSet":  # type: ignore[override]
        return FieldSet(frozenset.intersection(self, *others))

    def difference(self, *others: Iterable[Path]) -> "FieldSet":  # type: ignore[override]
        return FieldSet(frozenset.difference(self, *others))

    def __or__(self, other: Any) -> "FieldSet":
        return FieldSet(frozenset.__or__(self, other))

    def __and__(self, other: Any) -> "FieldSet":
        return FieldSet(frozenset.__and__(self, other))

    def __sub__(self, other: Any) -> "FieldSet":
        return FieldSet(frozenset.__sub__(self, other))

    def recursive_difference(self, other: Iterable[Path]) -> "FieldSet":
        return FieldSet(_recursive_difference(self, frozenset(other)))

    # -- inspection ---------------------------------------------------------------------------
    def iter_paths(self) -> Iterator[Path]:
        """Paths in upstream's `Set.Iterate` order (at each level the members, then the
        children, each in path-element order)."""
        return _iterate(self)

    def paths(self) -> list[str]:
        """The members as upstream spells them (`.spec.replicas`), in upstream's order."""
        return [path_string(p) for p in _iterate(self)]

    def __repr__(self) -> str:
        return f"FieldSet({self.paths()!r})"


def _read_v1(d: dict, prefix: Path, out: list[Path]) -> bool:
    """Upstream's readIterV1: returns whether `prefix` itself is a member."""
    is_member = False
    has_children = False
    for key, child in d.items():
        if key == ".":
            is_member = True
            continue
        pe = _canonical_pe(key)
        if pe is None:
            continue
        if not isinstance(child, dict):
            raise ValueError(f"FieldsV1 entry {key!r} must be a JSON object")
        has_children = True
        p = prefix + (pe,)
        if _read_v1(child, p, out):
            out.append(p)
    return is_member or not has_children


def _emit_v1(tree: dict) -> dict:
    out: dict[str, JSON] = {}
    member = tree.pop(".", False)
    if not tree:
        return out
    if member:
        out["."] = {}
    for e in _sorted_pes(tree):
        out[e] = _emit_v1(tree[e])
    return out


def _iterate(paths: Iterable[Path]) -> Iterator[Path]:
    root: dict = {}
    for p in paths:
        node = root
        for e in p:
            child = node.get(e)
            if child is None:
                child = node[e] = {}
            node = child
        node["."] = True

    def walk(node: dict, prefix: Path) -> Iterator[Path]:
        keys = _sorted_pes(k for k in node if k != ".")
        for e in keys:
            if "." in node[e]:
                yield prefix + (e,)
        for e in keys:
            child = node[e]
            if len(child) > ("." in child):
                yield from walk(child, prefix + (e,))

    return walk(root, ())


def _recursive_difference(paths: Iterable[Path], remove: frozenset) -> set[Path]:
    """The paths none of whose prefixes (nor themselves) are in `remove`."""
    if not remove:
        return set(paths)
    firsts = {r[0] for r in remove if r}
    longest = max(len(r) for r in remove)
    out = set()
    for p in paths:
        if not p or p[0] not in firsts:
            out.add(p)
            continue
        for i in range(1, min(len(p), longest) + 1):
            if p[:i] in remove:
                break
        else:
            out.add(p)
    return out


def _v1_remove(fields: dict, paths: Iterable[Path]) -> dict:
    """FieldsV1 `fields` without the member `paths`, editing copies of only the nodes on those
    paths (the result shares every other node with `fields`)."""
    root = dict(fields)
    copied = {id(root)}
    for p in paths:
        chain = [root]
        node = root
        for e in p:
            child = node.get(e)
            if child is None:
                break
            if id(child) not in copied:
                child = dict(child)
                node[e] = child
                copied.add(id(child))
            chain.append(child)
            node = child
        else:
            if len(node) > ("." in node):  # has children: just no longer a member itself
                node.pop(".", None)
                continue
            i = len(p) - 1
            del chain[i][p[i]]
            while i > 0:  # parents left empty were not members; members left bare are leaves
                parent = chain[i]
                if not parent:
                    del chain[i - 1][p[i - 1]]
                    i -= 1
                    continue
                if len(parent) == 1 and "." in parent:
                    parent.clear()
                break
    return root


def _v1_add(fields: dict, paths: Iterable[Path]) -> dict:
    """FieldsV1 `fields` with the member `paths` added (copy-on-write, keys kept in order)."""
    root = dict(fields)
    copied = {id(root)}
    created: set[int] = set()  # new nodes: empty ones are members only if a path ends there
    leaf_members: set[int] = set()
    touched: dict[int, dict] = {}
    for p in paths:
        node = root
        last = len(p) - 1
        for i, e in enumerate(p):
            child = node.get(e)
            if child is None:
                child = {}
                node[e] = child
                copied.add(id(child))
                created.add(id(child))
                touched[id(node)] = node
            elif id(child) not in copied:
                child = dict(child)
                node[e] = child
                copied.add(id(child))
            if i < last and not child and (id(child) not in created
                                           or id(child) in leaf_members):
                child["."] = {}  # a member leaf getting children stays a member
                touched[id(child)] = child
            node = child
        if node:
            if "." not in node:
                node["."] = {}
                touched[id(node)] = node
        else:
            leaf_members.add(id(node))
    for node in touched.values():
        member = node.pop(".", None)
        items = [(k, node[k]) for k in _sorted_pes(node)]
        node.clear()
        if member is not None and items:
            node["."] = {}
        node.update(items)
    return root


def _tree(paths: Iterable[Path]) -> dict:
    """Nested dicts of path elements, "." marking members (for removal walks)."""
    root: dict = {}
    for p in paths:
        node = root
        for e in p:
            child = node.get(e)
            if child is None:
                child = node[e] = {}
            node = child
        node["."] = True
    return root


# ============================================================================================
# Schema nodes
# ============================================================================================

_SCALAR, _MAP, _LIST, _DEDUCED = 0, 1, 2, 3
_ATOMIC, _SET, _ASSOC = 0, 1, 2

# Defaults of list-map key fields (`+default` markers upstream's schema carries but the
# published JSON schemas drop): used for items that omit the key.
_KEY_DEFAULTS = {
    ("io.k8s.api.core.v1.ContainerPort", "protocol"): "TCP",
    ("io.k8s.api.core.v1.ServicePort", "protocol"): "TCP",
}


class _Go:
    """Go shape of a struct: absent field -> zero value; omitempty fields dropped when zero."""

    __slots__ = ("zeros", "zero_keys", "nullz", "omit")

    def __init__(self) -> None:
        self.zeros: dict[str, JSON] = {}
        self.zero_keys: frozenset[str] = frozenset()
        self.nullz: dict[str, JSON] = {}
        self.omit: dict[str, int] = {}


class _Node:
    __slots__ = ("kind", "atomic", "fields", "fpe", "elem", "rel", "keys", "key_prefix",
                 "key_defaults", "go", "stype", "name")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.atomic = False
        self.fields: dict[str, _Node] | None = None
        self.fpe: dict[str, str] | None = None
        self.elem: _Node | None = None
        self.rel = _ATOMIC
        self.keys: tuple[str, ...] = ()
        self.key_prefix: tuple[tuple[str, str], ...] = ()
        self.key_defaults: dict[str, JSON] = {}
        self.go: _Go | None = None
        self.stype = "untyped"
        self.name = ""

    def __repr__(self) -> str:
        return f"<_Node {self.kind} {self.name}>"


_DEDUCED_NODE = _Node(_DEDUCED)
_DEDUCED_NODE.name = "__untyped_deduced_"
_DMAP = _Node(_MAP)
_DMAP.elem = _DEDUCED_NODE
_DMAP.name = "__untyped_deduced_map"
_DLIST = _Node(_LIST)
_DLIST.elem = _DEDUCED_NODE
_DLIST.rel = _ATOMIC
_DLIST.name = "__untyped_deduced_list"
_DSCALAR = _Node(_SCALAR)
_DSCALAR.name = "__untyped_deduced_scalar"


def _deduce(v: JSON) -> _Node | None:
    if v is _MISSING:
        return None
    t = type(v)
    if t is dict:
        return _DMAP
    if t is list:
        return _DLIST
    return _DSCALAR


def _primary_type(s: dict) -> str | None:
    t = s.get("type")
    if isinstance(t, list):
        for x in t:
            if x != "null":
                return x
        return None
    return t if isinstance(t, str) else None


def _ref_of(s: dict) -> str | None:
    ref = s.get("$ref")
    if isinstance(ref, str):
        return schemas.ref_name(ref)
    all_of = s.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict) \
            and isinstance(all_of[0].get("$ref"), str):
        return schemas.ref_name(all_of[0]["$ref"])
    return None


# Nodes of every definition, built once (all together, under a lock: definitions refer to each
# other recursively, and no thread may see one half-built).
_def_nodes: dict[str, _Node] | None = None
_def_lock = threading.Lock()
_build: dict[str, Any] = {}  # the build under way: {"thread", "nodes", "overrides"}


def _def_node(name: str) -> _Node:
    nodes = _def_nodes
    if nodes is None:
        if _build.get("thread") == threading.get_ident():
            return _build["nodes"].get(name, _DEDUCED_NODE)
        nodes = _build_definitions()
    return nodes.get(name, _DEDUCED_NODE)


def _build_definitions() -> dict[str, _Node]:
    global _def_nodes
    with _def_lock:
        if _def_nodes is not None:
            return _def_nodes
        defs = schemas.definitions()
        nodes = {name: _Node(_DEDUCED) for name in defs}
        overrides: list[tuple[_Node, str, bool]] = []
        _build.update(thread=threading.get_ident(), nodes=nodes, overrides=overrides)
        try:
            for name, schema in defs.items():
                _fill(nodes[name], schema, name)
            for node, ref, atomic in overrides:  # `$ref` with its own map type
                base = nodes[ref]
                for attr in _Node.__slots__:
                    setattr(node, attr, getattr(base, attr))
                node.atomic = atomic
        finally:
            _build.clear()
        _def_nodes = nodes
        return nodes


def _node_of(s: JSON) -> _Node:
    if not isinstance(s, dict):
        return _DEDUCED_NODE
    ref = _ref_of(s)
    if ref is not None:
        base = _def_node(ref)
        mt = s.get("x-kubernetes-map-type")
        if mt in ("atomic", "granular"):
            building = _build.get("thread") == threading.get_ident()
            if building and ref in _build["nodes"]:
                node = _Node(_DEDUCED)
                _build["overrides"].append((node, ref, mt == "atomic"))
                return node
            if base.kind == _MAP and (mt == "atomic") != base.atomic:
                copy = _copy_node(base)
                copy.atomic = mt == "atomic"
                return copy
        return base
    node = _Node(_DEDUCED)
    _fill(node, s, "")
    return node


def _copy_node(n: _Node) -> _Node:
    c = _Node(n.kind)
    for attr in _Node.__slots__:
        setattr(c, attr, getattr(n, attr))
    return c


def _fill(node: _Node, s: dict, name: str) -> None:
    node.name = name
    t = _primary_type(s)
    props = s.get("properties")
    addl = s.get("additionalProperties")
    if s.get("x-kubernetes-int-or-string") or "oneOf" in s or "anyOf" in s:
        node.kind = _SCALAR
        node.stype = "untyped"
        return
    if isinstance(props, dict) or t == "object" or isinstance(addl, dict):
        node.kind = _MAP
        node.atomic = s.get("x-kubernetes-map-type") == "atomic"
        if isinstance(props, dict):
            node.fields = {k: _node_of(v) for k, v in props.items()}
            node.fpe = {k: "f:" + k for k in props}
            if isinstance(addl, dict):
                node.elem = _node_of(addl)
            elif s.get("x-kubernetes-preserve-unknown-fields") or addl is True:
                node.elem = _DEDUCED_NODE
            if name:
                node.go = _go_info(name)
        else:
            node.elem = _node_of(addl) if isinstance(addl, dict) else _DEDUCED_NODE
        return
    if t == "array":
        node.kind = _LIST
        items = s.get("items")
        node.elem = _node_of(items) if isinstance(items, dict) else _DEDUCED_NODE
        lt = s.get("x-kubernetes-list-type")
        keys: list[str] = []
        if lt == "set":
            node.rel = _SET
        elif lt == "map":
            node.rel = _ASSOC
            keys = [k for k in s.get("x-kubernetes-list-map-keys") or () if isinstance(k, str)]
        elif lt is None and s.get("x-kubernetes-patch-strategy") in ("merge", "merge,retainKeys"):
            mk = s.get("x-kubernetes-patch-merge-key")
            node.rel = _ASSOC
            keys = [mk] if isinstance(mk, str) else []
            if not keys:
                node.rel = _SET
        else:
            node.rel = _ATOMIC
        if node.rel == _ASSOC and not keys:
            node.rel = _SET
        node.keys = tuple(sorted(keys))
        node.key_prefix = tuple((k, _go_string(k) + ":") for k in node.keys)
        item_name = _ref_of(items) if isinstance(items, dict) else None
        item_schema = schemas.definitions().get(item_name) if item_name else items
        for k in node.keys:
            default = _KEY_DEFAULTS.get((item_name or "", k), _MISSING)
            if default is _MISSING and isinstance(item_schema, dict):
                prop = (item_schema.get("properties") or {}).get(k)
                if isinstance(prop, dict) and "default" in prop:
                    default = prop["default"]
            if default is not _MISSING:
                node.key_defaults[k] = default
        return
    if t in ("string", "integer", "number", "boolean"):
        node.kind = _SCALAR
        node.stype = {"string": "string", "boolean": "boolean"}.get(t, "numeric")
        return
    node.kind = _DEDUCED  # no type: anything goes


@functools.cache
def _def_names() -> dict[int, str]:
    return {id(v): k for k, v in schemas.definitions().items()}


_root_cache: dict[int, tuple[dict, _Node]] = {}


def _root_node(schema: dict | None) -> _Node:
    if schema is None:
        return _DEDUCED_NODE
    hit = _root_cache.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    name = _def_names().get(id(schema))
    node = _def_node(name) if name else _node_of(schema)
    if len(_root_cache) > 1024:
        _root_cache.clear()
    _root_cache[id(schema)] = (schema, node)
    return node


def _field_node(node: _Node, key: str) -> _Node:
    """The node of map key `key` (deduced when the schema does not know it)."""
    if node.fields is not None:
        c = node.fields.get(key)
        if c is not None:
            return c
    return node.elem or _DEDUCED_NODE


def _child_node(node: _Node, e: str) -> _Node:
    k = node.kind
    if k == _MAP:
        if e[0] == "f":
            if node.fields is not None:
                c = node.fields.get(e[2:])
                if c is not None:
                    return c
            return node.elem or _DEDUCED_NODE
        return _DEDUCED_NODE
    if k == _LIST:
        return node.elem or _DEDUCED_NODE
    return _DEDUCED_NODE


# -- Go shapes ----------------------------------------------------------------------------------

_SCALAR_EMPTY, _COLLECTION_EMPTY, _POINTER_EMPTY = 1, 2, 3


@functools.cache
def _go_info(def_name: str) -> _Go | None:
    if _pb is None or _pb_types is None:
        return None
    if not (def_name.startswith("io.k8s.api.")
            or def_name.startswith("io.k8s.apimachinery.pkg.apis.meta.")):
        return None
    head, version, kind = def_name.rsplit(".", 2)
    msg = f"{head.rsplit('.', 1)[-1]}/{version}.{kind}"
    if msg not in _pb_types.MESSAGES:
        return None
    try:
        specs = _pb.message_fields(msg)
        go = _Go()
        for spec in specs:
            if spec.inline:
                continue
            t = spec.type
            form = t.form
            if form in ("message", "special"):  # structs are never omitted
                z = _pb.zero_value(t)
                go.zeros[spec.json] = z
                go.nullz[spec.json] = z
            elif spec.omitempty:
                if form in ("list", "map", "wrapper") or t.name == "bytes":
                    go.omit[spec.json] = _COLLECTION_EMPTY
                elif form == "pointer":
                    go.omit[spec.json] = _POINTER_EMPTY
                else:
                    go.omit[spec.json] = _SCALAR_EMPTY
            else:
                z = _pb.zero_value(t)
                go.zeros[spec.json] = z
                if form == "scalar" and t.name != "bytes":
                    go.nullz[spec.json] = z
        go.zero_keys = frozenset(go.zeros)
        return go
    except Exception:  # pragma: no cover - a table we cannot read: compare as sent
        return None


def _empty(v: JSON, code: int) -> bool:
    if v is None:
        return True
    if code == _SCALAR_EMPTY:
        t = type(v)
        if t is str:
            return not v
        if t is bool:
            return not v
        if t is int or t is float:
            return v == 0
        return False
    if code == _COLLECTION_EMPTY:
        t = type(v)
        return (t is list or t is dict or t is str) and not v
    return False


def _eff(m: dict, key: str, go: _Go) -> JSON:
    """The value of struct field `key` as the Go struct renders it (_MISSING when omitted)."""
    v = m.get(key, _MISSING)
    if v is _MISSING:
        return go.zeros.get(key, _MISSING)
    if v is None:
        z = go.nullz.get(key, _MISSING)
        if z is not _MISSING:
            return z
    code = go.omit.get(key)
    if code is not None and _empty(v, code):
        return _MISSING
    return v


def _map_empty(m: dict | None, go: _Go | None) -> bool:
    """Whether a (present) map renders as an empty map."""
    if m is None:
        return True
    if go is None:
        return not m
    if go.zeros:
        return False
    if not m:
        return True
    omit = go.omit
    for k, v in m.items():
        code = omit.get(k)
        if code is None or not _empty(v, code):
            return False
    return True


def _norm(node: _Node, v: JSON) -> JSON:
    """The full Go rendering of a value (for comparing atomic values)."""
    if v is _MISSING:
        return v
    if node.kind == _DEDUCED:
        return v
    if node.kind == _MAP and type(v) is dict:
        go = node.go
        out: dict = {}
        if go is not None:
            for zk in go.zero_keys:
                if zk not in v:
                    out[zk] = go.zeros[zk]
        fields = node.fields
        for key, val in v.items():
            e = _eff(v, key, go) if go is not None else val
            if e is _MISSING:
                continue
            child = fields.get(key) if fields is not None else None
            if child is None:
                child = node.elem
            out[key] = _norm(child, e) if child is not None else e
        return out
    if node.kind == _LIST and type(v) is list and node.elem is not None:
        return [_norm(node.elem, x) for x in v]
    return v


def _needs_norm(node: _Node) -> bool:
    return node.go is not None or (node.kind == _LIST and node.elem is not None
                                   and node.elem.kind == _MAP and node.elem.go is not None)


# ============================================================================================
# Errors
# ============================================================================================

class TypedError(ValueError):
    """An object does not fit its schema the way structured-merge-diff needs (a keyed list
    item without its key, duplicate keys, a field the schema does not declare, …)."""

    def __init__(self, errors: list[tuple[Path, str]]) -> None:
        self.errors = errors
        super().__init__(self.text())

    def text(self) -> str:
        parts = [f"{path_string(p)}: {m}" if p else m for p, m in self.errors]
        if len(parts) == 1:
            return parts[0]
        return "\n".join(["errors:"] + ["  " + p for p in parts])


class _TypedApiError(ApiError):
    """Upstream passes typed-conversion failures through unmapped: 500 without a reason."""

    code, reason = 500, ""

    def status(self) -> dict[str, Any]:
        out = super().status()
        if not out.get("reason"):
            out.pop("reason", None)
        return out


class _CallableStr(str):
    """A str that is also callable (`err.message` and `err.message()` both work)."""

    def __call__(self) -> str:
        return str(self)


class ApplyConflict(Conflict):
    """409: an apply would change fields other managers own. `conflicts` lists
    (manager, path) pairs; the manager is upstream's manager identifier (the JSON of the
    managedFields entry without fields and time) or a plain name."""

    code, reason = 409, "Conflict"

    def __init__(self, conflicts: list[tuple[str, str]]) -> None:
        self.conflicts = list(conflicts)
        text = _conflict_message(self.conflicts)
        super().__init__(text, details={"causes": self.causes()})
        self.message = _CallableStr(text)

    def causes(self) -> list[StatusCause]:
        return [{"reason": "FieldManagerConflict", "message": f"conflict with {_print_manager(m)}",
                 "field": p} for m, p in self.conflicts]

    def managers(self) -> list[str]:
        """The conflicting managers' names."""
        out: list[str] = []
        for m, _ in self.conflicts:
            name = _manager_fields(m).get("manager", m)
            if name not in out:
                out.append(name)
        return out


def _manager_fields(identifier: str) -> dict:
    try:
        d = json.loads(identifier)
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _print_manager(identifier: str) -> str:
    """Upstream's printManager."""
    try:
        d = json.loads(identifier)
        if not isinstance(d, dict):
            raise ValueError
    except ValueError:
        return _go_quote(identifier)
    s = _go_quote(str(d.get("manager") or ""))
    if d.get("subresource"):
        s = f"{s} with subresource {_go_quote(str(d['subresource']))}"
    if d.get("operation") == "Update":
        if d.get("time"):
            return f"{s} using {d.get('apiVersion', '')} at {d['time']}"
        return f"{s} using {d.get('apiVersion', '')}"
    return s


def _conflict_message(conflicts: list[tuple[str, str]]) -> str:
    if len(conflicts) == 1:
        m, p = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {_print_manager(m)}: {p}"
    by_manager: dict[str, list[str]] = {}
    for m, p in conflicts:
        by_manager.setdefault(m, []).append(p)
    lines = []
    for m in sorted(by_manager):
        lines.append(f"conflicts with {_print_manager(m)}:")
        lines.extend(f"- {p}" for p in by_manager[m])
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


class _Conflicts(Exception):
    def __init__(self, sets: dict[tuple, frozenset]) -> None:
        self.sets = sets


# ============================================================================================
# Walkers
# ============================================================================================

def _item_pe(node: _Node, item: JSON, go: _Go | None = None) -> str:
    """The path element of an item of an associative list (raises _ItemError). With `go`,
    key fields are read as the item's Go struct renders them."""
    if node.keys:
        if item is None:
            raise _ItemError("associative list with keys may not have a null element")
        if type(item) is not dict:
            raise _ItemError("associative list with keys may not have non-map elements")
        parts = []
        for k, prefix in node.key_prefix:
            v = item.get(k, _MISSING) if go is None else _eff(item, k, go)
            if v is _MISSING:
                v = node.key_defaults.get(k, _MISSING)
                if v is _MISSING:
                    raise _ItemError(f'associative list with keys has an element that omits key '
                                     f'field "{k}" (and doesn\'t have default value)')
            parts.append(prefix + (_go_string(v) if type(v) is str else _go_json(v)))
        return "k:{" + ",".join(parts) + "}"
    t = type(item)
    if t is dict:
        raise _ItemError("associative list without keys has an element that's a map type")
    if t is list:
        raise _ItemError("not supported yet")
    return "v:" + (_go_string(item) if t is str else _go_json(item))


class _ItemError(Exception):
    pass


def _compare(root: _Node, lhs: JSON, rhs: JSON) -> tuple[set[Path], set[Path], set[Path]]:
    """typed.Compare over Go-rendered values: (added, removed, modified)."""
    added: set[Path] = set()
    removed: set[Path] = set()
    modified: set[Path] = set()
    errors: list[tuple[Path, str]] = []

    def leaf(l: JSON, r: JSON, path: Path) -> None:
        if l is _MISSING:
            added.add(path)
        elif r is _MISSING:
            removed.add(path)
        elif not _eq(l, r):
            modified.add(path)

    def cmp(node: _Node, l: JSON, r: JSON, path: Path) -> None:
        tl = type(l)
        if (tl is dict or tl is list) and (l is r or l == r):
            return
        if node.kind == _DEDUCED:
            nl, nr = _deduce(l), _deduce(r)
            if r is _MISSING:
                is_leaf = handle(nl, l, r, path)  # type: ignore[arg-type]
            elif l is _MISSING or nl is nr:
                is_leaf = handle(nr, l, r, path)  # type: ignore[arg-type]
            else:
                handle(nl, l, r, path)  # type: ignore[arg-type]
                is_leaf = handle(nr, l, r, path)  # type: ignore[arg-type]
        else:
            is_leaf = handle(node, l, r, path)
        if not is_leaf and path:
            if l is _MISSING:
                added.add(path)
            elif r is _MISSING:
                removed.add(path)

    def handle(node: _Node, l: JSON, r: JSON, path: Path) -> bool:
        kind = node.kind
        if kind == _SCALAR:
            leaf(l, r, path)
            return True
        if kind == _MAP:
            lm = l if type(l) is dict else None
            rm = r if type(r) is dict else None
            go = node.go
            if node.atomic:
                if _needs_norm(node):
                    leaf(_norm(node, l), _norm(node, r), path)
                else:
                    leaf(l, r, path)
                return True
            if _map_empty(lm, go) and _map_empty(rm, go):
                leaf({} if lm is not None else l, {} if rm is not None else r, path)
                return True
            fields = node.fields
            elem = node.elem
            fpe = node.fpe
            if lm is None:
                keys: Iterable[str] = rm  # type: ignore[assignment]
            elif rm is None:
                keys = lm
            elif lm.keys() == rm.keys():
                keys = lm
            else:
                keys = lm.keys() | rm.keys()
            if go is not None and go.zero_keys and (lm is None or rm is None):
                keys = set(keys) | go.zero_keys
            for key in keys:
                child = fields.get(key) if fields is not None else None
                if child is None:
                    child = elem
                    if child is None:
                        continue
                    pe = "f:" + key
                else:
                    pe = fpe[key]  # type: ignore[index]
                if go is None:
                    lv = lm.get(key, _MISSING) if lm is not None else _MISSING
                    rv = rm.get(key, _MISSING) if rm is not None else _MISSING
                else:
                    lv = _eff(lm, key, go) if lm is not None else _MISSING
                    rv = _eff(rm, key, go) if rm is not None else _MISSING
                    if lv is _MISSING and rv is _MISSING:
                        continue
                if child.kind == _SCALAR:  # inlined leaf()
                    if lv is _MISSING:
                        added.add(path + (pe,))
                    elif rv is _MISSING:
                        removed.add(path + (pe,))
                    elif lv is not rv and not _eq(lv, rv):
                        modified.add(path + (pe,))
                    continue
                cmp(child, lv, rv, path + (pe,))
            return False
        # list
        ll = l if type(l) is list else None
        rl = r if type(r) is list else None
        if node.rel == _ATOMIC or (not ll and not rl):
            if node.rel == _ATOMIC and _needs_norm(node):
                leaf(_norm(node, l), _norm(node, r), path)
            else:
                leaf(l, r, path)
            return True
        elem = node.elem or _DEDUCED_NODE
        item_go = elem.go
        lvals: dict[str, list] = {}
        order: list[str] = []
        if ll:
            for i, item in enumerate(ll):
                try:
                    pe = _item_pe(node, item, item_go)
                except _ItemError as e:
                    errors.append((path, f"element {i}: {e}"))
                    continue
                got = lvals.get(pe)
                if got is None:
                    lvals[pe] = [item]
                    order.append(pe)
                else:
                    got.append(item)
        rvals: dict[str, list] = {}
        if rl:
            for i, item in enumerate(rl):
                try:
                    pe = _item_pe(node, item, item_go)
                except _ItemError as e:
                    errors.append((path, f"element {i}: {e}"))
                    continue
                got = rvals.get(pe)
                if got is None:
                    rvals[pe] = [item]
                    if pe not in lvals:
                        order.append(pe)
                else:
                    got.append(item)
        for pe in order:
            a = lvals.get(pe)
            b = rvals.get(pe)
            na = len(a) if a else 0
            nb = len(b) if b else 0
            p = path + (pe,)
            if na <= 1 and nb <= 1:
                cmp(elem, a[0] if a else _MISSING, b[0] if b else _MISSING, p)
            elif na >= 2 and nb >= 2:
                if na != nb or not all(_eq(x, y) for x, y in zip(a, b)):  # type: ignore[arg-type]
                    modified.add(p)
            elif na >= 2:
                if nb:
                    cmp(elem, _MISSING, b[0], p)  # type: ignore[index]
                removed.add(p)
            else:
                if na:
                    cmp(elem, a[0], _MISSING, p)  # type: ignore[index]
                added.add(p)
        return False

    cmp(root, lhs, rhs, ())
    if errors:
        raise TypedError(errors)
    added.discard(())
    removed.discard(())
    modified.discard(())
    return added, removed, modified


def _eq(a: JSON, b: JSON) -> bool:
    """structured-merge-diff's value.Equals: numbers compare numerically, bools are not
    numbers, maps ignore key order."""
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is dict:
            if len(a) != len(b):
                return False
            for k, v in a.items():
                w = b.get(k, _MISSING)
                if w is _MISSING or not _eq(v, w):
                    return False
            return True
        if ta is list:
            return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
        return a == b
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a == b
    return False


def _field_set(root: _Node, obj: JSON) -> set[Path]:
    """typed.ToFieldSet: leaves, list items, map entries, and named fields holding null or an
    empty map; atomic lists and maps as single leaves."""
    out: set[Path] = set()
    add = out.add

    def walk(node: _Node, v: JSON, path: Path) -> None:
        kind = node.kind
        if kind == _DEDUCED:
            node = _deduce(v) or _DSCALAR
            kind = node.kind
        if kind == _SCALAR:
            add(path)
            return
        if kind == _LIST:
            if node.rel == _ATOMIC:
                add(path)
                return
            if type(v) is not list:
                return
            elem = node.elem or _DEDUCED_NODE
            seen = set()
            for item in v:
                try:
                    pe = _item_pe(node, item)
                except _ItemError:
                    continue
                if pe in seen:
                    continue
                seen.add(pe)
                p = path + (pe,)
                walk(elem, item, p)
                add(p)
            return
        if node.atomic:
            add(path)
            return
        if type(v) is not dict:
            return
        fields = node.fields
        elem = node.elem
        fpe = node.fpe
        for key, val in v.items():
            child = fields.get(key) if fields is not None else None
            if child is None:
                if elem is None:
                    continue
                p = path + ("f:" + key,)
                walk(elem, val, p)
                add(p)
            else:
                p = path + (fpe[key],)  # type: ignore[index]
                walk(child, val, p)
                if val is None or (type(val) is dict and not val):
                    add(p)

    walk(root, obj, ())
    out.discard(())
    return out


def _validate(root: _Node, obj: JSON) -> list[tuple[Path, str]]:
    """The checks upstream's typed conversion makes of an applied configuration."""
    errors: list[tuple[Path, str]] = []

    def walk(node: _Node, v: JSON, path: Path) -> None:
        kind = node.kind
        if kind == _DEDUCED or v is None:
            return
        if kind == _SCALAR:
            st = node.stype
            if st == "numeric" and (type(v) not in (int, float)):
                errors.append((path, f"expected numeric (int or float), got {_go_type(v)}"))
            elif st == "string" and type(v) is not str:
                errors.append((path, f"expected string, got {_gofmt(v)}"))
            elif st == "boolean" and type(v) is not bool:
                errors.append((path, f"expected boolean, got {_gofmt(v)}"))
            return
        if kind == _LIST:
            if type(v) is not list:
                errors.append((path, f"expected list, got {_gofmt(v)}"))
                return
            elem = node.elem or _DEDUCED_NODE
            if node.rel == _ATOMIC:
                for i, item in enumerate(v):
                    walk(elem, item, path + ("i:%d" % i,))
                return
            seen = set()
            for i, item in enumerate(v):
                try:
                    pe = _item_pe(node, item)
                except _ItemError as e:
                    errors.append((path, f"element {i}: {e}"))
                    return
                if pe in seen:
                    errors.append((path, f"duplicate entries for key {_pe_string(pe)}"))
                seen.add(pe)
                walk(elem, item, path + (pe,))
            return
        if type(v) is not dict:
            errors.append((path, f"expected map, got {_gofmt(v)}"))
            return
        fields = node.fields
        for key, val in v.items():
            child = fields.get(key) if fields is not None else None
            if child is None:
                child = node.elem
                if child is None:
                    errors.append((path + ("f:" + key,), "field not declared in schema"))
                    return
            walk(child, val, path + ("f:" + key,))

    walk(root, obj, ())
    return errors


def _go_type(v: JSON) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, list):
        return "[]interface {}"
    return type(v).__name__


def _gofmt(v: JSON) -> str:
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_gofmt(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_gofmt(x) for x in v) + "]"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _go_format_float(v)
    return str(v)


def _merge(root: _Node, lhs: JSON, rhs: JSON) -> JSON:
    """typed.Merge (rhs wins at leaves); shares sub-values of its inputs."""

    def merge(node: _Node, l: JSON, r: JSON) -> JSON:
        if node.kind == _DEDUCED:
            nl, nr = _deduce(l), _deduce(r)
            if r is _MISSING:
                node = nl  # type: ignore[assignment]
            else:
                node = nr  # type: ignore[assignment]
                if nl is not nr:
                    l = _MISSING
        kind = node.kind
        if kind == _SCALAR:
            return r if r is not _MISSING else l
        if kind == _LIST:
            ll = l if type(l) is list else None
            rl = r if type(r) is list else None
            if node.rel == _ATOMIC or (not ll and not rl):
                return r if r is not _MISSING else l
            return merge_list(node, ll or [], rl or [])
        lm = l if type(l) is dict else None
        rm = r if type(r) is dict else None
        if node.atomic or (not lm and not rm):
            return r if r is not _MISSING else l
        out: dict = {}
        if lm:
            for k, lv in lm.items():
                m = merge(_field_node(node, k), lv, rm.get(k, _MISSING) if rm else _MISSING)
                if m is not _MISSING:
                    out[k] = m
        if rm:
            for k, rv in rm.items():
                if lm and k in lm:
                    continue
                m = merge(_field_node(node, k), _MISSING, rv)
                if m is not _MISSING:
                    out[k] = m
        return out if out else _MISSING

    def index(node: _Node, items: list) -> tuple[list[str], dict[str, JSON]]:
        order: list[str] = []
        seen: dict[str, JSON] = {}
        for item in items:
            try:
                pe = _item_pe(node, item)
            except _ItemError:
                continue
            if pe in seen:
                continue
            seen[pe] = item
            order.append(pe)
        return order, seen

    def merge_list(node: _Node, ll: list, rl: list) -> JSON:
        elem = node.elem or _DEDUCED_NODE
        r_order, r_obs = index(node, rl)
        l_order, l_obs = index(node, ll)
        shared = [pe for pe in r_order if pe in l_obs]
        next_shared = shared[0] if shared else None
        si = 1  # index of the shared item after next_shared
        out: list = []
        done: set[str] = set()
        l_len, r_len = len(l_order), len(r_order)
        li = ri = 0
        while li < l_len or ri < r_len:
            progressed = False
            if li < l_len and ri < r_len:
                pe = l_order[li]
                if pe == r_order[ri]:
                    m = merge(elem, l_obs[pe], r_obs[pe])
                    if m is not _MISSING:
                        out.append(m)
                    done.add(pe)
                    li += 1
                    ri += 1
                    next_shared = shared[si] if si < len(shared) else None
                    si += 1
                    continue
                if pe in r_obs and next_shared is not None and next_shared != pe:
                    li += 1
                    continue
            if li < l_len:
                pe = l_order[li]
                if pe not in r_obs:
                    m = merge(elem, l_obs[pe], _MISSING)
                    if m is not _MISSING:
                        out.append(m)
                    li += 1
                    continue
                if pe in done:  # already merged from the rhs side
                    li += 1
                    continue
            if ri < r_len:
                pe = r_order[ri]
                m = merge(elem, l_obs.get(pe, _MISSING), r_obs[pe])
                if m is not _MISSING:
                    out.append(m)
                done.add(pe)
                ri += 1
                progressed = True
                if next_shared is not None and next_shared == pe:
                    next_shared = shared[si] if si < len(shared) else None
                    si += 1
            if not progressed:
                li += 1
        return out if out else _MISSING

    result = merge(root, lhs, rhs)
    return {} if result is _MISSING else result


def _remove(root: _Node, value: JSON, tree: dict) -> JSON:
    """typed.RemoveItems: drop every member of `tree` (with its subtree)."""
    if not tree:
        return value

    def rm(node: _Node, v: JSON, tree: dict) -> JSON:
        if node.kind == _DEDUCED:
            node = _deduce(v) or _DSCALAR
        kind = node.kind
        if kind == _SCALAR:
            return v
        if kind == _LIST:
            if type(v) is not list or not v or node.rel == _ATOMIC:
                return _MISSING
            out = []
            elem = node.elem or _DEDUCED_NODE
            for item in v:
                try:
                    pe = _item_pe(node, item)
                except _ItemError:
                    out.append(item)
                    continue
                sub = tree.get(pe)
                if sub is None:
                    out.append(item)
                    continue
                if "." in sub:
                    continue
                r = rm(elem, item, sub)
                if r is _MISSING:
                    r = {} if type(item) is dict else [] if type(item) is list else None
                out.append(r)
            return out if out else _MISSING
        if type(v) is not dict or not v or node.atomic:
            return _MISSING
        out_map: dict = {}
        for k, val in v.items():
            sub = tree.get("f:" + k)
            if sub is None:
                out_map[k] = val
                continue
            if "." in sub:
                continue
            r = rm(_field_node(node, k), val, sub)
            if r is not _MISSING:
                out_map[k] = r
        return out_map if out_map else _MISSING

    result = rm(root, value, tree)
    return {} if result is _MISSING else result


def _enfam(paths: Iterable[Path], root: _Node) -> set[Path]:
    """Set.EnsureNamedFieldsAreMembers: struct fields above members become members."""
    out = set(paths)
    for p in list(out):
        n = len(p)
        if n < 2:
            continue
        node = root
        for i in range(n - 1):
            e = p[i]
            fields = node.fields
            if e[0] == "f" and node.kind == _MAP and fields is not None:
                child = fields.get(e[2:])
                if child is not None:
                    out.add(p[:i + 1])
                    node = child
                    continue
            node = _child_node(node, e)
    return out


# ============================================================================================
# Managed fields entries
# ============================================================================================

_STRIP: frozenset[Path] = frozenset({
    ("f:apiVersion",), ("f:kind",), ("f:metadata",), ("f:metadata", "f:name"),
    ("f:metadata", "f:namespace"), ("f:metadata", "f:creationTimestamp"),
    ("f:metadata", "f:selfLink"), ("f:metadata", "f:uid"), ("f:metadata", "f:clusterName"),
    ("f:metadata", "f:generation"), ("f:metadata", "f:managedFields"),
    ("f:metadata", "f:resourceVersion"),
})

# A manager's identity: (manager, operation, apiVersion ("" for Apply), subresource)
Key = tuple[str, str, str, str]


class _Entry:
    __slots__ = ("_set", "fields", "version", "applied", "time")

    def __init__(self, set_: frozenset | None, version: str, applied: bool, time: str | None,
                 fields: dict | None = None) -> None:
        self._set = set_
        self.fields = fields  # the encoded form, when known to match _set
        self.version = version
        self.applied = applied
        self.time = time

    @property
    def set(self) -> frozenset:
        if self._set is None:
            self._set = FieldSet.from_fields_v1(self.fields)
        return self._set

    def encoded_only(self) -> bool:
        return self._set is None and self.fields is not None

    def with_set(self, s: Iterable[Path]) -> "_Entry":
        return _Entry(frozenset(s), self.version, self.applied, self.time)

    def members(self, paths: Iterable[Path]) -> set[Path]:
        """The `paths` this entry owns, without decoding an encoded entry."""
        if self._set is not None:
            return self._set.intersection(paths)
        out = set()
        root = self.fields or {}
        for p in paths:
            node = root
            for e in p:
                node = node.get(e)
                if node is None:
                    break
            else:
                if not node or "." in node:
                    out.add(p)
        return out


def _identifier(key: Key) -> str:
    """Upstream's manager identifier (BuildManagerIdentifier)."""
    manager, operation, version, sub = key
    parts = []
    if manager:
        parts.append('"manager":' + _go_string(manager))
    if operation:
        parts.append('"operation":' + _go_string(operation))
    if version:
        parts.append('"apiVersion":' + _go_string(version))
    if sub:
        parts.append('"subresource":' + _go_string(sub))
    return "{" + ",".join(parts) + "}"


def _decode(entries: JSON, *, trusted: bool) -> dict[Key, _Entry]:
    """DecodeManagedFields. Raises ValueError for entries upstream refuses. Entries of
    `trusted` lists (live's, written here) keep their encoding and decode lazily."""
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    out: dict[Key, _Entry] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ValueError(f"managed fields entry {i} must be an object")
        op = e.get("operation") or ""
        if op not in ("Apply", "Update"):
            raise ValueError("operation must be `Apply` or `Update`")
        version = e.get("apiVersion") or ""
        if not isinstance(version, str) or not version:
            raise ValueError("apiVersion must not be empty")
        ft = e.get("fieldsType") or ""
        if ft == "":
            raise ValueError(f"missing fieldsType in managed fields entry {i}")
        if ft != "FieldsV1":
            raise ValueError(f"invalid fieldsType {ft!r} in managed fields entry {i}")
        manager = e.get("manager") or ""
        sub = e.get("subresource") or ""
        if not isinstance(manager, str) or not isinstance(sub, str):
            raise ValueError(f"managed fields entry {i} is malformed")
        key = (manager, op, "" if op == "Apply" else version, sub)
        fields = e.get("fieldsV1")
        if fields is None:
            fields = {}
        if not isinstance(fields, dict):
            raise ValueError("error decoding set: FieldsV1 must be a JSON object")
        t = e.get("time")
        if trusted:
            out[key] = _Entry(None, version, op == "Apply", t if isinstance(t, str) else None,
                              fields)
        else:
            out[key] = _Entry(FieldSet.from_fields_v1(fields), version, op == "Apply",
                              t if isinstance(t, str) else None)
    return out


def _decode_or_empty(entries: JSON, *, trusted: bool) -> dict[Key, _Entry]:
    try:
        return _decode(entries, trusted=trusted)
    except ValueError:
        return {}


@functools.lru_cache(maxsize=4096)
def _unix(t: str | None) -> int:
    if not t:
        return 0
    try:
        return int(datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def _encode(managed: dict[Key, _Entry]) -> list[dict]:
    """encodeManagedFields, sorted as upstream sorts them."""
    out = []
    for key, e in managed.items():
        manager, op, _, sub = key
        d: dict[str, JSON] = {}
        if manager:
            d["manager"] = manager
        d["operation"] = "Apply" if e.applied else op
        if e.version:
            d["apiVersion"] = e.version
        if e.time:
            d["time"] = e.time
        d["fieldsType"] = "FieldsV1"
        d["fieldsV1"] = e.fields if e.fields is not None else FieldSet(e.set).to_fields_v1()
        if sub:
            d["subresource"] = sub
        out.append(d)
    out.sort(key=lambda d: (d["operation"], _unix(d.get("time")), d.get("manager", ""),
                            d.get("apiVersion", ""), d.get("subresource", "")))
    return out


def _is_reset(entries: JSON) -> bool:
    """isResetManagedFields: `[]`, or a single empty entry."""
    if not isinstance(entries, list):
        return False
    if not entries:
        return True
    if len(entries) == 1 and isinstance(entries[0], dict):
        return all(v is None or v == "" for v in entries[0].values())
    return False


def _body(obj: JSON) -> dict:
    """The object without metadata.managedFields (shallow copies)."""
    if not isinstance(obj, dict):
        return {}
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        meta = dict(meta)
        del meta["managedFields"]
        obj = dict(obj)
        obj["metadata"] = meta
    return obj


def _reset_set(paths: Iterable[Any]) -> frozenset[Path]:
    return frozenset(_normalize_path(p) for p in paths)


def _strip(s: Iterable[Path]) -> frozenset:
    return frozenset(s) - _STRIP


# ============================================================================================
# The field manager chain
# ============================================================================================

def _update(root: _Node, managed: dict[Key, _Entry], live_body: dict, new_body: dict,
            workflow: Key | None, force: bool,
            reset: frozenset[Path]) -> tuple[dict[Key, _Entry], tuple[set, set, set], bool]:
    """merge.Updater.update: other managers lose the fields that changed (conflicts, unless
    forced) and the fields that were removed."""
    added, removed, modified = _compare(root, live_body, new_body)
    any_change = bool(added or removed or modified)
    if reset:
        added = _recursive_difference(added, reset)
        removed = _recursive_difference(removed, reset)
        modified = _recursive_difference(modified, reset)
    changed = added | modified
    if not changed and not removed:
        return managed, (added, removed, modified), any_change
    # Managers never own the stripped metadata fields (resourceVersion, generation, … change
    # on every write), so they need not be looked for.
    changed_owned = changed - _STRIP if changed else changed
    removed_owned = removed - _STRIP if removed else removed
    conflicts: dict[Key, frozenset] = {}
    drops: dict[Key, set[Path]] = {}
    for k, e in managed.items():
        if k == workflow:
            continue
        c = e.members(changed_owned) if changed_owned else set()
        if c:
            conflicts[k] = frozenset(c)
        r = e.members(removed_owned) if removed_owned else set()
        if c or r:
            drops[k] = c | r
    if conflicts and not force:
        raise _Conflicts(conflicts)
    if not drops:
        return managed, (added, removed, modified), any_change
    out: dict[Key, _Entry] = {}
    for k, e in managed.items():
        drop = drops.get(k)
        if drop is None:
            out[k] = e
        elif e.encoded_only():
            fields = _v1_remove(e.fields, drop)  # type: ignore[arg-type]
            if fields:
                out[k] = _Entry(None, e.version, e.applied, e.time, fields)
        else:
            s = e.set - drop
            if s:
                out[k] = e.with_set(s)
    return out, (added, removed, modified), any_change


def _update_operation(root: _Node, managed: dict[Key, _Entry], live_body: dict, new_body: dict,
                      key: Key, now: str, reset: frozenset[Path]) -> dict[Key, _Entry]:
    """CapManagers(BuildManagerInfo(ManagedFieldsUpdater(StripMeta(StructuredMerge.Update))))."""
    # Upstream runs this as manager "current-operation" and then merges it into the writer's
    # previous entry, which meanwhile lost what changed or was removed: the writer's entry
    # becomes (previous | current) - removed.
    managed, (added, removed, modified), _ = _update(root, managed, live_body, new_body, key,
                                                     True, reset)
    current = _strip((added | modified) - removed)
    prev = managed.get(key)
    prev_removed = prev.members(removed - _STRIP) if prev is not None and removed else set()
    if not current and not prev_removed:
        return _cap_managers(managed)
    time = now if current else prev.time  # type: ignore[union-attr]
    entry: _Entry | None
    if prev is None:
        entry = _Entry(frozenset(current), key[2], False, now)
    elif prev.encoded_only():
        missing = current - prev.members(current) if current else ()
        fields = prev.fields
        if prev_removed:
            fields = _v1_remove(fields, prev_removed)  # type: ignore[arg-type]
        if missing:
            fields = _v1_add(fields, missing)  # type: ignore[arg-type]
        entry = _Entry(None, key[2], False, time, fields) if fields else None
    else:
        rest = (prev.set | current) - removed
        entry = _Entry(frozenset(rest), key[2], False, time) if rest else None
    managed = dict(managed)
    if entry is None:
        managed.pop(key, None)
    else:
        managed[key] = entry
    return _cap_managers(managed)


def _cap_managers(managed: dict[Key, _Entry]) -> dict[Key, _Entry]:
    updaters = [k for k, e in managed.items() if not e.applied]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return managed
    managed = dict(managed)
    updaters.sort(key=lambda k: (_unix(managed[k].time), _identifier(k)))
    first_of: dict[str, Key] = {}
    length = len(updaters)
    for manager in updaters:
        if length <= MAX_UPDATE_MANAGERS:
            break
        e = managed.get(manager)
        if e is None:
            continue
        version = e.version
        bucket: Key = (_ANCIENT, "Update", version, "")
        if version in first_of:
            if bucket not in managed:
                first = first_of[version]
                managed[bucket] = managed.pop(first)
            b = managed[bucket]
            managed[bucket] = _Entry(frozenset(e.set | b.set), version, e.applied, e.time)
            if manager != bucket:
                del managed[manager]
            length -= 1
        else:
            first_of[version] = manager
    return managed


def _prune(root: _Node, merged: JSON, managed: dict[Key, _Entry], last: frozenset | None) -> JSON:
    """merge.Updater.prune: drop what the applier applied last time and no longer applies,
    unless another manager owns it."""
    if not last:
        return merged
    last_e = _enfam(last, root)
    pruned = _remove(root, merged, _tree(last_e))
    merged_set = _enfam(_field_set(root, merged), root)
    owned: set[Path] = set()
    for e in managed.values():
        owned |= e.set
    pruned_set = _enfam(_field_set(root, pruned), root)
    pruned = _remove(root, merged, _tree(merged_set - (pruned_set | _enfam(owned, root))))
    pruned_set = _enfam(_field_set(root, pruned), root)
    return _remove(root, merged, _tree((merged_set - pruned_set) & last_e))


def _conflict_list(sets: dict[Key, frozenset]) -> list[tuple[str, str]]:
    out = []
    for ident, s in sorted((_identifier(k), s) for k, s in sets.items()):
        out.extend((ident, path_string(p)) for p in _iterate(s))
    return out


def _gvk_string(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


def _expected_kind(schema: dict | None, api_version: str) -> str | None:
    if not isinstance(schema, dict):
        return None
    group, _, version = api_version.rpartition("/")
    for gvk in schema.get("x-kubernetes-group-version-kind") or ():
        if gvk.get("group", "") == group and gvk.get("version") == version:
            return gvk.get("kind")
    return None


def _deepcopy(v: JSON) -> JSON:
    if type(v) is dict:
        return {k: _deepcopy(x) for k, x in v.items()}
    if type(v) is list:
        return [_deepcopy(x) for x in v]
    return v


def _set_managed(obj: dict, entries: list[dict]) -> dict:
    meta = obj.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)
    obj["metadata"] = meta
    return obj


# ============================================================================================
# Public API
# ============================================================================================

def fieldset_of(obj: JSON, schema: dict | None, *, strip_meta: bool = True) -> FieldSet:
    """The fields of `obj` (upstream's ToFieldSet): every leaf, every list item and map entry,
    named fields holding null or `{}`, atomic lists and maps as single leaves. With
    `strip_meta`, without the fields upstream never records (apiVersion, kind,
    metadata.name/namespace/uid/resourceVersion/generation/creationTimestamp/…)."""
    s = _field_set(_root_node(schema), obj)
    return FieldSet(s - _STRIP if strip_meta else s)


def update_managed_fields(live: dict | None, new: dict, manager: str, *,
                          operation: str = "Update", subresource: str = "", now: str,
                          schema: dict | None, api_version: str,
                          reset_paths: Iterable[Any] = ()) -> list[dict]:
    """The `metadata.managedFields` of `new` after a create (`live` None), update or
    non-apply patch by `manager` (upstream FieldManager.UpdateNoErrors).

    `reset_paths` are the strategy's reset fields for this endpoint (e.g. `[("status",)]` on
    the main resource of a kind with a status subresource, `[("spec",), ...]` on /status):
    changes there are not recorded. An empty list means the object carries no managedFields.
    """
    if operation != "Update":
        raise ValueError("update_managed_fields records Update operations; use apply()")
    root = _root_node(schema)
    reset = _reset_set(reset_paths)
    live_meta = live.get("metadata") if isinstance(live, dict) else None
    live_entries = live_meta.get("managedFields") if isinstance(live_meta, dict) else None
    new_meta = new.get("metadata") if isinstance(new, dict) else None
    new_entries = new_meta.get("managedFields", _MISSING) if isinstance(new_meta, dict) \
        else _MISSING

    managed: dict[Key, _Entry]
    if subresource:
        managed = _decode_or_empty(live_entries, trusted=True)
    elif _is_reset(new_entries):
        managed = {}
    else:
        decoded: dict[Key, _Entry] | None = None
        if isinstance(new_entries, list) and new_entries:
            if new_entries is live_entries or new_entries == live_entries:
                decoded = _decode_or_empty(live_entries, trusted=True)
            else:
                try:
                    decoded = _decode(new_entries, trusted=False)
                except ValueError:
                    decoded = None
        if not decoded:
            decoded = _decode_or_empty(live_entries, trusted=True)
        managed = decoded

    # skipNonAppliedManager: an existing object without managedFields is not tracked
    if not managed and isinstance(live_meta, dict) and live_meta.get("uid"):
        return []

    key: Key = (manager or "unknown", "Update", api_version, subresource)
    try:
        managed = _update_operation(root, managed, _body(live) if live is not None else {},
                                    _body(new), key, now, reset)
    except (TypedError, ValueError):
        return []  # 1.32: a failure drops the managedFields
    return _encode(managed)


def apply(live: dict | None, applied: dict, manager: str, *, force: bool,
          schema: dict | None, now: str, api_version: str, kind: str | None = None,
          subresource: str = "", reset_paths: Iterable[Any] = ()) -> dict:
    """Server-side apply of `applied` by `manager` to `live` (None: the object does not exist
    yet). Returns the new object with its managedFields (`live`'s content when the apply
    changes nothing). Raises ApplyConflict (409), BadRequest (400) for a config of the wrong
    kind or version or carrying managedFields, and a 500 error for a config that does not fit
    the schema (upstream's `failed to create typed patch object` errors)."""
    root = _root_node(schema)
    reset = _reset_set(reset_paths)
    if not isinstance(applied, dict):
        raise BadRequest("error decoding YAML: the applied configuration must be an object")
    live_obj = live if isinstance(live, dict) else {}
    live_meta = live_obj.get("metadata") if isinstance(live_obj.get("metadata"), dict) else {}

    # FieldManager.Apply: live's managedFields
    try:
        managed = _decode(live_meta.get("managedFields"), trusted=False)
    except ValueError as e:
        raise ApiError(f"failed to decode managed fields: {e}", code=500,
                       reason="InternalError") from None

    # versionCheckManager
    cfg_version = applied.get("apiVersion") if isinstance(applied.get("apiVersion"), str) else ""
    cfg_kind = applied.get("kind") if isinstance(applied.get("kind"), str) else ""
    expected_kind = kind or _expected_kind(schema, api_version)
    if expected_kind is not None and (cfg_version != api_version or cfg_kind != expected_kind):
        raise BadRequest(f"invalid object type: {_gvk_string(cfg_version, cfg_kind)}")
    if cfg_version != api_version:
        raise BadRequest("Incorrect version specified in apply patch. Specified patch version: "
                         f"{cfg_version}, expected: {api_version}")
    cfg_meta = applied.get("metadata")
    if isinstance(cfg_meta, dict) and cfg_meta.get("managedFields") is not None:
        raise BadRequest("metadata.managedFields must be nil")

    errors = _validate(root, applied)
    if errors:
        ns = cfg_meta.get("namespace", "") if isinstance(cfg_meta, dict) else ""
        name = cfg_meta.get("name", "") if isinstance(cfg_meta, dict) else ""
        raise _TypedApiError(f"failed to create typed patch object ({ns}/{name}; "
                             f"{_gvk_string(cfg_version, cfg_kind)}): {TypedError(errors).text()}")

    live_body = _body(live_obj)
    key: Key = (manager or "unknown", "Apply", "", subresource)

    def run(force: bool) -> tuple[JSON, dict[Key, _Entry]]:
        m = managed
        if not m:  # skipNonAppliedManager: record what is there before the first apply
            m = _update_operation(root, {}, {}, live_body,
                                  (_BEFORE_FIRST_APPLY, "Update", api_version, subresource),
                                  now, reset)
        merged = _merge(root, live_body, applied)
        last = m.get(key)
        config_set = frozenset(_field_set(root, applied))
        if reset:
            config_set = frozenset(_recursive_difference(config_set, reset))
        m = dict(m)
        m[key] = _Entry(config_set, api_version, True, last.time if last else None)
        pruned = _prune(root, merged, m, last.set if last is not None else None)
        try:
            m, _, changed = _update(root, m, live_body, pruned, key, force, reset)
        except _Conflicts as c:
            raise _ConflictError(c.sets) from None
        changed = changed or live is None
        # stripMetaManager
        e = m[key]
        stripped = _strip(e.set)
        if stripped != e.set:
            if stripped:
                m[key] = _Entry(stripped, e.version, True, e.time)
            else:
                del m[key]
        # managedFieldsUpdater
        if changed and key in m:
            e = m[key]
            m[key] = _Entry(e.set, e.version, True, now, e.fields)
        return (pruned if changed else _MISSING), m

    try:
        try:
            obj, managed_out = run(force)
        except _ConflictError as err:
            # lastAppliedManager: kubectl may take over what its client-side apply recorded
            if manager != "kubectl":
                raise
            allowed = _allowed_from_last_applied(root, live_obj, live_body, api_version)
            if allowed is None:
                raise
            remaining = {k: frozenset(p for p in s if p not in allowed)
                         for k, s in err.sets.items()}
            remaining = {k: s for k, s in remaining.items() if s}
            if remaining:
                raise _ConflictError(remaining) from None
            obj, managed_out = run(True)
    except _ConflictError as err:
        raise ApplyConflict(_conflict_list(err.sets)) from None
    except TypedError as e:  # the live object does not fit the schema
        raise _TypedApiError(f"failed to compare objects: {e.text()}") from None

    result = _deepcopy(obj if obj is not _MISSING else live_body)
    if not isinstance(result, dict):
        result = {}
    result = _set_managed(result, _encode(managed_out))

    # lastAppliedUpdater: keep kubectl's client-side apply annotation in sync
    if manager == "kubectl":
        annotations = (result.get("metadata") or {}).get("annotations")
        if isinstance(annotations, dict) and annotations.get(LAST_APPLIED_ANNOTATION):
            value = _build_last_applied(applied)
            annotations = dict(annotations)
            annotations[LAST_APPLIED_ANNOTATION] = value
            if sum(len(k) + len(v) for k, v in annotations.items()
                   if isinstance(v, str)) > _TOTAL_ANNOTATION_SIZE_LIMIT:
                del annotations[LAST_APPLIED_ANNOTATION]
            result["metadata"] = dict(result["metadata"])
            result["metadata"]["annotations"] = annotations
    return result


class _ConflictError(Exception):
    def __init__(self, sets: dict[Key, frozenset]) -> None:
        self.sets = sets


def _allowed_from_last_applied(root: _Node, live_obj: dict, live_body: dict,
                               api_version: str) -> frozenset | None:
    """lastAppliedManager.allowedConflictsFromLastApplied: the fields of the last-applied
    annotation whose values the live object still has."""
    annotations = (live_obj.get("metadata") or {}).get("annotations")
    if not isinstance(annotations, dict):
        return None
    text = annotations.get(LAST_APPLIED_ANNOTATION)
    if not isinstance(text, str) or not text:
        return None
    try:
        last = json.loads(text)
    except ValueError:
        return None
    if not isinstance(last, dict) or last.get("apiVersion") != api_version:
        return None
    if _validate(root, last):
        return None
    try:
        fields = _field_set(root, last)
        added, removed, modified = _compare(root, last, live_body)
    except TypedError:
        return None
    return frozenset(fields - modified - added - removed)


def _build_last_applied(applied: dict) -> str:
    obj = _deepcopy(applied)
    meta = obj.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
        meta["annotations"].pop(LAST_APPLIED_ANNOTATION, None)
    return _go_json(obj) + "\n"
