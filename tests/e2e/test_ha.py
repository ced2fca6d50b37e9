"""A highly available control plane: three `pyk8s up --disable-agent` servers, each in a test
host of its own (a network namespace, tests/nethosts.py), on a 3-member etcd (listening on
the hosts' bridge), and two hollow agents, each in a test host too, given all three
servers' URLs.

- The servers form one cluster: the second and third join with the first's token and get
  its CA, service-account key and tokens from etcd (bootstrap data); each serves its own
  certificate for its own address, and each is an endpoint of `default/kubernetes`.
- kill -9 of the server holding both leader Leases under a steady write load: the other
  servers' controller manager and scheduler take over, a Deployment scaled 3 → 6 gets 6
  Ready pods, the agents switch servers and stay Ready, the dead server leaves the
  `kubernetes` endpoints, and no acknowledged write is lost.
- kill -9 of the etcd raft leader: the API stays available, writes go on, nothing is lost.
- Both back: everything converges (three endpoints, every write visible on every server).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import urllib3

from pyk8s.cli.main import leader_identity
from tests.conftest import ROOT, needs, needs_root, wait_for
from tests.e2e.test_etcd import _leader
from tests.etcd_cluster import EtcdCluster, etcd_available
from tests.nethosts import NetHost, NetHosts

pytestmark = [needs_root, needs(not etcd_available(), "needs etcd (apt-get install etcd-server)")]

PORT = 6443          # every server has a network namespace, so a port, of its own
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
# Short leader-election timings keep the test quick (bench/failover.py uses the defaults).
LEADER_ELECTION = ["--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline",
                   "3s", "--leader-elect-retry-period", "500ms"]


class API:
    """Requests to one server with the admin token, its certificate verified with the CA."""

    def __init__(self, url: str, ca: Path, token: str) -> None:
        self.url = url
        self.token = token
        self.http = urllib3.PoolManager(ca_certs=str(ca), cert_reqs="CERT_REQUIRED",
                                        retries=False, maxsize=4)

    def req(self, method: str, path: str, body: Any = None, timeout: float = 10.0,
            content_type: str = "application/json") -> tuple[int, Any]:
        r = self.http.request(method, self.url + path, timeout=timeout,
                              body=json.dumps(body) if body is not None else None,
                              headers={"Authorization": f"Bearer {self.token}",
                                       "Content-Type": content_type})
        try:
            return r.status, json.loads(r.data)
        except ValueError:
            return r.status, r.data

    def get(self, path: str) -> Any:
        try:
            status, body = self.req("GET", path)
        except urllib3.exceptions.HTTPError:
            return None
        return body if status == 200 else None


@dataclass
class Server:
    """`pyk8s up --disable-agent --storage etcd` in test host `host`."""
    host: NetHost
    data_dir: Path
    args: list[str]
    proc: "subprocess.Popen[bytes] | None" = None

    @property
    def url(self) -> str:
        return f"https://{self.host.ip}:{PORT}"

    @property
    def identity(self) -> str:
        return leader_identity(self.data_dir)

    def start(self) -> "Server":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "server.log", "ab")
        self.proc = self.host.popen(
            [sys.executable, "-m", "pyk8s.cli.main", "up", "--disable-agent",
             "--data-dir", str(self.data_dir), "--bind", "0.0.0.0", "--port", str(PORT),
             "--advertise-address", self.host.ip, *self.args],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        return self

    def log(self) -> str:
        return (self.data_dir / "server.log").read_text(errors="replace")[-3000:]

    def api(self, ca: Path, token: str) -> API:
        return API(self.url, ca, token)

    def ready(self, ca: Path, token: Path) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        return ca.exists() and token.exists() and \
            self.api(ca, token.read_text().strip()).get("/readyz") is not None

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class Cluster:
    nets: NetHosts
    etcd: EtcdCluster
    servers: list[Server]
    agents: list["subprocess.Popen[bytes]"] = field(default_factory=list)
    agent_logs: list[Path] = field(default_factory=list)

    @property
    def ca(self) -> Path:
        return self.servers[0].data_dir / "tls" / "ca.crt"

    @property
    def token_file(self) -> Path:
        return self.servers[0].data_dir / "token"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def api(self, i: int) -> API:
        return self.servers[i].api(self.ca, self.token)


def start_agent(c: Cluster, host: NetHost, d: Path, name: str) -> None:
    """A hollow agent in test host `host`, given all three servers."""
    d.mkdir(parents=True, exist_ok=True)
    first = c.servers[0].data_dir
    log_path = d / "agent.log"
    log = open(log_path, "ab")
    c.agents.append(host.popen(
        [sys.executable, "-m", "pyk8s.cli.main", "agent",
         "--server", ",".join(s.url for s in c.servers),
         "--token-file", str(first / "node-token"),
         "--certificate-authority", str(first / "tls" / "ca.crt"),
         "--data-dir", str(d), "--node-name", name, "--runtime", "fake",
         "--kubelet-port", "0", "--node-ip", host.ip,
         "--node-lease-renew-interval", "1", "--node-status-update-frequency", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
    log.close()
    c.agent_logs.append(log_path)


def lease_holders(api: API) -> tuple[str, str] | None:
    got = [api.get(f"{LEASES}/{n}") for n in ("kube-controller-manager", "kube-scheduler")]
    if None in got:
        return None
    return tuple(str(g["spec"].get("holderIdentity") or "") for g in got)  # type: ignore


def endpoint_ips(api: API) -> set[str] | None:
    ep = api.get("/api/v1/namespaces/default/endpoints/kubernetes")
    if ep is None:
        return None
    return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}


def node_ready(api: API, name: str) -> bool:
    n = api.get(f"/api/v1/nodes/{name}")
    return n is not None and any(c["type"] == "Ready" and c["status"] == "True"
                                 for c in n.get("status", {}).get("conditions") or [])


def ready_pods(api: API, app: str) -> list[dict[str, Any]]:
    pods = api.get(f"/api/v1/namespaces/default/pods?labelSelector=app%3D{app}")
    return [p for p in (pods or {}).get("items") or []
            if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp") and
            any(c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions") or [])]


class Writer:
    """Creates ConfigMaps in a loop through the given servers (round-robin), recording
    every acknowledged (201) name and the statuses seen."""

    def __init__(self, apis: list[API], namespace: str, prefix: str) -> None:
        self.apis = apis
        self.path = f"/api/v1/namespaces/{namespace}/configmaps"
        self.prefix = prefix
        self.acked: list[str] = []
        self.statuses: dict[Any, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Writer":
        self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            name = f"{self.prefix}-{i}"
            api = self.apis[i % len(self.apis)]
            i += 1
            try:
                status, _ = api.req("POST", self.path, {"metadata": {"name": name},
                                                        "data": {"i": str(i)}}, timeout=15)
            except urllib3.exceptions.HTTPError as e:
                status = type(e).__name__
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 201:
                self.acked.append(name)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def stored_names(api: API, namespace: str) -> set[str]:
    items = api.get(f"/api/v1/namespaces/{namespace}/configmaps")
    assert items is not None
    return {o["metadata"]["name"] for o in items["items"]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    d = tmp_path_factory.mktemp("pyk8s-ha")
    with NetHosts() as nets:
        hosts = [nets.add(f"s{i}") for i in range(1, 4)]
        etcd = EtcdCluster(3, host=nets.gateway).start()
        servers = []
        c = Cluster(nets, etcd, servers)
        try:
            common = ["--storage", "etcd", "--etcd-servers", etcd.endpoints, *LEADER_ELECTION]
            first = Server(hosts[0], d / "s1", common).start()
            servers.append(first)
            wait_for("s1 ready", lambda: first.ready(c.ca, c.token_file), timeout=40)
            wait_for("s1 leading", lambda: lease_holders(c.api(0)) == (first.identity,) * 2,
                     timeout=30)
            # The others join with the token the first one made, at the same time.
            join = [*common, "--token-file", str(first.data_dir / "server-token")]
            servers += [Server(h, d / h.name, join).start() for h in hosts[1:]]
            for s in servers[1:]:
                wait_for(f"{s.host.name} ready", lambda: s.ready(c.ca, c.token_file), timeout=40)
            for i in (1, 2):
                start_agent(c, nets.add(f"a{i}"), d / f"agent{i}", f"ha-agent-{i}")
            for i in (1, 2):
                wait_for(f"agent {i} Ready", lambda: node_ready(c.api(1), f"ha-agent-{i}"),
                         timeout=40)
            yield c
        finally:
            for a in c.agents:
                if a.poll() is None:
                    a.send_signal(signal.SIGTERM)
            for a in c.agents:
                try:
                    a.wait(15)
                except subprocess.TimeoutExpired:
                    a.kill()
                    a.wait()
            for s in servers:
                s.stop()
            etcd.stop()


def test_servers_share_one_cluster(cluster: Cluster) -> None:
    c = cluster
    shared = ["tls/ca.crt", "tls/ca.key", "tls/sa.key", "token", "node-token", "server-token"]
    first = {p: (c.servers[0].data_dir / p).read_bytes() for p in shared}
    for s in c.servers[1:]:
        assert {p: (s.data_dir / p).read_bytes() for p in shared} == first
        # Its own serving certificate, for its own address (verified by API's pool).
        assert (s.data_dir / "tls" / "server.crt").read_bytes() != \
            (c.servers[0].data_dir / "tls" / "server.crt").read_bytes()
    for i in range(3):
        assert c.api(i).get("/version") is not None
    # A service-account token issued by one server is accepted by the others.
    status, tok = c.api(1).req("POST", "/api/v1/namespaces/default/serviceaccounts/default/"
                                       "token", {"spec": {"expirationSeconds": 600}})
    assert status == 201, tok
    sa = API(c.servers[2].url, c.ca, tok["status"]["token"])
    assert sa.req("GET", "/apis/authentication.k8s.io/v1")[0] == 200
    assert sa.req("GET", "/api/v1/namespaces/default/pods")[0] == 403   # known, not admin
    # Every live server is an endpoint of the kubernetes Service.
    wait_for("three endpoints", lambda: endpoint_ips(c.api(0)) ==
             {s.host.ip for s in c.servers}, timeout=20)


def test_failover(cluster: Cluster) -> None:
    c = cluster
    s1, s2, s3 = c.servers
    api2, api3 = c.api(1), c.api(2)
    assert lease_holders(api2) == (s1.identity, s1.identity)
    status, _ = api2.req("POST", "/api/v1/namespaces", {"metadata": {"name": "ha-load"}})
    assert status == 201
    status, body = api2.req("POST", "/apis/apps/v1/namespaces/default/deployments", {
        "metadata": {"name": "ha"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "ha"}},
                 "template": {"metadata": {"labels": {"app": "ha"}}, "spec": {
                     "containers": [{"name": "c", "image": "busybox"}]}}}})
    assert status == 201, body
    wait_for("3 pods Ready", lambda: len(ready_pods(api2, "ha")) == 3, timeout=30)

    # -- kill -9 of the leading server under write load --------------------------------------
    writer = Writer([api2, api3], "ha-load", "a").start()
    wait_for("writes", lambda: len(writer.acked) >= 20, timeout=20)
    s1.kill9()
    killed = time.time()
    new = {s2.identity, s3.identity}
    wait_for("new leaders", lambda: set(lease_holders(api2) or ("",)) <= new, timeout=30)
    status, body = api3.req("PATCH", "/apis/apps/v1/namespaces/default/deployments/ha/scale",
                            {"spec": {"replicas": 6}},
                            content_type="application/merge-patch+json")
    assert status == 200, body
    wait_for("6 pods Ready", lambda: len(ready_pods(api2, "ha")) == 6, timeout=40)
    for i, log in enumerate(c.agent_logs, 1):
        assert c.agents[i - 1].poll() is None, log.read_text()[-3000:]
        text = log.read_text()
        assert f"switched from API server {s1.url}" in text, text[-3000:]
        assert "relisting" not in text    # the watches resumed where they were
        assert node_ready(api3, f"ha-agent-{i}")

        def renewed_since_kill(i: int = i) -> bool:
            lease = api3.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/"
                             f"leases/ha-agent-{i}")
            renew = (lease or {}).get("spec", {}).get("renewTime")
            return bool(renew) and datetime.fromisoformat(renew).timestamp() > killed
        wait_for(f"agent {i}'s lease renewed through another server", renewed_since_kill,
                 timeout=10)
    # The dead server's lease expires (15 s): it leaves the kubernetes endpoints.
    wait_for("s1 out of the endpoints", lambda: endpoint_ips(api3) == {s2.host.ip, s3.host.ip},
             timeout=40)
    writer.stop()
    acked = list(writer.acked)
    assert acked and not set(acked) - stored_names(api3, "ha-load"), writer.statuses

    # -- kill -9 of the etcd raft leader: the API stays available ------------------------------
    writer = Writer([api2, api3], "ha-load", "b").start()
    wait_for("writes", lambda: len(writer.acked) >= 10, timeout=20)
    member = _leader(c.etcd.members)
    member.kill()
    before = len(writer.acked)
    wait_for("writes after the etcd member died", lambda: len(writer.acked) >= before + 50,
             timeout=30)
    writer.stop()
    acked += writer.acked
    assert set(writer.statuses) <= {201, 503, 504}, writer.statuses
    assert not set(acked) - stored_names(api2, "ha-load")

    # -- both back: everything converges -------------------------------------------------------
    member.start()
    member.wait_healthy()
    s1.start()      # no token needed on a restart: DATA_DIR/server-token has it
    wait_for("s1 ready again", lambda: s1.ready(c.ca, c.token_file), timeout=40)
    api1 = c.api(0)
    wait_for("three endpoints again", lambda: endpoint_ips(api1) ==
             {s.host.ip for s in c.servers}, timeout=20)
    everything = stored_names(api1, "ha-load")
    assert everything == stored_names(api2, "ha-load") == stored_names(api3, "ha-load")
    assert everything >= set(acked)
    assert len(ready_pods(api1, "ha")) == 6
    for i in (1, 2):
        assert node_ready(api1, f"ha-agent-{i}")
    assert all(m.healthy() for m in c.etcd.members)
