"""The OCI runtime spec (config.json) of a container: upstream's generateContainerConfig
(kubelet) merged with the image config and turned into an OCI spec as containerd's CRI
plugin does — argv from command / args / Entrypoint / Cmd, env (image first, the pod's
over it), user, capabilities, privileged, readOnlyRootFilesystem, cgroup resources from
requests and limits, the pod's shared namespaces, /etc/hosts, /etc/resolv.conf,
/etc/hostname and the volume mounts. Pure: no I/O but reading the rootfs' /etc/passwd."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# containerd's default capabilities (oci.DefaultCapabilities / the CRI plugin's).
DEFAULT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
# Linux capability numbers (linux/capability.h), for the host's bounding set.
CAP_NAMES = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
             "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
             "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
             "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
             "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
             "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
             "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")
MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
# Upstream's cgroup arithmetic (pkg/kubelet/cm/helpers_linux.go).
MIN_SHARES, MAX_SHARES, SHARES_PER_CPU = 2, 262144, 1024
QUOTA_PERIOD, MIN_QUOTA_PERIOD = 100000, 1000


@dataclass
class PodSandboxPaths:
    """What the pod's containers share: its pinned namespaces (None: the host's) and the
    files the kubelet manages for it."""
    net: str | None = None
    ipc: str | None = None
    uts: str | None = None
    hosts: str = ""
    resolv_conf: str = ""
    hostname: str = ""
    shm: str = ""          # a tmpfs of the pod's, shared as /dev/shm ("" = one per container)


@dataclass
class ContainerSpecInput:
    container: Obj                       # the pod spec's container entry
    pod: Obj
    image_config: Obj                    # the image config's "config" (Entrypoint, Cmd, ...)
    rootfs: str
    cgroups_path: str
    command: list[str] | None = None     # command / args, `$(VAR)`-expanded (None: unset)
    args: list[str] | None = None
    env: list[tuple[str, str]] = field(default_factory=list)
    working_dir: str = ""
    mounts: list[tuple[str, str, bool]] = field(default_factory=list)
    sandbox: PodSandboxPaths = field(default_factory=PodSandboxPaths)
    host_caps: frozenset[str] | None = None      # the host's bounding set (None: any)
    min_oom_score_adj: int = -1000               # we cannot go lower than our own
    nofile: int = 1048576                        # RLIMIT_NOFILE (at most ours)
    hostname: str = ""
    termination_log: str = ""                    # host file bound at terminationMessagePath


def parse_cpu_milli(v: Any) -> int | None:
    from pyk8s.api.validation import parse_quantity
    if v is None:
        return None
    q = parse_quantity(str(v))
    return None if q is None else int(q * 1000 + 0.999999)


def parse_bytes(v: Any) -> int | None:
    from pyk8s.api.validation import parse_quantity
    if v is None:
        return None
    q = parse_quantity(str(v))
    return None if q is None else int(q)


def milli_cpu_to_shares(milli: int | None) -> int:
    if not milli:
        return MIN_SHARES
    return max(MIN_SHARES, min(MAX_SHARES, milli * SHARES_PER_CPU // 1000))


def milli_cpu_to_quota(milli: int, period: int = QUOTA_PERIOD) -> int:
    return max(MIN_QUOTA_PERIOD, milli * period // 1000)


def qos_class(pod: Obj) -> str:
    """Upstream's GetPodQOS: Guaranteed when every container's requests equal its limits
    for cpu and memory (both set), BestEffort when nothing is set, else Burstable."""
    status = (pod.get("status") or {}).get("qosClass")
    if status:
        return status
    spec = pod.get("spec") or {}
    ctrs = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    any_set, guaranteed = False, True
    for c in ctrs:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for r in ("cpu", "memory"):
            if req.get(r) or lim.get(r):
                any_set = True
            q_lim = lim.get(r)
            q_req = req.get(r, q_lim)
            if q_lim is None or str(q_req) != str(q_lim):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def oom_score_adj(pod: Obj, container: Obj, memory_capacity: int) -> int:
    """Upstream's GetContainerOOMScoreAdjust (pkg/kubelet/qos/policy.go)."""
    qos = qos_class(pod)
    if qos == "Guaranteed":
        return -997
    if qos == "BestEffort":
        return 1000
    req = parse_bytes(((container.get("resources") or {}).get("requests") or {}).get("memory"))
    adj = 1000 - (1000 * (req or 0)) // max(memory_capacity, 1)
    return int(max(3, min(999, adj)))


def container_args(inp: ContainerSpecInput) -> list[str]:
    """Upstream / Docker rules: command replaces Entrypoint (and drops Cmd); args replace
    Cmd."""
    img = inp.image_config or {}
    entry = list(img.get("Entrypoint") or [])
    cmd = list(img.get("Cmd") or [])
    if inp.command:
        return list(inp.command) + list(inp.args or [])
    if inp.args:
        return entry + list(inp.args)
    return entry + cmd


def merged_env(inp: ContainerSpecInput) -> list[str]:
    """The image's Env, then the container's (a later name replaces an earlier one, in
    place), HOSTNAME, TERM=xterm for a tty, and PATH if nobody set one (containerd's CRI
    does the same)."""
    out: dict[str, str] = {}
    for kv in inp.image_config.get("Env") or []:
        k, _, v = str(kv).partition("=")
        out[k] = v
    if "PATH" not in out:
        out["PATH"] = DEFAULT_PATH
    if inp.hostname:
        out["HOSTNAME"] = inp.hostname
    if inp.container.get("tty"):   # containerd's WithTTY
        out["TERM"] = "xterm"
    for k, v in inp.env:
        out[k] = v
    return [f"{k}={v}" for k, v in out.items()]


def _resolve(rootfs: str, file: str, what: str, name: str) -> tuple[int, int | None]:
    """A numeric id as is, else the image's /etc/passwd or /etc/group entry: (id, its
    primary gid for users)."""
    if name.isdigit():
        return int(name), None
    found = _lookup(rootfs, file, name)
    if found is None:
        raise UserError(f"unable to find {what} {name}: no matching entries in {file} file")
    return found[0], (found[1] if file == "passwd" else None)


def _lookup(rootfs: str, file: str, name: str) -> tuple[int, int] | None:
    """(id, primary gid) of `name` in the rootfs' /etc/passwd or /etc/group."""
    try:
        text = (Path(rootfs) / "etc" / file).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[0] == name:
            try:
                return int(parts[2]), int(parts[3]) if len(parts) > 3 and parts[3] else 0
            except ValueError:
                return None
    return None


class UserError(ValueError):
    pass


def resolve_user(inp: ContainerSpecInput) -> Obj:
    """runAsUser / runAsGroup (container over pod), else the image's User ("uid",
    "uid:gid", "name", "name:group"); supplementalGroups and fsGroup as additional gids."""
    psc = (inp.pod.get("spec") or {}).get("securityContext") or {}
    csc = inp.container.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    img_user = str(inp.image_config.get("User") or "")
    img_uid: int | None = None
    img_gid: int | None = None
    if img_user:
        u, _, g = img_user.partition(":")
        if u:
            img_uid, primary_gid = _resolve(inp.rootfs, "passwd", "user", u)
            img_gid = primary_gid if primary_gid is not None else img_gid
        if g:
            img_gid = _resolve(inp.rootfs, "group", "group", g)[0]
    if uid is None:
        uid = img_uid or 0
        if gid is None:
            gid = img_gid
    if gid is None:
        # The user's primary group from the rootfs' passwd, as containerd does.
        gid = 0
        try:
            for line in (Path(inp.rootfs) / "etc/passwd").read_text(errors="replace") \
                    .splitlines():
                parts = line.split(":")
                if len(parts) > 3 and parts[2] == str(uid) and parts[3].isdigit():
                    gid = int(parts[3])
                    break
        except OSError:
            pass
    if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and uid == 0:
        raise UserError("container has runAsNonRoot and image will run as root")
    extra = [int(g) for g in psc.get("supplementalGroups") or []]
    if psc.get("fsGroup") is not None:
        extra.append(int(psc["fsGroup"]))
    user: Obj = {"uid": int(uid), "gid": int(gid)}
    if extra:
        user["additionalGids"] = sorted(set(extra))
    return user


def capabilities(inp: ContainerSpecInput, privileged: bool) -> list[str]:
    caps = (inp.container.get("securityContext") or {}).get("capabilities") or {}
    host = inp.host_caps
    if privileged:
        out = [f"CAP_{n}" for n in CAP_NAMES]
    else:
        def norm(c: str) -> str:
            c = str(c).upper()
            return c if c.startswith("CAP_") or c == "ALL" else f"CAP_{c}"
        add = [norm(c) for c in caps.get("add") or []]
        drop = [norm(c) for c in caps.get("drop") or []]
        out = list(DEFAULT_CAPS)
        if "ALL" in add:
            out = [f"CAP_{n}" for n in CAP_NAMES]
        else:
            out += [c for c in add if c not in out]
        if "ALL" in drop:
            out = [c for c in add if c != "ALL"] if "ALL" not in add else []
        else:
            out = [c for c in out if c not in drop]
    if host is not None:
        out = [c for c in out if c in host]
    return out


def resources(container: Obj) -> Obj:
    res = container.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    out: Obj = {"devices": [{"allow": False, "access": "rwm"}]}
    mem = parse_bytes(lim.get("memory"))
    if mem:
        out["memory"] = {"limit": mem, "swap": mem}
    cpu: Obj = {"shares": milli_cpu_to_shares(parse_cpu_milli(req.get("cpu", lim.get("cpu"))))}
    lim_cpu = parse_cpu_milli(lim.get("cpu"))
    if lim_cpu:
        cpu["quota"] = milli_cpu_to_quota(lim_cpu)
        cpu["period"] = QUOTA_PERIOD
    out["cpu"] = cpu
    return out


def build_spec(inp: ContainerSpecInput) -> Obj:
    """The OCI runtime spec of one container."""
    c, pod = inp.container, inp.pod
    spec_ = pod.get("spec") or {}
    csc = c.get("securityContext") or {}
    privileged = bool(csc.get("privileged"))
    args = container_args(inp)
    if not args:
        raise UserError("no command specified")
    caps = capabilities(inp, privileged)
    process: Obj = {
        "terminal": bool(c.get("tty")),   # the runtime sends its master to the kubelet
        "user": resolve_user(inp),
        "args": args,
        "env": merged_env(inp),
        "cwd": inp.working_dir or inp.image_config.get("WorkingDir") or "/",
        "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": inp.nofile, "soft": inp.nofile}],
        "noNewPrivileges": csc.get("allowPrivilegeEscalation") is False,
        "oomScoreAdj": max(inp.min_oom_score_adj, oom_score_adj(pod, c, 1 << 40)),
    }
    namespaces: list[Obj] = [{"type": "mount"}]
    if not spec_.get("hostPID"):
        namespaces.append({"type": "pid"})
    for kind, path in (("network", inp.sandbox.net), ("ipc", inp.sandbox.ipc),
                       ("uts", inp.sandbox.uts)):
        if path:
            namespaces.append({"type": kind, "path": path})
    mounts: list[Obj] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                     "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "rw" if privileged else "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]
    if inp.sandbox.shm:
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": inp.sandbox.shm,
                       "options": ["rbind", "rprivate", "rw"]})
    else:
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777",
                                   "size=65536k"]})
    targets = {m[0] for m in inp.mounts}
    for dest, src in (("/etc/hosts", inp.sandbox.hosts),
                      ("/etc/resolv.conf", inp.sandbox.resolv_conf),
                      ("/etc/hostname", inp.sandbox.hostname)):
        if src and dest not in targets:
            mounts.append({"destination": dest, "type": "bind", "source": src,
                           "options": ["rbind", "rprivate",
                                       "ro" if csc.get("readOnlyRootFilesystem") else "rw"]})
    tpath = c.get("terminationMessagePath") or "/dev/termination-log"
    if inp.termination_log and tpath not in targets:
        mounts.append({"destination": tpath, "type": "bind", "source": inp.termination_log,
                       "options": ["rbind", "rprivate", "rw"]})
    for dest, src, ro in inp.mounts:
        mounts.append({"destination": dest, "type": "bind", "source": src,
                       "options": ["rbind", "rprivate", "ro" if ro else "rw"]})
    linux: Obj = {
        "namespaces": namespaces,
        "cgroupsPath": inp.cgroups_path,
        "resources": resources(c),
    }
    if privileged:
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    sysctls = {s["name"]: str(s.get("value", ""))
               for s in ((spec_.get("securityContext") or {}).get("sysctls") or [])
               if s.get("name")}
    if sysctls:
        linux["sysctl"] = sysctls
    out: Obj = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": inp.rootfs, "readonly": bool(csc.get("readOnlyRootFilesystem"))},
        "mounts": mounts,
        "linux": linux,
    }
    return out


def host_bounding_caps(status_path: str = "/proc/self/status") -> frozenset[str]:
    """The capabilities this process may hand on (CapBnd): a container asking for more
    fails to start (here CAP_SYS_RESOURCE is missing, for one)."""
    try:
        for line in Path(status_path).read_text().splitlines():
            if line.startswith("CapBnd:"):
                bits = int(line.split()[1], 16)
                return frozenset(f"CAP_{n}" for i, n in enumerate(CAP_NAMES) if bits >> i & 1)
    except (OSError, ValueError):
        pass
    return frozenset(f"CAP_{n}" for n in CAP_NAMES)
