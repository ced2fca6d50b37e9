"""Env and volumes with `pyk8s agent --runtime process` joined to a real `pyk8s up`:
env from ConfigMaps / Secrets / fieldRef / resourceFieldRef / envFrom, a configMap volume
bind-mounted at a mountPath missing on the host (private mount namespace, root only), a
ConfigMap change reaching the mounted file, CreateContainerConfigError for a missing
ConfigMap. Nothing is left mounted or created on the host."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyk8s.kubelet import crilog
from tests.conftest import ServerProcess, needs_root, wait_for
from tests.e2e.test_agent import AgentProcess, process_node

NODE = "vol-1"
MOUNT = "/etc/pyk8s-e2e-cfg/deep"      # /etc exists, /etc/pyk8s-e2e-cfg does not

pytestmark = needs_root


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess,
                                                                          AgentProcess]]:
    d = tmp_path_factory.mktemp("pyk8s-volumes")
    try:
        with process_node(d, NODE, "--container-restart-backoff", "1",
                          "--volume-sync-period", "1", "--kubelet-port", "0") as cluster:
            yield cluster
    finally:
        data = str(d)
        with open("/proc/self/mountinfo") as f:
            left = [line for line in f if data in line or "pyk8s-e2e-cfg" in line]
        assert not left, left
        assert not Path("/etc/pyk8s-e2e-cfg").exists()


def apply(up: ServerProcess, obj: Any) -> None:
    up.kubectl("apply", "-f", "-", input=json.dumps(obj))


def config_map(name: str, data: dict[str, str]) -> Any:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def pod(name: str, script: str, **ctr: Any) -> Any:
    volumes = ctr.pop("volumes", None)
    spec: Any = {"nodeName": NODE, "restartPolicy": "Never",
                 "terminationGracePeriodSeconds": 5,
                 "containers": [{"name": "main", "image": "busybox",
                                 "command": ["sh", "-c", script], **ctr}]}
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name,
                                                            "labels": {"app": "env"}},
            "spec": spec}


def log_of(up: ServerProcess, agent: AgentProcess, name: str) -> str:
    p = up.kubectl_json("get", "pod", name)
    f = agent.log_path.parent / "agent" / "pods" / p["metadata"]["uid"] / "main" / "0.log"
    return crilog.read_output(f)   # CRI records: the container's output


def test_env_sources(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, agent = cluster
    apply(up, config_map("env-cm", {"COLOR": "blue", "SIZE": "L"}))
    apply(up, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "env-sec"},
               "data": {"PASSWORD": base64.b64encode(b"hunter2").decode()}})
    env = [{"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "env-cm",
                                                                 "key": "COLOR"}}},
           {"name": "FROM_SEC", "valueFrom": {"secretKeyRef": {"name": "env-sec",
                                                               "key": "PASSWORD"}}},
           {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "APP", "valueFrom": {"fieldRef": {
               "fieldPath": "metadata.labels['app']"}}},
           {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                               "divisor": "1Mi"}}},
           {"name": "BOTH", "value": "$(FROM_CM)-$(POD_NAME)"}]
    apply(up, pod("env", "echo cm=$FROM_CM sec=$FROM_SEC pod=$POD_NAME app=$APP mem=$MEM "
                  "both=$BOTH size=$X_SIZE pw=$PASSWORD arg=$(FROM_CM)", env=env,
                  envFrom=[{"configMapRef": {"name": "env-cm"}, "prefix": "X_"},
                           {"secretRef": {"name": "env-sec"}}],
                  resources={"limits": {"memory": "64Mi"}}))
    out = wait_for("env output", lambda: "cm=" in log_of(up, agent, "env")
                   and log_of(up, agent, "env"), timeout=30)
    assert out.strip() == ("cm=blue sec=hunter2 pod=env app=env mem=64 both=blue-env size=L "
                           "pw=hunter2 arg=blue"), out


def test_missing_config_map_then_created(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, agent = cluster
    apply(up, pod("noconf", "echo got=$V", env=[{"name": "V", "valueFrom": {
        "configMapKeyRef": {"name": "later", "key": "v"}}}]))

    def waiting() -> Any:
        st = up.kubectl_json("get", "pod", "noconf").get("status") or {}
        for cs in st.get("containerStatuses") or []:
            w = (cs.get("state") or {}).get("waiting") or {}
            if w.get("reason") == "CreateContainerConfigError":
                return w
        return None
    w = wait_for("CreateContainerConfigError", waiting, timeout=30)
    assert w["message"] == 'configmap "later" not found'
    assert up.kubectl_json("get", "pod", "noconf")["status"]["phase"] == "Pending"
    apply(up, config_map("later", {"v": "now"}))     # the kubelet retries
    wait_for("started", lambda: "got=now" in log_of(up, agent, "noconf"), timeout=30)


def test_config_map_volume_follows_changes(cluster: tuple[ServerProcess,
                                                          AgentProcess]) -> None:
    up, agent = cluster
    apply(up, config_map("vol-cm", {"greeting": "hello-1"}))
    script = (f"while true; do echo \"v=$(cat {MOUNT}/greeting)\"; "
              f"touch {MOUNT}/x 2>/dev/null && echo WRITABLE; sleep 0.3; done")
    apply(up, pod("vol", script,
                  volumeMounts=[{"name": "cfg", "mountPath": MOUNT, "readOnly": True}],
                  volumes=[{"name": "cfg", "configMap": {"name": "vol-cm"}}]))
    wait_for("first content", lambda: "v=hello-1" in log_of(up, agent, "vol"), timeout=30)
    assert not Path("/etc/pyk8s-e2e-cfg").exists()        # not created on the host
    # kubectl exec runs in the container's mount namespace: it sees the volume too.
    assert up.kubectl("exec", "vol", "--", "cat", f"{MOUNT}/greeting").stdout == "hello-1"
    apply(up, config_map("vol-cm", {"greeting": "hello-2"}))
    wait_for("updated content", lambda: "v=hello-2" in log_of(up, agent, "vol"), timeout=30)
    assert "WRITABLE" not in log_of(up, agent, "vol")
    uid = up.kubectl_json("get", "pod", "vol")["metadata"]["uid"]
    vols = agent.log_path.parent / "agent" / "volumes" / uid
    assert (vols / "cfg" / "greeting").read_text() == "hello-2"
    up.kubectl("delete", "pod", "vol", "--timeout=30s", timeout=60)
    wait_for("volumes torn down", lambda: not vols.exists(), timeout=10)


def test_projected_token_downward_api_and_empty_dir(
        cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, agent = cluster
    script = ("cat /var/run/pyk8s-e2e-sa/namespace; echo; "
              "head -c 3 /var/run/pyk8s-e2e-sa/token; echo; cat /tmp/pyk8s-e2e-ed/f")
    apply(up, pod("proj", f"echo shared > /tmp/pyk8s-e2e-ed/f; {script}; echo; echo done",
                  volumeMounts=[{"name": "sa", "mountPath": "/var/run/pyk8s-e2e-sa"},
                                {"name": "ed", "mountPath": "/tmp/pyk8s-e2e-ed"}],
                  volumes=[{"name": "sa", "projected": {"sources": [
                      {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                      {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                          "fieldPath": "metadata.namespace"}}]}}]}},
                      {"name": "ed", "emptyDir": {}}]))
    try:
        out = wait_for("output", lambda: "done" in log_of(up, agent, "proj")
                       and log_of(up, agent, "proj"), timeout=30)
    except AssertionError:
        print(up.kubectl_json("get", "pod", "proj").get("status"), agent.log())
        raise
    assert out.splitlines()[:3] == ["default", "eyJ", "shared"], out
    assert not Path("/tmp/pyk8s-e2e-ed").exists() and not Path("/var/run/pyk8s-e2e-sa").exists()
