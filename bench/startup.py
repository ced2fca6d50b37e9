#!/usr/bin/env python3
"""Start-up benchmark: prints one JSON document.

`pyk8s up` with its local node (process runtime), from spawning the process to the Node
Ready (and to /readyz); then the total RSS of the process tree (API server, controllers,
scheduler and kubelet share the one process) once the node is Ready and after `--settle`
seconds. Targets: node Ready < 1 s, RSS < 150 MB. Runs `--runs` times on a fresh data
dir (first start: certificates are generated) and reports each and the best.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import Cluster, descendants, tree_rss_mb, wait  # noqa: E402

TARGETS = {"node_ready_s": 1.0, "rss_mb": 150.0}


def one(settle: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="pyk8s-bench-startup-") as d:
        c = Cluster(Path(d), "--node-name", "bench-node", "--runtime", "process",
                    "--log-level", "WARNING")
        t0 = c.started
        try:
            c.wait_api(60)
            api = time.monotonic() - t0
            wait(lambda: c.ready_nodes() >= 1, 60, "node Ready", c.proc, step=0.01)
            ready = time.monotonic() - t0
            rss_ready = tree_rss_mb(c.proc.p.pid)
            time.sleep(settle)
            rss = tree_rss_mb(c.proc.p.pid)
            procs = len(descendants(c.proc.p.pid))
        finally:
            c.proc.stop()
    return {"api_ready_s": round(api, 3), "node_ready_s": round(ready, 3),
            "rss_mb_at_ready": round(rss_ready, 1), "rss_mb": round(rss, 1),
            "processes": procs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds after Ready before the second RSS sample")
    args = ap.parse_args()
    runs = [one(args.settle) for _ in range(args.runs)]
    best = {k: min(r[k] for r in runs) for k in ("api_ready_s", "node_ready_s")}
    rss = max(r["rss_mb"] for r in runs)
    out = {"runs": runs, "best_node_ready_s": best["node_ready_s"],
           "best_api_ready_s": best["api_ready_s"], "max_rss_mb": rss, "targets": TARGETS,
           "node_ready_vs_target": round(best["node_ready_s"] / TARGETS["node_ready_s"], 2),
           "rss_vs_target": round(rss / TARGETS["rss_mb"], 2)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
