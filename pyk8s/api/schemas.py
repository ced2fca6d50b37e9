"""Upstream's published OpenAPI definitions for built-in kinds.

The PyPI package kubernetes-validate ships upstream's schemas (as JSON Schema with `$defs`);
we read the 1.32 definitions once, lazily, and serve them as the source of truth for
OpenAPI documents, strategic-merge-patch merge keys and unknown-field detection.
Definition names are upstream's (`io.k8s.api.apps.v1.Deployment`); `$ref`s point at
`#/$defs/<name>`.
"""
from __future__ import annotations

import functools
import importlib.resources
from typing import Any

import orjson

API_LEVEL = "1.32"

Schema = dict[str, Any]


@functools.cache
def definitions() -> dict[str, Schema]:
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    path = root / f"v{API_LEVEL}.0-local" / "_definitions.json"
    data = orjson.loads(path.read_bytes())
    return data["$defs"]


@functools.cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            key = (gvk.get("group", ""), gvk["version"], gvk["kind"])
            # Prefer the non-meta definition when several claim the same GVK.
            if key not in out or name.startswith("io.k8s.api."):
                out[key] = name
    return out


def definition_name(group: str, version: str, kind: str) -> str | None:
    """`io.k8s.api.apps.v1.Deployment` for ("apps", "v1", "Deployment"), or None."""
    return _gvk_index().get((group, version, kind))


def ref_name(ref: str) -> str:
    """`#/$defs/io.k8s.api.core.v1.PodSpec` → `io.k8s.api.core.v1.PodSpec`."""
    return ref.rsplit("/", 1)[-1]


def resolve(schema: Schema | None) -> Schema | None:
    """Follow `$ref` (possibly nested in allOf) to the definition it names."""
    seen = 0
    while schema is not None and seen < 16:
        seen += 1
        if "$ref" in schema:
            schema = definitions().get(ref_name(schema["$ref"]))
            continue
        all_of = schema.get("allOf")
        if all_of and len(all_of) == 1 and "$ref" in all_of[0]:
            schema = all_of[0]
            continue
        return schema
    return schema


def schema_for(group: str, version: str, kind: str) -> Schema | None:
    name = definition_name(group, version, kind)
    return definitions().get(name) if name else None
