"""CustomResourceDefinitions and custom resources: their strategies (no I/O).

`CRDStrategy` is upstream's `apiextensions-apiserver/pkg/registry/customresourcedefinition`
(defaults, validation of names / versions / schemas, the cleanup finalizer on delete);
`CustomResourceStrategy` and `CustomResourceConversion` serve one version of a custom
resource: structural-schema validation, pruning and defaulting (`pyk8s.api.structural`),
generation always tracked, status per the version's subresources, conversion `None`
between versions (only apiVersion changes), defaults applied when reading from storage.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from pyk8s.api import errors, structural, validation
from pyk8s.api.catalogue import ResourceInfo
from pyk8s.api.errors import StatusCause
from pyk8s.registry.strategy import Strategy

Obj = dict[str, Any]

GROUP = "apiextensions.k8s.io"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


@dataclass
class ServedVersion:
    """What one served version of a CRD needs at request time."""
    crd_name: str
    info: ResourceInfo
    storage_version: str
    schema: Obj | None
    columns: list[Obj] = field(default_factory=list)
    scale: Obj | None = None  # the version's subresources.scale


def version_schema(version: Obj) -> Obj | None:
    s = ((version.get("schema") or {}).get("openAPIV3Schema"))
    return s if isinstance(s, dict) else None


def storage_version(crd: Obj) -> str:
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("storage"):
            return str(v.get("name"))
    return ""


def served_versions(crd: Obj) -> list[ServedVersion]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    stored = storage_version(crd)
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served"):
            continue
        subs = v.get("subresources") or {}
        info = ResourceInfo(
            group=group, version=v["name"], kind=names.get("kind", ""),
            plural=names.get("plural", ""),
            singular=names.get("singular") or names.get("kind", "").lower(),
            namespaced=spec.get("scope") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=tuple(s for s in ("status", "scale") if s in subs),
            storage_group=group)
        out.append(ServedVersion(crd["metadata"]["name"], info, stored, version_schema(v),
                                 list(v.get("additionalPrinterColumns") or []),
                                 subs.get("scale")))
    return out


# --- the CRD itself ------------------------------------------------------------------------------

class CRDStrategy(Strategy):
    def __init__(self, info: ResourceInfo) -> None:
        super().__init__(info)
        self.tracks_generation = True

    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        names = spec.get("names")
        if isinstance(names, dict) and names.get("kind"):
            names.setdefault("singular", str(names["kind"]).lower())
            names.setdefault("listKind", f"{names['kind']}List")
        conv = spec.setdefault("conversion", {"strategy": "None"})
        if isinstance(conv, dict):
            conv.setdefault("strategy", "None")
        for v in spec.get("versions") or []:
            if isinstance(v, dict):
                s = version_schema(v)
                if s is not None:
                    _default_schema_defaults(s)

    def prepare_for_create(self, obj: Obj) -> None:
        super().prepare_for_create(obj)
        obj["status"] = {"conditions": [], "acceptedNames": {"plural": "", "kind": ""},
                         "storedVersions": [storage_version(obj)] if storage_version(obj) else []}

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        super().prepare_for_update(new, old)

    def validate(self, obj: Obj, old: Obj | None = None) -> list[StatusCause]:
        errs = validation.validate(self.info.group, self.info.kind, obj, old, namespaced=False)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return errs + [errors.field_required("spec")]
        group = spec.get("group") or ""
        names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
        plural = names.get("plural") or ""
        name = (obj.get("metadata") or {}).get("name") or ""
        if name != f"{plural}.{group}":
            errs.append(errors.field_invalid("metadata.name", name,
                                             'must be spec.names.plural+"."+spec.group'))
        if not group:
            errs.append(errors.field_required("spec.group"))
        elif "." not in group or not _DNS1123_SUBDOMAIN.match(group):
            errs.append(errors.field_invalid("spec.group", group,
                                             "should be a domain with at least one dot"))
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            errs.append(errors.field_not_supported("spec.scope", spec.get("scope", ""),
                                                   ["Cluster", "Namespaced"]))
        for key in ("plural", "singular"):
            val = names.get(key)
            if key == "plural" and not val:
                errs.append(errors.field_required("spec.names.plural"))
            elif val and not _DNS1123_LABEL.match(val):
                errs.append(errors.field_invalid(f"spec.names.{key}", val,
                                                 "a lowercase RFC 1123 label must consist of "
                                                 "lower case alphanumeric characters or '-'"))
        for key in ("kind", "listKind"):
            val = names.get(key)
            if key == "kind" and not val:
                errs.append(errors.field_required("spec.names.kind"))
            elif val and not _KIND.match(val):
                errs.append(errors.field_invalid(f"spec.names.{key}", val,
                                                 "may have mixed case, but should otherwise "
                                                 "match: ^[a-z]([-a-z0-9]*[a-z0-9])?$"))
        for i, s in enumerate(names.get("shortNames") or []):
            if not isinstance(s, str) or not _DNS1123_LABEL.match(s):
                errs.append(errors.field_invalid(f"spec.names.shortNames[{i}]", s,
                                                 "a lowercase RFC 1123 label"))
        versions = spec.get("versions")
        if not isinstance(versions, list) or not versions:
            errs.append(errors.field_invalid("spec.versions", versions or [],
                                             "must have exactly one version marked as storage "
                                             "version"))
            return errs
        seen: set[str] = set()
        storage = 0
        for i, v in enumerate(versions):
            p = f"spec.versions[{i}]"
            if not isinstance(v, dict):
                errs.append(errors.field_invalid(p, v, "must be an object"))
                continue
            vn = v.get("name") or ""
            if not vn:
                errs.append(errors.field_required(f"{p}.name"))
            elif not _DNS1123_LABEL.match(vn):
                errs.append(errors.field_invalid(f"{p}.name", vn, "a DNS-1035 label"))
            if vn in seen:
                errs.append(errors.field_invalid("spec.versions", versions,
                                                 "must contain unique version names"))
            seen.add(vn)
            storage += bool(v.get("storage"))
            schema = version_schema(v)
            if schema is None:
                errs.append(errors.field_required(f"{p}.schema.openAPIV3Schema",
                                                  "schemas are required"))
            else:
                errs.extend(structural.check_structural(schema, f"{p}.schema.openAPIV3Schema"))
            sc = (v.get("subresources") or {}).get("scale")
            if isinstance(sc, dict):
                for k in ("specReplicasPath", "statusReplicasPath"):
                    if not sc.get(k):
                        errs.append(errors.field_required(f"{p}.subresources.scale.{k}"))
        if storage != 1:
            errs.append(errors.field_invalid("spec.versions", versions,
                                             "must have exactly one version marked as storage "
                                             "version"))
        if not any(isinstance(v, dict) and v.get("served") for v in versions):
            errs.append(errors.field_invalid("spec.versions", versions,
                                             "must have at least one version marked as served"))
        if old is not None:
            ospec = old.get("spec") or {}
            if ospec.get("scope") != spec.get("scope"):
                errs.append(errors.field_invalid("spec.scope", spec.get("scope"),
                                                 "field is immutable"))
            if ospec.get("group") != group:
                errs.append(errors.field_invalid("spec.group", group, "field is immutable"))
        return errs

    def finalizers_on_delete(self, obj: Obj, wants: list[str]) -> list[str]:
        """A CRD is deleted only after its custom resources: the cleanup finalizer."""
        return wants if CLEANUP_FINALIZER in wants else [*wants, CLEANUP_FINALIZER]

    def on_delete_pending(self, obj: Obj) -> None:
        status = obj.setdefault("status", {})
        set_condition(status, "Terminating", "True", "InstanceDeletionInProgress",
                      "CustomResource deletion is in progress")


def _default_schema_defaults(schema: Obj) -> None:
    """Nothing to default inside schemas for now (upstream defaults nothing structural)."""


def set_condition(status: Obj, type_: str, value: str, reason: str, message: str) -> bool:
    """Set a CRD condition; True when something changed."""
    from pyk8s.api import meta
    conds = status.setdefault("conditions", []) or []
    status["conditions"] = conds
    for c in conds:
        if c.get("type") == type_:
            if (c.get("status"), c.get("reason"), c.get("message")) == (value, reason, message):
                return False
            if c.get("status") != value:
                c["lastTransitionTime"] = meta.rfc3339()
            c.update(status=value, reason=reason, message=message)
            return True
    conds.append({"type": type_, "status": value, "lastTransitionTime": meta.rfc3339(),
                  "reason": reason, "message": message})
    return True


# --- custom resources ----------------------------------------------------------------------------

class CustomResourceStrategy(Strategy):
    def __init__(self, served: ServedVersion) -> None:
        super().__init__(served.info)
        self.served = served
        self.schema = served.schema
        self.tracks_generation = True

    def default(self, obj: Obj) -> None:
        structural.default(obj, self.schema)

    def prune_unknown(self, obj: Obj) -> list[str]:
        return structural.prune(obj, self.schema)

    def validate(self, obj: Obj, old: Obj | None = None) -> list[StatusCause]:
        errs = validation.validate(self.info.group, self.info.kind, obj, old,
                                   namespaced=self.info.namespaced)
        return errs + structural.validate(obj, self.schema, old)

    def prepare_for_status_update(self, new: Obj, old: Obj) -> Obj:
        result = super().prepare_for_status_update(new, old)
        structural.default(result, self.schema)
        return result

    def validate_status(self, obj: Obj, old: Obj) -> list[StatusCause]:
        return [c for c in structural.validate(obj, self.schema, old)
                if (c.get("field") or "").startswith("status")]

    def scale_paths(self) -> Obj | None:
        return self.served.scale


class CustomResourceConversion:
    """Conversion `None`: the stored object only changes apiVersion; reads get defaults."""

    def __init__(self, served: ServedVersion) -> None:
        self.served = served
        self.storage_gv = f"{served.info.group}/{served.storage_version}"

    def to_external(self, obj: Obj) -> Obj:
        out = copy.copy(obj)
        out["apiVersion"] = self.served.info.api_version
        if self.served.schema:
            out = copy.deepcopy(out)
            structural.default(out, self.served.schema)
        return out

    def to_storage(self, obj: Obj) -> Obj:
        out = copy.copy(obj)
        out["apiVersion"] = self.storage_gv
        return out
