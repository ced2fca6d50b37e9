"""Leader election against the in-memory fake client, with a fake clock."""
from __future__ import annotations

import asyncio
import re
from datetime import datetime, timezone

import pytest

from pyk8s.client.fake import FakeClient
from pyk8s.client.leaderelection import LeaderElectionConfig, LeaderElector, micro_time

LEASE = ("coordination.k8s.io", "leases", "kube-system", "kube-controller-manager")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def elector(client: FakeClient, identity: str, clock: Clock, **kw: float) -> LeaderElector:
    async def lead() -> None:
        await asyncio.sleep(3600)
    return LeaderElector(client, LeaderElectionConfig(identity=identity, **kw),
                         on_started_leading=lead, clock=clock)


def test_micro_time_format() -> None:
    t = datetime(2006, 1, 2, 15, 4, 5, 7, tzinfo=timezone.utc)
    assert micro_time(t) == "2006-01-02T15:04:05.000007Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", micro_time())


def test_config_validation_follows_upstream() -> None:
    LeaderElectionConfig(identity="a").validate()  # 15 / 10 / 2
    with pytest.raises(ValueError):
        LeaderElectionConfig(identity="a", lease_duration=10, renew_deadline=10).validate()
    with pytest.raises(ValueError):
        LeaderElectionConfig(identity="a", renew_deadline=2.0, retry_period=2.0).validate()
    with pytest.raises(ValueError):
        LeaderElectionConfig(identity="").validate()


async def test_acquire_renew_expire_takeover_and_release() -> None:
    client = FakeClient()
    ca, cb = Clock(), Clock()
    a, b = elector(client, "a", ca), elector(client, "b", cb)
    assert await a.try_acquire_or_renew()
    spec = client.objects[LEASE]["spec"]
    assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0 and spec["acquireTime"] == spec["renewTime"]
    assert a.is_leader()
    # b sees a valid lease held by a.
    assert not await b.try_acquire_or_renew()
    assert b.get_leader() == "a" and not b.is_leader()
    # a renews (fast path): renewTime moves, acquireTime stays.
    first_acquire = spec["acquireTime"]
    ca.t += 2
    await asyncio.sleep(0.001)
    assert await a.try_acquire_or_renew()
    spec = client.objects[LEASE]["spec"]
    assert spec["acquireTime"] == first_acquire
    # b observed a change: the lease counts from now on b's clock.
    cb.t += 10
    assert not await b.try_acquire_or_renew()
    cb.t += 14.9
    assert not await b.try_acquire_or_renew()
    # a stops renewing; 15 s after b last saw a change, b takes over.
    cb.t += 15.1
    assert await b.try_acquire_or_renew()
    spec = client.objects[LEASE]["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert spec["acquireTime"] != first_acquire
    # a's fast-path renew conflicts; the slow path sees b's valid lease.
    ca.t += 1
    assert not await a.try_acquire_or_renew()
    assert not a.is_leader() and a.get_leader() == "b"
    # b releases: holder "" and a 1 s lease; a may take it at once.
    assert await b.release()
    spec = client.objects[LEASE]["spec"]
    assert spec["holderIdentity"] == "" and spec["leaseDurationSeconds"] == 1
    assert await a.try_acquire_or_renew()
    assert client.objects[LEASE]["spec"]["leaseTransitions"] == 2


async def test_run_leads_until_renewal_fails_then_stops_leading() -> None:
    client = FakeClient()
    started = asyncio.Event()
    cancelled = asyncio.Event()
    stopped: list[bool] = []

    async def lead() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
    le = LeaderElector(client, LeaderElectionConfig(identity="a", lease_duration=1.0,
                                                    renew_deadline=0.5, retry_period=0.1),
                       on_started_leading=lead, on_stopped_leading=lambda: stopped.append(True))
    run = asyncio.create_task(le.run())
    await asyncio.wait_for(started.wait(), 2.0)
    # Someone else grabs the lease: every renewal now fails.
    client.objects[LEASE]["spec"]["holderIdentity"] = "intruder"
    client.objects[LEASE]["metadata"]["resourceVersion"] = "999999"
    await asyncio.wait_for(run, 3.0)
    assert cancelled.is_set() and stopped == [True]
    assert client.objects[LEASE]["spec"]["holderIdentity"] == "intruder"  # not released


async def test_run_releases_on_cancel() -> None:
    client = FakeClient()
    started = asyncio.Event()

    async def lead() -> None:
        started.set()
        await asyncio.sleep(3600)
    le = LeaderElector(client, LeaderElectionConfig(identity="a", lease_duration=1.0,
                                                    renew_deadline=0.5, retry_period=0.1),
                       on_started_leading=lead)
    run = asyncio.create_task(le.run())
    await asyncio.wait_for(started.wait(), 2.0)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    assert client.objects[LEASE]["spec"]["holderIdentity"] == ""
