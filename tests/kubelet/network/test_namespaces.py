"""A pod sandbox's pinned namespaces (root): nsfs bind mounts, the hostname in the UTS
namespace, loopback up, idempotent create / delete, leftovers, a shared root."""
from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path
from typing import AsyncIterator

import pytest

from pyk8s.kubelet.network import namespaces
from pyk8s.kubelet.network.namespaces import (create_pod_namespaces, delete_all,
                                              delete_pod_namespaces, is_namespace_file,
                                              list_sandboxes)
from tests.conftest import needs_root
from tests.kubelet.network.conftest import run

pytestmark = needs_root


def mounts() -> dict[str, str]:
    """mount point → file system type."""
    out = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        parts = line.split()
        sep = parts.index("-", 6)
        out[parts[4]] = parts[sep + 1]
    return out


def mountinfo_line(mp: str) -> list[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4] == mp:
            return line.split()
    return []


def mounts_under(d: Path) -> list[str]:
    return [m for m in mounts() if m == str(d) or m.startswith(f"{d}/")]


def ns_inode(path: str | Path) -> int:
    return os.stat(path).st_ino


@pytest.fixture
async def root(tmp_path: Path) -> AsyncIterator[Path]:
    r = tmp_path / "sandboxes"
    try:
        yield r
    finally:
        await delete_all(r)
        assert mounts_under(tmp_path) == []


async def test_create_pins_namespaces(root: Path) -> None:
    sid = uuid.uuid4().hex
    ns = await create_pod_namespaces(root, sid, "web-0")
    d = root.resolve() / sid
    assert ns.dir == d and (ns.net, ns.ipc, ns.uts) == (str(d / "net"), str(d / "ipc"),
                                                         str(d / "uts"))
    m = mounts()
    for kind in ("net", "ipc", "uts"):
        path = str(d / kind)
        assert m.get(path) == "nsfs" and is_namespace_file(path)
        # A namespace of its own, not the host's (nor this thread's: it stays on the host).
        assert ns_inode(path) != ns_inode(f"/proc/self/ns/{kind}")
        assert ns_inode(path) != ns_inode(f"/proc/thread-self/ns/{kind}")
    assert run("nsenter", f"--uts={ns.uts}", "hostname").strip() == "web-0"
    assert run("hostname").strip() != "web-0"
    lo = run("nsenter", f"--net={ns.net}", "ip", "-o", "link", "show")
    assert len(lo.splitlines()) == 1 and ": lo: <LOOPBACK,UP,LOWER_UP>" in lo
    # Only loopback addresses inside.
    addrs = run("nsenter", f"--net={ns.net}", "ip", "-o", "addr", "show")
    assert "127.0.0.1/8" in addrs and all(" lo " in line for line in addrs.splitlines())
    assert list_sandboxes(root) == [sid]


async def test_sandboxes_are_distinct_and_idempotent(root: Path) -> None:
    a, b = sorted(uuid.uuid4().hex for _ in range(2))
    na = await create_pod_namespaces(root, a, "a")
    nb = await create_pod_namespaces(root, b, "b")
    for kind in ("net", "ipc", "uts"):
        assert ns_inode(getattr(na, kind)) != ns_inode(getattr(nb, kind))
    before = {k: ns_inode(getattr(na, k)) for k in ("net", "ipc", "uts")}
    again = await create_pod_namespaces(root, a, "a")           # complete: kept as it is
    assert again == na and {k: ns_inode(getattr(na, k)) for k in before} == before
    assert list_sandboxes(root) == [a, b]

    await delete_pod_namespaces(root, a)
    assert not (root / a).exists() and mounts_under(root / a) == []
    await delete_pod_namespaces(root, a)                         # idempotent
    await delete_pod_namespaces(root, "never-made")
    assert list_sandboxes(root) == [b] and is_namespace_file(nb.net)  # type: ignore[arg-type]


async def test_netns_outlives_its_pin_while_used(root: Path) -> None:
    """Deleting the pins does not kill a namespace still in use (a process in it)."""
    sid = uuid.uuid4().hex
    ns = await create_pod_namespaces(root, sid, "p")
    proc = subprocess.Popen(["nsenter", f"--net={ns.net}", "sleep", "30"])
    try:
        for _ in range(100):
            try:
                if os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                    break
            except OSError:
                pass
            await asyncio.sleep(0.02)
        ino = ns_inode(ns.net)  # type: ignore[arg-type]
        await delete_pod_namespaces(root, sid)
        assert not (root / sid).exists()
        assert os.stat(f"/proc/{proc.pid}/ns/net").st_ino == ino
    finally:
        proc.kill()
        proc.wait()


async def test_host_network_and_host_ipc(root: Path) -> None:
    sid = uuid.uuid4().hex
    ns = await create_pod_namespaces(root, sid, "ignored", host_network=True)
    assert ns.net is None and ns.uts is None and ns.ipc == str(root.resolve() / sid / "ipc")
    assert sorted(p.name for p in (root / sid).iterdir()) == ["ipc"]
    assert is_namespace_file(ns.ipc)
    assert ns_inode(ns.ipc) != ns_inode("/proc/self/ns/ipc")
    # hostNetwork: any hostname is fine (the node's is used).
    ns2 = await create_pod_namespaces(root, uuid.uuid4().hex, "", host_network=True)
    assert ns2.ipc is not None
    sid3 = uuid.uuid4().hex
    ns3 = await create_pod_namespaces(root, sid3, "x", host_network=True, host_ipc=True)
    assert (ns3.net, ns3.ipc, ns3.uts) == (None, None, None) and (root / sid3).is_dir()
    await delete_all(root)
    assert list_sandboxes(root) == [] and mounts_under(root) == []


async def test_partial_leftover_is_replaced(root: Path) -> None:
    sid = uuid.uuid4().hex
    d = root / sid
    d.mkdir(parents=True)
    (d / "net").touch()                        # an interrupted creation: no mounts
    (d / "stray").write_text("x")
    assert list_sandboxes(root) == [sid]
    ns = await create_pod_namespaces(root, sid, "p")
    assert all(is_namespace_file(getattr(ns, k)) for k in ("net", "ipc", "uts"))
    assert sorted(p.name for p in d.iterdir()) == ["ipc", "net", "uts"]
    # Only one mount per file (not stacked on an old one).
    assert len(mounts_under(d)) == 3


@pytest.mark.parametrize("sid", ["", ".", "..", "a/b"])
async def test_invalid_sandbox_id(root: Path, sid: str) -> None:
    with pytest.raises(ValueError):
        await create_pod_namespaces(root, sid, "p")
    with pytest.raises(ValueError):
        await delete_pod_namespaces(root, sid)


@pytest.mark.parametrize("hostname", ["", "h" * 65])
async def test_invalid_hostname_leaves_nothing(root: Path, hostname: str) -> None:
    sid = uuid.uuid4().hex
    with pytest.raises(ValueError):
        await create_pod_namespaces(root, sid, hostname)
    assert not (root / sid).exists()
    assert (await create_pod_namespaces(root, sid, "h" * 64)).uts is not None


async def test_failure_in_the_thread_leaves_nothing(root: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after some namespaces were pinned is undone completely."""
    real = namespaces._pin

    def pin_then_fail(kinds: tuple[str, ...], d: Path, hostname: str) -> None:
        real(kinds, d, hostname)
        raise OSError(28, "no space left")

    monkeypatch.setattr(namespaces, "_pin", pin_then_fail)
    sid = uuid.uuid4().hex
    with pytest.raises(OSError, match="no space left"):
        await create_pod_namespaces(root, sid, "p")
    assert not (root / sid).exists() and mounts_under(root) == []
    monkeypatch.undo()
    assert (await create_pod_namespaces(root, sid, "p")).net is not None


async def test_replaces_a_file_in_the_way(root: Path) -> None:
    sid = uuid.uuid4().hex
    root.mkdir(parents=True)
    (root / sid).write_text("not a dir")
    assert list_sandboxes(root) == []
    ns = await create_pod_namespaces(root, sid, "p")
    assert is_namespace_file(ns.net)  # type: ignore[arg-type]


async def test_list_sandboxes_missing_root(tmp_path: Path) -> None:
    assert list_sandboxes(tmp_path / "nope") == []
    (tmp_path / "file").write_text("")
    assert list_sandboxes(tmp_path / "file") == []
    await delete_all(tmp_path / "nope")


async def test_shared_root_is_made_private(tmp_path: Path) -> None:
    """Under a shared mount (as /run is on systemd hosts) the root becomes a private mount:
    the pins do not propagate to the mount's peers."""
    top, peer = tmp_path / "top", tmp_path / "peer"
    top.mkdir()
    peer.mkdir()
    run("mount", "-t", "tmpfs", "-o", "size=1m", "pyk8s-test", str(top))
    try:
        run("mount", "--make-shared", str(top))
        run("mount", "--bind", str(top), str(peer))       # a peer of `top`
        root = top / "sandboxes"
        sid = uuid.uuid4().hex
        ns = await create_pod_namespaces(root, sid, "p")
        assert is_namespace_file(ns.net)  # type: ignore[arg-type]
        line = mountinfo_line(str(root))
        assert line and not any(o.startswith("shared:") for o in line[6:line.index("-")])
        assert mounts_under(peer / "sandboxes" / sid) == []
        await delete_all(root)
        assert mounts_under(root) == [] and not (root / sid).exists()
    finally:
        run("umount", "-R", "-l", str(peer), check=False)
        run("umount", "-R", "-l", str(top), check=False)
    assert mounts_under(tmp_path) == []


async def test_private_root_of_a_killed_process_is_undone(tmp_path: Path) -> None:
    """The root's bind mount made by an earlier process (killed with SIGKILL: this module's
    memory of it gone) is recognised by its mark, kept while sandboxes are adopted and
    undone by delete_all."""
    top = tmp_path / "top"
    top.mkdir()
    run("mount", "-t", "tmpfs", "-o", "size=1m", "pyk8s-test", str(top))
    try:
        run("mount", "--make-shared", str(top))
        root = top / "sandboxes"
        sid = uuid.uuid4().hex
        await create_pod_namespaces(root, sid, "p")
        assert (root / namespaces.BIND_MARK).exists()
        namespaces._private_roots.clear()              # the next process starts
        await create_pod_namespaces(root, uuid.uuid4().hex, "q")
        stacked = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                   if line.split()[4] == str(root)]
        assert len(stacked) == 1, stacked                # not bound a second time
        namespaces._private_roots.clear()
        await delete_all(root)
        assert mounts_under(root) == [] and not (root / namespaces.BIND_MARK).exists()
    finally:
        run("umount", "-R", "-l", str(top), check=False)
    assert mounts_under(tmp_path) == []
