"""Kubelet TLS bootstrapping against a real `pyk8s up --disable-agent` and a real `pyk8s
agent --runtime process --token-file DIR/node-token`: the agent ends with a
`system:node:<name>` client certificate in its data dir (a CSR approved and issued, seen
with `kubectl get csr`), its serving certificate is issued by the cluster CA, the API
server reaches it with its kubelet client certificate (logs, exec), the kubelet API
authenticates and authorizes every request (401 / 403 with upstream's text), a restart
reuses the certificate, and with a short signing duration both certificates rotate."""
from __future__ import annotations

import base64
import json
import signal
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import urllib3
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ROOT, ServerProcess, wait_for
from tests.e2e.test_agent import AgentProcess

NODE = "tls-node"


def _node_ready(up: ServerProcess, node: str) -> bool:
    return " Ready " in up.kubectl("get", "nodes", node, "--no-headers", check=False).stdout


def _start(up: ServerProcess, d: Path, node: str, *extra: str) -> AgentProcess:
    agent = AgentProcess(up, d, "--node-name", node, "--runtime", "process",
                         "--kubelet-port", "0", *extra).start()

    def ready() -> bool:
        assert agent.proc is not None and agent.proc.poll() is None, agent.log()
        return _node_ready(up, node)
    wait_for(f"node {node} Ready", ready, timeout=40)
    return agent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[ServerProcess, AgentProcess]]:
    d = tmp_path_factory.mktemp("pyk8s-kubelet-tls")
    up = ServerProcess(d, command="up", ready_log="deployment-controller: synced").start(
        timeout=40)
    agent = None
    try:
        agent = _start(up, d, NODE)
        yield up, agent
    finally:
        if agent is not None:
            agent.stop()
        up.stop()


def _subject(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    return ([str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)],
            [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)])


def _issued_by_cluster_ca(up: ServerProcess, cert: x509.Certificate) -> bool:
    ca = x509.load_pem_x509_certificate((up.data_dir / "tls" / "ca.crt").read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:
        return False


def _csrs(up: ServerProcess) -> list[dict[str, Any]]:
    return list(up.kubectl_json("get", "csr")["items"])


def _conditions(csr: dict[str, Any]) -> set[str]:
    return {c["type"] for c in (csr.get("status") or {}).get("conditions") or []}


def _kubelet_port(up: ServerProcess, node: str) -> int:
    n = up.kubectl_json("get", "node", node)
    return int(n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"])


def _serving_cert(port: int) -> x509.Certificate:
    return x509.load_pem_x509_certificate(
        ssl.get_server_certificate(("127.0.0.1", port)).encode())


def _kubelet_get(port: int, path: str, *, token: str | None = None,
                 cert: Path | None = None, key: Path | None = None) -> urllib3.BaseHTTPResponse:
    kw: dict[str, Any] = {"cert_reqs": "CERT_NONE", "retries": False}
    if cert is not None:
        kw.update(cert_file=str(cert), key_file=str(key or cert))
    http = urllib3.PoolManager(**kw)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.request("GET", f"https://127.0.0.1:{port}{path}", headers=headers, timeout=10)


def _pod(name: str, node: str, script: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                                "containers": [{"name": "main", "image": "busybox",
                                                "command": ["sh", "-c", script]}]}})


def _running(up: ServerProcess, name: str) -> None:
    wait_for(f"pod {name} Running", lambda: up.kubectl_json("get", "pod", name)
             .get("status", {}).get("phase") == "Running", timeout=30)


def test_bootstrap_gives_the_node_its_certificate(
        cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, agent = cluster
    data = agent.log_path.parent / "agent"
    pem, kubeconfig = data / "pki" / "kubelet-client-current.pem", data / "kubelet.kubeconfig"
    for f in (pem, kubeconfig):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    assert _subject(cert) == ([f"system:node:{NODE}"], ["system:nodes"])
    assert _issued_by_cluster_ca(up, cert)
    assert b"PRIVATE KEY" in pem.read_bytes()                # key and certificate, one file
    cfg = yaml.safe_load(kubeconfig.read_text())
    assert cfg["users"][0]["user"] == {"client-certificate": str(pem), "client-key": str(pem)}
    assert cfg["clusters"][0]["cluster"]["server"] == up.url
    # The CSR: named after its key, asked by the bootstrap identity, approved and issued.
    [csr] = [c for c in _csrs(up)
             if c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"]
    assert csr["metadata"]["name"].startswith("node-csr-")
    assert csr["spec"]["username"] == "system:bootstrap:pyk8s"
    assert csr["spec"]["usages"] == ["digital signature", "client auth"]
    assert "expirationSeconds" not in csr["spec"]
    assert _conditions(csr) == {"Approved"} and csr["status"]["certificate"]
    req = x509.load_pem_x509_csr(base64.b64decode(csr["spec"]["request"]))
    assert isinstance(req.public_key(), ec.EllipticCurvePublicKey)
    assert req.public_key().curve.name == "secp256r1"
    table = up.kubectl("get", "csr", csr["metadata"]["name"]).stdout
    assert "system:bootstrap:pyk8s" in table and "Approved,Issued" in table
    # The node token is a bootstrap identity now: CSRs only.
    node_token = (up.data_dir / "node-token").read_text().strip()
    assert up.get("/api/v1/nodes", token=node_token).status == 403


def test_the_nodes_own_credentials_reach_only_its_pods_objects(
        cluster: tuple[ServerProcess, AgentProcess]) -> None:
    """The Node authorizer with the certificate the agent bootstrapped: a Secret mounted by
    a pod on the node is readable, one no pod of it uses is not, and another node's status
    is not the node's to patch."""
    up, agent = cluster
    kubeconfig = agent.log_path.parent / "agent" / "kubelet.kubeconfig"

    def as_node(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/usr/bin/kubectl", "--kubeconfig", str(kubeconfig), *args],
                              capture_output=True, text=True, timeout=60)
    assert as_node("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout == \
        f"system:node:{NODE}"
    up.kubectl("create", "secret", "generic", "mounted", "--from-literal=k=v")
    up.kubectl("create", "secret", "generic", "unrelated", "--from-literal=k=v")
    pod = json.loads(_pod("with-secret", NODE, "sleep 3600"))
    pod["spec"]["volumes"] = [{"name": "s", "secret": {"secretName": "mounted"}}]
    up.kubectl("create", "-f", "-", input=json.dumps(pod))
    wait_for("the node reads the mounted secret",
             lambda: as_node("get", "secret", "mounted").returncode == 0, timeout=20)
    p = as_node("get", "secret", "unrelated")
    assert p.returncode != 0
    assert (f'secrets "unrelated" is forbidden: User "system:node:{NODE}" cannot get resource '
            f'"secrets" in API group "" in the namespace "default": no relationship found '
            f"between node '{NODE}' and this object") in p.stderr
    up.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "someone-else"}}))
    patch = json.dumps({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    p = as_node("patch", "node", "someone-else", "--subresource=status", "--type=merge",
                "-p", patch)
    assert p.returncode != 0 and "forbidden" in p.stderr
    p = as_node("label", "node", NODE, "node-restriction.kubernetes.io/x=y")
    assert p.returncode != 0 and "forbidden" in p.stderr
    up.kubectl("delete", "pod", "with-secret", "--wait=false")
    up.kubectl("delete", "node", "someone-else")


def test_serving_certificate_is_issued_by_the_cluster_ca(
        cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, _ = cluster
    port = _kubelet_port(up, NODE)
    cert = wait_for("the issued serving certificate", lambda: (
        c if _issued_by_cluster_ca(up, c := _serving_cert(port)) else None), timeout=20)
    assert _subject(cert) == ([f"system:node:{NODE}"], ["system:nodes"])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [NODE]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    serving = [c for c in _csrs(up) if c["spec"]["signerName"] == "kubernetes.io/kubelet-serving"]
    assert [c["spec"]["username"] for c in serving] == [f"system:node:{NODE}"]
    assert serving[0]["spec"]["usages"] == ["digital signature", "server auth"]
    assert _conditions(serving[0]) == {"Approved"}


def test_logs_and_exec_through_the_kubelet(cluster: tuple[ServerProcess, AgentProcess]
                                           ) -> None:
    up, _ = cluster
    up.kubectl("apply", "-f", "-", input=_pod("hello", NODE, "echo hello-tls; sleep 3600"))
    _running(up, "hello")
    wait_for("logs", lambda: "hello-tls" in up.kubectl("logs", "hello", check=False).stdout,
             timeout=20)
    assert up.kubectl("exec", "hello", "--", "echo", "exec-ok").stdout == "exec-ok\n"
    # nodes/proxy (the API server's client certificate, stats subresource).
    summary = json.loads(up.kubectl("get", "--raw",
                                    f"/api/v1/nodes/{NODE}/proxy/stats/summary").stdout)
    assert summary["node"]["nodeName"] == NODE


def test_kubelet_api_authenticates_and_authorizes(
        cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, agent = cluster
    port = _kubelet_port(up, NODE)
    tls = up.data_dir / "tls"
    # Nobody: 401.
    r = _kubelet_get(port, "/pods")
    assert (r.status, r.data) == (401, b"Unauthorized")
    # A token the API server does not know: 401.
    assert _kubelet_get(port, "/pods", token="nope").status == 401
    # The API server's kubelet client certificate (O system:masters): allowed.
    r = _kubelet_get(port, "/pods", cert=tls / "kubelet-client.crt",
                     key=tls / "kubelet-client.key")
    assert r.status == 200 and json.loads(r.data)["kind"] == "PodList"
    # The admin token (TokenReview, then SubjectAccessReview): allowed.
    r = _kubelet_get(port, "/stats/summary", token=up.token)
    assert r.status == 200, r.data
    # A service account with no rights on nodes: 403 with upstream's text.
    sa_token = up.kubectl("create", "token", "default").stdout.strip()
    r = _kubelet_get(port, "/stats/summary", token=sa_token)
    assert (r.status, r.data.decode()) == (403, (
        "Forbidden (user=system:serviceaccount:default:default, verb=get, resource=nodes, "
        "subresource(s)=[stats])\n"))
    r = _kubelet_get(port, "/pods", token=sa_token)
    assert r.status == 403 and b"subresource(s)=[proxy]" in r.data
    # The node's own certificate: its kubelet API is not the node's to call (no
    # nodes/proxy in system:node).
    pem = agent.log_path.parent / "agent" / "pki" / "kubelet-client-current.pem"
    r = _kubelet_get(port, "/pods", cert=pem)
    assert r.status == 403 and f"user=system:node:{NODE}, verb=get".encode() in r.data
    # Granted nodes/proxy by RBAC, the service account gets in (after the 30 s cache of
    # its denial: another subresource is asked afresh).
    up.kubectl("create", "clusterrole", "node-metrics", "--verb=get",
               "--resource=nodes/metrics")
    up.kubectl("create", "clusterrolebinding", "sa-node-metrics", "--clusterrole=node-metrics",
               "--serviceaccount=default:default")
    wait_for("metrics allowed", lambda: _kubelet_get(
        port, "/metrics/resource", token=sa_token).status == 200, timeout=20)


def test_restart_reuses_the_certificate(cluster: tuple[ServerProcess, AgentProcess]) -> None:
    up, agent = cluster
    pem = agent.log_path.parent / "agent" / "pki" / "kubelet-client-current.pem"
    before, csrs = pem.read_bytes(), len(_csrs(up))
    log = agent.log_path.read_text()
    listening, bootstraps = (log.count("kubelet server listening"),
                             log.count("requesting a client certificate (bootstrap)"))
    assert bootstraps == 1
    agent.stop()
    agent.start()
    wait_for("the agent's kubelet server again", lambda: agent.log_path.read_text().count(
        "kubelet server listening") > listening, timeout=30)
    time.sleep(1.0)
    assert agent.log_path.read_text().count("requesting a client certificate") == bootstraps
    assert agent.proc is not None and agent.proc.poll() is None, agent.log()
    wait_for("node Ready", lambda: _node_ready(up, NODE), timeout=30)
    assert pem.read_bytes() == before
    assert len(_csrs(up)) == csrs                             # no new CSR
    up.kubectl("apply", "-f", "-", input=_pod("after", NODE, "sleep 3600"))
    _running(up, "after")
    assert up.kubectl("exec", "after", "--", "echo", "again").stdout == "again\n"


def test_a_self_signed_kubelet_is_refused_clearly(tmp_path: Path) -> None:
    """An agent serving its self-signed certificate (as before serving CSRs): the API
    server says the x509 verification against the kubelet CA failed."""
    up = ServerProcess(tmp_path, command="up", ready_log="deployment-controller: synced"
                       ).start(timeout=40)
    agent = None
    try:
        agent = _start(up, tmp_path, "self-signed", "--rotate-server-certificates=false")
        up.kubectl("apply", "-f", "-", input=_pod("p", "self-signed", "echo x; sleep 3600"))
        _running(up, "p")
        p = up.kubectl("logs", "p", check=False)
        assert p.returncode != 0
        assert "tls: failed to verify certificate: x509:" in p.stderr, p.stderr
        assert "--kubelet-certificate-authority" in p.stderr, p.stderr
        assert not [c for c in _csrs(up) if c["spec"]["signerName"] ==
                    "kubernetes.io/kubelet-serving"]
    finally:
        if agent is not None:
            agent.stop()
        up.stop()


def test_certificates_rotate(tmp_path: Path) -> None:
    """With 20 s certificates (--cluster-signing-duration), both the client and the
    serving certificate are renewed 14–18 s into their life: the client one by a CSR the
    node itself makes (approved as selfnodeclient), and the node keeps working."""
    up = ServerProcess(tmp_path, command="up", ready_log="deployment-controller: synced",
                       extra=["--cluster-signing-duration", "20s"]).start(timeout=40)
    agent = None
    node = "rotating"
    try:
        agent = _start(up, tmp_path, node)
        pem = tmp_path / "agent" / "pki" / "kubelet-client-current.pem"
        first = x509.load_pem_x509_certificate(pem.read_bytes())
        port = _kubelet_port(up, node)
        serving = wait_for("issued serving certificate", lambda: (
            c if _issued_by_cluster_ca(up, c := _serving_cert(port)) else None), timeout=20)
        up.kubectl("apply", "-f", "-", input=_pod("r", node, "echo rotating; sleep 3600"))
        _running(up, "r")

        def rotated() -> x509.Certificate | None:
            cert = x509.load_pem_x509_certificate(pem.read_bytes())
            return cert if cert.serial_number != first.serial_number else None
        second = wait_for("client certificate rotation", rotated, timeout=40)
        assert _subject(second) == ([f"system:node:{node}"], ["system:nodes"])
        assert second.public_key() != first.public_key()          # a new key
        renewals = [c for c in _csrs(up)
                    if c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
                    and c["spec"]["username"] == f"system:node:{node}"]
        assert renewals and all(_conditions(c) == {"Approved"} for c in renewals)
        assert any("self kubelet client" in c["status"]["conditions"][0]["message"]
                   for c in renewals)
        wait_for("serving certificate rotation", lambda: _serving_cert(port).serial_number
                 != serving.serial_number, timeout=30)
        # Past the first certificates' expiry the node still works with the new ones.
        wait_for("first certificate expired",
                 lambda: time.time() > first.not_valid_after_utc.timestamp() + 1, timeout=30)
        assert agent.proc is not None and agent.proc.poll() is None, agent.log()
        assert up.kubectl("exec", "r", "--", "echo", "still").stdout == "still\n"
        assert "rotating" in up.kubectl("logs", "r").stdout
        lease = up.kubectl_json("get", "lease", "-n", "kube-node-lease", node)
        wait_for("a lease renewal with the new certificate", lambda: up.kubectl_json(
            "get", "lease", "-n", "kube-node-lease", node)["spec"]["renewTime"]
            != lease["spec"]["renewTime"], timeout=30)
        assert _node_ready(up, node)
    finally:
        if agent is not None:
            agent.stop()
        up.stop()


def _agent_cmd(up: ServerProcess, data_dir: Path, node: str, *creds: str) -> list[str]:
    return [sys.executable, "-m", "pyk8s.cli.main", "agent", *creds, "--data-dir",
            str(data_dir), "--node-name", node, "--runtime", "fake", "--kubelet-port", "0",
            "--node-ip", "127.0.0.1"]


def test_manual_approval_and_denial(tmp_path: Path) -> None:
    """Without the csrapproving controller the agents wait for `kubectl certificate
    approve` (one joins with --bootstrap-kubeconfig alone); a denied request ends its
    agent with the reason."""
    up = ServerProcess(tmp_path, command="up", ready_log="deployment-controller: synced",
                       extra=["--controllers", "*,-csrapproving"]).start(timeout=40)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        boot = tmp_path / "bootstrap.kubeconfig"
        cfg = yaml.safe_load(up.kubeconfig.read_text())
        cfg["users"][0]["user"] = {"token": (tmp_path / "node-token").read_text().strip()}
        boot.write_text(yaml.safe_dump(cfg))
        logs = {n: tmp_path / f"{n}.log" for n in ("approved", "denied")}
        cmds = {"approved": _agent_cmd(up, tmp_path / "a1", "approved",
                                       "--bootstrap-kubeconfig", str(boot)),
                "denied": _agent_cmd(up, tmp_path / "a2", "denied", "--server", up.url,
                                     "--token-file", str(tmp_path / "node-token"),
                                     "--certificate-authority",
                                     str(tmp_path / "tls" / "ca.crt"))}
        for n, cmd in cmds.items():
            procs.append(subprocess.Popen(cmd, stdout=open(logs[n], "ab"),
                                          stderr=subprocess.STDOUT, cwd=ROOT))
        csrs = wait_for("two pending CSRs", lambda: (c := [
            x for x in _csrs(up) if x["spec"]["signerName"] ==
            "kubernetes.io/kube-apiserver-client-kubelet"]) and len(c) == 2 and c, timeout=30)
        assert all(not _conditions(c) for c in csrs)
        assert "Pending" in up.kubectl("get", "csr").stdout
        by_node = {}
        for c in csrs:
            req = x509.load_pem_x509_csr(base64.b64decode(c["spec"]["request"]))
            by_node[_subject_csr(req)] = c["metadata"]["name"]
        up.kubectl("certificate", "approve", by_node["system:node:approved"])
        up.kubectl("certificate", "deny", by_node["system:node:denied"])
        wait_for("node approved Ready", lambda: _node_ready(up, "approved"), timeout=30)
        assert (tmp_path / "a1" / "kubelet.kubeconfig").exists()
        denied = procs[1]
        denied.wait(30)
        assert denied.returncode != 0
        text = logs["denied"].read_text()
        assert f"certificate signing request {by_node['system:node:denied']} denied" in text, \
            text[-2000:]
        assert not (tmp_path / "a2" / "kubelet.kubeconfig").exists()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        up.stop()


def _subject_csr(req: x509.CertificateSigningRequest) -> str:
    return str(req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_hollow_nodes_have_their_own_certificates(tmp_path: Path) -> None:
    up = ServerProcess(tmp_path, command="up", ready_log="deployment-controller: synced"
                       ).start(timeout=40)
    agent = None
    try:
        agent = AgentProcess(up, tmp_path, "--node-name", "hollow", "--count", "3",
                             "--runtime", "fake").start()
        names = ["hollow-0", "hollow-1", "hollow-2"]
        wait_for("3 hollow nodes Ready", lambda: all(_node_ready(up, n) for n in names),
                 timeout=40)
        serials = set()
        for n in names:
            pem = tmp_path / "agent" / "nodes" / n / "pki" / "kubelet-client-current.pem"
            cert = x509.load_pem_x509_certificate(pem.read_bytes())
            assert _subject(cert) == ([f"system:node:{n}"], ["system:nodes"])
            serials.add(cert.serial_number)
        assert len(serials) == 3
        csrs = len(_csrs(up))
        assert csrs == 3
        agent.stop()
        agent.start()                        # a restart reuses the three certificates
        time.sleep(3.0)
        assert agent.proc is not None and agent.proc.poll() is None, agent.log()
        wait_for("3 hollow nodes Ready", lambda: all(_node_ready(up, n) for n in names),
                 timeout=40)
        assert len(_csrs(up)) == csrs
    finally:
        if agent is not None:
            agent.stop()
        up.stop()
