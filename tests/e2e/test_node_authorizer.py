"""The Node authorizer and NodeRestriction end to end: a node's client certificate
(`system:node:n1`, O `system:nodes`, signed by the cluster CA) against a real `pyk8s server`
with the default `--authorization-mode Node,RBAC`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import urllib3

from pyk8s.apiserver.certs import issue_client_certificate
from tests.conftest import Response, ServerProcess

MERGE = "application/merge-patch+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path_factory.mktemp("nodeauthz")).start()
    try:
        yield s
    finally:
        s.stop()


class NodeClient:
    """HTTPS requests with a node's client certificate."""

    def __init__(self, server: ServerProcess, node: str, workdir: Path) -> None:
        tls = server.data_dir / "tls"
        cert, key = issue_client_certificate(tls / "ca.crt", tls / "ca.key",
                                             f"system:node:{node}", ["system:nodes"])
        (workdir / f"{node}.crt").write_bytes(cert)
        (workdir / f"{node}.key").write_bytes(key)
        self.url = server.url
        self.http = urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False,
                                        cert_file=str(workdir / f"{node}.crt"),
                                        key_file=str(workdir / f"{node}.key"))

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> Response:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        return Response(self.http.request(method, self.url + path, body=data, headers=headers,
                                          timeout=30, preload_content=True))


@pytest.fixture(scope="module")
def n1(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> NodeClient:
    for node in ("n1", "n2"):
        assert server.post("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                             "metadata": {"name": node}}).status == 201
    for secret in ("s1", "s2"):
        assert server.post("/api/v1/namespaces/default/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret},
            "stringData": {"k": "v"}}).status == 201
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
           "spec": {"nodeName": "n1",
                    "containers": [{"name": "c", "image": "nginx"}],
                    "volumes": [{"name": "s", "secret": {"secretName": "s1"}}]}}
    assert server.post("/api/v1/namespaces/default/pods", pod).status == 201
    return NodeClient(server, "n1", tmp_path_factory.mktemp("n1-cert"))


def test_node_reads_only_the_secrets_of_its_pods(n1: NodeClient) -> None:
    r = n1.request("GET", "/api/v1/namespaces/default/secrets/s1")
    assert r.status == 200, r
    assert r.json()["metadata"]["name"] == "s1"
    r = n1.request("GET", "/api/v1/namespaces/default/secrets/s2")
    assert r.status == 403, r
    body = r.json()
    assert body["reason"] == "Forbidden"
    assert body["details"] == {"name": "s2", "kind": "secrets"}
    assert body["message"] == (
        'secrets "s2" is forbidden: User "system:node:n1" cannot get resource "secrets" in '
        "API group \"\" in the namespace \"default\": no relationship found between node "
        "'n1' and this object")


def test_node_updates_only_its_own_node(n1: NodeClient) -> None:
    patch = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                        "message": "ok"}]}}
    r = n1.request("PATCH", "/api/v1/nodes/n2/status", patch, MERGE)
    assert r.status == 403, r
    assert r.json()["message"] == \
        'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'
    r = n1.request("PATCH", "/api/v1/nodes/n1/status", patch, MERGE)
    assert r.status == 200, r
    assert r.json()["status"]["conditions"][0]["reason"] == "KubeletReady"


def test_node_lists_only_its_own_pods_and_node(n1: NodeClient) -> None:
    r = n1.request("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1")
    assert r.status == 200, r
    assert [p["metadata"]["name"] for p in r.json()["items"]] == ["web"]
    r = n1.request("GET", "/api/v1/pods")
    assert r.status == 403, r
    assert r.json()["message"].endswith(
        "at the cluster scope: can only list/watch pods with spec.nodeName field selector")
    r = n1.request("GET", "/api/v1/nodes")
    assert r.status == 403, r
    assert r.json()["message"].endswith(
        "node 'n1' cannot read all nodes, only its own Node object")
    assert n1.request("GET", "/api/v1/nodes/n1").status == 200
