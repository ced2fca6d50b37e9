"""The Endpoints controller, after upstream's `pkg/controller/endpoint`, and the helpers
it shares with the EndpointSlice controller (upstream's `k8s.io/endpointslice/util` and
`pkg/api/v1/pod.FindPort`).

For every Service with a selector (not ExternalName), the `Endpoints` object of the
same name lists the pods the selector matches:

- a pod takes part when it is not terminal (Succeeded / Failed) and has an IP; a pod
  being deleted only with `publishNotReadyAddresses`;
- its address (IP of the Service's family, `nodeName`, `targetRef` to the pod, hostname
  when `spec.hostname` is set and `spec.subdomain` names the Service) goes to
  `addresses` when the pod is Ready (or the Service publishes not-ready addresses), to
  `notReadyAddresses` otherwise;
- one port per Service port, the target port resolved against the pod's containers when
  it is a name (a pod without that named port is left out of that port); headless
  Services without ports list the addresses alone;
- subsets are repacked as upstream does (addresses grouped by the ports they serve),
  at most 1,000 addresses (`endpoints.kubernetes.io/over-capacity: truncated`);
- labels are the Service's, plus `service.kubernetes.io/headless` for headless Services.

Services without a selector are left alone (their Endpoints are the user's); Endpoints
whose Service is gone are deleted (checked at start-up too, as upstream does).
Warning events FailedToCreateEndpoint / FailedToUpdateEndpoint go to the Service.
"""
from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
import math
from typing import Any, Callable, Iterable

from pyk8s.api.selectors import label_selector_from_set
from pyk8s.client.events import WARNING, EventRecorder
from pyk8s.client.informer import SharedInformerFactory, object_key, split_key
from pyk8s.client.rest import AlreadyExists, ApiError, Conflict, NotFound, resource_path
from pyk8s.client.workqueue import WorkQueue, run_workers
from pyk8s.controllers.controller_utils import NAMESPACE_TERMINATING_CAUSE, is_pod_ready

log = logging.getLogger("pyk8s.controllers.endpoints")

Obj = dict[str, Any]

COMPONENT = "endpoint-controller"
MAX_CAPACITY = 1000
OVER_CAPACITY_ANNOTATION = "endpoints.kubernetes.io/over-capacity"
TRUNCATED = "truncated"
HEADLESS_LABEL = "service.kubernetes.io/headless"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
CLUSTER_IP_NONE = "None"


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


# -- shared with the EndpointSlice controller ---------------------------------------------------
def service_selector(svc: Obj) -> dict[str, str] | None:
    """The Service's selector; None when it has none (such Services are left alone).
    An empty map counts as none: it cannot survive the API's JSON anyway."""
    sel = _spec(svc).get("selector")
    return dict(sel) if sel else None


def is_service_ip_set(svc: Obj) -> bool:
    """Not headless (upstream's IsServiceIPSet). The API server does not allocate cluster
    IPs yet, so a Service whose clusterIP is unset (rather than "None") counts as having
    one: every ClusterIP-type Service has one upstream."""
    ip = _spec(svc).get("clusterIP")
    if not ip:
        return _spec(svc).get("type", "ClusterIP") != "ExternalName"
    return bool(ip != CLUSTER_IP_NONE)


def services_for_pod(services: Iterable[Obj], pod: Obj) -> list[Obj]:
    """Services in the pod's namespace whose selector matches its labels
    (GetPodServiceMemberships)."""
    ns = _md(pod).get("namespace")
    labels = _md(pod).get("labels") or {}
    out = []
    for svc in services:
        if _md(svc).get("namespace") != ns:
            continue
        sel = service_selector(svc)
        if sel is None:
            continue
        if all(labels.get(k) == v for k, v in sel.items()):
            out.append(svc)
    return out


def pod_ips(pod: Obj) -> list[str]:
    st = pod.get("status") or {}
    ips = [str(p.get("ip")) for p in st.get("podIPs") or [] if p.get("ip")]
    if not ips and st.get("podIP"):
        ips = [str(st["podIP"])]
    return ips


def is_pod_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def should_pod_be_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """Not terminal, has an IP, and not being deleted unless `include_terminating`."""
    if is_pod_terminal(pod):
        return False
    if not pod_ips(pod):
        return False
    if not include_terminating and _md(pod).get("deletionTimestamp"):
        return False
    return True


def should_set_hostname(pod: Obj, svc: Obj) -> bool:
    return bool(_spec(pod).get("hostname")) and \
        _spec(pod).get("subdomain") == _md(svc).get("name") and \
        _md(svc).get("namespace") == _md(pod).get("namespace")


def _is_ipv6(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 6
    except ValueError:
        return False


def service_ip_family(svc: Obj, pod: Obj | None = None) -> str:
    """IPv4 / IPv6: the Service's first family, else its cluster IP's, else the pod's."""
    families = _spec(svc).get("ipFamilies") or []
    if families:
        return str(families[0])
    cluster_ip = _spec(svc).get("clusterIP")
    if cluster_ip and cluster_ip != CLUSTER_IP_NONE:
        return "IPv6" if _is_ipv6(cluster_ip) else "IPv4"
    if pod is not None:
        st = pod.get("status") or {}
        if st.get("podIP") and _is_ipv6(str(st["podIP"])):
            return "IPv6"
    return "IPv4"


def pod_ip_of_family(pod: Obj, family: str) -> str | None:
    want_v6 = family == "IPv6"
    for ip in pod_ips(pod):
        if _is_ipv6(ip) == want_v6:
            return ip
    return None


def find_port(pod: Obj, svc_port: Obj) -> int | None:
    """The container port a Service port targets on `pod` (podutil.FindPort): a number is
    itself; a name is looked up among the containers' (and restartable init
    containers') ports of the same protocol; None when the pod has no such port."""
    target = svc_port.get("targetPort")
    if target is None:
        target = svc_port.get("port")
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    if isinstance(target, str):
        if target.isdigit():
            return int(target)
        proto = svc_port.get("protocol") or "TCP"
        spec = _spec(pod)
        containers = list(spec.get("containers") or []) + [
            c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
        for c in containers:
            for p in c.get("ports") or []:
                if p.get("name") == target and (p.get("protocol") or "TCP") == proto:
                    return int(p["containerPort"])
    return None


def target_ref(pod: Obj) -> Obj:
    md = _md(pod)
    ref = {"kind": "Pod", "namespace": md.get("namespace"), "name": md.get("name"),
           "uid": md.get("uid")}
    return {k: v for k, v in ref.items() if v}


def _hostname_and_domain_equal(a: Obj, b: Obj) -> bool:
    return _spec(a).get("hostname") == _spec(b).get("hostname") and \
        _spec(a).get("subdomain") == _spec(b).get("subdomain")


def pod_endpoints_changed(old: Obj, new: Obj) -> tuple[bool, bool]:
    """(something an endpoint shows changed, labels or hostname changed)
    (podEndpointsChanged)."""
    labels_changed = _md(old).get("labels") != _md(new).get("labels") or \
        not _hostname_and_domain_equal(old, new)
    if _md(old).get("deletionTimestamp") != _md(new).get("deletionTimestamp"):
        return True, labels_changed
    if is_pod_ready(old) != is_pod_ready(new):
        return True, labels_changed
    if pod_ips(old) != pod_ips(new):
        return True, labels_changed
    if (_spec(old).get("nodeName") or "") != (_spec(new).get("nodeName") or ""):
        return True, labels_changed
    if ((old.get("status") or {}).get("phase") in ("Succeeded", "Failed")) != \
            is_pod_terminal(new):
        return True, labels_changed
    return False, labels_changed


def services_to_update_on_pod_change(services: Iterable[Obj], old: Obj, new: Obj
                                     ) -> list[Obj]:
    """Services to sync when a pod changes (GetServicesToUpdateOnPodChange)."""
    if _md(old).get("resourceVersion") == _md(new).get("resourceVersion"):
        return []  # a resync: nothing changed
    changed, labels_changed = pod_endpoints_changed(old, new)
    if not changed and not labels_changed:
        return []
    services = list(services)
    cur = services_for_pod(services, new)
    if labels_changed:
        seen = {object_key(s) for s in cur}
        for s in services_for_pod(services, old):
            if object_key(s) not in seen:
                cur.append(s)
    return cur


# -- Endpoints --------------------------------------------------------------------------------
def _addr_key(addr: Obj) -> tuple[str, str]:
    return str(addr.get("ip") or ""), str((addr.get("targetRef") or {}).get("uid") or "")


def _port_key(port: Obj) -> tuple[Any, ...]:
    return (port.get("name") or "", int(port.get("port") or 0), port.get("protocol") or "",
            port.get("appProtocol") or "")


def repack_subsets(subsets: list[Obj]) -> list[Obj]:
    """Group addresses by the set of ports they serve, ready or not (upstream's
    RepackSubsets), in a stable order: addresses by IP then pod uid, ports by name, port,
    protocol; subsets by their first address."""
    all_addrs: dict[tuple[str, str], Obj] = {}
    port_to_ready: dict[tuple[Any, ...], dict[tuple[str, str], bool]] = {}
    ports_by_key: dict[tuple[Any, ...], Obj | None] = {}

    def map_addr(addr: Obj, port: Obj | None, ready: bool) -> None:
        k = _addr_key(addr)
        all_addrs.setdefault(k, addr)
        pk = _port_key(port) if port is not None else ("", -1, "", "")
        ports_by_key.setdefault(pk, port)
        readiness = port_to_ready.setdefault(pk, {})
        if not readiness.get(k, False):
            readiness[k] = ready

    for ss in subsets:
        ports = ss.get("ports") or [None]
        for port in ports:
            for a in ss.get("addresses") or []:
                map_addr(a, port, True)
            for a in ss.get("notReadyAddresses") or []:
                map_addr(a, port, False)
    # Address sets (with readiness) → the ports they serve.
    groups: dict[tuple[Any, ...], tuple[dict[tuple[str, str], bool], list[Obj]]] = {}
    for pk, readiness in port_to_ready.items():
        gk = tuple(sorted(readiness.items()))
        _, ports = groups.setdefault(gk, (readiness, []))
        port = ports_by_key[pk]
        if port is not None and int(port.get("port") or 0) > 0:
            ports.append(port)
    final: list[Obj] = []
    for readiness, ports in groups.values():
        ready = [all_addrs[k] for k in sorted(readiness) if readiness[k]]
        not_ready = [all_addrs[k] for k in sorted(readiness) if not readiness[k]]
        ss: Obj = {}
        if ready:
            ss["addresses"] = ready
        if not_ready:
            ss["notReadyAddresses"] = not_ready
        if ports:
            ss["ports"] = sorted(ports, key=_port_key)
        final.append(ss)

    def subset_key(ss: Obj) -> tuple[Any, ...]:
        first = (ss.get("addresses") or ss.get("notReadyAddresses") or [{}])[0]
        return _addr_key(first), tuple(_port_key(p) for p in ss.get("ports") or [])
    return sorted(final, key=subset_key)


def truncate_endpoints(ep: Obj) -> bool:
    """Keep at most MAX_CAPACITY addresses, ready ones first, each subset keeping its
    share (truncateEndpoints); True when something was cut."""
    subsets = ep.get("subsets") or []
    total_ready = sum(len(s.get("addresses") or []) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
    if total_ready + total_not_ready <= MAX_CAPACITY:
        return False
    truncate_ready = False
    max_n = MAX_CAPACITY - total_ready
    num_total = total_not_ready
    if total_ready > MAX_CAPACITY:
        truncate_ready = True
        max_n = MAX_CAPACITY
        num_total = total_ready
    can_add = max_n
    for s in subsets:
        key = "addresses" if truncate_ready else "notReadyAddresses"
        n = len(s.get(key) or [])
        to_add = min(int(math.ceil(n / num_total * max_n)) if num_total else 0, can_add)
        s[key] = (s.get(key) or [])[:to_add]
        if truncate_ready:
            s.pop("notReadyAddresses", None)
        if not s[key]:
            s.pop(key)
        can_add -= to_add
    ep["subsets"] = [s for s in subsets if s.get("addresses") or s.get("notReadyAddresses")]
    return True


def desired_subsets(svc: Obj, pods: Iterable[Obj]) -> list[Obj]:
    """The subsets the Service's pods give, repacked (the heart of syncService)."""
    publish = bool(_spec(svc).get("publishNotReadyAddresses"))
    svc_ports = _spec(svc).get("ports") or []
    headless = _spec(svc).get("clusterIP") == CLUSTER_IP_NONE
    subsets: list[Obj] = []
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, publish):
            continue
        ip = pod_ip_of_family(pod, service_ip_family(svc, pod))
        if ip is None:
            log.debug("%s: no IP of the service's family for pod %s", COMPONENT,
                      object_key(pod))
            continue
        addr: Obj = {"ip": ip}
        if should_set_hostname(pod, svc):
            addr["hostname"] = _spec(pod)["hostname"]
        if _spec(pod).get("nodeName"):
            addr["nodeName"] = _spec(pod)["nodeName"]
        addr["targetRef"] = target_ref(pod)
        ready = publish or is_pod_ready(pod)
        if not svc_ports:
            if headless:
                subsets.append({"addresses" if ready else "notReadyAddresses": [addr]})
            continue
        for sp in svc_ports:
            port_num = find_port(pod, sp)
            if port_num is None:
                log.debug("%s: no port %r for service %s on pod %s", COMPONENT,
                          sp.get("targetPort"), object_key(svc), object_key(pod))
                continue
            epp: Obj = {"port": port_num, "protocol": sp.get("protocol") or "TCP"}
            if sp.get("name"):
                epp["name"] = sp["name"]
            if sp.get("appProtocol"):
                epp["appProtocol"] = sp["appProtocol"]
            subsets.append({"addresses" if ready else "notReadyAddresses": [addr],
                            "ports": [epp]})
    return repack_subsets(subsets)


def endpoints_labels(svc: Obj) -> dict[str, str]:
    labels = dict(_md(svc).get("labels") or {})
    if is_service_ip_set(svc):
        labels.pop(HEADLESS_LABEL, None)
    else:
        labels[HEADLESS_LABEL] = ""
    return labels


def _subsets_equal(a: list[Obj] | None, b: list[Obj] | None) -> bool:
    """Equal ignoring the pods' resourceVersions in targetRefs."""
    def strip(subsets: list[Obj] | None) -> Any:
        out = []
        for ss in subsets or []:
            s = {}
            for key in ("addresses", "notReadyAddresses"):
                addrs = []
                for addr in ss.get(key) or []:
                    addr = dict(addr)
                    if addr.get("targetRef"):
                        ref = dict(addr["targetRef"])
                        ref.pop("resourceVersion", None)
                        addr["targetRef"] = ref
                    addrs.append(addr)
                if addrs:
                    s[key] = addrs
            ports = [{k: v for k, v in p.items() if v not in (None, "")}
                     for p in ss.get("ports") or []]
            if ports:
                s["ports"] = ports
            out.append(s)
        return out
    return bool(strip(a) == strip(b))


class _Handlers:
    def __init__(self, on_add: Callable[[Obj], None] | None = None,
                 on_update: Callable[[Obj, Obj], None] | None = None,
                 on_delete: Callable[[Obj], None] | None = None) -> None:
        self.on_add = on_add or (lambda o: None)
        self.on_update = on_update or (lambda o, n: None)
        self.on_delete = on_delete or (lambda o: None)


class ServicePodHandlers:
    """Pod and Service event handlers shared by the Endpoints and EndpointSlice controllers:
    both enqueue the Services whose selection a pod change can affect."""

    queue: WorkQueue[str]
    svc_informer: Any

    def enqueue_service(self, svc: Obj) -> None:
        self.queue.add(object_key(svc))

    def _services(self, pod: Obj) -> list[Obj]:
        return self.svc_informer.store.list_namespace(_md(pod).get("namespace") or "")

    def add_pod(self, pod: Obj) -> None:
        for svc in services_for_pod(self._services(pod), pod):
            self.enqueue_service(svc)

    def update_pod(self, old: Obj, new: Obj) -> None:
        for svc in services_to_update_on_pod_change(self._services(new), old, new):
            self.enqueue_service(svc)

    def delete_pod(self, pod: Obj) -> None:
        self.add_pod(pod)


class EndpointsController(ServicePodHandlers):
    def __init__(self, client: Any, factory: SharedInformerFactory, recorder: EventRecorder,
                 *, workers: int = 5) -> None:
        self.client = client
        self.recorder = recorder
        self.workers = workers
        self.queue: WorkQueue[str] = WorkQueue("endpoint")
        self.svc_informer = factory.services()
        self.pod_informer = factory.pods()
        self.ep_informer = factory.endpoints()
        self._svc_handler = _Handlers(self.enqueue_service,
                                      lambda old, new: self.enqueue_service(new),
                                      self.enqueue_service)
        self._pod_handler = _Handlers(self.add_pod, self.update_pod, self.delete_pod)
        self._ep_handler = _Handlers(on_delete=self.delete_endpoints)
        self.svc_informer.add_event_handler(self._svc_handler)
        self.pod_informer.add_event_handler(self._pod_handler)
        self.ep_informer.add_event_handler(self._ep_handler)

    async def run(self) -> None:
        try:
            await asyncio.gather(self.svc_informer.synced.wait(),
                                 self.pod_informer.synced.wait(),
                                 self.ep_informer.synced.wait())
            log.info("endpoint-controller: synced")
            self.check_leftover_endpoints()
            await run_workers(self.queue, self._sync, self.workers, name=COMPONENT)
        finally:
            self.queue.shutdown()
            self.svc_informer.remove_event_handler(self._svc_handler)
            self.pod_informer.remove_event_handler(self._pod_handler)
            self.ep_informer.remove_event_handler(self._ep_handler)

    # -- handlers -------------------------------------------------------------------------

    def delete_endpoints(self, ep: Obj) -> None:
        # Re-create the Endpoints of a Service that still exists.
        if self.svc_informer.store.get(object_key(ep)) is not None:
            self.queue.add(object_key(ep))

    def check_leftover_endpoints(self) -> None:
        """Queue every Endpoints object: those whose Service is gone get deleted (leader
        election records are skipped)."""
        for ep in self.ep_informer.store.list():
            if LEADER_ANNOTATION in (_md(ep).get("annotations") or {}):
                continue
            self.queue.add(object_key(ep))

    # -- sync -----------------------------------------------------------------------------
    async def _sync(self, key: str) -> None:
        try:
            await self.sync(key)
        except ApiError as e:
            if e.has_cause(NAMESPACE_TERMINATING_CAUSE):
                return
            raise

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        path = resource_path("", "v1", "endpoints", namespace)
        svc = self.svc_informer.store.get(key)
        if svc is None:
            # The Service is gone: so are its Endpoints (the garbage collector would not
            # know, Endpoints have no owner).
            if self.ep_informer.store.get(key) is None:
                return
            try:
                await self.client.delete(f"{path}/{name}")
            except NotFound:
                pass
            return
        if _spec(svc).get("type") == "ExternalName":
            return
        selector = service_selector(svc)
        if selector is None:
            return  # the user's Endpoints
        sel = label_selector_from_set(selector)
        pods = self.pod_informer.store.select(namespace, sel)
        subsets = desired_subsets(svc, pods)
        current = self.ep_informer.store.get(key)
        create = current is None
        if current is None:
            current = {"apiVersion": "v1", "kind": "Endpoints",
                       "metadata": {"name": name, "namespace": namespace,
                                    "labels": dict(_md(svc).get("labels") or {})}}
        labels = endpoints_labels(svc)
        cur_ann = _md(current).get("annotations") or {}
        over_capacity_ok = (cur_ann.get(OVER_CAPACITY_ANNOTATION) == TRUNCATED) == \
            (sum(len(s.get("addresses") or []) + len(s.get("notReadyAddresses") or [])
                 for s in subsets) > MAX_CAPACITY)
        if not create and _subsets_equal(current.get("subsets"), subsets) and \
                (_md(current).get("labels") or {}) == labels and over_capacity_ok:
            return
        new = copy.deepcopy(current)
        new["subsets"] = subsets
        md = new.setdefault("metadata", {})
        md["labels"] = labels
        ann = dict(md.get("annotations") or {})
        if truncate_endpoints(new):
            ann[OVER_CAPACITY_ANNOTATION] = TRUNCATED
        else:
            ann.pop(OVER_CAPACITY_ANNOTATION, None)
        if ann:
            md["annotations"] = ann
        else:
            md.pop("annotations", None)
        if not new["subsets"]:
            new.pop("subsets")
        try:
            if create:
                await self.client.create(path, new)
            else:
                await self.client.update(f"{path}/{name}", new)
        except ApiError as e:
            if e.has_cause(NAMESPACE_TERMINATING_CAUSE):
                return
            if create and isinstance(e, AlreadyExists):
                # A stale cache: the next sync (after the informer catches up) updates it.
                raise
            if isinstance(e, (Conflict, NotFound)):
                raise  # a stale cache: retry
            verb = "create" if create else "update"
            self.recorder.event(svc, WARNING,
                                "FailedToCreateEndpoint" if create else "FailedToUpdateEndpoint",
                                f"Failed to {verb} endpoint {namespace}/{name}: {e.message}")
            raise


__all__ = ["EndpointsController", "desired_subsets", "repack_subsets", "truncate_endpoints",
           "find_port", "services_for_pod", "services_to_update_on_pod_change",
           "should_pod_be_in_endpoints", "service_selector", "pod_ips", "target_ref",
           "is_service_ip_set", "service_ip_family", "pod_ip_of_family",
           "should_set_hostname", "COMPONENT"]
