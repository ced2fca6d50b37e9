"""The REST API over real HTTPS against a real server process."""
from __future__ import annotations

import json
import time
from typing import Any


from tests.conftest import ServerProcess, WatchReader

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def deployment(name: str, replicas: int = 1, image: str = "nginx:1.25") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}}


def assert_status(r: Any, code: int, reason: str) -> dict[str, Any]:
    assert r.status == code, r
    body = r.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["status"] == "Failure" and body["code"] == code and body["reason"] == reason, body
    return body


# -- public endpoints and auth -------------------------------------------------------------
def test_health_and_version_without_token(server: ServerProcess) -> None:
    for p in ("/healthz", "/livez", "/readyz"):
        assert server.get(p, token=None).status == 200
    v = server.get("/version", token=None).json()
    assert v["major"] == "1" and v["minor"] == "32" and v["gitVersion"].startswith("v1.32.")


def test_requests_without_valid_token_get_401(server: ServerProcess) -> None:
    assert_status(server.get("/api/v1/namespaces", token="wrong"), 401, "Unauthorized")
    # no credentials at all: system:anonymous, whom RBAC lets read only /version and health
    assert_status(server.get("/api/v1/namespaces", token=None), 403, "Forbidden")


def test_default_namespaces_exist(server: ServerProcess) -> None:
    names = {n["metadata"]["name"] for n in server.get("/api/v1/namespaces").json()["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


# -- CRUD -------------------------------------------------------------------------------------
def test_create_get_update_delete(server: ServerProcess) -> None:
    r = server.post(CM, cm("crud", a="1"))
    assert r.status == 201, r
    created = r.json()
    md = created["metadata"]
    assert md["uid"] and md["creationTimestamp"] and md["namespace"] == "default"
    rv1 = int(md["resourceVersion"])
    got = server.get(f"{CM}/crud").json()
    assert got["data"] == {"a": "1"} and got["metadata"]["resourceVersion"] == str(rv1)
    got["data"]["b"] = "2"
    r = server.put(f"{CM}/crud", got)
    assert r.status == 200, r
    assert int(r.json()["metadata"]["resourceVersion"]) > rv1
    # stale resourceVersion → 409 Conflict, nothing written
    got["data"]["c"] = "3"
    body = assert_status(server.put(f"{CM}/crud", got), 409, "Conflict")
    assert "the object has been modified" in body["message"]
    assert "c" not in server.get(f"{CM}/crud").json()["data"]
    r = server.delete(f"{CM}/crud")
    assert r.status == 200 and r.json()["status"] == "Success", r
    assert_status(server.get(f"{CM}/crud"), 404, "NotFound")


def test_already_exists_message(server: ServerProcess) -> None:
    assert server.post(DEPLOY, deployment("dup")).status == 201
    body = assert_status(server.post(DEPLOY, deployment("dup")), 409, "AlreadyExists")
    assert body["message"] == 'deployments.apps "dup" already exists'
    assert body["details"] == {"name": "dup", "group": "apps", "kind": "deployments"}


def test_generate_name_and_dry_run(server: ServerProcess) -> None:
    r = server.post(CM, {"metadata": {"generateName": "gen-"}, "data": {"x": "y"}})
    assert r.status == 201, r
    name = r.json()["metadata"]["name"]
    assert name.startswith("gen-") and len(name) == 9
    r = server.post(CM + "?dryRun=All", cm("dry"))
    assert r.status == 201
    assert server.get(f"{CM}/dry").status == 404


def test_post_without_content_type_and_type_meta(server: ServerProcess) -> None:
    r = server.post(CM, {"metadata": {"name": "bare"}}, content_type=None)
    assert r.status == 201, r
    assert r.json()["kind"] == "ConfigMap" and r.json()["apiVersion"] == "v1"


def test_yaml_request_body(server: ServerProcess) -> None:
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n"
    r = server.post(CM, raw=body, content_type="application/yaml")
    assert r.status == 201, r
    assert server.get(f"{CM}/from-yaml").json()["data"] == {"k": "v"}


def test_generation_bumps_on_spec_change_only(server: ServerProcess) -> None:
    d = server.post(DEPLOY, deployment("gen")).json()
    assert d["metadata"]["generation"] == 1
    d["metadata"].setdefault("labels", {})["x"] = "y"
    d = server.put(f"{DEPLOY}/gen", d).json()
    assert d["metadata"]["generation"] == 1
    d["spec"]["replicas"] = 3
    d = server.put(f"{DEPLOY}/gen", d).json()
    assert d["metadata"]["generation"] == 2


def test_defaults_applied(server: ServerProcess) -> None:
    d = server.post(DEPLOY, deployment("defaults")).json()
    spec = d["spec"]
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["revisionHistoryLimit"] == 10 and spec["progressDeadlineSeconds"] == 600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always" and pod["dnsPolicy"] == "ClusterFirst"
    assert pod["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_secret_string_data_folded(server: ServerProcess) -> None:
    r = server.post("/api/v1/namespaces/default/secrets",
                    {"metadata": {"name": "s1"}, "stringData": {"user": "admin"}})
    assert r.status == 201, r
    s = r.json()
    assert s["data"] == {"user": "YWRtaW4="} and "stringData" not in s and s["type"] == "Opaque"


# -- bad input --------------------------------------------------------------------------------
def test_malformed_json_is_400(server: ServerProcess) -> None:
    assert_status(server.post(CM, raw=b'{"metadata": {', content_type="application/json"),
                  400, "BadRequest")


def test_malformed_yaml_is_400(server: ServerProcess) -> None:
    assert_status(server.post(CM, raw=b"metadata: [unclosed", content_type="application/yaml"),
                  400, "BadRequest")


def test_invalid_name_is_422_with_causes(server: ServerProcess) -> None:
    body = assert_status(server.post(CM, cm("Bad_Name")), 422, "Invalid")
    assert body["message"].startswith('ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value')
    causes = body["details"]["causes"]
    assert causes[0]["field"] == "metadata.name" and causes[0]["reason"] == "FieldValueInvalid"
    assert server.get(f"{CM}/Bad_Name").status == 404


def test_duplicate_container_names_422(server: ServerProcess) -> None:
    d = deployment("dupc")
    d["spec"]["template"]["spec"]["containers"].append({"name": "web", "image": "x"})
    body = assert_status(server.post(DEPLOY, d), 422, "Invalid")
    assert any(c["reason"] == "FieldValueDuplicate" for c in body["details"]["causes"])


def test_unknown_resource_404(server: ServerProcess) -> None:
    assert_status(server.get("/api/v1/namespaces/default/widgets"), 404, "NotFound")
    assert_status(server.get("/apis/nope.example.com/v1/things"), 404, "NotFound")


def test_oversized_body_413(server: ServerProcess) -> None:
    big = json.dumps(cm("big", blob="x" * (3 * 1024 * 1024 + 10))).encode()
    assert_status(server.post(CM, raw=big), 413, "RequestEntityTooLarge")
    assert server.get(f"{CM}/big").status == 404


def test_unsupported_content_type_415(server: ServerProcess) -> None:
    assert_status(server.post(CM, raw=b"x", content_type="text/csv"), 415, "UnsupportedMediaType")


def test_missing_namespace_refused(server: ServerProcess) -> None:
    body = assert_status(server.post("/api/v1/namespaces/nosuch/configmaps", cm("x")), 404,
                         "NotFound")
    assert body["message"] == 'namespaces "nosuch" not found'


def test_strict_field_validation(server: ServerProcess) -> None:
    d = deployment("strict")
    d["spec"]["bogus"] = 1
    body = assert_status(server.post(DEPLOY + "?fieldValidation=Strict", d), 400, "BadRequest")
    assert 'unknown field "spec.bogus"' in body["message"]
    r = server.post(DEPLOY + "?fieldValidation=Warn", d)
    assert r.status == 201
    assert 'unknown field \\"spec.bogus\\"' in r.headers.get("Warning", "") or \
        'unknown field "spec.bogus"' in r.headers.get("Warning", "")
    assert "bogus" not in r.json()["spec"]


def test_query_bools_parse_like_go(server: ServerProcess) -> None:
    r = server.get(CM + "?watch=False")
    assert r.status == 200 and r.json()["kind"] == "ConfigMapList"
    assert_status(server.get(CM + "?watch=maybe"), 400, "BadRequest")


# -- patches ----------------------------------------------------------------------------------
def test_three_patch_types(server: ServerProcess) -> None:
    server.post(DEPLOY, deployment("patchme"))
    r = server.patch(f"{DEPLOY}/patchme", {"metadata": {"labels": {"a": "b"}}},
                     "application/merge-patch+json")
    assert r.status == 200 and r.json()["metadata"]["labels"] == {"a": "b"}
    r = server.patch(f"{DEPLOY}/patchme",
                     {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}},
                     "application/strategic-merge-patch+json")
    c = r.json()["spec"]["template"]["spec"]["containers"]
    assert r.status == 200 and len(c) == 1 and c[0]["image"] == "nginx:2" and c[0]["name"] == "web"
    r = server.patch(f"{DEPLOY}/patchme", [{"op": "replace", "path": "/spec/replicas", "value": 4}],
                     "application/json-patch+json")
    assert r.status == 200 and r.json()["spec"]["replicas"] == 4


def test_json_patch_failed_test_is_422(server: ServerProcess) -> None:
    server.post(CM, cm("jp"))
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
           {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]}]
    assert_status(server.patch(f"{CM}/jp", ops, "application/json-patch+json"), 422, "Invalid")
    assert "finalizers" not in server.get(f"{CM}/jp").json()["metadata"]


def test_patch_missing_object_404(server: ServerProcess) -> None:
    assert_status(server.patch(f"{CM}/ghost", {"data": {}}, "application/merge-patch+json"),
                  404, "NotFound")


# -- subresources -----------------------------------------------------------------------------
def test_status_subresource_split(server: ServerProcess) -> None:
    d = server.post(DEPLOY, deployment("split")).json()
    d["status"] = {"replicas": 7}
    d = server.put(f"{DEPLOY}/split", d).json()
    assert "replicas" not in d.get("status", {})
    d["status"] = {"replicas": 7}
    d["spec"]["replicas"] = 9
    r = server.put(f"{DEPLOY}/split/status", d)
    assert r.status == 200, r
    assert r.json()["status"]["replicas"] == 7 and r.json()["spec"]["replicas"] == 1


def test_scale_subresource(server: ServerProcess) -> None:
    server.post(DEPLOY, deployment("scaled", replicas=2))
    s = server.get(f"{DEPLOY}/scaled/scale").json()
    assert s["kind"] == "Scale" and s["apiVersion"] == "autoscaling/v1"
    assert s["spec"]["replicas"] == 2 and s["status"]["selector"] == "app=scaled"
    r = server.patch(f"{DEPLOY}/scaled/scale", {"spec": {"replicas": 5}}, "application/merge-patch+json")
    assert r.status == 200 and r.json()["spec"]["replicas"] == 5
    assert server.get(f"{DEPLOY}/scaled").json()["spec"]["replicas"] == 5
    s = r.json()
    s["spec"]["replicas"] = 3
    assert server.put(f"{DEPLOY}/scaled/scale", s).json()["spec"]["replicas"] == 3


# -- list: selectors and pagination -----------------------------------------------------------
def test_label_and_field_selectors(server: ServerProcess) -> None:
    ns = "/api/v1/namespaces"
    server.post(ns, {"metadata": {"name": "sel"}})
    base = "/api/v1/namespaces/sel/configmaps"
    for i, (tier, env) in enumerate([("web", "prod"), ("web", "dev"), ("db", "prod")]):
        server.post(base, {"metadata": {"name": f"c{i}", "labels": {"tier": tier, "env": env}}})
    def names(q: str) -> list[str]:
        r = server.get(f"{base}?{q}")
        assert r.status == 200, r
        return [o["metadata"]["name"] for o in r.json()["items"]]
    assert names("labelSelector=tier%3Dweb") == ["c0", "c1"]
    assert names("labelSelector=tier%3Dweb,env!%3Ddev") == ["c0"]
    assert names("labelSelector=env+in+(dev,qa)") == ["c1"]
    assert names("labelSelector=tier+notin+(web)") == ["c2"]
    assert names("labelSelector=!nolabel") == ["c0", "c1", "c2"]
    assert names("fieldSelector=metadata.name%3Dc2") == ["c2"]
    assert names("fieldSelector=metadata.name!%3Dc2") == ["c0", "c1"]
    assert_status(server.get(f"{base}?labelSelector=a+in+(b"), 400, "BadRequest")
    assert_status(server.get(f"{base}?fieldSelector=spec.nope%3Dx"), 400, "BadRequest")


def test_pagination(server: ServerProcess) -> None:
    server.post("/api/v1/namespaces", {"metadata": {"name": "pages"}})
    base = "/api/v1/namespaces/pages/configmaps"
    for i in range(7):
        server.post(base, cm(f"p{i}"))
    seen: list[str] = []
    r = server.get(f"{base}?limit=3").json()
    assert r["metadata"]["remainingItemCount"] == 4
    rv = r["metadata"]["resourceVersion"]
    seen += [o["metadata"]["name"] for o in r["items"]]
    server.post(base, cm("p9-late"))  # must not appear: pages are a snapshot
    while r["metadata"].get("continue"):
        r = server.get(f"{base}?limit=3&continue={r['metadata']['continue']}").json()
        assert r["metadata"]["resourceVersion"] == rv
        seen += [o["metadata"]["name"] for o in r["items"]]
    assert seen == [f"p{i}" for i in range(7)]
    assert_status(server.get(f"{base}?limit=3&continue=garbage"), 400, "BadRequest")


def test_all_namespaces_list(server: ServerProcess) -> None:
    server.post(CM, cm("everywhere"))
    r = server.get("/api/v1/configmaps").json()
    assert r["kind"] == "ConfigMapList"
    assert {o["metadata"]["namespace"] for o in r["items"]} >= {"default"}


# -- watch ------------------------------------------------------------------------------------
def test_watch_resume_replays_history(server: ServerProcess) -> None:
    server.post("/api/v1/namespaces", {"metadata": {"name": "w1"}})
    base = "/api/v1/namespaces/w1/configmaps"
    rv = server.get(base).json()["metadata"]["resourceVersion"]
    server.post(base, cm("a"))
    server.patch(f"{base}/a", {"data": {"k": "v"}}, "application/merge-patch+json")
    server.delete(f"{base}/a")
    w = WatchReader(server, f"{base}?watch=1&resourceVersion={rv}&timeoutSeconds=5")
    evs = w.wait_for(3)
    assert [e["type"] for e in evs[:3]] == ["ADDED", "MODIFIED", "DELETED"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs[:3]]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)
    w.close()


def test_watch_from_zero_sends_synthetic_added_then_live(server: ServerProcess) -> None:
    server.post("/api/v1/namespaces", {"metadata": {"name": "w2"}})
    base = "/api/v1/namespaces/w2/configmaps"
    server.post(base, cm("existing"))
    w = WatchReader(server, f"{base}?watch=true&resourceVersion=0&timeoutSeconds=5")
    w.wait_for(1)
    server.post(base, cm("later"))
    evs = w.wait_for(2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs[:2]] == \
        [("ADDED", "existing"), ("ADDED", "later")]
    w.close()


def test_watch_timeout_closes_stream(server: ServerProcess) -> None:
    start = time.time()
    r = server.get(CM + "?watch=1&timeoutSeconds=1&resourceVersion=" +
                   server.get(CM).json()["metadata"]["resourceVersion"])
    assert r.status == 200 and time.time() - start < 5


def test_watch_bookmarks(tmp_path: Any) -> None:
    srv = ServerProcess(tmp_path, extra=["--bookmark-interval", "0.3"]).start()
    try:
        rv = srv.get(CM).json()["metadata"]["resourceVersion"]
        w = WatchReader(srv, f"{CM}?watch=1&allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds=3")
        evs = w.wait_for(1)
        assert evs[0]["type"] == "BOOKMARK"
        assert evs[0]["object"]["kind"] == "ConfigMap" and evs[0]["object"]["metadata"]["resourceVersion"]
        w.close()
    finally:
        srv.stop()


def test_watch_send_initial_events(server: ServerProcess) -> None:
    server.post("/api/v1/namespaces", {"metadata": {"name": "w3"}})
    base = "/api/v1/namespaces/w3/configmaps"
    server.post(base, cm("one"))
    server.post(base, cm("two"))
    w = WatchReader(server, f"{base}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
                            f"&resourceVersionMatch=NotOlderThan&timeoutSeconds=5")
    evs = w.wait_for(3)
    assert [e["type"] for e in evs[:3]] == ["ADDED", "ADDED", "BOOKMARK"]
    assert evs[2]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    w.close()


def test_watch_too_old_gets_410_event(tmp_path: Any) -> None:
    srv = ServerProcess(tmp_path, extra=["--watch-cache-size", "5"]).start()
    try:
        rv = srv.get(CM).json()["metadata"]["resourceVersion"]
        for i in range(12):
            srv.post(CM, cm(f"old{i}"))
        w = WatchReader(srv, f"{CM}?watch=1&resourceVersion={rv}&timeoutSeconds=3")
        ev = w.wait_for(1)[0]
        assert ev["type"] == "ERROR"
        assert ev["object"]["kind"] == "Status" and ev["object"]["code"] == 410
        assert ev["object"]["reason"] == "Expired"
        assert ev["object"]["message"].startswith(f"too old resource version: {rv}")
        w.close()
    finally:
        srv.stop()


# -- deletion ---------------------------------------------------------------------------------
def test_finalizers_hold_deletion(server: ServerProcess) -> None:
    obj = cm("fin")
    obj["metadata"]["finalizers"] = ["example.com/hold"]
    server.post(CM, obj)
    r = server.delete(f"{CM}/fin")
    assert r.status in (200, 202) and r.json()["metadata"]["deletionTimestamp"]
    cur = server.get(f"{CM}/fin").json()
    assert cur["metadata"]["deletionTimestamp"]
    r = server.patch(f"{CM}/fin", {"metadata": {"finalizers": None}}, "application/merge-patch+json")
    assert r.status == 200, r
    assert server.get(f"{CM}/fin").status == 404


def test_delete_propagation_records_finalizers(server: ServerProcess) -> None:
    server.post(DEPLOY, deployment("fg"))
    r = server.delete(f"{DEPLOY}/fg", {"propagationPolicy": "Foreground"})
    assert r.status in (200, 202)
    assert r.json()["metadata"]["finalizers"] == ["foregroundDeletion"]
    server.post(DEPLOY, deployment("orph"))
    r = server.delete(f"{DEPLOY}/orph", {"propagationPolicy": "Orphan"})
    assert r.json()["metadata"]["finalizers"] == ["orphan"]


def test_delete_preconditions_and_dry_run(server: ServerProcess) -> None:
    server.post(CM, cm("pre"))
    body = assert_status(server.delete(f"{CM}/pre", {"preconditions": {"uid": "nope"}}), 409, "Conflict")
    assert "Precondition failed" in body["message"]
    assert server.delete(f"{CM}/pre", {"dryRun": ["All"]}).status == 200
    assert server.get(f"{CM}/pre").status == 200


def test_delete_collection(server: ServerProcess) -> None:
    server.post("/api/v1/namespaces", {"metadata": {"name": "dc"}})
    base = "/api/v1/namespaces/dc/configmaps"
    for i in range(3):
        server.post(base, {"metadata": {"name": f"d{i}", "labels": {"grp": "a" if i < 2 else "b"}}})
    assert server.delete(f"{base}?labelSelector=grp%3Da").status == 200
    assert [o["metadata"]["name"] for o in server.get(base).json()["items"]] == ["d2"]


def test_create_in_terminating_namespace_forbidden(server: ServerProcess) -> None:
    server.post("/api/v1/namespaces", {"metadata": {"name": "doomed"}})
    r = server.delete("/api/v1/namespaces/doomed")
    assert r.status in (200, 202) and r.json()["status"]["phase"] == "Terminating"
    body = assert_status(server.post("/api/v1/namespaces/doomed/configmaps", cm("x")), 403, "Forbidden")
    assert "because it is being terminated" in body["message"]


def test_pod_binding(server: ServerProcess) -> None:
    pods = "/api/v1/namespaces/default/pods"
    server.post(pods, {"metadata": {"name": "bindme"},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    r = server.post(f"{pods}/bindme/binding", {"apiVersion": "v1", "kind": "Binding",
                                               "metadata": {"name": "bindme"},
                                               "target": {"kind": "Node", "name": "node-1"}})
    assert r.status == 201, r
    pod = server.get(f"{pods}/bindme").json()
    assert pod["spec"]["nodeName"] == "node-1"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in pod["status"]["conditions"])
    assert_status(server.post(f"{pods}/bindme/binding", {"target": {"name": "node-2"}}), 409, "Conflict")


# -- discovery --------------------------------------------------------------------------------
def test_discovery_legacy_and_aggregated(server: ServerProcess) -> None:
    assert server.get("/api/").json()["versions"] == ["v1"]
    groups = {g["name"] for g in server.get("/apis").json()["groups"]}
    assert {"apps", "batch", "rbac.authorization.k8s.io", "networking.k8s.io"} <= groups
    rl = server.get("/apis/apps/v1").json()
    scale = next(r for r in rl["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    for v in ("v2", "v2beta1"):
        accept = f"application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList,application/json"
        r = server.get("/apis", headers={"Accept": accept})
        assert r.headers["Content-Type"] == f"application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
        assert r.json()["kind"] == "APIGroupDiscoveryList"
    r = server.get("/api", headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"})
    res = {x["resource"] for x in r.json()["items"][0]["versions"][0]["resources"]}
    assert {"pods", "services", "configmaps"} <= res


def test_table_output(server: ServerProcess) -> None:
    r = server.get("/api/v1/namespaces", headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    assert r.headers["Content-Type"] == "application/json;as=Table;v=v1;g=meta.k8s.io"
    t = r.json()
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in t["columnDefinitions"]][:3] == ["Name", "Status", "Age"]
    row = t["rows"][0]
    assert row["object"]["kind"] == "PartialObjectMetadata"


# -- versions sharing storage -------------------------------------------------------------
def test_hpa_v1_and_v2_share_objects(server: ServerProcess) -> None:
    v1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"
    v2 = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
    r = server.post(v1, {"metadata": {"name": "h1"}, "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}})
    assert r.status == 201, r
    assert r.json()["apiVersion"] == "autoscaling/v1"
    assert r.json()["spec"]["targetCPUUtilizationPercentage"] == 70
    got = server.get(f"{v2}/h1").json()
    assert got["apiVersion"] == "autoscaling/v2"
    assert got["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    items = server.get(v1).json()["items"]
    assert [i["spec"]["targetCPUUtilizationPercentage"] for i in items if i["metadata"]["name"] == "h1"] == [70]


def test_core_and_events_k8s_io_events_share_objects(server: ServerProcess) -> None:
    core = "/api/v1/namespaces/default/events"
    new = "/apis/events.k8s.io/v1/namespaces/default/events"
    r = server.post(core, {"metadata": {"name": "ev1"}, "involvedObject": {
        "kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Started",
        "message": "Started container", "type": "Normal", "count": 2})
    assert r.status == 201, r
    got = server.get(f"{new}/ev1").json()
    assert got["apiVersion"] == "events.k8s.io/v1"
    assert got["regarding"]["name"] == "p" and got["note"] == "Started container"
    assert got["deprecatedCount"] == 2
    r = server.get(f"{core}?fieldSelector=involvedObject.name%3Dp").json()
    assert [e["metadata"]["name"] for e in r["items"]] == ["ev1"]


def test_expired_continue_token_is_410(tmp_path: Any) -> None:
    srv = ServerProcess(tmp_path, extra=["--watch-cache-size", "5"]).start()
    try:
        for i in range(4):
            srv.post(CM, cm(f"page{i}"))
        first = srv.get(f"{CM}?limit=2").json()
        token = first["metadata"]["continue"]
        for i in range(10):
            srv.post(CM, cm(f"churn{i}"))
        body = assert_status(srv.get(f"{CM}?limit=2&continue={token}"), 410, "Expired")
        assert body["message"].startswith("The provided continue parameter is too old")
    finally:
        srv.stop()


def test_too_large_resource_version_is_504(server: ServerProcess) -> None:
    rv = int(server.get(CM).json()["metadata"]["resourceVersion"])
    body = assert_status(server.get(f"{CM}?resourceVersion={rv + 1000}"), 504, "Timeout")
    assert body["message"].startswith(f"Too large resource version: {rv + 1000}")


def test_list_exact_resource_version_is_a_snapshot(server: ServerProcess) -> None:
    server.post("/api/v1/namespaces", {"metadata": {"name": "snap"}})
    base = "/api/v1/namespaces/snap/configmaps"
    server.post(base, cm("s1"))
    rv = server.get(base).json()["metadata"]["resourceVersion"]
    server.post(base, cm("s2"))
    server.delete(f"{base}/s1")
    r = server.get(f"{base}?resourceVersion={rv}&resourceVersionMatch=Exact").json()
    assert [o["metadata"]["name"] for o in r["items"]] == ["s1"]
    assert r["metadata"]["resourceVersion"] == rv
    now = server.get(f"{base}?resourceVersion=0").json()
    assert [o["metadata"]["name"] for o in now["items"]] == ["s2"]


def test_graceful_pod_deletion(server: ServerProcess) -> None:
    pods = "/api/v1/namespaces/default/pods"
    server.post(pods, {"metadata": {"name": "graceful"},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    server.post(f"{pods}/graceful/binding", {"target": {"name": "node-1"}})
    r = server.delete(f"{pods}/graceful")
    assert r.status == 202, r
    md = r.json()["metadata"]
    assert md["deletionGracePeriodSeconds"] == 30 and md["deletionTimestamp"]
    assert server.get(f"{pods}/graceful").status == 200  # the kubelet finishes it
    r = server.delete(f"{pods}/graceful", {"gracePeriodSeconds": 0})
    assert r.status == 200, r
    assert server.get(f"{pods}/graceful").status == 404
    # An unscheduled pod goes at once.
    server.post(pods, {"metadata": {"name": "unbound"},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    assert server.delete(f"{pods}/unbound").status == 200
    assert server.get(f"{pods}/unbound").status == 404
