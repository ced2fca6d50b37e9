"""The kubelet's resource stats, as upstream's (cAdvisor-backed) summary provider serves
them: the Summary API (`stats/v1alpha1`, GET /stats/summary) and the resource metrics
(GET /metrics/resource, Prometheus text, pkg/kubelet/metrics/collectors/resource_metrics.go)
that metrics-server scrapes.

Figures come from cgroups (cgroups.py): the node from the root cgroup (with /proc for what
a cgroup v2 root lacks), a container from the cgroup its runtime put it in
(`runtime.cgroup_of(container_id)`), a pod from its pod cgroup (`runtime.pod_cgroup(uid)`;
else the sum of its containers'). Runtimes without cgroups (process, fake) have neither:
their pods are listed without cpu / memory. `usageNanoCores` is a rate between two samples
of the cumulative CPU time: the previous one per cgroup is kept; when there is none (or it
is older than MAX_SAMPLE_AGE) two are taken SAMPLE_INTERVAL apart."""
from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from pyk8s.kubelet import cgroups
from pyk8s.kubelet.cgroups import Usage

if TYPE_CHECKING:
    from pyk8s.kubelet.kubelet import Kubelet
    from pyk8s.kubelet.runtime import ContainerStatus

Obj = dict[str, Any]

SAMPLE_INTERVAL = 0.1     # seconds between the two samples of a first rate
MAX_SAMPLE_AGE = 30.0     # an older previous sample is not used for a rate
MIN_WINDOW = 0.05         # a younger one neither: the last rate is served again
NODE_CGROUP = "/"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def rfc3339(ts: float) -> str:
    """metav1.Time as JSON (seconds, UTC)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str | None) -> float | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class Reading:
    """One cgroup's figures for a scrape: the usage, the CPU rate (nanocores) if known and
    the memory limit (None: unlimited)."""
    usage: Usage
    nano_cores: int | None = None
    memory_limit: int | None = None


@dataclass
class _Container:
    name: str
    start: float | None
    cgroup: str | None


@dataclass
class _Pod:
    namespace: str
    name: str
    uid: str
    start: float
    containers: list[_Container] = field(default_factory=list)
    cgroup: str | None = None


class StatsProvider:
    def __init__(self, kubelet: "Kubelet", cgroup_root: Path = cgroups.ROOT,
                 proc: Path = Path("/proc"), fs_path: str | None = None,
                 sample_interval: float = SAMPLE_INTERVAL) -> None:
        self.kubelet = kubelet
        self.cgroup_root = Path(cgroup_root)
        self.proc = Path(proc)
        self.fs_path = fs_path or getattr(getattr(kubelet, "o", None), "data_dir", "") or "."
        self.sample_interval = sample_interval
        self.sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
        # cgroup -> (the sample a next rate starts from, the last rate computed)
        self._samples: dict[str, tuple[Usage, int | None]] = {}

    # -- what runs ------------------------------------------------------------------------
    def _pods(self) -> list[_Pod]:
        """The pods the kubelet runs (not finished), with their running containers and
        the cgroups the runtime reports for them."""
        k = self.kubelet
        rt = k.runtime
        cgroup_of = getattr(rt, "cgroup_of", None)
        pod_cgroup = getattr(rt, "pod_cgroup", None)
        out: list[_Pod] = []
        for key, uid in list(k._uids.items()):
            ns, _, name = key.partition("/")
            pod = k.static.get(key) or k.pods.store.get(key) or {}
            st: Obj = {}
            if (pod.get("metadata") or {}).get("uid") in (uid, None):
                st = pod.get("status") or {}
            if st.get("phase") in ("Succeeded", "Failed"):
                continue
            try:
                statuses: list[ContainerStatus] = list(rt.pod_containers(uid))
            except Exception:
                statuses = []
            ctrs = []
            for cs in statuses:
                if cs.state != "running":
                    continue
                rel = cgroup_of(cs.container_id) if cgroup_of and cs.container_id else None
                ctrs.append(_Container(cs.name, parse_time(cs.started_at), rel))
            starts = [c.start for c in ctrs if c.start is not None]
            start = parse_time(st.get("startTime")) or (min(starts) if starts else None)
            if start is None:   # as upstream: no start time, no stats
                continue
            out.append(_Pod(ns, name, uid, start, ctrs,
                            pod_cgroup(uid) if pod_cgroup is not None else None))
        out.sort(key=lambda p: (p.namespace, p.name))
        return out

    # -- cgroup readings ------------------------------------------------------------------
    def _read(self, rel: str) -> Usage | None:
        u = cgroups.usage(rel, self.cgroup_root)
        if rel == NODE_CGROUP:
            u = self._fill_from_proc(u)
        return u

    def _rate(self, rel: str, u: Usage) -> int | None | bool:
        """The CPU rate from the kept sample to `u` (keeping `u` as the next start), or
        False when a fresh pair of samples is needed."""
        cpu = u.cpu_usage_ns
        if cpu is None:
            return None
        prev = self._samples.get(rel)
        if prev is not None:
            p, last = prev
            dt = u.timestamp - p.timestamp
            if p.cpu_usage_ns is not None and 0 <= dt <= MAX_SAMPLE_AGE and \
                    cpu >= p.cpu_usage_ns:
                if dt >= MIN_WINDOW:
                    rate = int((cpu - p.cpu_usage_ns) / dt)
                    self._samples[rel] = (u, rate)
                    return rate
                if last is not None:
                    return last    # too close to the kept sample: the last rate again
                return False
        self._samples[rel] = (u, None)
        return False

    async def readings(self, rels: Iterable[str], rate: bool = True) -> dict[str, Reading]:
        """A Reading per cgroup that exists; with `rate`, usageNanoCores too (waiting
        SAMPLE_INTERVAL once for the cgroups without a usable previous sample)."""
        out: dict[str, Reading] = {}
        again: list[str] = []
        for rel in dict.fromkeys(rels):
            u = self._read(rel)
            if u is None:
                continue
            out[rel] = Reading(u, memory_limit=self._memory_limit(rel))
            if rate:
                r = self._rate(rel, u)
                if r is False:
                    again.append(rel)
                else:
                    out[rel].nano_cores = r  # type: ignore[assignment]
        if again:
            await self.sleep(self.sample_interval)
            for rel in again:
                u = self._read(rel)
                if u is None:
                    out.pop(rel, None)
                    continue
                r = self._rate(rel, u)
                out[rel].usage = u
                out[rel].nano_cores = None if r is False else r  # type: ignore[assignment]
        if rate:   # forget cgroups gone long ago
            now = max((r.usage.timestamp for r in out.values()), default=time.time())
            for rel, (s, _) in list(self._samples.items()):
                if now - s.timestamp > 2 * MAX_SAMPLE_AGE:
                    del self._samples[rel]
        return out

    def _memory_limit(self, rel: str) -> int | None:
        if rel == NODE_CGROUP:     # as cAdvisor: the machine's memory for the root
            return self._meminfo().get("MemTotal")
        return cgroups.memory_limit(rel, self.cgroup_root)

    # -- /proc ----------------------------------------------------------------------------
    def _proc_read(self, name: str) -> str:
        try:
            return (self.proc / name).read_text()
        except OSError:
            return ""

    def _meminfo(self) -> dict[str, int]:
        out = {}
        for line in self._proc_read("meminfo").splitlines():
            k, _, v = line.partition(":")
            parts = v.split()
            if parts and parts[0].isdigit():
                out[k.strip()] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
        return out

    def _fill_from_proc(self, u: Usage | None) -> Usage:
        """What the root cgroup lacks (cgroup v2 has no memory.current there), from /proc."""
        u = u or Usage(time.time())
        if u.cpu_usage_ns is None:
            for line in self._proc_read("stat").splitlines():
                f = line.split()
                if f and f[0] == "cpu":
                    # user nice system idle iowait irq softirq steal: all but idle / iowait
                    busy = sum(int(x) for i, x in enumerate(f[1:9]) if i not in (3, 4))
                    u.cpu_usage_ns = busy * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
                    break
        if u.memory_usage_bytes is None:
            mi = self._meminfo()
            if "MemTotal" in mi and "MemFree" in mi:
                used = mi["MemTotal"] - mi["MemFree"]
                u.memory_usage_bytes = used
                u.memory_working_set_bytes = max(0, used - mi.get("Inactive(file)", 0))
                if u.memory_rss_bytes is None:
                    u.memory_rss_bytes = mi.get("AnonPages")
        if u.memory_page_faults is None:
            vm = dict(line.split()[:2] for line in self._proc_read("vmstat").splitlines()
                      if len(line.split()) >= 2)
            if vm.get("pgfault", "").isdigit():
                u.memory_page_faults = int(vm["pgfault"])
            if vm.get("pgmajfault", "").isdigit():
                u.memory_major_page_faults = int(vm["pgmajfault"])
        return u

    def _boot_time(self) -> float:
        for line in self._proc_read("stat").splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
        return time.time() - time.monotonic()

    def _rlimit(self) -> Obj:
        """Upstream's RlimitStats: the smaller of kernel.pid_max and kernel.threads-max,
        and the number of tasks (/proc/loadavg)."""
        out: Obj = {"time": time.time()}
        limits = [self._proc_read(f"sys/kernel/{n}").strip()
                  for n in ("pid_max", "threads-max")]
        if all(x.isdigit() for x in limits):
            out["maxpid"] = min(int(x) for x in limits)
        fields = self._proc_read("loadavg").split()
        if len(fields) >= 4 and fields[3].partition("/")[2].isdigit():
            out["curproc"] = int(fields[3].partition("/")[2])
        return out

    def _fs(self) -> Obj | None:
        """FsStats of the filesystem holding the kubelet's data dir (upstream: its root
        dir's filesystem, from cAdvisor)."""
        try:
            st = os.statvfs(self.fs_path)
        except OSError:
            return None
        return {"time": time.time(), "availableBytes": st.f_bavail * st.f_frsize,
                "capacityBytes": st.f_blocks * st.f_frsize,
                "usedBytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
                "inodesFree": st.f_ffree, "inodes": st.f_files,
                "inodesUsed": st.f_files - st.f_ffree}

    # -- the summary ----------------------------------------------------------------------
    async def collect(self, only_cpu_and_memory: bool = False, rate: bool = True) -> Obj:
        """The Summary, times as floats (summary() renders them as the API does)."""
        pods = self._pods()
        rels = [NODE_CGROUP]
        for p in pods:
            rels.extend(c.cgroup for c in p.containers if c.cgroup)
            if p.cgroup:
                rels.append(p.cgroup)
        rd = await self.readings(rels, rate=rate)
        node: Obj = {"nodeName": self.kubelet.name, "startTime": self._boot_time()}
        _add_cpu_memory(node, rd.get(NODE_CGROUP))
        if not only_cpu_and_memory:
            fs = self._fs()
            if fs is not None:
                node["fs"] = fs
            node["rlimit"] = self._rlimit()
        out_pods = []
        for p in pods:
            containers = []
            for c in p.containers:
                co: Obj = {"name": c.name, "startTime": c.start or p.start}
                _add_cpu_memory(co, rd.get(c.cgroup) if c.cgroup else None)
                containers.append(co)
            po: Obj = {"podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                       "startTime": p.start, "containers": containers}
            pod_reading = rd.get(p.cgroup) if p.cgroup else None
            if pod_reading is not None:
                _add_cpu_memory(po, pod_reading)
                if not only_cpu_and_memory and pod_reading.usage.pids is not None:
                    po["process_stats"] = {"process_count": pod_reading.usage.pids}
            else:
                _add_sum(po, [rd.get(c.cgroup) if c.cgroup else None for c in p.containers])
            out_pods.append(po)
        return {"node": node, "pods": out_pods}

    async def summary(self, only_cpu_and_memory: bool = False) -> Obj:
        """GET /stats/summary: the stats/v1alpha1 Summary."""
        return _api_times(await self.collect(only_cpu_and_memory))

    async def resource_metrics(self) -> str:
        """GET /metrics/resource (no rate needed: no waiting for a second sample)."""
        try:
            s: Obj | None = await self.collect(only_cpu_and_memory=True, rate=False)
        except Exception:
            s = None
        return render_resource_metrics(s)


def _cpu(r: Reading) -> Obj | None:
    u = r.usage
    if u.cpu_usage_ns is None:
        return None
    out: Obj = {"time": u.timestamp}
    if r.nano_cores is not None:
        out["usageNanoCores"] = r.nano_cores
    out["usageCoreNanoSeconds"] = u.cpu_usage_ns
    return out


def _memory(r: Reading) -> Obj | None:
    u = r.usage
    if u.memory_usage_bytes is None and u.memory_working_set_bytes is None:
        return None
    out: Obj = {"time": u.timestamp}
    ws = u.memory_working_set_bytes
    if r.memory_limit is not None and ws is not None:
        out["availableBytes"] = max(0, r.memory_limit - ws)
    for k, v in (("usageBytes", u.memory_usage_bytes), ("workingSetBytes", ws),
                 ("rssBytes", u.memory_rss_bytes), ("pageFaults", u.memory_page_faults),
                 ("majorPageFaults", u.memory_major_page_faults)):
        if v is not None:
            out[k] = v
    return out


def _add_cpu_memory(obj: Obj, r: Reading | None) -> None:
    if r is None:
        return
    cpu, mem = _cpu(r), _memory(r)
    if cpu is not None:
        obj["cpu"] = cpu
    if mem is not None:
        obj["memory"] = mem


def _add_sum(obj: Obj, rs: list[Reading | None]) -> None:
    """A pod without a pod cgroup: its containers' figures summed (as upstream's CRI
    stats provider does), when every container has them."""
    if not rs or any(r is None for r in rs):
        return
    readings = [r for r in rs if r is not None]
    cpus = [_cpu(r) for r in readings]
    if all(c is not None for c in cpus):
        cpu: Obj = {"time": max(c["time"] for c in cpus if c)}
        if all(c and "usageNanoCores" in c for c in cpus):
            cpu["usageNanoCores"] = sum(c["usageNanoCores"] for c in cpus if c)
        cpu["usageCoreNanoSeconds"] = sum(c["usageCoreNanoSeconds"] for c in cpus if c)
        obj["cpu"] = cpu
    mems = [_memory(r) for r in readings]
    if all(m is not None for m in mems):
        mem: Obj = {"time": max(m["time"] for m in mems if m)}
        for k in ("usageBytes", "workingSetBytes", "rssBytes", "pageFaults",
                  "majorPageFaults"):
            if all(m and k in m for m in mems):
                mem[k] = sum(m[k] for m in mems if m)
        obj["memory"] = mem


def _api_times(obj: Any) -> Any:
    """Float times (`time`, `startTime`) as metav1.Time renders them."""
    if isinstance(obj, dict):
        return {k: rfc3339(v) if k in ("time", "startTime") and isinstance(v, (int, float))
                else _api_times(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_api_times(v) for v in obj]
    return obj


# -- /metrics/resource ---------------------------------------------------------------------
# name -> (type, HELP as component-base annotates it: stability level, deprecation)
METRICS: dict[str, tuple[str, str]] = {
    "container_cpu_usage_seconds_total": (
        "counter", "[STABLE] Cumulative cpu time consumed by the container in core-seconds"),
    "container_memory_working_set_bytes": (
        "gauge", "[STABLE] Current working set of the container in bytes"),
    "container_start_time_seconds": (
        "gauge", "[STABLE] Start time of the container since unix epoch in seconds"),
    "node_cpu_usage_seconds_total": (
        "counter", "[STABLE] Cumulative cpu time consumed by the node in core-seconds"),
    "node_memory_working_set_bytes": (
        "gauge", "[STABLE] Current working set of the node in bytes"),
    "pod_cpu_usage_seconds_total": (
        "counter", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds"),
    "pod_memory_working_set_bytes": (
        "gauge", "[STABLE] Current working set of the pod in bytes"),
    "resource_scrape_error": (
        "gauge", "[STABLE] 1 if there was an error while getting container metrics, "
                 "0 otherwise"),
    "scrape_error": (
        "gauge", "[ALPHA] (Deprecated since 1.29.0) 1 if there was an error while getting "
                 "container metrics, 0 otherwise"),
}


def go_float(v: float) -> str:
    """A sample value as Prometheus' text format writes it (Go's
    strconv.FormatFloat(v, 'g', -1, 64): shortest digits, exponent from 1e+06)."""
    v = float(v)
    if v == 0:
        return "0"
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    sign = "-" if v < 0 else ""
    mant, _, e = repr(abs(v)).partition("e")
    whole, _, frac = mant.partition(".")
    digits = whole + frac
    sig = digits.lstrip("0")
    exp = len(whole) - 1 - (len(digits) - len(sig)) + (int(e) if e else 0)
    sig = sig.rstrip("0") or "0"
    if exp < -4 or exp >= 6:
        m = sig[0] + ("." + sig[1:] if len(sig) > 1 else "")
        return f"{sign}{m}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{sig}"
    whole = sig[:exp + 1].ljust(exp + 1, "0")
    frac = sig[exp + 1:]
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"


def _label_value(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def render_resource_metrics(summary: Obj | None) -> str:
    """Upstream's resourceMetricsCollector over a collected Summary (float times; None: the
    scrape failed), in the text format: families by name, samples by label values,
    millisecond timestamps on the usage samples."""
    fams: dict[str, list[tuple[tuple[tuple[str, str], ...], float, int | None]]] = {
        n: [] for n in METRICS}

    def add(name: str, labels: tuple[tuple[str, str], ...], value: float,
            ts: float | None) -> None:
        fams[name].append((labels, value, None if ts is None else int(ts * 1000)))

    def usage(prefix: str, obj: Obj, labels: tuple[tuple[str, str], ...]) -> None:
        cpu, mem = obj.get("cpu") or {}, obj.get("memory") or {}
        if cpu.get("usageCoreNanoSeconds") is not None:
            add(f"{prefix}_cpu_usage_seconds_total", labels,
                cpu["usageCoreNanoSeconds"] / 1e9, cpu["time"])
        if mem.get("workingSetBytes") is not None:
            add(f"{prefix}_memory_working_set_bytes", labels, mem["workingSetBytes"],
                mem["time"])

    error = summary is None
    if summary is not None:
        usage("node", summary.get("node") or {}, ())
        for p in summary.get("pods") or []:
            ref = p["podRef"]
            for c in p.get("containers") or []:
                labels = (("container", c["name"]), ("namespace", ref["namespace"]),
                          ("pod", ref["name"]))
                start = c.get("startTime")
                if isinstance(start, (int, float)) and start > 0:
                    add("container_start_time_seconds", labels, start, None)
                usage("container", c, labels)
            usage("pod", p, (("namespace", ref["namespace"]), ("pod", ref["name"])))
    add("resource_scrape_error", (), 1 if error else 0, None)
    add("scrape_error", (), 1 if error else 0, None)
    lines: list[str] = []
    for name in sorted(fams):
        samples = fams[name]
        if not samples:
            continue
        kind, help_ = METRICS[name]
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value, ts in sorted(samples, key=lambda s: ([v for _, v in s[0]],
                                                                 s[2] or 0)):
            lbl = ("{" + ",".join(f'{k}="{_label_value(v)}"' for k, v in labels) + "}"
                   if labels else "")
            lines.append(f"{name}{lbl} {go_float(value)}"
                         + (f" {ts}" if ts is not None else ""))
    return "\n".join(lines) + "\n"
