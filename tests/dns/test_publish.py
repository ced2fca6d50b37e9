"""The kube-dns Service and the published EndpointSlice (FakeClient), and `pyk8s dns` flags."""
from __future__ import annotations

import argparse
import logging

import pytest

from pyk8s.client.fake import FakeClient
from pyk8s.client.rest import ServerError
from pyk8s.dns.cli import add_dns_parser, dns_options, parse_listen
from pyk8s.dns.publish import (SERVICE_PATH, SLICES_PATH, delete_slice, desired_slice,
                               dns_service, ensure_dns_service, reconcile_slice, slice_name)


async def test_kube_dns_service_is_created_when_absent() -> None:
    client = FakeClient()
    await ensure_dns_service(client, "10.96.0.10", 10053)
    [svc] = client.stored("", "services", "kube-system")
    assert svc["metadata"]["name"] == "kube-dns"
    assert svc["metadata"]["labels"] == {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
    spec = svc["spec"]
    assert spec["clusterIP"] == "10.96.0.10" and spec["internalTrafficPolicy"] == "Local"
    assert "selector" not in spec
    assert [(p["name"], p["port"], p["protocol"], p["targetPort"]) for p in spec["ports"]] == [
        ("dns", 53, "UDP", 10053), ("dns-tcp", 53, "TCP", 10053)]


async def test_existing_kube_dns_service_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeClient()
    client.seed("/api/v1/namespaces/kube-system/services", dns_service("10.43.0.10"))
    with caplog.at_level(logging.WARNING, "pyk8s.dns.publish"):
        svc = await ensure_dns_service(client, "10.96.0.10")
    assert svc["spec"]["clusterIP"] == "10.43.0.10"
    assert [a.verb for a in client.actions] == ["get"]
    assert "10.43.0.10" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "pyk8s.dns.publish"):
        await ensure_dns_service(client, "10.43.0.10")
    assert caplog.text == ""


async def test_slice_is_created_updated_and_deleted() -> None:
    client = FakeClient()
    want = desired_slice("node-1", "10.0.0.5", 53)
    assert want["metadata"]["name"] == "kube-dns-node-1"
    await reconcile_slice(client, want)
    [es] = client.stored("discovery.k8s.io", "endpointslices", "kube-system")
    assert es["metadata"]["labels"] == {"kubernetes.io/service-name": "kube-dns",
                                        "endpointslice.kubernetes.io/managed-by": "pyk8s-dns"}
    assert es["addressType"] == "IPv4"
    assert es["endpoints"] == [{"addresses": ["10.0.0.5"], "nodeName": "node-1", "conditions": {
        "ready": True, "serving": True, "terminating": False}}]
    assert es["ports"] == [{"name": "dns", "protocol": "UDP", "port": 53},
                           {"name": "dns-tcp", "protocol": "TCP", "port": 53}]
    client.clear_actions()
    await reconcile_slice(client, want)  # nothing to do
    assert [a.verb for a in client.actions] == ["get"]
    moved = desired_slice("node-1", "10.0.0.6", 53)
    await reconcile_slice(client, moved)
    [es] = client.stored("discovery.k8s.io", "endpointslices", "kube-system")
    assert es["endpoints"][0]["addresses"] == ["10.0.0.6"]
    v6 = desired_slice("node-1", "fd00::6", 53)  # addressType is immutable: recreated
    await reconcile_slice(client, v6)
    [es] = client.stored("discovery.k8s.io", "endpointslices", "kube-system")
    assert es["addressType"] == "IPv6"
    await delete_slice(client, want["metadata"]["name"])
    await delete_slice(client, want["metadata"]["name"])  # gone already: fine
    assert client.stored("discovery.k8s.io", "endpointslices") == []


async def test_slice_errors_propagate_for_the_retry_loop() -> None:
    client = FakeClient()
    client.fail("get", "endpointslices", ServerError(503, "ServiceUnavailable", "later"))
    with pytest.raises(ServerError):
        await reconcile_slice(client, desired_slice("n", "10.0.0.5", 53))
    assert SERVICE_PATH.endswith("/kube-system/services/kube-dns")
    assert SLICES_PATH == "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices"


def test_slice_name() -> None:
    assert slice_name("Node_1.example") == "kube-dns-node-1.example"
    assert slice_name("").startswith("kube-dns-")


def test_cli_flags() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    add_dns_parser(sub)
    args = p.parse_args(["dns", "--kubeconfig", "k.yaml"])
    o = dns_options(args)
    assert o.listen == [("127.0.0.1", 10053)] and o.cluster_domain == "cluster.local"
    assert o.upstream_resolv_conf == "/etc/resolv.conf" and o.ttl == 5
    assert o.service_ip is None and o.publish_address is None
    args = p.parse_args(["dns", "--kubeconfig", "k.yaml", "--listen", "10.0.0.1:53",
                         "--listen", "[::1]:5353", "--cluster-domain", "corp.local",
                         "--node-name", "n1", "--publish-address", "10.0.0.1",
                         "--service-ip", "10.96.0.10", "--resolv-conf", "/r"])
    o = dns_options(args)
    assert o.listen == [("10.0.0.1", 53), ("::1", 5353)]
    assert (o.cluster_domain, o.node_name, o.publish_address, o.service_ip,
            o.upstream_resolv_conf) == ("corp.local", "n1", "10.0.0.1", "10.96.0.10", "/r")
    assert parse_listen(":53") == ("0.0.0.0", 53)
    for bad in ("nope", "1.2.3.4:x", "1.2.3.4:70000"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_listen(bad)
    with pytest.raises(SystemExit):
        p.parse_args(["dns"])  # --kubeconfig is required
