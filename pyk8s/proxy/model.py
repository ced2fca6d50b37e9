"""Services and EndpointSlices → service ports with the endpoints traffic may go to (pure).

Upstream's rules (pkg/proxy: ServicePortName, CategorizeEndpoints):
- one `ServicePort` per entry of spec.ports of a Service with a cluster IP (not headless,
  not ExternalName); its key is `namespace/name:portName`;
- a slice port matches by name and protocol; an endpoint condition left unset counts as
  ready (serving defaults to ready, terminating to false); the same address:port in two
  slices counts once;
- traffic goes to ready endpoints; when none is ready, to serving terminating ones;
- internalTrafficPolicy Local: cluster-IP traffic only to this node's endpoints;
  externalTrafficPolicy Local: NodePort traffic only to this node's endpoints (and the
  client source is kept).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable

Obj = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_SECONDS = 10800


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str                       # TCP / UDP / SCTP
    port: int
    cluster_ips: tuple[str, ...] = ()
    node_port: int = 0
    affinity_seconds: int = 0           # 0: no session affinity
    internal_local: bool = False
    external_local: bool = False
    endpoints: list[Endpoint] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Upstream's ServicePortName: `ns/name:port` (`ns/name` for an unnamed port)."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base

    def usable(self, endpoints: list[Endpoint] | None = None) -> list[Endpoint]:
        """Ready endpoints; when none, the serving terminating ones."""
        eps = self.endpoints if endpoints is None else endpoints
        ready = [e for e in eps if e.ready]
        return ready or [e for e in eps if e.serving and e.terminating]

    def cluster_endpoints(self, node_name: str) -> list[Endpoint]:
        """Where cluster-IP traffic goes from this node."""
        if self.internal_local:
            return self.usable([e for e in self.endpoints if e.node_name == node_name])
        return self.usable()

    def external_endpoints(self, node_name: str) -> list[Endpoint]:
        """Where NodePort traffic arriving at this node goes."""
        if self.external_local:
            return self.usable([e for e in self.endpoints if e.node_name == node_name])
        return self.usable()


def cluster_ips(svc: Obj) -> tuple[str, ...]:
    """The Service's valid cluster IPs; () for headless, ExternalName and unallocated."""
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return ()
    ips = [x for x in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if x]
    out = []
    for ip in ips:
        try:
            out.append(str(ipaddress.ip_address(str(ip))))
        except ValueError:
            continue        # "None" (headless) or junk
    return tuple(out)


def _port(v: Any) -> int:
    try:
        n = int(v)
    except (TypeError, ValueError):
        return 0
    return n if 0 < n < 65536 else 0


def _affinity_seconds(spec: Obj) -> int:
    if spec.get("sessionAffinity") != "ClientIP":
        return 0
    cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
    try:
        seconds = int(cfg.get("timeoutSeconds") or 0)
    except (TypeError, ValueError):
        seconds = 0
    return seconds if seconds > 0 else DEFAULT_AFFINITY_SECONDS


def slice_endpoints(slices: Iterable[Obj], port_name: str, protocol: str) -> list[Endpoint]:
    """The endpoints of a service's slices for one of its ports, deduplicated, in a
    stable order."""
    seen: dict[tuple[str, int], Endpoint] = {}
    for s in slices:
        if s.get("addressType") not in (None, "IPv4", "IPv6"):
            continue
        port = 0
        for p in s.get("ports") or []:
            if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol:
                port = _port(p.get("port"))
                break
        if not port:
            continue
        for ep in s.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            ready = cond.get("ready") is not False
            serving = ready if cond.get("serving") is None else bool(cond["serving"])
            terminating = bool(cond.get("terminating"))
            for addr in (ep.get("addresses") or [])[:1]:   # upstream uses the first
                try:
                    ip = str(ipaddress.ip_address(str(addr)))
                except ValueError:
                    continue
                key = (ip, port)
                if key not in seen or (ready and not seen[key].ready):
                    seen[key] = Endpoint(ip, port, ready, serving, terminating,
                                         str(ep.get("nodeName") or ""))
    return sorted(seen.values(), key=lambda e: (ipaddress.ip_address(e.ip).version,
                                                 ipaddress.ip_address(e.ip), e.port))


def service_ports(services: Iterable[Obj], slices: Iterable[Obj]) -> list[ServicePort]:
    """Every proxied service port, sorted by key, with its endpoints."""
    by_service: dict[tuple[str, str], list[Obj]] = {}
    for s in slices:
        md = s.get("metadata") or {}
        svc_name = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc_name:
            by_service.setdefault((md.get("namespace") or "", svc_name), []).append(s)
    out: list[ServicePort] = []
    for svc in services:
        md, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        ips = cluster_ips(svc)
        if not ips:
            continue
        ns, name = md.get("namespace") or "", md.get("name") or ""
        stype = spec.get("type") or "ClusterIP"
        mine = by_service.get((ns, name), [])
        for p in spec.get("ports") or []:
            port = _port(p.get("port"))
            if not port:
                continue
            proto = str(p.get("protocol") or "TCP")
            pname = str(p.get("name") or "")
            out.append(ServicePort(
                namespace=ns, name=name, port_name=pname, protocol=proto, port=port,
                cluster_ips=ips,
                node_port=_port(p.get("nodePort")) if stype in ("NodePort", "LoadBalancer")
                else 0,
                affinity_seconds=_affinity_seconds(spec),
                internal_local=spec.get("internalTrafficPolicy") == "Local",
                external_local=spec.get("externalTrafficPolicy") == "Local",
                endpoints=slice_endpoints(mine, pname, proto)))
    out.sort(key=lambda sp: (sp.key, sp.protocol))
    return out
