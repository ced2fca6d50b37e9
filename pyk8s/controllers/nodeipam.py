"""The node IPAM controller: a pod CIDR for every Node (upstream's `pkg/controller/nodeipam`
with its default `RangeAllocator`, `ipam/range_allocator.go` and `ipam/cidrset`).

`--cluster-cidr` (one IPv4 and / or one IPv6 CIDR) is cut into `/--node-cidr-mask-size`
subnets, one `CIDRSet` per family. On start the controller marks every Node's existing
`spec.podCIDRs` as taken and the subnets of `--service-cluster-ip-range` that overlap the
cluster CIDR as well; then each Node without a `spec.podCIDR` gets the next free subnet of
each set (round-robin from the last one handed out, as upstream's cidrset) by a strategic
merge PATCH of exactly `spec.podCIDR` and `spec.podCIDRs`, retried 3 times. A deleted Node's
subnets go back to the sets. When a set is full the Node gets a `CIDRNotAvailable` event
(upstream's RecordNodeStatusChange: Normal, "Node <name> status is now: CIDRNotAvailable")
and is retried with the queue's back-off, and at once when a subnet is released.

The allocation lives in memory and is derived again from the Nodes whenever the controller
starts (a new controller-manager process, or a new leader: only the leader runs
controllers). A Node's podCIDR is immutable once set (the API server's validation), so a
stale allocation can never overwrite another one.

Where this differs from upstream, deliberately:

- a Node whose podCIDR lies outside the cluster CIDR, cannot be parsed, or collides with
  another Node's is logged and gets a `CIDRNotAvailable` event (once per Node), instead of
  failing the controller's start-up (upstream's NewCIDRRangeAllocator returns the error);
- subnets are reference-counted per Node, so releasing one of two colliding Nodes does not
  free a subnet the other still uses; a dual-stack allocation that fails on the second
  family gives the first one back;
- a reservation stays with its Node (uid) until the PATCH is known to have failed (422 /
  404): a retry after an ambiguous failure (timeout, 5xx) patches the same subnets again,
  instead of leaking or double-allocating.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any, Union

from pyk8s.client.informer import SharedInformerFactory, handler_funcs
from pyk8s.client.rest import ApiError, Invalid, NotFound
from pyk8s.client.workqueue import WorkQueue, run_workers

log = logging.getLogger("pyk8s.controllers.nodeipam")

Obj = dict[str, Any]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"          # k3s's; upstream has no default
DEFAULT_NODE_CIDR_MASK_SIZE_IPV4 = 24
DEFAULT_NODE_CIDR_MASK_SIZE_IPV6 = 64
CLUSTER_SUBNET_MAX_DIFF = 16                   # IPv6: at most 2^16 subnets per set
CIDR_UPDATE_RETRIES = 3
CIDR_UPDATE_WORKERS = 30
EVENT_CIDR_NOT_AVAILABLE = "CIDRNotAvailable"
EVENT_CIDR_ASSIGNMENT_FAILED = "CIDRAssignmentFailed"
SERVICE_OWNER = "\x00service-cluster-ip-range"   # a pseudo node that never goes away


class CIDRRangeNoCIDRsRemaining(Exception):
    def __init__(self) -> None:
        super().__init__("CIDR allocation failed; there are no remaining CIDRs left to "
                         "allocate in the accepted range")


# -- the cidrset ------------------------------------------------------------------------------
def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def parse_cidr(value: str) -> Network:
    """Go's net.ParseCIDR (the network, host bits masked off); ValueError otherwise."""
    v = value.strip()
    if "/" not in v:
        raise ValueError(f"invalid CIDR address: {value}")
    try:
        return ipaddress.ip_network(v, strict=False)
    except ValueError:
        raise ValueError(f"invalid CIDR address: {value}") from None


def _overlap(a: Network, b: Network) -> bool:
    return a.version == b.version and a.overlaps(b)   # type: ignore[arg-type]


class CIDRSet:
    """Upstream's cidrset.CidrSet: the `/node_mask_size` subnets of `cluster_cidr`, by index,
    with round-robin allocation from the last index handed out."""

    def __init__(self, cluster_cidr: Network, node_mask_size: int) -> None:
        self.cluster_cidr = cluster_cidr
        self.cluster_mask_size = cluster_cidr.prefixlen
        self.bits = cluster_cidr.max_prefixlen
        if cluster_cidr.version == 6 and \
                node_mask_size - self.cluster_mask_size > CLUSTER_SUBNET_MAX_DIFF:
            raise ValueError("New CIDR set failed; the node CIDR size is too big")
        self.node_mask_size = node_mask_size
        self.max_cidrs = 1 << (node_mask_size - self.cluster_mask_size)
        self.used: set[int] = set()
        self.next_candidate = 0
        self._base = int(cluster_cidr.network_address)

    @property
    def allocated(self) -> int:
        return len(self.used)

    def index_to_cidr(self, index: int) -> Network:
        addr = self._base | (index << (self.bits - self.node_mask_size))
        return type(self.cluster_cidr)((addr, self.node_mask_size))

    def _address(self, ip: int) -> Any:
        return type(self.cluster_cidr.network_address)(ip)

    def index_for_ip(self, ip: int) -> int:
        index = (self._base ^ ip) >> (self.bits - self.node_mask_size)
        if index >= self.max_cidrs:
            raise ValueError(f"CIDR: {self._address(ip)}/{self.node_mask_size} is out "
                             "of the range of CIDR allocator")
        return index

    def allocate_next_index(self) -> int:
        """AllocateNext: the first free index from `next_candidate` on, wrapping around."""
        if len(self.used) >= self.max_cidrs:
            raise CIDRRangeNoCIDRsRemaining()
        candidate = self.next_candidate
        for _ in range(self.max_cidrs):
            if candidate not in self.used:
                break
            candidate = (candidate + 1) % self.max_cidrs
        self.next_candidate = (candidate + 1) % self.max_cidrs
        self.used.add(candidate)
        return candidate

    def allocate_next(self) -> Network:
        return self.index_to_cidr(self.allocate_next_index())

    def indices(self, cidr: Network) -> range:
        """getBeginningAndEndIndices: the subnets `cidr` covers (all of them when it is the
        cluster CIDR or larger); ValueError when it is outside the cluster CIDR."""
        if not _overlap(self.cluster_cidr, cidr):
            raise ValueError(f"cidr {cidr} is out the range of cluster cidr "
                             f"{self.cluster_cidr}")
        if self.cluster_mask_size >= cidr.prefixlen:
            return range(0, self.max_cidrs)
        shift = self.bits - self.node_mask_size
        first = (int(cidr.network_address) >> shift) << shift
        last = (int(cidr.broadcast_address) >> shift) << shift
        return range(self.index_for_ip(first), self.index_for_ip(last) + 1)

    def occupy(self, cidr: Network) -> None:
        """Mark `cidr`'s subnets used (succeeds if they already were)."""
        self.used.update(self.indices(cidr))

    def release(self, cidr: Network) -> None:
        self.used.difference_update(self.indices(cidr))


# -- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeIPAMConfig:
    """The validated flags: cluster CIDRs (primary family first), one mask size each, and
    the service CIDRs whose subnets are never handed out."""
    cluster_cidrs: tuple[Network, ...]
    node_mask_sizes: tuple[int, ...]
    service_cidrs: tuple[Network, ...] = ()

    @classmethod
    def from_flags(cls, cluster_cidr: str = DEFAULT_CLUSTER_CIDR, *,
                   node_cidr_mask_size: int = 0, node_cidr_mask_size_ipv4: int = 0,
                   node_cidr_mask_size_ipv6: int = 0,
                   service_cluster_ip_range: str = "") -> "NodeIPAMConfig":
        """kube-controller-manager's startNodeIpamController / NewNodeIpamController checks,
        with upstream's messages (ValueError). Mask sizes of 0 are unset."""
        if not cluster_cidr.strip():
            raise ValueError("Controller: Must specify --cluster-cidr if --allocate-node-cidrs "
                             "is set")
        cidrs = _parse_cidrs(cluster_cidr)
        dual_stack = len({c.version for c in cidrs}) > 1
        if len(cidrs) > 1 and not dual_stack:
            raise ValueError(f"len of ClusterCIDRs=={len(cidrs)} and they are not configured "
                             "as dual stack (at least one from each IPFamily")
        if len(cidrs) > 2:
            raise ValueError(f"length of clusterCIDRs is:{len(cidrs)} more than max allowed "
                             "of 2")
        services: list[Network] = []
        if service_cluster_ip_range.strip():
            entries = service_cluster_ip_range.split(",")
            if len(entries) > 2:
                raise ValueError("--service-cluster-ip-range can not contain more than two "
                                 "entries")
            services = _parse_cidrs(service_cluster_ip_range)
            if len(services) == 2 and services[0].version == services[1].version:
                raise ValueError("serviceCIDR and secondaryServiceCIDR are not dualstack "
                                 "(from different IPfamiles)")
        sizes = _node_mask_sizes(cidrs, node_cidr_mask_size, node_cidr_mask_size_ipv4,
                                 node_cidr_mask_size_ipv6)
        for cidr, size in zip(cidrs, sizes):
            if cidr.prefixlen > size:
                raise ValueError("Controller: Invalid --cluster-cidr, mask size of cluster "
                                 "CIDR must be less than or equal to --node-cidr-mask-size "
                                 "configured for CIDR family")
            if size > cidr.max_prefixlen:   # pyk8s: upstream would build a nil mask
                raise ValueError(f"Controller: Invalid --node-cidr-mask-size {size}, more "
                                 f"than the {cidr.max_prefixlen} bits of {cidr}")
            CIDRSet(cidr, size)   # IPv6: "the node CIDR size is too big"
        return cls(tuple(cidrs), tuple(sizes), tuple(services))


def _parse_cidrs(value: str) -> list[Network]:
    """netutils.ParseCIDRs of the comma-separated list, with its message."""
    out: list[Network] = []
    for i, s in enumerate(value.strip().split(",")):
        try:
            out.append(parse_cidr(s))
        except ValueError as e:
            raise ValueError(f"invalid CIDR[{i}]: <nil> ({e})") from None
    return out


def _node_mask_sizes(cidrs: list[Network], mask: int, mask4: int, mask6: int) -> list[int]:
    """Upstream's setNodeCIDRMaskSizes."""
    v4, v6 = DEFAULT_NODE_CIDR_MASK_SIZE_IPV4, DEFAULT_NODE_CIDR_MASK_SIZE_IPV6

    def sized(m4: int, m6: int) -> list[int]:
        return [m6 if c.version == 6 else m4 for c in cidrs]
    if len(cidrs) > 1:
        if mask:
            raise ValueError("usage of --node-cidr-mask-size is not allowed with dual-stack "
                             "clusters")
        return sized(mask4 or v4, mask6 or v6)
    single_v6 = cidrs[0].version == 6
    if mask:
        if mask4 or mask6:
            raise ValueError("usage of --node-cidr-mask-size-ipv4 and --node-cidr-mask-size-"
                             "ipv6 is not allowed if --node-cidr-mask-size is set. For dual-"
                             "stack clusters please unset it and use IPFamily specific flags")
        return sized(mask, mask)
    if mask4:
        if single_v6:
            raise ValueError("usage of --node-cidr-mask-size-ipv4 is not allowed for a "
                             "single-stack IPv6 cluster")
        v4 = mask4
    if mask6:
        if not single_v6:
            raise ValueError("usage of --node-cidr-mask-size-ipv6 is not allowed for a "
                             "single-stack IPv4 cluster")
        v6 = mask6
    return sized(v4, v6)


# -- the controller ---------------------------------------------------------------------------
def node_pod_cidrs(node: Obj) -> list[str]:
    """spec.podCIDRs (or [spec.podCIDR], as the v1 conversion reads it)."""
    spec = node.get("spec") or {}
    cidrs = [str(c) for c in spec.get("podCIDRs") or [] if c]
    if not cidrs and spec.get("podCIDR"):
        cidrs = [str(spec["podCIDR"])]
    return cidrs


@dataclass
class _Held:
    """The subnets one Node holds: `cidrs` as on the Node, `slots` as (set, index)."""
    uid: str
    cidrs: list[str]
    slots: list[tuple[int, int]] = field(default_factory=list)
    confirmed: bool = True      # False: reserved by us, the PATCH not known to have landed


class NodeIPAMController:
    def __init__(self, client: Any, factory: SharedInformerFactory, recorder: Any,
                 config: NodeIPAMConfig | None = None, *,
                 workers: int = CIDR_UPDATE_WORKERS) -> None:
        self.client = client
        self.recorder = recorder
        self.config = config or NodeIPAMConfig.from_flags()
        self.workers = workers
        self.sets = [CIDRSet(c, m) for c, m in zip(self.config.cluster_cidrs,
                                                    self.config.node_mask_sizes)]
        self.held: dict[str, _Held] = {}
        self.owners: dict[tuple[int, int], set[str]] = {}
        self._reported: dict[str, tuple[str, tuple[str, ...]]] = {}
        for svc in self.config.service_cidrs:
            self._filter_out_service_range(svc)
        self.queue: WorkQueue[str] = WorkQueue("nodeipam")
        self.node_informer = factory.nodes()
        self._handler = handler_funcs(on_add=self._enqueue,
                                      on_update=lambda old, new: self._enqueue(new),
                                      on_delete=self._enqueue)
        self.node_informer.add_event_handler(self._handler)

    def _enqueue(self, node: Obj) -> None:
        self.queue.add(str(_md(node).get("name")))

    def _filter_out_service_range(self, svc: Network) -> None:
        """Upstream's filterOutServiceRange: the service range's subnets are never given to
        a Node."""
        for idx, s in enumerate(self.sets):
            if not _overlap(s.cluster_cidr, svc):
                continue
            for slot in s.indices(svc):
                self._own(idx, slot, SERVICE_OWNER)
            log.info("node ipam: service CIDR %s excluded from cluster CIDR %s", svc,
                     s.cluster_cidr)

    # -- loops ----------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self.node_informer.synced.wait()
            self.occupy_existing()
            log.info("node ipam controller: synced (cluster CIDRs %s, node mask sizes %s, "
                     "%d subnets in use)", ", ".join(map(str, self.config.cluster_cidrs)),
                     ", ".join(map(str, self.config.node_mask_sizes)),
                     sum(s.allocated for s in self.sets))
            await run_workers(self.queue, self.sync, self.workers, name="nodeipam")
        finally:
            self.queue.shutdown()
            self.node_informer.remove_event_handler(self._handler)

    def occupy_existing(self) -> None:
        """At start, once the informer has synced: every existing allocation is marked
        taken before any Node gets a new one; then every Node is queued."""
        nodes = self.node_informer.store.list()
        for node in nodes:
            if node_pod_cidrs(node) and not _md(node).get("deletionTimestamp"):
                self._occupy(node)
        for node in nodes:
            self._enqueue(node)

    async def sync(self, name: str) -> None:
        node = self.node_informer.store.get(name)
        if node is None or _md(node).get("deletionTimestamp"):
            # Deleted (or being deleted, as upstream): its subnets are free again.
            self._release(name)
            self._reported.pop(name, None)
            return
        uid = str(_md(node).get("uid") or "")
        held = self.held.get(name)
        if held is not None and held.uid != uid:
            self._release(name)   # a new Node of the same name
            held = None
        if node_pod_cidrs(node):
            self._occupy(node)
            return
        if held is not None and held.confirmed:
            return   # patched; the informer has not seen it yet
        if held is None:
            held = self._allocate(node)
        await self._update_cidrs(node, held)

    # -- the allocator --------------------------------------------------------------------
    def _own(self, idx: int, slot: int, owner: str) -> None:
        self.owners.setdefault((idx, slot), set()).add(owner)
        self.sets[idx].used.add(slot)

    def _disown(self, idx: int, slot: int, owner: str) -> None:
        owners = self.owners.get((idx, slot))
        if owners is None:
            return
        owners.discard(owner)
        if not owners:
            del self.owners[(idx, slot)]
            self.sets[idx].used.discard(slot)

    def _release(self, name: str) -> None:
        held = self.held.pop(name, None)
        if held is None:
            return
        for idx, slot in held.slots:
            self._disown(idx, slot, name)
        if held.slots:
            log.info("node ipam: released %s of node %s", ", ".join(held.cidrs), name)
            # Nodes still waiting for a subnet (the range was full) may take it now.
            for node in self.node_informer.store.list():
                other = str(_md(node).get("name"))
                if other != name and not node_pod_cidrs(node) and other not in self.held:
                    self.queue.add(other)

    def _occupy(self, node: Obj) -> None:
        """Mark the Node's podCIDRs as taken (upstream's occupyCIDRs)."""
        name = str(_md(node).get("name"))
        uid = str(_md(node).get("uid") or "")
        cidrs = node_pod_cidrs(node)
        held = self.held.get(name)
        if held is not None and held.uid == uid and held.cidrs == cidrs:
            held.confirmed = True   # our PATCH landed
            return
        if held is not None:
            if held.cidrs != cidrs:
                log.warning("node ipam: node %s already has pod CIDRs %s; releasing the %s "
                            "reserved for it", name, ", ".join(cidrs), ", ".join(held.cidrs))
            self._release(name)
        problems: list[str] = []
        slots: list[tuple[int, int]] = []
        for idx, value in enumerate(cidrs):
            try:
                cidr = parse_cidr(value)
            except ValueError:
                problems.append(f"failed to parse node {name}, CIDR {value}")
                continue
            if idx >= len(self.sets):
                problems.append(f"node:{name} has an allocated cidr: {value} at index:{idx} "
                                "that does not exist in cluster cidrs configuration")
                continue
            try:
                indices = self.sets[idx].indices(cidr)
            except ValueError as e:
                problems.append(f"failed to mark cidr[{cidr}] at idx [{idx}] as occupied for "
                                f"node: {name}: {e}")
                continue
            others: set[str] = set()
            for slot in indices:
                others |= self.owners.get((idx, slot), set()) - {name}
                self._own(idx, slot, name)
                slots.append((idx, slot))
            if others:
                who = ", ".join(sorted("the service range" if o == SERVICE_OWNER else
                                       f"node {o}" for o in others))
                problems.append(f"pod CIDR {value} of node {name} collides with {who}")
        self.held[name] = _Held(uid, cidrs, slots, confirmed=True)
        if problems:
            report = (uid, tuple(cidrs))
            if self._reported.get(name) != report:
                self._reported[name] = report
                for p in problems:
                    log.warning("node ipam: %s", p)
                self._node_status_change(node, EVENT_CIDR_NOT_AVAILABLE)

    def _allocate(self, node: Obj) -> _Held:
        """The next free subnet of every set, reserved for the Node (upstream's
        AllocateOrOccupyCIDR for a Node without podCIDRs)."""
        name = str(_md(node).get("name"))
        slots: list[tuple[int, int]] = []
        for idx, s in enumerate(self.sets):
            try:
                slot = s.allocate_next_index()
            except CIDRRangeNoCIDRsRemaining as e:
                for i, sl in slots:
                    self._disown(i, sl, name)
                self._node_status_change(node, EVENT_CIDR_NOT_AVAILABLE)
                raise RuntimeError(f"failed to allocate cidr from cluster cidr at idx:{idx}: "
                                   f"{e}") from None
            self.owners.setdefault((idx, slot), set()).add(name)
            slots.append((idx, slot))
        held = _Held(str(_md(node).get("uid") or ""),
                     [str(self.sets[i].index_to_cidr(sl)) for i, sl in slots], slots,
                     confirmed=False)
        self.held[name] = held
        return held

    async def _update_cidrs(self, node: Obj, held: _Held) -> None:
        """Upstream's updateCIDRsAllocation: PATCH spec.podCIDR / spec.podCIDRs."""
        name = str(_md(node).get("name"))
        body = {"spec": {"podCIDR": held.cidrs[0], "podCIDRs": list(held.cidrs)}}
        err: Exception | None = None
        for _ in range(CIDR_UPDATE_RETRIES):
            try:
                await self.client.patch(f"/api/v1/nodes/{name}", body, "strategic")
            except asyncio.CancelledError:
                raise
            except NotFound:
                self._release(name)   # gone: its delete event follows
                return
            except Invalid as e:
                # Refused for good (e.g. someone else set a podCIDR meanwhile): give the
                # subnets back; the next sync sees the Node as it is.
                log.warning("node ipam: setting pod CIDRs %s on node %s refused: %s",
                            ", ".join(held.cidrs), name, e)
                self._node_status_change(node, EVENT_CIDR_ASSIGNMENT_FAILED)
                self._release(name)
                raise
            except (ApiError, OSError, asyncio.TimeoutError) as e:
                err = e
                continue
            held.confirmed = True
            log.info("node ipam: set node %s pod CIDRs %s", name, ", ".join(held.cidrs))
            return
        # The PATCH may have landed: keep the reservation, the retry patches the same.
        log.warning("node ipam: failed to update node %s pod CIDRs %s after %d attempts: %s",
                    name, ", ".join(held.cidrs), CIDR_UPDATE_RETRIES, err)
        self._node_status_change(node, EVENT_CIDR_ASSIGNMENT_FAILED)
        assert err is not None
        raise err

    def _node_status_change(self, node: Obj, status: str) -> None:
        """Upstream's controllerutil.RecordNodeStatusChange."""
        name = str(_md(node).get("name"))
        ref = {"apiVersion": "v1", "kind": "Node", "name": name,
               "uid": str(_md(node).get("uid") or "")}
        self.recorder.event(node, "Normal", status, f"Node {name} status is now: {status}",
                            ref=ref)


__all__ = ["NodeIPAMController", "NodeIPAMConfig", "CIDRSet", "CIDRRangeNoCIDRsRemaining",
           "DEFAULT_CLUSTER_CIDR", "node_pod_cidrs", "parse_cidr"]
