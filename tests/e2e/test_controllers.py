"""The garbage collector and the namespace controller in a real `pyk8s up`, driven by kubectl."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyk8s.client.rest import (AlreadyExists, ClientConfig, Conflict, Expired, NotFound,
                               RESTClient, error_from_status, server_preferred_resources)
from tests.conftest import ROOT, ServerProcess, wait_for



def up_process(data_dir: Path) -> ServerProcess:
    """A real `pyk8s up`: the API server plus the controllers, in one process."""
    return ServerProcess(data_dir, command="up", ready_log="garbage collector: synced")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    up = up_process(tmp_path_factory.mktemp("pyk8s-up")).start()
    try:
        yield up
    finally:
        up.stop()



def deployment_yaml(name: str, namespace: str = "default") -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: web, image: nginx:1.25}}]}}
"""


def owned_configmap(c: ServerProcess, name: str, owner: dict[str, Any], *,
                    block: bool = True, finalizers: list[str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {
        "name": name, "namespace": owner["metadata"]["namespace"],
        "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                             "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                             "blockOwnerDeletion": block}]}
    if finalizers:
        md["finalizers"] = finalizers
    out = c.kubectl("apply", "-f", "-", "-o", "json", input=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": {"k": "v"}}))
    obj: dict[str, Any] = json.loads(out.stdout)
    return obj


def make_deployment(c: ServerProcess, name: str) -> dict[str, Any]:
    out = c.kubectl("apply", "-f", "-", "-o", "json", input=deployment_yaml(name))
    obj: dict[str, Any] = json.loads(out.stdout)
    return obj


def gone(c: ServerProcess, path: str) -> bool:
    return c.get(path).status == 404


CM = "/api/v1/namespaces/default/configmaps/"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments/"


# -- garbage collector --------------------------------------------------------------------------
def test_foreground_cascade(cluster: ServerProcess) -> None:
    owner = make_deployment(cluster, "fg")
    owned_configmap(cluster, "fg-dep", owner)
    started = time.monotonic()
    cluster.kubectl("delete", "deployment", "fg", "--cascade=foreground", "--timeout=20s",
                    timeout=30)
    assert time.monotonic() - started < 5.0
    assert gone(cluster, DEPLOY + "fg")
    assert gone(cluster, CM + "fg-dep")


def test_foreground_owner_waits_for_blocking_dependent(cluster: ServerProcess) -> None:
    owner = make_deployment(cluster, "fgwait")
    owned_configmap(cluster, "fgwait-dep", owner, finalizers=["example.com/hold"])
    cluster.kubectl("delete", "deployment", "fgwait", "--cascade=foreground", "--wait=false")
    dep = wait_for("the dependent to be deleted",
                   lambda: (o := cluster.get(CM + "fgwait-dep").json())["metadata"].get(
                       "deletionTimestamp") and o)
    assert dep["metadata"]["finalizers"] == ["example.com/hold"]
    time.sleep(0.5)  # the owner stays while a blocking dependent exists
    obj = cluster.get(DEPLOY + "fgwait").json()
    assert obj["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert obj["metadata"]["deletionTimestamp"]
    cluster.kubectl("patch", "configmap", "fgwait-dep", "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}')
    wait_for("the dependent to go", lambda: gone(cluster, CM + "fgwait-dep"))
    wait_for("the owner to go", lambda: gone(cluster, DEPLOY + "fgwait"))


def test_orphan_cascade(cluster: ServerProcess) -> None:
    owner = make_deployment(cluster, "orph")
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "orph-other", "namespace": "default"}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(other))
    other = cluster.kubectl_json("get", "configmap", "orph-other")
    dep = owned_configmap(cluster, "orph-dep", owner)
    # A second, unrelated owner stays referenced.
    refs = dep["metadata"]["ownerReferences"] + [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "orph-other",
        "uid": other["metadata"]["uid"]}]
    cluster.kubectl("patch", "configmap", "orph-dep", "--type=merge",
                    "-p", json.dumps({"metadata": {"ownerReferences": refs}}))
    started = time.monotonic()
    cluster.kubectl("delete", "deployment", "orph", "--cascade=orphan", "--timeout=20s",
                    timeout=30)
    assert time.monotonic() - started < 5.0
    assert gone(cluster, DEPLOY + "orph")
    left = cluster.get(CM + "orph-dep").json()
    assert left["metadata"]["ownerReferences"] == [refs[1]]
    time.sleep(0.3)  # and it is not collected afterwards
    assert cluster.get(CM + "orph-dep").status == 200
    cluster.kubectl("delete", "configmap", "orph-dep", "orph-other")


def test_orphan_last_owner_removes_owner_references(cluster: ServerProcess) -> None:
    owner = make_deployment(cluster, "orph2")
    owned_configmap(cluster, "orph2-dep", owner)
    cluster.kubectl("delete", "deployment", "orph2", "--cascade=orphan", timeout=30)
    left = cluster.get(CM + "orph2-dep").json()
    assert "ownerReferences" not in left["metadata"]
    cluster.kubectl("delete", "configmap", "orph2-dep")


def test_background_cascade(cluster: ServerProcess) -> None:
    owner = make_deployment(cluster, "bg")
    owned_configmap(cluster, "bg-dep", owner)
    owned_configmap(cluster, "bg-dep2", owner, block=False)
    cluster.kubectl("delete", "deployment", "bg", timeout=30)
    assert gone(cluster, DEPLOY + "bg")
    wait_for("bg-dep to be collected", lambda: gone(cluster, CM + "bg-dep"), timeout=5)
    wait_for("bg-dep2 to be collected", lambda: gone(cluster, CM + "bg-dep2"), timeout=5)


def test_dependent_of_missing_owner_is_collected_and_solid_owner_keeps_it(
        cluster: ServerProcess) -> None:
    owner = make_deployment(cluster, "solid")
    owned_configmap(cluster, "solid-dep", owner)
    ghost = {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "ghost", "namespace": "default",
                          "uid": "00000000-0000-0000-0000-000000000001"}}
    owned_configmap(cluster, "ghost-dep", ghost)
    # Same name as a live object but another uid: still absent.
    wrong_uid = {**owner, "metadata": {**owner["metadata"],
                                       "uid": "00000000-0000-0000-0000-000000000002"}}
    owned_configmap(cluster, "wronguid-dep", wrong_uid)
    wait_for("ghost-dep to be collected", lambda: gone(cluster, CM + "ghost-dep"), timeout=5)
    wait_for("wronguid-dep to be collected", lambda: gone(cluster, CM + "wronguid-dep"), timeout=5)
    assert cluster.get(CM + "solid-dep").status == 200
    cluster.kubectl("delete", "deployment", "solid", timeout=30)
    wait_for("solid-dep to be collected", lambda: gone(cluster, CM + "solid-dep"), timeout=5)


def test_foreground_chain(cluster: ServerProcess) -> None:
    """deployment ← configmap ← secret: foreground deletion goes down the whole chain."""
    owner = make_deployment(cluster, "chain")
    mid = owned_configmap(cluster, "chain-mid", owner)
    leaf = {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "chain-leaf", "namespace": "default",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "chain-mid",
                             "uid": mid["metadata"]["uid"], "blockOwnerDeletion": True}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(leaf))
    cluster.kubectl("delete", "deployment", "chain", "--cascade=foreground", "--timeout=20s",
                    timeout=30)
    assert gone(cluster, CM + "chain-mid")
    assert gone(cluster, "/api/v1/namespaces/default/secrets/chain-leaf")


# -- namespace controller -----------------------------------------------------------------------
def namespace_yaml(name: str, configmaps: int = 3) -> str:
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"]
    docs += [f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm{i}, namespace: {name}}}\n"
             f"data: {{k: v}}\n" for i in range(configmaps)]
    docs.append(f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: {name}}}\n")
    return "---\n".join(docs)


def test_namespace_deletion_removes_contents(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=namespace_yaml("doomed"))
    cluster.kubectl("apply", "-f", "-", input=deployment_yaml("web", "doomed"))
    started = time.monotonic()
    cluster.kubectl("delete", "namespace", "doomed", "--timeout=20s", timeout=30)
    assert time.monotonic() - started < 8.0
    assert gone(cluster, "/api/v1/namespaces/doomed")
    for path in ("/api/v1/namespaces/doomed/configmaps", "/api/v1/namespaces/doomed/secrets",
                 "/apis/apps/v1/namespaces/doomed/deployments"):
        assert cluster.get(path).json()["items"] == []
    # The name can be used again.
    cluster.kubectl("apply", "-f", "-", input=namespace_yaml("doomed", 1))
    assert cluster.get("/api/v1/namespaces/doomed/configmaps/cm0").status == 200
    cluster.kubectl("delete", "namespace", "doomed", "--timeout=20s", timeout=30)


def _condition(ns: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = (ns.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def test_namespace_waits_for_foreign_finalizer(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=namespace_yaml("held"))
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "keeper", "namespace": "held",
                     "finalizers": ["example.com/keep"]}}))
    cluster.kubectl("delete", "namespace", "held", "--wait=false")
    ns = wait_for("the finalizers condition", lambda: (
        o := cluster.get("/api/v1/namespaces/held").json()) and _condition(
        o, "NamespaceFinalizersRemaining").get("status") == "True" and o)
    assert ns["status"]["phase"] == "Terminating"
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    fin = _condition(ns, "NamespaceFinalizersRemaining")
    assert fin["reason"] == "SomeFinalizersRemain"
    assert fin["message"] == ("Some content in the namespace has finalizers remaining: "
                              "example.com/keep in 1 resource instances")
    content = _condition(ns, "NamespaceContentRemaining")
    assert content["status"] == "True" and content["reason"] == "SomeResourcesRemain"
    assert content["message"] == "Some resources are remaining: configmaps. has 1 resource instances"
    assert _condition(ns, "NamespaceDeletionDiscoveryFailure")["status"] == "False"
    assert _condition(ns, "NamespaceDeletionContentFailure")["reason"] == "ContentDeleted"
    names = [o["metadata"]["name"]
             for o in cluster.get("/api/v1/namespaces/held/configmaps").json()["items"]]
    assert names == ["keeper"]
    assert cluster.get("/api/v1/namespaces/held/secrets").json()["items"] == []
    time.sleep(0.5)
    assert cluster.get("/api/v1/namespaces/held").status == 200
    cluster.kubectl("patch", "configmap", "keeper", "-n", "held", "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}')
    wait_for("the namespace to go", lambda: gone(cluster, "/api/v1/namespaces/held"), timeout=10)


# -- the REST client ----------------------------------------------------------------------------
async def test_rest_client_verbs_errors_and_watch(cluster: ServerProcess) -> None:
    async with RESTClient.from_kubeconfig(cluster.kubeconfig) as c:
        path = "/api/v1/namespaces/default/configmaps"
        created = await c.create(path, {"metadata": {"name": "rc"}, "data": {"a": "1"}})
        with pytest.raises(AlreadyExists) as ae:
            await c.create(path, {"metadata": {"name": "rc"}})
        assert ae.value.code == 409 and ae.value.reason == "AlreadyExists"
        with pytest.raises(NotFound) as nf:
            await c.get(path + "/missing")
        assert nf.value.status["details"]["name"] == "missing"
        stale = {**created, "data": {"a": "2"}}
        await c.update(path + "/rc", stale)
        with pytest.raises(Conflict):
            await c.update(path + "/rc", stale)
        patched = await c.patch(path + "/rc", {"data": {"b": "3"}})
        assert patched["data"] == {"a": "2", "b": "3"}
        lst = await c.list(path, {"fieldSelector": "metadata.name=rc"})
        assert [o["metadata"]["name"] for o in lst["items"]] == ["rc"]
        events = []
        async for ev in c.watch(path, created["metadata"]["resourceVersion"],
                                params={"fieldSelector": "metadata.name=rc"}):
            events.append(ev)
            if ev["type"] == "MODIFIED" and ev["object"]["data"].get("b"):
                break
        assert [e["type"] for e in events if e["type"] != "BOOKMARK"] == ["MODIFIED", "MODIFIED"]
        await c.delete(path + "/rc", {"propagationPolicy": "Background"})
        resources = await server_preferred_resources(c)
        names = {(r.group, r.resource) for r in resources}
        assert ("apps", "deployments") in names and ("", "pods/status") not in names
        hpa = [r for r in resources if r.resource == "horizontalpodautoscalers"]
        assert [r.version for r in hpa] == ["v2"]


def test_error_mapping_and_plain_http_kubeconfig(tmp_path: Path) -> None:
    assert isinstance(error_from_status(410, {"kind": "Status", "code": 410, "reason": "Expired",
                                              "message": "too old"}), Expired)
    assert isinstance(error_from_status(409, {"kind": "Status", "code": 409,
                                              "reason": "AlreadyExists"}), AlreadyExists)
    err = error_from_status(500, None, "boom")
    assert (err.code, err.reason, err.message) == (500, "InternalError", "boom")
    kc = tmp_path / "kc.yaml"
    kc.write_text("apiVersion: v1\nkind: Config\ncurrent-context: x\n"
                  "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1/'}}]\n"
                  "users: [{name: u, user: {}}]\n"
                  "contexts: [{name: x, context: {cluster: c, user: u}}]\n")
    cfg = ClientConfig.from_kubeconfig(kc)
    assert cfg.server == "http://127.0.0.1:1" and cfg.token is None
    assert cfg.ssl_context() is True


# -- the controllers as their own process -------------------------------------------------------
def test_controller_manager_process_against_plain_server(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """`pyk8s server` runs no controllers; `pyk8s controller-manager` adds them over HTTPS."""
    srv = ServerProcess(tmp_path_factory.mktemp("pyk8s-cm"),
                        extra=["--bookmark-interval", "1"]).start()
    cm_log = srv.data_dir / "controller-manager.log"
    cm: subprocess.Popen[bytes] | None = None
    try:
        owner = make_deployment(srv, "cmweb")
        owned_configmap(srv, "cmweb-dep", owner)
        srv.kubectl("delete", "deployment", "cmweb", timeout=30)
        time.sleep(0.5)
        assert srv.get(CM + "cmweb-dep").status == 200  # nobody collects it yet
        with open(cm_log, "ab") as log:
            cm = subprocess.Popen([sys.executable, "-m", "pyk8s.cli.main", "controller-manager",
                                   "--kubeconfig", str(srv.kubeconfig)],
                                  stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_for("the controller manager to collect the orphan",
                 lambda: gone(srv, CM + "cmweb-dep"), timeout=15)
        cm.terminate()
        assert cm.wait(10) == 0, cm_log.read_text()[-2000:]
    finally:
        if cm is not None and cm.poll() is None:
            cm.kill()
            cm.wait()
        srv.stop()


def test_controllers_import_no_server_layers() -> None:
    code = ("import sys, pyk8s.controllers.manager\n"
            "bad = [m for m in sys.modules if m.split('.')[:2] in (['pyk8s', 'apiserver'], "
            "['pyk8s', 'registry'], ['pyk8s', 'storage'], ['pyk8s', 'watch'])]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=30)
