"""The pod network across hosts (issue 20): a control plane in the root namespace, one
`pyk8s agent --runtime oci` per test "host" (a network namespace, tests/nethosts.py), pods
on each joined by the agents' VXLAN overlay (pyk8s/kubelet/network/overlay.py).

Pod → pod across hosts (ping, TCP) keeps the client pod's IP; a ClusterIP Service whose
only endpoint is on the other host answers from pods and hosts on both; cluster DNS answers
from pods on both; a NodePort on h2's address reaches a pod on h1 only; exec, logs and
port-forward reach a pod on h2 through its kubelet at the node's InternalIP. A third host
joins and is reachable; once its agent stops and its Node is deleted, no route to its pod
CIDR is left on the others; stopped agents leave no device or chain behind."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyk8s.cli.nodeaddons import dns_service_ip
from pyk8s.kubelet.network.overlay import chain_prefix, default_vni, device_name
from pyk8s.kubelet.runtimes.oci import oci_available
from tests.conftest import KUBECTL, ROOT, ServerProcess, needs, needs_root, wait_for
from tests.e2e.test_oci_runtime import apply, http_get, pod
from tests.images import build_busybox_image, write_oci_archive
from tests.nethosts import NetHost, NetHosts

pytestmark = [needs_root, needs(not oci_available(), "the oci runtime is not available")]

IMAGE = "docker.io/library/busybox:local"
PORT = 8080
# An httpd whose /cgi-bin/ip answers the client's address as the server saw it.
WEB = ("mkdir -p /www/cgi-bin && echo hello from $(hostname) > /www/index.html && "
       "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' "
       "> /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && echo web started && "
       f"exec httpd -f -p {PORT} -h /www")


class Agent:
    """`pyk8s agent --runtime oci` in a test host."""

    def __init__(self, host: NetHost, up: ServerProcess, server: str, d: Path, node: str,
                 cidr: str, dns: str) -> None:
        self.host, self.node = host, node
        self.data_dir = d / node
        self.data_dir.mkdir(parents=True)
        self.log_path = d / f"{node}.log"
        self.cmd = [sys.executable, "-m", "pyk8s.cli.main", "agent",
                    "--server", server,
                    "--token-file", str(up.data_dir / "node-token"),
                    "--certificate-authority", str(up.data_dir / "tls" / "ca.crt"),
                    "--data-dir", str(self.data_dir), "--node-name", node,
                    "--runtime", "oci", "--node-ip", host.ip, "--cluster-cidr", cidr,
                    "--cluster-dns", dns, "--container-restart-backoff", "1"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, image_tar: Path | None = None) -> "Agent":
        """Start the agent (first importing `image_tar` into its image store)."""
        if image_tar is not None:
            subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "image", "import",
                            "--data-dir", str(self.data_dir), str(image_tar)], check=True,
                           capture_output=True, cwd=ROOT, timeout=60)
        with open(self.log_path, "ab") as log:
            self.proc = self.host.popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=ROOT)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def killall(self) -> None:
        """Whatever a failed test left of this node (nothing after a clean stop)."""
        self.host.run([sys.executable, "-m", "pyk8s.cli.main", "killall", "--data-dir",
                       str(self.data_dir)], timeout=120, check=False)


class Cluster:
    def __init__(self, d: Path, up_extra: list[str] | None = None,
                 agent_extra: list[str] | None = None) -> None:
        """`up_extra` / `agent_extra`: more flags for `pyk8s up` / each agent."""
        self.d = d
        self.net = NetHosts()
        self.cidr = f"10.{random.randint(100, 250)}.0.0/16"
        services = f"10.{random.randint(1, 90)}.0.0/16"
        self.dns = dns_service_ip(services)
        self.vni = default_vni(self.cidr)
        self.up = ServerProcess(d / "cp", command="up", ready_log="deployment-controller: synced",
                                extra=["--bind", "0.0.0.0", "--advertise-address",
                                       self.net.gateway, "--cluster-cidr", self.cidr,
                                       "--service-cluster-ip-range", services,
                                       *(up_extra or [])])
        self.agent_extra = list(agent_extra or [])
        self.agents: dict[str, Agent] = {}
        self.tag = uuid.uuid4().hex[:4]
        self.image = d / "busybox.tar"

    def start(self) -> None:
        self.up.start(timeout=60)
        write_oci_archive(build_busybox_image(self.d / "layout"), self.image, IMAGE)

    def start_with(self, *hosts: str) -> None:
        """The control plane, then an agent on each of `hosts`, all Ready."""
        self.start()
        for name in hosts:
            self.join(name)
        for a in self.agents.values():
            self.ready(a)

    def join(self, name: str) -> Agent:
        host = self.net.add(name)
        agent = Agent(host, self.up, f"https://{self.net.gateway}:{self.up.port}", self.d,
                      f"mh{self.tag}-{name}", self.cidr, self.dns)
        agent.cmd += self.agent_extra
        self.agents[name] = agent.start(self.image)
        return agent

    def ready(self, agent: Agent) -> None:
        def ready() -> bool:
            if agent.proc is not None and agent.proc.poll() is not None:
                raise AssertionError(f"agent {agent.node} exited: "
                                     f"{agent.log_path.read_text()[-3000:]}")
            r = self.up.kubectl("get", "node", agent.node, "-o", "json", check=False)
            n = json.loads(r.stdout) if r.returncode == 0 else {}
            ann = (n.get("metadata") or {}).get("annotations") or {}
            conds = {c["type"]: c["status"] for c in (n.get("status") or {}).get(
                "conditions") or []}
            return conds.get("Ready") == "True" and \
                ann.get("flannel.alpha.coreos.com/public-ip") == agent.host.ip
        wait_for(f"node {agent.node} Ready with its VTEP", ready, timeout=60)

    def close(self) -> None:
        for a in self.agents.values():
            a.stop()
        for a in self.agents.values():
            a.killall()
        self.up.stop()
        self.net.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("pyk8s-multihost"))
    try:
        c.start_with("h1", "h2")
        yield c
    finally:
        c.close()


def web_pod(c: Cluster, name: str, agent: Agent) -> dict[str, Any]:
    """A busybox httpd pod on `agent`'s node (by nodeName); once Running, its IP."""
    apply(c.up, {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": name, "labels": {"app": name}},
                 "spec": {"nodeName": agent.node, "terminationGracePeriodSeconds": 1,
                          "containers": [{"name": "web", "image": IMAGE,
                                          "imagePullPolicy": "IfNotPresent",
                                          "command": ["sh", "-c", WEB],
                                          "ports": [{"containerPort": PORT}]}]}})
    return wait_for(f"pod {name} running", lambda: (lambda p: p if p.get("status", {}).get(
        "phase") == "Running" and p["status"].get("podIP") else None)(pod(c.up, name)),
        timeout=60)


def exec_in(c: Cluster, name: str, *argv: str, timeout: float = 20) -> str | None:
    r = c.up.kubectl("exec", name, "--", *argv, check=False, timeout=timeout)
    return r.stdout if r.returncode == 0 else None


def http_from_pod(c: Cluster, name: str, ip: str, port: int, path: str = "/") -> str | None:
    """The body `GET path` on ip:port answers, asked from inside pod `name` (nc: the
    static busybox's wget crashes on this host)."""
    out = exec_in(c, name, "sh", "-c", f"printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | "
                  f"nc -w 3 {ip} {port}")
    return _body(out) if out and " 200 " in out.split("\n", 1)[0] else None


def http_from_host(host: NetHost, url: str) -> str | None:
    """The body of `url` fetched from inside the test host."""
    r = host.run([sys.executable, "-c", "import sys, urllib.request; sys.stdout.write("
                  f"urllib.request.urlopen({url!r}, timeout=3).read().decode())"], check=False)
    return r.stdout if r.returncode == 0 else None


def _body(response: str) -> str:
    """The body of an HTTP response; a CGI's REMOTE_ADDR without httpd's IPv6 mapping."""
    body = response.replace("\r\n", "\n").split("\n\n", 1)[-1].strip()
    return body.removeprefix("[::ffff:").removesuffix("]")


def routes(host: NetHost) -> str:
    return host.run(["ip", "-4", "route", "show"]).stdout


def leftovers(host: NetHost, vni: int) -> list[str]:
    """The overlay's device and chains, the pod bridge, in `host`."""
    out = []
    links = host.run(["ip", "-o", "link", "show"]).stdout
    if f" {device_name(vni)}:" in links:
        out.append(device_name(vni))
    if " cni0:" in links:
        out.append("cni0")
    save = host.run(["iptables-save"]).stdout
    out += re.findall(rf"^:({chain_prefix(vni)}-\S+)", save, re.M)
    return out


def test_pods_services_dns_and_kubelets_across_hosts(cluster: Cluster) -> None:
    c = cluster
    a1, a2 = c.agents["h1"], c.agents["h2"]
    p1, p2 = web_pod(c, "web-h1", a1), web_pod(c, "web-h2", a2)
    ip1, ip2 = p1["status"]["podIP"], p2["status"]["podIP"]
    assert p1["status"]["hostIP"] == a1.host.ip and p2["status"]["hostIP"] == a2.host.ip
    # each host routes the other's pod CIDR through the overlay
    dev = device_name(c.vni)
    for here, there in ((a1, a2), (a2, a1)):
        cidr = c.up.kubectl_json("get", "node", there.node)["spec"]["podCIDR"]
        assert re.search(rf"^{re.escape(cidr)} via \S+ dev {re.escape(dev)} onlink",
                         routes(here.host), re.M), routes(here.host)
    # ping and TCP between the pods; the server sees the client pod's own IP
    for src, dst_ip, src_ip in (("web-h2", ip1, ip2), ("web-h1", ip2, ip1)):
        assert exec_in(c, src, "ping", "-c", "1", "-W", "3", dst_ip) is not None
        seen = wait_for(f"{src} → {dst_ip}", lambda: http_from_pod(
            c, src, dst_ip, PORT, "/cgi-bin/ip"))
        assert seen == src_ip
    # a ClusterIP + NodePort Service whose only endpoint is on h1
    apply(c.up, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "only-h1"},
                 "spec": {"type": "NodePort", "selector": {"app": "web-h1"},
                          "ports": [{"port": 80, "targetPort": PORT}]}})
    svc = c.up.kubectl_json("get", "service", "only-h1")
    cluster_ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    for src in ("web-h1", "web-h2"):
        got = wait_for(f"the ClusterIP from {src}", lambda: http_from_pod(
            c, src, cluster_ip, 80), timeout=30)
        assert got == "hello from web-h1"
    # the client pod on h2 keeps its IP through the Service too
    assert http_from_pod(c, "web-h2", cluster_ip, 80, "/cgi-bin/ip") == ip2
    for a in (a1, a2):          # from the hosts themselves (masqueraded into the overlay)
        got = wait_for(f"the ClusterIP from host {a.host.name}", lambda: http_from_host(
            a.host, f"http://{cluster_ip}/"), timeout=30)
        assert got.strip() == "hello from web-h1"
    # cluster DNS from pods on both hosts
    fqdn = "only-h1.default.svc.cluster.local"
    for src in ("web-h1", "web-h2"):
        out = wait_for(f"nslookup from {src}", lambda: exec_in(c, src, "nslookup", fqdn),
                       timeout=30)
        assert cluster_ip in out
    # a NodePort on h2's address (from the root namespace) reaches the pod on h1
    got = wait_for("the NodePort on h2", lambda: _try_get(
        f"http://{a2.host.ip}:{node_port}/"), timeout=30)
    assert got.strip() == "hello from web-h1"
    # exec, logs and port-forward to the pod on h2 (its kubelet at h2's InternalIP)
    assert exec_in(c, "web-h2", "cat", "/etc/hostname").strip() == "web-h2"
    assert "web started" in c.up.kubectl("logs", "web-h2").stdout
    _port_forward(c, "web-h2")


def _try_get(url: str) -> str | None:
    try:
        return http_get(url)
    except OSError:
        return None


def _port_forward(c: Cluster, name: str) -> None:
    proc = subprocess.Popen([KUBECTL, "port-forward", f"pod/{name}", f":{PORT}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, KUBECONFIG=str(c.up.kubeconfig),
                                     HOME=str(c.up.data_dir)))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+) ->", line)
        assert m, line
        got = wait_for("port-forward", lambda: _try_get(f"http://127.0.0.1:{m.group(1)}/"))
        assert got.strip() == f"hello from {name}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_third_host_joins_and_leaves_no_route_behind(cluster: Cluster) -> None:
    """h3 joins; h2's agent is killed meanwhile (its network stays); h3 leaves: h1 drops its
    route at once, h2's restarted agent rebuilds its entries from the Nodes without h3's.
    Then a clean stop (h1) and `pyk8s killall` after a kill (h2) leave nothing."""
    c = cluster
    a1, a2 = c.agents["h1"], c.agents["h2"]
    a3 = c.join("h3")
    c.ready(a3)
    ip3 = web_pod(c, "web-h3", a3)["status"]["podIP"]
    for src in ("web-h1", "web-h2"):
        web_pod(c, src, a1 if src == "web-h1" else a2)
        got = wait_for(f"{src} → web-h3", lambda: http_from_pod(c, src, ip3, PORT),
                       timeout=20)
        assert got == "hello from web-h3"
    cidr3 = c.up.kubectl_json("get", "node", a3.node)["spec"]["podCIDR"]
    a2.kill9()                                      # its device and routes stay
    a3.stop()
    assert leftovers(a3.host, c.vni) == []          # a clean stop removes its network
    c.up.kubectl("delete", "node", a3.node)
    wait_for(f"no route to {cidr3} on h1", lambda: cidr3 not in routes(a1.host), timeout=20)
    assert cidr3 in routes(a2.host)                 # nobody there to remove it
    a2.start()
    wait_for(f"no route to {cidr3} on h2", lambda: cidr3 not in routes(a2.host), timeout=30)
    for a in (a1, a2):
        neigh = a.host.run(["ip", "neigh", "show", "dev", device_name(c.vni)]).stdout
        assert cidr3.split("/")[0] not in neigh
    ip1 = c.up.kubectl_json("get", "pod", "web-h1")["status"]["podIP"]
    got = wait_for("web-h2 (adopted) → web-h1 after the restart",
                   lambda: http_from_pod(c, "web-h2", ip1, PORT, "/cgi-bin/ip"), timeout=30)
    assert got == c.up.kubectl_json("get", "pod", "web-h2")["status"]["podIP"]
    # nothing of the overlay is left by a clean stop, nor by killall after a kill
    a1.stop()
    assert leftovers(a1.host, c.vni) == []
    a2.kill9()
    assert device_name(c.vni) in leftovers(a2.host, c.vni)
    a2.killall()
    assert leftovers(a2.host, c.vni) == []
