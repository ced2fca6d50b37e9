"""The userspace proxy mode beside a `pyk8s agent --runtime process` (pods are host
processes, which packet rules cannot steer): cluster IPs on a dummy link of the test's
own (root) and NodePorts on the node, relayed to the pods' ports on 127.0.0.1."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, free_port, needs_root, wait_for
from tests.e2e.test_agent import process_node

pytestmark = needs_root

NODE = "us-1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    link = f"pk8v{uuid.uuid4().hex[:6]}"
    with process_node(tmp_path_factory.mktemp("pyk8s-us"), NODE,
                      "--proxy-vip-interface", link) as (up, _agent):
        yield up, link
    assert not Path(f"/sys/class/net/{link}").exists(), "the proxy left its link behind"


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:   # loopback / our dummy link only
        return r.read().decode()


def backend(up: ServerProcess, name: str, port: int) -> None:
    script = (f"d=$(mktemp -d); echo {name} > $d/name; cd $d; "
              f"exec {sys.executable} -m http.server {port} --bind 127.0.0.1")
    up.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "us-web"}},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 2, "containers": [{
            "name": "main", "image": "python", "command": ["sh", "-c", script],
            "ports": [{"name": "http", "containerPort": port}],
            "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1}}]}}))


def test_cluster_ip_and_node_port_reach_both_backends(cluster: tuple[ServerProcess, str]
                                                      ) -> None:
    up, link = cluster
    backend(up, "us-a", free_port())
    backend(up, "us-b", free_port())
    up.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "us-web"},
        "spec": {"type": "NodePort", "selector": {"app": "us-web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
    svc: Any = up.kubectl_json("get", "service", "us-web")
    ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]

    def endpoints() -> int:
        slices = up.kubectl_json("get", "endpointslices", "-l",
                                 "kubernetes.io/service-name=us-web")["items"]
        return sum(1 for s in slices for e in s.get("endpoints") or []
                   if (e.get("conditions") or {}).get("ready"))
    wait_for("2 ready endpoints", lambda: endpoints() == 2, timeout=30)
    wait_for("the cluster IP on the proxy's link", lambda: f" {ip}/32 " in subprocess.run(
        ["ip", "-o", "addr", "show", "dev", link], capture_output=True, text=True).stdout,
        timeout=20)

    def both(url: str) -> set[str] | None:
        seen = {get(url).strip() for _ in range(8)}
        return seen if seen == {"us-a", "us-b"} else None
    assert wait_for("both backends through the cluster IP",
                    lambda: both(f"http://{ip}/name"), timeout=20)
    assert wait_for("both backends through the node port",
                    lambda: both(f"http://127.0.0.1:{node_port}/name"), timeout=20)
    # A backend going away stops getting traffic.
    up.kubectl("delete", "pod", "us-b")
    wait_for("1 endpoint", lambda: endpoints() == 1, timeout=30)
    wait_for("only us-a", lambda: {get(f"http://{ip}/name").strip() for _ in range(6)}
             == {"us-a"}, timeout=20)
    up.kubectl("delete", "service", "us-web")
    wait_for("the cluster IP released from the link", lambda: f" {ip}/32 " not in
             subprocess.run(["ip", "-o", "addr", "show", "dev", link], capture_output=True,
                            text=True).stdout, timeout=20)
    up.kubectl("delete", "pod", "us-a", "--wait=false")
