#!/usr/bin/env python3
"""API server benchmark: prints one JSON document (and ratios against upstream's figures).

Starts its own `pyk8s server` (SQLite by default) in a temp dir unless --url is given, then
measures: creates/s and p50/p99 with 8 and 64 concurrent clients, GET latency, LIST of 2,000
objects, watch delivery latency to 100 watchers, RSS idle and after 10k objects, and the time
from process start to /readyz.

Upstream kube-apiserver v1.20 on etcd, on this machine kind: 2,156 creates/s with 8 clients
(p99 9 ms), LIST of 2,000 configmaps 28 ms, /readyz after 2.9 s, 310 MB RSS idle.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

UPSTREAM = {"creates_per_s_8": 2156, "create_p99_ms_8": 9.0, "list_2000_ms": 28.0,
            "readyz_s": 2.9, "rss_idle_mb": 310.0}
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


class Bench:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.ssl = ctx

    def session(self, limit: int = 100) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(headers=self.headers,
                                     connector=aiohttp.TCPConnector(ssl=self.ssl, limit=limit))

    async def ns(self, s: aiohttp.ClientSession, name: str) -> None:
        async with s.post(f"{self.url}/api/v1/namespaces", json={"metadata": {"name": name}}) as r:
            await r.read()

    async def creates(self, clients: int, total: int, ns: str) -> dict[str, float]:
        lat: list[float] = []
        async with self.session(clients) as s:
            await self.ns(s, ns)
            counter = iter(range(total))

            async def worker() -> None:
                for i in counter:
                    body = {"metadata": {"name": f"cm-{i}"}, "data": {"k": "v" * 64}}
                    t = time.perf_counter()
                    async with s.post(f"{self.url}/api/v1/namespaces/{ns}/configmaps", json=body) as r:
                        await r.read()
                        assert r.status == 201, r.status
                    lat.append(time.perf_counter() - t)
            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            elapsed = time.perf_counter() - start
        return {"creates_per_s": round(total / elapsed, 1), "p50_ms": round(_pct(lat, 0.5), 2),
                "p99_ms": round(_pct(lat, 0.99), 2)}

    async def gets(self, ns: str, n: int = 500) -> dict[str, float]:
        lat = []
        async with self.session(1) as s:
            for i in range(n):
                t = time.perf_counter()
                async with s.get(f"{self.url}/api/v1/namespaces/{ns}/configmaps/cm-{i % 100}") as r:
                    await r.read()
                lat.append(time.perf_counter() - t)
        return {"get_p50_ms": round(_pct(lat, 0.5), 2), "get_p99_ms": round(_pct(lat, 0.99), 2)}

    async def list_2000(self, ns: str) -> dict[str, float]:
        lat = []
        async with self.session(1) as s:
            for _ in range(10):
                t = time.perf_counter()
                async with s.get(f"{self.url}/api/v1/namespaces/{ns}/configmaps") as r:
                    body = await r.read()
                lat.append(time.perf_counter() - t)
            n = len(json.loads(body)["items"])
        return {"list_items": n, "list_ms_median": round(statistics.median(lat) * 1000, 2)}

    async def watch_latency(self, watchers: int = 100, events: int = 20) -> dict[str, float]:
        ns = "bench-watch"
        delays: list[float] = []
        sent: dict[str, float] = {}
        async with self.session(watchers + 2) as s:
            await self.ns(s, ns)
            async with s.get(f"{self.url}/api/v1/namespaces/{ns}/configmaps") as r:
                rv = (await r.json())["metadata"]["resourceVersion"]
            ready = asyncio.Event()
            opened = 0

            async def watcher() -> None:
                nonlocal opened
                url = (f"{self.url}/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}"
                       f"&timeoutSeconds=60")
                async with s.get(url) as r:
                    opened += 1
                    if opened == watchers:
                        ready.set()
                    got = 0
                    async for line in r.content:
                        ev = json.loads(line)
                        name = ev["object"]["metadata"]["name"]
                        delays.append(time.perf_counter() - sent[name])
                        got += 1
                        if got == events:
                            return
            tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
            await asyncio.wait_for(ready.wait(), 30)
            await asyncio.sleep(0.2)
            for i in range(events):
                name = f"w{i}"
                sent[name] = time.perf_counter()
                async with s.post(f"{self.url}/api/v1/namespaces/{ns}/configmaps",
                                  json={"metadata": {"name": name}}) as r:
                    await r.read()
                await asyncio.sleep(0.05)
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return {"watchers": watchers, "watch_delivery_p50_ms": round(_pct(delays, 0.5), 2),
                "watch_delivery_p99_ms": round(_pct(delays, 0.99), 2)}


def start_server(data_dir: str, storage: str, port: int,
                 extra: list[str] | None = None) -> tuple[subprocess.Popen[bytes], float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pyk8s.cli.main", "server", "--data-dir", data_dir,
                             "--port", str(port), "--storage", storage, "--log-level", "WARNING",
                             *(extra or [])],
                            cwd=ROOT)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import urllib.request
    while True:
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=1) as r:
                if r.status == 200:
                    break
        except Exception:
            if proc.poll() is not None:
                raise SystemExit("server exited")
            time.sleep(0.01)
    return proc, time.perf_counter() - t0


async def run(args: argparse.Namespace) -> dict[str, object]:
    etcd = None
    extra: list[str] = []
    if args.storage == "etcd":
        endpoints = args.etcd_servers
        if not endpoints:  # a throwaway etcd member, data on disk like a real one
            sys.path.insert(0, str(ROOT))
            from tests.etcd_cluster import EtcdCluster
            etcd = EtcdCluster(1, tmpfs=False).start()
            endpoints = etcd.endpoints
        extra = ["--etcd-servers", endpoints]
    try:
        return await _run(args, extra)
    finally:
        if etcd is not None:
            etcd.stop()


async def service_account_token(url: str, admin_token: str) -> str:
    """A token of `default/bench`, bound to cluster-admin by a ClusterRoleBinding."""
    b = Bench(url, admin_token)
    async with b.session(1) as s:
        async def post(path: str, body: dict[str, object]) -> dict[str, object]:
            async with s.post(url + path, json=body) as r:
                out = await r.json()
                assert r.status in (200, 201, 409), (r.status, out)
                return dict(out)
        await post("/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "bench"}})
        await post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "metadata": {"name": "bench-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "bench", "namespace": "default"}]})
        tr = await post("/api/v1/namespaces/default/serviceaccounts/bench/token",
                        {"spec": {"expirationSeconds": 7200}})
        return str(tr["status"]["token"])  # type: ignore[index]


async def authorization_round(args: argparse.Namespace, extra: list[str],
                              mode: str) -> dict[str, object]:
    """Creates (8 clients), GETs and LIST of 2,000 under one authorization mode."""
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        proc, _ = start_server(tmp, args.storage, port,
                               [*extra, "--authorization-mode", mode])
        try:
            url = f"https://127.0.0.1:{port}"
            token = await service_account_token(url, Path(tmp, "token").read_text().strip())
            b = Bench(url, token)
            out: dict[str, object] = {"mode": mode}
            out["creates_8"] = await b.creates(8, args.creates, "bench8")
            out.update(await b.gets("bench8"))
            await b.creates(8, 2000, "bench-list")
            out.update(await b.list_2000("bench-list"))
            return out
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait()


async def compare_authorization(args: argparse.Namespace, extra: list[str]) -> dict[str, object]:
    rounds: dict[str, list[dict[str, object]]] = {"Node,RBAC": [], "AlwaysAllow": []}
    for _ in range(args.rounds):
        for mode in rounds:
            rounds[mode].append(await authorization_round(args, extra, mode))

    def best(mode: str) -> dict[str, float]:
        rs = rounds[mode]
        return {"creates_per_s": max(r["creates_8"]["creates_per_s"] for r in rs),  # type: ignore[index]
                "get_p50_ms": min(float(r["get_p50_ms"]) for r in rs),  # type: ignore[arg-type]
                "list_ms_median": min(float(r["list_ms_median"]) for r in rs)}  # type: ignore[arg-type]
    rbac, allow = best("Node,RBAC"), best("AlwaysAllow")
    return {"storage": args.storage, "rounds": rounds, "best": {"Node,RBAC": rbac,
                                                                 "AlwaysAllow": allow},
            "ratios_rbac_vs_always_allow": {
                "creates_per_s": round(rbac["creates_per_s"] / allow["creates_per_s"], 3),
                "get_p50": round(rbac["get_p50_ms"] / allow["get_p50_ms"], 3),
                "list_2000": round(rbac["list_ms_median"] / allow["list_ms_median"], 3)}}


async def _run(args: argparse.Namespace, extra: list[str]) -> dict[str, object]:
    if args.compare_authorization:
        return await compare_authorization(args, extra)
    if args.authorization_mode:
        extra = [*extra, "--authorization-mode", args.authorization_mode]
    with tempfile.TemporaryDirectory() as tmp:
        # Start-up is measured on a fresh data dir (certificates are generated then).
        port = _free_port()
        proc, ready_s = start_server(tmp, args.storage, port, extra)
        second_tmp = tmp
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        port = _free_port()
        proc, ready_warm_s = start_server(second_tmp, args.storage, port, extra)
        try:
            time.sleep(1.0)
            result: dict[str, object] = {"storage": args.storage,
                                         "readyz_first_start_s": round(ready_s, 3),
                                         "readyz_s": round(ready_warm_s, 3),
                                         "rss_idle_mb": round(_rss_mb(proc.pid), 1)}
            token = Path(tmp, "token").read_text().strip()
            if args.authorization_mode:
                token = await service_account_token(f"https://127.0.0.1:{port}", token)
            b = Bench(f"https://127.0.0.1:{port}", token)
            result["creates_8"] = await b.creates(8, args.creates, "bench8")
            result["creates_64"] = await b.creates(64, args.creates, "bench64")
            result.update(await b.gets("bench8"))
            await b.creates(8, 2000, "bench-list")
            result.update(await b.list_2000("bench-list"))
            result.update(await b.watch_latency())
            have = 2 * args.creates + 2000
            if have < 10000:
                await b.creates(16, 10000 - have, "bench-fill")
            result["rss_after_10k_objects_mb"] = round(_rss_mb(proc.pid), 1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
    c8 = result["creates_8"]
    assert isinstance(c8, dict)
    result["ratios_vs_upstream"] = {
        "creates_per_s_8": round(c8["creates_per_s"] / UPSTREAM["creates_per_s_8"], 2),
        "list_2000_speedup": round(UPSTREAM["list_2000_ms"] / float(result["list_ms_median"]), 2),  # type: ignore[arg-type]
        "readyz_speedup": round(UPSTREAM["readyz_s"] / float(result["readyz_s"]), 2),  # type: ignore[arg-type]
        "rss_idle_fraction": round(float(result["rss_idle_mb"]) / UPSTREAM["rss_idle_mb"], 3),  # type: ignore[arg-type]
    }
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--storage", default="sqlite", choices=["sqlite", "memory", "etcd"])
    p.add_argument("--etcd-servers", default="",
                   help="with --storage etcd: use these etcd URLs (default: a throwaway etcd)")
    p.add_argument("--creates", type=int, default=3000)
    p.add_argument("--authorization-mode", default="",
                   help="the server's mode; requests then come from a service account")
    p.add_argument("--compare-authorization", action="store_true",
                   help="creates / GET / LIST under Node,RBAC against AlwaysAllow")
    p.add_argument("--rounds", type=int, default=3,
                   help="with --compare-authorization: rounds per mode (best of)")
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
