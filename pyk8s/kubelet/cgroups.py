"""The node's cgroups, as the kubelet sees them: v1 (one hierarchy per controller under
/sys/fs/cgroup) or v2 (unified). Paths are relative to the hierarchy roots, like an OCI
spec's `linux.cgroupsPath` ("/pyk8s-<node>/pod<uid>/<container id>"). Reading usage
(cpu, memory working set, pids), OOM kills, and removing what the runtime created."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio",
                  "pids", "systemd", "net_cls", "net_prio", "perf_event", "hugetlb")


def is_v2(root: Path = ROOT) -> bool:
    return (root / "cgroup.controllers").exists()


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _int(path: Path) -> int | None:
    s = _read(path)
    if s is None:
        return None
    try:
        return int(s.split()[0])
    except (ValueError, IndexError):
        return None


def _kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def _hierarchies(root: Path = ROOT) -> dict[str, Path]:
    """Every hierarchy a runtime creates cgroups in: the unified one (v2), or one per v1
    controller plus, on hybrid hosts, the cgroup2 tree at `unified` (runc makes the
    container's cgroup there too)."""
    if is_v2(root):
        return {"unified": root}
    out = {c: root / c for c in V1_CONTROLLERS}
    if (root / "unified" / "cgroup.controllers").exists():
        out["unified"] = root / "unified"
    return out


def _dir(controller: str, rel: str, root: Path = ROOT) -> Path:
    rel = rel.lstrip("/")
    return root / rel if is_v2(root) else root / controller / rel


@dataclass
class Usage:
    """One reading: cumulative CPU time and memory / pid figures (what cAdvisor reports
    and the kubelet's /stats/summary and /metrics/resource serve)."""
    timestamp: float
    cpu_usage_ns: int | None = None
    memory_usage_bytes: int | None = None
    memory_working_set_bytes: int | None = None
    memory_rss_bytes: int | None = None
    memory_page_faults: int | None = None
    memory_major_page_faults: int | None = None
    pids: int | None = None


def usage(rel: str, root: Path = ROOT) -> Usage | None:
    """Usage of the cgroup at `rel`; None when it does not exist (any more)."""
    now = time.time()
    if is_v2(root):
        d = root / rel.lstrip("/")
        if not d.is_dir():
            return None
        cpu = _kv(d / "cpu.stat").get("usage_usec")
        mem = _int(d / "memory.current")
        stat = _kv(d / "memory.stat")
        inactive = stat.get("inactive_file", 0)
        return Usage(now, None if cpu is None else cpu * 1000, mem,
                     None if mem is None else max(0, mem - inactive), stat.get("anon"),
                     stat.get("pgfault"), stat.get("pgmajfault"), _int(d / "pids.current"))
    mem_d = _dir("memory", rel, root)
    if not mem_d.is_dir():
        return None
    mem = _int(mem_d / "memory.usage_in_bytes")
    stat = _kv(mem_d / "memory.stat")
    inactive = stat.get("total_inactive_file", 0)
    return Usage(now, _int(_dir("cpuacct", rel, root) / "cpuacct.usage"), mem,
                 None if mem is None else max(0, mem - inactive), stat.get("total_rss"),
                 stat.get("total_pgfault"), stat.get("total_pgmajfault"),
                 _int(_dir("pids", rel, root) / "pids.current"))


def oom_kills(rel: str, root: Path = ROOT) -> int:
    """How many processes the kernel's OOM killer killed in the cgroup."""
    if is_v2(root):
        return _kv(root / rel.lstrip("/") / "memory.events").get("oom_kill", 0)
    return _kv(_dir("memory", rel, root) / "memory.oom_control").get("oom_kill", 0)


def remove(rel: str, root: Path = ROOT) -> None:
    """rmdir the cgroup (and its empty children) in every hierarchy; what still holds
    processes stays."""
    rel = rel.strip("/")
    if not rel:
        return
    for base in _hierarchies(root).values():
        top = base / rel
        if not top.is_dir():
            continue
        for dirpath, dirnames, _ in sorted(os.walk(top), key=lambda t: -len(t[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def set_pids_max(rel: str, limit: int, root: Path = ROOT) -> None:
    """Create the cgroup in the pids hierarchy (v2: the pids controller enabled down to
    it) and cap its processes (`limit` ≤ 0: no cap). Containers nested below share it:
    upstream's pod-level --pod-max-pids."""
    d = _dir("pids", rel, root)
    if is_v2(root):
        parts = rel.strip("/").split("/")
        for i in range(len(parts)):
            parent = root.joinpath(*parts[:i])
            parent.mkdir(exist_ok=True)
            try:
                (parent / "cgroup.subtree_control").write_text("+pids")
            except OSError:
                pass
    d.mkdir(parents=True, exist_ok=True)
    (d / "pids.max").write_text(str(limit) if limit > 0 else "max")


def pids_max(rel: str, root: Path = ROOT) -> int | None:
    """The cgroup's pids limit; None when it has none."""
    s = (_read(_dir("pids", rel, root) / "pids.max") or "").strip()
    return int(s) if s.isdigit() else None


def exists(rel: str, root: Path = ROOT) -> list[str]:
    """The hierarchies in which the cgroup `rel` exists (empty: none)."""
    rel = rel.strip("/")
    return [name for name, base in _hierarchies(root).items() if (base / rel).is_dir()]


MEMORY_UNLIMITED = 1 << 62   # cAdvisor's maxMemorySize: above it a limit means "none"


def memory_limit(rel: str, root: Path = ROOT) -> int | None:
    """The cgroup's memory limit in bytes; None when it has none (v1's huge default, v2's
    "max") or cannot be read, as cAdvisor's isMemoryUnlimited."""
    if is_v2(root):
        s = (_read(root / rel.lstrip("/") / "memory.max") or "").strip()
        v = int(s) if s.isdigit() else None
    else:
        v = _int(_dir("memory", rel, root) / "memory.limit_in_bytes")
    return v if v and v <= MEMORY_UNLIMITED else None
