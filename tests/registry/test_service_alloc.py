"""Service cluster IP and node port allocation: range arithmetic, the storage-backed
allocators, the Services store's create / update / delete transactions, the repair pass, the
`default/kubernetes` Service and the flags (in process, on memory storage)."""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import random
from typing import Any, AsyncIterator

import orjson
import pytest

from pyk8s.api import errors
from pyk8s.apiserver.app import APIServer, ServerConfig
from pyk8s.apiserver.kubernetesservice import (LEASE_PREFIX, KubernetesService, endpoints_for,
                                               unusable_reason)
from pyk8s.registry.service.allocator import (IP_PREFIX, PORT_PREFIX, ROOT, AlreadyAllocated,
                                              IPAllocator, NotInRange, Owner, PortAllocator,
                                              RangeFull)
from pyk8s.registry.service.ranges import (PortRange, RangeError, ServiceIPRange,
                                           parse_port_range, parse_service_cidrs, pick)
from pyk8s.registry.store import DeleteOptions, ListOptions, Store
from pyk8s.storage.memory import MemoryStorage
from pyk8s.watch.cache import WatchCache

Obj = dict[str, Any]


# -- ranges (pure) -----------------------------------------------------------------------------
def test_ip_range_arithmetic() -> None:
    r = parse_service_cidrs("10.96.0.0/12")[0]
    assert (r.size, r.band, r.family, str(r)) == (2 ** 20 - 2, 256, "IPv4", "10.96.0.0/12")
    assert r.first() == "10.96.0.1" and r.value(9) == "10.96.0.10"
    assert r.offset("10.96.0.1") == 0 and r.offset("10.111.255.254") == 2 ** 20 - 3
    for outside in ("10.96.0.0", "10.111.255.255", "10.112.0.1", "1.2.3.4", "fd00::1", "x"):
        assert r.offset(outside) is None, outside
    small = ServiceIPRange(ipaddress.ip_network("10.0.0.0/24"))
    assert (small.size, small.band) == (254, 16)
    assert ServiceIPRange(ipaddress.ip_network("10.0.0.0/28")).band == 0
    assert ServiceIPRange(ipaddress.ip_network("10.0.0.1/32")).size == 0
    v6 = parse_service_cidrs("fd00::/108")[0]
    assert (v6.family, v6.size, v6.first()) == ("IPv6", 65535, "fd00::1")
    assert v6.offset("fd00::ffff") == 65534 and v6.offset("fd00::1:0") is None  # capped
    assert [str(x) for x in parse_service_cidrs("10.96.0.0/12, fd00::/112")] == [
        "10.96.0.0/12", "fd00::/112"]


@pytest.mark.parametrize("value, message", [
    ("10.0.0.0/8", "specified --service-cluster-ip-range is too large; for 32-bit addresses, "
                   "the mask must be >= 12"),
    ("fd00::/64", "specified --service-cluster-ip-range is too large; for 128-bit addresses, "
                  "the mask must be >= 108"),
    ("", "--service-cluster-ip-range must contain at least one valid cidr"),
    ("10.0.0.0/24,fd00::/112,10.1.0.0/24",
     "--service-cluster-ip-range must not contain more than two entries"),
    ("10.0.0.0/24,10.1.0.0/24", "--service-cluster-ip-range[0] and "
                                "--service-cluster-ip-range[1] must be of different IP family"),
    ("10.0.0.1", "service IP family '10.0.0.1' must have a valid CIDR (e.g. 10.96.0.0/12): "
                 "invalid CIDR address: 10.0.0.1"),
])
def test_bad_service_ranges(value: str, message: str) -> None:
    with pytest.raises(RangeError) as e:
        parse_service_cidrs(value)
    assert str(e.value) == message


def test_port_ranges() -> None:
    p = parse_port_range("30000-32767")
    assert (p.base, p.size, p.band, str(p)) == (30000, 2768, 86, "30000-32767")
    assert str(parse_port_range("30000+99")) == "30000-30099"
    assert str(parse_port_range(" 8080 ")) == "8080-8080"
    assert parse_port_range("20000-20009").band == 0
    assert p.offset(30000) == 0 and p.offset("32767") == 2767 and p.offset(32768) is None
    assert p.offset(80) is None and p.value(86) == "30086"
    for bad, msg in [("x", "unable to parse port range: x"),
                     ("1-2-3", "unable to parse port range: 1-2-3"),
                     ("30000-70000", "the port range cannot be greater than 65535: 30000-70000"),
                     ("200-100", "end port cannot be less than start port: 200-100"),
                     ("0-10", "the port range must start at 1 or above: 0-10"),
                     ("", "unable to parse port range: ")]:
        with pytest.raises(RangeError) as e:
            parse_port_range(bad)
        assert str(e.value) == msg


def test_pick_prefers_the_upper_band_then_the_lower_one() -> None:
    rng = random.Random(7)
    taken: set[int] = set()
    got = []
    for _ in range(90):
        off = pick(100, 10, lambda o: o in taken, rng)
        assert off is not None and off not in taken
        taken.add(off)
        got.append(off)
    assert all(o >= 10 for o in got)                     # the upper band first
    rest = [pick(100, 10, lambda o: o in taken, rng)]    # then the lower band
    assert rest[0] is not None and rest[0] < 10
    taken |= set(range(100))
    assert pick(100, 10, lambda o: o in taken, rng) is None
    assert pick(0, 0, lambda o: False, rng) is None
    assert pick(5, 0, lambda o: o != 3, rng) == 3        # no band: the whole range


# -- the storage-backed allocators --------------------------------------------------------------
@pytest.fixture
async def backing() -> AsyncIterator[tuple[MemoryStorage, WatchCache]]:
    storage = MemoryStorage()
    cache = WatchCache(storage)
    await cache.start()
    try:
        yield storage, cache
    finally:
        await cache.stop()


OWNER = Owner("default", "web", "uid-1")


async def test_allocator_keys_messages_and_release(
        backing: tuple[MemoryStorage, WatchCache]) -> None:
    storage, cache = backing
    ips = IPAllocator(parse_service_cidrs("10.96.0.0/24")[0], storage, cache)
    assert await ips.allocate("10.96.0.10", OWNER) == "10.96.0.10"
    rec = orjson.loads((await storage.get(IP_PREFIX + "10.96.0.10")).value)
    assert rec["spec"]["parentRef"] == {"group": "", "resource": "services",
                                        "namespace": "default", "name": "web", "uid": "uid-1"}
    with pytest.raises(AlreadyAllocated, match="^provided IP is already allocated$"):
        await ips.allocate("10.96.0.10", Owner("default", "other", "uid-2"))
    with pytest.raises(NotInRange) as e:
        await ips.allocate("10.97.0.1", OWNER)
    assert str(e.value) == ("the provided IP (10.97.0.1) is not in the valid range. The range "
                            "of valid IPs is 10.96.0.0/24")
    assert not await ips.release("10.96.0.10", Owner("default", "other", "uid-2"))
    assert await ips.release("10.96.0.10", OWNER)
    assert not await ips.release("10.96.0.10", OWNER)      # already free
    ports = PortAllocator(parse_port_range("30000-30002"), storage, cache)
    got = {await ports.allocate_next(OWNER) for _ in range(3)}
    assert got == {"30000", "30001", "30002"}
    with pytest.raises(RangeFull, match="^range is full$"):
        await ports.allocate_next(OWNER)
    with pytest.raises(NotInRange) as e2:
        await ports.allocate(80, OWNER)
    assert str(e2.value) == ("provided port is not in the valid range. The range of valid ports "
                             "is 30000-30002")
    await cache.consistent_rev()
    with pytest.raises(AlreadyAllocated, match="^provided port is already allocated$"):
        await ports.allocate(30001, OWNER, dry_run=True)   # dry run: in-use ports checked
    assert await ips.allocate("10.96.0.10", OWNER, dry_run=True) == "10.96.0.10"
    assert IP_PREFIX + "10.96.0.10" not in cache.resource(ROOT).objects


async def test_allocate_next_skips_values_the_cache_has_not_seen(
        backing: tuple[MemoryStorage, WatchCache]) -> None:
    """Another API server took values this one's cache does not know yet: KeyExists only
    moves on to another value."""
    storage, cache = backing
    ips = IPAllocator(ServiceIPRange(ipaddress.ip_network("10.0.0.0/29")), storage, cache)
    for i in range(1, 6):   # 5 of the 6 usable addresses, straight into storage
        await storage.create(IP_PREFIX + f"10.0.0.{i}", b"{}")
    assert await ips.allocate_next(OWNER) == "10.0.0.6"
    with pytest.raises(RangeFull):
        await ips.allocate_next(OWNER)


async def test_concurrent_allocations_are_unique(
        backing: tuple[MemoryStorage, WatchCache]) -> None:
    storage, cache = backing
    a = IPAllocator(ServiceIPRange(ipaddress.ip_network("10.0.0.0/26")), storage, cache)
    b = IPAllocator(ServiceIPRange(ipaddress.ip_network("10.0.0.0/26")), storage, cache)
    got = await asyncio.gather(*[(a if i % 2 else b).allocate_next(OWNER) for i in range(62)])
    assert len(set(got)) == 62


# -- the Services store, in an API server on memory storage ----------------------------------
@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    s = APIServer(MemoryStorage(), ServerConfig(
        compaction_interval=0, advertise_address="192.0.2.10",
        server_address="127.0.0.1:6443", service_repair_interval=0))
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def services(s: APIServer) -> Store:
    info = s.catalogue.lookup("", "v1", "services")
    assert info is not None
    return s.store(info)


def svc(name: str, **spec: Any) -> Obj:
    spec.setdefault("ports", [{"port": 80}])
    return {"metadata": {"name": name}, "spec": spec}


async def keys(s: APIServer) -> set[str]:
    kvs, _ = await s.storage.list(ROOT)
    return {kv.key for kv in kvs}


async def create(s: APIServer, name: str, **spec: Any) -> Obj:
    obj, _ = await services(s).create("default", svc(name, **spec))
    return obj


async def invalid(s: APIServer, name: str, **spec: Any) -> str:
    with pytest.raises(errors.Invalid) as e:
        await create(s, name, **spec)
    assert e.value.code == 422
    return e.value.message


async def test_types_get_what_they_need(server: APIServer) -> None:
    s = server
    base = await keys(s)
    cip = await create(s, "cip")
    ip = cip["spec"]["clusterIP"]
    assert cip["spec"]["clusterIPs"] == [ip] and ipaddress.ip_address(ip) in \
        ipaddress.ip_network("10.96.0.0/12")
    assert int(ipaddress.ip_address(ip)) - int(ipaddress.ip_address("10.96.0.0")) > 256, \
        "dynamic IPs come from the upper band"
    assert cip["spec"]["ipFamilies"] == ["IPv4"]
    np = await create(s, "np", type="NodePort",
                      ports=[{"port": 53, "name": "t"}, {"port": 53, "name": "u",
                                                         "protocol": "UDP"},
                             {"port": 80, "name": "h"}])
    p = [x["nodePort"] for x in np["spec"]["ports"]]
    assert p[0] == p[1] != p[2] and all(30086 <= x <= 32767 for x in p), p
    lb = await create(s, "lb", type="LoadBalancer", externalTrafficPolicy="Local")
    assert lb["spec"]["ports"][0]["nodePort"] and lb["spec"]["healthCheckNodePort"]
    assert "status" not in lb or not (lb["status"].get("loadBalancer") or {}).get("ingress")
    lb2 = await create(s, "lb2", type="LoadBalancer", allocateLoadBalancerNodePorts=False)
    assert "nodePort" not in lb2["spec"]["ports"][0] and lb2["spec"]["clusterIP"]
    headless = await create(s, "headless", clusterIP="None", selector={"a": "b"})
    assert headless["spec"]["clusterIPs"] == ["None"]
    assert headless["spec"]["ipFamilies"] == ["IPv4"]
    bare = await create(s, "bare", clusterIP="None")   # headless without selector
    assert (bare["spec"]["ipFamilyPolicy"], bare["spec"]["ipFamilies"]) == (
        "RequireDualStack", ["IPv4", "IPv6"])
    ext = await create(s, "ext", type="ExternalName", externalName="example.com", ports=[])
    assert "clusterIP" not in ext["spec"] and "ipFamilies" not in ext["spec"]
    want = {IP_PREFIX + x["spec"]["clusterIP"] for x in (cip, np, lb, lb2)} | {
        PORT_PREFIX + str(n) for n in {*p, lb["spec"]["ports"][0]["nodePort"],
                                       lb["spec"]["healthCheckNodePort"]}}
    assert await keys(s) - base == want
    await s.cache.consistent_rev()
    for plural in ("services", "endpoints", "configmaps"):      # never listed as objects
        info = s.catalogue.lookup("", "v1", plural)
        assert info is not None
        listed = await s.store(info).list(None, ListOptions())
        assert not any(o["metadata"]["name"].startswith(("10.", "3")) for o in listed.items)


async def test_requested_values_and_their_errors(server: APIServer) -> None:
    s = server
    a = await create(s, "a", clusterIP="10.96.0.50", type="NodePort",
                     ports=[{"port": 80, "nodePort": 30080}])
    assert a["spec"]["clusterIPs"] == ["10.96.0.50"]
    assert await invalid(s, "b", clusterIP="1.2.3.4") == (
        'Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"1.2.3.4"}: failed '
        "to allocate IP 1.2.3.4: the provided IP (1.2.3.4) is not in the valid range. The "
        "range of valid IPs is 10.96.0.0/12")
    assert await invalid(s, "b", clusterIP="10.96.0.50") == (
        'Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.50"}: '
        "failed to allocate IP 10.96.0.50: provided IP is already allocated")
    assert await invalid(s, "b", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]) == (
        'Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port '
        "is already allocated")
    assert await invalid(s, "b", type="NodePort", ports=[{"port": 80, "nodePort": 80}]) == (
        'Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port is '
        "not in the valid range. The range of valid ports is 30000-32767")
    assert await invalid(s, "b", clusterIP="fd00::1") == (
        'Service "b" is invalid: spec.clusterIPs[0]: Invalid value: []string{"fd00::1"}: IPv6 '
        "is not configured on this cluster")
    assert await invalid(s, "b", ipFamilyPolicy="RequireDualStack") == (
        'Service "b" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this '
        "cluster is not configured for dual-stack services")
    assert await invalid(s, "b", ipFamilies=["IPv6"]) == (
        'Service "b" is invalid: spec.ipFamilies[0]: Invalid value: "IPv6": not configured on '
        "this cluster")
    # A failed create keeps nothing: its cluster IP went back (the port check came second).
    with pytest.raises(errors.Invalid):
        await create(s, "c", clusterIP="10.96.0.51", type="NodePort",
                     ports=[{"port": 80, "nodePort": 30080}])
    assert (await create(s, "c", clusterIP="10.96.0.51"))["spec"]["clusterIP"] == "10.96.0.51"
    # AlreadyExists after allocation: the values go back too.
    with pytest.raises(errors.AlreadyExists):
        await create(s, "c", clusterIP="10.96.0.52", type="NodePort",
                     ports=[{"port": 80, "nodePort": 30081}])
    assert IP_PREFIX + "10.96.0.52" not in await keys(s)
    assert PORT_PREFIX + "30081" not in await keys(s)


async def test_dry_run_keeps_nothing(server: APIServer) -> None:
    s = server
    before = await keys(s)
    obj, _ = await services(s).create("default", svc("d", type="NodePort"), dry_run=True)
    assert obj["spec"]["clusterIP"] == "10.96.0.0"      # upstream's dry-run placeholders
    assert obj["spec"]["ports"][0]["nodePort"] == 32769
    obj, _ = await services(s).create("default", svc("d", clusterIP="10.96.0.77"), dry_run=True)
    assert obj["spec"]["clusterIP"] == "10.96.0.77"
    with pytest.raises(errors.Invalid):
        await services(s).create("default", svc("d", clusterIP="1.2.3.4"), dry_run=True)
    assert await keys(s) == before
    await create(s, "e", type="ExternalName", externalName="x.example.com", ports=[])

    def to_np(o: Obj) -> Obj:
        o["spec"].update(type="NodePort", ports=[{"port": 80}])
        o["spec"].pop("externalName")
        return o
    obj, _, _ = await services(s).update("default", "e", to_np, dry_run=True)
    assert obj["spec"]["clusterIP"] == "10.96.0.0"
    assert await keys(s) == before


async def test_updates_move_allocations(server: APIServer) -> None:
    s = server
    store = services(s)
    a = await create(s, "a", type="NodePort", ports=[{"port": 80, "name": "h"},
                                                     {"port": 443, "name": "s"}])
    ip = a["spec"]["clusterIP"]
    n80, n443 = (p["nodePort"] for p in a["spec"]["ports"])

    # A PUT without the allocated values keeps them (patchAllocatedValues).
    def put(o: Obj) -> Obj:
        o["spec"].pop("clusterIP")
        o["spec"].pop("clusterIPs")
        o["spec"].pop("ipFamilies")
        for p in o["spec"]["ports"]:
            p.pop("nodePort")
        return o
    same, _, _ = await store.update("default", "a", put)
    assert same["spec"]["clusterIP"] == ip and same["metadata"]["resourceVersion"] == \
        a["metadata"]["resourceVersion"]
    assert [p["nodePort"] for p in same["spec"]["ports"]] == [n80, n443]

    # Dropping a port gives its node port back; a new port gets one.
    def swap(o: Obj) -> Obj:
        o["spec"]["ports"] = [o["spec"]["ports"][0], {"port": 8080, "name": "alt"}]
        return o
    b, _, _ = await store.update("default", "a", swap)
    n8080 = b["spec"]["ports"][1]["nodePort"]
    assert PORT_PREFIX + str(n443) not in await keys(s)
    assert PORT_PREFIX + str(n8080) in await keys(s)

    # NodePort → ClusterIP: the node ports go (the client only changed the type).
    def to_cluster_ip(o: Obj) -> Obj:
        o["spec"]["type"] = "ClusterIP"
        return o
    c, _, _ = await store.update("default", "a", to_cluster_ip)
    assert all("nodePort" not in p for p in c["spec"]["ports"])
    assert "externalTrafficPolicy" not in c["spec"]
    assert not any(k.startswith(PORT_PREFIX) for k in await keys(s))
    assert (await create(s, "reuse", type="NodePort",
                         ports=[{"port": 80, "nodePort": n80}]))["spec"]["ports"][0][
        "nodePort"] == n80

    # ClusterIP → ExternalName frees the IP; ExternalName → ClusterIP allocates one.
    def to_external(o: Obj) -> Obj:
        o["spec"].update(type="ExternalName", externalName="example.com")
        return o
    d, _, _ = await store.update("default", "a", to_external)
    assert "clusterIP" not in d["spec"] and "ipFamilies" not in d["spec"]
    assert IP_PREFIX + ip not in await keys(s)
    assert (await create(s, "takes-ip", clusterIP=ip))["spec"]["clusterIP"] == ip

    def back(o: Obj) -> Obj:
        o["spec"]["type"] = "ClusterIP"
        o["spec"].pop("externalName")
        return o
    e, _, _ = await store.update("default", "a", back)
    assert e["spec"]["clusterIP"] not in ("", ip) and e["spec"]["ipFamilies"] == ["IPv4"]
    assert IP_PREFIX + e["spec"]["clusterIP"] in await keys(s)

    # ClusterIP → LoadBalancer with externalTrafficPolicy Local: node port + health check.
    def to_lb(o: Obj) -> Obj:
        o["spec"].update(type="LoadBalancer", externalTrafficPolicy="Local")
        return o
    f, _, _ = await store.update("default", "a", to_lb)
    hc = f["spec"]["healthCheckNodePort"]
    assert PORT_PREFIX + str(hc) in await keys(s)

    def to_cluster(o: Obj) -> Obj:
        o["spec"]["externalTrafficPolicy"] = "Cluster"
        return o
    g, _, _ = await store.update("default", "a", to_cluster)
    assert "healthCheckNodePort" not in g["spec"]
    assert PORT_PREFIX + str(hc) not in await keys(s)

    # An update that fails validation keeps what it allocated for nothing.
    before = await keys(s)

    def bad(o: Obj) -> Obj:
        o["spec"]["ports"].append({"port": 9090, "name": "Bad_Name"})
        return o
    with pytest.raises(errors.Invalid):
        await store.update("default", "a", bad)
    assert await keys(s) == before


async def test_removal_frees_everything(server: APIServer) -> None:
    s = server
    store = services(s)
    base = await keys(s)
    await create(s, "a", clusterIP="10.96.0.60", type="LoadBalancer",
                 externalTrafficPolicy="Local", ports=[{"port": 80, "nodePort": 30500}])
    await store.delete("default", "a", DeleteOptions())
    assert await keys(s) == base
    # With a finalizer the delete only marks it; the update clearing the finalizer removes
    # it from storage, and that frees its values.
    obj = svc("f", clusterIP="10.96.0.60", type="NodePort",
              ports=[{"port": 80, "nodePort": 30500}])
    obj["metadata"]["finalizers"] = ["example.com/hold"]
    await store.create("default", obj)
    _, pending = await store.delete("default", "f", DeleteOptions())
    assert pending and IP_PREFIX + "10.96.0.60" in await keys(s)

    def clear(o: Obj) -> Obj:
        o["metadata"]["finalizers"] = []
        return o
    await store.update("default", "f", clear)
    with pytest.raises(errors.NotFound):
        await store.get("default", "f")
    assert await keys(s) == base
    assert (await create(s, "again", clusterIP="10.96.0.60"))["spec"]["clusterIP"] == \
        "10.96.0.60"


async def test_repair(server: APIServer) -> None:
    s = server
    a = await create(s, "a", type="NodePort")
    ip, port = a["spec"]["clusterIP"], str(a["spec"]["ports"][0]["nodePort"])
    # Lost keys (say, written by an older pyk8s) are recorded again.
    await s.storage.delete(IP_PREFIX + ip)
    await s.storage.delete(PORT_PREFIX + port)
    # A leaked key: its Service is gone; a young one may belong to a create in flight.
    leak = s.service_allocators.ips
    await leak.allocate("10.96.0.99", Owner("default", "gone", "uid-x"))
    s.service_repair.min_age = 3600
    report = await s.service_repair.run_once()
    assert set(report.recorded) == {IP_PREFIX + ip, PORT_PREFIX + port}
    assert report.released == [] and IP_PREFIX + "10.96.0.99" in await keys(s)
    s.service_repair.min_age = 0
    report = await s.service_repair.run_once()
    assert report.released == [IP_PREFIX + "10.96.0.99"] and report.recorded == []
    # A key naming another owner than the Service holding the value is given to the holder,
    # so deleting the holder frees it.
    kv = await s.storage.get(IP_PREFIX + ip)
    await s.storage.guaranteed_update(kv.key, lambda _kv: leak.encode_record(
        ip, Owner("default", "old", "uid-old")))
    assert (await s.service_repair.run_once()).reowned == [IP_PREFIX + ip]
    await services(s).delete("default", "a", DeleteOptions())
    assert IP_PREFIX + ip not in await keys(s)


async def test_ipv6_single_stack() -> None:
    s = APIServer(MemoryStorage(), ServerConfig(
        compaction_interval=0, service_cluster_ip_range="fd00:10::/108",
        service_node_port_range="20000-20099", service_repair_interval=0))
    await s.start()
    try:
        k = await services(s).get("default", "kubernetes")
        assert k["spec"]["clusterIP"] == "fd00:10::1"
        obj = await create(s, "six", type="NodePort")
        assert obj["spec"]["ipFamilies"] == ["IPv6"]
        assert ipaddress.ip_address(obj["spec"]["clusterIP"]) in \
            ipaddress.ip_network("fd00:10::/108")
        assert 20000 <= obj["spec"]["ports"][0]["nodePort"] <= 20099
    finally:
        await s.stop()


# -- the kubernetes Service --------------------------------------------------------------------
async def test_kubernetes_service_and_endpoints(server: APIServer) -> None:
    s = server
    k = await services(s).get("default", "kubernetes")
    assert k["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    assert k["spec"]["clusterIP"] == "10.96.0.1" and "selector" not in k["spec"]
    assert k["spec"]["ports"] == [{"name": "https", "protocol": "TCP", "port": 443,
                                   "targetPort": 6443}]
    info = s.catalogue.lookup("", "v1", "endpoints")
    assert info is not None
    ep = await s.store(info).get("default", "kubernetes")
    assert ep["metadata"]["labels"] == {"endpointslice.kubernetes.io/skip-mirror": "true"}
    assert ep["subsets"] == [{"addresses": [{"ip": "192.0.2.10"}],
                              "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
    info = s.catalogue.lookup("discovery.k8s.io", "v1", "endpointslices")
    assert info is not None
    es = await s.store(info).get("default", "kubernetes")
    assert es["metadata"]["labels"] == {"kubernetes.io/service-name": "kubernetes"}
    assert es["addressType"] == "IPv4"
    assert es["endpoints"] == [{"addresses": ["192.0.2.10"], "conditions": {"ready": True}}]
    assert es["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]
    # Deleted or changed by a user: the next round puts it back.
    await services(s).delete("default", "kubernetes", DeleteOptions())

    assert s.kubernetes_service is not None
    await s.kubernetes_service.sync_once()
    assert (await services(s).get("default", "kubernetes"))["spec"]["clusterIP"] == "10.96.0.1"

    def to_np(o: Obj) -> Obj:
        o["spec"]["type"] = "NodePort"
        return o
    await services(s).update("default", "kubernetes", to_np)
    await s.kubernetes_service.sync_once()
    k = await services(s).get("default", "kubernetes")
    assert k["spec"]["type"] == "ClusterIP" and "nodePort" not in k["spec"]["ports"][0]
    rv = k["metadata"]["resourceVersion"]
    await s.kubernetes_service.sync_once()      # nothing to do: nothing written
    assert (await services(s).get("default", "kubernetes"))["metadata"]["resourceVersion"] == rv


async def test_several_api_servers_do_not_fight(server: APIServer) -> None:
    s = server
    other = KubernetesService(s, "10.96.0.1", "192.0.2.11", 6443)
    third = KubernetesService(s, "10.96.0.1", "192.0.2.12", 7443)
    info = s.catalogue.lookup("", "v1", "endpoints")
    assert info is not None
    assert s.kubernetes_service is not None
    for ks in (other, third, s.kubernetes_service, other, third):
        await ks.sync_once()
    ep = await s.store(info).get("default", "kubernetes")
    assert ep["subsets"] == [
        {"addresses": [{"ip": "192.0.2.10"}, {"ip": "192.0.2.11"}],
         "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
        {"addresses": [{"ip": "192.0.2.12"}],
         "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}]}]
    rv = ep["metadata"]["resourceVersion"]
    k = await services(s).get("default", "kubernetes")
    for x in (third, other, s.kubernetes_service):
        await x.sync_once()
    assert (await s.store(info).get("default", "kubernetes"))["metadata"][
        "resourceVersion"] == rv
    assert (await services(s).get("default", "kubernetes"))["metadata"]["resourceVersion"] == \
        k["metadata"]["resourceVersion"]
    # A server that stops cleanly leaves; one that stops renewing expires.
    await other.stop()
    kv = await s.storage.get(third.lease_key)
    rec = orjson.loads(kv.value)
    rec["renewTime"] -= 60
    await s.storage.guaranteed_update(third.lease_key, lambda _kv: orjson.dumps(rec))
    await s.kubernetes_service.sync_once()
    kvs, _ = await s.storage.list(LEASE_PREFIX)
    assert [kv.key for kv in kvs] == [LEASE_PREFIX + "192.0.2.10/6443"]
    ep = await s.store(info).get("default", "kubernetes")
    assert ep["subsets"][0]["addresses"] == [{"ip": "192.0.2.10"}]


def test_endpoint_rules() -> None:
    assert unusable_reason("127.0.0.1") == "may not be in the loopback range (127.0.0.0/8, " \
                                           "::1/128)"
    assert unusable_reason("0.0.0.0") == "may not be unspecified (0.0.0.0)"
    assert unusable_reason("169.254.1.1") is not None and unusable_reason("::1") is not None
    assert unusable_reason("192.0.2.10") is None and unusable_reason("10.0.0.1") is None
    primary, ep, es = endpoints_for([("10.0.0.2", 7443), ("10.0.0.1", 6443),
                                     ("10.0.0.3", 7443)])
    assert primary == 7443 and [a["ip"] for a in ep["subsets"][1]["addresses"]] == [
        "10.0.0.2", "10.0.0.3"]
    assert [e["addresses"] for e in es["endpoints"]] == [["10.0.0.2"], ["10.0.0.3"]]
    assert endpoints_for([])[0] is None


async def test_loopback_advertise_address_is_not_published() -> None:
    s = APIServer(MemoryStorage(), ServerConfig(
        compaction_interval=0, advertise_address="127.0.0.1", service_repair_interval=0))
    await s.start()
    try:
        assert (await services(s).get("default", "kubernetes"))["spec"]["clusterIP"] == \
            "10.96.0.1"
        info = s.catalogue.lookup("", "v1", "endpoints")
        assert info is not None
        with pytest.raises(errors.NotFound):
            await s.store(info).get("default", "kubernetes")
        kvs, _ = await s.storage.list(LEASE_PREFIX)
        assert kvs == []
    finally:
        await s.stop()


# -- flags ---------------------------------------------------------------------------------------
def test_flags() -> None:
    from pyk8s.cli import main as cli

    def parser(command: str) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser()
        if command == "up":
            cli._add_server_args(p, up=True)
            cli._add_controller_args(p, service_range=False)
        elif command == "server":
            cli._add_server_args(p)
        else:
            cli._add_controller_args(p)
        return p
    a = parser("server").parse_args([])
    assert (a.service_cluster_ip_range, a.service_node_port_range, a.advertise_address) == (
        "10.96.0.0/12", "30000-32767", "")
    a = parser("up").parse_args(["--service-cluster-ip-range", "10.77.1.0/24",
                                 "--service-node-port-range", "20000+100"])
    assert a.service_node_port_range == "20000-20100"
    assert cli.controller_options(a).service_cluster_ip_range == "10.77.1.0/24"
    assert cli.controller_options(parser("up").parse_args([])).service_cluster_ip_range == ""
    assert parser("cm").parse_args([]).service_cluster_ip_range == ""
    for argv in (["--service-cluster-ip-range", "10.0.0.0/8"],
                 ["--service-cluster-ip-range", "nonsense"],
                 ["--service-node-port-range", "3-1"],
                 ["--advertise-address", "not-an-ip"]):
        for command in ("server", "up"):
            with pytest.raises(SystemExit):
                parser(command).parse_args(argv)
    assert cli.default_advertise_address("192.0.2.7") == "192.0.2.7"
    assert not ipaddress.ip_address(cli.default_advertise_address("0.0.0.0")).is_unspecified


def test_port_range_type_is_kept() -> None:
    assert isinstance(parse_port_range("1-2"), PortRange)
