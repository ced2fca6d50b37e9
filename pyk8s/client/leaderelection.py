"""Leader election on a coordination.k8s.io/v1 Lease, after client-go's `tools/leaderelection`.

Candidates race to hold the Lease `namespace/name`: the holder writes its identity and
renews `spec.renewTime` every `retry_period`; the others take over once they have seen the
same record, unchanged, for `lease_duration` (measured on their own clock, so clocks need
not agree). A leader that fails to renew within `renew_deadline` stops leading.
Upstream's timings: lease 15 s, renew deadline 10 s, retry 2 s.

`LeaderElector.run()` acquires, runs `on_started_leading()` in a task while renewing,
and cancels that task (then calls `on_stopped_leading`) when leadership is lost. It
returns after losing the lease; callers that want to stand again call `run()` again.
On cancellation a leader releases the lease (holderIdentity "", leaseDurationSeconds 1),
so another candidate takes over at once.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from pyk8s.client.rest import AlreadyExists, ApiError, NotFound

log = logging.getLogger("pyk8s.client.leaderelection")

Obj = dict[str, Any]

JITTER_FACTOR = 1.2
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"


def micro_time(t: datetime | None = None) -> str:
    """metav1.MicroTime's wire format: `2006-01-02T15:04:05.000000Z`."""
    t = t or datetime.now(timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    """`<hostname>_<uuid>`, as kube-controller-manager's."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass
class LeaderElectionRecord:
    """The Lease spec fields leader election reads and writes."""
    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    leader_transitions: int = 0

    @classmethod
    def from_lease(cls, lease: Obj) -> "LeaderElectionRecord":
        spec = lease.get("spec") or {}
        return cls(holder_identity=str(spec.get("holderIdentity") or ""),
                   lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
                   acquire_time=spec.get("acquireTime"), renew_time=spec.get("renewTime"),
                   leader_transitions=int(spec.get("leaseTransitions") or 0))

    def to_spec(self) -> Obj:
        spec: Obj = {"holderIdentity": self.holder_identity,
                     "leaseDurationSeconds": self.lease_duration_seconds,
                     "leaseTransitions": self.leader_transitions}
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec


@dataclass
class LeaderElectionConfig:
    lock_namespace: str = "kube-system"
    lock_name: str = "kube-controller-manager"
    identity: str = field(default_factory=default_identity)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True

    def validate(self) -> None:
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("leaseDuration must be greater than renewDeadline")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
        if self.lease_duration < 1 or self.retry_period <= 0:
            raise ValueError("leaseDuration must be >= 1s and retryPeriod > 0")
        if not self.identity:
            raise ValueError("identity must not be empty")


class LeaseLock:
    """GET / create / update of the Lease through the REST client."""

    def __init__(self, client: Any, namespace: str, name: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.lease: Obj | None = None  # the last one read or written

    @property
    def path(self) -> str:
        return LEASES.format(ns=self.namespace) + "/" + self.name

    async def get(self) -> LeaderElectionRecord:
        self.lease = await self.client.get(self.path)
        return LeaderElectionRecord.from_lease(self.lease)

    async def create(self, record: LeaderElectionRecord) -> None:
        self.lease = await self.client.create(LEASES.format(ns=self.namespace), {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": record.to_spec()})

    async def update(self, record: LeaderElectionRecord) -> None:
        """PUT with the resourceVersion last seen: a concurrent change is a Conflict."""
        if self.lease is None:
            raise RuntimeError("lease not initialized, call get or create first")
        lease = copy.deepcopy(self.lease)
        lease["spec"] = {**(lease.get("spec") or {}), **record.to_spec()}
        self.lease = await self.client.update(self.path, lease)


class LeaderElector:
    """One candidate. See the module docstring."""

    def __init__(self, client: Any, config: LeaderElectionConfig, *,
                 on_started_leading: Callable[[], Awaitable[None]],
                 on_stopped_leading: Callable[[], None] | None = None,
                 on_new_leader: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        config.validate()
        self.config = config
        self.lock = LeaseLock(client, config.lock_namespace, config.lock_name)
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self.clock = clock
        self.now = now
        self.observed_record = LeaderElectionRecord()
        self.observed_raw: Obj | None = None
        self.observed_time = 0.0
        self._reported_leader = ""

    # -- state ----------------------------------------------------------------------------
    @property
    def identity(self) -> str:
        return self.config.identity

    def is_leader(self) -> bool:
        return self.observed_record.holder_identity == self.identity

    def get_leader(self) -> str:
        return self.observed_record.holder_identity

    def is_lease_valid(self) -> bool:
        return self.observed_time + self.observed_record.lease_duration_seconds > self.clock()

    def _set_observed(self, record: LeaderElectionRecord) -> None:
        self.observed_record = record
        self.observed_time = self.clock()
        if record.holder_identity != self._reported_leader:
            self._reported_leader = record.holder_identity
            if self.on_new_leader is not None and record.holder_identity:
                try:
                    self.on_new_leader(record.holder_identity)
                except Exception:
                    log.exception("on_new_leader failed")

    # -- one attempt ----------------------------------------------------------------------
    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the lease (client-go's `tryAcquireOrRenew`)."""
        now = micro_time(self.now())
        record = LeaderElectionRecord(
            holder_identity=self.identity,
            lease_duration_seconds=int(self.config.lease_duration),
            acquire_time=now, renew_time=now)
        # 1. The leader renews from what it wrote last, without reading first.
        if self.is_leader() and self.is_lease_valid():
            record.acquire_time = self.observed_record.acquire_time
            record.leader_transitions = self.observed_record.leader_transitions
            try:
                await self.lock.update(record)
                self._set_observed(record)
                return True
            except ApiError as e:
                log.info("failed to renew lease %s/%s (%s), falling back to the slow path",
                         self.config.lock_namespace, self.config.lock_name, e)
        # 2. Read, or create.
        try:
            old = await self.lock.get()
        except NotFound:
            try:
                await self.lock.create(record)
            except AlreadyExists:
                return False
            self._set_observed(record)
            return True
        raw = (self.lock.lease or {}).get("spec") or {}
        # 3. Held by someone else and not expired (by our clock): wait.
        if self.observed_raw != raw:
            self.observed_raw = copy.deepcopy(raw)
            self._set_observed(old)
        if old.holder_identity and self.is_lease_valid() and not self.is_leader():
            log.debug("lock is held by %s and has not yet expired", old.holder_identity)
            return False
        # 4. Take it, or keep it.
        if self.is_leader():
            record.acquire_time = old.acquire_time
            record.leader_transitions = old.leader_transitions
        else:
            record.leader_transitions = old.leader_transitions + 1
        await self.lock.update(record)
        self.observed_raw = copy.deepcopy((self.lock.lease or {}).get("spec") or {})
        self._set_observed(record)
        return True

    async def _attempt(self) -> bool:
        try:
            return await self.try_acquire_or_renew()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.info("error retrieving or updating lease %s/%s: %s", self.config.lock_namespace,
                     self.config.lock_name, e or type(e).__name__)
            return False

    def _jittered(self, period: float) -> float:
        return period * (1 + random.random() * (JITTER_FACTOR - 1))

    # -- the loops ------------------------------------------------------------------------
    async def acquire(self) -> None:
        """Return once the lease is ours."""
        desc = f"{self.config.lock_namespace}/{self.config.lock_name}"
        log.info("attempting to acquire leader lease %s...", desc)
        while True:
            if await self._attempt():
                log.info("successfully acquired lease %s", desc)
                return
            await asyncio.sleep(self._jittered(self.config.retry_period))

    async def renew(self) -> None:
        """Renew every `retry_period`; return when a renewal did not succeed within
        `renew_deadline`."""
        while True:
            deadline = self.clock() + self.config.renew_deadline
            while True:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    return
                try:
                    ok = await asyncio.wait_for(self._attempt(), remaining)
                except asyncio.TimeoutError:
                    return
                if ok:
                    break
                await asyncio.sleep(min(self.config.retry_period,
                                        max(0.0, deadline - self.clock())))
            await asyncio.sleep(self.config.retry_period)

    async def release(self) -> bool:
        """Give the lease up if we hold it (others may take it at once)."""
        if not self.is_leader():
            return True
        now = micro_time(self.now())
        record = LeaderElectionRecord(holder_identity="", lease_duration_seconds=1,
                                      acquire_time=now, renew_time=now,
                                      leader_transitions=self.observed_record.leader_transitions)
        try:
            await self.lock.update(record)
        except Exception as e:
            log.info("failed to release lease: %s", e)
            return False
        self._set_observed(record)
        return True

    async def run(self) -> None:
        """Acquire, lead while renewing, and return once leadership is lost."""
        await self.acquire()
        loop = asyncio.get_running_loop()
        leading = loop.create_task(self._lead(), name="leader-elected work")
        renewing = loop.create_task(self.renew(), name="leader-election renew")
        try:
            await asyncio.wait({leading, renewing}, return_when=asyncio.FIRST_COMPLETED)
            if renewing.done():
                log.warning("leader election lost: %s/%s", self.config.lock_namespace,
                            self.config.lock_name)
        finally:
            for t in (leading, renewing):
                t.cancel()
            await asyncio.gather(leading, renewing, return_exceptions=True)
            if self.on_stopped_leading is not None:
                self.on_stopped_leading()
            if self.config.release_on_cancel:
                release = loop.create_task(self.release())
                try:
                    await asyncio.wait_for(asyncio.shield(release),
                                           2 * self.config.retry_period)
                except asyncio.TimeoutError:
                    pass

    async def _lead(self) -> None:
        try:
            await self.on_started_leading()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("leader-elected work failed")
            raise



async def run_while_leading(component: str, work: Callable[[], Awaitable[None]],
                            stop: asyncio.Event, le_client: Any,
                            config: LeaderElectionConfig | None) -> None:
    """Run `work` until `stop` is set: at once when `config` is None, otherwise only while
    holding the Lease, standing again (after a retry period) whenever it is lost."""
    loop = asyncio.get_running_loop()
    stopping = loop.create_task(stop.wait())
    try:
        if config is None:
            task = loop.create_task(work(), name=component)
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return
        log.info("%s: leader election as %s", component, config.identity)
        while not stop.is_set():
            elector = LeaderElector(
                le_client, config, on_started_leading=work,
                on_stopped_leading=lambda: log.info("%s: stopped leading", component),
                on_new_leader=lambda who: log.info("%s: new leader %s", component, who))
            election = loop.create_task(elector.run(), name=f"{component} leader election")
            await asyncio.wait({election, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not election.done():
                election.cancel()
            await asyncio.gather(election, return_exceptions=True)
            if not stop.is_set():
                log.warning("%s: lost the lease; standing again", component)
                await asyncio.sleep(config.retry_period)
    finally:
        stopping.cancel()

__all__ = ["run_while_leading", "LeaderElector", "LeaderElectionConfig", "LeaderElectionRecord", "LeaseLock",
           "micro_time", "default_identity"]
