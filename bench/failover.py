#!/usr/bin/env python3
"""Control-plane fail-over benchmark: prints one JSON document.

Each run builds a fresh HA cluster on this machine (loopback only): a 3-member etcd
(tests/etcd_cluster.py, data on disk), three `pyk8s up --disable-agent --storage etcd`
servers on their own ports (the second and third join with the first one's token, after
the first holds both leader Leases), and two hollow agents (`--runtime fake`) given all
three URLs, the first server's first. Then kill -9 of the first server, which holds the
kube-controller-manager and kube-scheduler Leases (default timings: 15 s lease, 10 s renew
deadline, 2 s retry), and a Deployment created at once through another server. Measured
from the kill:

- leader takeover: a Lease names another holder;
- first action: the new controller manager created the Deployment's ReplicaSet; the new
  scheduler bound its pod (both: the later of the two); target < 20 s;
- agent switch: the agent's load balancer logged its switch to another server (the log
  line's own time); target < 5 s.

p50 and max over `--runs` runs (default 5).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import Cluster, Proc, pct, wait  # noqa: E402

from pyk8s.cli.main import leader_identity  # noqa: E402
from tests.etcd_cluster import EtcdCluster  # noqa: E402

LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"
LOCKS = ("kube-controller-manager", "kube-scheduler")
SWITCH = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*switched from API server "
                    r"(\S+) to", re.M)
DEPLOYMENT = {"metadata": {"name": "failover"},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "failover"}},
                       "template": {"metadata": {"labels": {"app": "failover"}}, "spec": {
                           "containers": [{"name": "c", "image": "busybox"}]}}}}


def get(c: Cluster, path: str) -> Any:
    try:
        status, body = c.req("GET", path)
    except OSError:
        return None
    return body if status == 200 else None


def holders(c: Cluster) -> list[str]:
    return [str(((get(c, LEASES + n) or {}).get("spec") or {}).get("holderIdentity") or "")
            for n in LOCKS]


def ready_nodes(c: Cluster, names: list[str]) -> bool:
    nodes = get(c, "/api/v1/nodes") or {}
    ready = {n["metadata"]["name"] for n in nodes.get("items") or []
             if any(x["type"] == "Ready" and x["status"] == "True"
                    for x in n.get("status", {}).get("conditions") or [])}
    return set(names) <= ready


def switch_time(log: Path, killed_url: str) -> float | None:
    """The wall-clock time of the agent's switch away from `killed_url`, from its log."""
    text = log.read_text(errors="replace") if log.exists() else ""
    for m in SWITCH.finditer(text):
        if m.group(2) == killed_url:
            return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def one_run(d: Path) -> dict[str, Any]:
    etcd = EtcdCluster(3, tmpfs=False).start()
    procs: list[Proc] = []
    try:
        common = ["--disable-agent", "--storage", "etcd", "--etcd-servers", etcd.endpoints,
                  "--bind", "127.0.0.1", "--log-level", "WARNING"]
        for n in ("s1", "s2", "s3"):
            (d / n).mkdir()
        s1 = Cluster(d / "s1", *common)
        procs.append(s1.proc)
        s1.wait_api(60)
        ident = leader_identity(d / "s1")
        wait(lambda: holders(s1) == [ident, ident], 60, "s1 leading", s1.proc, step=0.1)
        join = [*common, "--token-file", str(d / "s1" / "server-token")]
        others = [Cluster(d / n, *join) for n in ("s2", "s3")]
        procs += [o.proc for o in others]
        for o in others:
            o.wait_api(60)
        s2 = others[0]
        urls = ",".join(x.url for x in (s1, *others))
        names = ["failover-a", "failover-b"]
        logs = [d / f"{n}.log" for n in names]
        for n, log in zip(names, logs):
            procs.append(Proc(["agent", "--server", urls, "--token-file",
                               str(d / "s1" / "node-token"), "--certificate-authority",
                               str(d / "s1" / "tls" / "ca.crt"), "--data-dir", str(d / n),
                               "--node-name", n, "--runtime", "fake", "--kubelet-port", "0",
                               "--node-ip", "127.0.0.1", "--log-level", "WARNING"], log))
        wait(lambda: ready_nodes(s2, names), 60, "agents Ready", step=0.1)

        killed = time.time()
        s1.proc.p.kill()
        s1.proc.p.wait()
        status, body = s2.req("POST", "/apis/apps/v1/namespaces/default/deployments",
                              DEPLOYMENT)
        assert status == 201, body
        out: dict[str, Any] = {}
        deadline = time.monotonic() + 120
        while len(out) < 6 and time.monotonic() < deadline:
            now = time.time() - killed
            for lock, holder in zip(LOCKS, holders(s2)):
                if holder and holder != ident:
                    out.setdefault(f"takeover_{lock}", now)
            rs = get(s2, "/apis/apps/v1/namespaces/default/replicasets?labelSelector="
                         "app%3Dfailover") or {}
            if rs.get("items"):
                out.setdefault("first_action_controller_manager", now)
            pods = get(s2, "/api/v1/namespaces/default/pods?labelSelector=app%3Dfailover") or {}
            if any(p["spec"].get("nodeName") for p in pods.get("items") or []):
                out.setdefault("first_action_scheduler", now)
            for n, log in zip(names, logs):
                t = switch_time(log, s1.url)
                if t is not None:
                    out.setdefault(f"switch_{n}", t - killed)
            time.sleep(0.05)
        if len(out) < 6:
            raise SystemExit(f"run incomplete after 120 s: {out}")
        return {k: round(v, 3) for k, v in out.items()}
    finally:
        for p in reversed(procs):
            p.stop()
        etcd.stop()


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(pct(values, 0.5), 3), "max": round(max(values), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="pyk8s-bench-failover-") as d:
            runs.append(one_run(Path(d)))
        print(f"run {i + 1}/{args.runs}: {runs[-1]}", file=sys.stderr, flush=True)
    both = [max(r["first_action_controller_manager"], r["first_action_scheduler"])
            for r in runs]
    switches = [v for r in runs for k, v in r.items() if k.startswith("switch_")]
    print(json.dumps({
        "runs": args.runs,
        "leader_election": {"lease_duration_s": 15, "renew_deadline_s": 10,
                            "retry_period_s": 2},
        "leader_takeover_s": {lock: summary([r[f"takeover_{lock}"] for r in runs])
                              for lock in LOCKS},
        "first_action_s": {
            "controller_manager": summary([r["first_action_controller_manager"]
                                           for r in runs]),
            "scheduler": summary([r["first_action_scheduler"] for r in runs]),
            "both": summary(both), "target": 20},
        "agent_switch_s": {**summary(switches), "target": 5},
        "per_run": runs,
    }))


if __name__ == "__main__":
    main()
