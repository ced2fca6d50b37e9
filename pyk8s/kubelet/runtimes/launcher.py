"""`python -I -S launcher.py SPEC-JSON` (`launcher_argv`; the standard library only, so
that it starts in milliseconds): the process runtime's container
launcher when a container has volume mounts (root only). It enters a private mount
namespace (unshare(CLONE_NEWNS), then `/` made MS_REC|MS_PRIVATE so nothing propagates back
to the host), bind-mounts each volume at its mountPath (read-only ones remounted
MS_RDONLY), changes to the working directory and execs the container's command — the same
pid, so the process group and the log file stay as without mounts.

The volumes' host paths are first cloned as detached mount trees (open_tree(2)), so that
what follows cannot hide them. A mountPath that does not exist on the host must not be
created there. Inside the namespace, a tmpfs is mounted on the pod's (empty) stage
directory; the nearest existing ancestor of the mountPath is overlaid (overlayfs, lowerdir
= the ancestor, upper/work dirs on that tmpfs), the missing path is made in the overlay
(so in the tmpfs) and the volume attached there (move_mount(2)). Mounts below the ancestor
are kept: cloned before the overlay and attached again on top of it. When the namespace's last process exits, all of it disappears; the host sees
no mount and no new directory. `/` itself cannot be overlaid: a mountPath whose first
component does not exist is an error.

SPEC: {"argv": [...], "env": {...}, "cwd": "", "stage": "<dir>",
       "mounts": [[container_path, host_path, read_only], ...]}
or, to run a command in a running container's mounts (exec probes):
      {"argv": [...], "env": {...}, "cwd": "", "join": <the container's pid>}"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

# The C library the interpreter is linked with (ctypes.util.find_library would run
# ldconfig: tens of milliseconds on every container start).
_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def mount(src: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    _check(_libc.mount(src.encode() if src else None, target.encode(),
                       fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                       data.encode() if data else None), f"mount {src} on {target}")


def unshare_mounts() -> None:
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def _mount_points() -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            out.append(mp.encode().decode("unicode_escape"))
    return out


# open_tree(2) / move_mount(2) (Linux >= 5.2; the same numbers on every architecture):
# a detached copy of a mount tree, attached elsewhere later.
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
OPEN_TREE_CLONE = 1
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100


def clone_tree(path: str) -> int:
    fd = _libc.syscall(SYS_OPEN_TREE, ctypes.c_int(AT_FDCWD), path.encode(),
                       ctypes.c_uint(OPEN_TREE_CLONE | AT_RECURSIVE | os.O_CLOEXEC))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"open_tree {path}: {os.strerror(e)}")
    return fd


def attach(fd: int, target: str) -> None:
    _check(_libc.syscall(SYS_MOVE_MOUNT, ctypes.c_int(fd), b"", ctypes.c_int(AT_FDCWD),
                         target.encode(), ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)),
           f"move_mount on {target}")
    os.close(fd)


def resolve(path: str) -> str:
    """`path` with its existing part's symlinks resolved (/var/run -> /run)."""
    path = os.path.normpath(path)
    head, rest = path, ""
    while not os.path.lexists(head):
        head, tail = os.path.split(head)
        rest = os.path.join(tail, rest) if rest else tail
    real = os.path.realpath(head)
    return os.path.join(real, rest) if rest else real


class Stager:
    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.ready = False
        self.n = 0

    def _tmp(self) -> None:
        if not self.ready:
            mount("tmpfs", self.stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
            self.ready = True

    def make(self, target: str, is_dir: bool) -> None:
        """Create `target` (missing on the host) inside this namespace only."""
        anc = os.path.dirname(target)
        while not os.path.isdir(anc):
            anc = os.path.dirname(anc)
        if anc == "/":
            raise OSError(f"mountPath {target}: / cannot be overlaid (its first directory "
                          f"does not exist)")
        self._tmp()
        self.n += 1
        base = os.path.join(self.stage, str(self.n))
        upper, work = os.path.join(base, "upper"), os.path.join(base, "work")
        os.makedirs(upper)
        os.makedirs(work)
        subs = sorted({m for m in _mount_points() if m.startswith(anc.rstrip("/") + "/")})
        # The outermost ones (AT_RECURSIVE brings their children along), kept aside as
        # detached copies and put back on top of the overlay.
        top = [m for m in subs if not any(m.startswith(o + "/") for o in subs if o != m)]
        kept = [(m, os.path.isdir(m), clone_tree(m)) for m in top if os.path.lexists(m)]
        mount("overlay", anc, "overlay", 0,
              f"lowerdir={anc},upperdir={upper},workdir={work}")
        for m, isdir, fd in kept:
            if not os.path.lexists(m):
                os.makedirs(os.path.dirname(m), exist_ok=True)
                if isdir:
                    os.mkdir(m)
                else:
                    open(m, "w").close()
            attach(fd, m)
        if is_dir:
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()


def setup_mounts(mounts: list[list], stage: str) -> None:
    unshare_mounts()
    # Detached copies of the sources first: an overlay made for a later mountPath may
    # cover where a source lives (e.g. both under /tmp).
    sources = [(resolve(c), os.path.isdir(h), clone_tree(os.path.realpath(h)), bool(ro))
               for c, h, ro in mounts]
    st = Stager(stage)
    for cpath, is_dir, fd, ro in sorted(sources, key=lambda m: m[0].count("/")):
        cpath = resolve(cpath)
        if not os.path.lexists(cpath):
            st.make(cpath, is_dir)
        attach(fd, cpath)
        if ro:
            mount(None, cpath, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def join_mounts(pid: int) -> None:
    """Enter the mount namespace of a running container (exec, exec probes)."""
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNS), f"setns to the mounts of {pid}")
    finally:
        os.close(fd)


def main() -> None:
    spec = json.loads(sys.argv[1])
    try:
        if spec.get("join"):
            join_mounts(int(spec["join"]))
        else:
            setup_mounts(spec.get("mounts") or [], spec["stage"])
        if spec.get("cwd"):
            os.chdir(spec["cwd"])
    except OSError as e:
        print(f"process runtime: setting up mounts: {e}", file=sys.stderr, flush=True)
        os._exit(128)
    argv = spec["argv"]
    # Python ignores these; an ignored signal stays ignored across exec (subprocess's
    # restore_signals does the same for the runtime's other children).
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvpe(argv[0], argv, spec.get("env") or {})
    except OSError as e:
        print(f"process runtime: {argv[0]}: {e}", file=sys.stderr, flush=True)
        os._exit(128)


if __name__ == "__main__":
    main()
