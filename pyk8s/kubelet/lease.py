"""The node heartbeat: a Lease named after the node in `kube-node-lease`, renewed every
10 s with leaseDurationSeconds 40 (upstream's nodeLeaseDurationSeconds; renew interval is
a quarter of it), owned by the Node so it goes when the Node does."""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

from pyk8s.client.rest import Conflict, NotFound, RESTClient

log = logging.getLogger("pyk8s.kubelet.lease")

Obj = dict[str, Any]
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
RENEW_INTERVAL = LEASE_DURATION_SECONDS / 4   # 10 s


def micro_time(t: datetime | None = None) -> str:
    return (t or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_path(name: str | None = None) -> str:
    base = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
    return f"{base}/{name}" if name else base


def build_lease(node_name: str, node_uid: str, now: str) -> Obj:
    md: Obj = {"name": node_name, "namespace": LEASE_NAMESPACE}
    if node_uid:
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name,
                                  "uid": node_uid}]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": md,
            "spec": {"holderIdentity": node_name,
                     "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now}}


class NodeLease:
    def __init__(self, client: RESTClient, node_name: str, node_uid: str = "",
                 interval: float = RENEW_INTERVAL) -> None:
        self.client = client
        self.node_name = node_name
        self.node_uid = node_uid
        self.interval = interval
        self.renewals = 0
        # The Lease as last written: the next renewal PUTs it without a GET first
        # (upstream's latestLease); a conflict or a missing Lease falls back to GET.
        self._latest: Obj | None = None

    async def renew_once(self) -> Obj:
        if self._latest is not None:
            try:
                return await self._update(self._latest)
            except (Conflict, NotFound):
                self._latest = None
        now = micro_time()
        try:
            lease = await self.client.get(lease_path(self.node_name))
        except NotFound:
            out = await self.client.create(lease_path(),
                                           build_lease(self.node_name, self.node_uid, now))
            self.renewals += 1
            self._latest = out
            return out
        return await self._update(lease)

    async def _update(self, lease: Obj) -> Obj:
        now = micro_time()
        spec = lease.setdefault("spec", {})
        spec["holderIdentity"] = self.node_name
        spec["leaseDurationSeconds"] = LEASE_DURATION_SECONDS
        spec["renewTime"] = now
        if self.node_uid and not lease["metadata"].get("ownerReferences"):
            lease["metadata"]["ownerReferences"] = build_lease(
                self.node_name, self.node_uid, now)["metadata"]["ownerReferences"]
        out = await self.client.update(lease_path(self.node_name), lease)
        self.renewals += 1
        self._latest = out
        return out

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.renew_once()
            except Exception as e:  # keep heartbeating through API server hiccups
                log.warning("renewing lease %s/%s: %s", LEASE_NAMESPACE, self.node_name, e)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
