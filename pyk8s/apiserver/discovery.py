"""Discovery documents: legacy (/api, /apis, /api/v1, /apis/G/V) and aggregated
(apidiscovery.k8s.io v2 and v2beta1), built from the catalogue."""
from __future__ import annotations

from typing import Any

from pyk8s.api.catalogue import Catalogue, ResourceInfo

Obj = dict[str, Any]

_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "binding": ["create"],
    "eviction": ["create"],
    "finalize": ["update"],
    "token": ["create"],
    "log": ["get"],
    "exec": ["create", "get"],
    "attach": ["create", "get"],
    "portforward": ["create", "get"],
    "proxy": ["create", "delete", "get", "patch", "update"],
}
_SUB_KINDS = {"exec": "PodExecOptions", "attach": "PodAttachOptions",
              "portforward": "PodPortForwardOptions", "proxy": "PodProxyOptions"}


def _sub_kind(info: ResourceInfo, sub: str) -> tuple[str, str, str]:
    if sub == "scale":
        return "autoscaling", "v1", "Scale"
    if sub == "binding":
        return "", "v1", "Binding"
    if sub == "eviction":   # served for policy/v1 Evictions (v1beta1 accepted too)
        return "policy", "v1", "Eviction"
    if sub == "token":
        return "authentication.k8s.io", "v1", "TokenRequest"
    if sub == "proxy":   # NodeProxyOptions, PodProxyOptions, ServiceProxyOptions
        return "", "v1", f"{info.kind}ProxyOptions"
    if sub in _SUB_KINDS:
        return "", "v1", _SUB_KINDS[sub]
    return info.group, info.version, info.kind


def api_versions(server_address: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}]}


def _group(cat: Catalogue, group: str) -> Obj:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in cat.versions(group)]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_group_list(cat: Catalogue) -> Obj:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(cat, g) for g in cat.groups() if g]}


def api_group(cat: Catalogue, group: str) -> Obj | None:
    if group not in cat.groups() or not group:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(cat, group)}


def api_resource_list(cat: Catalogue, group: str, version: str) -> Obj | None:
    infos = cat.in_group_version(group, version)
    if not infos:
        return None
    resources: list[Obj] = []
    for r in infos:
        entry: Obj = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                      "kind": r.kind, "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        resources.append(entry)
        for sub in r.subresources:
            g, v, k = _sub_kind(r, sub)
            se: Obj = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                       "kind": k, "verbs": _SUBRESOURCE_VERBS.get(sub, ["get"])}
            if (g, v) != (r.group, r.version):
                se["group"], se["version"] = g, v
            resources.append(se)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}


def _aggregated_resource(r: ResourceInfo) -> Obj:
    out: Obj = {
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        out["shortNames"] = list(r.short_names)
    if r.categories:
        out["categories"] = list(r.categories)
    subs = []
    for sub in r.subresources:
        g, v, k = _sub_kind(r, sub)
        subs.append({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": k},
                     "verbs": _SUBRESOURCE_VERBS.get(sub, ["get"])})
    if subs:
        out["subresources"] = subs
    return out


def aggregated(cat: Catalogue, legacy: bool, version: str) -> Obj:
    """APIGroupDiscoveryList for /api (legacy=True) or /apis; version "v2" or "v2beta1"."""
    groups = [""] if legacy else [g for g in cat.groups() if g]
    items = []
    for g in groups:
        versions = [{"version": v,
                     "resources": [_aggregated_resource(r) for r in cat.in_group_version(g, v)],
                     "freshness": "Current"} for v in cat.versions(g)]
        md: Obj = {"creationTimestamp": None}
        if g:
            md["name"] = g
        items.append({"metadata": md, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}
