"""The node IPAM controller in a real `pyk8s up` with real `pyk8s agent --runtime fake`
nodes, read back with real kubectl: distinct podCIDRs from the default cluster CIDR, kept
immutable by the API server and re-derived after a restart (the freed subnet of a deleted
node goes to the next one); `--cluster-cidr` / `--node-cidr-mask-size`; a full range
(CIDRNotAvailable) served as soon as a node is deleted."""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ServerProcess, wait_for
from tests.e2e.test_agent import AgentProcess

READY_LOG = "node ipam controller: synced"


class Cluster:
    def __init__(self, d: Path, *flags: str) -> None:
        self.d = d
        self.up = ServerProcess(d, command="up", ready_log=READY_LOG, extra=list(flags))
        self.agents: dict[str, AgentProcess] = {}

    def start(self) -> "Cluster":
        self.up.start(timeout=40)
        return self

    def agent(self, name: str) -> AgentProcess:
        ad = self.d / name
        ad.mkdir(parents=True, exist_ok=True)
        a = AgentProcess(self.up, ad, "--node-name", name, "--runtime", "fake",
                         "--kubelet-port", "0").start()
        self.agents[name] = a
        return a

    def stop_agent(self, name: str) -> None:
        self.agents.pop(name).stop()

    def stop(self) -> None:
        for a in self.agents.values():
            a.stop()
        self.up.stop()

    def pod_cidrs(self) -> dict[str, tuple[str, list[str]]]:
        """name → (spec.podCIDR, spec.podCIDRs) of every node, by kubectl's jsonpath."""
        out = self.up.kubectl(
            "get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}"
            "|{.spec.podCIDR}|{.spec.podCIDRs}{\"\\n\"}{end}").stdout
        nodes: dict[str, tuple[str, list[str]]] = {}
        for line in out.splitlines():
            name, cidr, cidrs = line.split("|")
            nodes[name] = (cidr, json.loads(cidrs) if cidrs else [])
        return nodes

    def wait_cidr(self, name: str, timeout: float = 30.0) -> str:
        def got() -> str | None:
            a = self.agents.get(name)
            assert a is None or a.proc is None or a.proc.poll() is None, a.log()
            cidr, cidrs = self.pod_cidrs().get(name, ("", []))
            if cidr:
                assert cidrs == [cidr]
                return cidr
            return None
        return wait_for(f"node {name}'s podCIDR", got, timeout=timeout)


@pytest.fixture
def cluster_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("pyk8s-nodeipam")


def _net(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr)


def test_default_cluster_cidr_distinct_immutable_and_restart(cluster_dir: Path) -> None:
    c = Cluster(cluster_dir).start()
    try:
        c.agent("ipam-a")
        c.agent("ipam-b")
        a, b = c.wait_cidr("ipam-a"), c.wait_cidr("ipam-b")
        assert a != b
        for cidr in (a, b):
            assert _net(cidr).prefixlen == 24
            assert _net(cidr).subnet_of(_net("10.42.0.0/16"))
        # The API server keeps a podCIDR once set.
        p = c.up.kubectl("patch", "node", "ipam-b", "-p", json.dumps(
            {"spec": {"podCIDR": "10.42.200.0/24", "podCIDRs": ["10.42.200.0/24"]}}),
            check=False)
        assert p.returncode != 0
        assert 'node updates may not change podCIDR except from "" to valid' in p.stderr
        assert c.pod_cidrs()["ipam-b"][0] == b
        # A deleted node's subnet is free again; after a restart of `up` the allocation is
        # derived from the Nodes: ipam-b keeps its own, the new node takes ipam-a's.
        c.stop_agent("ipam-a")
        c.up.kubectl("delete", "node", "ipam-a")
        c.up.stop()
        c.up.start(timeout=40)
        c.agent("ipam-c")
        assert c.wait_cidr("ipam-c") == a
        assert c.pod_cidrs()["ipam-b"][0] == b
    finally:
        c.stop()


def test_cluster_cidr_and_mask_size_flags(cluster_dir: Path) -> None:
    c = Cluster(cluster_dir, "--cluster-cidr", "10.99.0.0/16",
                "--node-cidr-mask-size", "26").start()
    try:
        c.agent("ipam-x")
        x = c.wait_cidr("ipam-x")
        c.agent("ipam-y")
        y = c.wait_cidr("ipam-y")
        assert {x, y} == {"10.99.0.0/26", "10.99.0.64/26"}
    finally:
        c.stop()


def test_full_range_then_a_deleted_nodes_cidr_is_reused(cluster_dir: Path) -> None:
    # Two /24s only, the second one taken by the service range: one node fits.
    c = Cluster(cluster_dir, "--cluster-cidr", "10.77.0.0/23",
                "--service-cluster-ip-range", "10.77.1.0/24").start()
    try:
        c.agent("ipam-p")
        assert c.wait_cidr("ipam-p") == "10.77.0.0/24"
        c.agent("ipam-q")

        def not_available() -> bool:
            events = c.up.kubectl_json("get", "events", "-n", "default")["items"]
            return any(e["reason"] == "CIDRNotAvailable" and
                       e["involvedObject"]["name"] == "ipam-q" and
                       e["message"] == "Node ipam-q status is now: CIDRNotAvailable" and
                       e["source"]["component"] == "cidrAllocator" for e in events)
        wait_for("CIDRNotAvailable event", not_available, timeout=30)
        assert c.pod_cidrs()["ipam-q"] == ("", [])
        c.stop_agent("ipam-p")
        c.up.kubectl("delete", "node", "ipam-p")
        assert c.wait_cidr("ipam-q", timeout=15) == "10.77.0.0/24"
    finally:
        c.stop()
