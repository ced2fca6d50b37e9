"""A pod sandbox's namespaces — network, IPC, UTS — pinned by bind mounts, with no process
(no pause container): every container of the pod joins them by path
(OCI `{"type": "network", "path": ...}`).

    root/<sandbox id>/net   the network namespace (loopback up)
    root/<sandbox id>/ipc   the IPC namespace
    root/<sandbox id>/uts   the UTS namespace (hostname = the pod's)

A hostNetwork pod has no `net` and no `uts` (its containers use the node's network and
hostname, as upstream), only its own IPC namespace (unless host_ipc).

How: a short-lived thread of ours calls unshare(2) (network, IPC and UTS namespaces are
per thread, allowed in a multi-threaded process), sets the hostname, brings `lo` up and
bind-mounts /proc/self/task/<tid>/ns/<kind> onto the files; then it ends. No process
stays behind, nothing is forked (≈ 0.3 ms instead of ≈ 6 ms for util-linux `unshare`).
`root` is made a private mount point when the mount holding it is shared (as `ip netns`
does with /run/netns), so the pins do not propagate to other mount namespaces. A file
`root/.pyk8s-private-bind` marks that bind mount as ours, so that a process started after
one killed with SIGKILL (whose sandboxes it may adopt) still undoes it in `delete_all`."""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import fcntl
import os
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)

CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
HOST_NAME_MAX = 64

KINDS = ("net", "ipc", "uts")
_FLAGS = {"net": CLONE_NEWNET, "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS}


@dataclass(frozen=True)
class PodNamespaces:
    """Paths of the pinned namespace files (None: the host's namespace)."""
    dir: Path
    net: str | None
    ipc: str | None
    uts: str | None


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _nsfs_dev() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def is_namespace_file(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a mounted namespace (nsfs) file."""
    try:
        return os.stat(path).st_dev == _nsfs_dev()
    except OSError:
        return False


def _sandbox_dir(root: Path, sandbox_id: str) -> Path:
    if not sandbox_id or "/" in sandbox_id or sandbox_id in (".", ".."):
        raise ValueError(f"invalid sandbox id {sandbox_id!r}")
    return Path(root) / sandbox_id


# -- the root directory: a private mount when its mount is shared -----------------------
_private_roots: dict[str, bool] = {}   # root → this module bind-mounted it on itself
BIND_MARK = ".pyk8s-private-bind"


def _mountinfo() -> list[tuple[str, list[str]]]:
    """(mount point, optional fields) per line of /proc/self/mountinfo."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        parts = line.split()
        if len(parts) < 7:
            continue
        sep = parts.index("-", 6) if "-" in parts[6:] else len(parts)
        mp = parts[4].encode().decode("unicode_escape")  # \040 etc.
        out.append((mp, parts[6:sep]))
    return out


def _ensure_private_root(root: Path) -> None:
    key = str(root)
    if key in _private_roots:
        return
    root.mkdir(parents=True, exist_ok=True)
    if (root / BIND_MARK).exists() and root_is_mount_point(root):
        _private_roots[key] = True      # bound by an earlier process of ours
        return
    best, best_opts = "", []
    for mp, opts in _mountinfo():       # the last (topmost) longest-prefix mount wins
        if (key == mp or key.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
            best, best_opts = mp, opts
    bound = False
    if any(o.startswith("shared:") for o in best_opts):
        if best != key:
            _check(_libc.mount(key.encode(), key.encode(), None, MS_BIND | MS_REC, None),
                   f"bind mount {key} on itself")
            bound = True
            (root / BIND_MARK).touch()
        _check(_libc.mount(b"none", key.encode(), None, MS_PRIVATE, None),
               f"make {key} private")
    _private_roots[key] = bound


def root_is_mount_point(root: Path) -> bool:
    key = str(Path(root).resolve())
    return any(mp == key for mp, _ in _mountinfo())


# -- creation (in a thread of its own) ----------------------------------------------------
def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def _pin(kinds: tuple[str, ...], d: Path, hostname: str) -> None:
    """In a fresh thread that ends right after: unshare, configure, bind-mount."""
    flags = 0
    for k in kinds:
        flags |= _FLAGS[k]
    _check(_libc.unshare(flags), "unshare")
    if "uts" in kinds:
        h = hostname.encode()
        _check(_libc.sethostname(h, len(h)), f"sethostname {hostname}")
    if "net" in kinds:
        _loopback_up()
    tid = threading.get_native_id()
    for k in kinds:
        src = f"/proc/self/task/{tid}/ns/{k}".encode()
        _check(_libc.mount(src, str(d / k).encode(), None, MS_BIND, None),
               f"bind mount the {k} namespace on {d / k}")


async def _in_own_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn` in a new thread that exits afterwards (its namespaces die with it, never
    returned to a pool); a cancelled caller still waits for it to finish."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def done(result: Any, exc: BaseException | None) -> None:
        if not fut.done():
            fut.set_exception(exc) if exc is not None else fut.set_result(result)

    def run() -> None:
        try:
            r = fn(*args)
        except BaseException as e:  # handed to the awaiting task
            loop.call_soon_threadsafe(done, None, e)
        else:
            loop.call_soon_threadsafe(done, r, None)

    threading.Thread(target=run, name="pod-namespaces", daemon=True).start()
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        await asyncio.wait([fut])
        raise


def _existing(d: Path, kinds: tuple[str, ...]) -> bool:
    return d.is_dir() and all(is_namespace_file(d / k) for k in kinds)


async def create_pod_namespaces(root: Path | str, sandbox_id: str, hostname: str,
                                host_network: bool = False, host_ipc: bool = False
                                ) -> PodNamespaces:
    """Pin the pod's namespaces under `root/<sandbox_id>/`. Idempotent: complete existing
    ones are returned as they are; a partial leftover is replaced. Raises OSError (or
    ValueError for a bad id / hostname); nothing is left behind on failure."""
    root = Path(root).resolve()
    d = _sandbox_dir(root, sandbox_id)
    kinds = tuple(k for k in KINDS
                  if not (host_network and k in ("net", "uts")) and not (host_ipc and k == "ipc"))
    if "uts" in kinds and not 0 < len(hostname.encode()) <= HOST_NAME_MAX:
        raise ValueError(f"invalid pod hostname {hostname!r}")
    paths = {k: (str(d / k) if k in kinds else None) for k in KINDS}
    result = PodNamespaces(d, paths["net"], paths["ipc"], paths["uts"])
    if _existing(d, kinds):
        return result
    if d.exists():
        await delete_pod_namespaces(root, sandbox_id)
    _ensure_private_root(root)
    d.mkdir(mode=0o755, parents=True)
    try:
        for k in kinds:
            os.close(os.open(d / k, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
        if kinds:
            await _in_own_thread(_pin, kinds, d, hostname)
    except BaseException:
        await delete_pod_namespaces(root, sandbox_id)
        raise
    return result


# -- deletion -----------------------------------------------------------------------------
def _unmount_all(path: Path) -> None:
    """Unmount `path` (every stacked mount); lazily when busy. Not mounted is fine."""
    p = str(path).encode()
    for _ in range(16):
        if _libc.umount2(p, 0) == 0:
            continue
        e = ctypes.get_errno()
        if e == errno.EBUSY:
            if _libc.umount2(p, MNT_DETACH) == 0:
                continue
            e = ctypes.get_errno()
        if e in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
            return
        raise OSError(e, f"umount {path}: {os.strerror(e)}")


async def delete_pod_namespaces(root: Path | str, sandbox_id: str) -> None:
    """Unmount and remove the sandbox's namespace files and directory. Idempotent. The
    namespaces themselves go once no process is in them any more."""
    d = _sandbox_dir(Path(root).resolve(), sandbox_id)
    if not d.exists():
        return
    names = set(KINDS)
    try:
        names |= {p.name for p in d.iterdir()}
    except NotADirectoryError:
        d.unlink(missing_ok=True)
        return
    for name in sorted(names):
        p = d / name
        _unmount_all(p)
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            pass  # not ours; rmdir below reports it
    d.rmdir()


def list_sandboxes(root: Path | str) -> list[str]:
    """The sandbox ids that have (possibly partial) namespaces under `root`: what to
    delete after an agent crash."""
    try:
        return sorted(p.name for p in Path(root).iterdir() if p.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


async def delete_all(root: Path | str) -> None:
    """Delete every sandbox's namespaces under `root`, then undo `root`'s own private
    mount if this module made one, in this process or an earlier one (tests, agent
    shutdown, `pyk8s killall`)."""
    root = Path(root).resolve()
    for sid in list_sandboxes(root):
        await delete_pod_namespaces(root, sid)
    mark = root / BIND_MARK
    if (_private_roots.pop(str(root), False) or mark.exists()) and root_is_mount_point(root):
        _unmount_all(root)
    mark.unlink(missing_ok=True)
