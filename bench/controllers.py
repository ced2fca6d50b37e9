#!/usr/bin/env python3
"""Controller benchmark: prints one JSON document.

Starts its own cluster in a temp dir (`pyk8s up`, or with --split a `pyk8s server` and a
`pyk8s controller-manager` process) unless --kubeconfig is given, creates a workload of
--replicas pods (a ReplicaSet, a ReplicationController or a Deployment: WORKLOADS) and
measures:

- the time until every pod exists (watching pods by label) → pods/s;
- the time until the workload's status reports them all;
- GET latency (p50 / p99 / max) of a small object on the API server, sampled by four
  GET loops of a separate client throughout the burst, against one loop measured idle first.

For a Deployment (`--workload deployment`), then a rolling update: a stand-in kubelet in a
separate process (watching the pods, PATCHing pods/status Running + Ready as each one
appears) makes every pod ready, the template's image changes, and the bench measures the
time until the rollout is complete (kubectl rollout status's test), the new pods/s, the
most pods alive at once (≤ replicas + maxSurge) and GET latency during the rollout.

Upstream kube-controller-manager's default client rate limit (--kube-api-qps 20,
--kube-api-burst 30) holds it near 20 pods/s; `--upstream-limits` runs pyk8s with those.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyk8s.client.rest import ClientConfig  # noqa: E402

UPSTREAM_PODS_PER_S = 20.0
PROBERS = 4  # concurrent GET loops sampling the API server during the burst
Obj = dict[str, Any]


# -- workloads --------------------------------------------------------------------------------
@dataclass
class Workload:
    """How to create one kind of workload and where its status lives."""
    collection: str                    # POST path, {ns} formatted
    manifest: Callable[[str, int], Obj]
    status_replicas: str = "replicas"  # status field counting the pods


def _pod_template(name: str) -> Obj:
    return {"metadata": {"labels": {"bench": name}},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}


WORKLOADS: dict[str, Workload] = {
    "replicaset": Workload(
        "/apis/apps/v1/namespaces/{ns}/replicasets",
        lambda name, n: {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                         "metadata": {"name": name},
                         "spec": {"replicas": n, "selector": {"matchLabels": {"bench": name}},
                                  "template": _pod_template(name)}}),
    "replicationcontroller": Workload(
        "/api/v1/namespaces/{ns}/replicationcontrollers",
        lambda name, n: {"apiVersion": "v1", "kind": "ReplicationController",
                         "metadata": {"name": name},
                         "spec": {"replicas": n, "selector": {"bench": name},
                                  "template": _pod_template(name)}}),
    "deployment": Workload(
        "/apis/apps/v1/namespaces/{ns}/deployments",
        lambda name, n: {"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": name},
                         "spec": {"replicas": n, "selector": {"matchLabels": {"bench": name}},
                                  "template": _pod_template(name)}}),
}


# -- processes --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, data_dir: Path, split: bool, controller_args: list[str]) -> None:
        self.data_dir = data_dir
        self.split = split
        self.controller_args = controller_args
        self.port = _free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log = data_dir / "cluster.log"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    def _spawn(self, *args: str) -> None:
        with open(self.log, "ab") as log:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "pyk8s.cli.main", *args], stdout=log,
                stderr=subprocess.STDOUT, cwd=ROOT))

    def start(self, timeout: float = 60.0) -> None:
        base = ["--data-dir", str(self.data_dir), "--port", str(self.port)]
        if self.split:
            self._spawn("server", *base)
            self._wait(lambda: self.kubeconfig.exists() and "listening" in self._log(), timeout)
            self._spawn("controller-manager", "--kubeconfig", str(self.kubeconfig),
                        *self.controller_args)
        else:
            self._spawn("up", *base, "--disable-agent", *self.controller_args)
        self._wait(lambda: "replicaset-controller: synced" in self._log(), timeout)

    def _log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _wait(self, cond: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"process exited:\n{self._log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ready:\n{self._log()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


# -- a stand-in kubelet (its own process, so that the probes measure the server) ----------------
KUBELET_CONCURRENCY = 32  # pods/status PATCHes in flight


def _kubelet_main(kubeconfig: str, ns: str, selector: str, stop: Any, marked: Any,
                  live: Any, max_live: Any) -> None:
    asyncio.run(_kubelet(kubeconfig, ns, selector, stop, marked, live, max_live))


async def _kubelet(kubeconfig: str, ns: str, selector: str, stop: Any, marked: Any,
                   live: Any, max_live: Any) -> None:
    """Watch the pods; PATCH each new one Running + Ready (what a kubelet's status manager
    does once the containers run); count the pods alive (not being deleted)."""
    cfg = ClientConfig.from_kubeconfig(kubeconfig)
    headers = {"Accept": "application/json"}
    if cfg.token:
        headers["Authorization"] = f"Bearer {cfg.token}"
    sem = asyncio.Semaphore(KUBELET_CONCURRENCY)
    alive: set[str] = set()
    done: set[str] = set()
    pending: set[asyncio.Task[None]] = set()
    base = f"{cfg.server}/api/v1/namespaces/{ns}/pods"
    connector = aiohttp.TCPConnector(ssl=cfg.ssl_context(), limit=KUBELET_CONCURRENCY + 2)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as s:
        async def mark(name: str) -> None:
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            body = {"status": {"phase": "Running", "podIP": "10.244.0.1",
                               "podIPs": [{"ip": "10.244.0.1"}], "startTime": now,
                               "conditions": [
                                   {"type": "Initialized", "status": "True",
                                    "lastTransitionTime": now},
                                   {"type": "ContainersReady", "status": "True",
                                    "lastTransitionTime": now},
                                   {"type": "Ready", "status": "True",
                                    "lastTransitionTime": now}]}}
            async with sem:
                for _ in range(5):
                    async with s.patch(f"{base}/{name}/status", data=json.dumps(body),
                                       headers={"Content-Type":
                                                "application/merge-patch+json"}) as r:
                        await r.read()
                        if r.status in (200, 404):
                            break
                    await asyncio.sleep(0.05)
            with marked.get_lock():
                marked.value += 1

        def seen(ev_type: str, pod: Obj) -> None:
            md = pod["metadata"]
            name = md["name"]
            if ev_type == "DELETED" or md.get("deletionTimestamp"):
                alive.discard(name)
            else:
                alive.add(name)
                ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in (pod.get("status") or {}).get("conditions") or [])
                if not ready and name not in done:
                    done.add(name)
                    t = asyncio.create_task(mark(name))
                    pending.add(t)
                    t.add_done_callback(pending.discard)
            live.value = len(alive)
            if len(alive) > max_live.value:
                max_live.value = len(alive)

        async def watch() -> None:
            rv = ""
            while True:
                if not rv:
                    async with s.get(base, params={"labelSelector": selector}) as r:
                        lst = await r.json()
                    alive.clear()
                    for pod in lst.get("items") or []:
                        seen("ADDED", pod)
                    rv = lst["metadata"]["resourceVersion"]
                params = {"watch": "true", "resourceVersion": rv, "labelSelector": selector,
                          "allowWatchBookmarks": "true", "timeoutSeconds": "600"}
                async with s.get(base, params=params,
                                 timeout=aiohttp.ClientTimeout(total=None)) as r:
                    buf = b""
                    async for chunk in r.content.iter_any():
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        for line in lines:
                            if not line.strip():
                                continue
                            ev = json.loads(line)
                            if ev["type"] == "ERROR":
                                rv = ""  # expired: list again
                                break
                            rv = ev["object"]["metadata"].get("resourceVersion") or rv
                            if ev["type"] != "BOOKMARK":
                                seen(ev["type"], ev["object"])
                        else:
                            continue
                        break

        task = asyncio.create_task(watch())
        while not stop.is_set() and not task.done():
            await asyncio.sleep(0.05)
        task.cancel()
        for t in list(pending):
            t.cancel()
        await asyncio.gather(task, *pending, return_exceptions=True)


# -- measuring --------------------------------------------------------------------------------
def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * p))] * 1000, 2)


class Bench:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.cfg = ClientConfig.from_kubeconfig(kubeconfig)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.cfg.token:
            self.headers["Authorization"] = f"Bearer {self.cfg.token}"

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            headers=self.headers, connector=aiohttp.TCPConnector(ssl=self.cfg.ssl_context()))

    async def probe_gets(self, s: aiohttp.ClientSession, path: str, stop: asyncio.Event,
                         interval: float) -> list[float]:
        lat: list[float] = []
        while not stop.is_set():
            t = time.perf_counter()
            async with s.get(self.cfg.server + path) as r:
                await r.read()
                assert r.status == 200, r.status
            lat.append(time.perf_counter() - t)
            await asyncio.sleep(interval)
        return lat

    async def run(self, kind: str, replicas: int, ns: str, timeout: float) -> Obj:
        wl = WORKLOADS[kind]
        name = f"bench-{kind}"
        url = self.cfg.server
        async with self.session() as s:
            async with s.post(f"{url}/api/v1/namespaces", json={"metadata": {"name": ns}}) as r:
                await r.read()
            probe = f"/api/v1/namespaces/{ns}/configmaps/probe"
            async with s.post(f"{url}/api/v1/namespaces/{ns}/configmaps",
                              json={"metadata": {"name": "probe"}, "data": {"k": "v"}}) as r:
                await r.read()
            # Idle GET latency first.
            idle_stop = asyncio.Event()
            idle_task = asyncio.create_task(self.probe_gets(s, probe, idle_stop, 0.005))
            await asyncio.sleep(2.0)
            idle_stop.set()
            idle = await idle_task

            async with s.get(f"{url}/api/v1/namespaces/{ns}/pods") as r:
                rv = (await r.json())["metadata"]["resourceVersion"]
            seen: set[str] = set()
            all_seen = asyncio.Event()
            first_pod_at: list[float] = []

            async def watch_pods() -> None:
                params = {"watch": "true", "resourceVersion": rv,
                          "labelSelector": f"bench={name}", "allowWatchBookmarks": "false"}
                async with s.get(f"{url}/api/v1/namespaces/{ns}/pods", params=params,
                                 timeout=aiohttp.ClientTimeout(total=None)) as r:
                    buf = b""
                    async for chunk in r.content.iter_any():
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        for line in lines:
                            if not line.strip():
                                continue
                            ev = json.loads(line)
                            if ev["type"] == "ADDED":
                                if not first_pod_at:
                                    first_pod_at.append(time.perf_counter())
                                seen.add(ev["object"]["metadata"]["name"])
                                if len(seen) >= replicas:
                                    all_seen.set()
                                    return

            watcher = asyncio.create_task(watch_pods())
            await asyncio.sleep(0.2)
            busy_stop = asyncio.Event()
            busy_tasks = [asyncio.create_task(self.probe_gets(s, probe, busy_stop, 0.002))
                          for _ in range(PROBERS)]
            started = time.perf_counter()
            async with s.post(url + wl.collection.format(ns=ns),
                              json=wl.manifest(name, replicas)) as r:
                body = await r.json()
                assert r.status == 201, body
            try:
                await asyncio.wait_for(all_seen.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            pods_done = time.perf_counter() - started
            busy_stop.set()
            busy = [x for lat in await asyncio.gather(*busy_tasks) for x in lat]
            watcher.cancel()
            # Status catching up.
            status_done = None
            path = wl.collection.format(ns=ns) + "/" + name
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                async with s.get(url + path) as r:
                    st = (await r.json()).get("status") or {}
                if int(st.get(wl.status_replicas) or 0) >= replicas:
                    status_done = time.perf_counter() - started
                    break
                await asyncio.sleep(0.05)
            result: Obj = {}
            if kind == "deployment":
                result["rollout"] = await self.rollout(s, wl, ns, name, replicas, timeout)
        return {
            "workload": kind, "replicas": replicas, "pods_created": len(seen),
            "seconds_to_all_pods": round(pods_done, 3),
            "seconds_to_first_pod": round(first_pod_at[0] - started, 3) if first_pod_at else None,
            "pods_per_s": round(len(seen) / pods_done, 1) if pods_done else None,
            "seconds_to_status": round(status_done, 3) if status_done else None,
            "get_idle_p50_ms": _pct(idle, 0.5), "get_idle_p99_ms": _pct(idle, 0.99),
            "get_burst_p50_ms": _pct(busy, 0.5), "get_burst_p99_ms": _pct(busy, 0.99),
            "get_burst_max_ms": _pct(busy, 1.0), "get_burst_samples": len(busy),
            "upstream_pods_per_s": UPSTREAM_PODS_PER_S,
            "vs_upstream": round(len(seen) / pods_done / UPSTREAM_PODS_PER_S, 1)
            if pods_done else None,
            **result,
        }

    async def rollout(self, s: aiohttp.ClientSession, wl: Workload, ns: str, name: str,
                      replicas: int, timeout: float) -> Obj:
        """Make every pod ready (the stand-in kubelet), then change the image and time the
        rolling update until `kubectl rollout status` would call it done."""
        url = self.cfg.server
        path = url + wl.collection.format(ns=ns) + "/" + name
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        marked, live, max_live = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
        kubelet = ctx.Process(target=_kubelet_main, daemon=True, args=(
            str(self.kubeconfig), ns, f"bench={name}", stop, marked, live, max_live))
        started = time.perf_counter()
        kubelet.start()

        async def deployment() -> Obj:
            async with s.get(path) as r:
                return await r.json()  # type: ignore[no-any-return]

        def complete(d: Obj, generation: int) -> bool:
            st = d.get("status") or {}
            return int(st.get("observedGeneration") or 0) >= generation and all(
                int(st.get(f) or 0) == replicas
                for f in ("updatedReplicas", "replicas", "availableReplicas"))

        out: Obj = {}
        try:
            d = await deployment()
            deadline = time.monotonic() + timeout
            while not complete(d, int(d["metadata"]["generation"])):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pods never became available: {d.get('status')}")
                await asyncio.sleep(0.05)
                d = await deployment()
            out["seconds_to_all_available"] = round(time.perf_counter() - started, 3)
            max_live.value = live.value
            marked_before = marked.value
            probe = f"/api/v1/namespaces/{ns}/configmaps/probe"
            busy_stop = asyncio.Event()
            busy_tasks = [asyncio.create_task(self.probe_gets(s, probe, busy_stop, 0.002))
                          for _ in range(PROBERS)]
            started = time.perf_counter()
            patch = {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}
            async with s.patch(path, data=json.dumps(patch), headers={
                    "Content-Type": "application/strategic-merge-patch+json"}) as r:
                d = await r.json()
                assert r.status == 200, d
            generation = int(d["metadata"]["generation"])
            deadline = time.monotonic() + timeout
            while not complete(d, generation) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                d = await deployment()
            done = time.perf_counter() - started
            busy_stop.set()
            busy = [x for lat in await asyncio.gather(*busy_tasks) for x in lat]
            rs_path = url + wl.collection.format(ns=ns).replace("deployments", "replicasets")
            async with s.get(rs_path, params={"labelSelector": f"bench={name}"}) as r:
                rss = (await r.json())["items"]
            surge = -(-replicas * 25 // 100)
            out.update({
                "completed": complete(d, generation),
                "seconds_to_complete": round(done, 3),
                "new_pods_per_s": round(replicas / done, 1) if done else None,
                "pods_marked_ready": marked.value - marked_before,
                "max_pods_alive": max_live.value, "max_allowed": replicas + surge,
                "replica_sets": sorted([r["metadata"]["name"], r["spec"]["replicas"]]
                                       for r in rss),
                "get_rollout_p50_ms": _pct(busy, 0.5), "get_rollout_p99_ms": _pct(busy, 0.99),
                "get_rollout_max_ms": _pct(busy, 1.0), "get_rollout_samples": len(busy),
            })
        finally:
            stop.set()
            kubelet.join(10)
            if kubelet.is_alive():
                kubelet.kill()
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kubeconfig", help="use a running cluster instead of starting one")
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="replicaset")
    ap.add_argument("--replicas", type=int, default=1000)
    ap.add_argument("--namespace", default=f"bench-{os.getpid()}")
    ap.add_argument("--split", action="store_true",
                    help="server and controller-manager as two processes (default: pyk8s up)")
    ap.add_argument("--upstream-limits", action="store_true",
                    help="run the controllers with upstream's --kube-api-qps 20 --kube-api-burst 30")
    ap.add_argument("--controller-arg", action="append", default=[],
                    help="extra flag for the controller manager (repeatable), e.g. "
                         "--controller-arg=--kube-api-qps=100")
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()
    controller_args = ["--kube-api-qps", "20", "--kube-api-burst", "30"] \
        if args.upstream_limits else []
    controller_args += args.controller_arg
    cluster = None
    tmp = None
    try:
        if args.kubeconfig:
            kubeconfig = Path(args.kubeconfig)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="pyk8s-bench-")
            cluster = Cluster(Path(tmp.name), args.split, controller_args)
            cluster.start()
            kubeconfig = cluster.kubeconfig
        result = asyncio.run(Bench(kubeconfig).run(args.workload, args.replicas,
                                                   args.namespace, args.timeout))
        result["mode"] = "external" if args.kubeconfig else ("split" if args.split else "up")
        result["client_limits"] = "upstream (20/30)" if args.upstream_limits else "pyk8s default"
        if args.controller_arg:
            result["controller_args"] = args.controller_arg
        print(json.dumps(result, indent=2))
    finally:
        if cluster is not None:
            cluster.stop()
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
