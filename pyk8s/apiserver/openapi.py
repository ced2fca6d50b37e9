"""OpenAPI documents: `/openapi/v2` (Swagger 2.0) and `/openapi/v3` (index + one per group-version).

Shapes follow what kube-apiserver (k8s.io/kube-openapi) serves, because kubectl reads them:

* v3 index `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=<HASH>"}, ...}}`,
  with entries for `api`, `apis`, `apis/<group>` and every served group-version.
* v3 group-version documents (`openapi: 3.0.0`): one path item per resource URL; each
  operation has `x-kubernetes-action` and `x-kubernetes-group-version-kind`. kubectl decides
  that the server validates fields itself (and sends `fieldValidation=Strict` instead of
  validating client-side) when *the* PATCH operation carrying the kind's GVK lists a
  `fieldValidation` parameter (cli-runtime `supportsQueryParamV3`; it looks at whichever
  matching PATCH it meets first, so every PATCH has it). Client-side apply computes a
  strategic merge patch from the v3 schemas when that PATCH accepts
  `application/strategic-merge-patch+json`; custom resources don't, so they get merge patches.
* `components.schemas` keyed by upstream definition names, `$ref`s as
  `#/components/schemas/<name>` (wrapped in `allOf` when the reference has siblings such as
  `description`), only the definitions each document reaches.
* v2: one document with every path and every definition, `$ref`s as `#/definitions/<name>`.

Definitions come from `pyk8s.api.schemas` (JSON Schema `$defs`, as kubernetes-validate ships
them) and are converted back: `["object", "null"]` types become `"object"`, the `enum`s that
package adds to `apiVersion`/`kind` are dropped, Quantity and IntOrString take upstream's form.

Everything is pure and built lazily, once per catalogue state, then memoized as bytes.
The HTTP layer picks the representation with `negotiate()` (JSON only: protobuf → 406).
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import orjson

from pyk8s.api import schemas
from pyk8s.api.catalogue import Catalogue, ResourceInfo

Schema = dict[str, Any]
SchemaProvider = Callable[[ResourceInfo], "Schema | None"]

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
PATCH_DEF = META + "Patch"
STATUS_DEF = META + "Status"
DELETE_OPTIONS_DEF = META + "DeleteOptions"
WATCH_EVENT_DEF = META + "WatchEvent"
QUANTITY_DEF = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING_DEF = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"

JSON = "application/json"
# What the server answers with; list/watch also stream.
PRODUCES = (JSON,)
PRODUCES_STREAM = (JSON, "application/json;stream=watch")
APPLY_PATCH = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

# Special upstream forms that kubernetes-validate rewrote.
_V3_OVERRIDES: dict[str, Schema] = {
    QUANTITY_DEF: {
        "description": "Quantity is a fixed-point representation of a number, serialized as a "
                       "string such as `100m`, `1.5Gi` or `2`.",
        "oneOf": [{"type": "string"}, {"type": "number"}],
    },
    INT_OR_STRING_DEF: {
        "description": "IntOrString is a type that can hold an int32 or a string.",
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
    },
}
_V2_OVERRIDES: dict[str, Schema] = {
    QUANTITY_DEF: {"description": _V3_OVERRIDES[QUANTITY_DEF]["description"], "type": "string"},
    INT_OR_STRING_DEF: {"description": _V3_OVERRIDES[INT_OR_STRING_DEF]["description"],
                        "format": "int-or-string", "type": "string"},
}

_SECURITY_SCHEME = {"description": "Bearer Token authentication", "in": "header",
                    "name": "authorization", "type": "apiKey"}


# --------------------------------------------------------------------------------------------
# Content negotiation (for the HTTP layer)
# --------------------------------------------------------------------------------------------

def negotiate(accept: str | None) -> str | None:
    """The Content-Type to answer an `/openapi/*` request with, or None for 406.

    Only JSON is produced. kubectl asks `/openapi/v2` for protobuf only
    (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`) and `proto.Unmarshal`s
    whatever comes back, so a JSON body would be a parse error anyway; 406 is what
    upstream's handler answers for a type it cannot produce.
    """
    if not accept or not accept.strip():
        return JSON
    for clause in accept.split(","):
        media, *params = (part.strip() for part in clause.split(";"))
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        if media.lower() in (JSON, "application/*", "*/*"):
            return JSON
    return None


def document_hash(data: bytes) -> str:
    """Upstream's ETag/`?hash=` value: upper-case hex SHA-512 of the JSON bytes."""
    return hashlib.sha512(data).hexdigest().upper()


# --------------------------------------------------------------------------------------------
# Intermediate model of the paths, rendered to v2 and v3
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    name: str
    type: str  # string | integer | boolean
    description: str
    location: str = "query"
    required: bool = False


def _q(name: str, type_: str, description: str) -> Param:
    return Param(name, type_, description)


P_PRETTY = _q("pretty", "string", "If 'true', the output is pretty printed.")
P_DRY_RUN = _q("dryRun", "string", "When present (only value: All), the request is processed "
               "but nothing is persisted.")
P_FIELD_MANAGER = _q("fieldManager", "string", "Name of the actor making these changes, "
                     "recorded in managedFields.")
P_FIELD_MANAGER_PATCH = _q("fieldManager", "string", "Name of the actor making these changes; "
                           "required for apply patches (application/apply-patch+yaml).")
P_FIELD_VALIDATION = _q("fieldValidation", "string", "How to treat unknown or duplicate fields "
                        "in the request body: Ignore, Warn (default) or Strict (reject).")
P_FORCE = _q("force", "boolean", "Force an apply patch, taking over fields owned by other "
             "managers. Must be unset for other patch types.")
P_ALLOW_BOOKMARKS = _q("allowWatchBookmarks", "boolean", "Ask for BOOKMARK events in a watch.")
P_CONTINUE = _q("continue", "string", "Continue token from a previous paginated list.")
P_FIELD_SELECTOR = _q("fieldSelector", "string", "Restrict the results by fields.")
P_LABEL_SELECTOR = _q("labelSelector", "string", "Restrict the results by labels.")
P_LIMIT = _q("limit", "integer", "Maximum number of items to return in one list page.")
P_RESOURCE_VERSION = _q("resourceVersion", "string", "Resource version the request may be "
                        "served from (see resourceVersionMatch).")
P_RESOURCE_VERSION_MATCH = _q("resourceVersionMatch", "string", "How resourceVersion applies "
                              "to list calls: Exact or NotOlderThan.")
P_SEND_INITIAL_EVENTS = _q("sendInitialEvents", "boolean", "With watch=true, start with "
                           "synthetic ADDED events for the current state, ended by a bookmark.")
P_TIMEOUT = _q("timeoutSeconds", "integer", "Timeout for the list/watch call.")
P_WATCH = _q("watch", "boolean", "Watch for changes instead of listing.")
P_GRACE = _q("gracePeriodSeconds", "integer", "Seconds before the object is deleted; 0 means "
             "immediately.")
P_IGNORE_READ_ERRORS = _q("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean",
                          "Delete even when the stored object cannot be read (unsafe).")
P_ORPHAN = _q("orphanDependents", "boolean", "Deprecated: use propagationPolicy.")
P_PROPAGATION = _q("propagationPolicy", "string", "Garbage collection policy for dependents: "
                   "Orphan, Background or Foreground.")
P_NAME_DOC = "name of the {kind}"
P_NAMESPACE = Param("namespace", "string", "object name and auth scope, such as for teams and "
                    "projects", location="path", required=True)

LIST_PARAMS = (P_ALLOW_BOOKMARKS, P_CONTINUE, P_FIELD_SELECTOR, P_LABEL_SELECTOR, P_LIMIT,
               P_RESOURCE_VERSION, P_RESOURCE_VERSION_MATCH, P_SEND_INITIAL_EVENTS, P_TIMEOUT,
               P_WATCH)
WRITE_PARAMS = (P_DRY_RUN, P_FIELD_MANAGER, P_FIELD_VALIDATION)
PATCH_PARAMS = (P_DRY_RUN, P_FIELD_MANAGER_PATCH, P_FIELD_VALIDATION, P_FORCE)
DELETE_PARAMS = (P_DRY_RUN, P_GRACE, P_IGNORE_READ_ERRORS, P_ORPHAN, P_PROPAGATION)
DELETE_COLLECTION_PARAMS = (P_CONTINUE, P_DRY_RUN, P_FIELD_SELECTOR, P_GRACE,
                            P_IGNORE_READ_ERRORS, P_LABEL_SELECTOR, P_LIMIT, P_ORPHAN,
                            P_PROPAGATION, P_RESOURCE_VERSION, P_RESOURCE_VERSION_MATCH,
                            P_SEND_INITIAL_EVENTS, P_TIMEOUT)
LOG_PARAMS = (
    _q("container", "string", "The container for which to stream logs."),
    _q("follow", "boolean", "Follow the log stream of the pod."),
    _q("insecureSkipTLSVerifyBackend", "boolean", "Skip verifying the kubelet's certificate."),
    _q("limitBytes", "integer", "Maximum number of bytes to return."),
    _q("previous", "boolean", "Return the logs of the previous terminated container."),
    _q("sinceSeconds", "integer", "Only logs newer than this many seconds."),
    _q("stream", "string", "Which stream to return: All, Stdout or Stderr."),
    _q("tailLines", "integer", "Number of lines from the end of the log to show."),
    _q("timestamps", "boolean", "Prefix every line with an RFC3339 timestamp."),
)


@dataclass(frozen=True)
class Response:
    code: str
    description: str
    definition: str | None  # None: a plain string (logs)


@dataclass(frozen=True)
class Operation:
    method: str  # get | put | post | delete | patch
    action: str | None  # x-kubernetes-action
    operation_id: str
    description: str
    tag: str
    gvk: tuple[str, str, str] | None
    params: tuple[Param, ...] = ()
    body: str | None = None
    body_types: tuple[str, ...] = ("*/*",)
    body_required: bool = True
    responses: tuple[Response, ...] = ()
    produces: tuple[str, ...] = PRODUCES


@dataclass
class PathItem:
    url: str
    params: tuple[Param, ...] = ()
    operations: list[Operation] = field(default_factory=list)


@dataclass(frozen=True)
class Kinds:
    """Definition names one resource's operations use."""
    kind: str
    list: str
    builtin: bool  # upstream kind (strategic merge patch) vs custom resource (merge patch)


@dataclass(frozen=True)
class Subresource:
    methods: tuple[str, ...]
    gvk: tuple[str, str, str] | None = None  # None: the parent's kind
    log: bool = False


SUBRESOURCES: dict[str, Subresource] = {
    "status": Subresource(("get", "put", "patch")),
    "ephemeralcontainers": Subresource(("get", "put", "patch")),
    "resize": Subresource(("get", "put", "patch")),
    "scale": Subresource(("get", "put", "patch"), ("autoscaling", "v1", "Scale")),
    "binding": Subresource(("post",), ("", "v1", "Binding")),
    "eviction": Subresource(("post",), ("policy", "v1", "Eviction")),
    "finalize": Subresource(("put",)),
    "log": Subresource(("get",), log=True),
}


def gv_path(group: str, version: str) -> str:
    """`api/v1` or `apis/apps/v1` (the v3 index key)."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _camel(group: str) -> str:
    """`rbac.authorization.k8s.io` → `RbacAuthorization`, `` → `Core` (as in operation ids)."""
    if not group:
        return "Core"
    name = group.removesuffix(".k8s.io")
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", ".").split("."))


def _tag(group: str, version: str) -> str:
    camel = _camel(group)
    return f"{camel[:1].lower()}{camel[1:]}_{version}"


def _gvk(r: ResourceInfo) -> tuple[str, str, str]:
    return (r.group, r.version, r.kind)


def _responses(action: str, definition: str | None) -> tuple[Response, ...]:
    ok = Response("200", "OK", definition)
    if action == "post":
        return (ok, Response("201", "Created", definition), Response("202", "Accepted", definition))
    if action in ("put", "patch"):
        return (ok, Response("201", "Created", definition))
    if action == "delete":
        return (ok, Response("202", "Accepted", definition))
    return (ok,)


@dataclass(frozen=True)
class _Namer:
    """Operation ids of one resource, in upstream's naming scheme."""
    r: ResourceInfo

    @property
    def prefix(self) -> str:
        return f"{_camel(self.r.group)}{self.r.version[:1].upper()}{self.r.version[1:]}"

    def op_id(self, verb: str, *, scoped: bool = True, infix: str = "", suffix: str = "") -> str:
        """`listAppsV1NamespacedDeployment`, `deleteCoreV1CollectionNamespacedPod`, ..."""
        namespaced = "Namespaced" if self.r.namespaced and scoped else ""
        return f"{verb}{self.prefix}{infix}{namespaced}{self.r.kind}{suffix}"


class _PathBuilder:
    """Path items of one resource (all its URLs, subresources and deprecated watch URLs)."""

    def __init__(self, r: ResourceInfo, kinds: Kinds,
                 definition_of: Callable[[tuple[str, str, str]], str | None]):
        self.r = r
        self.kinds = kinds
        self.definition_of = definition_of
        self.namer = _Namer(r)
        self.tag = _tag(r.group, r.version)
        base = "/" + gv_path(r.group, r.version)
        scope = "/namespaces/{namespace}" if r.namespaced else ""
        self.base = base
        self.collection = f"{base}{scope}/{r.plural}"
        self.item = f"{self.collection}/{{name}}"
        self.scope_params: tuple[Param, ...] = (P_NAMESPACE,) if r.namespaced else ()
        self.name_param = Param("name", "string", P_NAME_DOC.format(kind=r.kind),
                                location="path", required=True)

    def can(self, verb: str) -> bool:
        return verb in self.r.verbs

    def op(self, method: str, action: str, op_id: str, description: str, *,
           gvk: tuple[str, str, str] | None = None, body: str | None = None,
           result: str | None = None, log: bool = False,
           params: tuple[Param, ...] | None = None) -> Operation:
        """One operation, with the parameters and bodies upstream gives that kind of action."""
        default_params, default_body, body_types = self.defaults(method, action, log)
        if action in ("list", "watch", "watchlist"):
            produces = PRODUCES_STREAM
        else:
            produces = ("text/plain", JSON) if log else PRODUCES
        return Operation(
            method=method, action=action, operation_id=op_id, description=description,
            tag=self.tag, gvk=gvk or _gvk(self.r),
            params=default_params if params is None else params,
            body=default_body or body, body_types=body_types,
            body_required=method != "delete",
            responses=_responses(method, None if log else result), produces=produces)

    def defaults(self, method: str, action: str, log: bool,
                 ) -> tuple[tuple[Param, ...], str | None, tuple[str, ...]]:
        """(query parameters, fixed body definition, body content types) of an action."""
        if method == "patch":
            return PATCH_PARAMS, PATCH_DEF, self.patch_types()
        if method in ("post", "put"):
            return WRITE_PARAMS, None, ("*/*",)
        if action == "deletecollection":
            return DELETE_COLLECTION_PARAMS, DELETE_OPTIONS_DEF, ("*/*",)
        if method == "delete":
            return DELETE_PARAMS, DELETE_OPTIONS_DEF, ("*/*",)
        if action == "list":
            return LIST_PARAMS, None, ()
        return (LOG_PARAMS if log else ()), None, ()

    def patch_types(self) -> tuple[str, ...]:
        types = (APPLY_PATCH, JSON_PATCH, MERGE_PATCH)
        return types + (STRATEGIC_MERGE_PATCH,) if self.kinds.builtin else types

    def paths(self) -> list[PathItem]:
        items = [self.collection_item(), self.object_item()]
        if self.r.namespaced and self.can("list"):
            items.append(self.all_namespaces_item())
        items.extend(filter(None, (self.subresource_item(s) for s in self.r.subresources)))
        if self.can("watch"):
            items.extend(self.watch_items())
        return [i for i in items if i.operations]

    def collection_item(self) -> PathItem:
        k, n = self.r.kind, self.namer
        ops = []
        if self.can("list"):
            ops.append(self.op("get", "list", n.op_id("list"),
                               f"list or watch objects of kind {k}", result=self.kinds.list))
        if self.can("create"):
            ops.append(self.op("post", "post", n.op_id("create"), f"create a {k}",
                               body=self.kinds.kind, result=self.kinds.kind))
        if self.can("deletecollection"):
            ops.append(self.op("delete", "deletecollection",
                               n.op_id("delete", infix="Collection"),
                               f"delete collection of {k}", result=STATUS_DEF))
        return PathItem(self.collection, self.scope_params + (P_PRETTY,), ops)

    def object_item(self) -> PathItem:
        k, n, kind = self.r.kind, self.namer, self.kinds.kind
        ops = []
        if self.can("get"):
            ops.append(self.op("get", "get", n.op_id("read"), f"read the specified {k}",
                               result=kind))
        if self.can("update"):
            ops.append(self.op("put", "put", n.op_id("replace"), f"replace the specified {k}",
                               body=kind, result=kind))
        if self.can("patch"):
            ops.append(self.op("patch", "patch", n.op_id("patch"),
                               f"partially update the specified {k}", result=kind))
        if self.can("delete"):
            ops.append(self.op("delete", "delete", n.op_id("delete"), f"delete a {k}",
                               result=STATUS_DEF))
        return PathItem(self.item, (self.name_param,) + self.scope_params + (P_PRETTY,), ops)

    def all_namespaces_item(self) -> PathItem:
        # Upstream puts the list parameters on the path item here.
        op_id = self.namer.op_id("list", scoped=False, suffix="ForAllNamespaces")
        op = self.op("get", "list", op_id, f"list or watch objects of kind {self.r.kind}",
                     result=self.kinds.list, params=())
        return PathItem(f"{self.base}/{self.r.plural}", LIST_PARAMS + (P_PRETTY,), [op])

    def subresource_item(self, name: str) -> PathItem | None:
        spec = SUBRESOURCES.get(name)
        if spec is None:
            return None
        gvk = spec.gvk or _gvk(self.r)
        definition = self.kinds.kind if spec.gvk is None else self.definition_of(spec.gvk)
        if definition is None and not spec.log:
            return None
        suffix = name[:1].upper() + name[1:]
        verbs = {"get": ("read", "read {s} of the specified {k}"),
                 "put": ("replace", "replace {s} of the specified {k}"),
                 "patch": ("patch", "partially update {s} of the specified {k}"),
                 "post": ("create", "create {s} of a {k}")}
        ops = []
        for method in spec.methods:
            verb, text = verbs[method]
            ops.append(self.op(method, method, self.namer.op_id(verb, suffix=suffix),
                               text.format(s=name, k=self.r.kind), gvk=gvk,
                               body=definition if method in ("put", "post") else None,
                               result=definition, log=spec.log))
        return PathItem(f"{self.item}/{name}",
                        (self.name_param,) + self.scope_params + (P_PRETTY,), ops)

    def watch_items(self) -> Iterator[PathItem]:
        k, n = self.r.kind, self.namer
        base, scope = f"{self.base}/watch", "/namespaces/{namespace}" if self.r.namespaced else ""
        list_params = LIST_PARAMS + (P_PRETTY,)
        deprecated = "deprecated: use the 'watch' parameter with a list operation instead"

        def watch(url: str, action: str, op_id: str, text: str,
                  params: tuple[Param, ...]) -> PathItem:
            op = self.op("get", action, op_id, text, result=WATCH_EVENT_DEF)
            return PathItem(url, params, [op])

        yield watch(f"{base}{scope}/{self.r.plural}", "watchlist", n.op_id("watch", suffix="List"),
                    f"watch individual changes to a list of {k}. {deprecated}.",
                    self.scope_params + list_params)
        yield watch(f"{base}{scope}/{self.r.plural}/{{name}}", "watch", n.op_id("watch"),
                    f"watch changes to an object of kind {k}. {deprecated}, filtered to a "
                    "single item with the 'fieldSelector' parameter.",
                    (self.name_param,) + self.scope_params + list_params)
        if self.r.namespaced:
            yield watch(f"{base}/{self.r.plural}", "watchlist",
                        n.op_id("watch", scoped=False, suffix="ListForAllNamespaces"),
                        f"watch individual changes to a list of {k}. {deprecated}.", list_params)


def _discovery_item(url: str, op_id: str, description: str, tag: str, result: str) -> PathItem:
    op = Operation(method="get", action=None, operation_id=op_id, description=description,
                   tag=tag, gvk=None, responses=(Response("200", "OK", result),))
    return PathItem(url, (), [op])


# --------------------------------------------------------------------------------------------
# Schema conversion (JSON Schema `$defs` → OpenAPI)
# --------------------------------------------------------------------------------------------

_SCHEMA_MAPS = ("properties", "patternProperties", "definitions", "$defs")
_SCHEMA_VALUES = ("items", "additionalProperties", "not")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def _openapi_type(value: Any) -> Any:
    """`["object", "null"]` → `"object"` (OpenAPI has no null type)."""
    if isinstance(value, list):
        types = [t for t in value if t != "null"]
        return types[0] if len(types) == 1 else types
    return value


def convert_schema(node: Any, ref_prefix: str, *, wrap_refs: bool) -> Any:
    """Convert one schema node; `wrap_refs` puts a `$ref` with siblings into `allOf` (v3)."""
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            continue
        if key == "type":
            out[key] = _openapi_type(value)
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: convert_schema(v, ref_prefix, wrap_refs=wrap_refs)
                        for k, v in value.items()}
        elif key in _SCHEMA_VALUES and isinstance(value, dict):
            out[key] = convert_schema(value, ref_prefix, wrap_refs=wrap_refs)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [convert_schema(v, ref_prefix, wrap_refs=wrap_refs) for v in value]
        else:  # description, format, required, enum, default, x-kubernetes-* (kept verbatim)
            out[key] = value
    if isinstance(node.get("$ref"), str):
        ref = ref_prefix + schemas.ref_name(node["$ref"])
        if not out:
            return {"$ref": ref}
        if wrap_refs:
            return {"allOf": [{"$ref": ref}], **out}
        return {"$ref": ref, **out}
    return out


def _strip_type_enums(definition: Schema) -> Schema:
    """Drop the `enum` kubernetes-validate puts on a kind's `apiVersion`/`kind` properties."""
    props = definition.get("properties")
    if not props or "x-kubernetes-group-version-kind" not in definition:
        return definition
    fixed = dict(props)
    for name in ("apiVersion", "kind"):
        if isinstance(fixed.get(name), dict) and "enum" in fixed[name]:
            fixed[name] = {k: v for k, v in fixed[name].items() if k != "enum"}
    return {**definition, "properties": fixed}


def _refs(node: Any, in_properties: bool = False) -> Iterator[str]:
    """Names of every definition a source schema references."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and not in_properties:
                yield schemas.ref_name(value)
            elif in_properties or not key.startswith("x-"):
                # Property names are data: JSONSchemaProps has properties named "$ref" and
                # "x-kubernetes-validations".
                yield from _refs(value, key == "properties" and not in_properties)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


class _Definitions:
    """Source definitions (built-in + custom) with memoized conversions and reference sets."""

    def __init__(self, sources: dict[str, Schema]):
        self.sources = sources
        self._v3: dict[str, Schema] = {}
        self._v2: dict[str, Schema] = {}
        self._refs: dict[str, frozenset[str]] = {}

    def refs(self, name: str) -> frozenset[str]:
        if name not in self._refs:
            self._refs[name] = frozenset(_refs(self.sources.get(name, {})))
        return self._refs[name]

    def closure(self, roots: Iterable[str]) -> list[str]:
        seen: set[str] = set()
        stack = [n for n in roots if n in self.sources]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            stack.extend(r for r in self.refs(name) if r in self.sources and r not in seen)
        return sorted(seen)

    def v3(self, name: str) -> Schema:
        if name not in self._v3:
            self._v3[name] = _V3_OVERRIDES.get(name) or convert_schema(
                _strip_type_enums(self.sources[name]), "#/components/schemas/", wrap_refs=True)
        return self._v3[name]

    def v2(self, name: str) -> Schema:
        if name not in self._v2:
            self._v2[name] = _V2_OVERRIDES.get(name) or convert_schema(
                _strip_type_enums(self.sources[name]), "#/definitions/", wrap_refs=False)
        return self._v2[name]


def custom_definition_name(group: str, version: str, kind: str) -> str:
    """Upstream's name for a custom resource schema: `com.example.stable.v1.CronTab`."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _custom_kind_schema(r: ResourceInfo, provided: Schema | None) -> Schema:
    schema: Schema = dict(provided) if provided else {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema.setdefault("type", "object")
    props = dict(schema.get("properties") or {})
    props.setdefault("apiVersion", {"description": "APIVersion defines the versioned schema of "
                                    "this representation of an object.", "type": "string"})
    props.setdefault("kind", {"description": "Kind is a string value representing the REST "
                              "resource this object represents.", "type": "string"})
    props["metadata"] = {"$ref": "#/$defs/" + META + "ObjectMeta",
                         "description": "Standard object's metadata."}
    schema["properties"] = props
    schema["x-kubernetes-group-version-kind"] = [
        {"group": r.group, "kind": r.kind, "version": r.version}]
    return schema


def _custom_list_schema(r: ResourceInfo, item_name: str) -> Schema:
    return {
        "description": f"{r.kind}List is a list of {r.kind}",
        "properties": {
            "apiVersion": {"type": "string"},
            "items": {"items": {"$ref": "#/$defs/" + item_name}, "type": "array"},
            "kind": {"type": "string"},
            "metadata": {"$ref": "#/$defs/" + META + "ListMeta"},
        },
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": [
            {"group": r.group, "kind": r.kind + "List", "version": r.version}],
    }


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def _gvk_ext(gvk: tuple[str, str, str]) -> dict[str, str]:
    return {"group": gvk[0], "kind": gvk[2], "version": gvk[1]}


def _param_v3(p: Param) -> Schema:
    out: Schema = {"description": p.description, "in": p.location, "name": p.name,
                   "schema": {"type": p.type, "uniqueItems": True}}
    if p.required:
        out["required"] = True
    return out


def _param_v2(p: Param) -> Schema:
    out: Schema = {"description": p.description, "in": p.location, "name": p.name,
                   "type": p.type, "uniqueItems": True}
    if p.required:
        out["required"] = True
    return out


def _result_v3(definition: str | None) -> Schema:
    return {"$ref": "#/components/schemas/" + definition} if definition else {"type": "string"}


def _operation_v3(op: Operation) -> Schema:
    out: Schema = {"description": op.description, "operationId": op.operation_id}
    if op.params:
        out["parameters"] = [_param_v3(p) for p in op.params]
    if op.body:
        body: Schema = {"content": {t: {"schema": _result_v3(op.body)} for t in op.body_types}}
        if op.body_required:
            body["required"] = True
        out["requestBody"] = body
    responses: Schema = {
        r.code: {"content": {t: {"schema": _result_v3(r.definition)} for t in op.produces},
                 "description": r.description}
        for r in op.responses}
    responses["401"] = {"description": "Unauthorized"}
    out["responses"] = responses
    out["tags"] = [op.tag]
    if op.action:
        out["x-kubernetes-action"] = op.action
    if op.gvk:
        out["x-kubernetes-group-version-kind"] = _gvk_ext(op.gvk)
    return out


def _operation_v2(op: Operation) -> Schema:
    params = [_param_v2(p) for p in op.params]
    if op.body:
        body: Schema = {"in": "body", "name": "body",
                        "schema": {"$ref": "#/definitions/" + op.body}}
        if op.body_required:
            body["required"] = True
        params.insert(0, body)
    out: Schema = {"consumes": list(op.body_types), "description": op.description,
                   "operationId": op.operation_id, "produces": list(op.produces)}
    if params:
        out["parameters"] = params
    responses: Schema = {}
    for r in op.responses:
        schema = {"$ref": "#/definitions/" + r.definition} if r.definition else {"type": "string"}
        responses[r.code] = {"description": r.description, "schema": schema}
    responses["401"] = {"description": "Unauthorized"}
    out["responses"] = responses
    out["schemes"] = ["https"]
    out["tags"] = [op.tag]
    if op.action:
        out["x-kubernetes-action"] = op.action
    if op.gvk:
        out["x-kubernetes-group-version-kind"] = _gvk_ext(op.gvk)
    return out


def _path_item(item: PathItem, render_op: Callable[[Operation], Schema],
               render_param: Callable[[Param], Schema]) -> Schema:
    out: Schema = {op.method: render_op(op) for op in item.operations}
    if item.params:
        out["parameters"] = [render_param(p) for p in item.params]
    return out


def _definitions_used(items: Iterable[PathItem]) -> set[str]:
    used: set[str] = set()
    for item in items:
        for op in item.operations:
            if op.body:
                used.add(op.body)
            used.update(r.definition for r in op.responses if r.definition)
    return used


def _dumps(doc: Schema) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


# --------------------------------------------------------------------------------------------
# The documents
# --------------------------------------------------------------------------------------------

@dataclass
class _V3Built:
    documents: dict[str, bytes]
    hashes: dict[str, str]
    index: bytes


class OpenAPIDocs:
    """Lazily built, memoized OpenAPI documents for a catalogue.

    Rebuilds by itself when the catalogue's resources change; call `invalidate()` when
    something else changes (e.g. a CRD's schema returned by `schema_provider`).

    `schema_provider(resource)` may return an OpenAPI v3 schema (a CRD's `openAPIV3Schema`)
    for resources that have no upstream definition; without one they get an object schema
    that preserves unknown fields.
    """

    def __init__(self, catalogue: Catalogue, *, schema_provider: SchemaProvider | None = None,
                 server_version: str = f"v{schemas.API_LEVEL}.0"):
        self.catalogue = catalogue
        self.schema_provider = schema_provider
        self.server_version = server_version
        self._lock = threading.RLock()
        self._fingerprint: tuple[ResourceInfo, ...] | None = None
        self._defs: _Definitions | None = None
        self._kinds: dict[ResourceInfo, Kinds] = {}
        self._v3: _V3Built | None = None
        self._v2: tuple[bytes, str] | None = None

    # --- public API -------------------------------------------------------------------------

    def v2(self) -> bytes:
        """The Swagger 2.0 document (JSON)."""
        return self._v2_built()[0]

    def v2_hash(self) -> str:
        return self._v2_built()[1]

    def v3_index(self) -> bytes:
        """`{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=..."}, ...}}`."""
        return self._v3_built().index

    def v3_paths(self) -> list[str]:
        """Every key of the v3 index (`api`, `api/v1`, `apis`, `apis/apps`, `apis/apps/v1`, ...)."""
        return list(self._v3_built().documents)

    def v3_document(self, gv_path: str) -> bytes | None:
        """The document for `api/v1`, `apis/apps/v1`, ... (leading/trailing `/` ignored)."""
        return self._v3_built().documents.get(gv_path.strip("/"))

    def v3_hash(self, gv_path: str) -> str | None:
        """Hash of that document: the index's `?hash=` and the response ETag (unquoted)."""
        return self._v3_built().hashes.get(gv_path.strip("/"))

    def invalidate(self) -> None:
        with self._lock:
            self._fingerprint = None
            self._defs = None
            self._kinds = {}
            self._v3 = None
            self._v2 = None

    # --- state --------------------------------------------------------------------------------

    def _refresh(self) -> _Definitions:
        """Definitions for the current catalogue, dropping memoized documents if it changed."""
        fingerprint = tuple(self.catalogue.resources)
        if fingerprint != self._fingerprint or self._defs is None:
            self.invalidate()
            self._fingerprint = fingerprint
            self._defs = self._load_definitions(fingerprint)
        return self._defs

    def _load_definitions(self, resources: Iterable[ResourceInfo]) -> _Definitions:
        sources = dict(schemas.definitions())
        for r in resources:
            kind = schemas.definition_name(r.group, r.version, r.kind)
            if kind is not None:
                list_name = schemas.definition_name(r.group, r.version, r.kind + "List")
                self._kinds[r] = Kinds(kind, list_name or kind, builtin=True)
                continue
            kind = custom_definition_name(r.group, r.version, r.kind)
            provided = self.schema_provider(r) if self.schema_provider else None
            sources[kind] = _custom_kind_schema(r, provided)
            sources[kind + "List"] = _custom_list_schema(r, kind)
            self._kinds[r] = Kinds(kind, kind + "List", builtin=False)
        return _Definitions(sources)

    def _definition_of(self, gvk: tuple[str, str, str]) -> str | None:
        return schemas.definition_name(*gvk)

    def _resource_paths(self, resources: Iterable[ResourceInfo]) -> list[PathItem]:
        items: list[PathItem] = []
        for r in resources:
            items.extend(_PathBuilder(r, self._kinds[r], self._definition_of).paths())
        return items

    # --- v3 -----------------------------------------------------------------------------------

    def _v3_built(self) -> _V3Built:
        with self._lock:
            defs = self._refresh()
            if self._v3 is None:
                self._v3 = self._build_v3(defs)
            return self._v3

    def _v3_path_items(self) -> dict[str, list[PathItem]]:
        """Path items of every v3 document, keyed by index path."""
        cat = self.catalogue
        docs: dict[str, list[PathItem]] = {
            "api": [_discovery_item("/api/", "getCoreAPIVersions", "get available API versions",
                                    "core", META + "APIVersions")],
            "apis": [_discovery_item("/apis/", "getAPIVersions", "get available API versions",
                                     "apis", META + "APIGroupList")],
        }
        for group in cat.groups():
            if group:
                camel = _camel(group)
                docs[f"apis/{group}"] = [_discovery_item(
                    f"/apis/{group}/", f"get{camel}APIGroup", "get information of a group",
                    camel[:1].lower() + camel[1:], META + "APIGroup")]
            for version in cat.versions(group):
                path = gv_path(group, version)
                camel = _camel(group) + version[:1].upper() + version[1:]
                discovery = _discovery_item(f"/{path}/", f"get{camel}APIResources",
                                            "get available resources", _tag(group, version),
                                            META + "APIResourceList")
                resources = cat.in_group_version(group, version)
                docs[path] = [discovery] + self._resource_paths(resources)
        return docs

    def _build_v3(self, defs: _Definitions) -> _V3Built:
        documents: dict[str, bytes] = {}
        hashes: dict[str, str] = {}
        for path, items in self._v3_path_items().items():
            data = _dumps(self._v3_document(items, defs))
            documents[path] = data
            hashes[path] = document_hash(data)
        index = {"paths": {path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={h}"}
                           for path, h in hashes.items()}}
        return _V3Built(documents, hashes, _dumps(index))

    def _v3_document(self, items: list[PathItem], defs: _Definitions) -> Schema:
        names = defs.closure(_definitions_used(items))
        return {
            "components": {
                "schemas": {name: defs.v3(name) for name in names},
                "securitySchemes": {"BearerToken": _SECURITY_SCHEME},
            },
            "info": {"title": "Kubernetes", "version": "unversioned"},
            "openapi": "3.0.0",
            "paths": {item.url: _path_item(item, _operation_v3, _param_v3) for item in items},
        }

    # --- v2 -----------------------------------------------------------------------------------

    def _v2_built(self) -> tuple[bytes, str]:
        with self._lock:
            defs = self._refresh()
            if self._v2 is None:
                data = _dumps(self._v2_document(defs))
                self._v2 = (data, document_hash(data))
            return self._v2

    def _v2_document(self, defs: _Definitions) -> Schema:
        items = [item for doc in self._v3_path_items().values() for item in doc]
        return {
            "definitions": {name: defs.v2(name) for name in sorted(defs.sources)},
            "info": {"title": "Kubernetes", "version": self.server_version},
            "paths": {item.url: _path_item(item, _operation_v2, _param_v2) for item in items},
            "security": [{"BearerToken": []}],
            "securityDefinitions": {"BearerToken": _SECURITY_SCHEME},
            "swagger": "2.0",
        }
