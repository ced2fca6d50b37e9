"""What a Service write allocates and releases, as upstream's `service/storage/alloc.go`.

Rules (single-stack: the cluster IPs come from the primary `--service-cluster-ip-range`):

* IP families first (upstream initIPFamilyFields): families follow the requested cluster
  IPs; a family or `RequireDualStack` the cluster cannot serve is 422 Invalid; a headless
  Service without selector keeps `RequireDualStack` and lists both families.
* create: ExternalName and headless Services get no cluster IP; the others get the requested
  one (range and in-use checks, `spec.clusterIPs: Invalid value: []string{...}: failed to
  allocate IP ...`) or a free one. NodePort Services, and LoadBalancer Services with
  `allocateLoadBalancerNodePorts`, get a node port per port (ports of the same number share
  one; requested ones are checked: `spec.ports[i].nodePort: Invalid value: N: ...`);
  LoadBalancer Services with `externalTrafficPolicy: Local` get a `healthCheckNodePort`.
* update: ExternalName → other types allocates cluster IPs, other types → ExternalName gives
  them up; node ports are allocated for new ports and given up when no port uses them any
  more or the type no longer has node ports; likewise the health check node port.
* a `Transaction` is what one write did: `revert` releases what it allocated (the write
  failed), `commit` releases what it gave up (the write is stored). Releases happen only
  after the Service no longer needs the value, so a value is never free while in use.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

import orjson

from pyk8s.api import errors
from pyk8s.api.errors import StatusCause, cause
from pyk8s.registry.service.allocator import (AllocationError, Allocator, IPAllocator, Owner,
                                              PortAllocator)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DRY_RUN_FIRST_PORT = 32768  # upstream's dry-run port placeholder counts up from here


def _go_strings(values: list[Any]) -> str:
    """Go's %#v of a []string."""
    return "[]string{" + ", ".join(orjson.dumps(str(v)).decode() for v in values) + "}"


def _invalid(name: str, causes: list[StatusCause]) -> errors.Invalid:
    return errors.Invalid.of("", "Service", name, causes)


def _internal(message: str) -> errors.InternalError:
    return errors.InternalError.of(message)


def _spec(svc: Obj) -> Obj:
    spec = svc.get("spec")
    if not isinstance(spec, dict):
        spec = svc["spec"] = {}
    return spec


def _ports(svc: Obj) -> list[Obj]:
    return [p for p in (_spec(svc).get("ports") or []) if isinstance(p, dict)]


def _port_num(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def family_of(ip: str) -> str:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except ValueError:
        return "unknown"


def is_headless(svc: Obj) -> bool:
    spec = _spec(svc)
    ips = spec.get("clusterIPs") or []
    return spec.get("clusterIP") == "None" or (bool(ips) and ips[0] == "None")


def needs_cluster_ip(svc: Obj) -> bool:
    return _spec(svc).get("type") != "ExternalName"


def needs_node_ports(svc: Obj) -> bool:
    return _spec(svc).get("type") in ("NodePort", "LoadBalancer")


def should_allocate_node_ports(svc: Obj) -> bool:
    spec = _spec(svc)
    if spec.get("type") == "NodePort":
        return True
    return spec.get("type") == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") \
        is not False


def needs_health_check(svc: Obj) -> bool:
    spec = _spec(svc)
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def node_ports_of(svc: Obj) -> list[int]:
    """The node ports a Service's ports use (each once)."""
    out: list[int] = []
    for p in _ports(svc):
        n = _port_num(p.get("nodePort"))
        if n and n not in out:
            out.append(n)
    return out


def cluster_ips_of(svc: Obj) -> list[str]:
    """The allocated cluster IPs a Service holds (none for ExternalName and headless)."""
    if not needs_cluster_ip(svc) or is_headless(svc):
        return []
    spec = _spec(svc)
    ips = [ip for ip in (spec.get("clusterIPs") or []) if isinstance(ip, str) and ip]
    if not ips and isinstance(spec.get("clusterIP"), str) and spec["clusterIP"]:
        ips = [spec["clusterIP"]]
    return ips


class Transaction:
    """What one Service write allocated and gave up (see the module's rules)."""

    def __init__(self, owner: Owner, dry_run: bool) -> None:
        self.owner = owner
        self.dry_run = dry_run
        self.allocated: list[tuple[Allocator, str]] = []
        self.deferred: list[tuple[Allocator, str]] = []
        self.dry_ports = 0

    async def commit(self) -> None:
        if not self.dry_run:
            await _release(self.deferred, self.owner)
        self.deferred = []

    async def revert(self) -> None:
        if not self.dry_run:
            await _release(self.allocated, self.owner)
        self.allocated = []


async def _release(values: list[tuple[Allocator, str]], owner: Owner) -> None:
    for alloc, v in values:
        try:
            await alloc.release(v, owner)
        except Exception:  # storage trouble: the repair pass frees it later
            log.exception("releasing %s %s of %s/%s failed", alloc.kind, v, owner.namespace,
                          owner.name)


class ServiceAllocators:
    """The cluster IP and node port allocators of one API server, applied to Services."""

    def __init__(self, ips: IPAllocator, ports: PortAllocator) -> None:
        self.ips = ips
        self.ports = ports
        self.family = ips.range.family

    # -- IP families -----------------------------------------------------------------------
    def init_ip_families(self, svc: Obj, old: Obj | None) -> None:
        """Upstream initIPFamilyFields on a single-stack cluster (raises Invalid)."""
        spec = _spec(svc)
        if spec.get("type") == "ExternalName":
            return
        name = str((svc.get("metadata") or {}).get("name") or "")
        if spec.get("ipFamilyPolicy") is None:
            old_policy = _spec(old).get("ipFamilyPolicy") if old is not None else None
            spec["ipFamilyPolicy"] = old_policy or (
                "RequireDualStack" if spec.get("clusterIP") == "None" and
                not spec.get("selector") else "SingleStack")
        policy = spec["ipFamilyPolicy"]
        ips = [ip for ip in (spec.get("clusterIPs") or []) if isinstance(ip, str)]
        fams = [f for f in (spec.get("ipFamilies") or []) if isinstance(f, str)]
        errs: list[StatusCause] = []
        if old is not None:
            oips = list(_spec(old).get("clusterIPs") or [])
            ofams = list(_spec(old).get("ipFamilies") or [])
            if policy == "SingleStack":
                if ips == oips and len(ips) > 1:
                    ips = spec["clusterIPs"] = ips[:1]
                if fams == ofams and len(fams) > 1:
                    fams = spec["ipFamilies"] = fams[:1]
            else:
                if ips and len(ips) < len(oips):
                    errs.append(errors.field_invalid(
                        "spec.ipFamilyPolicy", policy,
                        "must be 'SingleStack' to release the secondary cluster IP"))
                if fams and len(fams) < len(ofams):
                    errs.append(errors.field_invalid(
                        "spec.ipFamilyPolicy", policy,
                        "must be 'SingleStack' to release the secondary IP family"))
        if policy == "SingleStack":
            if len(ips) == 2:
                errs.append(errors.field_invalid(
                    "spec.ipFamilyPolicy", policy, "must be 'RequireDualStack' or "
                    "'PreferDualStack' when multiple cluster IPs are specified"))
            if len(fams) == 2:
                errs.append(errors.field_invalid(
                    "spec.ipFamilyPolicy", policy, "must be 'RequireDualStack' or "
                    "'PreferDualStack' when multiple IP families are specified"))
        for i, ip in enumerate(ips):
            if ip == "None":
                break
            fam = family_of(ip)
            if i >= len(fams):
                if fam != self.family:
                    errs.append(cause(f"spec.clusterIPs[{i}]", f"Invalid value: "
                                      f"{_go_strings(ips)}: {fam} is not configured on this "
                                      "cluster"))
                else:
                    fams.append(fam)
        if errs:
            raise _invalid(name, errs)
        if spec.get("clusterIP") == "None" and not spec.get("selector"):
            fams = fams or [self.family]
            if len(fams) < 2 and policy != "SingleStack":
                fams.append("IPv6" if fams[0] == "IPv4" else "IPv4")
            spec["ipFamilies"] = fams
            return
        if policy == "RequireDualStack":
            errs.append(errors.field_invalid("spec.ipFamilyPolicy", policy,
                                             "this cluster is not configured for dual-stack "
                                             "services"))
        for i, fam in enumerate(fams):
            if fam != self.family:
                errs.append(errors.field_invalid(f"spec.ipFamilies[{i}]", fam,
                                                 "not configured on this cluster"))
        if errs:
            raise _invalid(name, errs)
        spec["ipFamilies"] = fams or [self.family]

    # -- create ----------------------------------------------------------------------------
    async def allocate_create(self, svc: Obj, dry_run: bool) -> Transaction:
        self.init_ip_families(svc, None)
        txn = Transaction(Owner.of(svc), dry_run)

        async def node_ports() -> None:
            if needs_node_ports(svc):
                await self._init_node_ports(svc, txn)
            if needs_health_check(svc):
                await self._alloc_health_check(svc, txn)
        # Independent keys: taken side by side (one storage round trip, one group commit).
        try:
            results = await asyncio.gather(self._alloc_cluster_ip(svc, txn), node_ports(),
                                           return_exceptions=True)
        except BaseException:  # cancelled: nothing is stored yet, give everything back
            await txn.revert()
            raise
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await txn.revert()
            raise failed[0]
        return txn

    async def _alloc_cluster_ip(self, svc: Obj, txn: Transaction) -> None:
        if not needs_cluster_ip(svc) or is_headless(svc):
            return
        spec = _spec(svc)
        ips = list(spec.get("clusterIPs") or [])
        want = ips[0] if ips else (spec.get("clusterIP") or "")
        if not want:
            if txn.dry_run:
                ip = self.ips.dry_run_next()
            else:
                try:
                    ip = await self.ips.allocate_next(txn.owner)
                except AllocationError as e:
                    raise _internal(f"failed to allocate a serviceIP: {e}") from None
                txn.allocated.append((self.ips, ip))
        else:
            try:
                ip = await self.ips.allocate(want, txn.owner, txn.dry_run)
            except AllocationError as e:
                name = str((svc.get("metadata") or {}).get("name") or "")
                raise _invalid(name, [cause("spec.clusterIPs", (
                    f"Invalid value: {_go_strings(ips or [want])}: failed to allocate IP "
                    f"{want}: {e}"))]) from None
            if not txn.dry_run:
                txn.allocated.append((self.ips, ip))
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]

    async def _take_port(self, svc: Obj, txn: Transaction, i: int, np: int) -> None:
        try:
            v = await self.ports.allocate(np, txn.owner, txn.dry_run)
        except AllocationError as e:
            name = str((svc.get("metadata") or {}).get("name") or "")
            raise _invalid(name, [cause(f"spec.ports[{i}].nodePort",
                                        f"Invalid value: {np}: {e}")]) from None
        if not txn.dry_run:
            txn.allocated.append((self.ports, v))

    async def _next_port(self, txn: Transaction) -> int:
        if txn.dry_run:
            txn.dry_ports += 1
            return DRY_RUN_FIRST_PORT + txn.dry_ports
        try:
            v = await self.ports.allocate_next(txn.owner)
        except AllocationError as e:
            raise _internal(f"failed to allocate a nodePort: {e}") from None
        txn.allocated.append((self.ports, v))
        return int(v)

    async def _init_node_ports(self, svc: Obj, txn: Transaction) -> None:
        """Upstream initNodePorts: ports of the same number share a node port."""
        ports = _ports(svc)
        by_port: dict[int, int] = {}
        for i, sp in enumerate(ports):
            np = _port_num(sp.get("nodePort"))
            if not np and not should_allocate_node_ports(svc):
                continue  # no new ports, but requested ones are honoured
            number = _port_num(sp.get("port"))
            shared = by_port.get(number, 0)
            if not shared:
                requested = next((_port_num(p.get("nodePort")) for p in ports
                                  if _port_num(p.get("port")) == number and
                                  _port_num(p.get("nodePort"))), 0)
                if requested:
                    await self._take_port(svc, txn, i, requested)
                    sp["nodePort"] = by_port[number] = requested
                else:
                    sp["nodePort"] = by_port[number] = await self._next_port(txn)
            elif np != shared:
                if not np:
                    sp["nodePort"] = shared
                else:
                    await self._take_port(svc, txn, i, np)

    async def _alloc_health_check(self, svc: Obj, txn: Transaction) -> None:
        spec = _spec(svc)
        hc = _port_num(spec.get("healthCheckNodePort"))
        if hc:
            try:
                v = await self.ports.allocate(hc, txn.owner, txn.dry_run)
            except AllocationError as e:
                raise _internal(f"failed to allocate requested HealthCheck NodePort {hc}: "
                                f"{e}") from None
            if not txn.dry_run:
                txn.allocated.append((self.ports, v))
        else:
            try:
                spec["healthCheckNodePort"] = await self._next_port(txn)
            except errors.InternalError:
                raise _internal("failed to allocate a HealthCheck NodePort 0: range is "
                                "full") from None

    # -- update ----------------------------------------------------------------------------
    async def allocate_update(self, new: Obj, old: Obj, dry_run: bool) -> Transaction:
        self.init_ip_families(new, old)
        txn = Transaction(Owner.of(old), dry_run)
        try:
            await self._update_cluster_ips(new, old, txn)
            await self._update_node_ports(new, old, txn)
            await self._update_health_check(new, old, txn)
        except BaseException:
            await txn.revert()
            raise
        return txn

    async def _update_cluster_ips(self, new: Obj, old: Obj, txn: Transaction) -> None:
        if not needs_cluster_ip(old) and needs_cluster_ip(new):
            await self._alloc_cluster_ip(new, txn)
        elif needs_cluster_ip(old) and not needs_cluster_ip(new):
            txn.deferred += [(self.ips, ip) for ip in self._own_ips(old)]

    def _own_ips(self, svc: Obj) -> list[str]:
        """The cluster IPs of `svc` this server's range holds keys for."""
        out = []
        for ip in cluster_ips_of(svc):
            v = self.ips.canonical(ip)
            if v is not None:
                out.append(v)
        return out

    async def _update_node_ports(self, new: Obj, old: Obj, txn: Transaction) -> None:
        old_numbers = node_ports_of(old) if needs_node_ports(old) else []
        if needs_node_ports(old) and _spec(new).get("type") in ("ExternalName", "ClusterIP"):
            txn.deferred += [(self.ports, str(n)) for n in old_numbers]
            return
        if not needs_node_ports(new):
            return
        taken_now: set[int] = set()
        seen: set[tuple[str, int]] = set()
        for i, sp in enumerate(_ports(new)):
            np = _port_num(sp.get("nodePort"))
            if not np and not should_allocate_node_ports(new):
                continue
            if np:
                if np not in old_numbers and np not in taken_now:
                    await self._take_port(new, txn, i, np)
                    taken_now.add(np)
            else:
                np = sp["nodePort"] = await self._next_port(txn)
            key = (str(sp.get("protocol") or "TCP"), np)
            if key in seen:
                raise _internal(f"duplicate nodePort: {{{key[0]} {np}}}")
            seen.add(key)
        kept = node_ports_of(new)
        txn.deferred += [(self.ports, str(n)) for n in old_numbers if n not in kept]

    async def _update_health_check(self, new: Obj, old: Obj, txn: Transaction) -> None:
        needed, needs = needs_health_check(old), needs_health_check(new)
        if not needed and needs:
            await self._alloc_health_check(new, txn)
        elif needed and not needs:
            hc = _port_num(_spec(old).get("healthCheckNodePort"))
            if hc:
                txn.deferred.append((self.ports, str(hc)))

    # -- delete ----------------------------------------------------------------------------
    def held(self, svc: Obj) -> list[tuple[Allocator, str]]:
        """Every allocated value `svc` holds (in this server's ranges: values outside them,
        say after a range change, have no keys here)."""
        out: list[tuple[Allocator, str]] = [(self.ips, ip) for ip in self._own_ips(svc)]
        ports = node_ports_of(svc) if needs_node_ports(svc) else []
        if needs_health_check(svc):
            hc = _port_num(_spec(svc).get("healthCheckNodePort"))
            if hc and hc not in ports:
                ports.append(hc)
        out += [(self.ports, str(n)) for n in ports if self.ports.canonical(n) is not None]
        return out

    async def release_all(self, svc: Obj) -> None:
        """The Service is gone from storage: give up all it held."""
        await _release(self.held(svc), Owner.of(svc))
