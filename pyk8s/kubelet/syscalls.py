"""The few Linux system calls the OCI runtime makes itself (ctypes on libc): overlay
mounts, lazy unmounts, becoming a child subreaper, and a socket dialled inside another
network namespace."""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import threading
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)

MNT_DETACH = 2
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNET = 0x40000000
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def mount_overlay(lower: list[str], upper: str, work: str, target: str) -> None:
    """mount -t overlay overlay -o lowerdir=top:…:bottom,upperdir=U,workdir=W target."""
    opts = f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work}"
    if len(opts) >= PAGE_SIZE:
        raise OSError(errno.E2BIG, f"overlay mount options of {len(lower)} layers exceed "
                                   f"a page")
    _check(_libc.mount(b"overlay", target.encode(), b"overlay", 0, opts.encode()),
           f"mount overlay on {target}")


def umount(target: str) -> None:
    """Lazy unmount; not mounted is fine."""
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        e = ctypes.get_errno()
        if e not in (errno.EINVAL, errno.ENOENT):
            raise OSError(e, f"umount {target}: {os.strerror(e)}")


def mounts_under(prefix: str) -> list[str]:
    """Mount points at or below `prefix` (deepest first), from /proc/self/mountinfo."""
    prefix = prefix.rstrip("/")
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) > 4:
            mp = parts[4].replace("\\040", " ")
            if mp == prefix or mp.startswith(prefix + "/"):
                out.append(mp)
    return sorted(set(out), key=len, reverse=True)


def set_child_subreaper() -> None:
    """Orphaned descendants (a container's init once `runc create` exits) become our
    children, so their exit status reaches us."""
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def socket_in_netns(netns_path: str, family: int = socket.AF_INET) -> socket.socket:
    """A TCP socket created inside the network namespace at `netns_path` (setns in a
    short-lived thread: the namespace is per thread, the socket keeps it)."""
    result: list[socket.socket | BaseException] = []

    def run() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _check(_libc.setns(fd, CLONE_NEWNET), f"setns {netns_path}")
            finally:
                os.close(fd)
            result.append(socket.socket(family, socket.SOCK_STREAM))
        except BaseException as e:  # handed to the caller
            result.append(e)
        # The thread ends here; its namespace goes with it (never back in the pool).

    t = threading.Thread(target=run, name="netns-dial")
    t.start()
    t.join()
    r = result[0]
    if isinstance(r, BaseException):
        raise r
    return r
