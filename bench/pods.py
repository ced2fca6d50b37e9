#!/usr/bin/env python3
"""Pod start-up latency benchmark: prints one JSON document.

`pyk8s up` with its local node on the process runtime; `--pods` pods (default 100, one
`sleep 3600` container each, scheduled by the scheduler) are created one after another
from this process at `--rate` pods/s (0: as fast as the API answers); a watch on the
pods records when each is first seen Running. Latency = Running seen − create returned:
p50 / p99 / max, and the whole batch's time; `rss_mb_with_pods` is the process tree's RSS
(the `sleep`s included). Their processes stop with `up` at the end. Upstream's SLO for
pod start-up (schedulable pods, images pre-pulled) is p99 ≤ 5 s.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time

import urllib3
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import Cluster, pct, tree_rss_mb, wait  # noqa: E402

NS = "default"
SLO_P99_S = 5.0


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS,
                                                            "labels": {"bench": "pods"}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox",
                                     "command": ["sleep", "3600"]}]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.0, help="creates per second (0: unpaced)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyk8s-bench-pods-") as d:
        c = Cluster(Path(d), "--node-name", "bench-node", "--runtime", "process",
                    "--log-level", "WARNING")
        try:
            c.wait_api(60)
            wait(lambda: c.ready_nodes() >= 1, 60, "node Ready", c.proc)
            wait(lambda: c.req("GET", f"/api/v1/namespaces/{NS}/serviceaccounts/default")[0]
                 == 200, 30, "default service account", c.proc)
            running: dict[str, float] = {}
            done = threading.Event()

            def watch() -> None:
                http = urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False)
                r = http.request(
                    "GET", c.url + f"/api/v1/namespaces/{NS}/pods?watch=true&"
                    "labelSelector=bench%3Dpods&timeoutSeconds=600",
                    headers={"Authorization": f"Bearer {c.token()}"},
                    preload_content=False, timeout=None)
                buf = b""
                for chunk in r.stream(65536):
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        ev = json.loads(line)
                        o = ev["object"]
                        name = o["metadata"]["name"]
                        if (o.get("status") or {}).get("phase") == "Running" and \
                                name not in running:
                            running[name] = time.monotonic()
                            if len(running) >= args.pods:
                                done.set()
                                return
            threading.Thread(target=watch, daemon=True).start()
            time.sleep(0.3)   # the watch is open
            created: dict[str, float] = {}
            t0 = time.monotonic()
            for i in range(args.pods):
                if args.rate > 0:
                    delay = t0 + i / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                name = f"p-{i:04d}"
                st, body = c.req("POST", f"/api/v1/namespaces/{NS}/pods", pod(name))
                if st != 201:
                    raise SystemExit(f"create {name}: {st} {body}")
                created[name] = time.monotonic()
            create_s = time.monotonic() - t0
            if not done.wait(120):
                raise SystemExit(f"only {len(running)}/{args.pods} pods Running after 120 s")
            total = max(running.values()) - t0
            rss = tree_rss_mb(c.proc.p.pid)
            lat = [running[n] - created[n] for n in created]
        finally:
            c.proc.stop()
    out = {"pods": args.pods, "rate": args.rate, "create_s": round(create_s, 3),
           "all_running_s": round(total, 3),
           "p50_ms": round(pct(lat, 0.5) * 1000, 1), "p99_ms": round(pct(lat, 0.99) * 1000, 1),
           "max_ms": round(max(lat) * 1000, 1), "rss_mb_with_pods": round(rss, 1),
           "slo_p99_s": SLO_P99_S, "p99_vs_slo": round(pct(lat, 0.99) / SLO_P99_S, 3)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
