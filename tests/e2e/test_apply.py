"""Server-side apply through real kubectl, the official client and lightkube."""
from __future__ import annotations

from typing import Any

import kubernetes
from kubernetes.dynamic import DynamicClient

from tests.conftest import ServerProcess

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa
  namespace: default
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: ssa}}
  template:
    metadata:
      labels: {{app: ssa}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
"""


def managers(obj: dict[str, Any]) -> dict[str, str]:
    return {e["manager"]: e["operation"] for e in obj["metadata"].get("managedFields", [])}


def test_apply_server_side_twice_is_idempotent(server: ServerProcess) -> None:
    out = server.kubectl("apply", "--server-side", "-f", "-", input=DEPLOY.format(replicas=2)).stdout
    assert "deployment.apps/ssa serverside-applied" in out
    first = server.kubectl_json("get", "deploy", "ssa", "--show-managed-fields")
    assert managers(first) == {"kubectl": "Apply"}
    server.kubectl("apply", "--server-side", "-f", "-", input=DEPLOY.format(replicas=2))
    second = server.kubectl_json("get", "deploy", "ssa", "--show-managed-fields")
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    entry = second["metadata"]["managedFields"][0]
    assert entry["fieldsType"] == "FieldsV1" and entry["apiVersion"] == "apps/v1"
    assert "f:replicas" in entry["fieldsV1"]["f:spec"]


def test_conflict_between_managers_and_force(server: ServerProcess) -> None:
    server.kubectl("apply", "--server-side", "-f", "-", input=DEPLOY.format(replicas=2))
    # Another manager changes replicas through an ordinary update: it now owns the field.
    server.kubectl("scale", "deploy", "ssa", "--replicas=5")
    p = server.kubectl("apply", "--server-side", "-f", "-", input=DEPLOY.format(replicas=3),
                       check=False)
    assert p.returncode != 0
    assert "conflict" in p.stderr and ".spec.replicas" in p.stderr, p.stderr
    assert server.kubectl_json("get", "deploy", "ssa")["spec"]["replicas"] == 5
    server.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                   input=DEPLOY.format(replicas=3))
    d = server.kubectl_json("get", "deploy", "ssa")
    assert d["spec"]["replicas"] == 3


def test_conflict_status_shape(server: ServerProcess) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"},
            "data": {"color": "blue"}}
    path = "/api/v1/namespaces/default/configmaps/owned"
    r = server.patch(f"{path}?fieldManager=alice", body, "application/apply-patch+yaml")
    assert r.status == 201, r
    body["data"]["color"] = "red"
    r = server.patch(f"{path}?fieldManager=bob", body, "application/apply-patch+yaml")
    assert r.status == 409, r
    st = r.json()
    assert st["reason"] == "Conflict"
    assert st["details"]["causes"] == [{"reason": "FieldManagerConflict",
                                        "message": 'conflict with "alice"',
                                        "field": ".data.color"}]
    r = server.patch(f"{path}", body, "application/apply-patch+yaml")
    assert r.status == 422 and "fieldManager" in r.json()["message"], r


def test_fields_dropped_from_applied_config_are_removed(server: ServerProcess) -> None:
    path = "/api/v1/namespaces/default/configmaps/shrink"
    full = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shrink"},
            "data": {"a": "1", "b": "2"}}
    assert server.patch(f"{path}?fieldManager=me", full, "application/apply-patch+yaml").status == 201
    full["data"] = {"a": "1"}
    r = server.patch(f"{path}?fieldManager=me", full, "application/apply-patch+yaml")
    assert r.status == 200 and r.json()["data"] == {"a": "1"}, r


def test_updates_record_managed_fields(server: ServerProcess) -> None:
    server.kubectl("create", "configmap", "tracked", "--from-literal=k=v")
    server.kubectl("label", "configmap", "tracked", "x=y")
    cm = server.kubectl_json("get", "configmap", "tracked", "--show-managed-fields")
    assert managers(cm) == {"kubectl-create": "Update", "kubectl-label": "Update"}


def test_python_client_server_side_apply(server: ServerProcess) -> None:
    client = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
    dyn = DynamicClient(client)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "pyapply", "namespace": "default"}, "data": {"x": "1"}}
    obj = cms.server_side_apply(body=body, field_manager="pyclient")
    assert obj.data.x == "1"
    body["data"]["x"] = "2"
    obj = cms.server_side_apply(body=body, field_manager="pyclient")
    assert obj.data.x == "2"
    client.close()


def test_lightkube_apply(server: ServerProcess) -> None:
    from lightkube import Client, KubeConfig
    from lightkube.resources.core_v1 import ConfigMap
    from lightkube.models.meta_v1 import ObjectMeta
    lk = Client(config=KubeConfig.from_file(str(server.kubeconfig)), field_manager="lightkube")
    cm = ConfigMap(metadata=ObjectMeta(name="lk", namespace="default"), data={"a": "b"})
    got = lk.apply(cm)
    assert got.data == {"a": "b"}
    got = lk.apply(ConfigMap(metadata=ObjectMeta(name="lk", namespace="default"), data={"a": "c"}))
    assert got.data == {"a": "c"}
    assert {e.manager for e in got.metadata.managedFields} == {"lightkube"}
