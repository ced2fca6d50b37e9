"""PodDisruptionBudgets, the pods/eviction subresource and `kubectl drain` on real
processes: `pyk8s up` (no node of its own) and three hollow nodes from one
`pyk8s agent --runtime fake --count 3` (fake-runtime pods are Running and Ready at once)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, wait_for
from tests.e2e.test_agent import AgentProcess

BASE = "drain"
NODES = [f"{BASE}-{i}" for i in range(3)]
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d: Path = tmp_path_factory.mktemp("pyk8s-drain")
    server = ServerProcess(d, command="up", ready_log="disruption-controller: synced").start(
        timeout=40)
    agent = None
    try:
        agent = AgentProcess(server, d, "--node-name", BASE, "--count", "3", "--runtime",
                             "fake", "--fake-cpu", "8", "--fake-memory", "16Gi").start()
        wait_for("hollow nodes Ready", lambda: server.kubectl(
            "get", "nodes", "--no-headers", check=False).stdout.count(" Ready ") == 3,
                 timeout=30)
        yield server
    finally:
        if agent is not None:
            agent.stop()
        server.stop()


def pods(up: ServerProcess, ns: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = up.kubectl_json("get", "pods", "-n", ns, "-l",
                                                  selector)["items"]
    return items


def ready(pod: dict[str, Any]) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions") or [])


def pdb_status(up: ServerProcess, ns: str, name: str) -> dict[str, Any]:
    st: dict[str, Any] = up.kubectl_json("get", "pdb", name, "-n", ns).get("status") or {}
    return st


def test_eviction_in_discovery(up: ServerProcess) -> None:
    res = up.get("/api/v1").json()["resources"]
    [ev] = [r for r in res if r["name"] == "pods/eviction"]
    assert (ev["group"], ev["version"], ev["kind"], ev["verbs"]) == \
        ("policy", "v1", "Eviction", ["create"])


def test_drain_respects_the_budget(up: ServerProcess) -> None:
    ns = "drain"
    up.kubectl("create", "namespace", ns)
    up.kubectl("cordon", NODES[1], NODES[2])
    up.kubectl("create", "deployment", "web", "-n", ns, "--image=nginx", "--replicas=3")
    wait_for("3 web pods ready on drain-0", lambda: (lambda ps: len(ps) == 3 and all(
        ready(p) and p["spec"].get("nodeName") == NODES[0] for p in ps))(
            pods(up, ns, "app=web")), timeout=30)
    up.kubectl("uncordon", NODES[1], NODES[2])
    up.kubectl("create", "pdb", "web", "-n", ns, "--selector=app=web", "--min-available=3")
    wait_for("pdb observed", lambda: (lambda st: st.get("observedGeneration") == 1 and
                                      st.get("currentHealthy") == 3)(pdb_status(up, ns, "web")))
    st = pdb_status(up, ns, "web")
    assert (st["desiredHealthy"], st["expectedPods"], st["disruptionsAllowed"]) == (3, 3, 0)
    cond = st["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == \
        ("DisruptionAllowed", "False", "InsufficientPods")
    table = up.kubectl("get", "pdb", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED",
                                "DISRUPTIONS", "AGE"]
    assert table[1].split()[:4] == ["web", "3", "N/A", "0"]

    # minAvailable = replicas: nothing may be evicted, drain times out
    p = up.kubectl("drain", NODES[0], "--ignore-daemonsets", "--delete-emptydir-data",
                   "--timeout=6s", check=False, timeout=30)
    assert p.returncode != 0
    assert f"node/{NODES[0]} cordoned" in p.stdout
    assert "error when evicting pods/" in p.stderr and VIOLATION in p.stderr, p.stderr
    node = up.kubectl_json("get", "node", NODES[0])
    assert node["spec"]["unschedulable"] is True
    left = pods(up, ns, "app=web")
    assert len(left) == 3 and all(ready(x) and x["spec"]["nodeName"] == NODES[0]
                                  for x in left)

    # minAvailable 2: one at a time, as replacements become ready elsewhere
    up.kubectl("patch", "pdb", "web", "-n", ns, "--type=merge",
               "-p", json.dumps({"spec": {"minAvailable": 2}}))
    wait_for("budget allows one", lambda: (lambda st: st.get("observedGeneration") == 2 and
                                           st.get("disruptionsAllowed") == 1)(
        pdb_status(up, ns, "web")))
    p = up.kubectl("drain", NODES[0], "--ignore-daemonsets", "--delete-emptydir-data",
                   "--timeout=45s", check=False, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("evicted") == 3 and f"node/{NODES[0]} drained" in p.stdout
    moved = pods(up, ns, "app=web")
    assert len(moved) == 3 and all(ready(x) and x["spec"]["nodeName"] in NODES[1:]
                                   for x in moved)
    assert up.kubectl_json("get", "node", NODES[0])["spec"]["unschedulable"] is True
    up.kubectl("uncordon", NODES[0])
    assert not up.kubectl_json("get", "node", NODES[0])["spec"].get("unschedulable")
    wait_for("budget back to one", lambda: pdb_status(up, ns, "web").get(
        "disruptionsAllowed") == 1)


def _pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "solo"}},
            "spec": {"nodeName": NODES[2], "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "nginx"}]}}


def _eviction(name: str, **delete_options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction",
                            "metadata": {"name": name, "namespace": "evict"}}
    if delete_options:
        body["deleteOptions"] = delete_options
    return body


def test_eviction_subresource(up: ServerProcess) -> None:
    ns = "evict"
    up.kubectl("create", "namespace", ns)
    for n in ("s1", "s2"):
        assert up.post(f"/api/v1/namespaces/{ns}/pods", _pod(n)).status == 201
    wait_for("solo pods ready", lambda: sum(map(ready, pods(up, ns, "app=solo"))) == 2,
             timeout=20)
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "solo"},
           "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "solo"}}}}
    assert up.post(f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", pdb).status == 201
    wait_for("pdb observed", lambda: pdb_status(up, ns, "solo").get("currentHealthy") == 2)
    url = f"/api/v1/namespaces/{ns}/pods/s1/eviction"

    r = up.post(url, _eviction("s1"))
    assert r.status == 429, r
    body = r.json()
    assert (body["reason"], body["code"], body["message"]) == ("TooManyRequests", 429,
                                                               VIOLATION)
    assert body["details"]["causes"] == [{
        "reason": "DisruptionBudget",
        "message": "The disruption budget solo needs 2 healthy pods and has 2 currently"}]

    r = up.post(url, {**_eviction("other")})
    assert r.status == 400 and "does not match" in r.json()["message"]
    assert up.get(url).status == 405

    up.kubectl("patch", "pdb", "solo", "-n", ns, "--type=merge",
               "-p", json.dumps({"spec": {"minAvailable": 1}}))
    wait_for("budget allows one", lambda: pdb_status(up, ns, "solo").get(
        "disruptionsAllowed") == 1)
    r = up.post(url + "?dryRun=All", _eviction("s1"))
    assert r.status == 201 and pdb_status(up, ns, "solo")["disruptionsAllowed"] == 1
    r = up.post(url, _eviction("s1", gracePeriodSeconds=0))
    assert (r.status, r.json()) == (201, {"kind": "Status", "apiVersion": "v1",
                                          "metadata": {}, "status": "Success", "code": 201})
    wait_for("s1 gone", lambda: up.get(f"/api/v1/namespaces/{ns}/pods/s1").status == 404)
    assert up.post(url, _eviction("s1")).status == 404

    second = {**pdb, "metadata": {"name": "solo2"}}
    assert up.post(f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
                   second).status == 201
    r = up.post(f"/api/v1/namespaces/{ns}/pods/s2/eviction", _eviction("s2"))
    body = r.json()
    assert r.status == 500, r.data
    assert (body["status"], body["code"], body["reason"], body["message"]) == (
        "Failure", 500, "InternalError", "Internal error occurred: This pod has more than "
        "one PodDisruptionBudget, which the eviction subresource does not support.")
    assert ready(up.kubectl_json("get", "pod", "s2", "-n", ns))
