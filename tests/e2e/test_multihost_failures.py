"""Issue 20's acceptance across hosts, the harder parts (the harness is test_multihost.py's:
a control plane in the root namespace, one `pyk8s agent --runtime oci` per test host, a
cluster of this module's own).

- NetworkPolicy across hosts: default-deny in a namespace keeps a pod on h1 from a pod on
  h2; a policy allowing `role: client` pods on 8080 lets exactly those through, from the
  same host and from the other one (a denied connect times out: the rules drop).
- A frozen host: its agent SIGSTOPped (its containers keep running), its Node goes Unknown,
  its pods are evicted after their 5 s tolerations and recreated on the other host, where
  the Service answers from the new pods only; SIGCONT: the agent kills the deleted pods'
  containers and the Node is Ready again.

The control plane runs with a short --node-monitor-grace-period and the agents renew their
Lease every second, so that the freeze shows within seconds."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from typing import Any, Iterator

import pytest

from pyk8s.kubelet.runtimes.oci import find_oci_runtime, oci_available
from pyk8s.netpol.rules import Names, chain_prefix
from pyk8s.proxy.component import default_chain_prefix
from tests.conftest import needs, needs_root, wait_for
from tests.e2e.test_multihost import IMAGE, PORT, WEB, Agent, Cluster, http_from_pod, web_pod
from tests.e2e.test_oci_runtime import apply

pytestmark = [needs_root, needs(not oci_available(), "the oci runtime is not available")]

GRACE = "8s"                      # --node-monitor-grace-period (upstream 40 s)
TOLERATION_SECONDS = 5
# the agents' network-policy chains (their default bridge cni0, in their own namespaces)
NAMES = Names(chain_prefix(default_chain_prefix("cni0")))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("pyk8s-multihost-failures"),
                up_extra=["--node-monitor-period", "1s", "--node-monitor-grace-period", GRACE,
                          "--node-eviction-rate", "10"],
                agent_extra=["--node-lease-renew-interval", "1",
                             "--node-status-update-frequency", "2"])
    try:
        c.start_with("h1", "h2")
        yield c
    finally:
        for a in c.agents.values():        # a frozen agent cannot stop
            if a.proc is not None and a.proc.poll() is None:
                os.kill(a.proc.pid, signal.SIGCONT)
        c.close()


# -- NetworkPolicy across hosts ---------------------------------------------------------------
class Namespace:
    """Pods of a namespace of the test, each on a chosen node, serving `hello from <name>`."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.name = f"np-{uuid.uuid4().hex[:6]}"
        self.ips: dict[str, str] = {}
        apply(c.up, {"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": self.name}})

    def pod(self, name: str, agent: Agent, labels: dict[str, str]) -> None:
        apply(self.c.up, {"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": name, "namespace": self.name, "labels": labels},
                          "spec": {"nodeName": agent.node, "terminationGracePeriodSeconds": 1,
                                   "containers": [{"name": "web", "image": IMAGE,
                                                   "imagePullPolicy": "IfNotPresent",
                                                   "command": ["sh", "-c", WEB],
                                                   "ports": [{"containerPort": PORT}]}]}})

    def wait_running(self, name: str) -> None:
        def ip() -> str | None:
            p = self.c.up.kubectl_json("get", "pod", "-n", self.name, name)
            return p["status"].get("podIP") if p["status"].get("phase") == "Running" else None
        self.ips[name] = wait_for(f"pod {name} running", ip, timeout=60)

    def connect(self, src: str, dst: str) -> str:
        """What `GET /` on `dst`:8080 from inside `src` gives: "ok" (the server's page),
        "timeout" (nc gave up connecting after 2 s) or the output otherwise."""
        script = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {self.ips[dst]} {PORT} 2>&1"
        out = self.c.up.kubectl("exec", "-n", self.name, src, "--", "sh", "-c", script,
                                check=False, timeout=30).stdout
        if f"hello from {dst}" in out:
            return "ok"
        return "timeout" if "nc: timed out" in out else out

    def policy(self, name: str, spec: dict[str, Any], hosts: list[Agent]) -> None:
        """Apply NetworkPolicy `name`; wait until its Ingress chain is in the tables of
        `hosts` (the chain and its peers' ipsets are written by the same sync)."""
        apply(self.c.up, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                          "metadata": {"name": name, "namespace": self.name}, "spec": spec})
        chain = NAMES.policy_chain("Ingress", f"{self.name}/{name}")
        for a in hosts:
            wait_for(f"policy {name} in force on {a.host.name}",
                     lambda: chain in chains(a), timeout=20)


def chains(agent: Agent) -> list[str]:
    save = agent.host.run(["iptables-save", "-t", "filter"]).stdout
    return [line[1:].split()[0] for line in save.splitlines() if line.startswith(":")]


def test_network_policy_across_hosts(cluster: Cluster) -> None:
    c = cluster
    a1, a2 = c.agents["h1"], c.agents["h2"]
    ns = Namespace(c)
    pods = {"server": (a2, {"app": "server"}),
            "client-h1": (a1, {"role": "client"}), "other-h1": (a1, {"role": "other"}),
            "client-h2": (a2, {"role": "client"}), "other-h2": (a2, {"role": "other"})}
    try:
        for name, (agent, labels) in pods.items():
            ns.pod(name, agent, labels)
        for name in pods:
            ns.wait_running(name)
        clients = [p for p in pods if p != "server"]
        # no policy: everybody reaches the server
        for src in clients:
            assert wait_for(f"{src} → server", lambda: ns.connect(src, "server") == "ok",
                            timeout=20)
        # default deny: nobody, from either host
        ns.policy("deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]}, [a1, a2])
        for src in clients:
            assert ns.connect(src, "server") == "timeout", src
        # role=client on 8080: exactly those, from h2 (same host) and h1 (across the overlay)
        ns.policy("allow-clients", {
            "podSelector": {"matchLabels": {"app": "server"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                         "ports": [{"protocol": "TCP", "port": PORT}]}]}, [a2])
        for src in clients:
            want = "ok" if pods[src][1] == {"role": "client"} else "timeout"
            assert ns.connect(src, "server") == want, src
        # the server is still isolated by deny-all towards the client on h1
        assert ns.connect("server", "client-h1") == "timeout"
        # without the policies, everybody again
        c.up.kubectl("delete", "networkpolicies", "--all", "-n", ns.name)
        for src in clients:
            assert wait_for(f"{src} → server again",
                            lambda: ns.connect(src, "server") == "ok", timeout=20)
    finally:
        c.up.kubectl("delete", "namespace", ns.name, "--timeout=60s", check=False, timeout=70)


# -- a frozen host ------------------------------------------------------------------------------
def deployment(name: str, replicas: int) -> dict[str, Any]:
    """Web pods that tolerate an unreachable / not-ready node for TOLERATION_SECONDS."""
    tolerations = [{"key": f"node.kubernetes.io/{k}", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": TOLERATION_SECONDS}
                   for k in ("unreachable", "not-ready")]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": 1,
                                           "tolerations": tolerations,
                                           "containers": [{
                                               "name": "web", "image": IMAGE,
                                               "imagePullPolicy": "IfNotPresent",
                                               "command": ["sh", "-c", WEB],
                                               "ports": [{"containerPort": PORT}]}]}}}}


def app_pods(c: Cluster, app: str) -> list[dict[str, Any]]:
    return c.up.kubectl_json("get", "pods", "-l", f"app={app}")["items"]


def running_on(c: Cluster, app: str, agent: Agent, n: int) -> list[dict[str, Any]] | None:
    """The app's `n` pods once all of them run on `agent`'s node (and no other is active)."""
    active = [p for p in app_pods(c, app) if not p["metadata"].get("deletionTimestamp")]
    ok = len(active) == n and all(
        p["spec"].get("nodeName") == agent.node and p["status"].get("phase") == "Running"
        and p["status"].get("podIP") for p in active)
    return active if ok else None


def node_ready(c: Cluster, agent: Agent) -> str:
    node = c.up.kubectl_json("get", "node", agent.node)
    return next((x["status"] for x in node["status"].get("conditions") or []
                 if x["type"] == "Ready"), "")


def container_pid(agent: Agent, p: dict[str, Any]) -> int:
    """The host pid of pod `p`'s container, from the runtime's state (runc / crun)."""
    cid = p["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    out = subprocess.run([find_oci_runtime() or "runc", "--root",
                          str(agent.data_dir / "runc"), "state", cid],
                         capture_output=True, text=True, check=True, timeout=10).stdout
    return int(json.loads(out)["pid"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def endpoint_ips(c: Cluster, name: str) -> list[str]:
    ep = c.up.kubectl_json("get", "endpoints", name)
    return sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [])


def served_by(c: Cluster, client: str, ip: str) -> str:
    """The name of the pod behind `ip`:80 that answered pod `client` ("" if none did)."""
    return (http_from_pod(c, client, ip, 80) or "").removeprefix("hello from ")


def test_frozen_host_pods_move_to_the_other_host(cluster: Cluster) -> None:
    c = cluster
    a1, a2 = c.agents["h1"], c.agents["h2"]
    assert a1.proc is not None
    web_pod(c, "fz-client", a2)
    # the Deployment's pods on h1: h2 cordoned until they run
    c.up.kubectl("cordon", a2.node)
    try:
        apply(c.up, deployment("fz", 2))
        old = wait_for("fz pods running on h1", lambda: running_on(c, "fz", a1, 2), timeout=60)
    finally:
        c.up.kubectl("uncordon", a2.node)
    apply(c.up, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fz"},
                 "spec": {"selector": {"app": "fz"}, "ports": [{"port": 80,
                                                               "targetPort": PORT}]}})
    ip = c.up.kubectl_json("get", "service", "fz")["spec"]["clusterIP"]
    old_names = {p["metadata"]["name"] for p in old}
    assert wait_for("the Service from h2", lambda: served_by(c, "fz-client", ip),
                    timeout=30) in old_names
    pids = [container_pid(a1, p) for p in old]
    os.kill(a1.proc.pid, signal.SIGSTOP)
    try:
        wait_for("h1 Unknown", lambda: node_ready(c, a1) == "Unknown", timeout=40)
        # evicted after the toleration: deleted, but nobody on h1 to confirm it
        wait_for("the h1 pods deleted", lambda: all(
            p["metadata"].get("deletionTimestamp") for p in app_pods(c, "fz")
            if p["metadata"]["name"] in old_names), timeout=40)
        new = wait_for("replacements running on h2", lambda: running_on(c, "fz", a2, 2),
                       timeout=60)
        new_names = {p["metadata"]["name"] for p in new}
        assert not new_names & old_names
        # the old pods stay Terminating (only their kubelet confirms them gone), marked as
        # the taint manager's
        for p in app_pods(c, "fz"):
            if p["metadata"]["name"] in old_names:
                reasons = {x["type"]: x.get("reason") for x in p["status"]["conditions"]}
                assert reasons.get("DisruptionTarget") == "DeletionByTaintManager", reasons
        assert {p["metadata"]["name"] for p in app_pods(c, "fz")} == old_names | new_names
        # the containers of the deleted pods still run on frozen h1 ...
        assert all(alive(pid) for pid in pids)
        # ... yet the Service's endpoints are the new pods, and it answers from them
        wait_for("the endpoints: the new pods", lambda: endpoint_ips(c, "fz") == sorted(
            p["status"]["podIP"] for p in new), timeout=30)
        wait_for("the Service answering from a new pod",
                 lambda: served_by(c, "fz-client", ip) in new_names, timeout=30)
        for _ in range(6):
            assert served_by(c, "fz-client", ip) in new_names
    finally:
        os.kill(a1.proc.pid, signal.SIGCONT)
    # h1's agent back: Ready again, the deleted pods' containers killed, the pods gone
    wait_for("h1 Ready again", lambda: node_ready(c, a1) == "True", timeout=40)
    wait_for("the old pods gone", lambda: not {
        p["metadata"]["name"] for p in app_pods(c, "fz")} & old_names, timeout=60)
    wait_for("their containers killed", lambda: not any(alive(pid) for pid in pids),
             timeout=20)
    taints = c.up.kubectl_json("get", "node", a1.node)["spec"].get("taints") or []
    assert not [t for t in taints if t["key"].startswith("node.kubernetes.io/")], taints
    assert running_on(c, "fz", a2, 2) is not None
    c.up.kubectl("delete", "service", "fz")
    c.up.kubectl("delete", "deployment", "fz")
    c.up.kubectl("delete", "pod", "fz-client", "--wait=false")
