"""The proxy's control loop: informers on Services and EndpointSlices; every change marks
the state dirty, and one sync (at most every `min_sync_period`, and at least every
`sync_period`, as upstream's --iptables-min-sync-period / --iptables-sync-period) hands
the current service ports to the backend."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from pyk8s.client.informer import EventHandlerFuncs, SharedInformer
from pyk8s.client.rest import ApiError, RESTClient
from pyk8s.client.syncloop import SyncPacer
from pyk8s.proxy.iptables import IptablesProxier
from pyk8s.proxy.model import ServicePort, service_ports

log = logging.getLogger(__name__)


class Backend(Protocol):
    last_rules: int

    async def setup(self) -> None: ...

    async def sync(self, ports: Sequence[ServicePort]) -> float: ...

    async def cleanup(self) -> None: ...


@dataclass
class ProxyOptions:
    node_name: str
    mode: str = "iptables"                  # iptables | userspace
    chain_prefix: str = "KUBE"              # iptables chains: PREFIX-SERVICES, …
    cluster_cidrs: list[str] = field(default_factory=list)  # empty: the Node's podCIDRs
    vip_interface: str = ""                 # userspace: dummy link for cluster IPs (root)
    nodeport_address: str = "0.0.0.0"       # userspace: where NodePorts listen
    localhost_nodeports: bool = True        # iptables: NodePorts on 127.0.0.1 too
    min_sync_period: float = 0.05
    sync_period: float = 30.0
    cleanup_on_stop: bool = True


def make_backend(o: ProxyOptions) -> Backend:
    if o.mode == "iptables":
        return IptablesProxier(o.node_name, o.chain_prefix, o.cluster_cidrs,
                               o.localhost_nodeports)
    if o.mode == "userspace":
        from pyk8s.proxy.userspace import UserspaceProxier
        return UserspaceProxier(o.node_name, o.vip_interface, o.nodeport_address)
    raise ValueError(f"unknown proxy mode {o.mode!r} (iptables or userspace)")


class Proxy:
    def __init__(self, client: RESTClient, options: ProxyOptions,
                 backend: Backend | None = None) -> None:
        self.client = client
        self.o = options
        self.backend = backend or make_backend(options)
        self.services = SharedInformer(client, "/api/v1/services", name="proxy-services")
        self.slices = SharedInformer(client, "/apis/discovery.k8s.io/v1/endpointslices",
                                     name="proxy-endpointslices")
        self.dirty = asyncio.Event()
        self.syncs = 0
        self.last_sync_seconds = 0.0
        mark = EventHandlerFuncs(on_add_fn=lambda o: self.dirty.set(),
                                 on_update_fn=lambda a, b: self.dirty.set(),
                                 on_delete_fn=lambda o: self.dirty.set())
        self.services.add_event_handler(mark)
        self.slices.add_event_handler(mark)

    async def _cluster_cidrs(self) -> None:
        """Without --cluster-cidr, the node's own pod CIDRs decide what is local traffic
        (upstream's --detect-local-mode NodeCIDR)."""
        if self.o.cluster_cidrs or self.o.mode != "iptables":
            return
        try:
            node = await self.client.get(f"/api/v1/nodes/{self.o.node_name}")
        except (ApiError, OSError):
            return
        spec = node.get("spec") or {}
        cidrs = list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
        if cidrs:
            self.o.cluster_cidrs = cidrs
            if isinstance(self.backend, IptablesProxier):
                self.backend.cluster_cidrs = list(cidrs)

    def ports(self) -> list[ServicePort]:
        return service_ports(self.services.store.list(), self.slices.store.list())

    async def run(self, stop: asyncio.Event) -> None:
        await self.backend.setup()
        tasks = [self.services.start(), self.slices.start()]
        try:
            # Until synced or stopped (informers that cannot list, e.g. forbidden, retry
            # for ever: shutdown must not wait for them).
            synced = asyncio.ensure_future(asyncio.gather(self.services.wait_for_sync(),
                                                          self.slices.wait_for_sync()))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({synced, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not synced.done():
                synced.cancel()
                await asyncio.gather(synced, return_exceptions=True)
                return
            log.info("proxy (%s) on node %s: informers synced", self.o.mode, self.o.node_name)
            self.dirty.set()
            pacer = SyncPacer(self.dirty, self.o.sync_period, self.o.min_sync_period)
            while await pacer.next(stop):
                await self._cluster_cidrs()
                try:
                    self.last_sync_seconds = await self.backend.sync(self.ports())
                    self.syncs += 1
                    log.debug("proxy sync %d: %d rules in %.3f s", self.syncs,
                              self.backend.last_rules, self.last_sync_seconds)
                except Exception as e:   # keep serving the last good rules; retry soon
                    log.error("proxy sync failed: %s", e)
                    await asyncio.sleep(1.0)
                    self.dirty.set()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.o.cleanup_on_stop:
                try:
                    await self.backend.cleanup()
                except Exception as e:
                    log.warning("proxy cleanup: %s", e)


async def run_proxy(client: RESTClient, stop: asyncio.Event, options: ProxyOptions) -> None:
    await Proxy(client, options).run(stop)


def default_chain_prefix(bridge: str) -> str:
    """KUBE for the default bridge cni0; for another bridge (several clusters on one host)
    K + 6 hex digits of its name, so each cluster keeps its own chains."""
    if bridge in ("", "cni0"):
        return "KUBE"
    import hashlib
    return "K" + hashlib.sha1(bridge.encode()).hexdigest()[:6].upper()
