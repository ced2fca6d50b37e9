"""The node's network-policy controller: informers on NetworkPolicies, Pods and Namespaces;
any change marks the state dirty and one sync (at most every `min_sync_period`, at least
every `sync_period`) renders every policy for this node's pods and writes what changed.
A sync that fails is logged at once, reported as a Warning event on each policy it
concerned, and retried (after 1 s, doubling up to 30 s while it keeps failing)."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from pyk8s.client.events import WARNING, EventBroadcaster
from pyk8s.client.informer import EventHandlerFuncs, SharedInformer
from pyk8s.client.rest import RESTClient
from pyk8s.client.syncloop import SyncPacer, wait_any
from pyk8s.netpol.iptables import PolicyFirewall
from pyk8s.netpol.rules import Ruleset, render

log = logging.getLogger(__name__)

Obj = dict[str, Any]
COMPONENT = "network-policy-controller"
FAILED_REASON = "FailedToApply"


@dataclass
class NetworkPolicyOptions:
    node_name: str
    chain_prefix: str = "KUBENP"             # rules.chain_prefix(the proxy's prefix)
    min_sync_period: float = 0.1
    sync_period: float = 5.0                 # also how often our FORWARD jump is checked
    cleanup_on_stop: bool = True


def _slim_pod(pod: Obj) -> Obj:
    """What rendering reads of a pod (the informer keeps only this, so that status
    updates that change none of it cause no sync)."""
    md, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    ports = lambda cs: [{"ports": c.get("ports") or []} for c in cs or []]  # noqa: E731
    return {"metadata": {k: md[k] for k in ("name", "namespace", "labels")
                         if k in md},
            "spec": {"nodeName": spec.get("nodeName", ""),
                     "hostNetwork": bool(spec.get("hostNetwork")),
                     "containers": ports(spec.get("containers")),
                     "initContainers": ports(spec.get("initContainers"))},
            "status": {k: status[k] for k in ("phase", "podIP", "podIPs") if k in status}}


class NetworkPolicyController:
    def __init__(self, client: RESTClient, options: NetworkPolicyOptions,
                 firewall: PolicyFirewall | None = None) -> None:
        self.client = client
        self.o = options
        self.firewall = firewall or PolicyFirewall(options.chain_prefix)
        self.policies = SharedInformer(client, "/apis/networking.k8s.io/v1/networkpolicies",
                                       name="netpol-networkpolicies")
        self.pods = SharedInformer(client, "/api/v1/pods", transform=_slim_pod,
                                   name="netpol-pods")
        self.namespaces = SharedInformer(client, "/api/v1/namespaces",
                                         name="netpol-namespaces")
        self.events = EventBroadcaster(client)
        self.recorder = self.events.new_recorder(COMPONENT, options.node_name)
        self.dirty = asyncio.Event()
        self.syncs = 0
        self.last_error = ""
        mark = EventHandlerFuncs(on_add_fn=lambda o: self.dirty.set(),
                                 on_update_fn=self._on_update,
                                 on_delete_fn=lambda o: self.dirty.set())
        for informer in self._informers():
            informer.add_event_handler(mark)

    def _informers(self) -> list[SharedInformer]:
        return [self.policies, self.pods, self.namespaces]

    def _on_update(self, old: Obj, new: Obj) -> None:
        if old != new:
            self.dirty.set()

    def ruleset(self) -> Ruleset:
        return render(self.policies.store.list(), self.pods.store.list(),
                      self.namespaces.store.list(), self.o.node_name, self.o.chain_prefix)

    async def _synced(self, stop: asyncio.Event) -> bool:
        """Until the informers synced (True) or `stop` (False)."""
        synced = asyncio.ensure_future(asyncio.gather(
            *(i.wait_for_sync() for i in self._informers())))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({synced, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if synced.done():
            return True
        synced.cancel()
        await asyncio.gather(synced, return_exceptions=True)
        return False

    async def sync(self) -> None:
        """Render and write; on failure log at once and warn on the policies concerned."""
        rs = self.ruleset()
        try:
            await self.firewall.sync(rs)
            self.syncs += 1
            if self.last_error:
                log.info("network policy: rules applied again on node %s", self.o.node_name)
            self.last_error = ""
            log.debug("network policy sync %d: %d rules, %d sets; wrote %s", self.syncs,
                      rs.rules(), len(rs.sets), self.firewall.last_written)
        except Exception as e:
            log.error("network policy: applying the rules of node %s failed: %s",
                      self.o.node_name, e)
            if str(e) != self.last_error:
                self._warn(rs, str(e))
            self.last_error = str(e)
            raise

    def _warn(self, rs: Ruleset, error: str) -> None:
        """A Warning event on each policy whose chains the failed write held (on every
        policy of this node when it held none of theirs)."""
        written = set(self.firewall.last_written)
        keys = [k for k, chains in rs.policy_chains.items() if written & set(chains)] \
            or list(rs.policy_chains)
        for key in keys:
            obj = self.policies.store.get(key)
            if obj is None:
                continue
            ref = {"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1", **obj}
            self.recorder.event(ref, WARNING, FAILED_REASON,
                                f"cannot apply the policy on node {self.o.node_name}: "
                                f"{error[:500]}")

    async def run(self, stop: asyncio.Event) -> None:
        await self.firewall.setup()
        tasks = [i.start() for i in self._informers()] + [self.events.start()]
        try:
            if not await self._synced(stop):
                return
            log.info("network policy enforcement on node %s (chains %s-…): informers synced",
                     self.o.node_name, self.o.chain_prefix)
            await self._loop(stop)
        finally:
            for t in tasks[:-1]:
                t.cancel()
            await asyncio.gather(*tasks[:-1], return_exceptions=True)
            await self.events.shutdown()
            if self.o.cleanup_on_stop:
                try:
                    await self.firewall.cleanup()
                except Exception as e:
                    log.warning("network policy cleanup: %s", e)

    async def _loop(self, stop: asyncio.Event) -> None:
        self.dirty.set()
        pacer = SyncPacer(self.dirty, self.o.sync_period, self.o.min_sync_period)
        backoff = 1.0
        while await pacer.next(stop):
            try:
                await self.sync()
                backoff = 1.0
            except Exception:          # logged; keep the last good rules, retry
                await wait_any(stop, timeout=backoff)
                backoff = min(backoff * 2, 30.0)
                self.dirty.set()


async def run_network_policy(client: RESTClient, stop: asyncio.Event,
                             options: NetworkPolicyOptions) -> None:
    await NetworkPolicyController(client, options).run(stop)
