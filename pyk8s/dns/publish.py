"""What the DNS server writes to the API server: the `kube-dns` Service and this server's
EndpointSlice.

- `ensure_dns_service`: the Service `kube-system/kube-dns` (labels `k8s-app: kube-dns`,
  `kubernetes.io/name: CoreDNS`; the fixed ClusterIP; ports `dns` 53/UDP and `dns-tcp`
  53/TCP; no selector; `internalTrafficPolicy: Local`, so that each node's proxy sends to
  its own DNS server) is created when absent; an existing one is left alone (a warning
  when its ClusterIP differs).
- `desired_slice` / `reconcile_slice`: the EndpointSlice `kube-dns-<node>` in kube-system
  (`kubernetes.io/service-name: kube-dns`, `endpointslice.kubernetes.io/managed-by:
  pyk8s-dns`), one ready endpoint (the publish address, `nodeName`) and the ports `dns`
  (UDP) and `dns-tcp` (TCP) with the port served; created, or updated when it differs
  (recreated when its addressType, which is immutable, changed). `delete_slice` removes
  it when the server stops.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
from typing import Any, Protocol

from pyk8s.client.rest import AlreadyExists, NotFound, resource_path

log = logging.getLogger("pyk8s.dns.publish")

Obj = dict[str, Any]

NAMESPACE = "kube-system"
SERVICE_NAME = "kube-dns"
MANAGED_BY = "pyk8s-dns"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SERVICE_LABELS = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
SERVICE_PATH = resource_path("", "v1", "services", NAMESPACE, SERVICE_NAME)
SLICES_PATH = resource_path("discovery.k8s.io", "v1", "endpointslices", NAMESPACE)


class Client(Protocol):
    """The part of `RESTClient` used here."""

    async def get(self, path: str, params: Any = None) -> Obj: ...

    async def create(self, path: str, body: Obj, params: Any = None) -> Obj: ...

    async def update(self, path: str, body: Obj, params: Any = None) -> Obj: ...

    async def delete(self, path: str, options: Obj | None = None, params: Any = None
                     ) -> Obj: ...


def dns_service(service_ip: str, port: int = 53) -> Obj:
    """The kube-dns Service; `port` is the target port the servers listen on."""
    family = "IPv6" if ipaddress.ip_address(service_ip).version == 6 else "IPv4"
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE_NAME, "namespace": NAMESPACE,
                     "labels": dict(SERVICE_LABELS)},
        "spec": {"type": "ClusterIP", "clusterIP": service_ip, "clusterIPs": [service_ip],
                 "ipFamilies": [family], "ipFamilyPolicy": "SingleStack",
                 "internalTrafficPolicy": "Local",
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": port},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP",
                            "targetPort": port}]}}


async def ensure_dns_service(client: Client, service_ip: str, port: int = 53) -> Obj:
    """The kube-dns Service, created if absent (see the module docstring)."""
    try:
        existing = await client.get(SERVICE_PATH)
    except NotFound:
        try:
            created = await client.create(resource_path("", "v1", "services", NAMESPACE),
                                          dns_service(service_ip, port))
            log.info("created Service %s/%s (%s)", NAMESPACE, SERVICE_NAME, service_ip)
            return created
        except AlreadyExists:
            existing = await client.get(SERVICE_PATH)
    ip = (existing.get("spec") or {}).get("clusterIP")
    if ip != service_ip:
        log.warning("Service %s/%s exists with ClusterIP %s, not %s: left as it is",
                    NAMESPACE, SERVICE_NAME, ip, service_ip)
    return existing


def slice_name(node_name: str) -> str:
    """`kube-dns-<node>` (the host name without a node name), a valid object name."""
    node = node_name or socket.gethostname()
    node = re.sub(r"[^a-z0-9.-]+", "-", node.lower()).strip("-.") or "node"
    return f"{SERVICE_NAME}-{node}"[:253].rstrip("-.")


def desired_slice(node_name: str, address: str, port: int) -> Obj:
    """This server's EndpointSlice (see the module docstring)."""
    family = "IPv6" if ipaddress.ip_address(address).version == 6 else "IPv4"
    endpoint: Obj = {"addresses": [address],
                     "conditions": {"ready": True, "serving": True, "terminating": False}}
    if node_name:
        endpoint["nodeName"] = node_name
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": slice_name(node_name), "namespace": NAMESPACE,
                     "labels": {LABEL_SERVICE_NAME: SERVICE_NAME,
                                LABEL_MANAGED_BY: MANAGED_BY}},
        "addressType": family,
        "endpoints": [endpoint],
        "ports": [{"name": "dns", "protocol": "UDP", "port": port},
                  {"name": "dns-tcp", "protocol": "TCP", "port": port}]}


def _essence(es: Obj) -> tuple[Any, ...]:
    """What this server decides of a slice (fields the API server may default aside)."""
    eps = tuple((tuple(ep.get("addresses") or ()), (ep.get("conditions") or {}).get("ready"),
                 ep.get("nodeName")) for ep in es.get("endpoints") or [])
    ports = tuple((p.get("name"), p.get("protocol"), p.get("port"))
                  for p in es.get("ports") or [])
    return es.get("addressType"), eps, ports


def _differs(current: Obj, want: Obj) -> bool:
    labels = (current.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in want["metadata"]["labels"].items()):
        return True
    return _essence(current) != _essence(want)


async def reconcile_slice(client: Client, want: Obj) -> Obj:
    """Make the stored slice what `want` says (create, update or recreate)."""
    name = want["metadata"]["name"]
    path = f"{SLICES_PATH}/{name}"
    try:
        current = await client.get(path)
    except NotFound:
        created = await client.create(SLICES_PATH, want)
        log.info("published EndpointSlice %s/%s", NAMESPACE, name)
        return created
    if not _differs(current, want):
        return current
    if current.get("addressType") != want["addressType"]:
        await client.delete(path)
        return await client.create(SLICES_PATH, want)
    md = dict(current.get("metadata") or {})
    md["labels"] = {**(md.get("labels") or {}), **want["metadata"]["labels"]}
    body = {**want, "metadata": md}
    return await client.update(path, body)


async def delete_slice(client: Client, name: str) -> None:
    try:
        await client.delete(f"{SLICES_PATH}/{name}")
        log.info("deleted EndpointSlice %s/%s", NAMESPACE, name)
    except NotFound:
        pass


__all__ = ["dns_service", "ensure_dns_service", "desired_slice", "reconcile_slice",
           "delete_slice", "slice_name", "NAMESPACE", "SERVICE_NAME", "MANAGED_BY"]
