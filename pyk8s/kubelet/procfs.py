"""What /proc says of a process: its state, parent, process group, session and start time
(`/proc/<pid>/stat`), and the boot it belongs to. A pid with its start time (and the boot
id) names one process even across pid reuse."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcStat:
    state: str   # R, S, D, Z (zombie), X (dead), …
    ppid: int
    pgid: int
    sid: int
    start: int   # its start time, in clock ticks after boot: a recycled pid's differs


def proc_stat(pid: int) -> ProcStat | None:
    """None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        f = raw[raw.rindex(")") + 2:].split()   # the command may hold spaces and ')'
        return ProcStat(state=f[0], ppid=int(f[1]), pgid=int(f[2]), sid=int(f[3]),
                        start=int(f[19]))
    except (ValueError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    st = proc_stat(pid)
    return None if st is None else st.start


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody reaped yet."""
    st = proc_stat(pid)
    return st is None or st.state in ("Z", "X")


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
