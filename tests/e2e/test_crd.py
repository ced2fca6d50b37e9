"""CustomResourceDefinitions against a real server with real kubectl."""
from __future__ import annotations

import time
from typing import Any, Callable

import pytest

from tests.conftest import ServerProcess, WatchReader

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: The CronTab's desired state.
            x-kubernetes-validations:
            - rule: "self.replicas <= 10"
              message: "at most 10 replicas"
            properties:
              cronSpec:
                type: string
                description: When to run, in cron format.
              image:
                type: string
              replicas:
                type: integer
                minimum: 0
                default: 1
              policy:
                type: string
                enum: [Allow, Forbid]
                default: Allow
              port:
                x-kubernetes-int-or-string: true
              extra:
                type: object
                x-kubernetes-preserve-unknown-fields: true
              tags:
                type: array
                x-kubernetes-list-type: set
                items:
                  type: string
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
            properties:
              replicas:
                type: integer
              selector:
                type: string
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"""

CR = """
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: my-cron
spec:
  cronSpec: "* * * * */5"
  image: my-awesome-cron-image
  replicas: 3
"""

BASE = "/apis/stable.example.com/v1/namespaces/default/crontabs"


def wait_until(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def crd(server: ServerProcess) -> ServerProcess:
    server.kubectl("apply", "-f", "-", input=CRD)
    wait_until(lambda: server.get(BASE).status == 200, timeout=2.0)
    server.kubectl("apply", "-f", "-", input=CR)  # every test may run alone (xdist)
    return server


def test_crd_established(crd: ServerProcess) -> None:
    obj = crd.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                  "crontabs.stable.example.com").json()
    conds = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conds["NamesAccepted"] == "True" and conds["Established"] == "True"
    assert obj["status"]["acceptedNames"]["kind"] == "CronTab"
    assert obj["status"]["storedVersions"] == ["v1"]
    crd.kubectl("wait", "--for=condition=Established", "crd/crontabs.stable.example.com",
                "--timeout=10s")


def test_discovery_and_openapi(crd: ServerProcess) -> None:
    rl = crd.get("/apis/stable.example.com/v1").json()
    names = {r["name"]: r for r in rl["resources"]}
    assert names["crontabs"]["shortNames"] == ["ct"]
    assert "crontabs/status" in names and "crontabs/scale" in names
    assert crd.get("/apis/stable.example.com/v1beta1").status == 200
    agg = crd.get("/apis", headers={
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"}).json()
    groups = {g["metadata"]["name"]: g for g in agg["items"]}
    assert [v["version"] for v in groups["stable.example.com"]["versions"]] == ["v1", "v1beta1"]
    v3 = crd.get("/openapi/v3").json()["paths"]
    assert "apis/stable.example.com/v1" in v3
    doc = crd.get("/openapi/v3/apis/stable.example.com/v1").json()
    schema = doc["components"]["schemas"]["com.example.stable.v1.CronTab"]
    assert schema["properties"]["spec"]["properties"]["replicas"]["type"] == "integer"
    v2 = crd.get("/openapi/v2").json()
    assert "com.example.stable.v1.CronTab" in v2["definitions"]


def test_explain(crd: ServerProcess) -> None:
    out = crd.kubectl("explain", "crontabs.spec").stdout
    assert "cronSpec" in out and "When to run" in out


def test_create_get_columns_defaults(crd: ServerProcess) -> None:
    crd.kubectl("apply", "-f", "-", input=CR)
    obj = crd.kubectl_json("get", "ct", "my-cron")
    assert obj["spec"]["policy"] == "Allow"  # defaulted
    assert obj["metadata"]["generation"] == 1
    out = crd.kubectl("get", "crontabs").stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "SPEC", "REPLICAS", "AGE"]
    assert row.split()[:7] == ["my-cron", "*", "*", "*", "*", "*/5", "3"]
    assert "my-cron" in crd.kubectl("get", "all").stdout


def test_validation_field_path(crd: ServerProcess) -> None:
    bad = {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
           "metadata": {"name": "bad"}, "spec": {"replicas": "three", "policy": "Maybe"}}
    r = crd.post(BASE, bad)
    assert r.status == 422, r
    st = r.json()
    fields = {c["field"]: c["message"] for c in st["details"]["causes"]}
    assert fields["spec.replicas"] == ('Invalid value: "string": spec.replicas in body must '
                                       'be of type integer: "string"')
    assert fields["spec.policy"].startswith('Unsupported value: "Maybe"')
    assert 'spec.replicas: Invalid value: "string"' in st["message"]
    p = crd.kubectl("apply", "-f", "-", check=False, input=CR.replace("replicas: 3",
                                                                       "replicas: -1"))
    assert p.returncode != 0 and "spec.replicas" in p.stderr
    r = crd.post(BASE, {**bad, "spec": {"replicas": 11}})
    assert r.status == 422 and r.json()["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec",
        "message": 'Invalid value: "object": at most 10 replicas'}]
    r = crd.post(BASE, {**bad, "spec": {"tags": ["a", "a"]}})
    assert r.status == 422 and r.json()["details"]["causes"][0]["field"] == "spec.tags[1]"
    r = crd.post(BASE, {**bad, "spec": {"port": 8080}}, headers={}, )
    assert r.status == 201
    crd.delete(BASE + "/bad")


def test_pruning(crd: ServerProcess) -> None:
    body = {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "pruned"},
            "spec": {"cronSpec": "x", "unknown": 1, "extra": {"anything": {"a": 1}}},
            "topLevel": True}
    r = crd.post(BASE, body)
    assert r.status == 201, r
    obj = r.json()
    assert "topLevel" not in obj and "unknown" not in obj["spec"]
    assert obj["spec"]["extra"] == {"anything": {"a": 1}}
    assert 'unknown field "spec.unknown"' in r.headers.get("Warning", "")
    r = crd.post(BASE + "?fieldValidation=Strict", {**body, "metadata": {"name": "strict"}})
    assert r.status == 400 and "spec.unknown" in r.json()["message"]
    crd.delete(BASE + "/pruned")


def test_status_and_scale(crd: ServerProcess) -> None:
    path = BASE + "/my-cron"
    r = crd.patch(path, {"status": {"replicas": 2, "selector": "app=x"}},
                  "application/merge-patch+json")
    assert r.status == 200 and "replicas" not in r.json().get("status", {})  # main: reset
    r = crd.patch(path + "/status", {"status": {"replicas": 2, "selector": "app=x"},
                                     "spec": {"replicas": 9}}, "application/merge-patch+json")
    assert r.status == 200, r
    assert r.json()["status"]["replicas"] == 2 and r.json()["spec"]["replicas"] == 3
    scale = crd.get(path + "/scale").json()
    assert scale["spec"]["replicas"] == 3 and scale["status"] == {"replicas": 2,
                                                                   "selector": "app=x"}
    crd.kubectl("scale", "crontab/my-cron", "--replicas=5")
    obj = crd.get(path).json()
    assert obj["spec"]["replicas"] == 5 and obj["metadata"]["generation"] == 2
    r = crd.patch(path, {"spec": {"replicas": 4}}, "application/strategic-merge-patch+json")
    assert r.status == 415


def test_versions_share_storage(crd: ServerProcess) -> None:
    obj = crd.get("/apis/stable.example.com/v1beta1/namespaces/default/crontabs/my-cron").json()
    assert obj["apiVersion"] == "stable.example.com/v1beta1"
    assert obj["spec"]["cronSpec"] == "* * * * */5"


def test_watch_crs_and_crds(crd: ServerProcess) -> None:
    w = WatchReader(crd, BASE + "?watch=1&resourceVersion=0")
    wc = WatchReader(crd, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?watch=1")
    try:
        w.wait_for(1)
        wc.wait_for(1)
        crd.post(BASE, {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
                        "metadata": {"name": "watched"}, "spec": {}})
        evs = w.wait_for(2)
        added = [e for e in evs if e["object"]["metadata"]["name"] == "watched"]
        assert added[0]["type"] == "ADDED" and added[0]["object"]["spec"]["replicas"] == 1
        assert wc.events[0]["object"]["kind"] == "CustomResourceDefinition"
    finally:
        w.close()
        wc.close()
    crd.delete(BASE + "/watched")


def test_invalid_crd(crd: ServerProcess) -> None:
    bad = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "things.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "things", "kind": "Thing"},
                    "versions": [{"name": "v1", "served": True, "storage": False,
                                  "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    r = crd.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", bad)
    assert r.status == 422
    assert "exactly one version marked as storage" in r.json()["message"]


def test_cluster_scoped_and_delete_cleanup(crd: ServerProcess) -> None:
    doc = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Cluster",
                    "names": {"plural": "widgets", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {
                                      "type": "object",
                                      "x-kubernetes-preserve-unknown-fields": True}}}]}}
    r = crd.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
    assert r.status == 201, r
    base = "/apis/example.com/v1/widgets"
    wait_until(lambda: crd.get(base).status == 200, timeout=2.0)
    for i in range(3):
        assert crd.post(base, {"apiVersion": "example.com/v1", "kind": "Widget",
                               "metadata": {"name": f"w{i}"}, "any": {"x": i}}).status == 201
    assert crd.post(base, {"apiVersion": "example.com/v1", "kind": "Widget",
                           "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
                    ).status == 201
    crd.kubectl("delete", "crd", "widgets.example.com", "--wait=false")
    crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
    wait_until(lambda: any(c["type"] == "Terminating" and c["status"] == "True"
                           for c in crd.get(crd_path).json()["status"]["conditions"]))
    wait_until(lambda: [o["metadata"]["name"] for o in crd.get(base).json()["items"]]
               == ["held"])
    r = crd.post(base, {"apiVersion": "example.com/v1", "kind": "Widget",
                        "metadata": {"name": "late"}})
    assert r.status == 405 and "terminating" in r.json()["message"]
    assert crd.patch(base + "/held", {"metadata": {"finalizers": None}},
                     "application/merge-patch+json").status == 200
    wait_until(lambda: crd.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                               "widgets.example.com").status == 404)
    assert crd.get(base).status == 404
    # Re-created: its old objects are gone.
    r = crd.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
    assert r.status == 201
    wait_until(lambda: crd.get(base).status == 200, timeout=2.0)
    assert crd.get(base).json()["items"] == []
    crd.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")


def test_published_versions_follow_the_crd(crd: ServerProcess) -> None:
    doc = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "gadgets.example.org"},
           "spec": {"group": "example.org", "scope": "Namespaced",
                    "names": {"plural": "gadgets", "kind": "Gadget"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object"}}},
                                 {"name": "v2", "served": False, "storage": False,
                                  "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.org"
    assert crd.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc).status == 201
    wait_until(lambda: "apis/example.org/v1" in crd.get("/openapi/v3").json()["paths"], 2.0)
    assert "apis/example.org/v2" not in crd.get("/openapi/v3").json()["paths"]
    assert crd.get("/apis/example.org/v2/gadgets").status == 404
    # Serve v2, stop serving v1.
    patch = {"spec": {"versions": [{**doc["spec"]["versions"][0], "served": False},
                                   {**doc["spec"]["versions"][1], "served": True}]}}
    assert crd.patch(path, patch, "application/merge-patch+json").status == 200
    wait_until(lambda: crd.get("/apis/example.org/v2/namespaces/default/gadgets").status == 200,
               2.0)
    assert crd.get("/apis/example.org/v1/namespaces/default/gadgets").status == 404
    paths = crd.get("/openapi/v3").json()["paths"]
    assert "apis/example.org/v2" in paths and "apis/example.org/v1" not in paths
    assert "org.example.v2.Gadget" in crd.get("/openapi/v2").json()["definitions"]
    versions = [v["version"] for v in crd.get("/apis/example.org").json()["versions"]]
    assert versions == ["v2"]
    crd.delete(path)
    wait_until(lambda: crd.get("/apis/example.org").status == 404, 5.0)


def test_crds_survive_restart(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = ServerProcess(tmp_path_factory.mktemp("crd-restart")).start()
    try:
        srv.kubectl("apply", "-f", "-", input=CRD)
        wait_until(lambda: srv.get(BASE).status == 200, timeout=2.0)
        srv.kubectl("apply", "-f", "-", input=CR)
        srv.stop()
        srv.start()
        obj = srv.get(BASE + "/my-cron").json()
        assert obj["spec"]["replicas"] == 3 and obj["spec"]["policy"] == "Allow"
        assert "my-cron" in srv.kubectl("get", "ct").stdout
    finally:
        srv.stop()


def test_kubectl_get_crd_and_describe(crd: ServerProcess) -> None:
    out = crd.kubectl("get", "crd").stdout
    assert "crontabs.stable.example.com" in out.splitlines()[1]
    out = crd.kubectl("describe", "crontab", "my-cron").stdout
    assert "Cron Spec:" in out
    assert crd.kubectl("api-resources", "--api-group=stable.example.com").stdout.split()[5:10] \
        == ["crontabs", "ct", "stable.example.com/v1", "true", "CronTab"]


def test_name_conflict(crd: ServerProcess) -> None:
    doc = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "crontabz.stable.example.com"},
           "spec": {"group": "stable.example.com", "scope": "Namespaced",
                    "names": {"plural": "crontabz", "kind": "CronTab"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/crontabz.stable.example.com"
    assert crd.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc).status == 201

    def conds() -> dict[str, Any]:
        return {c["type"]: c for c in crd.get(path).json()["status"]["conditions"]}
    c = wait_until(lambda: conds().get("NamesAccepted") and conds(), 2.0)
    assert c["NamesAccepted"]["status"] == "False"
    assert c["NamesAccepted"]["reason"] == "KindConflict"
    assert c["Established"]["status"] == "False"
    assert crd.get("/apis/stable.example.com/v1/namespaces/default/crontabz").status == 404
    crd.delete(path)


def test_server_side_apply(crd: ServerProcess) -> None:
    doc = CR.replace("my-cron", "ssa-cron").replace("replicas: 3", "replicas: 4")
    crd.kubectl("apply", "--server-side", "-f", "-", input=doc)
    obj = crd.get(BASE + "/ssa-cron").json()
    assert obj["spec"]["replicas"] == 4 and obj["spec"]["policy"] == "Allow"
    assert any(m["manager"] == "kubectl" and m["operation"] == "Apply"
               for m in obj["metadata"]["managedFields"])
    p = crd.kubectl("apply", "--server-side", "-f", "-", check=False,
                    input=doc.replace("replicas: 4", "replicas: 40"))
    assert p.returncode != 0 and "at most 10 replicas" in p.stderr
    crd.delete(BASE + "/ssa-cron")
