"""Hollow-node pieces: the fake runtime's exit-code annotation, the lazy pod IPAM, the
Lease renewed without a GET, hollow node names."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyk8s.client.rest import Conflict
from pyk8s.kubelet.agent import hollow_node_names
from pyk8s.kubelet.lease import NodeLease
from pyk8s.kubelet.podworkers import PodIPAM
from pyk8s.kubelet.runtimes.fake import EXIT_CODE_ANNOTATION, FakeRuntime


def test_hollow_node_names() -> None:
    assert hollow_node_names("n", 1) == ["n"]
    assert hollow_node_names("n", 3) == ["n-0", "n-1", "n-2"]


def test_ipam_exhausts_and_reuses_lowest() -> None:
    ipam = PodIPAM("10.244.1.0/24")
    ips = [ipam.allocate(str(i)) for i in range(253)]
    assert ips[0] == "10.244.1.2" and ips[-1] == "10.244.1.254"
    with pytest.raises(RuntimeError, match="exhausted"):
        ipam.allocate("x")
    ipam.release("7")
    ipam.release("3")
    assert ipam.allocate("y") == "10.244.1.5" and ipam.allocate("z") == "10.244.1.9"


async def test_fake_exit_code() -> None:
    rt = FakeRuntime()
    exited: list[str] = []
    rt.on_exit = exited.append
    rt.set_pod({"metadata": {"uid": "u1", "annotations": {EXIT_CODE_ANNOTATION: "3"}}}, "")
    rt.set_pod({"metadata": {"uid": "u2"}}, "")
    init = await rt.create_container("u1", {"name": "i", "image": "busybox"}, init=True)
    await rt.start_container(init)
    c1 = await rt.create_container("u1", {"name": "c", "image": "busybox"})
    await rt.start_container(c1)
    c2 = await rt.create_container("u2", {"name": "c", "image": "busybox"})
    await rt.start_container(c2)
    await asyncio.sleep(0)
    [i, c] = rt.pod_containers("u1")
    assert (i.state, i.exit_code) == ("exited", 0)          # init containers still succeed
    assert (c.state, c.exit_code, c.reason) == ("exited", 3, "Error") and c.finished_time
    assert rt.pod_containers("u2")[0].state == "running"
    assert exited == ["u1"]
    # A restart counts; only the previous instance (lastState) and the current are kept.
    await rt.start_container(await rt.create_container("u1", {"name": "c", "image": "b"}))
    await rt.start_container(await rt.create_container("u1", {"name": "c", "image": "b"}))
    cs = [x for x in rt.pod_containers("u1") if not x.init]
    assert [x.restart_count for x in cs] == [1, 2]
    await rt.remove_pod("u1")
    assert rt.pod_containers("u1") == [] and not rt._exit_codes and not rt._owner


class _Client:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.rv = 1
        self.conflict_next = False

    async def get(self, path: str) -> Any:
        self.calls.append("GET")
        return {"metadata": {"name": "n1", "resourceVersion": str(self.rv)}, "spec": {}}

    async def update(self, path: str, body: Any) -> Any:
        self.calls.append("PUT")
        if self.conflict_next:
            self.conflict_next = False
            raise Conflict(409, "Conflict", "stale")
        self.rv += 1
        return {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.rv)}}


async def test_lease_renews_without_get() -> None:
    client = _Client()
    lease = NodeLease(client, "n1", "uid-1")  # type: ignore[arg-type]
    for _ in range(3):
        await lease.renew_once()
    assert client.calls == ["GET", "PUT", "PUT", "PUT"]
    client.conflict_next = True
    out = await lease.renew_once()
    assert client.calls[4:] == ["PUT", "GET", "PUT"] and lease.renewals == 4
    assert out["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
