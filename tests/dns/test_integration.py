"""`run_dns` against a real `pyk8s server` process: Services and EndpointSlices created through
the API become names, a deleted Service is NXDOMAIN, and the server publishes the kube-dns
Service and its EndpointSlice (deleted when it stops)."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pytest
from dnslib import RCODE, DNSRecord

from pyk8s.client.rest import NotFound, RESTClient
from pyk8s.dns.component import DNSOptions, run_dns
from pyk8s.dns.server import bind_pair
from tests.conftest import ROOT, ServerProcess, wait_for
from tests.dns.dnsclient import query, rdatas

T = TypeVar("T")
SVC = "/api/v1/namespaces/default/services"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
KS_SLICES = "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices"


async def eventually(what: str, fn: Callable[[], Awaitable[T | None]],
                     timeout: float = 15.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        v = await fn()
        if v:
            return v
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def free_dns_port() -> int:
    udp, tcp = bind_pair("127.0.0.1", 0)
    port = int(udp.getsockname()[1])
    udp.close()
    tcp.close()
    return port


def service(name: str, cluster_ip: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"clusterIP": cluster_ip, "ports": ports}}


async def test_names_follow_the_api(server: ServerProcess, tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# no upstreams\n")
    port = free_dns_port()
    opts = DNSOptions(listen=[("127.0.0.1", port)], upstream_resolv_conf=str(resolv),
                      node_name="node-a", publish_address="127.0.0.1",
                      service_ip="10.96.0.10")
    client = RESTClient.from_kubeconfig(server.kubeconfig, user_agent="pyk8s-dns-test")
    api = RESTClient.from_kubeconfig(server.kubeconfig)
    stop = asyncio.Event()
    task = asyncio.create_task(run_dns(client, stop, opts))
    try:
        await api.create(SVC, service("web", "10.96.100.1",
                                      [{"name": "http", "port": 80, "protocol": "TCP"}]))
        await api.create(SVC, service("db", "None", [{"name": "pg", "port": 5432}]))
        await api.create(SLICES, {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "db-abc", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.5"], "hostname": "db-0",
                           "conditions": {"ready": True}},
                          {"addresses": ["10.244.0.6"], "conditions": {"ready": False}}],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]})

        async def web() -> list[str]:
            return rdatas(await query(port, "web.default.svc.cluster.local"))

        assert await eventually("web's A record", web) == ["10.96.100.1"]

        async def db() -> list[str]:
            return rdatas(await query(port, "db.default.svc.cluster.local", tcp=True))

        assert await eventually("db's endpoints", db) == ["10.244.0.5"]
        r = await query(port, "db-0.db.default.svc.cluster.local")
        assert rdatas(r) == ["10.244.0.5"]
        r = await query(port, "_pg._tcp.db.default.svc.cluster.local", "SRV")
        assert rdatas(r) == ["0 100 5432 db-0.db.default.svc.cluster.local."]
        r = await query(port, "1.100.96.10.in-addr.arpa", "PTR")
        assert rdatas(r) == ["web.default.svc.cluster.local."]
        r = await query(port, "example.com")  # no upstreams: SERVFAIL
        assert r.header.rcode == RCODE.SERVFAIL

        # the kube-dns Service, and this server's EndpointSlice
        async def kube_dns() -> list[str]:
            return rdatas(await query(port, "kube-dns.kube-system.svc.cluster.local"))

        assert await eventually("kube-dns's A record", kube_dns) == ["10.96.0.10"]
        svc = await api.get("/api/v1/namespaces/kube-system/services/kube-dns")
        assert svc["metadata"]["labels"]["k8s-app"] == "kube-dns"
        assert svc["spec"]["internalTrafficPolicy"] == "Local"

        async def published() -> dict[str, Any] | None:
            try:
                return await api.get(f"{KS_SLICES}/kube-dns-node-a")
            except NotFound:
                return None

        es = await eventually("the published EndpointSlice", published)
        assert es["metadata"]["labels"] == {
            "kubernetes.io/service-name": "kube-dns",
            "endpointslice.kubernetes.io/managed-by": "pyk8s-dns"}
        assert es["endpoints"][0]["addresses"] == ["127.0.0.1"]
        assert es["endpoints"][0]["nodeName"] == "node-a"
        assert {(p["name"], p["protocol"], p["port"]) for p in es["ports"]} == {
            ("dns", "UDP", port), ("dns-tcp", "TCP", port)}

        # someone deletes it: it comes back
        await api.delete(f"{KS_SLICES}/kube-dns-node-a")
        await eventually("the EndpointSlice back", published)

        # a deleted Service is NXDOMAIN
        await api.delete(f"{SVC}/web")

        async def gone() -> bool:
            r = await query(port, "web.default.svc.cluster.local")
            return bool(r.header.rcode == RCODE.NXDOMAIN)

        await eventually("web to be NXDOMAIN", gone)
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 15)
        finally:
            await client.close()
    try:
        with pytest.raises(NotFound):
            await api.get(f"{KS_SLICES}/kube-dns-node-a")
        await api.get("/api/v1/namespaces/kube-system/services/kube-dns")  # the Service stays
    finally:
        await api.close()


def test_dns_command_runs_and_stops_on_sigterm(server: ServerProcess, tmp_path: Path) -> None:
    """`pyk8s dns` as its own process, on uvloop (the parser and runner cli.py gives
    main.py)."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("")
    port = free_dns_port()
    r = server.post("/api/v1/namespaces/default/services",
                    service("proc-web", "10.96.100.2", [{"name": "http", "port": 80}]))
    assert r.status == 201, r
    code = ("import argparse, sys, uvloop\n"
            "from pyk8s.dns.cli import add_dns_parser, run_dns_command\n"
            "uvloop.install()  # as pyk8s.cli.main does\n"
            "p = argparse.ArgumentParser(); add_dns_parser(p.add_subparsers())\n"
            "sys.exit(run_dns_command(p.parse_args(sys.argv[1:])))\n")
    log = open(tmp_path / "dns.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "dns", "--kubeconfig", str(server.kubeconfig),
         "--listen", f"127.0.0.1:{port}", "--resolv-conf", str(resolv),
         "--node-name", "proc-node", "--publish-address", "127.0.0.2"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    slice_path = f"{KS_SLICES}/kube-dns-proc-node"
    try:
        wait_for("the published slice", lambda: server.get(slice_path).status == 200)

        def answer() -> list[str]:
            q = DNSRecord.question("proc-web.default.svc.cluster.local")
            try:
                return rdatas(DNSRecord.parse(q.send("127.0.0.1", port, timeout=1.0)))
            except OSError:
                return []

        assert wait_for("proc-web's A record", answer) == ["10.96.100.2"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, (tmp_path / "dns.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert server.get(slice_path).status == 404
