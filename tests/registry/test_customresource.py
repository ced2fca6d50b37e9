"""CRD strategy (validation, defaults, cleanup finalizer) and custom resource rules."""
from __future__ import annotations

import copy

from pyk8s.api.catalogue import Catalogue
from pyk8s.apiserver.crd import _jsonpath
from pyk8s.registry.customresource import (CLEANUP_FINALIZER, CustomResourceConversion,
                                           CustomResourceStrategy, served_versions)
from pyk8s.registry.strategy import strategy_for

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "things.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "things", "kind": "Thing", "shortNames": ["th"]},
             "versions": [
                 {"name": "v1", "served": True, "storage": True,
                  "subresources": {"status": {}},
                  "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                      "spec": {"type": "object", "properties": {
                          "size": {"type": "integer", "default": 2}}}}}}},
                 {"name": "v1alpha1", "served": True, "storage": False,
                  "schema": {"openAPIV3Schema": {"type": "object"}}}]}}


def _strategy():  # type: ignore[no-untyped-def]
    info = Catalogue().lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    assert info is not None
    return strategy_for(info)


def _fields(obj: dict) -> dict[str, str]:
    s = _strategy()
    obj = copy.deepcopy(obj)
    s.default(obj)
    return {c["field"]: c["message"] for c in s.validate(obj)}


def test_valid_crd_and_defaults() -> None:
    s = _strategy()
    obj = copy.deepcopy(CRD)
    s.default(obj)
    assert obj["spec"]["names"]["singular"] == "thing"
    assert obj["spec"]["names"]["listKind"] == "ThingList"
    assert obj["spec"]["conversion"] == {"strategy": "None"}
    assert s.validate(obj) == []
    s.prepare_for_create(obj)
    assert obj["status"]["storedVersions"] == ["v1"] and obj["metadata"]["generation"] == 1
    assert s.finalizers_on_delete(obj, []) == [CLEANUP_FINALIZER]


def test_invalid_crds() -> None:
    bad = copy.deepcopy(CRD)
    bad["metadata"]["name"] = "wrong.example.com"
    bad["spec"]["versions"][1]["storage"] = True
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["size"] = {"minimum": 1}
    f = _fields(bad)
    assert f["metadata.name"].endswith('must be spec.names.plural+"."+spec.group')
    assert "exactly one version marked as storage" in f["spec.versions"]
    assert ("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].type"
            in f)
    bad = copy.deepcopy(CRD)
    bad["spec"]["group"] = "nodot"
    bad["metadata"]["name"] = "things.nodot"
    bad["spec"]["scope"] = "Global"
    f = _fields(bad)
    assert "at least one dot" in f["spec.group"] and "spec.scope" in f


def test_served_versions_strategy_and_conversion() -> None:
    svs = served_versions(CRD)
    assert [sv.info.version for sv in svs] == ["v1", "v1alpha1"]
    v1 = svs[0]
    assert v1.info.storage_prefix == "/registry/example.com/things/"
    assert v1.info.subresources == ("status",) and v1.info.short_names == ("th",)
    st = CustomResourceStrategy(v1)
    obj = {"apiVersion": "example.com/v1", "kind": "Thing",
           "metadata": {"name": "a", "namespace": "default"}, "spec": {"junk": 1},
           "status": {"x": 1}}
    assert st.prune_unknown(obj) == ["spec.junk", "status"]
    st.default(obj)
    st.prepare_for_create(obj)
    assert obj["spec"] == {"size": 2} and obj["metadata"]["generation"] == 1
    assert st.validate(obj) == []
    conv = CustomResourceConversion(svs[1])
    stored = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "a"}}
    assert conv.to_external(stored)["apiVersion"] == "example.com/v1alpha1"
    assert conv.to_storage(conv.to_external(stored))["apiVersion"] == "example.com/v1"
    read = CustomResourceConversion(v1).to_external(stored)
    assert "spec" not in stored and read["apiVersion"] == "example.com/v1"


def test_jsonpath() -> None:
    obj = {"spec": {"a": [{"b": 1}, {"b": 2}]}, "metadata": {"labels": {"x.y/z": "v"}}}
    assert _jsonpath(obj, ".spec.a[1].b") == 2
    assert _jsonpath(obj, "{.spec.a[0].b}") == 1
    assert _jsonpath(obj, ".spec.missing") is None
