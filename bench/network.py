#!/usr/bin/env python3
"""Pod network benchmark: prints one JSON document.

Two test "hosts" (network namespaces on a bridge, tests/nethosts.py), a control plane in
the root namespace and one `pyk8s agent --runtime oci` per host, as tests/e2e/
test_multihost.py sets them up (root, runc, the CNI plugins, iperf3). A server pod on h1
(busybox httpd + iperf3 -s, the host's iperf3 and libraries bind-mounted), client pods on
h1 and h2 (iperf3 and the host's Python bind-mounted). For each path:

- `same_host`: client pod on h1 → the server pod's IP (the node's bridge);
- `cross_host`: client pod on h2 → the server pod's IP (the VXLAN overlay);
- `host_to_host`: h2 → h1 without pyk8s (iperf3 and httpd as host processes in the hosts);
- `cluster_ip`: client pod on h2 → a ClusterIP Service whose endpoint is the server pod
  (iptables DNAT, then the overlay);

TCP throughput (`iperf3 -t --seconds`, Gbit/s received) and the latency of `--requests`
sequential HTTP/1.0 requests, each on a new connection (p50 / p99, ms). Target: cross-host
throughput ≥ 0.8 × host to host.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import ROOT, pct  # noqa: E402

sys.path.insert(0, str(ROOT))

TARGET_CROSS_OVER_HOST = 0.8
IPERF_PORT = 5201
HTTP_PORT = 8080
# N sequential HTTP/1.0 requests, a new connection each: the latencies in seconds.
LATENCY_CLIENT = r"""
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
for _ in range(n):
    t = time.perf_counter()
    with socket.create_connection((host, port), 5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        while s.recv(65536):
            pass
    out.append(time.perf_counter() - t)
print(json.dumps(out))
"""


def host_mounts() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """hostPath volumes making the host's iperf3, libraries and this Python visible,
    read-only, at the same paths in a container (as tests/e2e/test_incluster.py)."""
    iperf3 = shutil.which("iperf3") or "/usr/bin/iperf3"
    paths = {"/usr/lib": ["/usr/lib", "/lib"], "/usr/lib64": ["/lib64"],
             sys.base_prefix: [sys.base_prefix], sys.prefix: [sys.prefix],
             iperf3: ["/usr/local/bin/iperf3"]}
    volumes, mounts = [], []
    for i, (host, targets) in enumerate(paths.items()):
        if not Path(host).exists():
            continue
        kind = "File" if Path(host).is_file() else "Directory"
        volumes.append({"name": f"host{i}", "hostPath": {"path": host, "type": kind}})
        mounts += [{"name": f"host{i}", "mountPath": t, "readOnly": True} for t in targets]
    return volumes, mounts


def bench_pod(c: Any, name: str, node: str, command: str) -> str:
    """A busybox pod on `node` with the host mounts running `command`; its IP."""
    from tests.e2e.test_multihost import IMAGE
    from tests.e2e.test_oci_runtime import apply, pod
    from tests.conftest import wait_for
    volumes, mounts = host_mounts()
    apply(c.up, {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": name, "labels": {"app": name}},
                 "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                          "volumes": volumes,
                          "containers": [{"name": "c", "image": IMAGE,
                                          "imagePullPolicy": "IfNotPresent",
                                          "volumeMounts": mounts,
                                          "command": ["sh", "-c", command]}]}})
    p = wait_for(f"pod {name} running", lambda: (lambda p: p if p.get("status", {}).get(
        "phase") == "Running" and p["status"].get("podIP") else None)(pod(c.up, name)),
        timeout=60)
    return str(p["status"]["podIP"])


def iperf_gbps(out: str) -> float:
    end = json.loads(out)["end"]
    return round(end["sum_received"]["bits_per_second"] / 1e9, 3)


def latencies(out: str) -> dict[str, float]:
    v = json.loads(out)
    return {"p50_ms": round(pct(v, 0.5) * 1000, 3), "p99_ms": round(pct(v, 0.99) * 1000, 3)}


def from_pod(c: Any, client: str, ip: str, http_port: int, seconds: float,
             requests: int) -> dict[str, Any]:
    """Throughput and latency from pod `client` to `ip`."""
    iperf = c.up.kubectl("exec", client, "--", "iperf3", "-c", ip, "-p", str(IPERF_PORT),
                         "-t", str(seconds), "-J", timeout=seconds + 60).stdout
    lat = c.up.kubectl("exec", client, "--", f"{sys.prefix}/bin/python3", "-c",
                       LATENCY_CLIENT, ip, str(http_port), str(requests),
                       timeout=120).stdout
    return {"gbit_s": iperf_gbps(iperf), **latencies(lat)}


def host_to_host(c: Any, d: Path, seconds: float, requests: int) -> dict[str, Any]:
    """The same measurements between the hosts' own network stacks, without pyk8s."""
    import subprocess
    h1, h2 = c.agents["h1"].host, c.agents["h2"].host
    www = d / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("hello from h1\n")
    procs = [h1.popen(["iperf3", "-s", "-p", str(IPERF_PORT + 1)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             h1.popen(["busybox", "httpd", "-f", "-p", str(HTTP_PORT + 1), "-h", str(www)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(0.5)
        iperf = h2.run(["iperf3", "-c", h1.ip, "-p", str(IPERF_PORT + 1), "-t",
                        str(seconds), "-J"], timeout=seconds + 60).stdout
        lat = h2.run([sys.executable, "-c", LATENCY_CLIENT, h1.ip, str(HTTP_PORT + 1),
                      str(requests)], timeout=120).stdout
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    return {"gbit_s": iperf_gbps(iperf), **latencies(lat)}


def run(seconds: float, requests: int) -> dict[str, Any]:
    from tests.e2e.test_multihost import Cluster
    with tempfile.TemporaryDirectory(prefix="pyk8s-bench-network-") as tmp:
        d = Path(tmp)
        c = Cluster(d)
        try:
            c.start()
            for name in ("h1", "h2"):
                c.join(name)
            for a in c.agents.values():
                c.ready(a)
            n1, n2 = c.agents["h1"].node, c.agents["h2"].node
            server = bench_pod(c, "server", n1, (
                "mkdir -p /www && echo hello > /www/index.html && "
                f"(iperf3 -s -p {IPERF_PORT} &) && exec httpd -f -p {HTTP_PORT} -h /www"))
            bench_pod(c, "client-h1", n1, "exec sleep 3600")
            bench_pod(c, "client-h2", n2, "exec sleep 3600")
            from tests.e2e.test_oci_runtime import apply
            apply(c.up, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "server"},
                         "spec": {"selector": {"app": "server"},
                                  "ports": [{"name": "iperf", "port": IPERF_PORT},
                                            {"name": "http", "port": 80,
                                             "targetPort": HTTP_PORT}]}})
            cluster_ip = c.up.kubectl_json("get", "service", "server")["spec"]["clusterIP"]
            time.sleep(2)   # the proxies' rules
            out = {
                "same_host": from_pod(c, "client-h1", server, HTTP_PORT, seconds, requests),
                "cross_host": from_pod(c, "client-h2", server, HTTP_PORT, seconds, requests),
                "host_to_host": host_to_host(c, d, seconds, requests),
                "cluster_ip": from_pod(c, "client-h2", cluster_ip, 80, seconds, requests),
            }
        finally:
            c.close()
    ratio = out["cross_host"]["gbit_s"] / max(out["host_to_host"]["gbit_s"], 1e-9)
    out["cross_over_host_throughput"] = round(ratio, 3)
    out["target_cross_over_host"] = TARGET_CROSS_OVER_HOST
    out["meets_target"] = ratio >= TARGET_CROSS_OVER_HOST
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="iperf3 run length")
    ap.add_argument("--requests", type=int, default=500,
                    help="sequential HTTP requests per path for the latency")
    args = ap.parse_args()
    print(json.dumps({"network": run(args.seconds, args.requests),
                      "seconds": args.seconds, "requests": args.requests}, indent=2))


if __name__ == "__main__":
    main()
