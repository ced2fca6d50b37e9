"""Host-wide claims of what a node's pod network takes from the host: its bridge and its pod
CIDR (which also fixes the cluster DNS address, the CIDR's gateway). Two pyk8s clusters on
one host with the same defaults would otherwise hand out the same pod IPs, fight over the
DNS address and remove each other's rules.

A claim is an exclusive `flock` on `/run/pyk8s/<kind>-<name>@net<inode>.lock` held for
the node's lifetime (the inode of the node's network namespace: bridges and routes are per
network namespace, so nodes in namespaces of their own — test "hosts" — do not collide) (the kernel drops it when the process dies, even by SIGKILL), with the holder's
data dir and pid written in it, so a refusal can say who holds it.
"""
from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

CLAIMS_DIR = Path(os.environ.get("PYK8S_CLAIMS_DIR", "/run/pyk8s"))


class ClaimedElsewhere(Exception):
    """Another node on this host holds the claim."""


@dataclass
class HostClaim:
    kind: str
    name: str
    fd: int

    def release(self) -> None:
        """Give the claim up and remove its file (a node killed by SIGKILL leaves the file,
        unlocked: the next claim takes it over)."""
        if self.fd >= 0:
            try:
                _path(self.kind, self.name).unlink()
            except OSError:
                pass
            os.close(self.fd)
            self.fd = -1


def _netns_scope() -> str:
    """`@net<inode>` of this process's network namespace ("" if it cannot be read)."""
    try:
        return f"@net{os.stat('/proc/self/ns/net').st_ino}"
    except OSError:
        return ""


def _path(kind: str, name: str) -> Path:
    return CLAIMS_DIR / f"{kind}-{name.replace('/', '_')}{_netns_scope()}.lock"


def claimed_names(kind: str, owner: str) -> list[str]:
    """The `kind` claims of `owner` (a data dir) in this network namespace, held or not."""
    scope = _netns_scope()
    out = []
    for f in CLAIMS_DIR.glob(f"{kind}-*.lock") if CLAIMS_DIR.is_dir() else []:
        stem = f.name[len(kind) + 1:-len(".lock")]
        if not stem.endswith(scope):
            continue
        try:
            if f.read_text().startswith(owner + " "):
                out.append(stem[:len(stem) - len(scope)])
        except OSError:
            pass
    return out


def claim(kind: str, name: str, owner: str) -> HostClaim:
    """Take `kind`/`name` for `owner` (a data dir); ClaimedElsewhere with the holder if
    another process has it. Claiming again from the same process and owner is allowed
    (flock locks belong to the open file, so a second open would conflict: callers keep
    one claim per resource)."""
    CLAIMS_DIR.mkdir(parents=True, exist_ok=True)
    path = _path(kind, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ClaimedElsewhere(holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{owner} (pid {os.getpid()})\n".encode(), 0)
    return HostClaim(kind, name, fd)


def remove_stale(owner: str) -> list[str]:
    """Remove the claim files `owner` left unlocked (its node was killed); the names."""
    removed = []
    for path in CLAIMS_DIR.glob("*.lock") if CLAIMS_DIR.is_dir() else []:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            if not os.pread(fd, 4096, 0).decode(errors="replace").startswith(owner + " "):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue                       # still held: not stale
            path.unlink(missing_ok=True)
            removed.append(path.name)
        finally:
            os.close(fd)
    return removed
