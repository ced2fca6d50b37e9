"""Unit tests for the OpenAPI v2/v3 documents (no server)."""
from __future__ import annotations

import time
from typing import Any, Iterator

import orjson
import pytest

from pyk8s.api.catalogue import Catalogue, ResourceInfo
from pyk8s.apiserver.openapi import (
    OpenAPIDocs,
    custom_definition_name,
    document_hash,
    gv_path,
    negotiate,
)

SMP = "application/strategic-merge-patch+json"
PATCH_TYPES = {"application/apply-patch+yaml", "application/json-patch+json",
               "application/merge-patch+json"}
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def docs() -> OpenAPIDocs:
    return OpenAPIDocs(Catalogue())


def v3(docs: OpenAPIDocs, path: str) -> dict[str, Any]:
    data = docs.v3_document(path)
    assert data is not None, path
    return orjson.loads(data)


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for url, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield url, method, item[method]


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:  # (a dict under "$ref" is a property of that name: JSONSchemaProps)
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def gvk_of(r: ResourceInfo) -> dict[str, str]:
    return {"group": r.group, "kind": r.kind, "version": r.version}


def supports_query_param_v3(doc: dict[str, Any], gvk: dict[str, str], param: str) -> bool:
    """cli-runtime's supportsQueryParamV3: the first PATCH with the GVK decides (map order is
    random in Go, so here *every* such PATCH must carry the parameter)."""
    found = [op for _, method, op in operations(doc)
             if method == "patch" and op.get("x-kubernetes-group-version-kind") == gvk]
    return bool(found) and all(any(p["name"] == param for p in op.get("parameters", []))
                               for op in found)


# --- v3 index ---------------------------------------------------------------------------------

def test_index_lists_every_group_version(docs: OpenAPIDocs) -> None:
    index = orjson.loads(docs.v3_index())
    cat = Catalogue()
    expected = {gv_path(r.group, r.version) for r in cat.resources}
    expected |= {"api", "apis"} | {f"apis/{g}" for g in cat.groups() if g}
    assert set(index["paths"]) == expected
    for path, entry in index["paths"].items():
        assert entry == {"serverRelativeURL": f"/openapi/v3/{path}?hash={docs.v3_hash(path)}"}
        assert docs.v3_hash(path) == document_hash(docs.v3_document(path) or b"")


def test_unknown_and_slashed_group_versions(docs: OpenAPIDocs) -> None:
    assert docs.v3_document("apis/nope/v1") is None
    assert docs.v3_hash("apis/nope/v1") is None
    assert docs.v3_document("/apis/apps/v1/") == docs.v3_document("apis/apps/v1")


# --- v3 group-version documents ---------------------------------------------------------------

def test_apps_v1_deployment_patch(docs: OpenAPIDocs) -> None:
    doc = v3(docs, "apis/apps/v1")
    assert doc["openapi"] == "3.0.0" and doc["info"]["title"] == "Kubernetes"
    item = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    assert set(item) >= {"get", "put", "patch", "delete", "parameters"}
    patch = item["patch"]
    assert patch["x-kubernetes-action"] == "patch"
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps", "kind": "Deployment", "version": "v1"}
    names = {p["name"] for p in patch["parameters"]}
    assert {"fieldValidation", "dryRun", "fieldManager", "force"} <= names
    assert set(patch["requestBody"]["content"]) == PATCH_TYPES | {SMP}
    assert patch["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/io.k8s.api.apps.v1.Deployment"}
    assert {p["name"] for p in item["parameters"]} == {"name", "namespace", "pretty"}
    assert supports_query_param_v3(doc, {"group": "apps", "kind": "Deployment",
                                         "version": "v1"}, "fieldValidation")


def test_apps_v1_paths_and_actions(docs: OpenAPIDocs) -> None:
    doc = v3(docs, "apis/apps/v1")
    paths = doc["paths"]
    coll = paths["/apis/apps/v1/namespaces/{namespace}/deployments"]
    assert coll["get"]["x-kubernetes-action"] == "list"
    assert coll["post"]["x-kubernetes-action"] == "post"
    assert coll["delete"]["x-kubernetes-action"] == "deletecollection"
    assert coll["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("io.k8s.api.apps.v1.DeploymentList")
    assert {p["name"] for p in coll["post"]["parameters"]} == {
        "dryRun", "fieldManager", "fieldValidation"}
    assert "watch" in {p["name"] for p in coll["get"]["parameters"]}
    assert paths["/apis/apps/v1/deployments"]["get"]["operationId"] == \
        "listAppsV1DeploymentForAllNamespaces"
    assert coll["delete"]["operationId"] == "deleteAppsV1CollectionNamespacedDeployment"
    scale = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["patch"]["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling", "kind": "Scale", "version": "v1"}
    assert "io.k8s.api.autoscaling.v1.Scale" in doc["components"]["schemas"]
    status = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]
    assert set(status) == {"get", "put", "patch", "parameters"}
    watch = paths["/apis/apps/v1/watch/namespaces/{namespace}/deployments"]["get"]
    assert watch["x-kubernetes-action"] == "watchlist"
    assert paths["/apis/apps/v1/"]["get"]["operationId"] == "getAppsV1APIResources"


def test_core_subresources(docs: OpenAPIDocs) -> None:
    paths = v3(docs, "api/v1")["paths"]
    binding = paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"]
    assert set(binding) == {"post", "parameters"}
    assert binding["post"]["x-kubernetes-group-version-kind"]["kind"] == "Binding"
    finalize = paths["/api/v1/namespaces/{name}/finalize"]
    assert finalize["put"]["operationId"] == "replaceCoreV1NamespaceFinalize"
    # cluster-scoped: no namespace parameter, no all-namespaces path
    ns = paths["/api/v1/namespaces/{name}"]
    assert {p["name"] for p in ns["parameters"]} == {"name", "pretty"}
    assert "delete" not in paths["/api/v1/namespaces"]  # no deletecollection verb
    assert paths["/api/v1/namespaces/{namespace}/pods"]["get"]["operationId"] == \
        "listCoreV1NamespacedPod"


def test_every_resource_supports_field_validation(docs: OpenAPIDocs) -> None:
    for r in Catalogue().resources:
        doc = v3(docs, gv_path(r.group, r.version))
        if "patch" in r.verbs:
            assert supports_query_param_v3(doc, gvk_of(r), "fieldValidation"), r
        for _, method, op in operations(doc):
            if method in ("post", "put", "patch"):
                assert any(p["name"] == "fieldValidation" for p in op["parameters"]), op


def test_deployment_schema(docs: OpenAPIDocs) -> None:
    schemas = v3(docs, "apis/apps/v1")["components"]["schemas"]
    dep = schemas["io.k8s.api.apps.v1.Deployment"]
    assert dep["type"] == "object"
    assert set(dep["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert dep["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert dep["properties"]["apiVersion"] == {
        "description": dep["properties"]["apiVersion"]["description"], "type": "string"}
    assert dep["properties"]["spec"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}]
    spec = schemas["io.k8s.api.apps.v1.DeploymentSpec"]
    assert spec["required"] == ["selector", "template"]
    assert spec["properties"]["strategy"]["x-kubernetes-patch-strategy"] == "retainKeys"
    conditions = schemas["io.k8s.api.apps.v1.DeploymentStatus"]["properties"]["conditions"]
    assert conditions["x-kubernetes-patch-merge-key"] == "type"
    assert "io.k8s.api.apps.v1.DeploymentList" in schemas
    # only what the document reaches
    assert "io.k8s.api.batch.v1.Job" not in schemas


def test_special_definitions(docs: OpenAPIDocs) -> None:
    schemas = v3(docs, "api/v1")["components"]["schemas"]
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["oneOf"] == [
        {"type": "integer"}, {"type": "string"}]
    assert schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]["oneOf"] == [
        {"type": "string"}, {"type": "number"}]
    assert schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"] == {
        "description": schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["description"],
        "format": "date-time", "type": "string"}


def test_every_ref_resolves_and_no_null_types(docs: OpenAPIDocs) -> None:
    for path in docs.v3_paths():
        doc = v3(docs, path)
        schemas = doc["components"]["schemas"]
        for ref in refs(doc):
            assert ref.startswith("#/components/schemas/"), (path, ref)
            assert ref.removeprefix("#/components/schemas/") in schemas, (path, ref)
        assert b'"null"' not in (docs.v3_document(path) or b"")
        assert b"#/$defs/" not in (docs.v3_document(path) or b"")


def test_ref_with_siblings_is_wrapped(docs: OpenAPIDocs) -> None:
    def check(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                assert set(node) == {"$ref"}, node
            for value in node.values():
                check(value)
        elif isinstance(node, list):
            for value in node:
                check(value)
    check(v3(docs, "api/v1")["components"])


# --- v2 ---------------------------------------------------------------------------------------

def test_v2_document(docs: OpenAPIDocs) -> None:
    doc = orjson.loads(docs.v2())
    assert doc["swagger"] == "2.0"
    defs = doc["definitions"]
    dep = defs["io.k8s.api.apps.v1.Deployment"]
    assert set(dep["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert dep["properties"]["spec"]["$ref"] == "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    assert dep["x-kubernetes-group-version-kind"][0]["kind"] == "Deployment"
    assert defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"] == "string"
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps", "kind": "Deployment", "version": "v1"}
    params = {p["name"]: p for p in patch["parameters"]}
    assert params["fieldValidation"] == {**params["fieldValidation"], "in": "query",
                                         "type": "string"}
    assert params["body"]["schema"]["$ref"] == \
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    assert set(patch["consumes"]) == PATCH_TYPES | {SMP}
    for r in Catalogue().resources:  # every GV's paths are in the single document
        assert any(url.startswith("/" + gv_path(r.group, r.version) + "/")
                   for url in doc["paths"])
    for ref in refs(doc):
        assert ref.removeprefix("#/definitions/") in defs, ref
    assert b'"null"' not in docs.v2()
    assert docs.v2_hash() == document_hash(docs.v2())


# --- custom resources, caching ----------------------------------------------------------------

CRONTAB = ResourceInfo(group="stable.example.com", version="v1", kind="CronTab",
                       plural="crontabs", singular="crontab", subresources=("status",))


def test_custom_resource_uses_merge_patches_and_provided_schema() -> None:
    provided = {"type": "object", "properties": {"spec": {
        "type": "object", "properties": {"cronSpec": {"type": "string"}}}}}
    cat = Catalogue()
    cat.add(CRONTAB)
    docs = OpenAPIDocs(cat, schema_provider=lambda r: provided if r is CRONTAB else None)
    doc = v3(docs, "apis/stable.example.com/v1")
    name = custom_definition_name("stable.example.com", "v1", "CronTab")
    assert name == "com.example.stable.v1.CronTab"
    schema = doc["components"]["schemas"][name]
    assert schema["properties"]["spec"]["properties"]["cronSpec"] == {"type": "string"}
    assert schema["properties"]["metadata"]["allOf"][0]["$ref"].endswith(".ObjectMeta")
    assert schema["x-kubernetes-group-version-kind"] == [gvk_of(CRONTAB)]
    assert name + "List" in doc["components"]["schemas"]
    patch = doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
    assert set(patch["patch"]["requestBody"]["content"]) == PATCH_TYPES  # no SMP for CRs
    assert supports_query_param_v3(doc, gvk_of(CRONTAB), "fieldValidation")
    assert "properties" not in provided["properties"]["spec"]["properties"]["cronSpec"]
    for ref in refs(doc):
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"]


def test_memoized_and_rebuilt_when_catalogue_changes() -> None:
    cat = Catalogue()
    docs = OpenAPIDocs(cat)
    first = docs.v3_document("apis/apps/v1")
    assert docs.v3_document("apis/apps/v1") is first
    assert docs.v2() is docs.v2()
    assert OpenAPIDocs(Catalogue()).v3_hash("apis/apps/v1") == docs.v3_hash("apis/apps/v1")
    assert docs.v3_document("apis/stable.example.com/v1") is None
    cat.add(CRONTAB)
    assert docs.v3_document("apis/stable.example.com/v1") is not None
    assert "apis/stable.example.com/v1" in orjson.loads(docs.v3_index())["paths"]
    assert docs.v3_document("apis/apps/v1") == first
    docs.invalidate()
    assert docs.v3_document("apis/apps/v1") is not first


# --- negotiation ------------------------------------------------------------------------------

@pytest.mark.parametrize("accept,expected", [
    (None, "application/json"),
    ("", "application/json"),
    ("application/json", "application/json"),
    ("application/json, */*", "application/json"),
    ("*/*", "application/json"),
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", None),
    ("application/com.github.proto-openapi.spec.v3@v1.0+protobuf", None),
    ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf, application/json",
     "application/json"),
    ("application/json;q=0, application/yaml", None),
])
def test_negotiate(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


# --- cost -------------------------------------------------------------------------------------

def test_build_time_and_sizes() -> None:
    """Prints build time and sizes (run with -s); no timing assertion."""
    start = time.perf_counter()
    docs = OpenAPIDocs(Catalogue())
    index = docs.v3_index()
    v3_built = time.perf_counter()
    v2 = docs.v2()
    v2_built = time.perf_counter()
    sizes = {p: len(docs.v3_document(p) or b"") for p in docs.v3_paths()}
    print(f"\nv3 (index + {len(sizes)} documents): {v3_built - start:.3f}s, "
          f"{sum(sizes.values()) / 1e6:.2f} MB; index {len(index)} B; "
          f"largest {max(sizes, key=sizes.__getitem__)} {max(sizes.values()) / 1e3:.0f} kB")
    print(f"v2: {v2_built - v3_built:.3f}s, {len(v2) / 1e6:.2f} MB")
    assert sizes["api/v1"] > 0 and v2
