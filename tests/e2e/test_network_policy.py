"""NetworkPolicy enforcement (issue 20's acceptance, one host): `pyk8s up` whose local node
runs the oci runtime enforces `networking.k8s.io/v1` NetworkPolicies for its pods. Every
pod serves HTTP on 8080 (busybox httpd, answering /name with the pod's name); connections
are tried from inside pods with `nc -w 2` (a denied connect times out: the rules drop). A
policy is in force once its chain is in the node's tables (the chain and the ipsets it
refers to are written by the same sync, the sets first). Traffic goes only to pod IPs on
the test's own bridge."""
from __future__ import annotations

import json
import select
import subprocess
import sys
import uuid
from typing import Any, Iterator

import pytest

from pyk8s.netpol.rules import Names, chain_prefix
from pyk8s.proxy.component import default_chain_prefix
from tests.conftest import KUBECTL, ServerProcess, needs_root, wait_for
from tests.e2e.test_oci_runtime import running_oci_node
from tests.registry import registry  # noqa: F401  (the session's local registry)

pytestmark = needs_root

NODE = "np-1"
HTTPD = "hostname > /var/www/name; exec httpd -f -p 8080 -h /var/www"


class Cluster:
    def __init__(self, up: ServerProcess, image: str, names: Names, ns: str) -> None:
        self.up, self.image, self.names = up, image, names
        self.ns, self.other_ns = ns, f"{ns}-b"
        self.ips: dict[str, str] = {}

    def apply(self, obj: dict[str, Any]) -> None:
        self.up.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def pod(self, name: str, ns: str, labels: dict[str, str], echo: bool = False) -> None:
        """A pod serving /name on 8080 (named port `http`); with `echo`, an echo server on
        9000 too (`nc -ll -e cat`: one `cat` per connection)."""
        containers = [{"name": "httpd", "image": self.image, "command": ["sh", "-c", HTTPD],
                       "ports": [{"name": "http", "containerPort": 8080}]}]
        if echo:
            containers.append({"name": "echo", "image": self.image,
                               "command": ["nc", "-ll", "-p", "9000", "-e", "cat"]})
        self.apply({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": ns, "labels": labels},
                    "spec": {"terminationGracePeriodSeconds": 1, "containers": containers}})

    def reach(self, src: str, dst: str, port: int = 8080, ns: str = "") -> bool:
        """Whether pod `src` (namespace `ns`, default the first one) gets pod `dst`'s
        /name on `port` (False: the connect timed out after 2 s, or nothing answered)."""
        request = f'printf "GET /name HTTP/1.0\\r\\n\\r\\n" | nc -w 2 {self.ips[dst]} {port}'
        out = self.up.kubectl("exec", "-n", ns or self.ns, src, "-c", "httpd", "--",
                              "sh", "-c", request, check=False, timeout=30).stdout
        return out.strip().splitlines()[-1:] == [dst]

    def policy(self, name: str, spec: dict[str, Any]) -> None:
        """Apply NetworkPolicy `name` and wait until it is in force (its Ingress chain, or
        Egress one when it has only that type, is in the tables)."""
        self.apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": name, "namespace": self.ns}, "spec": spec})
        direction = "Egress" if spec.get("policyTypes") == ["Egress"] else "Ingress"
        chain = self.names.policy_chain(direction, f"{self.ns}/{name}")
        wait_for(f"policy {name} in force", lambda: chain in chains(), timeout=10)

    def delete_policies(self) -> None:
        """Delete every policy of the namespace and wait until their chains are gone."""
        self.up.kubectl("delete", "networkpolicies", "--all", "-n", self.ns, "--wait")
        wait_for("no policy chains", lambda: not [
            c for c in chains() if c.startswith(f"{self.names.p}-I-")
            or c.startswith(f"{self.names.p}-E-")], timeout=10)


def chains() -> list[str]:
    save = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True,
                          text=True).stdout
    return [line[1:].split()[0] for line in save.splitlines() if line.startswith(":")]


@pytest.fixture(scope="module")
def cluster(registry: Any, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
            ) -> Iterator[Cluster]:
    d = tmp_path_factory.mktemp("pyk8s-netpol")
    with running_oci_node(d, registry, NODE) as up:
        bridge = up.extra[up.extra.index("--cni-bridge") + 1]
        names = Names(chain_prefix(default_chain_prefix(bridge)))
        c = Cluster(up, registry.image("busybox"), names, f"np-{uuid.uuid4().hex[:6]}")
        for ns, labels in ((c.ns, {"team": "a"}), (c.other_ns, {"team": "b"})):
            c.apply({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": ns, "labels": labels}})
        c.pod("server", c.ns, {"app": "server"}, echo=True)
        c.pod("client", c.ns, {"role": "client"})
        c.pod("other", c.ns, {"role": "other"})
        c.pod("peer", c.other_ns, {"role": "client"})
        for ns, name in ((c.ns, "server"), (c.ns, "client"), (c.ns, "other"),
                         (c.other_ns, "peer")):
            c.ips[name] = wait_for(f"pod {name} running", lambda: _running_ip(up, ns, name),
                                   timeout=60)
        wait_for("the server answering", lambda: c.reach("client", "server"), timeout=20)
        yield c
    # running_oci_node checked that the stopped node left no chain, ipset or jump


def _running_ip(up: ServerProcess, ns: str, name: str) -> str | None:
    status = up.kubectl_json("get", "pod", "-n", ns, name)["status"]
    ready = all(c.get("ready") for c in status.get("containerStatuses") or [{}])
    return status.get("podIP") if status.get("phase") == "Running" and ready else None


@pytest.fixture
def c(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster; the test's policies are deleted after it."""
    try:
        yield cluster
    finally:
        cluster.delete_policies()


def test_default_deny_blocks_and_deleting_it_restores_access(c: Cluster) -> None:
    assert c.reach("client", "server")
    c.policy("deny-all", {"podSelector": {}})
    assert not c.reach("client", "server")
    assert not c.reach("peer", "server", ns=c.other_ns)
    # only pods of the policy's namespace are isolated
    assert c.reach("client", "peer")
    c.delete_policies()
    assert c.reach("client", "server")
    assert c.reach("peer", "server", ns=c.other_ns)


def test_allow_role_client_on_8080_lets_exactly_those_through(c: Cluster) -> None:
    c.policy("deny-all", {"podSelector": {}})
    c.policy("allow-clients", {
        "podSelector": {"matchLabels": {"app": "server"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                     "ports": [{"protocol": "TCP", "port": 8080}]}]})
    assert c.reach("client", "server")
    assert not c.reach("other", "server")
    # a podSelector alone means the policy's namespace: not another namespace's clients
    assert not c.reach("peer", "server", ns=c.other_ns)
    # nor another port
    assert not _connects(c, "client", "server", 9000)
    # the other pods stay isolated by deny-all
    assert not c.reach("client", "other")


def test_namespace_selector_with_a_named_port(c: Cluster) -> None:
    c.policy("from-team-b", {
        "podSelector": {"matchLabels": {"app": "server"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}},
                               "podSelector": {"matchLabels": {"role": "client"}}}],
                     "ports": [{"port": "http"}]}]})
    assert c.reach("peer", "server", ns=c.other_ns)
    assert not c.reach("client", "server")


def test_egress_deny_then_allow_to_an_ip_block(c: Cluster) -> None:
    c.policy("no-egress", {"podSelector": {"matchLabels": {"role": "client"}},
                           "policyTypes": ["Egress"]})
    assert not c.reach("client", "server")
    assert c.reach("other", "client")            # ingress to the client is not isolated
    block = {"cidr": c.ips["server"].rsplit(".", 1)[0] + ".0/24",
             "except": [c.ips["other"] + "/32"]}
    c.policy("to-block", {"podSelector": {"matchLabels": {"role": "client"}},
                          "policyTypes": ["Egress"],
                          "egress": [{"to": [{"ipBlock": block}],
                                      "ports": [{"port": 8000, "endPort": 8090}]}]})
    assert c.reach("client", "server")
    assert not c.reach("client", "other")       # excepted
    assert not _connects(c, "client", "server", 9000)   # outside the port range


def test_established_connection_survives_a_new_deny(c: Cluster) -> None:
    env = {"KUBECONFIG": str(c.up.kubeconfig), "HOME": str(c.up.data_dir), "PATH": "/usr/bin"}
    conn = subprocess.Popen([KUBECTL, "exec", "-i", "-n", c.ns, "client", "-c", "httpd", "--",
                             "nc", c.ips["server"], "9000"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        assert _echo(conn, "before") == "before"
        c.policy("deny-all", {"podSelector": {}})
        assert not _connects(c, "client", "server", 9000)      # new connections: dropped
        assert _echo(conn, "after") == "after"                 # the established one: kept
    finally:
        _close(c, conn)


def _close(c: Cluster, conn: subprocess.Popen[bytes]) -> None:
    """End the connection from both sides, so the exec'd `nc` exits with its session (a
    node stopping with an exec session whose client went away does not finish stopping)."""
    assert conn.stdin is not None
    conn.stdin.close()
    c.up.kubectl("exec", "-n", c.ns, "server", "-c", "echo", "--", "killall", "cat",
                 check=False)
    try:
        conn.wait(timeout=20)
    except subprocess.TimeoutExpired:
        conn.kill()
        conn.wait()


def test_a_policy_that_cannot_be_applied_gets_a_warning_event(c: Cluster) -> None:
    """A write that fails (here: a set of another type already holds the name of the
    policy's target set) is reported on the policy and retried until it succeeds."""
    conflict = c.names.targets(f"{c.ns}/broken")
    subprocess.run(["ipset", "create", conflict, "hash:net"], check=True)
    try:
        c.apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "broken", "namespace": c.ns},
                 "spec": {"podSelector": {}}})
        [event] = wait_for("a Warning event on the policy", lambda: c.up.kubectl_json(
            "get", "events", "-n", c.ns, "--field-selector",
            "involvedObject.name=broken,reason=FailedToApply")["items"], timeout=15)
        assert event["type"] == "Warning"
        assert event["involvedObject"]["kind"] == "NetworkPolicy"
        assert event["source"] == {"component": "network-policy-controller", "host": NODE}
        assert event["message"].startswith(f"cannot apply the policy on node {NODE}: "
                                            "ipset restore:"), event["message"]
    finally:
        subprocess.run(["ipset", "destroy", conflict], check=True)
    chain = c.names.policy_chain("Ingress", f"{c.ns}/broken")
    wait_for("the policy applied on a retry", lambda: chain in chains(), timeout=10)
    assert not c.reach("client", "server")


def _connects(c: Cluster, src: str, dst: str, port: int) -> bool:
    """Whether a TCP connect from `src` to `dst`:`port` succeeds within 2 s (the echo
    server sends back what it gets)."""
    out = c.up.kubectl("exec", "-n", c.ns, src, "-c", "httpd", "--", "sh", "-c",
                       f"echo hello | nc -w 2 {c.ips[dst]} {port}", check=False,
                       timeout=30).stdout
    return "hello" in out


def _echo(conn: subprocess.Popen[bytes], line: str) -> str:
    """Send `line` over the open connection and read the echo (a 20 s guard, not a
    timing assertion)."""
    assert conn.stdin is not None and conn.stdout is not None
    conn.stdin.write(line.encode() + b"\n")
    conn.stdin.flush()
    ready, _, _ = select.select([conn.stdout], [], [], 20)
    return conn.stdout.readline().decode().strip() if ready else ""


def test_jump_is_ahead_of_the_proxys(cluster: Cluster) -> None:
    """In FORWARD, the node's network-policy jump comes before the service proxy's (whose
    chain accepts masqueraded traffic)."""
    forward = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True,
                             text=True).stdout.splitlines()
    ours = [i for i, r in enumerate(forward) if r.endswith(f"-j {cluster.names.forward}")]
    proxy = cluster.names.p.removesuffix("NP") + "-FORWARD"
    theirs = [i for i, r in enumerate(forward) if r.endswith(f"-j {proxy}")]
    assert ours and theirs and ours[0] < theirs[0], forward


def test_disable_network_policy_flag() -> None:
    """k3s's flag name."""
    out = subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "agent", "--help"],
                         capture_output=True, text=True).stdout
    assert "--disable-network-policy" in out
