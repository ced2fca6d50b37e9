#!/usr/bin/env python3
"""Service proxy benchmark: prints one JSON document.

1. Rule sync (`sync`): `--services` services × `--endpoints` endpoints (default 1,000 × 10,
   the issue's figure) through the iptables proxier (a chain prefix of its own, removed
   afterwards; root): time to render, the first full iptables-restore, a re-sync after one
   endpoint changed (each sync rewrites every chain of ours, as upstream's full syncs do),
   and the rule count; the same service ports through the userspace proxier (listeners
   on cluster IPs inside 127.0.0.0/8). The seeds note iptables' linear rule walk against
   IPVS's hash tables: `per_service_us` is the sync cost per service.
2. Data path (`datapath`, root + runc + CNI + the local registry): `pyk8s up` with the oci
   runtime, one busybox httpd pod and a Service in front of it; `--requests` sequential
   HTTP/1.0 requests (a new TCP connection each) from the node straight to the pod IP,
   through the cluster IP (iptables DNAT), and through a userspace relay (this process,
   a 127/8 cluster IP → the pod), and through the cluster IP with 1,000 other services'
   rules walked first: connections per second and per-request latency p50/p99, and what
   the proxy adds over the direct path.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import ROOT, Cluster, pct, wait  # noqa: E402

sys.path.insert(0, str(ROOT))
from pyk8s.proxy.iptables import IptablesProxier, iptables_available, render  # noqa: E402
from pyk8s.proxy.model import Endpoint, ServicePort  # noqa: E402
from pyk8s.proxy.userspace import UserspaceProxier  # noqa: E402

NODE = "bench-proxy"


def synthetic_ports(services: int, endpoints: int, base: str = "10.96.0.0",
                    ep_base: str = "10.200.0.0") -> list[ServicePort]:
    vip0, ep0 = ipaddress.ip_address(base), ipaddress.ip_address(ep_base)
    out = []
    for i in range(services):
        eps = [Endpoint(str(ep0 + i * endpoints + j), 8080, node_name=NODE)
               for j in range(endpoints)]
        out.append(ServicePort(namespace="bench", name=f"svc-{i}", port_name="http",
                               protocol="TCP", port=80, cluster_ips=(str(vip0 + 1 + i),),
                               endpoints=eps))
    return out


async def bench_sync(services: int, endpoints: int) -> dict[str, Any]:
    ports = synthetic_ports(services, endpoints)
    out: dict[str, Any] = {"services": services, "endpoints_per_service": endpoints}
    t0 = time.perf_counter()
    r = render(ports, NODE, "BENCH", ["10.200.0.0/16"])
    out["render_s"] = round(time.perf_counter() - t0, 3)
    out["rules"] = r.rules()
    out["chains"] = len(r.nat_chains) + len(r.filter_chains)
    if os.geteuid() == 0 and iptables_available():
        prefix = "B" + secrets.token_hex(2).upper()
        p = IptablesProxier(NODE, prefix, ["10.200.0.0/16"], localhost_nodeports=False)
        await p.setup()
        try:
            first = await p.sync(ports)
            ports[0].endpoints[0] = Endpoint("10.201.0.1", 8080, node_name=NODE)
            again = await p.sync(ports)
            empty = await p.sync([])
        finally:
            await p.cleanup()
        out["iptables"] = {"first_sync_s": round(first, 3), "resync_s": round(again, 3),
                           "remove_all_s": round(empty, 3),
                           "per_service_us": round(again / services * 1e6, 1),
                           "per_rule_us": round(again / max(r.rules(), 1) * 1e6, 2)}
    else:
        out["iptables"] = "skipped: needs root and iptables"
    # userspace: listeners on 127/8 cluster IPs (no root needed)
    us_ports = synthetic_ports(services, endpoints, base="127.90.0.0")
    u = UserspaceProxier(NODE, interface="", nodeport_address="127.0.0.1")
    await u.setup()
    try:
        first = await u.sync(us_ports)
        us_ports[0].endpoints[0] = Endpoint("10.201.0.1", 8080, node_name=NODE)
        again = await u.sync(us_ports)
        listeners = len(u.listeners)
    finally:
        await u.cleanup()
    out["userspace"] = {"first_sync_s": round(first, 3), "resync_s": round(again, 3),
                        "listeners": listeners}
    return out


def one_request(host: str, port: int) -> float:
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"GET /name HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if b" 200 " not in data.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"bad answer from {host}:{port}: {data[:100]!r}")
    return time.perf_counter() - t0


def measure(host: str, port: int, n: int) -> dict[str, Any]:
    for _ in range(10):
        one_request(host, port)            # warm up (ARP, conntrack, caches)
    t0 = time.perf_counter()
    lat = [one_request(host, port) for _ in range(n)]
    total = time.perf_counter() - t0
    return {"conn_per_s": round(n / total, 1), "p50_ms": round(pct(lat, 0.5) * 1000, 3),
            "p99_ms": round(pct(lat, 0.99) * 1000, 3)}


def bench_datapath(n: int, log_level: str, crowd: int = 1000) -> dict[str, Any]:
    from pyk8s.kubelet.runtimes.oci import oci_available
    if not oci_available():
        return {"skipped": "needs root, runc and the CNI plugins"}
    from tests.images import build_busybox_image
    from tests.localregistry import LocalRegistry
    bridge = f"pk8p{secrets.token_hex(3)}"
    cidr = f"10.{random.randint(100, 250)}.0.0/16"
    svc_range = f"10.{random.randint(1, 90)}.0.0/16"
    d = Path(tempfile.mkdtemp(prefix="pyk8s-bench-proxy-"))
    out: dict[str, Any] = {"requests": n}
    try:
        with LocalRegistry() as reg:
            build_busybox_image(d / "busybox")
            reg.push(d / "busybox", "busybox", "latest")
            (d / "up").mkdir()
            c = Cluster(d / "up", "--node-name", NODE, "--runtime", "oci",
                        "--insecure-registry", reg.host, "--cni-bridge", bridge,
                        "--cluster-cidr", cidr, "--service-cluster-ip-range", svc_range,
                        "--log-level", log_level)
            try:
                c.wait_api(60)
                wait(lambda: c.ready_nodes() >= 1, 60, "node Ready", c.proc)
                wait(lambda: c.req("GET", "/api/v1/namespaces/default/serviceaccounts/"
                                   "default")[0] == 200, 30, "default service account",
                     c.proc)
                st, _ = c.req("POST", "/api/v1/namespaces/default/pods", {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "web", "labels": {"app": "web"}},
                    "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                        "name": "httpd", "image": reg.image("busybox"),
                        "command": ["sh", "-c", "echo web > /var/www/name; "
                                    "exec httpd -f -p 8080 -h /var/www"]}]}})
                assert st == 201, st
                st, svc = c.req("POST", "/api/v1/namespaces/default/services", {
                    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                    "spec": {"selector": {"app": "web"},
                             "ports": [{"port": 80, "targetPort": 8080}]}})
                assert st == 201, (st, svc)
                vip = svc["spec"]["clusterIP"]
                pod_ip = wait(lambda: (lambda p: p.get("status", {}).get("phase") ==
                                       "Running" and p["status"].get("podIP"))(
                    c.req("GET", "/api/v1/namespaces/default/pods/web")[1]), 60,
                    "pod running", c.proc)
                wait(lambda: f"-d {vip}/32" in subprocess.run(
                    ["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout,
                    30, "the service's rules", c.proc)
                wait(lambda: _answers(pod_ip, 8080), 30, "httpd answering", c.proc)
                direct = measure(pod_ip, 8080, n)
                via_vip = measure(vip, 80, n)
                via_user = asyncio.run(_userspace_path(pod_ip, n))
                via_crowded = asyncio.run(_crowded_path(vip, n, crowd))
            finally:
                c.proc.stop(60)
        out["direct"] = direct
        out["cluster_ip_iptables"] = via_vip
        out["userspace"] = via_user
        out[f"cluster_ip_behind_{crowd}_services_rules"] = via_crowded
        for k in ("cluster_ip_iptables", "userspace",
                  f"cluster_ip_behind_{crowd}_services_rules"):
            out[k]["added_p50_ms"] = round(out[k]["p50_ms"] - direct["p50_ms"], 3)
            out[k]["conn_rate_vs_direct"] = round(out[k]["conn_per_s"] / direct["conn_per_s"],
                                                  3)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return out


def _answers(ip: str, port: int) -> bool:
    try:
        one_request(ip, port)
        return True
    except OSError:
        return False


async def _crowded_path(vip: str, n: int, crowd: int) -> dict[str, Any]:
    """The cluster IP again, with `crowd` other services × 10 endpoints in chains hooked
    in front of the cluster's (another prefix, inserted first): every new connection walks
    their portal rules first, as iptables mode's linear match does."""
    prefix = "C" + secrets.token_hex(2).upper()
    p = IptablesProxier(NODE, prefix, [], localhost_nodeports=False)
    await p.setup()
    try:
        await p.sync(synthetic_ports(crowd, 10, base="10.250.0.0", ep_base="10.251.0.0"))
        return await asyncio.get_running_loop().run_in_executor(None, measure, vip, 80, n)
    finally:
        await p.cleanup()


async def _userspace_path(pod_ip: str, n: int) -> dict[str, Any]:
    """The userspace relay runs in this process's loop thread; the client in a worker
    thread (the relay and the client must not share one thread)."""
    vip = f"127.91.{random.randint(0, 255)}.{random.randint(1, 254)}"
    u = UserspaceProxier(NODE, interface="", nodeport_address="127.0.0.1")
    await u.setup()
    try:
        await u.sync([ServicePort(namespace="default", name="web", port_name="",
                                  protocol="TCP", port=80, cluster_ips=(vip,),
                                  endpoints=[Endpoint(pod_ip, 8080, node_name=NODE)])])
        return await asyncio.get_running_loop().run_in_executor(None, measure, vip, 80, n)
    finally:
        await u.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--only", choices=["sync", "datapath"], default=None)
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args()
    out: dict[str, Any] = {}
    if args.only in (None, "sync"):
        out["sync"] = asyncio.run(bench_sync(args.services, args.endpoints))
    if args.only in (None, "datapath"):
        out["datapath"] = bench_datapath(args.requests, args.log_level)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
