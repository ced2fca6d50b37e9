#!/usr/bin/env python3
"""Hollow-node benchmark (upstream kubemark): prints one JSON document.

`pyk8s up --disable-agent`, then one `pyk8s agent --runtime fake --count N` process
(default N = 1000) with the default heartbeat (Lease renewed every 10 s, node status
every 10 s, reported when it changes or every 5 min). Measures: the time from spawning the
agent until all N Nodes are Ready; the agent's RSS, per hollow node (total / N, and the
marginal cost against a `--count 1` agent); then, over a `--window` of steady state, the
API server's request rate from the hollow nodes, counted from its request log (one line
per request): Lease GET + PUT, node status PATCH, all requests. The expected Lease PUT rate
is N / 10 per second.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import Cluster, rss_kb, wait  # noqa: E402

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) V3 pyk8s\.apiserver: "
                  r"(\w+) (\S+) (\d{3}) ")


def count_requests(log: str, since: float, until: float) -> dict[str, Any]:
    out: dict[str, Any] = {"lease_put": 0, "lease_get": 0, "node_status_patch": 0, "all": 0,
                           "by_kind": Counter()}
    for line in log.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if not since <= t < until:
            continue
        verb, path = m.group(2), m.group(3)
        out["all"] += 1
        kind = re.sub(r"/namespaces/[^/?]+", "/namespaces/*", path.split("?")[0])
        kind = re.sub(r"/(nodes|leases|pods)/[^/?]+", r"/\1/*", kind)
        out["by_kind"][f"{verb} {kind}"] += 1
        if "/namespaces/kube-node-lease/leases/" in path:
            out["lease_put" if verb == "PUT" else "lease_get"] += verb in ("PUT", "GET")
        elif verb == "PATCH" and path.startswith("/api/v1/nodes/") and path.endswith("/status"):
            out["node_status_patch"] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--window", type=float, default=20.0,
                    help="seconds of steady state to count requests over")
    args = ap.parse_args()
    args.window = max(args.window, 10.0)   # at least one renew interval (10 s)
    with tempfile.TemporaryDirectory(prefix="pyk8s-bench-hollow-") as d:
        dd = Path(d)
        c = Cluster(dd, "--disable-agent", "--v", "3")  # the request log is V(3)
        agents = []
        try:
            c.wait_api(60)
            # Baseline: one node in its own agent process.
            a1 = c.agent(dd / "agent1.log", "--runtime", "fake", "--node-name", "base",
                         "--data-dir", str(dd / "a1"), "--log-level", "WARNING")
            agents.append(a1)
            wait(lambda: c.ready_nodes() >= 1, 60, "baseline node Ready", a1, step=0.05)
            time.sleep(1.0)
            rss1 = rss_kb(a1.p.pid)
            a1.stop()
            c.req("DELETE", "/api/v1/nodes/base")
            t0 = time.monotonic()
            an = c.agent(dd / "agentN.log", "--runtime", "fake", "--count", str(args.count),
                         "--node-name", "hollow", "--data-dir", str(dd / "an"),
                         "--log-level", "WARNING")
            agents.append(an)
            wait(lambda: c.ready_nodes() >= args.count, 600, f"{args.count} nodes Ready", an,
                 step=0.5)
            ready_s = time.monotonic() - t0
            rss_ready = rss_kb(an.p.pid)
            time.sleep(2.0)
            since = time.time()
            time.sleep(args.window)
            until = time.time()
            rss = rss_kb(an.p.pid)
            time.sleep(0.5)   # the log catches up
            reqs = count_requests(c.proc.text(), since, until)
        finally:
            for a in agents:
                a.stop()
            c.proc.stop()
    win = until - since
    out = {"count": args.count, "all_ready_s": round(ready_s, 2),
           "nodes_ready_per_s": round(args.count / ready_s, 1),
           "agent_rss_mb": round(rss / 1024, 1),
           "agent_rss_mb_at_ready": round(rss_ready / 1024, 1),
           "agent_rss_mb_count_1": round(rss1 / 1024, 1),
           "rss_kb_per_node": round(rss / args.count, 1),
           "rss_kb_per_node_marginal": round((rss - rss1) / max(args.count - 1, 1), 1),
           "window_s": round(win, 1),
           "lease_put_per_s": round(reqs["lease_put"] / win, 1),
           "lease_get_per_s": round(reqs["lease_get"] / win, 1),
           "node_status_patch_per_s": round(reqs["node_status_patch"] / win, 2),
           "api_requests_per_s": round(reqs["all"] / win, 1),
           "expected_lease_put_per_s": round(args.count / 10.0, 1),
           "top_requests_per_s": {k: round(v / win, 1)
                                  for k, v in reqs["by_kind"].most_common(6)
                                  if v / win >= 0.05}}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
