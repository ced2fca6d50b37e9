#!/usr/bin/env python3
"""Pod start-up latency benchmark: prints one JSON document.

`pyk8s up` with its local node on `--runtime` (default `process`); `--pods` pods (default
100 on the process runtime, 50 on oci; one `sleep 3600` container each, scheduled by the
scheduler) are created one after another from this process at `--rate` pods/s (0: as fast
as the API answers); a watch on the pods records when each is first seen Running with
its containers running. Latency = Running seen − create returned: p50 / p99 / max, and
the whole batch's time; `rss_mb_with_pods` is the process tree's RSS (the containers'
processes included). Their processes stop with `up` at the end. Upstream's SLO for pod
start-up (schedulable pods, images pre-pulled) is p99 ≤ 5 s; the target here is p99 <
0.5 s.

`--runtime oci` (root, runc, the CNI plugins, docker-registry and skopeo) also measures
image pulls from a local registry (tests/localregistry.py) on 127.0.0.1: the busybox test
image and a bigger one (busybox + a `--big-mb` MB layer of seeded random data, so it does
not compress) are pulled cold with `pyk8s image pull` into the node's store (download,
verify, unpack): seconds and MB/s (of the compressed bytes downloaded: the big image's
own layer; `*_net` without the CLI's own start-up, measured as a re-pull of the present
image); a second big image (another seed)
is pulled through the node by a pod with imagePullPolicy Always. The `--pods` pods then
use the cached busybox image (IfNotPresent). After `up` stops, `leftovers` lists what the
node left behind (mounts under the data dir, the bridge and its veths, pod cgroups, runc
containers, container processes, iptables rules): it should be empty.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import ROOT, Cluster, pct, tree_rss_mb, wait  # noqa: E402

sys.path.insert(0, str(ROOT))
from pyk8s.proxy.component import default_chain_prefix  # noqa: E402

NS = "default"
SLO_P99_S = 5.0
TARGET_P99_S = 0.5
KUBEMARK_P99_S = 2.06
NODE = "bench-node"
MB = 1_000_000


def pod(name: str, image: str = "busybox", pull_policy: str | None = None) -> dict:
    ctr: dict[str, Any] = {"name": "c", "image": image, "command": ["sleep", "3600"]}
    if pull_policy:
        ctr["imagePullPolicy"] = pull_policy
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS,
                                                            "labels": {"bench": "pods"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [ctr]}}


def started(o: dict) -> bool:
    """Running with every container running (a container that failed to start leaves a
    restartPolicy Always pod Running too)."""
    st = o.get("status") or {}
    states = [cs.get("state") or {} for cs in st.get("containerStatuses") or []]
    return st.get("phase") == "Running" and bool(states) and all("running" in x
                                                                  for x in states)


def wait_ready(c: Cluster) -> None:
    c.wait_api(60)
    wait(lambda: c.ready_nodes() >= 1, 60, "node Ready", c.proc)
    wait(lambda: c.req("GET", f"/api/v1/namespaces/{NS}/serviceaccounts/default")[0]
         == 200, 30, "default service account", c.proc)


def start_up(c: Cluster, n: int, rate: float, make: Callable[[str], dict],
             timeout: float = 120.0) -> dict[str, Any]:
    """Create `n` pods (`make(name)`), watch them until all are Running; latencies."""
    running: dict[str, float] = {}
    failed: dict[str, str] = {}
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
                o = json.loads(line)["object"]
                name = o["metadata"]["name"]
                st = o.get("status") or {}
                states = [cs.get("state") or {} for cs in st.get("containerStatuses") or []]
                bad = [s["terminated"] for s in states if "terminated" in s]
                if bad and name not in failed:   # a pod whose container did not start is
                    failed[name] = f"{bad[0].get('reason')}: {bad[0].get('message', '')}"
                    done.set()                   # "Running" too (restartPolicy Always)
                    return
                if started(o) and name not in running:
                    running[name] = time.monotonic()
                    if len(running) >= n:
                        done.set()
                        return
    threading.Thread(target=watch, daemon=True).start()
    time.sleep(0.3)   # the watch is open
    created: dict[str, float] = {}
    t0 = time.monotonic()
    for i in range(n):
        if rate > 0:
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        name = f"p-{i:04d}"
        st, body = c.req("POST", f"/api/v1/namespaces/{NS}/pods", make(name))
        if st != 201:
            raise SystemExit(f"create {name}: {st} {body}")
        created[name] = time.monotonic()
    create_s = time.monotonic() - t0
    if not done.wait(timeout):
        raise SystemExit(f"only {len(running)}/{n} pods Running after {timeout:.0f} s")
    if failed:
        raise SystemExit(f"a container did not start: {failed}")
    lat = [running[k] - created[k] for k in created]
    p99 = pct(lat, 0.99)
    return {"pods": n, "rate": rate, "create_s": round(create_s, 3),
            "all_running_s": round(max(running.values()) - t0, 3),
            "p50_ms": round(pct(lat, 0.5) * 1000, 1), "p99_ms": round(p99 * 1000, 1),
            "max_ms": round(max(lat) * 1000, 1),
            "rss_mb_with_pods": round(tree_rss_mb(c.proc.p.pid), 1),
            "slo_p99_s": SLO_P99_S, "p99_vs_slo": round(p99 / SLO_P99_S, 3)}


def run_process(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pyk8s-bench-pods-") as d:
        c = Cluster(Path(d), "--node-name", NODE, "--runtime", "process",
                    "--log-level", args.log_level)
        try:
            wait_ready(c)
            out = start_up(c, args.pods, args.rate, pod)
        finally:
            c.proc.stop()
    return {"runtime": "process", **out}


# -- oci -------------------------------------------------------------------------------------
def oci_missing() -> list[str]:
    """What `--runtime oci` needs and this host lacks."""
    missing = [] if os.geteuid() == 0 else ["root"]
    missing += [t for t in ("runc", "docker-registry", "skopeo", "ip") if not shutil.which(t)]
    if not any(Path(p, "bridge").exists() for p in ("/usr/lib/cni", "/opt/cni/bin")):
        missing.append("CNI plugins (/usr/lib/cni)")
    return missing


def build_big_image(dest: Path, size_mb: int, seed: int) -> int:
    """busybox + one layer of `size_mb` MB of seeded random data in 16 MB files (an OCI
    layout tagged latest); returns the compressed size of that layer (the busybox base
    layer is in the node's store already when it is pulled)."""
    from tests.images import DEFAULT_PATH, LayerBuilder, build_image_layout, busybox_base_layer
    rnd = random.Random(seed)
    lb = LayerBuilder()
    left, i = size_mb * MB, 0
    while left > 0:
        chunk = min(left, 16 * MB)
        lb.file(f"data/blob-{i:02d}", rnd.randbytes(chunk))
        left, i = left - chunk, i + 1
    data = lb.gzipped()
    build_image_layout(dest, [busybox_base_layer(), data], {"Env": [DEFAULT_PATH],
                                                           "Cmd": ["sh"]})
    return len(data[0])


def cli_pull(data_dir: Path, registry: str, ref: str) -> float:
    """`pyk8s image pull` into the node's store; its wall time."""
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "image", "pull", "--data-dir",
                        str(data_dir), "--insecure-registry", registry, ref], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"pyk8s image pull {ref}: {p.stderr or p.stdout}")
    return time.monotonic() - t0


def pod_pull(c: Cluster, image: str, timeout: float = 300.0) -> dict[str, Any]:
    """A pod with imagePullPolicy Always of a cold image: create → Running, and the
    kubelet's own pull time (its Pulled event)."""
    body = pod("pull-big", image, "Always")
    body["metadata"]["labels"] = {"bench": "pull"}
    t0 = time.monotonic()
    st, resp = c.req("POST", f"/api/v1/namespaces/{NS}/pods", body)
    if st != 201:
        raise SystemExit(f"create pull-big: {st} {resp}")
    wait(lambda: started(c.req("GET", f"/api/v1/namespaces/{NS}/pods/pull-big")[1]),
         timeout, "pull-big Running", c.proc, step=0.05)
    running_s = time.monotonic() - t0
    _, evs = c.req("GET", f"/api/v1/namespaces/{NS}/events?fieldSelector="
                   "involvedObject.name%3Dpull-big")
    pulled = [e["message"] for e in evs.get("items", []) if e.get("reason") == "Pulled"]
    c.req("DELETE", f"/api/v1/namespaces/{NS}/pods/pull-big?gracePeriodSeconds=0")
    out: dict[str, Any] = {"create_to_running_s": round(running_s, 3),
                           "kubelet_event": pulled[-1] if pulled else ""}
    m = re.search(r"pulled image \S+ in ([0-9.]+)(ms|s) ", out["kubelet_event"])
    if m:   # the kubelet's own pull time (a Go duration)
        out["kubelet_pull_s"] = round(float(m[1]) / (1000 if m[2] == "ms" else 1), 3)
    return out


def runc_ids(agent: Path) -> list[str]:
    """The node's runc containers."""
    if not (agent / "runc").is_dir():
        return []
    return subprocess.run(["runc", "--root", str(agent / "runc"), "list", "-q"],
                          capture_output=True, text=True).stdout.split()


def oci_leftovers(d: Path, agent: Path, bridge: str, cidr: str) -> list[str]:
    """What a stopped node must not leave behind."""
    out: list[str] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp == str(d) or mp.startswith(str(d) + "/"):
            out.append(f"mount {mp}")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    out += [f"link {line.split(':')[1].strip()}" for line in links.splitlines()
            if f" {bridge}:" in line or f"master {bridge} " in line]
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        root = ctrl / f"pyk8s-{NODE}"
        if root.is_dir():
            out += [f"cgroup {p}" for p in sorted(root.glob("pod*"))] or [f"cgroup {root}"]
    out += [f"runc {i}" for i in runc_ids(agent)]
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                r = os.readlink(p / "root")
            except OSError:
                continue
            if r.startswith(str(d) + "/"):
                out.append(f"process {p.name} ({(p / 'comm').read_text().strip()})")
    if shutil.which("iptables-save"):
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        net = cidr.split(".0.0/")[0] + "."
        prefix = default_chain_prefix(bridge) + "-"     # the node's proxy's chains
        out += [f"iptables {r}" for r in rules.splitlines()
                if not r.startswith("#") and (f" {net}" in r or bridge in r or prefix in r)]
    return out


def force_unmount(d: Path) -> None:
    """Unmount what is left under `d` (deepest first) so the temp dir can go."""
    mps = [line.split()[4].replace("\\040", " ")
           for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mp in sorted((m for m in mps if m.startswith(str(d) + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def run_oci(args: argparse.Namespace) -> dict[str, Any]:
    missing = oci_missing()
    if missing:
        raise SystemExit(f"--runtime oci needs: {', '.join(missing)}")
    sys.path.insert(0, str(ROOT))
    from tests.images import build_busybox_image
    from tests.localregistry import LocalRegistry
    from pyk8s.kubelet import cgroups
    bridge = f"pk8b{secrets.token_hex(3)}"
    cidr = f"10.{random.randint(100, 250)}.0.0/16"
    services = f"10.{random.randint(1, 90)}.0.0/16"
    out: dict[str, Any] = {"runtime": "oci"}
    d = Path(tempfile.mkdtemp(prefix="pyk8s-bench-pods-"))
    try:
        with LocalRegistry() as reg:
            t0 = time.monotonic()
            imgs = d / "images"
            build_busybox_image(imgs / "busybox")
            big_bytes = build_big_image(imgs / "big", args.big_mb, seed=1)
            build_big_image(imgs / "big2", args.big_mb, seed=2)
            build_s = time.monotonic() - t0
            t0 = time.monotonic()
            for name in ("busybox", "big", "big2"):
                reg.push(imgs / name, name, "latest")
            push_s = time.monotonic() - t0
            bb_bytes = sum(f.stat().st_size for f in (imgs / "busybox" / "blobs").rglob("*"))
            up = d / "up"
            up.mkdir()
            c = Cluster(up, "--node-name", NODE, "--runtime", "oci", "--insecure-registry",
                        reg.host, "--cni-bridge", bridge, "--cluster-cidr", cidr,
                        "--service-cluster-ip-range", services,
                        "--log-level", args.log_level)
            try:
                wait_ready(c)
                bb_s = cli_pull(up, reg.host, reg.image("busybox"))
                big_s = cli_pull(up, reg.host, reg.image("big"))
                again_s = cli_pull(up, reg.host, reg.image("big"))   # present: CLI overhead
                net_s = max(big_s - again_s, 1e-3)
                out["pull"] = {
                    "via": "pyk8s image pull (download + verify + unpack into the node's "
                           "store)",
                    "busybox": {"mb": round(bb_bytes / MB, 2), "cold_s": round(bb_s, 3)},
                    "big": {"downloaded_mb": round(big_bytes / MB, 1), "cold_s": round(big_s, 3),
                            "mb_per_s": round(big_bytes / MB / big_s, 1),
                            "cold_s_net": round(net_s, 3),
                            "mb_per_s_net": round(big_bytes / MB / net_s, 1)},
                    "present_repull_s": round(again_s, 3),
                    "through_pod_always": pod_pull(c, reg.image("big2"))}
                via_pod = out["pull"]["through_pod_always"]
                if via_pod.get("kubelet_pull_s"):
                    via_pod["kubelet_mb_per_s"] = round(
                        big_bytes / MB / max(via_pod["kubelet_pull_s"], 1e-3), 1)
                wait(lambda: not c.req("GET", f"/api/v1/namespaces/{NS}/pods/pull-big")[0]
                     == 200, 60, "pull-big deleted", c.proc)
                wait(lambda: not runc_ids(up / "agent"), 60, "pull-big's container gone",
                     c.proc, step=0.1)   # its teardown does not overlap the batch
                image = reg.image("busybox")
                res = start_up(c, args.pods, args.rate,
                               lambda name: pod(name, image, "IfNotPresent"))
            finally:
                t0 = time.monotonic()
                c.proc.stop(120)
                stop_s = time.monotonic() - t0
            out.update(res)
            p99 = res["p99_ms"] / 1000
            out.update({"kubemark_p99_s": KUBEMARK_P99_S,
                        "p99_vs_kubemark": round(p99 / KUBEMARK_P99_S, 3),
                        "target_p99_s": TARGET_P99_S,
                        "p99_vs_target": round(p99 / TARGET_P99_S, 3),
                        "images_build_s": round(build_s, 2), "push_s": round(push_s, 2),
                        "stop_s": round(stop_s, 2)})
            out["leftovers"] = oci_leftovers(d, up / "agent", bridge, cidr)
    finally:
        force_unmount(d)
        cgroups.remove(f"/pyk8s-{NODE}")   # a leftover reported once, not again
        shutil.rmtree(d, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", choices=["process", "oci"], default="process")
    ap.add_argument("--pods", type=int, default=None,
                    help="pods to start (default 100; 50 with --runtime oci)")
    ap.add_argument("--rate", type=float, default=0.0, help="creates per second (0: unpaced)")
    ap.add_argument("--big-mb", type=int, default=64,
                    help="oci: the big image's random-data layer, MB")
    ap.add_argument("--log-level", default="WARNING", help="`pyk8s up`'s log level")
    args = ap.parse_args()
    if args.pods is None:
        args.pods = 50 if args.runtime == "oci" else 100
    out = run_oci(args) if args.runtime == "oci" else run_process(args)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
