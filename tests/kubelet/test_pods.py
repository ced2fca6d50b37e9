"""Pod status building, the fake runtime, the pod IP pool and lease building."""
from __future__ import annotations

import asyncio

import pytest

from pyk8s.kubelet.lease import LEASE_DURATION_SECONDS, build_lease, micro_time
from pyk8s.kubelet.podworkers import (PodIPAM, build_pod_status, default_pod_cidr,
                                      pod_status_changed)
from pyk8s.kubelet.runtime import NotImplementedRuntime, make_runtime
from pyk8s.kubelet.runtimes.fake import FakeRuntime


def pod(**spec: object) -> dict:
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx:1"}],
                     **spec},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": "T-1"}]}}


async def start(rt: FakeRuntime, p: dict) -> None:
    for c in p["spec"].get("initContainers") or []:
        await rt.start_container(await rt.create_container("u1", c, init=True))
    for c in p["spec"]["containers"]:
        await rt.start_container(await rt.create_container("u1", c))


def test_running_pod_status() -> None:
    rt = FakeRuntime()
    p = pod(initContainers=[{"name": "init", "image": "busybox"}])
    asyncio.run(start(rt, p))
    st = build_pod_status(p, rt.pod_containers("u1"), "10.244.1.2", "127.0.0.1", "T0")
    assert st["phase"] == "Running"
    assert st["podIP"] == "10.244.1.2" and st["hostIP"] == "127.0.0.1"
    assert st["startTime"] == "T0"
    conds = {c["type"]: c for c in st["conditions"]}
    for t in ("Initialized", "ContainersReady", "Ready", "PodReadyToStartContainers"):
        assert conds[t]["status"] == "True" and conds[t]["lastTransitionTime"] == "T0"
    assert conds["PodScheduled"]["lastTransitionTime"] == "T-1"  # the scheduler's, kept
    (cs,) = st["containerStatuses"]
    assert cs["name"] == "c" and cs["image"] == "nginx:1" and cs["ready"] and cs["started"]
    assert cs["containerID"].startswith("fake://") and cs["restartCount"] == 0
    assert cs["imageID"].startswith("nginx@sha256:")
    assert "startedAt" in cs["state"]["running"]
    (ics,) = st["initContainerStatuses"]
    assert ics["state"]["terminated"]["exitCode"] == 0 and ics["ready"]
    # Posted once: rebuilding later changes nothing, transition times stay.
    p2 = dict(p, status=st)
    st2 = build_pod_status(p2, rt.pod_containers("u1"), "10.244.1.2", "127.0.0.1", "T1")
    assert not pod_status_changed(st, st2)


def test_host_network_pod_uses_host_ip() -> None:
    rt = FakeRuntime()
    p = pod(hostNetwork=True)
    asyncio.run(start(rt, p))
    st = build_pod_status(p, rt.pod_containers("u1"), "127.0.0.1", "127.0.0.1", "T0")
    assert st["podIP"] == "127.0.0.1"


def test_not_started_pod_is_pending_not_ready() -> None:
    st = build_pod_status(pod(), [], "10.244.1.2", "127.0.0.1", "T0")
    assert st["phase"] == "Pending"
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "ContainersNotReady"
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}


def test_kill_and_remove() -> None:
    rt = FakeRuntime()
    asyncio.run(start(rt, pod()))
    (c,) = rt.pod_containers("u1")
    asyncio.run(rt.kill_container(c.container_id.split("://")[1], 30))
    assert c.state == "exited"
    asyncio.run(rt.remove_pod("u1"))
    assert rt.pod_containers("u1") == [] and rt.pod_uids() == []


def test_ipam() -> None:
    cidr = default_pod_cidr("node-a")
    assert cidr == default_pod_cidr("node-a") and cidr.startswith("10.244.")
    ipam = PodIPAM("10.244.7.0/24")
    a, b = ipam.allocate("a"), ipam.allocate("b")
    assert (a, b) == ("10.244.7.2", "10.244.7.3") and ipam.allocate("a") == a
    ipam.release("a")
    assert ipam.allocate("c") == "10.244.7.2"


def test_runtimes() -> None:
    assert make_runtime("fake").version() == "fake://0.1"
    assert make_runtime("process").version() == "process://0.1"
    with pytest.raises(NotImplementedRuntime, match="unknown runtime 'docker'"):
        make_runtime("docker")


def test_lease() -> None:
    now = micro_time()
    lease = build_lease("n1", "uid-1", now)
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["spec"] == {"holderIdentity": "n1", "leaseDurationSeconds": 40,
                             "renewTime": now} and LEASE_DURATION_SECONDS == 40
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
