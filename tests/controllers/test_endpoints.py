"""Endpoints and EndpointSlice controllers: pure parts and `sync` against a seeded fake."""
from __future__ import annotations

import copy
from typing import Any

from pyk8s.client.events import FakeRecorder
from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.controllers.endpoints import (MAX_CAPACITY, OVER_CAPACITY_ANNOTATION,
                                         EndpointsController, desired_subsets, find_port,
                                         repack_subsets, services_to_update_on_pod_change,
                                         should_pod_be_in_endpoints, truncate_endpoints)
from pyk8s.controllers.endpointslice import (CONTROLLER_NAME, LABEL_MANAGED_BY,
                                             LABEL_SERVICE_NAME, EndpointSliceController,
                                             EndpointSliceTracker, address_types_for_service,
                                             pod_to_endpoint, reconcile_address_type)

Obj = dict[str, Any]
NS = "ns"
NODES = {"n1": {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}}}


def svc(name: str = "web", *, selector: Obj | None = None, ports: list[Obj] | None = None,
        publish: bool = False, cluster_ip: str | None = None, **spec: Any) -> Obj:
    s: Obj = {"ports": ports if ports is not None else
              [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}],
              "ipFamilies": ["IPv4"], **spec}
    if selector is not False:
        s["selector"] = selector if selector is not None else {"app": name}
    if publish:
        s["publishNotReadyAddresses"] = True
    if cluster_ip is not None:
        s["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS, "uid": f"{name}-uid",
                         "resourceVersion": "1"},
            "spec": s}


def pod(name: str, *, app: str = "web", ip: str | None = "10.0.0.1", ready: bool = True,
        node: str = "n1", port: int = 8080, port_name: str = "web", deleting: bool = False,
        phase: str = "Running", rv: str = "1", **spec: Any) -> Obj:
    md: Obj = {"name": name, "namespace": NS, "uid": f"{name}-uid", "labels": {"app": app},
               "resourceVersion": rv}
    if deleting:
        md["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    st: Obj = {"phase": phase, "conditions": [{"type": "Ready",
                                               "status": "True" if ready else "False"}]}
    if ip:
        st["podIP"] = ip
        st["podIPs"] = [{"ip": ip}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": {"nodeName": node, "containers": [
                {"name": "c", "ports": [{"name": port_name, "containerPort": port,
                                         "protocol": "TCP"}]}], **spec},
            "status": st}


# -- shared helpers -----------------------------------------------------------------------------
def test_find_port() -> None:
    p = pod("a", port=8080)
    assert find_port(p, {"port": 80, "targetPort": "web", "protocol": "TCP"}) == 8080
    assert find_port(p, {"port": 80, "targetPort": "web", "protocol": "UDP"}) is None
    assert find_port(p, {"port": 80, "targetPort": "nope"}) is None
    assert find_port(p, {"port": 80, "targetPort": 9000}) == 9000
    assert find_port(p, {"port": 80}) == 80
    sidecar = pod("b", initContainers=[{"name": "s", "restartPolicy": "Always",
                                        "ports": [{"name": "side", "containerPort": 7000}]}])
    assert find_port(sidecar, {"port": 80, "targetPort": "side"}) == 7000


def test_which_pods_take_part() -> None:
    assert should_pod_be_in_endpoints(pod("a"), False)
    assert not should_pod_be_in_endpoints(pod("a", ip=None), True)
    assert not should_pod_be_in_endpoints(pod("a", phase="Succeeded"), True)
    assert not should_pod_be_in_endpoints(pod("a", deleting=True), False)
    assert should_pod_be_in_endpoints(pod("a", deleting=True), True)


def test_services_to_update_on_pod_change() -> None:
    services = [svc("web"), svc("other", selector={"app": "other"}), svc("nosel",
                                                                         selector=False)]
    old = pod("a", rv="1")
    assert services_to_update_on_pod_change(services, old, old) == []  # resync
    new = copy.deepcopy(old)
    new["metadata"]["resourceVersion"] = "2"
    new["metadata"]["annotations"] = {"x": "y"}
    assert services_to_update_on_pod_change(services, old, new) == []  # nothing shown
    new["status"]["conditions"][0]["status"] = "False"
    assert [s["metadata"]["name"] for s in
            services_to_update_on_pod_change(services, old, new)] == ["web"]
    moved = copy.deepcopy(old)
    moved["metadata"]["resourceVersion"] = "3"
    moved["metadata"]["labels"] = {"app": "other"}
    assert sorted(s["metadata"]["name"] for s in
                  services_to_update_on_pod_change(services, old, moved)) == ["other", "web"]


# -- Endpoints ----------------------------------------------------------------------------------
def test_desired_subsets_ready_not_ready_and_named_ports() -> None:
    pods = [pod("a", ip="10.0.0.1", port=8080), pod("b", ip="10.0.0.2", port=8080,
                                                      ready=False),
            pod("c", ip="10.0.0.3", port=9090), pod("d", ip="10.0.0.4", port_name="x"),
            pod("e", ip="10.0.0.5", deleting=True), pod("f", ip=None)]
    subsets = desired_subsets(svc(), pods)
    assert subsets == [
        {"addresses": [{"ip": "10.0.0.1", "nodeName": "n1",
                        "targetRef": {"kind": "Pod", "namespace": NS, "name": "a",
                                      "uid": "a-uid"}}],
         "notReadyAddresses": [{"ip": "10.0.0.2", "nodeName": "n1",
                                "targetRef": {"kind": "Pod", "namespace": NS, "name": "b",
                                              "uid": "b-uid"}}],
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
        {"addresses": [{"ip": "10.0.0.3", "nodeName": "n1",
                        "targetRef": {"kind": "Pod", "namespace": NS, "name": "c",
                                      "uid": "c-uid"}}],
         "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}]}]
    # publishNotReadyAddresses: not ready and terminating pods are ready addresses.
    subsets = desired_subsets(svc(publish=True), pods)
    names = sorted(a["targetRef"]["name"] for ss in subsets for a in ss.get("addresses", []))
    assert names == ["a", "b", "c", "e"]
    assert not any(ss.get("notReadyAddresses") for ss in subsets)


def test_repack_groups_addresses_by_port_set() -> None:
    a = {"ip": "10.0.0.1"}
    b = {"ip": "10.0.0.2"}
    p80 = {"name": "a", "port": 80, "protocol": "TCP"}
    p81 = {"name": "b", "port": 81, "protocol": "TCP"}
    subsets = [{"addresses": [a], "ports": [p80]}, {"addresses": [a], "ports": [p81]},
               {"addresses": [b], "ports": [p80]}, {"notReadyAddresses": [b], "ports": [p81]}]
    assert repack_subsets(subsets) == [
        {"addresses": [a, b], "ports": [p80]},
        {"addresses": [a], "notReadyAddresses": [b], "ports": [p81]}]
    # Ready wins over not ready for the same address and port.
    assert repack_subsets([{"notReadyAddresses": [a], "ports": [p80]},
                           {"addresses": [a], "ports": [p80]}]) == \
        [{"addresses": [a], "ports": [p80]}]
    # Headless without ports.
    assert repack_subsets([{"addresses": [b]}, {"addresses": [a]}]) == [{"addresses": [a, b]}]


def test_truncate_keeps_ready_addresses_first() -> None:
    ready = [{"ip": f"10.0.{i // 250}.{i % 250}"} for i in range(900)]
    not_ready = [{"ip": f"10.1.{i // 250}.{i % 250}"} for i in range(300)]
    ep: Obj = {"subsets": [{"addresses": ready, "notReadyAddresses": not_ready,
                            "ports": [{"port": 80}]}]}
    assert truncate_endpoints(ep)
    [ss] = ep["subsets"]
    assert len(ss["addresses"]) == 900 and len(ss["notReadyAddresses"]) == MAX_CAPACITY - 900
    ep = {"subsets": [{"addresses": ready + not_ready, "ports": [{"port": 80}]}]}
    assert truncate_endpoints(ep)
    assert len(ep["subsets"][0]["addresses"]) == MAX_CAPACITY
    assert not truncate_endpoints({"subsets": [{"addresses": ready}]})


class EpHarness:
    def __init__(self) -> None:
        self.client = FakeClient()
        self.recorder = FakeRecorder()
        factory = SharedInformerFactory(self.client)  # type: ignore[arg-type]
        self.ctrl = EndpointsController(self.client, factory, self.recorder)

    def add(self, obj: Obj) -> None:
        store = {"Service": self.ctrl.svc_informer, "Pod": self.ctrl.pod_informer,
                 "Endpoints": self.ctrl.ep_informer}[obj["kind"]].store
        store.add(obj)

    def observe(self) -> None:
        for o in self.client.stored("", "endpoints"):
            self.ctrl.ep_informer.store.add(copy.deepcopy(o))


async def test_endpoints_sync_creates_updates_and_skips_unchanged() -> None:
    h = EpHarness()
    s = svc()
    s["metadata"]["labels"] = {"tier": "x"}
    h.add(s)
    h.add(pod("a", ip="10.0.0.1"))
    await h.ctrl.sync(f"{NS}/web")
    [create] = h.client.by_verb("create", "endpoints")
    assert create.body["metadata"]["labels"] == {"tier": "x"}
    assert create.body["subsets"][0]["addresses"][0]["ip"] == "10.0.0.1"
    h.observe()
    await h.ctrl.sync(f"{NS}/web")
    assert not h.client.by_verb("update", "endpoints")  # nothing changed
    h.add(pod("a", ip="10.0.0.1", ready=False, rv="2"))
    await h.ctrl.sync(f"{NS}/web")
    [update] = h.client.by_verb("update", "endpoints")
    assert "addresses" not in update.body["subsets"][0]
    assert update.body["subsets"][0]["notReadyAddresses"][0]["ip"] == "10.0.0.1"


async def test_endpoints_over_capacity_annotation() -> None:
    h = EpHarness()
    h.add(svc(ports=[{"name": "p", "port": 80, "targetPort": 80}]))
    for i in range(MAX_CAPACITY + 5):
        h.add(pod(f"p{i}", ip=f"10.{i // 250}.{i % 250}.1"))
    await h.ctrl.sync(f"{NS}/web")
    [create] = h.client.by_verb("create", "endpoints")
    assert create.body["metadata"]["annotations"] == {OVER_CAPACITY_ANNOTATION: "truncated"}
    assert sum(len(s["addresses"]) for s in create.body["subsets"]) == MAX_CAPACITY


async def test_endpoints_without_selector_or_service() -> None:
    h = EpHarness()
    h.add(svc("manual", selector=False))
    manual = {"apiVersion": "v1", "kind": "Endpoints",
              "metadata": {"name": "manual", "namespace": NS},
              "subsets": [{"addresses": [{"ip": "192.0.2.1"}]}]}
    h.add(manual)
    await h.ctrl.sync(f"{NS}/manual")
    assert not h.client.actions
    # Endpoints whose Service is gone are deleted (what the start-up check queues).
    orphan = copy.deepcopy(manual)
    orphan["metadata"]["name"] = "orphan"
    h.client.seed(f"/api/v1/namespaces/{NS}/endpoints", orphan)
    h.add(orphan)
    h.ctrl.check_leftover_endpoints()
    assert len(h.ctrl.queue) == 2
    await h.ctrl.sync(f"{NS}/orphan")
    assert [a.name for a in h.client.by_verb("delete", "endpoints")] == ["orphan"]


# -- EndpointSlices -----------------------------------------------------------------------------
def test_pod_to_endpoint_conditions() -> None:
    s = svc()
    node = NODES["n1"]
    assert pod_to_endpoint(pod("a"), node, s, "IPv4") == {
        "addresses": ["10.0.0.1"], "conditions": {"ready": True, "serving": True,
                                                  "terminating": False},
        "targetRef": {"kind": "Pod", "namespace": NS, "name": "a", "uid": "a-uid"},
        "nodeName": "n1", "zone": "z1"}
    ep = pod_to_endpoint(pod("a", deleting=True), node, s, "IPv4")
    assert ep["conditions"] == {"ready": False, "serving": True, "terminating": True}
    ep = pod_to_endpoint(pod("a", deleting=True), node, svc(publish=True), "IPv4")
    assert ep["conditions"] == {"ready": True, "serving": True, "terminating": True}
    ep = pod_to_endpoint(pod("a", ready=False), node, s, "IPv4")
    assert ep["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert pod_to_endpoint(pod("a"), node, s, "IPv6")["addresses"] == []
    ep = pod_to_endpoint(pod("a", hostname="h", subdomain="web"), node, s, "IPv4")
    assert ep["hostname"] == "h"


def test_address_types() -> None:
    assert address_types_for_service(svc()) == ["IPv4"]
    assert address_types_for_service(svc(ipFamilies=["IPv6", "IPv4"])) == ["IPv6", "IPv4"]
    s = svc()
    del s["spec"]["ipFamilies"]
    assert address_types_for_service(s) == ["IPv4", "IPv6"]  # headless, not defaulted
    s["spec"]["clusterIP"] = "fd00::1"
    assert address_types_for_service(s) == ["IPv6"]


def test_slices_hold_at_most_100_endpoints() -> None:
    s = svc()
    pods = [pod(f"p{i:03d}", ip=f"10.0.{i // 250}.{i % 250 + 1}") for i in range(250)]
    plan, errors = reconcile_address_type(s, pods, [], "IPv4", NODES.get, 100)
    assert errors == [] and not plan.update and not plan.delete
    assert sorted(len(x["endpoints"]) for x in plan.create) == [50, 100, 100]
    for x in plan.create:
        assert x["metadata"]["generateName"] == "web-"
        assert x["metadata"]["labels"] == {LABEL_SERVICE_NAME: "web",
                                           LABEL_MANAGED_BY: CONTROLLER_NAME}
        assert x["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        assert x["addressType"] == "IPv4"


def test_missing_node_skips_the_pod_unless_published() -> None:
    pods = [pod("a"), pod("b", node="ghost", ip="10.0.0.2")]
    plan, errors = reconcile_address_type(svc(), pods, [], "IPv4", NODES.get, 100)
    assert [e["targetRef"]["name"] for e in plan.create[0]["endpoints"]] == ["a"]
    assert errors == [f"skipping Pod b for Service {NS}/web: Node ghost Not Found"]
    plan, errors = reconcile_address_type(svc(publish=True), pods, [], "IPv4", NODES.get, 100)
    assert sorted(e["targetRef"]["name"] for e in plan.create[0]["endpoints"]) == ["a", "b"]
    assert errors == []


def _as_existing(slices: list[Obj], s: Obj) -> list[Obj]:
    out = []
    for i, x in enumerate(slices):
        x = copy.deepcopy(x)
        x["metadata"]["name"] = f"web-{i}"
        x["metadata"]["uid"] = f"web-{i}-uid"
        x["metadata"]["resourceVersion"] = "5"
        out.append(x)
    return out


def test_reconcile_updates_in_place_and_keeps_the_placeholder() -> None:
    s = svc()
    pods = [pod("a"), pod("b", ip="10.0.0.2")]
    plan, _ = reconcile_address_type(s, pods, [], "IPv4", NODES.get, 100)
    existing = _as_existing(plan.create, s)
    # Same pods: nothing to do.
    plan, _ = reconcile_address_type(s, pods, existing, "IPv4", NODES.get, 100)
    assert (plan.create, plan.update, plan.delete) == ([], [], [])
    # One pod no longer ready: the slice is updated, not replaced.
    plan, _ = reconcile_address_type(s, [pod("a", ready=False), pods[1]], existing, "IPv4",
                                     NODES.get, 100)
    [upd] = plan.update
    assert upd["metadata"]["name"] == "web-0" and not plan.create and not plan.delete
    assert {e["targetRef"]["name"]: e["conditions"]["ready"] for e in upd["endpoints"]} == \
        {"a": False, "b": True}
    # No pods: the slice becomes the placeholder (an update of the slice to delete).
    plan, _ = reconcile_address_type(s, [], existing, "IPv4", NODES.get, 100)
    [upd] = plan.update
    assert upd["metadata"]["name"] == "web-0" and upd["endpoints"] == [] and not plan.delete
    assert upd["ports"] == []
    placeholder = _as_existing([upd], s)
    plan, _ = reconcile_address_type(s, [], placeholder, "IPv4", NODES.get, 100)
    assert (plan.create, plan.update, plan.delete) == ([], [], [])
    # A slice not owned by the Service (an older one of the same name) is deleted.
    foreign = copy.deepcopy(existing[0])
    foreign["metadata"]["ownerReferences"][0]["uid"] = "old-uid"
    plan, _ = reconcile_address_type(s, pods, [foreign], "IPv4", NODES.get, 100)
    assert [x["metadata"]["name"] for x in plan.delete] == ["web-0"] and len(plan.create) == 1


def test_tracker_detects_a_stale_cache() -> None:
    t = EndpointSliceTracker()
    es = {"metadata": {"name": "web-0", "namespace": NS, "uid": "u", "resourceVersion": "7",
                       "labels": {LABEL_SERVICE_NAME: "web"}}}
    assert t.should_sync(es)
    t.update(es)
    assert not t.should_sync(es)
    older = copy.deepcopy(es)
    older["metadata"]["resourceVersion"] = "6"
    assert t.stale_slices(NS, "web", [older])
    assert not t.stale_slices(NS, "web", [es])
    assert t.stale_slices(NS, "web", [])  # ours, not seen yet
    t.expect_deletion(es)
    assert t.stale_slices(NS, "web", [es]) and not t.stale_slices(NS, "web", [])
    assert t.handle_deletion(es)


class EsHarness:
    def __init__(self) -> None:
        self.client = FakeClient()
        self.recorder = FakeRecorder()
        factory = SharedInformerFactory(self.client)  # type: ignore[arg-type]
        self.ctrl = EndpointSliceController(self.client, factory, self.recorder)
        self.ctrl.node_informer.store.add(copy.deepcopy(NODES["n1"]))

    def observe(self) -> None:
        for o in self.client.stored("discovery.k8s.io", "endpointslices"):
            self.ctrl.es_informer.store.add(copy.deepcopy(o))


async def test_endpointslice_sync() -> None:
    h = EsHarness()
    h.ctrl.svc_informer.store.add(svc())
    h.ctrl.pod_informer.store.add(pod("a"))
    await h.ctrl.sync(f"{NS}/web")
    [create] = h.client.by_verb("create", "endpointslices")
    assert create.body["metadata"]["ownerReferences"] == [{
        "apiVersion": "v1", "kind": "Service", "name": "web", "uid": "web-uid",
        "controller": True, "blockOwnerDeletion": True}]
    # Before the informer has seen the slice, a sync must wait.
    h.ctrl.pod_informer.store.add(pod("b", ip="10.0.0.2"))
    try:
        await h.ctrl.sync(f"{NS}/web")
        raise AssertionError("expected a stale cache")
    except Exception as e:
        assert "out of date" in str(e)
    h.observe()
    await h.ctrl.sync(f"{NS}/web")
    [update] = h.client.by_verb("update", "endpointslices")
    assert sorted(e["targetRef"]["name"] for e in update.body["endpoints"]) == ["a", "b"]
    # Services without a selector get nothing.
    h.ctrl.svc_informer.store.add(svc("manual", selector=False))
    h.client.clear_actions()
    await h.ctrl.sync(f"{NS}/manual")
    assert not h.client.actions
