"""nodes/proxy to the kubelet's /stats/summary and /metrics/resource, end to end: a real
`pyk8s up` with its local node (process runtime: node figures from the root cgroup, pods
without cpu / memory) and real kubectl (`get --raw`)."""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ServerProcess, wait_for
from tests.e2e.test_local_node import kill_marked, node_ready

NODE = "n1"
MARKER = f"pyk8s-stats-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("pyk8s-stats"), command="up", local_node=True,
                        extra=["--node-name", NODE, "--runtime", "process"])
    try:
        srv.start(timeout=40)
        wait_for("local node Ready", lambda: node_ready(srv, NODE), timeout=30)
        srv.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "busy"},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "busybox",
                                     "command": ["sh", "-c", f"sleep 3600; : {MARKER}"]}]}}))
        wait_for("pod Running", lambda: srv.kubectl_json("get", "pod", "busy")
                 .get("status", {}).get("phase") == "Running", timeout=30)
        yield srv
    finally:
        srv.stop()
        kill_marked(MARKER)


def test_stats_summary(up: ServerProcess) -> None:
    out = up.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/stats/summary").stdout
    s = json.loads(out)
    node = s["node"]
    assert node["nodeName"] == NODE
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", node["startTime"])
    cpu, mem = node["cpu"], node["memory"]
    assert cpu["usageCoreNanoSeconds"] > 0
    assert cpu["usageNanoCores"] >= 0          # two samples ~100 ms apart
    assert mem["workingSetBytes"] > 0
    assert mem["usageBytes"] >= mem["workingSetBytes"]
    assert 0 < mem["availableBytes"] < 1 << 50
    assert node["fs"]["capacityBytes"] >= node["fs"]["availableBytes"] > 0
    assert node["rlimit"]["maxpid"] > 0 and node["rlimit"]["curproc"] > 0
    # The process runtime has no cgroups: the pod and its container, without figures.
    [pod] = [p for p in s["pods"] if p["podRef"]["name"] == "busy"]
    assert pod["podRef"]["namespace"] == "default" and pod["podRef"]["uid"]
    assert [c["name"] for c in pod["containers"]] == ["main"]
    assert "cpu" not in pod and "cpu" not in pod["containers"][0]
    # A second look soon after: a rate from the kept sample, cumulative time grows.
    again = json.loads(up.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/stats/summary"
                                  "?only_cpu_and_memory=true").stdout)
    assert again["node"]["cpu"]["usageCoreNanoSeconds"] >= cpu["usageCoreNanoSeconds"]
    assert "fs" not in again["node"]


def test_metrics_resource(up: ServerProcess) -> None:
    text = up.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics/resource").stdout
    assert "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by " \
           "the node in core-seconds\n# TYPE node_cpu_usage_seconds_total counter\n" in text
    m = re.search(r"^node_cpu_usage_seconds_total (\S+) (\d{13})$", text, re.M)
    assert m and float(m.group(1)) > 0
    m = re.search(r"^node_memory_working_set_bytes (\S+) (\d{13})$", text, re.M)
    assert m and float(m.group(1)) > 0
    assert re.search(r'^container_start_time_seconds\{container="main",namespace="default",'
                     r'pod="busy"\} \S+$', text, re.M)
    assert "\nresource_scrape_error 0\n" in text and "\nscrape_error 0\n" in text
    # Through the API server as the kubelet answers it (the name may carry the port).
    node = up.get(f"/api/v1/nodes/{NODE}").json()
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    r = up.get(f"/api/v1/nodes/{NODE}:{port}/proxy/metrics/resource")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"node_memory_working_set_bytes" in r.data


def test_node_proxy_errors(up: ServerProcess) -> None:
    p = up.kubectl("get", "--raw", "/api/v1/nodes/nope/proxy/stats/summary", check=False)
    assert p.returncode != 0 and 'nodes "nope" not found' in p.stderr
    r = up.get("/api/v1/nodes/nope/proxy/stats/summary")
    st = r.json()
    assert (r.status, st["kind"], st["reason"], st["code"]) == (404, "Status", "NotFound", 404)
    assert st["details"] == {"name": "nope", "kind": "nodes"}
    # GET only: other verbs are 405.
    r = up.post(f"/api/v1/nodes/{NODE}/proxy/stats/summary", {})
    assert (r.status, r.json()["reason"]) == (405, "MethodNotAllowed")
    # The kubelet's own answer passes through (an unknown path: its 404).
    assert up.get(f"/api/v1/nodes/{NODE}/proxy/no/such/path").status == 404
    # Extra segments after another subresource are not a resource.
    assert up.get(f"/api/v1/nodes/{NODE}/status/extra").status == 404
    # Discovery lists nodes/proxy as upstream.
    res = json.loads(up.kubectl("get", "--raw", "/api/v1").stdout)["resources"]
    [entry] = [r for r in res if r["name"] == "nodes/proxy"]
    assert entry["kind"] == "NodeProxyOptions"
    assert entry["verbs"] == ["create", "delete", "get", "patch", "update"]
