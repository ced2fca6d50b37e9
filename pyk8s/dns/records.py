"""Cluster names → DNS answers, from informer stores (pure: no I/O).

The rules are CoreDNS's `kubernetes` plugin's (with `pods insecure` and reverse zones that
fall through), after the Kubernetes DNS specification (kubernetes/dns docs/specification.md):

- `<svc>.<ns>.svc.<zone>`: A / AAAA of the Service's ClusterIPs; a headless Service
  (`clusterIP: None`) answers the ready addresses of its EndpointSlices (label
  `kubernetes.io/service-name`; `conditions.ready` absent counts as ready); a headless
  Service without ready endpoints is NXDOMAIN; a Service with no ClusterIP yet is NODATA.
- `<endpoint>.<svc>.<ns>.svc.<zone>`: the ready endpoint whose `hostname` is `<endpoint>`,
  or, without a hostname, whose address dashed (`10-0-0-1`, `fd00--1`) is.
- ExternalName: a CNAME to `spec.externalName`, followed in the zone (depth 8); a target
  outside the zone is left to the caller (`Answer.chase`) to resolve upstream.
- `_<port>._<proto>.<svc>.<ns>.svc.<zone>` SRV (the underscores optional, matched without
  case): one record per named port of a ClusterIP Service (target the Service's name), one
  per endpoint and port of a headless one (target `<hostname-or-dashed-ip>.<svc>...`),
  priority 0, weight 100/n, the targets' A / AAAA in the additional section. A name
  without port and protocol matches every port.
- `<a-b-c-d>.<ns>.pod.<zone>` (and dashed IPv6): the IP read back from the name.
- `dns-version.<zone>` TXT `1.1.0`; the apex answers SOA and NS (`ns.dns.<zone>`).
- A name in the zone that matches nothing is NXDOMAIN (SERVFAIL before the informers have
  synced); an existing name asked for another type is NODATA; both carry the SOA in the
  authority section. A namespace exists when the namespace store (or a Service) has it.
- PTR `d.c.b.a.in-addr.arpa` / `….ip6.arpa`: the Service owning the ClusterIP, else every
  ready endpoint with that address (`<hostname-or-dashed-ip>.<svc>.<ns>.svc.<zone>`). A
  reverse name nothing here owns, and any name outside the zone, is not ours (`None`): the
  server forwards it.

Names compare without case; answers keep the case of the question.
"""
from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence, TypeAlias, cast

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSLabel

from pyk8s.client.informer import NAMESPACE_INDEX, Store, index_by_namespace, object_key

Obj = dict[str, Any]
Name: TypeAlias = "DNSLabel | str"  # a question's name (answers keep it as asked)

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
CLUSTER_IP_INDEX = "dns-cluster-ip"
SLICE_SERVICE_INDEX = "dns-service"
SLICE_IP_INDEX = "dns-endpoint-ip"
DNS_SCHEMA_VERSION = "1.1.0"
MAX_CNAME_DEPTH = 8


# -- indexes the stores need ------------------------------------------------------------------
def _ip(value: Any) -> str | None:
    """The canonical text of an IP address, or None."""
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        return None


def service_ips(svc: Obj) -> list[str]:
    """`spec.clusterIPs` (else `spec.clusterIP`), canonical, without `None` and ""."""
    spec = svc.get("spec") or {}
    raw = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [ip for ip in (_ip(v) for v in raw) if ip]


def index_service_ips(svc: Obj) -> list[str]:
    return service_ips(svc)


def slice_service_key(es: Obj) -> str | None:
    md = es.get("metadata") or {}
    name = (md.get("labels") or {}).get(LABEL_SERVICE_NAME)
    return f"{md.get('namespace')}/{name}" if name else None


def index_slice_service(es: Obj) -> list[str]:
    key = slice_service_key(es)
    return [key] if key else []


def is_ready(ep: Obj) -> bool:
    """An endpoint is served unless `conditions.ready` is false (unknown counts as ready)."""
    return (ep.get("conditions") or {}).get("ready") is not False


def index_slice_ips(es: Obj) -> list[str]:
    return [ip for ep in es.get("endpoints") or [] if is_ready(ep)
            for ip in (_ip(a) for a in ep.get("addresses") or []) if ip]


SERVICE_INDEXERS = {NAMESPACE_INDEX: index_by_namespace, CLUSTER_IP_INDEX: index_service_ips}
SLICE_INDEXERS = {NAMESPACE_INDEX: index_by_namespace, SLICE_SERVICE_INDEX: index_slice_service,
                  SLICE_IP_INDEX: index_slice_ips}


def endpoint_hostname(ep: Obj, ip: str) -> str:
    """The endpoint's `hostname`, else its address with `.` / `:` turned into `-`."""
    return str(ep.get("hostname") or ip.replace(".", "-").replace(":", "-"))


def reverse_ip(labels: Sequence[str]) -> str | None:
    """The address of a full `in-addr.arpa` / `ip6.arpa` name (lowercase labels), or None."""
    if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
        return _ip(".".join(reversed(labels[:4])))
    if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
        nibbles = "".join(reversed(labels[:32]))
        if all(len(n) == 1 for n in labels[:32]):
            return _ip(":".join(nibbles[i:i + 4] for i in range(0, 32, 4)))
    return None


# -- answers ----------------------------------------------------------------------------------
@dataclass
class Answer:
    """What the server sends for a name this zone owns."""
    rcode: int = RCODE.NOERROR
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    chase: str | None = None  # an out-of-zone CNAME target still to resolve (A / AAAA)


@dataclass(frozen=True)
class _Target:
    """One thing a name resolves to: an IP (or a CNAME target), a port (-1: none) and
    the name SRV records point at."""
    host: str
    port: int
    name: str


class _NameError(Exception):
    """The name does not exist (NXDOMAIN)."""


class ClusterRecords:
    """The `cluster.local` zone (see the module docstring) over three stores: Services
    (`SERVICE_INDEXERS`), EndpointSlices (`SLICE_INDEXERS`) and Namespaces."""

    def __init__(self, services: Store, slices: Store, namespaces: Store, *,
                 zone: str = "cluster.local", ttl: int = 5,
                 synced: Callable[[], bool] = lambda: True,
                 ns_ips: Sequence[str] = ()) -> None:
        self.services = services
        self.slices = slices
        self.namespaces = namespaces
        self.zone = zone.strip(".").lower()
        self.zone_labels = self.zone.split(".")
        self.ttl = ttl
        self.synced = synced
        self.ns_ips = [ip for ip in (_ip(v) for v in ns_ips) if ip]
        self.serial = int(time.time())

    def touch(self) -> None:
        """Note a change of the stores (the SOA serial is the time of the last change)."""
        self.serial = int(time.time())

    # -- the entry point ----------------------------------------------------------------------
    def lookup(self, qname: DNSLabel | str, qtype: int) -> Answer | None:
        """The answer for `qname` / `qtype`, or None when the name is not ours."""
        name = DNSLabel(qname)
        labels = _labels(name)
        n = len(self.zone_labels)
        if len(labels) >= n and labels[len(labels) - n:] == self.zone_labels:
            return self._zone_lookup(name, labels[:len(labels) - n], qtype, 0)
        ip = reverse_ip(labels)
        if ip is not None:
            return self._reverse(name, ip, qtype)
        return None

    # -- the forward zone ---------------------------------------------------------------------
    def _zone_lookup(self, qname: Name, base: list[str], qtype: int, depth: int) -> Answer:
        if not base:
            return self._apex(qname, qtype)
        if base == ["dns-version"] and qtype == QTYPE.TXT:
            return Answer(answer=[RR(qname, QTYPE.TXT, ttl=28800,
                                     rdata=TXT(DNS_SCHEMA_VERSION))])
        if base == ["ns", "dns"]:
            if qtype not in (QTYPE.A, QTYPE.AAAA):
                return self._negative(RCODE.NOERROR)
            return self._addresses(qname, [_Target(ip, -1, "") for ip in self.ns_ips],
                                   qtype, depth)
        try:
            targets = self._find(base)
        except _NameError:
            return self._negative(RCODE.NXDOMAIN if self.synced() else RCODE.SERVFAIL)
        if qtype in (QTYPE.A, QTYPE.AAAA):
            return self._addresses(qname, targets, qtype, depth)
        if qtype == QTYPE.SRV:
            return self._srv(qname, targets)
        if qtype == QTYPE.CNAME:
            cnames = [RR(qname, QTYPE.CNAME, ttl=self.ttl, rdata=CNAME(t.host + "."))
                      for t in targets if _ip(t.host) is None]
            return Answer(answer=cnames) if cnames else self._negative(RCODE.NOERROR)
        return self._negative(RCODE.NOERROR)

    def _apex(self, qname: Name, qtype: int) -> Answer:
        if qtype == QTYPE.SOA:
            return Answer(answer=[self.soa()])
        if qtype == QTYPE.NS:
            ns = f"ns.dns.{self.zone}."
            glue = [_address_rr(ns, ip, self.ttl) for ip in self.ns_ips]
            return Answer(answer=[RR(qname, QTYPE.NS, ttl=self.ttl, rdata=NS(ns))],
                          additional=glue)
        return self._negative(RCODE.NOERROR)

    def soa(self) -> RR:
        return RR(self.zone + ".", QTYPE.SOA, ttl=self.ttl, rdata=SOA(
            f"ns.dns.{self.zone}.", f"hostmaster.{self.zone}.",
            (self.serial, 7200, 1800, 86400, self.ttl)))

    def _negative(self, rcode: int) -> Answer:
        return Answer(rcode=rcode, authority=[self.soa()] if rcode != RCODE.SERVFAIL else [])

    def _namespace_exists(self, ns: str) -> bool:
        return ns in self.namespaces or bool(self.services.list_namespace(ns))

    def _find(self, base: list[str]) -> list[_Target]:
        """What `base` (the labels left of the zone) names; raises `_NameError`."""
        kind = base[-1]
        if kind not in ("svc", "pod"):
            raise _NameError()
        if len(base) == 1:
            return []  # `svc.<zone>`, `pod.<zone>`: NODATA
        ns = base[-2]
        if not self._namespace_exists(ns):
            raise _NameError()
        if len(base) == 2:
            return []  # the namespace exists: NODATA
        name, rest = base[-3], base[:-3]
        if kind == "pod":
            return self._pod(name, rest)
        endpoint, port, proto = "", "", ""
        if len(rest) == 1:
            endpoint = rest[0]
        elif len(rest) == 2:
            port, proto = rest[0].removeprefix("_"), rest[1].removeprefix("_")
        elif rest:
            raise _NameError()
        svc = self.services.get_by_name(ns, name)
        if svc is None:
            raise _NameError()
        found = self._service_targets(svc, endpoint, port, proto)
        if found is None:
            raise _NameError()
        return found

    def _pod(self, name: str, rest: list[str]) -> list[_Target]:
        """`pods insecure`: the name spells the address."""
        if rest:
            raise _NameError()
        text = name.replace("-", ".") if name.count("-") == 3 and "--" not in name \
            else name.replace("-", ":")
        ip = _ip(text)
        if ip is None:
            raise _NameError()
        return [_Target(ip, -1, "")]

    def _service_targets(self, svc: Obj, endpoint: str, port: str, proto: str
                         ) -> list[_Target] | None:
        """The targets of `svc` matching the request; None when nothing matched."""
        md, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        fqdn = f"{md.get('name')}.{md.get('namespace')}.svc.{self.zone}"
        if spec.get("type") == "ExternalName":
            target = str(spec.get("externalName") or "").strip(".").lower()
            if endpoint or not target or _ip(target) is not None:
                return None
            return [_Target(target, -1, fqdn)]
        if spec.get("clusterIP") == "None" or endpoint:
            out: list[_Target] = []
            for es in _indexed(self.slices, SLICE_SERVICE_INDEX, object_key(svc)):
                ports = es.get("ports") or [{"port": -1}]
                for ep in es.get("endpoints") or []:
                    if not is_ready(ep):
                        continue
                    for ip in (_ip(a) for a in ep.get("addresses") or []):
                        if ip is None:
                            continue
                        host = endpoint_hostname(ep, ip)
                        if endpoint and host.lower() != endpoint:
                            continue
                        out += [_Target(ip, _port(p), f"{host}.{fqdn}") for p in ports
                                if _match(p, port, proto)]
            return out or None
        ports = [p for p in spec.get("ports") or [{"port": -1}] if _match(p, port, proto)]
        if not ports:
            return None
        return [_Target(ip, _port(p), fqdn) for p in ports for ip in service_ips(svc)]

    # -- rendering ------------------------------------------------------------------------------
    def _addresses(self, qname: Name, targets: Iterable[_Target], qtype: int,
                   depth: int) -> Answer:
        out = Answer()
        seen: set[tuple[int, str]] = set()
        for t in targets:
            ip = _ip(t.host)
            if ip is None:  # an ExternalName: CNAME, then follow it
                out.answer.append(RR(qname, QTYPE.CNAME, ttl=self.ttl,
                                     rdata=CNAME(t.host + ".")))
                sub = self._follow(t.host, qtype, depth)
                if sub is None:
                    out.chase = t.host
                else:
                    out.answer += sub.answer
                    out.chase = sub.chase
                continue
            want = 4 if qtype == QTYPE.A else 6
            if ipaddress.ip_address(ip).version == want and (qtype, ip) not in seen:
                seen.add((qtype, ip))
                out.answer.append(_address_rr(qname, ip, self.ttl))
        if not out.answer:
            return self._negative(RCODE.NOERROR)
        return out

    def _follow(self, target: str, qtype: int, depth: int) -> Answer | None:
        """The answer for an in-zone CNAME target; None when it is outside the zone."""
        labels = target.split(".")
        n = len(self.zone_labels)
        if len(labels) < n or labels[len(labels) - n:] != self.zone_labels:
            return None
        if depth >= MAX_CNAME_DEPTH:
            return Answer()
        return self._zone_lookup(target + ".", labels[:len(labels) - n], qtype, depth + 1)

    def _srv(self, qname: Name, targets: list[_Target]) -> Answer:
        uniq: dict[tuple[str, int], None] = {}
        extra: dict[tuple[str, str], RR] = {}
        for t in targets:
            if _ip(t.host) is None or t.port < 0:
                continue  # no SRV for ExternalName Services and port-less endpoints
            uniq[(t.name, t.port)] = None
            extra.setdefault((t.name, t.host), _address_rr(t.name + ".", t.host, self.ttl))
        if not uniq:
            return self._negative(RCODE.NOERROR)
        weight = 100 // len(uniq)
        return Answer(answer=[RR(qname, QTYPE.SRV, ttl=self.ttl,
                                 rdata=SRV(0, weight, port, name + "."))
                              for name, port in uniq],
                      additional=list(extra.values()))

    # -- the reverse zones ----------------------------------------------------------------------
    def _reverse(self, qname: Name, ip: str, qtype: int) -> Answer | None:
        names: list[str] = []
        for svc in _indexed(self.services, CLUSTER_IP_INDEX, ip):
            md = svc.get("metadata") or {}
            names.append(f"{md.get('name')}.{md.get('namespace')}.svc.{self.zone}")
            break  # the ClusterIP's owner; endpoints are not looked at then
        if not names:
            for es in _indexed(self.slices, SLICE_IP_INDEX, ip):
                key = slice_service_key(es)
                if key is None:
                    continue
                ns, _, svc_name = key.partition("/")
                for ep in es.get("endpoints") or []:
                    if is_ready(ep) and ip in (_ip(a) for a in ep.get("addresses") or []):
                        names.append(f"{endpoint_hostname(ep, ip)}.{svc_name}.{ns}.svc."
                                     f"{self.zone}")
        if not names:
            return None
        if qtype != QTYPE.PTR:
            return Answer()
        return Answer(answer=[RR(qname, QTYPE.PTR, ttl=self.ttl, rdata=PTR(n + "."))
                              for n in dict.fromkeys(names)])


def _labels(name: DNSLabel) -> list[str]:
    """The labels as text, ASCII letters lowercased (other bytes kept as they are: a label
    with a dot or a non-ASCII byte matches no object name, and so no record)."""
    return [lab.lower().decode("latin-1") for lab in name.label]


def _indexed(store: Store, index: str, value: str) -> list[Obj]:
    """`store.by_index` (cast: `Store.list` hides the builtin in its annotations for mypy)."""
    return cast("list[Obj]", store.by_index(index, value))


def _port(p: Obj) -> int:
    try:
        return int(p.get("port"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return -1


def _match(p: Obj, port: str, proto: str) -> bool:
    """A request without port / protocol matches every port (CoreDNS's wildcard)."""
    return (not port or str(p.get("name") or "").lower() == port) and \
        (not proto or str(p.get("protocol") or "TCP").lower() == proto)


def _address_rr(name: str, ip: str, ttl: int) -> RR:
    if ipaddress.ip_address(ip).version == 4:
        return RR(name, QTYPE.A, ttl=ttl, rdata=A(ip))
    return RR(name, QTYPE.AAAA, ttl=ttl, rdata=AAAA(ip))


__all__ = ["ClusterRecords", "Answer", "SERVICE_INDEXERS", "SLICE_INDEXERS",
           "CLUSTER_IP_INDEX", "SLICE_SERVICE_INDEX", "SLICE_IP_INDEX", "LABEL_SERVICE_NAME",
           "service_ips", "endpoint_hostname", "reverse_ip", "is_ready"]
