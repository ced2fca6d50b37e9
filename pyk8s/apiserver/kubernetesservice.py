"""The `default/kubernetes` Service and its endpoints, as upstream's control plane
"kubernetes" service controller with the lease endpoint reconciler.

Rules:

* the Service: cluster IP = the first address of the service range (10.96.0.1), one port
  `https` 443/TCP whose targetPort is the API servers' port, labels `component: apiserver`,
  `provider: kubernetes`, no selector. Created when missing (also after a user deleted it);
  its ports and type are reset when changed. Every `interval` seconds (upstream: 10 s).
* each API server keeps a lease `/registry/masterleases/<ip>/<port>` for its advertised
  address, renewed every `interval` and live for `ttl` seconds (upstream: 15 s); a clean
  stop removes it. Expired leases are deleted by whichever server sees them.
* the Endpoints `kubernetes` (label `endpointslice.kubernetes.io/skip-mirror: "true"`) list
  the live leases' addresses, one subset per port; the EndpointSlice `kubernetes` (label
  `kubernetes.io/service-name: kubernetes`, addressType of the service range) the addresses
  on the primary port — the port most servers use, the lowest on a tie — which is also the
  Service's targetPort. Every server derives the same objects from the same leases, so
  several API servers on one storage do not fight; each only adds itself.
* an address upstream's Endpoints validation rejects (unspecified, loopback, link-local) is
  not published (upstream's reconciler refuses such an --advertise-address), and with no
  live lease at all the endpoints are left as they are (upstream refuses to erase them).
"""
from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson

from pyk8s.api import errors
from pyk8s.registry.store import Store
from pyk8s.storage import interface as st

if TYPE_CHECKING:
    from pyk8s.apiserver.app import APIServer

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME, NAMESPACE = "kubernetes", "default"
LEASE_PREFIX = "/registry/masterleases/"
SERVICE_LABELS = {"component": "apiserver", "provider": "kubernetes"}
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGER = "kube-apiserver"


def unusable_reason(ip: str) -> str | None:
    """Why upstream's ValidateEndpointIP rejects `ip` as an endpoint address (None: fine)."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return "must be a valid IP address"
    if a.is_unspecified:
        return f"may not be unspecified ({ip})"
    if a.is_loopback:
        return "may not be in the loopback range (127.0.0.0/8, ::1/128)"
    if a.is_link_local and not a.is_multicast:
        return "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
    if a.is_multicast and (a in ipaddress.ip_network("224.0.0.0/24") or
                           a in ipaddress.ip_network("ff02::/16")):
        return "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
    return None


def _family(ip: str) -> str:
    return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"


def endpoints_for(leases: list[tuple[str, int]]) -> tuple[int | None, Obj, Obj]:
    """(primary port, Endpoints subsets holder, EndpointSlice body) for live leases."""
    by_port: dict[int, set[str]] = {}
    for ip, port in leases:
        by_port.setdefault(port, set()).add(ip)
    counts = Counter({p: len(ips) for p, ips in by_port.items()})
    primary = min(counts, key=lambda p: (-counts[p], p)) if counts else None
    subsets = [{"addresses": [{"ip": ip} for ip in sorted(by_port[p])],
                "ports": [{"name": "https", "port": p, "protocol": "TCP"}]}
               for p in sorted(by_port)]
    slice_body: Obj = {
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}
                      for ip in sorted(by_port.get(primary, set()) if primary else [])],
        "ports": [{"name": "https", "port": primary, "protocol": "TCP"}] if primary else []}
    return primary, {"subsets": subsets}, slice_body


class KubernetesService:
    """Keeps `default/kubernetes` and its endpoints (see the module's rules)."""

    def __init__(self, server: "APIServer", service_ip: str, address: str, port: int,
                 interval: float = 10.0, ttl: float = 15.0) -> None:
        self.server = server
        self.storage = server.storage
        self.service_ip = service_ip
        self.family = _family(service_ip)
        self.address = address
        self.port = port
        self.interval = interval
        self.ttl = ttl
        reason = unusable_reason(address) if address else "no address"
        if address and reason:
            log.warning("not publishing %s as an endpoint of the kubernetes Service: %s "
                        "(set --advertise-address)", address, reason)
        elif address and _family(address) != self.family:
            reason = f"not of the service range's family {self.family}"
            log.warning("not publishing %s as an endpoint of the kubernetes Service: %s",
                        address, reason)
        self.publish = reason is None
        self._task: asyncio.Task[None] | None = None

    def _store(self, group: str, plural: str) -> Store:
        info = self.server.catalogue.lookup(group, "v1", plural)
        assert info is not None
        return self.server.store(info)

    @property
    def lease_key(self) -> str:
        return f"{LEASE_PREFIX}{self.address}/{self.port}"

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self._sync_logged()
        self._task = asyncio.create_task(self._run(), name="kubernetes-service")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if not self.publish:
            return
        try:  # upstream RemoveEndpoints: drop our lease, let the endpoints follow
            async with asyncio.timeout(3.0):
                await self.storage.delete(self.lease_key)
                await self._sync_endpoints(await self.live_leases())
        except (st.StorageError, errors.ApiError, TimeoutError) as e:
            log.info("could not remove this server from the kubernetes endpoints: %s", e)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._sync_logged()

    async def _sync_logged(self) -> None:
        try:
            await self.sync_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconciling the kubernetes Service failed; will retry")

    async def sync_once(self) -> None:
        if self.publish:
            await self._renew_lease()
        leases = await self.live_leases()
        primary, _, _ = endpoints_for(leases)
        await self._ensure_service(primary or self.port)
        await self._sync_endpoints(leases)

    # -- leases ----------------------------------------------------------------------------
    async def _renew_lease(self) -> None:
        value = orjson.dumps({"metadata": {"name": f"{self.address}:{self.port}"},
                              "ip": self.address, "port": self.port,
                              "renewTime": time.time()})
        try:
            await self.storage.guaranteed_update(self.lease_key, lambda _kv: value)
        except st.KeyNotFound:
            try:
                await self.storage.create(self.lease_key, value)
            except st.KeyExists:
                await self.storage.guaranteed_update(self.lease_key, lambda _kv: value)

    async def live_leases(self) -> list[tuple[str, int]]:
        """(ip, port) of the live leases of the service range's family; expired ones go."""
        kvs, _ = await self.storage.list(LEASE_PREFIX)
        now = time.time()
        out: list[tuple[str, int]] = []
        for kv in kvs:
            try:
                rec = orjson.loads(kv.value)
                ip, port, renewed = str(rec["ip"]), int(rec["port"]), float(rec["renewTime"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if now - renewed > self.ttl:
                try:
                    await self.storage.delete(kv.key, expected_revision=kv.mod_revision)
                    log.info("the API server lease of %s:%d expired", ip, port)
                except (st.KeyNotFound, st.RevisionConflict):
                    pass
                continue
            if unusable_reason(ip) is None and _family(ip) == self.family:
                out.append((ip, port))
        return out

    # -- objects ---------------------------------------------------------------------------
    async def _ensure_service(self, target_port: int) -> None:
        store = self._store("", "services")
        ports = [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": target_port}]
        try:
            cur = await store.get(NAMESPACE, NAME)
        except errors.NotFound:
            obj = {"metadata": {"name": NAME, "namespace": NAMESPACE,
                                "labels": dict(SERVICE_LABELS)},
                   "spec": {"type": "ClusterIP", "ports": ports, "clusterIP": self.service_ip,
                            "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None"}}
            try:
                await store.create(NAMESPACE, obj, manager=MANAGER)
                log.info("created the kubernetes Service (%s)", self.service_ip)
            except errors.AlreadyExists:
                pass  # another API server was first; the next round checks it
            return
        spec = cur.get("spec") or {}
        if spec.get("type") == "ClusterIP" and spec.get("ports") == ports:
            return

        def reset(o: Obj) -> Obj:
            o.setdefault("spec", {})["ports"] = copy.deepcopy(ports)
            o["spec"]["type"] = "ClusterIP"
            return o
        log.warning("resetting the kubernetes Service's ports and type")
        await store.update(NAMESPACE, NAME, reset, manager=MANAGER)

    async def _sync_endpoints(self, leases: list[tuple[str, int]]) -> None:
        if not leases:
            return  # upstream: refuse to erase all endpoints of the kubernetes service
        _, ep_body, slice_body = endpoints_for(leases)
        await self._apply(self._store("", "endpoints"), {
            "metadata": {"name": NAME, "namespace": NAMESPACE,
                         "labels": {SKIP_MIRROR: "true"}}, **ep_body}, ("subsets",))
        await self._apply(self._store("discovery.k8s.io", "endpointslices"), {
            "metadata": {"name": NAME, "namespace": NAMESPACE,
                         "labels": {SERVICE_NAME_LABEL: NAME}},
            "addressType": self.family, **slice_body}, ("addressType", "endpoints", "ports"))

    async def _apply(self, store: Store, want: Obj, fields: tuple[str, ...]) -> None:
        """Create `want`, or set its labels and `fields` on the stored object if they differ."""
        store.strategy.default(want)
        labels = want["metadata"]["labels"]
        try:
            cur = await store.get(NAMESPACE, NAME)
        except errors.NotFound:
            try:
                await store.create(NAMESPACE, copy.deepcopy(want), manager=MANAGER)
            except errors.AlreadyExists:
                pass
            return
        if (cur.get("metadata") or {}).get("labels") == labels and \
                all(cur.get(f) == want.get(f) for f in fields):
            return

        def put(o: Obj) -> Obj:
            o.setdefault("metadata", {})["labels"] = dict(labels)
            for f in fields:
                o[f] = copy.deepcopy(want.get(f))
            return o
        await store.update(NAMESPACE, NAME, put, manager=MANAGER)
