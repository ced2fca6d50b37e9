#!/usr/bin/env python3
"""Scheduler benchmark: prints one JSON document.

For each case, a fresh `pyk8s server` (SQLite) in a temp dir; N fake Nodes (allocatable
4 cpu, 32Gi, 110 pods; 10 zones) and M pending pods (requests 100m / 500Mi, as upstream's
scheduler_perf pod-default) are created up front; then a `pyk8s scheduler` process starts
and the bench watches the pods: pods/s from the first bind to the last. API server,
scheduler and bench are separate processes on this machine.

Cases: basic (500, 5,000) and (5,000, 10,000) — upstream's SchedulingBasic; anti-affinity
(required podAntiAffinity on hostname, every pod the same label, M ≤ N); topology-spread
(DoNotSchedule on zone, maxSkew 1). Upstream's scheduler_perf SchedulingBasic at 5,000
nodes is held above 270 pods/s in upstream CI.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyk8s.client.rest import RESTClient  # noqa: E402

Obj = dict[str, Any]
NS = "default"
CASES = {
    "basic-500x5000": ("basic", 500, 5000),
    "basic-5000x10000": ("basic", 5000, 10000),
    "anti-affinity-500x500": ("anti-affinity", 500, 500),
    "anti-affinity-5000x5000": ("anti-affinity", 5000, 5000),
    "topology-spread-5000x5000": ("topology-spread", 5000, 5000),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node(i: int) -> Obj:
    alloc = {"cpu": "4", "memory": "32Gi", "pods": "110"}
    name = f"node-{i}"
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  "topology.kubernetes.io/zone": f"zone-{i % 10}"}},
            "status": {"capacity": alloc, "allocatable": alloc,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(i: int, variant: str) -> Obj:
    spec: Obj = {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                 "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}
    labels = {"app": "bench"}
    if variant == "anti-affinity":
        labels = {"color": "green"}
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"color": "green"}},
             "topologyKey": "kubernetes.io/hostname"}]}}
    elif variant == "topology-spread":
        spec["topologySpreadConstraints"] = [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
             "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"app": "bench"}}}]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i}", "labels": labels}, "spec": spec}


async def create_all(client: RESTClient, path: str, objs: list[Obj], status: bool = False,
                     concurrency: int = 32) -> None:
    it = iter(objs)

    async def worker() -> None:
        for o in it:
            await client.create(path, o)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run_case(name: str, variant: str, n: int, m: int, log_dir: Path | None) -> Obj:
    tmp = Path(tempfile.mkdtemp(prefix="pyk8s-bench-sched-"))
    port = free_port()
    logs = log_dir or tmp
    srv_log = open(logs / f"{name}-server.log", "ab")
    srv = subprocess.Popen([sys.executable, "-m", "pyk8s.cli.main", "server", "--data-dir",
                            str(tmp), "--port", str(port), "--bind", "127.0.0.1",
                            # no controller manager creates service accounts here
                            "--disable-admission-plugins", "ServiceAccount"], stdout=srv_log,
                           stderr=subprocess.STDOUT, cwd=ROOT)
    sched: subprocess.Popen[bytes] | None = None
    try:
        kc = tmp / "kubeconfig.yaml"
        for _ in range(400):
            if kc.exists():
                break
            time.sleep(0.05)
        client = RESTClient.from_kubeconfig(kc, max_inflight=64)
        for _ in range(200):
            try:
                await client.get("/readyz")
                break
            except Exception:
                await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        nodes = [node(i) for i in range(n)]
        await create_all(client, "/api/v1/nodes", nodes)
        # Node status as a kubelet would report it (create may drop status).
        got = await client.get("/api/v1/nodes/node-0")
        if not (got.get("status") or {}).get("allocatable"):
            it = iter(nodes)

            async def patch() -> None:
                for nd in it:
                    await client.patch(f"/api/v1/nodes/{nd['metadata']['name']}/status",
                                       {"status": nd["status"]})
            await asyncio.gather(*(patch() for _ in range(32)))
        await create_all(client, f"/api/v1/namespaces/{NS}/pods", [pod(i, variant) for i in range(m)])
        setup_s = time.perf_counter() - t0
        lst = await client.list(f"/api/v1/namespaces/{NS}/pods", {"limit": "1"})
        rv = lst["metadata"]["resourceVersion"]
        binds: list[float] = []
        bound: set[str] = set()

        async def watch() -> None:
            nonlocal rv
            while len(bound) < m:
                async for ev in client.watch(f"/api/v1/namespaces/{NS}/pods", rv):
                    o = ev["object"]
                    rv = o["metadata"].get("resourceVersion", rv)
                    if ev["type"] == "MODIFIED" and (o.get("spec") or {}).get("nodeName"):
                        nm = o["metadata"]["name"]
                        if nm not in bound:
                            bound.add(nm)
                            binds.append(time.perf_counter())
                            if len(bound) >= m:
                                return

        watcher = asyncio.create_task(watch())
        sched_log = open(logs / f"{name}-scheduler.log", "ab")
        started = time.perf_counter()
        sched = subprocess.Popen([sys.executable, "-m", "pyk8s.cli.main", "scheduler",
                                  "--kubeconfig", str(kc), "--leader-elect=false",
                                  "--log-level", "WARNING"],
                                 stdout=sched_log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            await asyncio.wait_for(watcher, timeout=max(120.0, m / 20))
        except asyncio.TimeoutError:
            pass
        await client.close()
        span = (binds[-1] - binds[0]) if len(binds) > 1 else 0.0
        return {"case": name, "nodes": n, "pods": m, "bound": len(binds),
                "setup_s": round(setup_s, 1),
                "first_bind_after_start_s": round(binds[0] - started, 2) if binds else None,
                "first_to_last_bind_s": round(span, 2),
                "pods_per_s": round((len(binds) - 1) / span, 1) if span else None}
    finally:
        for p in (sched, srv):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", choices=sorted(CASES),
                    help="run only these cases (repeatable); default all")
    ap.add_argument("--nodes", type=int, help="custom case: nodes")
    ap.add_argument("--pods", type=int, help="custom case: pods")
    ap.add_argument("--variant", default="basic", choices=["basic", "anti-affinity",
                                                           "topology-spread"])
    ap.add_argument("--log-dir", type=Path, default=None)
    args = ap.parse_args()
    if args.nodes and args.pods:
        cases = {f"{args.variant}-{args.nodes}x{args.pods}": (args.variant, args.nodes, args.pods)}
    else:
        cases = {k: CASES[k] for k in (args.case or CASES)}
    out = {"upstream_scheduling_basic_5000_nodes_pods_per_s": 270, "target_pods_per_s": 300,
           "cpus": os.cpu_count(), "results": []}
    for name, (variant, n, m) in cases.items():
        out["results"].append(asyncio.run(run_case(name, variant, n, m, args.log_dir)))
        print(json.dumps(out["results"][-1]), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
