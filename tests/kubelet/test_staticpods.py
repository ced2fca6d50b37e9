"""Static pod manifests (parsing, upstream's defaults and hash, mirror pods) and the
kubelet's node-side admission."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyk8s.kubelet.admission import admit, rejected_status
from pyk8s.kubelet.staticpods import (CONFIG_HASH, CONFIG_MIRROR, CONFIG_SEEN, CONFIG_SOURCE,
                                      FileSource, ManifestError, is_mirror_of, is_mirror_pod,
                                      is_static_pod, mirror_pod, parse_manifest, static_pod)

YAML = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: main
    image: busybox
    command: [sleep, "1000"]
"""


def test_parse_yaml_json_and_multi_doc() -> None:
    (p,) = parse_manifest(YAML)
    assert p["metadata"]["name"] == "web"
    (j,) = parse_manifest(json.dumps(p))
    assert j == p
    two = parse_manifest(YAML + "---\n" + YAML.replace("name: web", "name: db"))
    assert [d["metadata"]["name"] for d in two] == ["web", "db"]
    for bad in ("kind: Service\napiVersion: v1\nmetadata: {name: x}\n",
                "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: c}]}\n",
                "[1, 2]", "a: [b"):
        with pytest.raises(ManifestError):
            parse_manifest(bad, "f.yaml")


def test_static_pod_defaults_and_hash() -> None:
    (m,) = parse_manifest(YAML)
    p = static_pod(m, "Node-1", "/etc/manifests/web.yaml")
    md = p["metadata"]
    assert md["name"] == "web-node-1" and md["namespace"] == "default"
    assert p["spec"]["nodeName"] == "Node-1"
    assert len(md["uid"]) == 32 and md["annotations"][CONFIG_HASH] == md["uid"]
    assert md["annotations"][CONFIG_SOURCE] == "file" and md["annotations"][CONFIG_SEEN]
    assert {"operator": "Exists", "effect": "NoExecute"} in p["spec"]["tolerations"]
    assert p["status"] == {"phase": "Pending"}
    assert is_static_pod(p) and not is_mirror_pod(p)
    assert m["metadata"] == {"name": "web"}            # the manifest is not modified
    # Stable for the same manifest, node and file; anything else is another pod.
    uid = md["uid"]
    assert static_pod(m, "Node-1", "/etc/manifests/web.yaml")["metadata"]["uid"] == uid
    assert static_pod(m, "node-2", "/etc/manifests/web.yaml")["metadata"]["uid"] != uid
    assert static_pod(m, "Node-1", "/etc/manifests/other.yaml")["metadata"]["uid"] != uid
    m2 = json.loads(json.dumps(m))
    m2["spec"]["containers"][0]["command"] = ["sleep", "2000"]
    assert static_pod(m2, "Node-1", "/etc/manifests/web.yaml")["metadata"]["uid"] != uid
    # A uid in the manifest is kept; a namespace too.
    m3 = {**m, "metadata": {"name": "web", "namespace": "kube-system", "uid": "u-1"}}
    p3 = static_pod(m3, "n", "f")
    assert p3["metadata"]["uid"] == "u-1" and p3["metadata"]["namespace"] == "kube-system"


def test_mirror_pod() -> None:
    (m,) = parse_manifest(YAML)
    p = static_pod(m, "n1", "f")
    mp = mirror_pod(p, "n1", "node-uid")
    md = mp["metadata"]
    assert "uid" not in md and "status" not in mp
    assert md["annotations"][CONFIG_MIRROR] == p["metadata"]["uid"]
    assert md["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": "n1",
                                      "uid": "node-uid", "controller": True}]
    assert is_mirror_pod(mp) and not is_static_pod(mp) and is_mirror_of(mp, p)
    p2 = static_pod({**m, "spec": {**m["spec"], "hostNetwork": True}}, "n1", "f")
    assert not is_mirror_of(mp, p2)
    assert CONFIG_MIRROR not in p["metadata"]["annotations"]   # the static pod untouched


def test_file_source_scan(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(YAML)
    (tmp_path / ".hidden.yaml").write_text(YAML.replace("name: web", "name: hidden"))
    (tmp_path / "broken.yaml").write_text("a: [")
    src = FileSource(tmp_path, "n1")
    pods = src.scan()
    assert list(pods) == ["default/web-n1"]
    seen = pods["default/web-n1"]["metadata"]["annotations"][CONFIG_SEEN]
    again = src.scan()["default/web-n1"]
    assert again["metadata"]["annotations"][CONFIG_SEEN] == seen   # kept while unchanged
    (tmp_path / "web.yaml").unlink()
    assert src.scan() == {}
    assert FileSource(tmp_path / "missing", "n1").scan() == {}


# -- admission ----------------------------------------------------------------------------
NODE = {"metadata": {"name": "n1", "labels": {"disk": "ssd", "kubernetes.io/hostname": "n1"}},
        "spec": {},
        "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "3",
                                   "ephemeral-storage": "10Gi"}}}


def pod(name: str = "p", cpu: str = "", mem: str = "", **spec: object) -> dict:
    req = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v}
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "c", "image": "x", "resources": {"requests": req}}], **spec}}


def test_admit_resources() -> None:
    assert admit(pod(cpu="1"), NODE, [pod("a", cpu="1")]).admit
    r = admit(pod(cpu="4"), NODE, [])
    assert not r.admit and r.reason == "OutOfcpu"
    assert r.message == ("Node didn't have enough resource: cpu, requested: 4000, used: 0, "
                         "capacity: 2000")
    r = admit(pod(cpu="1500m"), NODE, [pod("a", cpu="1")])
    assert r.reason == "OutOfcpu" and "requested: 1500, used: 1000, capacity: 2000" in r.message
    r = admit(pod(mem="5Gi"), NODE, [])
    assert r.reason == "OutOfmemory" and r.message.startswith(
        "Node didn't have enough resource: memory, requested: 5368709120, used: 0, ")
    r = admit(pod(), NODE, [pod("a"), pod("b"), pod("c")])
    assert r.reason == "OutOfpods" and r.message == (
        "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3")
    st = rejected_status(pod(), r)
    assert st["phase"] == "Failed" and st["reason"] == "OutOfpods"
    assert st["message"].startswith("Pod was rejected: Node didn't have enough resource: pods")


def test_admit_affinity_name_ports_taints() -> None:
    assert admit(pod(nodeSelector={"disk": "ssd"}), NODE, []).admit
    r = admit(pod(nodeSelector={"disk": "hdd"}), NODE, [])
    assert not r.admit and r.reason == "NodeAffinity"
    assert r.message == "node(s) didn't match Pod's node affinity/selector"
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["nvme"]}]}]}}}
    assert admit(pod(affinity=aff), NODE, []).reason == "NodeAffinity"
    r = admit(pod(nodeName="n2"), NODE, [])
    assert r.reason == "NodeName"
    ports = [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}]
    r = admit(pod(containers=ports), NODE, [pod("a", containers=ports)])
    assert r.reason == "NodePorts"
    tainted = {**NODE, "spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}}
    assert admit(pod(), tainted, []).reason == "TaintToleration"
    assert admit(pod(tolerations=[{"key": "k", "operator": "Exists"}]), tainted, []).admit
    no_sched = {**NODE, "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}
    assert admit(pod(), no_sched, []).admit     # the kubelet only minds NoExecute
    (m,) = parse_manifest(YAML)
    static = static_pod({**m, "spec": {**m["spec"], "tolerations": []}}, "n1", "f")
    static["spec"]["tolerations"] = []
    assert admit(static, tainted, []).admit     # static pods skip the taint check
