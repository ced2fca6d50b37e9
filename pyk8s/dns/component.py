"""`run_dns`: the cluster DNS server as a component — informers on Services, EndpointSlices and
Namespaces (cluster-wide) feeding `ClusterRecords`, the UDP + TCP listeners, forwarding to
the resolvers of a resolv.conf, and what the server publishes through the API server (the
`kube-dns` Service when `service_ip` is set; this server's EndpointSlice, once the
informers have synced, when `publish_address` is set — deleted again on stop).

Writes that fail are retried with backoff; the published slice is checked again whenever
the informer sees it change and every `RESYNC_PERIOD` seconds, so a deleted or edited slice
comes back.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from pyk8s.client.informer import SharedInformerFactory, handler_funcs, object_key
from pyk8s.client.rest import RESTClient
from pyk8s.dns.forwarder import Forwarder
from pyk8s.dns.publish import (NAMESPACE, delete_slice, desired_slice, ensure_dns_service,
                               reconcile_slice)
from pyk8s.dns.records import SERVICE_INDEXERS, SLICE_INDEXERS, ClusterRecords
from pyk8s.dns.server import DNSHandler, DNSServer

log = logging.getLogger("pyk8s.dns")

Obj = dict[str, Any]

RESYNC_PERIOD = 30.0
MIN_RECONCILE_INTERVAL = 1.0
DELETE_TIMEOUT = 5.0


@dataclass
class DNSOptions:
    """How `run_dns` serves and what it publishes."""
    cluster_domain: str = "cluster.local"
    listen: list[tuple[str, int]] = field(default_factory=lambda: [("127.0.0.1", 10053)])
    upstream_resolv_conf: str = "/etc/resolv.conf"
    node_name: str = ""
    publish_address: str | None = None
    service_ip: str | None = None  # the kube-dns Service's fixed ClusterIP, e.g. 10.96.0.10
    ttl: int = 5


async def _retry(what: str, fn: Callable[[], Awaitable[Any]]) -> None:
    """Call `fn` until it succeeds, backing off on errors."""
    backoff = 0.5
    while True:
        try:
            await fn()
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("%s failed (%s); retrying in %.1fs", what, e or type(e).__name__,
                        backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


async def _keep_slice(client: RESTClient, want: Obj, factory: SharedInformerFactory,
                      wake: asyncio.Event) -> None:
    """Publish `want` once the caches are synced and keep it as it is."""
    await factory.wait_for_cache_sync()
    name = want["metadata"]["name"]
    while True:
        await _retry(f"publishing EndpointSlice {NAMESPACE}/{name}",
                     lambda: reconcile_slice(client, want))
        await asyncio.sleep(MIN_RECONCILE_INTERVAL)
        try:
            await asyncio.wait_for(wake.wait(), RESYNC_PERIOD)
        except TimeoutError:
            pass
        wake.clear()


async def run_dns(client: RESTClient, stop: asyncio.Event, options: DNSOptions) -> None:
    """Serve cluster DNS until `stop` is set (see the module docstring). Raises OSError
    when a listen address cannot be bound."""
    factory = SharedInformerFactory(client)
    services = factory.services(indexers=SERVICE_INDEXERS)
    slices = factory.endpoint_slices(indexers=SLICE_INDEXERS)
    namespaces = factory.namespaces()
    informers = (services, slices, namespaces)
    ns_ips = [ip for ip in (options.service_ip, options.publish_address) if ip][:1]
    records = ClusterRecords(services.store, slices.store, namespaces.store,
                             zone=options.cluster_domain, ttl=options.ttl,
                             synced=lambda: all(i.has_synced() for i in informers),
                             ns_ips=ns_ips)
    want: Obj | None = None
    wake = asyncio.Event()

    def changed(obj: Obj, *_: Obj) -> None:
        records.touch()
        if want is not None and object_key(obj) == object_key(want):
            wake.set()

    for inf in informers:
        inf.add_event_handler(handler_funcs(changed, lambda old, new: changed(new), changed))
    # Never forward to ourselves: a wildcard listener is also reachable on loopback.
    exclude = [(host, port) for host, port in options.listen if port == 53]
    if any(host in ("0.0.0.0", "::") for host, _ in exclude):
        exclude += [("127.0.0.1", 53), ("::1", 53)]
    forwarder = Forwarder(options.upstream_resolv_conf, exclude=exclude)
    server = DNSServer(DNSHandler(records, forwarder), options.listen)
    await server.start()
    port = server.addresses[0][1] if server.addresses else 53
    factory.start()
    tasks: list[asyncio.Task[None]] = []
    if options.service_ip:
        ip = options.service_ip
        tasks.append(asyncio.create_task(_retry(
            "ensuring Service kube-system/kube-dns",
            lambda: ensure_dns_service(client, ip, port)), name="dns: kube-dns Service"))
    if options.publish_address:
        want = desired_slice(options.node_name, options.publish_address, port)
        tasks.append(asyncio.create_task(_keep_slice(client, want, factory, wake),
                                         name="dns: EndpointSlice"))
    log.info("cluster DNS for %s serving on %s", records.zone,
             ", ".join(f"{h}:{p}" for h, p in server.addresses))
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if want is not None:
            try:
                await asyncio.wait_for(delete_slice(client, want["metadata"]["name"]),
                                       DELETE_TIMEOUT)
            except Exception as e:
                log.warning("could not delete EndpointSlice %s/%s: %s", NAMESPACE,
                            want["metadata"]["name"], e or type(e).__name__)
        await server.close()
        await factory.stop()


__all__ = ["DNSOptions", "run_dns"]
