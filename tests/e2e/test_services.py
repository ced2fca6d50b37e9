"""Services on real containers (issue 8's acceptance): `pyk8s up` with the oci runtime, its
kube-proxy in iptables mode and its cluster DNS; busybox pods pulled from the local
registry. Traffic goes only to loopback, to pods on the test's own bridge, and to cluster
IPs once the proxy's rules for them are in place (so they are DNATed to those pods)."""
from __future__ import annotations

import ipaddress
import json
import subprocess
from typing import Any, Iterator

import pytest

from pyk8s.proxy.component import default_chain_prefix
from tests.conftest import ServerProcess, needs_root, wait_for
from tests.e2e.test_oci_runtime import _node_state, http_get, oci_up
from tests.registry import registry  # noqa: F401  (the session's local registry)

pytestmark = needs_root

NODE = "svc-1"


# The test image's busybox is Debian's static glibc build: its `wget` segfaults inside a
# container once it resolves a name (nc, ping and nslookup resolve fine), so the client
# speaks HTTP/1.0 through `nc`.
FETCH = ('fetch() {{ printf "GET /name HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n" '
         '| nc -w 3 {host} {port} | tail -n 1; echo; }}; ')


def fetch_loop(host: str, n: int, port: int = 80) -> str:
    """A shell loop that fetches http://host:port/name `n` times."""
    return FETCH.format(host=host, port=port) + f"for i in $(seq 1 {n}); do fetch; done"


class Cluster:
    def __init__(self, up: ServerProcess, image: str, prefix: str, gateway: str) -> None:
        self.up, self.image, self.prefix, self.gateway = up, image, prefix, gateway

    def apply(self, obj: dict[str, Any]) -> None:
        self.up.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def get(self, *what: str) -> Any:
        return self.up.kubectl_json("get", *what, "-o", "json")

    def exec(self, pod: str, *cmd: str, check: bool = True) -> str:
        return self.up.kubectl("exec", pod, "--", *cmd, check=check, timeout=60).stdout

    def nat_rules(self) -> str:
        return subprocess.run(["iptables-save", "-t", "nat"], capture_output=True,
                              text=True).stdout

    def wait_rule(self, what: str, needle: str) -> None:
        """The proxy's nat rules mention `needle` (before any traffic to a cluster IP)."""
        wait_for(what, lambda: any(needle in line for line in self.nat_rules().splitlines()
                                   if line.startswith(f"-A {self.prefix}-")), timeout=30)


@pytest.fixture(scope="module")
def cluster(registry: Any, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
            ) -> Iterator[Cluster]:
    d = tmp_path_factory.mktemp("pyk8s-svc")
    up, bridge = oci_up(d, registry, NODE)
    prefix = default_chain_prefix(bridge)
    try:
        up.start(timeout=40)
        wait_for("node Ready", lambda: " Ready " in up.kubectl(
            "get", "nodes", NODE, "--no-headers", check=False).stdout, timeout=30)
        pod_cidr = wait_for("the node's pod CIDR", lambda: up.kubectl_json(
            "get", "node", NODE, "-o", "json")["spec"].get("podCIDR"), timeout=30)
        gateway = str(ipaddress.ip_network(pod_cidr).network_address + 1)
        c = Cluster(up, registry.image("busybox"), prefix, gateway)
        _backends(c)
        yield c
    finally:
        up.stop()
    left = _node_state(d / "agent", bridge, stopped=True, node=NODE)
    assert not left, left


def _backends(c: Cluster) -> None:
    """3 httpd pods answering /name with their pod name, ready while /var/www/ready
    exists; the `web` Service in front of them; a busybox client pod."""
    c.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                      "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                          "terminationGracePeriodSeconds": 1,
                          "containers": [{
                              "name": "httpd", "image": c.image,
                              "command": ["sh", "-c", "hostname > /var/www/name; "
                                          "touch /var/www/ready; "
                                          "exec httpd -f -p 8080 -h /var/www"],
                              "ports": [{"containerPort": 8080, "name": "http"}],
                              "readinessProbe": {"httpGet": {"path": "/ready",
                                                             "port": 8080},
                                                 "periodSeconds": 1,
                                                 "failureThreshold": 1}}]}}}})
    c.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
             "spec": {"selector": {"app": "web"},
                      "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    c.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
             "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                 "name": "c", "image": c.image, "command": ["sleep", "3600"]}]}})
    wait_for("3 ready backends", lambda: c.get("deployment", "web").get("status", {})
             .get("readyReplicas") == 3, timeout=90)
    wait_for("client running", lambda: c.get("pod", "client")["status"].get("phase")
             == "Running", timeout=60)


def _web_ip(c: Cluster) -> str:
    ip = c.get("service", "web")["spec"]["clusterIP"]
    c.wait_rule("the web service's rules", f"-d {ip}/32")
    return str(ip)


def _backend_pods(c: Cluster) -> dict[str, str]:
    return {p["metadata"]["name"]: p["status"]["podIP"]
            for p in c.get("pods", "-l", "app=web")["items"]}


def _ready_endpoints(c: Cluster, service: str) -> set[str]:
    slices = c.get("endpointslices", "-l", f"kubernetes.io/service-name={service}")["items"]
    return {e["addresses"][0] for s in slices for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready") is not False}


def test_client_pod_reaches_every_backend_by_service_name(cluster: Cluster) -> None:
    c = cluster
    _web_ip(c)
    wait_for("3 ready endpoints", lambda: len(_ready_endpoints(c, "web")) == 3, timeout=30)
    out = c.exec("client", "sh", "-c", fetch_loop("web", 40))
    names = {line.strip() for line in out.splitlines() if line.strip()}
    assert names == set(_backend_pods(c)), out


def test_node_port_answers_on_the_node(cluster: Cluster) -> None:
    c = cluster
    c.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-np"},
             "spec": {"type": "NodePort", "selector": {"app": "web"},
                      "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    svc = c.get("service", "web-np")
    node_port = svc["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    c.wait_rule("the node port's rule", f"--dport {node_port}")
    pods = set(_backend_pods(c))
    seen = {http_get(f"http://127.0.0.1:{node_port}/name").strip() for _ in range(30)}
    assert seen and seen <= pods and len(seen) > 1, seen
    # And on the node's address on the pod bridge (a local address: addrtype LOCAL).
    assert http_get(f"http://{c.gateway}:{node_port}/name").strip() in pods
    c.up.kubectl("delete", "service", "web-np")


def test_unready_endpoint_stops_getting_traffic(cluster: Cluster) -> None:
    c = cluster
    ip = _web_ip(c)
    pods = _backend_pods(c)
    victim = sorted(pods)[0]
    c.exec(victim, "rm", "/var/www/ready")
    try:
        wait_for("the endpoint not ready", lambda: pods[victim] not in
                 _ready_endpoints(c, "web"), timeout=30)
        wait_for("the proxy dropped it", lambda: f"{pods[victim]}:8080" not in
                 c.nat_rules(), timeout=30)
        seen = [http_get(f"http://{ip}/name").strip() for _ in range(30)]
        assert victim not in seen and set(seen) <= set(pods), seen
        out = c.exec("client", "sh", "-c", fetch_loop("web", 20))
        assert victim not in out
    finally:
        c.exec(victim, "touch", "/var/www/ready")
    wait_for("ready again", lambda: pods[victim] in _ready_endpoints(c, "web"), timeout=30)


def test_nslookup_srv_headless_and_external_name(cluster: Cluster) -> None:
    c = cluster
    ip = _web_ip(c)
    dns_ip = c.get("service", "kube-dns", "-n", "kube-system")["spec"]["clusterIP"]
    c.wait_rule("the DNS service's rules", f"-d {dns_ip}/32")
    resolv = c.exec("client", "cat", "/etc/resolv.conf")
    assert f"nameserver {dns_ip}" in resolv
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv
    out = wait_for("nslookup answers", lambda: (lambda o: ip in o and o)(
        c.exec("client", "nslookup", "web.default.svc.cluster.local", check=False)),
        timeout=30)
    assert "web.default.svc.cluster.local" in out
    srv = c.exec("client", "nslookup", "-type=srv", "_http._tcp.web.default.svc.cluster.local")
    assert "web.default.svc.cluster.local" in srv and " 80 " in f" {srv} ".replace("\t", " ")
    c.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-headless"},
             "spec": {"clusterIP": "None", "selector": {"app": "web"},
                      "ports": [{"name": "http", "port": 8080}]}})
    pod_ips = set(_backend_pods(c).values())
    out = wait_for("the headless service's pod IPs", lambda: (
        lambda o: all(p in o for p in pod_ips) and o)(
        c.exec("client", "nslookup", "web-headless.default.svc.cluster.local", check=False)),
        timeout=30)
    assert ip not in out
    c.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
             "spec": {"type": "ExternalName",
                      "externalName": "web.default.svc.cluster.local"}})
    out = wait_for("the ExternalName's CNAME", lambda: (
        lambda o: "canonical name = web.default.svc.cluster.local" in o and o)(
        c.exec("client", "nslookup", "ext.default.svc.cluster.local", check=False)),
        timeout=30)
    assert ip in out
    missing = c.exec("client", "nslookup", "nothing.default.svc.cluster.local", check=False)
    assert "NXDOMAIN" in missing or "can't find" in missing
