"""The kubelet's resource stats (stats.py): Summary API shaping over fake cgroup trees (v1
and v2) and a fake /proc, the usageNanoCores rate between samples, the resource metrics'
text format, and the API server's nodes/proxy plumbing (request info, discovery)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pyk8s.api.catalogue import Catalogue
from pyk8s.apiserver import discovery, requestinfo
from pyk8s.apiserver.podproxy import _split_scheme_name_port
from pyk8s.kubelet import cgroups, stats
from pyk8s.kubelet.runtime import ContainerStatus
from pyk8s.kubelet.stats import StatsProvider, go_float, render_resource_metrics

MI = 1024 * 1024
NODE_CG = "/pyk8s-n1"
POD_UID = "uid-1"


class Clock:
    """cgroups.usage's time source, moved by hand."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def time(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(cgroups, "time", c)
    return c


class FakeCgroups:
    """A cgroup v1 (one dir per controller) or v2 tree under a temp dir."""

    def __init__(self, root: Path, v2: bool = False) -> None:
        self.root, self.v2 = root, v2
        if v2:
            root.mkdir(parents=True, exist_ok=True)
            (root / "cgroup.controllers").write_text("cpu memory pids\n")

    def set(self, rel: str, cpu_ns: int, mem: int, inactive: int = 0, rss: int = 0,
            limit: int | None = None, pids: int | None = None, faults: int = 7) -> None:
        rel = rel.strip("/")
        if self.v2:
            d = self.root / rel
            d.mkdir(parents=True, exist_ok=True)
            (d / "cpu.stat").write_text(f"usage_usec {cpu_ns // 1000}\nuser_usec 1\n")
            if rel:   # a v2 root has no memory.current
                (d / "memory.current").write_text(f"{mem}\n")
                (d / "memory.max").write_text("max\n" if limit is None else f"{limit}\n")
            (d / "memory.stat").write_text(f"anon {rss}\ninactive_file {inactive}\n"
                                           f"pgfault {faults}\npgmajfault 1\n")
            if pids is not None:
                (d / "pids.current").write_text(f"{pids}\n")
            return
        for c in ("cpuacct", "memory", "pids"):
            (self.root / c / rel).mkdir(parents=True, exist_ok=True)
        (self.root / "cpuacct" / rel / "cpuacct.usage").write_text(f"{cpu_ns}\n")
        m = self.root / "memory" / rel
        (m / "memory.usage_in_bytes").write_text(f"{mem}\n")
        (m / "memory.limit_in_bytes").write_text(
            f"{limit if limit is not None else 9223372036854771712}\n")
        (m / "memory.stat").write_text(
            f"cache 1\ntotal_rss {rss}\ntotal_inactive_file {inactive}\n"
            f"total_pgfault {faults}\ntotal_pgmajfault 1\n")
        if pids is not None:
            (self.root / "pids" / rel / "pids.current").write_text(f"{pids}\n")


def fake_proc(d: Path) -> Path:
    (d / "sys" / "kernel").mkdir(parents=True)
    (d / "meminfo").write_text("MemTotal:       1024000 kB\nMemFree:         512000 kB\n"
                               "Inactive(file):   12000 kB\nAnonPages:        20000 kB\n")
    (d / "stat").write_text("cpu  100 0 50 1000 10 0 0 0 0 0\ncpu0 100 0 50 1000 10 0 0 0\n"
                            "btime 1699990000\n")
    (d / "vmstat").write_text("pgfault 1234\npgmajfault 12\n")
    (d / "loadavg").write_text("0.10 0.20 0.30 2/345 6789\n")
    (d / "sys" / "kernel" / "pid_max").write_text("4194304\n")
    (d / "sys" / "kernel" / "threads-max").write_text("190000\n")
    return d


class FakeRuntime:
    """A runtime with cgroups (as oci's): cgroup_of / pod_cgroup."""

    def __init__(self, containers: dict[str, list[ContainerStatus]],
                 cgroups_of: dict[str, str]) -> None:
        self.containers = containers
        self.cgroups_of = cgroups_of

    def pod_containers(self, uid: str) -> list[ContainerStatus]:
        return self.containers.get(uid, [])

    def cgroup_of(self, container_id: str) -> str | None:
        return self.cgroups_of.get(container_id.split("://", 1)[-1])

    def pod_cgroup(self, uid: str) -> str:
        return f"{NODE_CG}/pod{uid}"


class NoCgroupRuntime:
    """As the process and fake runtimes: no cgroup_of."""

    def __init__(self, containers: dict[str, list[ContainerStatus]]) -> None:
        self.containers = containers

    def pod_containers(self, uid: str) -> list[ContainerStatus]:
        return self.containers.get(uid, [])


def cs(name: str, cid: str, state: str = "running",
       started: str = "2024-01-02T03:04:05Z") -> ContainerStatus:
    return ContainerStatus(name=name, image="busybox", image_id="", container_id=cid,
                           state=state, started_at=started)


def fake_kubelet(runtime: Any, pods: dict[str, dict[str, Any]],
                 static: dict[str, dict[str, Any]] | None = None) -> Any:
    all_pods = {**pods, **(static or {})}
    return SimpleNamespace(
        name="n1", runtime=runtime, static=static or {},
        _uids={k: p["metadata"]["uid"] for k, p in all_pods.items()},
        pods=SimpleNamespace(store=SimpleNamespace(get=pods.get)),
        o=SimpleNamespace(data_dir=""))


def api_pod(ns: str, name: str, uid: str, start: str | None = "2024-01-02T03:04:00Z",
            phase: str = "Running") -> dict[str, Any]:
    st: dict[str, Any] = {"phase": phase}
    if start:
        st["startTime"] = start
    return {"metadata": {"namespace": ns, "name": name, "uid": uid}, "status": st}


def oci_setup(tmp_path: Path, v2: bool = False) -> tuple[FakeCgroups, Any]:
    """Node root, a pod cgroup with two running containers (one without a cgroup: it
    just exited in the runtime's view), an exited container, a pod without containers."""
    cg = FakeCgroups(tmp_path / "cg", v2=v2)
    cg.set("/", cpu_ns=50_000_000_000, mem=800 * MI, inactive=100 * MI, rss=300 * MI)
    pod_cg = f"{NODE_CG}/pod{POD_UID}"
    cg.set(pod_cg, cpu_ns=3_000_000_000, mem=60 * MI, inactive=10 * MI, rss=40 * MI,
           limit=128 * MI, pids=3)
    cg.set(f"{pod_cg}/c1", cpu_ns=2_000_000_000, mem=50 * MI, inactive=10 * MI,
           rss=35 * MI, limit=64 * MI, pids=2)
    rt = FakeRuntime({POD_UID: [cs("app", "containerd://c1"), cs("side", "containerd://c2"),
                                cs("init", "containerd://c0", state="exited")],
                      "uid-2": []},
                     {"c1": f"{pod_cg}/c1"})
    k = fake_kubelet(rt, {"default/web": api_pod("default", "web", POD_UID),
                          "kube-system/idle": api_pod("kube-system", "idle", "uid-2"),
                          "default/done": api_pod("default", "done", "uid-3",
                                                  phase="Succeeded"),
                          "default/new": api_pod("default", "new", "uid-4", start=None)})
    return cg, k


# -- Summary shaping ---------------------------------------------------------------------
async def test_summary_oci_v1(tmp_path: Path, clock: Clock) -> None:
    cg, k = oci_setup(tmp_path)
    p = StatsProvider(k, cgroup_root=cg.root, proc=fake_proc(tmp_path / "proc"),
                      fs_path=str(tmp_path), sample_interval=0.125)
    slept: list[float] = []

    async def sleep(s: float) -> None:   # the second sample: 0.125 s on
        slept.append(s)
        clock.t += s
        cg.set("/", cpu_ns=50_000_000_000 + 50_000_000, mem=800 * MI, inactive=100 * MI,
               rss=300 * MI)
        cg.set(f"{NODE_CG}/pod{POD_UID}", cpu_ns=3_000_000_000 + 20_000_000, mem=60 * MI,
               inactive=10 * MI, rss=40 * MI, limit=128 * MI, pids=3)
        cg.set(f"{NODE_CG}/pod{POD_UID}/c1", cpu_ns=2_000_000_000 + 10_000_000,
               mem=50 * MI, inactive=10 * MI, rss=35 * MI, limit=64 * MI, pids=2)

    p.sleep = sleep
    s = await p.summary()
    assert slept == [0.125]
    node = s["node"]
    assert node["nodeName"] == "n1"
    assert node["startTime"] == "2023-11-14T19:26:40Z"          # btime
    t = stats.rfc3339(clock.t)
    assert node["cpu"] == {"time": t, "usageNanoCores": 400_000_000,
                           "usageCoreNanoSeconds": 50_050_000_000}
    assert node["memory"] == {"time": t, "availableBytes": 1024000 * 1024 - 700 * MI,
                              "usageBytes": 800 * MI, "workingSetBytes": 700 * MI,
                              "rssBytes": 300 * MI, "pageFaults": 7, "majorPageFaults": 1}
    assert set(node["fs"]) == {"time", "availableBytes", "capacityBytes", "usedBytes",
                               "inodesFree", "inodes", "inodesUsed"}
    assert node["fs"]["capacityBytes"] > 0
    assert node["rlimit"] == {"time": node["rlimit"]["time"], "maxpid": 190000,
                              "curproc": 345}
    assert list(node) == ["nodeName", "startTime", "cpu", "memory", "fs", "rlimit"]
    # Finished pods and pods without a start time are left out; sorted by ns/name.
    assert [(x["podRef"]["namespace"], x["podRef"]["name"]) for x in s["pods"]] == [
        ("default", "web"), ("kube-system", "idle")]
    web, idle = s["pods"]
    assert web["podRef"] == {"name": "web", "namespace": "default", "uid": POD_UID}
    assert web["startTime"] == "2024-01-02T03:04:00Z"
    app, side = web["containers"]            # only running containers
    assert app == {"name": "app", "startTime": "2024-01-02T03:04:05Z",
                   "cpu": {"time": t, "usageNanoCores": 80_000_000,
                           "usageCoreNanoSeconds": 2_010_000_000},
                   "memory": {"time": t, "availableBytes": 24 * MI, "usageBytes": 50 * MI,
                              "workingSetBytes": 40 * MI, "rssBytes": 35 * MI,
                              "pageFaults": 7, "majorPageFaults": 1}}
    assert side == {"name": "side", "startTime": "2024-01-02T03:04:05Z"}   # no cgroup
    assert web["cpu"] == {"time": t, "usageNanoCores": 160_000_000,
                          "usageCoreNanoSeconds": 3_020_000_000}
    assert web["memory"]["workingSetBytes"] == 50 * MI
    assert web["memory"]["availableBytes"] == 78 * MI
    assert web["process_stats"] == {"process_count": 3}
    # A pod whose pod cgroup is not there: no figures (its only container has none).
    assert idle == {"podRef": {"name": "idle", "namespace": "kube-system", "uid": "uid-2"},
                    "startTime": "2024-01-02T03:04:00Z", "containers": []}

    only = await p.summary(only_cpu_and_memory=True)
    assert "fs" not in only["node"] and "rlimit" not in only["node"]
    assert "process_stats" not in only["pods"][0]


async def test_summary_cgroup_v2_root_from_proc(tmp_path: Path, clock: Clock) -> None:
    """A v2 root has cpu.stat but no memory.current: memory from /proc/meminfo."""
    cg, k = oci_setup(tmp_path, v2=True)
    p = StatsProvider(k, cgroup_root=cg.root, proc=fake_proc(tmp_path / "proc"),
                      fs_path=str(tmp_path))
    s = await p.collect(rate=False)
    mem = s["node"]["memory"]
    used = (1024000 - 512000) * 1024
    assert mem["usageBytes"] == used
    assert mem["workingSetBytes"] == used - 12000 * 1024
    assert mem["rssBytes"] == 300 * MI               # root memory.stat's anon
    assert mem["availableBytes"] == 1024000 * 1024 - mem["workingSetBytes"]
    assert s["node"]["cpu"]["usageCoreNanoSeconds"] == 50_000_000_000
    assert "usageNanoCores" not in s["node"]["cpu"]
    app = s["pods"][0]["containers"][0]
    assert app["memory"]["workingSetBytes"] == 40 * MI
    assert app["memory"]["availableBytes"] == 24 * MI
    assert s["pods"][0]["memory"]["rssBytes"] == 40 * MI
    assert s["pods"][0]["process_stats"] == {"process_count": 3}


async def test_summary_without_cgroups(tmp_path: Path, clock: Clock) -> None:
    """process / fake runtimes: node stats, pods and containers without cpu / memory;
    a static pod counts (its own uid, not its mirror's)."""
    cg = FakeCgroups(tmp_path / "cg")
    cg.set("/", cpu_ns=9_000_000_000, mem=100 * MI)
    rt = NoCgroupRuntime({"u1": [cs("c", "process://1")],
                          "s1": [cs("web", "process://2", started="2024-05-05T05:05:05Z")]})
    static = api_pod("kube-system", "web-n1", "s1", start=None)
    mirror = api_pod("kube-system", "web-n1", "mirror-uid")
    k = fake_kubelet(rt, {"default/a": api_pod("default", "a", "u1")},
                     static={"kube-system/web-n1": static})
    k.pods.store.get = {"default/a": api_pod("default", "a", "u1"),
                        "kube-system/web-n1": mirror}.get
    p = StatsProvider(k, cgroup_root=cg.root, proc=fake_proc(tmp_path / "proc"))
    p.sleep = _no_sleep(clock)
    s = await p.summary()
    assert s["node"]["cpu"]["usageCoreNanoSeconds"] == 9_000_000_000
    assert s["node"]["memory"]["workingSetBytes"] == 100 * MI
    assert s["pods"] == [
        {"podRef": {"name": "a", "namespace": "default", "uid": "u1"},
         "startTime": "2024-01-02T03:04:00Z",
         "containers": [{"name": "c", "startTime": "2024-01-02T03:04:05Z"}]},
        {"podRef": {"name": "web-n1", "namespace": "kube-system", "uid": "s1"},
         "startTime": "2024-05-05T05:05:05Z",     # no status yet: its container's start
         "containers": [{"name": "web", "startTime": "2024-05-05T05:05:05Z"}]}]
    text = await p.resource_metrics()
    assert "container_start_time_seconds{container=\"c\",namespace=\"default\",pod=\"a\"}" \
        in text
    assert "container_cpu_usage_seconds_total" not in text
    assert "pod_memory_working_set_bytes" not in text
    assert f"\nnode_cpu_usage_seconds_total 9 {int(clock.t * 1000)}\n" in text


def _no_sleep(clock: Clock) -> Any:
    async def sleep(s: float) -> None:
        clock.t += s
    return sleep


async def test_pod_without_pod_cgroup_sums_containers(tmp_path: Path, clock: Clock) -> None:
    cg = FakeCgroups(tmp_path / "cg")
    cg.set("/", cpu_ns=1, mem=1)
    cg.set("/x/a", cpu_ns=1_000, mem=10 * MI, inactive=MI, rss=5)
    cg.set("/x/b", cpu_ns=2_000, mem=20 * MI, inactive=MI, rss=6)

    class RT(FakeRuntime):
        def pod_cgroup(self, uid: str) -> str:
            return "/nonexistent"

    rt = RT({"u": [cs("a", "x://a"), cs("b", "x://b")]}, {"a": "/x/a", "b": "/x/b"})
    k = fake_kubelet(rt, {"ns/p": api_pod("ns", "p", "u")})
    p = StatsProvider(k, cgroup_root=cg.root, proc=fake_proc(tmp_path / "proc"))
    s = await p.collect(rate=False)
    pod = s["pods"][0]
    assert pod["cpu"]["usageCoreNanoSeconds"] == 3_000
    assert pod["memory"]["workingSetBytes"] == 28 * MI
    assert pod["memory"]["rssBytes"] == 11
    assert "availableBytes" not in pod["memory"]


# -- the rate -----------------------------------------------------------------------------
async def test_usage_nano_cores_rate(tmp_path: Path, clock: Clock) -> None:
    cg = FakeCgroups(tmp_path / "cg")
    rel = "/pod/c"
    cpu = [1_000_000_000]
    cg.set(rel, cpu_ns=cpu[0], mem=MI)
    p = StatsProvider(SimpleNamespace(o=None), cgroup_root=cg.root, proc=tmp_path,
                      sample_interval=0.125)
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        clock.t += s
        cpu[0] += 31_250_000           # a quarter core over 0.125 s
        cg.set(rel, cpu_ns=cpu[0], mem=MI)

    p.sleep = sleep
    # No previous sample: two, SAMPLE_INTERVAL apart.
    r = (await p.readings([rel]))[rel]
    assert slept == [0.125] and r.nano_cores == 250_000_000
    assert r.usage.cpu_usage_ns == 1_031_250_000
    # A previous sample 10 s old: the rate over those 10 s, no waiting.
    clock.t += 10
    cpu[0] += 5_000_000_000
    cg.set(rel, cpu_ns=cpu[0], mem=MI)
    r = (await p.readings([rel]))[rel]
    assert slept == [0.125] and r.nano_cores == 500_000_000
    # Right after: too short a window, the last rate again (the kept sample stays).
    clock.t += 0.001
    r = (await p.readings([rel]))[rel]
    assert slept == [0.125] and r.nano_cores == 500_000_000
    # A previous sample older than 30 s: sampled anew.
    clock.t += 31
    r = (await p.readings([rel]))[rel]
    assert slept == [0.125, 0.125] and r.nano_cores == 250_000_000
    # The counter went back (a new cgroup under the same path): sampled anew.
    clock.t += 1
    cpu[0] = 10
    cg.set(rel, cpu_ns=cpu[0], mem=MI)
    r = (await p.readings([rel]))[rel]
    assert len(slept) == 3 and r.nano_cores == 250_000_000
    # Without `rate` (the resource metrics): no waiting, no rate.
    clock.t += 100
    r = (await p.readings([rel], rate=False))[rel]
    assert len(slept) == 3 and r.nano_cores is None
    # A cgroup that is gone: no reading.
    assert await p.readings(["/gone"]) == {}


async def test_one_wait_for_many_cgroups(tmp_path: Path, clock: Clock) -> None:
    cg = FakeCgroups(tmp_path / "cg")
    for i in range(5):
        cg.set(f"/c{i}", cpu_ns=0, mem=MI)
    p = StatsProvider(SimpleNamespace(o=None), cgroup_root=cg.root, proc=tmp_path,
                      sample_interval=0.125)
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        clock.t += s
        for i in range(5):
            cg.set(f"/c{i}", cpu_ns=i * 10_000_000, mem=MI)

    p.sleep = sleep
    rd = await p.readings([f"/c{i}" for i in range(5)])
    assert slept == [0.125]
    assert [rd[f"/c{i}"].nano_cores for i in range(5)] == [i * 80_000_000 for i in range(5)]


def test_memory_limit(tmp_path: Path) -> None:
    v1 = FakeCgroups(tmp_path / "v1")
    v1.set("/a", 0, 0, limit=64 * MI)
    v1.set("/b", 0, 0)
    assert cgroups.memory_limit("/a", v1.root) == 64 * MI
    assert cgroups.memory_limit("/b", v1.root) is None
    assert cgroups.memory_limit("/none", v1.root) is None
    v2 = FakeCgroups(tmp_path / "v2", v2=True)
    v2.set("/a", 0, 0, limit=32 * MI)
    v2.set("/b", 0, 0)
    assert cgroups.memory_limit("/a", v2.root) == 32 * MI
    assert cgroups.memory_limit("/b", v2.root) is None


# -- /metrics/resource --------------------------------------------------------------------
def test_go_float() -> None:
    cases = {10.0: "10", 0.0: "0", 1.0: "1", 0.591647: "0.591647", 1.5: "1.5",
             1624396248.3020916: "1.6243962483020916e+09", 1e6: "1e+06", 123456.0: "123456",
             1234567.0: "1.234567e+06", 12345678.0: "1.2345678e+07", 0.0001: "0.0001",
             0.00001: "1e-05", 1.5e16: "1.5e+16", 1e100: "1e+100", -2.5: "-2.5",
             100.25: "100.25", 7.34003e-05: "7.34003e-05"}
    for v, want in cases.items():
        assert go_float(v) == want, (v, go_float(v))


def test_resource_metrics_text() -> None:
    """Upstream's resource_metrics_test cases (families sorted by name, as Gather does)."""
    ts = 1624396278.302091597
    summary = {
        "node": {"cpu": {"time": ts, "usageCoreNanoSeconds": 10_000_000_000},
                 "memory": {"time": ts, "workingSetBytes": 1000, "usageBytes": 2000}},
        "pods": [
            {"podRef": {"name": "pod_a", "namespace": "namespace_a", "uid": "a"},
             "startTime": ts - 60,
             "containers": [
                 {"name": "container_b", "startTime": ts - 120,
                  "cpu": {"time": ts, "usageCoreNanoSeconds": 10_000_000_000},
                  "memory": {"time": ts, "workingSetBytes": 1000}},
                 {"name": "container_a", "startTime": ts - 30,
                  "cpu": {"time": ts, "usageCoreNanoSeconds": 10_000_000_000},
                  "memory": {"time": ts, "workingSetBytes": 1000}}],
             "cpu": {"time": ts, "usageCoreNanoSeconds": 10_000_000_000},
             "memory": {"time": ts, "workingSetBytes": 1000}},
            {"podRef": {"name": "pod_b", "namespace": "namespace_b", "uid": "b"},
             "startTime": ts,
             "containers": [{"name": "container_a", "startTime": ts - 600}]}]}
    assert render_resource_metrics(summary) == """\
# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="container_a",namespace="namespace_a",pod="pod_a"} 10 1624396278302
container_cpu_usage_seconds_total{container="container_b",namespace="namespace_a",pod="pod_a"} 10 1624396278302
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="container_a",namespace="namespace_a",pod="pod_a"} 1000 1624396278302
container_memory_working_set_bytes{container="container_b",namespace="namespace_a",pod="pod_a"} 1000 1624396278302
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="container_a",namespace="namespace_a",pod="pod_a"} 1.6243962483020916e+09
container_start_time_seconds{container="container_a",namespace="namespace_b",pod="pod_b"} 1.6243956783020916e+09
container_start_time_seconds{container="container_b",namespace="namespace_a",pod="pod_a"} 1.6243961583020916e+09
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 10 1624396278302
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1000 1624396278302
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="namespace_a",pod="pod_a"} 10 1624396278302
# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace="namespace_a",pod="pod_a"} 1000 1624396278302
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
# HELP scrape_error [ALPHA] (Deprecated since 1.29.0) 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
"""


def test_resource_metrics_error_and_escaping() -> None:
    text = render_resource_metrics(None)
    assert text.splitlines()[2:] == [
        "resource_scrape_error 1",
        "# HELP scrape_error [ALPHA] (Deprecated since 1.29.0) 1 if there was an error "
        "while getting container metrics, 0 otherwise",
        "# TYPE scrape_error gauge", "scrape_error 1"]
    s = {"node": {}, "pods": [{"podRef": {"name": 'a"b\\c', "namespace": "n", "uid": "u"},
                               "containers": [{"name": "c", "startTime": 0}]}]}
    text = render_resource_metrics(s)
    assert "container_start_time_seconds" not in text    # start time <= 0: left out
    s["pods"][0]["containers"][0]["startTime"] = 5.0
    assert 'pod="a\\"b\\\\c"} 5\n' in render_resource_metrics(s)


async def test_resource_metrics_scrape_error(tmp_path: Path) -> None:
    class Broken:
        def pod_containers(self, uid: str) -> list[ContainerStatus]:
            raise RuntimeError("boom")

    k = fake_kubelet(Broken(), {"d/p": api_pod("d", "p", "u")})
    k._uids = None     # the kubelet's state unreadable: the scrape fails
    p = StatsProvider(k, cgroup_root=tmp_path, proc=tmp_path)
    assert "\nresource_scrape_error 1\n" in await p.resource_metrics()


# -- the API server's nodes/proxy plumbing ----------------------------------------------
def test_request_info_proxy_parts() -> None:
    ri = requestinfo.parse("GET", "/api/v1/nodes/n1/proxy/stats/summary", False)
    assert (ri.resource, ri.name, ri.subresource, ri.verb) == ("nodes", "n1", "proxy", "get")
    assert ri.parts == ("nodes", "n1", "proxy", "stats", "summary")
    ri = requestinfo.parse("GET", "/api/v1/namespaces/d/pods/p/log", False)
    assert (ri.namespace, ri.subresource, ri.parts) == ("d", "log", ("pods", "p", "log"))
    ri = requestinfo.parse("PUT", "/api/v1/namespaces/d/finalize", False)
    assert (ri.resource, ri.name, ri.subresource) == ("namespaces", "d", "finalize")
    assert requestinfo.parse("GET", "/apis/apps", False).parts == ("apis", "apps")


def test_discovery_lists_nodes_proxy() -> None:
    res = discovery.api_resource_list(Catalogue(), "", "v1")
    assert res is not None
    entry = next(r for r in res["resources"] if r["name"] == "nodes/proxy")
    assert entry == {"name": "nodes/proxy", "singularName": "", "namespaced": False,
                     "kind": "NodeProxyOptions",
                     "verbs": ["create", "delete", "get", "patch", "update"]}
    agg = discovery.aggregated(Catalogue(), True, "v2")
    nodes = next(r for r in agg["items"][0]["versions"][0]["resources"]
                 if r["resource"] == "nodes")
    assert {"subresource": "proxy",
            "responseKind": {"group": "", "version": "v1", "kind": "NodeProxyOptions"},
            "verbs": ["create", "delete", "get", "patch", "update"]} in nodes["subresources"]


def test_split_scheme_name_port() -> None:
    assert _split_scheme_name_port("n1") == ("", "n1", "")
    assert _split_scheme_name_port("n1:10250") == ("", "n1", "10250")
    assert _split_scheme_name_port("https:n1:10250") == ("https", "n1", "10250")
    assert _split_scheme_name_port("a:b:c:d") == ("", "", "")
