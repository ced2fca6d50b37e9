"""The EndpointSlice controller, after upstream's `pkg/controller/endpointslice` and
`k8s.io/endpointslice` (reconciler.go, utils.go, endpointslice_tracker.go).

For every Service with a selector (not ExternalName), `discovery.k8s.io/v1`
EndpointSlices named `<service>-<random>`, owned by the Service (controller reference),
labelled `kubernetes.io/service-name: <service>` and
`endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io` (plus the
Service's own labels, and `service.kubernetes.io/headless` when headless):

- one set of slices per address type the Service has (IPv4 / IPv6) and per distinct
  set of resolved ports (named target ports are looked up on each pod);
- an endpoint per pod that is not terminal and has an IP of that type: `addresses`,
  `conditions` (`ready` = Ready and not terminating, or always with
  publishNotReadyAddresses; `serving` = Ready; `terminating` = being deleted),
  `nodeName`, `zone` (the node's `topology.kubernetes.io/zone`), `targetRef`, and
  `hostname` when the pod's hostname/subdomain name it in the Service;
- pods on a node that does not exist are skipped (the sync reports it and is retried)
  unless the Service publishes not-ready addresses, as upstream does;
- at most 100 endpoints per slice; existing slices are updated in place and filled
  before new ones are created, to keep churn low; a Service without endpoints gets one
  empty placeholder slice;
- a tracker remembers what this controller wrote, so that a stale informer never makes
  it act twice (the sync waits for the cache instead).
"""
from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any, Callable, Iterable

from pyk8s.api.selectors import label_selector_from_set
from pyk8s.client.events import WARNING, EventRecorder
from pyk8s.client.informer import LABEL_INDEX, SharedInformerFactory, index_by_label, split_key
from pyk8s.client.rest import ApiError, NotFound, resource_path
from pyk8s.client.workqueue import WorkQueue, run_workers
from pyk8s.controllers.controller_utils import (NAMESPACE_TERMINATING_CAUSE, is_pod_ready,
                                                resource_version, sync_or_drop)
from pyk8s.controllers.endpoints import (CLUSTER_IP_NONE, HEADLESS_LABEL, ServicePodHandlers,
                                         _Handlers, _is_ipv6, find_port, is_service_ip_set,
                                         pod_ips, service_selector, should_pod_be_in_endpoints,
                                         should_set_hostname, target_ref)

log = logging.getLogger("pyk8s.controllers.endpointslice")

Obj = dict[str, Any]

CONTROLLER_NAME = "endpointslice-controller.k8s.io"
COMPONENT = "endpoint-slice-controller"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_TOPOLOGY_ZONE = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100
MAX_RETRIES = 15
# Upstream syncs a Service at least this long after a change to one of its slices.
ENDPOINT_SLICE_CHANGE_MIN_SYNC_DELAY = 1.0
_RESERVED_LABELS = frozenset({LABEL_SERVICE_NAME, LABEL_MANAGED_BY, HEADLESS_LABEL})
_DELETION_EXPECTED = -1


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


class StaleInformerCache(Exception):
    """The EndpointSlice informer has not seen this controller's last writes yet."""


# -- the tracker ------------------------------------------------------------------------------
class EndpointSliceTracker:
    """The resourceVersion of every slice this controller wrote, per Service
    (upstream's tracker keeps generations; resourceVersions order the same writes)."""

    def __init__(self) -> None:
        self._by_service: dict[tuple[str, str], dict[str, int]] = {}

    @staticmethod
    def _service_of(es: Obj) -> tuple[str, str] | None:
        name = (_md(es).get("labels") or {}).get(LABEL_SERVICE_NAME)
        if not name:
            return None
        return str(_md(es).get("namespace") or ""), str(name)

    def _slices(self, es: Obj) -> dict[str, int] | None:
        key = self._service_of(es)
        return self._by_service.get(key) if key is not None else None

    def has(self, es: Obj) -> bool:
        s = self._slices(es)
        return s is not None and str(_md(es).get("uid")) in s

    def should_sync(self, es: Obj) -> bool:
        """A slice we did not write last (or a newer version of one) needs a sync."""
        s = self._slices(es)
        if s is None:
            return True
        v = s.get(str(_md(es).get("uid")))
        return v is None or resource_version(es) > v

    def stale_slices(self, namespace: str, name: str, slices: list[Obj]) -> bool:
        s = self._by_service.get((namespace, name))
        if s is None:
            return False
        provided = set()
        for es in slices:
            uid = str(_md(es).get("uid"))
            provided.add(uid)
            v = s.get(uid)
            if v is not None and (v == _DELETION_EXPECTED or v > resource_version(es)):
                return True
        return any(v != _DELETION_EXPECTED and uid not in provided for uid, v in s.items())

    def update(self, es: Obj) -> None:
        key = self._service_of(es)
        if key is not None:
            self._by_service.setdefault(key, {})[str(_md(es).get("uid"))] = resource_version(es)

    def expect_deletion(self, es: Obj) -> None:
        key = self._service_of(es)
        if key is not None:
            self._by_service.setdefault(key, {})[str(_md(es).get("uid"))] = _DELETION_EXPECTED

    def handle_deletion(self, es: Obj) -> bool:
        """Forget a deleted slice; False when the deletion was not ours."""
        s = self._slices(es)
        if s is not None:
            v = s.pop(str(_md(es).get("uid")), None)
            if v is not None and v != _DELETION_EXPECTED:
                return False
        return True

    def delete_service(self, namespace: str, name: str) -> None:
        self._by_service.pop((namespace, name), None)


# -- pure parts -------------------------------------------------------------------------------
def address_types_for_service(svc: Obj) -> list[str]:
    """IPv4 / IPv6 from ipFamilies, else the cluster IP; headless without families:
    both (getAddressTypesForService)."""
    out: list[str] = []
    for fam in _spec(svc).get("ipFamilies") or []:
        if fam in ("IPv4", "IPv6") and fam not in out:
            out.append(fam)
    if out:
        return out
    ip = _spec(svc).get("clusterIP")
    if ip and ip != CLUSTER_IP_NONE:
        return ["IPv6" if _is_ipv6(ip) else "IPv4"]
    return ["IPv4", "IPv6"]


def endpoint_ports(svc: Obj, pod: Obj) -> list[Obj]:
    """The Service's ports resolved on `pod` (ports it lacks are left out)."""
    svc_ports = _spec(svc).get("ports") or []
    if not svc_ports and _spec(svc).get("clusterIP") == CLUSTER_IP_NONE:
        return []
    out = []
    for sp in svc_ports:
        num = find_port(pod, sp)
        if num is None:
            continue
        p: Obj = {"name": sp.get("name") or "", "port": num,
                  "protocol": sp.get("protocol") or "TCP"}
        if sp.get("appProtocol"):
            p["appProtocol"] = sp["appProtocol"]
        out.append(p)
    return out


def port_map_key(ports: Iterable[Obj]) -> tuple[Any, ...]:
    return tuple(sorted((p.get("name") or "", int(p.get("port") or 0), p.get("protocol") or "",
                         p.get("appProtocol") or "") for p in ports))


def _sorted_ports(ports: list[Obj]) -> list[Obj]:
    return sorted(ports, key=lambda p: (p.get("name") or "", int(p.get("port") or 0),
                                        p.get("protocol") or ""))


def pod_to_endpoint(pod: Obj, node: Obj | None, svc: Obj, address_type: str) -> Obj:
    serving = is_pod_ready(pod)
    terminating = bool(_md(pod).get("deletionTimestamp"))
    publish = bool(_spec(svc).get("publishNotReadyAddresses"))
    ready = publish or (serving and not terminating)
    want_v6 = address_type == "IPv6"
    ep: Obj = {"addresses": [ip for ip in pod_ips(pod) if _is_ipv6(ip) == want_v6],
               "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}
    if should_set_hostname(pod, svc):
        ep["hostname"] = _spec(pod)["hostname"]
    ep["targetRef"] = target_ref(pod)
    if _spec(pod).get("nodeName"):
        ep["nodeName"] = _spec(pod)["nodeName"]
    zone = ((_md(node).get("labels") or {}).get(LABEL_TOPOLOGY_ZONE)) if node else None
    if zone:
        ep["zone"] = zone
    return ep


def endpoint_key(ep: Obj) -> tuple[Any, ...]:
    """What identifies an endpoint across syncs (upstream's endpoint hash)."""
    ref = ep.get("targetRef") or {}
    return (tuple(sorted(ep.get("addresses") or [])), ep.get("hostname") or "",
            ref.get("namespace") or "", ref.get("name") or "")


def _endpoint_equal(a: Obj, b: Obj) -> bool:
    def norm(ep: Obj) -> Obj:
        e = {k: v for k, v in ep.items() if v not in (None, "", [], {})}
        ref = e.get("targetRef")
        if ref:
            e["targetRef"] = {k: v for k, v in ref.items() if k != "resourceVersion" and v}
        conds = e.get("conditions") or {}
        e["conditions"] = {k: bool(v) for k, v in conds.items() if v is not None}
        if isinstance(e.get("addresses"), list):
            e["addresses"] = sorted(e["addresses"])
        return e
    return norm(a) == norm(b)


def slice_labels(existing: Obj | None, svc: Obj) -> tuple[dict[str, str], bool]:
    """The labels a slice of `svc` carries, and whether `existing`'s differ."""
    labels = {k: v for k, v in (_md(svc).get("labels") or {}).items()
              if k not in _RESERVED_LABELS}
    if not is_service_ip_set(svc):
        labels[HEADLESS_LABEL] = ""
    labels[LABEL_SERVICE_NAME] = str(_md(svc).get("name"))
    labels[LABEL_MANAGED_BY] = CONTROLLER_NAME
    changed = existing is not None and (_md(existing).get("labels") or {}) != labels
    return labels, changed


def _slice_prefix(name: str) -> str:
    prefix = f"{name}-"
    return prefix if len(prefix) <= 58 else "endpointslice-"


def new_endpoint_slice(svc: Obj, ports: list[Obj], address_type: str) -> Obj:
    md = _md(svc)
    labels, _ = slice_labels(None, svc)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": _slice_prefix(str(md.get("name"))),
                         "namespace": md.get("namespace"), "labels": labels,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service",
                                              "name": md.get("name"), "uid": md.get("uid"),
                                              "controller": True,
                                              "blockOwnerDeletion": True}]},
            "addressType": address_type, "ports": _sorted_ports(ports), "endpoints": []}


def owned_by(es: Obj, svc: Obj) -> bool:
    for ref in _md(es).get("ownerReferences") or []:
        if ref.get("kind") == "Service" and ref.get("apiVersion") == "v1" and \
                ref.get("uid") == _md(svc).get("uid") and ref.get("controller"):
            return True
    return False


def _slice_to_fill(slices: list[Obj], num: int, max_per_slice: int) -> Obj | None:
    """The unchanged slice that the remaining endpoints fill the most closely."""
    closest_diff = max_per_slice
    closest = None
    for es in slices:
        diff = max_per_slice - (num + len(es.get("endpoints") or []))
        if 0 <= diff < closest_diff:
            closest_diff, closest = diff, es
            if diff == 0:
                break
    return closest


def _is_placeholder_equal(existing: Obj, placeholder: Obj) -> bool:
    emd, pmd = _md(existing), _md(placeholder)
    return emd.get("namespace") == pmd.get("namespace") and \
        (emd.get("labels") or {}) == (pmd.get("labels") or {}) and \
        (emd.get("ownerReferences") or []) == (pmd.get("ownerReferences") or []) and \
        not existing.get("endpoints") and not existing.get("ports") and \
        existing.get("addressType") == placeholder.get("addressType")


class _Plan:
    def __init__(self) -> None:
        self.create: list[Obj] = []
        self.update: list[Obj] = []
        self.delete: list[Obj] = []


def reconcile_by_port_mapping(svc: Obj, existing: list[Obj], desired: dict[tuple[Any, ...], Obj],
                              ports: list[Obj], address_type: str, max_per_slice: int,
                              plan: _Plan) -> None:
    """Keep, update, fill or create slices for one set of ports (reconcileByPortMapping):
    existing slices drop endpoints no longer desired and take changed ones; slices being
    updated anyway are filled first, then one unchanged slice that fits, then new ones."""
    desired = dict(desired)
    by_name: dict[str, Obj] = {}
    unchanged: list[str] = []
    to_update: list[str] = []
    to_delete: list[str] = []
    for es in existing:
        name = str(_md(es).get("name"))
        by_name[name] = es
        new_eps = []
        updated = False
        for ep in es.get("endpoints") or []:
            got = desired.pop(endpoint_key(ep), None)
            if got is not None:
                new_eps.append(got)
                if not _endpoint_equal(got, ep):
                    updated = True
        labels, labels_changed = slice_labels(es, svc)
        if updated or len(es.get("endpoints") or []) != len(new_eps):
            if not new_eps:
                to_delete.append(name)
            else:
                c = copy.deepcopy(es)
                c["endpoints"] = new_eps
                c["metadata"]["labels"] = labels
                by_name[name] = c
                to_update.append(name)
        elif labels_changed:
            c = copy.deepcopy(es)
            c["metadata"]["labels"] = labels
            by_name[name] = c
            to_update.append(name)
        else:
            unchanged.append(name)
    remaining = [desired[k] for k in sorted(desired, key=lambda k: (k[3], k[0]))]
    if remaining and to_update:
        for name in sorted(to_update, key=lambda n: -len(by_name[n].get("endpoints") or [])):
            es = by_name[name]
            while remaining and len(es["endpoints"]) < max_per_slice:
                es["endpoints"].append(remaining.pop(0))
    while remaining:
        target: Obj | None = None
        if len(remaining) < max_per_slice and unchanged:
            target = _slice_to_fill([by_name[n] for n in unchanged], len(remaining),
                                    max_per_slice)
        if target is None:
            target = new_endpoint_slice(svc, ports, address_type)
        else:
            target = copy.deepcopy(target)
            target.setdefault("endpoints", [])
            by_name[str(_md(target).get("name"))] = target
        while remaining and len(target["endpoints"]) < max_per_slice:
            target["endpoints"].append(remaining.pop(0))
        name = _md(target).get("name")
        if name:
            to_update.append(str(name))
            unchanged.remove(str(name))
        else:
            plan.create.append(target)
    plan.update.extend(by_name[n] for n in to_update)
    plan.delete.extend(by_name[n] for n in to_delete)


def reconcile_address_type(svc: Obj, pods: list[Obj], existing: list[Obj], address_type: str,
                           nodes: Callable[[str], Obj | None], max_per_slice: int
                           ) -> tuple[_Plan, list[str]]:
    """What to create / update / delete for one address type, and the pods skipped
    (reconcileByAddressType)."""
    plan = _Plan()
    errors: list[str] = []
    existing_by_ports: dict[tuple[Any, ...], list[Obj]] = {}
    for es in existing:
        if owned_by(es, svc):
            existing_by_ports.setdefault(port_map_key(es.get("ports") or []), []).append(es)
        else:
            plan.delete.append(es)
    desired_by_ports: dict[tuple[Any, ...], dict[tuple[Any, ...], Obj]] = {}
    ports_by_key: dict[tuple[Any, ...], list[Obj]] = {}
    publish = bool(_spec(svc).get("publishNotReadyAddresses"))
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, True):
            continue
        ports = endpoint_ports(svc, pod)
        pk = port_map_key(ports)
        desired_by_ports.setdefault(pk, {})
        ports_by_key.setdefault(pk, ports)
        node_name = _spec(pod).get("nodeName") or ""
        node = nodes(node_name) if node_name else None
        if node is None and not publish:
            errors.append(f"skipping Pod {_md(pod).get('name')} for Service "
                          f"{_md(svc).get('namespace')}/{_md(svc).get('name')}: Node "
                          f"{node_name} Not Found")
            continue
        ep = pod_to_endpoint(pod, node, svc, address_type)
        if ep["addresses"]:
            desired_by_ports[pk][endpoint_key(ep)] = ep
    for pk, desired in desired_by_ports.items():
        reconcile_by_port_mapping(svc, existing_by_ports.get(pk, []), desired, ports_by_key[pk],
                                  address_type, max_per_slice, plan)
    for pk, slices in existing_by_ports.items():
        if pk not in desired_by_ports:
            plan.delete.extend(slices)
    if len(existing) == len(plan.delete) and not plan.create:
        placeholder = new_endpoint_slice(svc, [], address_type)
        if len(plan.delete) == 1 and _is_placeholder_equal(plan.delete[0], placeholder):
            plan.delete = []
        else:
            plan.create.append(placeholder)
    # Creations and deletions in pairs become updates of the slices to delete.
    i = 0
    while i < len(plan.delete) and plan.create:
        victim = plan.delete[i]
        if victim.get("addressType") == address_type and owned_by(victim, svc):
            es = plan.create.pop()
            es["metadata"]["name"] = _md(victim).get("name")
            es["metadata"]["resourceVersion"] = _md(victim).get("resourceVersion")
            es["metadata"].pop("generateName", None)
            plan.update.append(es)
            plan.delete.pop(i)
        else:
            i += 1
    return plan, errors


class EndpointSliceController(ServicePodHandlers):
    def __init__(self, client: Any, factory: SharedInformerFactory, recorder: EventRecorder,
                 *, workers: int = 5, max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE
                 ) -> None:
        self.client = client
        self.recorder = recorder
        self.workers = workers
        self.max_endpoints_per_slice = max_endpoints_per_slice
        self.queue: WorkQueue[str] = WorkQueue("endpoint_slice")
        self.tracker = EndpointSliceTracker()
        self.svc_informer = factory.services()
        self.pod_informer = factory.pods()
        self.node_informer = factory.nodes()
        self.es_informer = factory.endpoint_slices(indexers={LABEL_INDEX: index_by_label})
        self._svc_handler = _Handlers(self.enqueue_service,
                                      lambda old, new: self.enqueue_service(new),
                                      self.enqueue_service)
        self._pod_handler = _Handlers(self.add_pod, self.update_pod, self.delete_pod)
        self._es_handler = _Handlers(self.add_slice, self.update_slice, self.delete_slice)
        self.svc_informer.add_event_handler(self._svc_handler)
        self.pod_informer.add_event_handler(self._pod_handler)
        self.es_informer.add_event_handler(self._es_handler)

    async def run(self) -> None:
        try:
            await asyncio.gather(self.svc_informer.synced.wait(),
                                 self.pod_informer.synced.wait(),
                                 self.node_informer.synced.wait(),
                                 self.es_informer.synced.wait())
            log.info("endpointslice-controller: synced")
            await run_workers(self.queue, self._sync, self.workers, name=COMPONENT)
        finally:
            self.queue.shutdown()
            self.svc_informer.remove_event_handler(self._svc_handler)
            self.pod_informer.remove_event_handler(self._pod_handler)
            self.es_informer.remove_event_handler(self._es_handler)

    # -- handlers -------------------------------------------------------------------------

    @staticmethod
    def managed(es: Obj) -> bool:
        return (_md(es).get("labels") or {}).get(LABEL_MANAGED_BY) == CONTROLLER_NAME

    def _queue_service_for_slice(self, es: Obj) -> None:
        name = (_md(es).get("labels") or {}).get(LABEL_SERVICE_NAME)
        if not name:
            return
        self.queue.add_after(f"{_md(es).get('namespace')}/{name}",
                             ENDPOINT_SLICE_CHANGE_MIN_SYNC_DELAY)

    def add_slice(self, es: Obj) -> None:
        if self.managed(es) and self.tracker.should_sync(es):
            self._queue_service_for_slice(es)

    def update_slice(self, old: Obj, new: Obj) -> None:
        if _md(old).get("resourceVersion") == _md(new).get("resourceVersion"):
            return
        if (_md(old).get("labels") or {}).get(LABEL_SERVICE_NAME) != \
                (_md(new).get("labels") or {}).get(LABEL_SERVICE_NAME):
            self._queue_service_for_slice(new)
            self._queue_service_for_slice(old)
            return
        if self.managed(old) != self.managed(new) or \
                (self.managed(new) and self.tracker.should_sync(new)):
            self._queue_service_for_slice(new)

    def delete_slice(self, es: Obj) -> None:
        if self.managed(es) and self.tracker.has(es):
            if not self.tracker.handle_deletion(es):
                self._queue_service_for_slice(es)

    # -- sync -----------------------------------------------------------------------------
    async def _sync(self, key: str) -> None:
        await sync_or_drop(self.sync, self.queue, key, COMPONENT, "service", MAX_RETRIES)

    def slices_for_service(self, namespace: str, name: str) -> list[Obj]:
        return [es for es in self.es_informer.store.by_index(
                    LABEL_INDEX, f"{LABEL_SERVICE_NAME}={name}")
                if _md(es).get("namespace") == namespace and self.managed(es)]

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        svc = self.svc_informer.store.get(key)
        if svc is None:
            # Its slices are the garbage collector's (they are owned by the Service).
            self.tracker.delete_service(namespace, name)
            return
        if _spec(svc).get("type") == "ExternalName":
            return
        selector = service_selector(svc)
        if selector is None:
            return  # slices of Services without selectors are the user's
        pods = self.pod_informer.store.select(namespace, label_selector_from_set(selector))
        slices = [es for es in self.slices_for_service(namespace, name)
                  if not _md(es).get("deletionTimestamp")]
        if self.tracker.stale_slices(namespace, name, slices):
            raise StaleInformerCache("EndpointSlice informer cache is out of date")
        errors = await self.reconcile(svc, pods, slices)
        if errors:
            msg = "; ".join(errors)
            self.recorder.event(svc, WARNING, "FailedToUpdateEndpointSlices",
                                f"Error updating Endpoint Slices for Service {namespace}/{name}: "
                                f"{msg}")
            raise RuntimeError(msg)

    async def reconcile(self, svc: Obj, pods: list[Obj], existing: list[Obj]) -> list[str]:
        types = address_types_for_service(svc)
        errors: list[str] = []
        by_type: dict[str, list[Obj]] = {}
        unsupported: list[Obj] = []
        for es in existing:
            if es.get("addressType") in types:
                by_type.setdefault(str(es["addressType"]), []).append(es)
            else:
                unsupported.append(es)
        for t in types:
            plan, errs = reconcile_address_type(svc, pods, by_type.get(t, []), t,
                                                self.node_informer.store.get,
                                                self.max_endpoints_per_slice)
            errors.extend(errs)
            try:
                await self.finalize(svc, plan)
            except ApiError as e:
                errors.append(e.message)
        for es in unsupported:
            try:
                await self._delete(es)
            except ApiError as e:
                errors.append(f"error deleting {_md(es).get('name')} EndpointSlice: {e.message}")
        return errors

    async def _delete(self, es: Obj) -> None:
        try:
            await self.client.delete(resource_path("discovery.k8s.io", "v1", "endpointslices",
                                                   _md(es).get("namespace"),
                                                   str(_md(es).get("name"))))
        except NotFound:
            pass
        self.tracker.expect_deletion(es)

    async def finalize(self, svc: Obj, plan: _Plan) -> None:
        ns = str(_md(svc).get("namespace"))
        path = resource_path("discovery.k8s.io", "v1", "endpointslices", ns)
        if not _md(svc).get("deletionTimestamp"):
            for es in plan.create:
                try:
                    created = await self.client.create(path, es)
                except ApiError as e:
                    if e.has_cause(NAMESPACE_TERMINATING_CAUSE):
                        return
                    raise
                self.tracker.update(created)
        for es in plan.update:
            updated = await self.client.update(f"{path}/{_md(es).get('name')}", es)
            self.tracker.update(updated)
        for es in plan.delete:
            await self._delete(es)


__all__ = ["EndpointSliceController", "EndpointSliceTracker", "reconcile_address_type",
           "pod_to_endpoint", "endpoint_ports", "address_types_for_service",
           "new_endpoint_slice", "CONTROLLER_NAME", "LABEL_SERVICE_NAME", "LABEL_MANAGED_BY",
           "MAX_ENDPOINTS_PER_SLICE"]
