"""Real kubectl (the dispatcher picks kubectl 1.32 from /version) against a real server."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from pyk8s.api.catalogue import BUILTIN
from tests.conftest import KUBECTL, ServerProcess

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - name: MODE
          value: prod
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  color: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: shop
data:
  password: czNjcmV0
"""


@pytest.fixture(scope="module")
def shop(server: ServerProcess) -> ServerProcess:
    server.kubectl("apply", "-f", "-", input=MANIFEST)
    return server


def test_apply_twice_reports_unchanged(shop: ServerProcess) -> None:
    out = shop.kubectl("apply", "-f", "-", input=MANIFEST).stdout
    lines = [l for l in out.splitlines() if l.strip()]
    assert len(lines) == 5 and all(l.endswith("unchanged") for l in lines), out


def test_get_every_builtin_kind(shop: ServerProcess) -> None:
    seen = set()
    for info in BUILTIN:
        if "list" not in info.verbs:
            continue  # create-only reviews
        name = info.plural if not info.group else f"{info.plural}.{info.group}"
        if name in seen:
            continue
        seen.add(name)
        p = shop.kubectl("get", name, "-A", check=False)
        assert p.returncode == 0, (name, p.stderr)


def test_get_columns(shop: ServerProcess) -> None:
    out = shop.kubectl("get", "deployments", "-n", "shop").stdout
    assert out.split("\n")[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert out.split("\n")[1].split()[:2] == ["web", "0/2"]
    out = shop.kubectl("get", "deployments", "-n", "shop", "-o", "wide").stdout
    assert "CONTAINERS" in out and "IMAGES" in out and "nginx:1.25" in out
    out = shop.kubectl("get", "svc", "-n", "shop").stdout
    assert out.split("\n")[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert "80/TCP" in out
    out = shop.kubectl("get", "configmaps,secrets", "-n", "shop").stdout
    assert "configmap/settings" in out and "secret/creds" in out and "Opaque" in out
    out = shop.kubectl("get", "ns").stdout
    assert out.split("\n")[0].split() == ["NAME", "STATUS", "AGE"] and "Active" in out


def test_get_pod_columns_and_wide(shop: ServerProcess) -> None:
    shop.kubectl("run", "solo", "-n", "shop", "--image=busybox", "--restart=Never", check=False)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "shop"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    shop.kubectl("apply", "-f", "-", input=json.dumps(pod))
    out = shop.kubectl("get", "pod", "p1", "-n", "shop").stdout
    assert out.split("\n")[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert out.split("\n")[1].split()[:4] == ["p1", "0/1", "Pending", "0"]
    out = shop.kubectl("get", "pod", "p1", "-n", "shop", "-o", "wide").stdout
    assert out.split("\n")[0].split()[5:7] == ["IP", "NODE"]


def test_output_formats(shop: ServerProcess) -> None:
    out = shop.kubectl("get", "deploy", "web", "-n", "shop", "-o", "yaml").stdout
    assert "kind: Deployment" in out and "replicas: 2" in out
    d = shop.kubectl_json("get", "deploy", "web", "-n", "shop")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    out = shop.kubectl("get", "deploy", "web", "-n", "shop", "-o",
                       "jsonpath={.spec.template.spec.containers[0].name}").stdout
    assert out == "nginx"
    assert shop.kubectl("get", "deploy", "-n", "shop", "-o", "name").stdout.strip() == \
        "deployment.apps/web"


def test_get_all(shop: ServerProcess) -> None:
    out = shop.kubectl("get", "all", "-n", "shop").stdout
    assert "deployment.apps/web" in out and "service/web" in out


def test_label_annotate_patch(shop: ServerProcess) -> None:
    shop.kubectl("label", "configmap", "settings", "-n", "shop", "tier=backend")
    shop.kubectl("annotate", "configmap", "settings", "-n", "shop", "note=hello")
    cm = shop.kubectl_json("get", "configmap", "settings", "-n", "shop")
    assert cm["metadata"]["labels"]["tier"] == "backend"
    assert cm["metadata"]["annotations"]["note"] == "hello"
    shop.kubectl("patch", "configmap", "settings", "-n", "shop", "--type=merge",
                 "-p", '{"data":{"size":"L"}}')
    shop.kubectl("patch", "deploy", "web", "-n", "shop", "-p",
                 '{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.26"}]}}}}')
    shop.kubectl("patch", "configmap", "settings", "-n", "shop", "--type=json",
                 "-p", '[{"op":"remove","path":"/data/color"}]')
    cm = shop.kubectl_json("get", "configmap", "settings", "-n", "shop")
    assert cm["data"] == {"size": "L"}
    d = shop.kubectl_json("get", "deploy", "web", "-n", "shop")
    c = d["spec"]["template"]["spec"]["containers"]
    assert len(c) == 1 and c[0]["image"] == "nginx:1.26" and c[0]["env"][0]["name"] == "MODE"


def test_scale_rollout_restart_pause(shop: ServerProcess) -> None:
    shop.kubectl("scale", "deployment", "web", "-n", "shop", "--replicas=4")
    assert shop.kubectl_json("get", "deploy", "web", "-n", "shop")["spec"]["replicas"] == 4
    shop.kubectl("rollout", "restart", "deployment/web", "-n", "shop")
    d = shop.kubectl_json("get", "deploy", "web", "-n", "shop")
    assert "kubectl.kubernetes.io/restartedAt" in d["spec"]["template"]["metadata"]["annotations"]
    shop.kubectl("rollout", "pause", "deployment/web", "-n", "shop")
    assert shop.kubectl_json("get", "deploy", "web", "-n", "shop")["spec"]["paused"] is True
    shop.kubectl("rollout", "resume", "deployment/web", "-n", "shop")


def test_get_watch_prints_later_changes(shop: ServerProcess) -> None:
    env = {"KUBECONFIG": str(shop.kubeconfig), "HOME": str(shop.data_dir), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([KUBECTL, "get", "configmaps", "-n", "shop", "-w"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1.5)
        shop.kubectl("create", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "watched", "namespace": "shop"}}))
        time.sleep(1.5)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "settings" in out and "watched" in out


def test_delete_waits_for_finalizer_removal(shop: ServerProcess) -> None:
    shop.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "held", "namespace": "shop", "finalizers": ["example.com/x"]}}))
    env = {"KUBECONFIG": str(shop.kubeconfig), "HOME": str(shop.data_dir), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([KUBECTL, "delete", "configmap", "held", "-n", "shop"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(1.5)
    assert proc.poll() is None  # still waiting on the finalizer
    shop.kubectl("patch", "configmap", "held", "-n", "shop", "--type=json",
                 "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and 'configmap "held" deleted' in out, err


def test_delete_plain_and_cascade_foreground(shop: ServerProcess) -> None:
    shop.kubectl("create", "configmap", "tmp1", "-n", "shop", "--from-literal=a=b", check=False)
    shop.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tmp2", "namespace": "shop"}}))
    out = shop.kubectl("delete", "configmap", "tmp2", "-n", "shop").stdout
    assert 'configmap "tmp2" deleted' in out


def test_diff(shop: ServerProcess) -> None:
    changed = MANIFEST.replace("color: blue", "color: green")
    p = shop.kubectl("diff", "-f", "-", input=changed, check=False)
    assert p.returncode == 1, p.stderr  # 1 = differences found
    assert "-  color: blue" in p.stdout or "+  color: green" in p.stdout


def test_explain(shop: ServerProcess) -> None:
    out = shop.kubectl("explain", "deployment.spec").stdout
    assert "KIND:" in out and "Deployment" in out and "replicas" in out


def test_api_resources_and_versions(shop: ServerProcess) -> None:
    out = shop.kubectl("api-resources").stdout
    assert "deployments" in out and "deploy" in out and "apps/v1" in out
    out = shop.kubectl("api-versions").stdout.split()
    assert "apps/v1" in out and "v1" in out and "batch/v1" in out


def test_create_with_unknown_field_fails(shop: ServerProcess) -> None:
    bad = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "bad", "namespace": "shop"}, "dataa": {"x": "y"}}
    p = shop.kubectl("create", "-f", "-", input=json.dumps(bad), check=False)
    assert p.returncode != 0 and 'unknown field "dataa"' in p.stderr, p.stderr
    assert shop.get("/api/v1/namespaces/shop/configmaps/bad").status == 404


def test_wait_for_jsonpath(shop: ServerProcess) -> None:
    shop.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flag", "namespace": "shop"},
         "data": {"state": "pending"}}))
    env = {"KUBECONFIG": str(shop.kubeconfig), "HOME": str(shop.data_dir), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([KUBECTL, "wait", "configmap/flag", "-n", "shop",
                             "--for=jsonpath={.data.state}=done", "--timeout=20s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(1)
    shop.kubectl("patch", "configmap", "flag", "-n", "shop", "--type=merge",
                 "-p", '{"data":{"state":"done"}}')
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "condition met" in out


# One object per kind, and the header upstream's kubectl prints for it.
KIND_HEADERS = [
    ("ServiceAccount", {"metadata": {"name": "sa1"}}, "serviceaccounts", "NAME SECRETS AGE"),
    ("Endpoints", {"metadata": {"name": "ep1"}}, "endpoints", "NAME ENDPOINTS AGE"),
    ("ReplicationController", {"metadata": {"name": "rc1"}, "spec": {
        "selector": {"a": "b"}, "template": {"metadata": {"labels": {"a": "b"}},
                                             "spec": {"containers": [{"name": "c", "image": "i"}]}}}},
     "replicationcontrollers", "NAME DESIRED CURRENT READY AGE"),
    ("ReplicaSet", {"apiVersion": "apps/v1", "metadata": {"name": "rs1"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}},
     "replicasets", "NAME DESIRED CURRENT READY AGE"),
    ("StatefulSet", {"apiVersion": "apps/v1", "metadata": {"name": "ss1"}, "spec": {
        "serviceName": "ss1", "selector": {"matchLabels": {"a": "s"}}, "template": {
            "metadata": {"labels": {"a": "s"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}},
     "statefulsets", "NAME READY AGE"),
    ("Job", {"apiVersion": "batch/v1", "metadata": {"name": "j1"}, "spec": {"template": {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}},
     "jobs", "NAME STATUS COMPLETIONS DURATION AGE"),
    ("Lease", {"apiVersion": "coordination.k8s.io/v1", "metadata": {"name": "l1"},
               "spec": {"holderIdentity": "me"}}, "leases", "NAME HOLDER AGE"),
    ("Role", {"apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "r1"}, "rules": []},
     "roles", "NAME CREATED AT"),
    ("RoleBinding", {"apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "rb1"},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r1"},
                     "subjects": [{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"}]},
     "rolebindings", "NAME ROLE AGE"),
    ("NetworkPolicy", {"apiVersion": "networking.k8s.io/v1", "metadata": {"name": "np1"},
                       "spec": {"podSelector": {}}}, "networkpolicies", "NAME POD-SELECTOR AGE"),
    ("PodDisruptionBudget", {"apiVersion": "policy/v1", "metadata": {"name": "pdb1"},
                             "spec": {"minAvailable": 1, "selector": {"matchLabels": {"a": "b"}}}},
     "poddisruptionbudgets", "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE"),
    ("PriorityClass", {"apiVersion": "scheduling.k8s.io/v1", "metadata": {"name": "high"}, "value": 1000},
     "priorityclasses", "NAME VALUE GLOBAL-DEFAULT AGE PREEMPTIONPOLICY"),
    ("StorageClass", {"apiVersion": "storage.k8s.io/v1", "metadata": {"name": "fast"},
                      "provisioner": "example.com/p"},
     "storageclasses", "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE"),
]


@pytest.mark.parametrize("kind,obj,resource,header", KIND_HEADERS, ids=[k[0] for k in KIND_HEADERS])
def test_kind_columns(shop: ServerProcess, kind: str, obj: dict, resource: str, header: str) -> None:
    doc = {"apiVersion": "v1", "kind": kind, **obj}
    doc["metadata"] = {**obj["metadata"], "namespace": "shop"}
    if resource in ("priorityclasses", "storageclasses"):
        del doc["metadata"]["namespace"]
    shop.kubectl("apply", "-f", "-", input=json.dumps(doc))
    out = shop.kubectl("get", resource, "-n", "shop").stdout
    first = out.split("\n")[0]
    assert first.split() == header.split(), out
    assert obj["metadata"]["name"] in out


def test_edit_with_editor(shop: ServerProcess) -> None:
    env_editor = "sed -i s/color:\\ blue/color:\\ red/"
    shop.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "editme", "namespace": "shop"},
         "data": {"color": "blue"}}))
    import os
    env = dict(os.environ, KUBECONFIG=str(shop.kubeconfig), HOME=str(shop.data_dir),
               KUBE_EDITOR=env_editor)
    p = subprocess.run([KUBECTL, "edit", "configmap", "editme", "-n", "shop"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "edited" in p.stdout
    assert shop.kubectl_json("get", "configmap", "editme", "-n", "shop")["data"]["color"] == "red"
