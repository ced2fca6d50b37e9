"""The node IPAM controller (range allocator) against a seeded fake (no server): allocation
order, existing podCIDRs respected on start, release on delete and reuse, exhaustion,
dual stack, the service range excluded, flag validation with upstream's messages, patch
failures, and the API server's podCIDR immutability."""
from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from pyk8s.api.validation import validate
from pyk8s.client.events import FakeRecorder
from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.client.rest import Invalid, ServerError
from pyk8s.controllers.nodeipam import (CIDRRangeNoCIDRsRemaining, CIDRSet, NodeIPAMConfig,
                                        NodeIPAMController, parse_cidr)
from tests.conftest import ROOT

Obj = dict[str, Any]


def node(name: str, *cidrs: str) -> Obj:
    n: Obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}}
    if cidrs:
        n["spec"] = {"podCIDR": cidrs[0], "podCIDRs": list(cidrs)}
    return n


class Harness:
    def __init__(self, cluster_cidr: str = "10.42.0.0/16", client: FakeClient | None = None,
                 **flags: Any) -> None:
        self.client = client or FakeClient()
        self.recorder = FakeRecorder()
        self.c = NodeIPAMController(
            self.client, SharedInformerFactory(self.client),  # type: ignore[arg-type]
            self.recorder, NodeIPAMConfig.from_flags(cluster_cidr, **flags))

    def start(self) -> None:
        """What run() does once the informer has synced: the fake's nodes, then occupy."""
        for n in self.client.stored("", "nodes"):
            self.c.node_informer.store.add(n)
        self.c.occupy_existing()

    def add(self, n: Obj) -> Obj:
        obj = self.client.seed("/api/v1/nodes", n)
        self.c.node_informer.store.add(obj)
        return obj

    def observe(self) -> None:
        """What the watch would deliver: the fake's nodes into the informer's store."""
        for n in self.client.stored("", "nodes"):
            self.c.node_informer.store.add(n)

    async def delete(self, name: str) -> None:
        await self.client.delete(f"/api/v1/nodes/{name}")
        self.c.node_informer.store.delete(name)
        await self.c.sync(name)

    async def sync(self, *names: str) -> None:
        for name in names:
            await self.c.sync(name)
        self.observe()

    def cidrs(self, name: str) -> list[str] | None:
        for n in self.client.stored("", "nodes"):
            if n["metadata"]["name"] == name:
                return (n.get("spec") or {}).get("podCIDRs")
        return None

    def queued(self) -> list[str]:
        return list(self.c.queue._queue)


def test_cidrset_round_robin_and_indices() -> None:
    s = CIDRSet(parse_cidr("10.42.0.0/22"), 24)
    assert s.max_cidrs == 4
    assert [str(s.allocate_next()) for _ in range(3)] == [
        "10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24"]
    s.release(parse_cidr("10.42.0.0/24"))
    assert str(s.allocate_next()) == "10.42.3.0/24"     # from the last index on, as upstream
    assert str(s.allocate_next()) == "10.42.0.0/24"     # wrapped around
    with pytest.raises(CIDRRangeNoCIDRsRemaining, match="no remaining CIDRs left"):
        s.allocate_next()
    assert s.indices(parse_cidr("10.42.2.0/23")) == range(2, 4)
    assert s.indices(parse_cidr("10.42.1.128/25")) == range(1, 2)
    assert s.indices(parse_cidr("10.0.0.0/8")) == range(0, 4)   # covers the cluster CIDR
    with pytest.raises(ValueError, match="cidr 10.43.0.0/24 is out the range of cluster "
                                         "cidr 10.42.0.0/22"):
        s.indices(parse_cidr("10.43.0.0/24"))
    with pytest.raises(ValueError, match="out the range"):
        s.indices(parse_cidr("fd00::/64"))
    v6 = CIDRSet(parse_cidr("fd00:10:42::/56"), 64)
    assert str(v6.allocate_next()) == "fd00:10:42::/64"
    assert str(v6.allocate_next()) == "fd00:10:42:1::/64"


async def test_allocation_order_and_the_patch() -> None:
    h = Harness()
    h.start()
    for name in ("a", "b", "c"):
        h.add(node(name))
    await h.sync("a", "b", "c")
    assert [h.cidrs(n) for n in "abc"] == [["10.42.0.0/24"], ["10.42.1.0/24"],
                                           ["10.42.2.0/24"]]
    patches = h.client.by_verb("patch", "nodes")
    assert [(p.name, p.body) for p in patches] == [
        ("a", {"spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]}}),
        ("b", {"spec": {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"]}}),
        ("c", {"spec": {"podCIDR": "10.42.2.0/24", "podCIDRs": ["10.42.2.0/24"]}})]
    stored = next(n for n in h.client.stored("", "nodes") if n["metadata"]["name"] == "a")
    assert stored["spec"]["podCIDR"] == "10.42.0.0/24"
    # Synced again (status updates, resyncs): nothing more to do.
    h.client.clear_actions()
    await h.sync("a", "b", "c")
    assert h.client.actions == []
    assert h.recorder.events == []


async def test_stale_informer_never_gets_a_second_cidr() -> None:
    h = Harness()
    h.start()
    h.add(node("a"))
    await h.c.sync("a")          # patched; the informer still shows no podCIDR
    await h.c.sync("a")
    assert len(h.client.by_verb("patch", "nodes")) == 1
    h.observe()
    await h.c.sync("a")
    assert len(h.client.by_verb("patch", "nodes")) == 1
    assert h.c.sets[0].allocated == 1


async def test_existing_cidrs_respected_on_start_and_after_a_restart() -> None:
    client = FakeClient()
    client.seed("/api/v1/nodes", node("old-0", "10.42.0.0/24"))
    client.seed("/api/v1/nodes", node("old-2", "10.42.2.0/24"))
    client.seed("/api/v1/nodes", node("new-1"))
    client.seed("/api/v1/nodes", node("new-2"))
    h = Harness(client=client)
    h.start()
    assert sorted(h.queued()) == ["new-1", "new-2", "old-0", "old-2"]
    await h.sync("new-1", "new-2", "old-0", "old-2")
    assert h.cidrs("new-1") == ["10.42.1.0/24"] and h.cidrs("new-2") == ["10.42.3.0/24"]
    # A new controller manager (or a new leader) derives the same state from the Nodes.
    h2 = Harness(client=client)
    h2.start()
    assert h2.c.sets[0].used == {0, 1, 2, 3}
    h2.add(node("new-3"))
    await h2.sync("new-3")
    assert h2.cidrs("new-3") == ["10.42.4.0/24"]
    taken = [tuple(h2.cidrs(n["metadata"]["name"]) or ()) for n in client.stored("", "nodes")]
    assert len(set(taken)) == len(taken) == 5


async def test_release_on_delete_and_reuse() -> None:
    h = Harness("10.42.0.0/22")
    h.start()
    for name in ("a", "b", "c"):
        h.add(node(name))
    await h.sync("a", "b", "c")
    await h.delete("b")
    assert h.c.sets[0].used == {0, 2}
    h.add(node("d"))
    await h.sync("d")
    assert h.cidrs("d") == ["10.42.3.0/24"]          # round-robin: the next index first
    h.add(node("e"))
    await h.sync("e")
    assert h.cidrs("e") == ["10.42.1.0/24"]          # then the released one
    # A Node deleted and created again under its name: the old subnet goes back.
    await h.client.delete("/api/v1/nodes/e")
    h.add(node("e"))
    await h.sync("e")
    assert h.cidrs("e") == ["10.42.1.0/24"]
    assert h.c.sets[0].used == {0, 1, 2, 3}


async def test_exhaustion_records_cidr_not_available_and_waits_for_a_release() -> None:
    h = Harness("10.42.0.0/23")
    h.start()
    for name in ("a", "b", "c"):
        h.add(node(name))
    await h.sync("a", "b")
    with pytest.raises(RuntimeError, match="failed to allocate cidr from cluster cidr at "
                                           "idx:0: CIDR allocation failed; there are no "
                                           "remaining CIDRs left"):
        await h.c.sync("c")
    assert h.recorder.events == ["Normal CIDRNotAvailable Node c status is now: "
                                 "CIDRNotAvailable"]
    assert h.recorder.objects[0] == {"apiVersion": "v1", "kind": "Node", "name": "c",
                                     "uid": h.c.node_informer.store.get("c")["metadata"]["uid"]}
    assert h.cidrs("c") is None
    # No NetworkUnavailable condition: upstream's range allocator only records the event.
    assert [p.name for p in h.client.by_verb("patch")] == ["a", "b"]
    await h.delete("a")
    assert h.queued() == ["c"]                       # retried at once, not after back-off
    await h.sync("c")
    assert h.cidrs("c") == ["10.42.0.0/24"]


async def test_dual_stack() -> None:
    h = Harness("10.42.0.0/16,fd00:10:42::/56")
    assert h.c.config.node_mask_sizes == (24, 64)
    h.start()
    h.add(node("a"))
    h.add(node("b"))
    await h.sync("a", "b")
    assert h.cidrs("a") == ["10.42.0.0/24", "fd00:10:42::/64"]
    assert h.cidrs("b") == ["10.42.1.0/24", "fd00:10:42:1::/64"]
    assert h.client.by_verb("patch")[0].body["spec"]["podCIDR"] == "10.42.0.0/24"
    # IPv6 first: podCIDR is the IPv6 one; mask sizes per family.
    h6 = Harness("fd00:10:42::/56,10.42.0.0/16", node_cidr_mask_size_ipv4=26,
                 node_cidr_mask_size_ipv6=60)
    h6.start()
    h6.add(node("a"))
    await h6.sync("a")
    assert h6.cidrs("a") == ["fd00:10:42::/60", "10.42.0.0/26"]


async def test_dual_stack_exhaustion_gives_the_first_family_back() -> None:
    h = Harness("10.42.0.0/16,fd00:10:42::/63", node_cidr_mask_size_ipv6=64)
    h.start()
    for name in ("a", "b", "c"):
        h.add(node(name))
    await h.sync("a", "b")
    with pytest.raises(RuntimeError, match="at idx:1"):
        await h.c.sync("c")
    assert h.c.sets[0].used == {0, 1}


async def test_service_range_excluded() -> None:
    h = Harness("10.42.0.0/22", service_cluster_ip_range="10.42.1.0/24,fd00:43::/112")
    h.start()
    for name in ("a", "b", "c", "d"):
        h.add(node(name))
    await h.sync("a", "b", "c")
    assert [h.cidrs(n) for n in "abc"] == [["10.42.0.0/24"], ["10.42.2.0/24"],
                                           ["10.42.3.0/24"]]
    with pytest.raises(RuntimeError, match="no remaining CIDRs"):
        await h.c.sync("d")
    # A deleted node never frees a service subnet, even one it overlapped.
    h2 = Harness("10.42.0.0/22", service_cluster_ip_range="10.42.1.0/24")
    h2.add(node("x", "10.42.1.0/24"))
    h2.start()
    assert h2.recorder.events == ["Normal CIDRNotAvailable Node x status is now: "
                                  "CIDRNotAvailable"]
    await h2.delete("x")
    assert h2.c.sets[0].used == {1}
    # A service range outside the cluster CIDR changes nothing.
    h3 = Harness("10.42.0.0/16", service_cluster_ip_range="10.43.0.0/16")
    assert h3.c.sets[0].used == set()


async def test_out_of_range_and_colliding_cidrs_on_start() -> None:
    client = FakeClient()
    client.seed("/api/v1/nodes", node("outside", "10.99.0.0/24"))
    client.seed("/api/v1/nodes", node("first", "10.42.0.0/24"))
    client.seed("/api/v1/nodes", node("twin", "10.42.0.0/24"))
    client.seed("/api/v1/nodes", node("garbage", "not-a-cidr"))
    h = Harness("10.42.0.0/22", client=client)
    h.start()                                        # logs and events, no crash
    assert sorted(h.recorder.events) == sorted(
        f"Normal CIDRNotAvailable Node {n} status is now: CIDRNotAvailable"
        for n in ("outside", "twin", "garbage"))
    await h.sync("outside", "first", "twin", "garbage")
    assert len(h.recorder.events) == 3               # once per node, not on every sync
    assert h.client.by_verb("patch") == []           # a podCIDR is never changed
    assert h.c.sets[0].used == {0}
    await h.delete("first")
    assert h.c.sets[0].used == {0}                   # the twin still holds it
    await h.delete("twin")
    assert h.c.sets[0].used == set()


async def test_patch_failures() -> None:
    h = Harness()
    h.start()
    h.add(node("a"))
    # Ambiguous failures: the reservation is kept and the same subnet patched again.
    h.client.fail("patch", "nodes", ServerError(500, "InternalError", "boom"), times=3)
    with pytest.raises(ServerError):
        await h.c.sync("a")
    assert h.recorder.events == ["Normal CIDRAssignmentFailed Node a status is now: "
                                 "CIDRAssignmentFailed"]
    assert len(h.client.by_verb("patch")) == 3
    h.add(node("b"))
    await h.sync("b", "a")
    assert h.cidrs("a") == ["10.42.0.0/24"] and h.cidrs("b") == ["10.42.1.0/24"]
    # Refused for good: the subnet goes back.
    h.add(node("c"))
    h.client.fail("patch", "nodes", Invalid(422, "Invalid", "no"), times=1)
    with pytest.raises(Invalid):
        await h.c.sync("c")
    assert h.c.sets[0].used == {0, 1}
    await h.sync("c")
    assert h.cidrs("c") == ["10.42.3.0/24"]   # round-robin went on past the given-back one


async def test_a_cidr_set_by_someone_else_wins_over_a_reservation() -> None:
    h = Harness()
    h.start()
    h.add(node("a"))
    h.client.fail("patch", "nodes", ServerError(500, "InternalError", "boom"), times=3)
    with pytest.raises(ServerError):
        await h.c.sync("a")
    assert h.c.held["a"].cidrs == ["10.42.0.0/24"] and not h.c.held["a"].confirmed
    await h.client.patch("/api/v1/nodes/a", {"spec": {"podCIDR": "10.42.7.0/24",
                                                      "podCIDRs": ["10.42.7.0/24"]}})
    h.observe()
    await h.c.sync("a")
    assert h.c.sets[0].used == {7}
    assert h.c.held["a"].confirmed and len(h.client.by_verb("patch")) == 4


async def test_deleting_node_releases() -> None:
    h = Harness("10.42.0.0/23")
    h.start()
    h.add(node("a"))
    await h.sync("a")
    n = h.c.node_informer.store.get("a")
    h.c.node_informer.store.add({**n, "metadata": {**n["metadata"],
                                                   "deletionTimestamp": "2024-01-01T00:00:00Z"}})
    await h.c.sync("a")
    assert h.c.sets[0].used == set()


def test_flag_validation_upstream_messages() -> None:
    def err(cluster: str = "10.42.0.0/16", **kw: Any) -> str:
        with pytest.raises(ValueError) as e:
            NodeIPAMConfig.from_flags(cluster, **kw)
        return str(e.value)
    assert err(node_cidr_mask_size=8) == (
        "Controller: Invalid --cluster-cidr, mask size of cluster CIDR must be less than or "
        "equal to --node-cidr-mask-size configured for CIDR family")
    assert err("10.0.0.0/25") .startswith("Controller: Invalid --cluster-cidr")  # default /24
    assert err("") == "Controller: Must specify --cluster-cidr if --allocate-node-cidrs is set"
    assert err("10.42.0.0/16,nope") == "invalid CIDR[1]: <nil> (invalid CIDR address: nope)"
    assert err("10.42.0.0/16,10.43.0.0/16") == (
        "len of ClusterCIDRs==2 and they are not configured as dual stack (at least one "
        "from each IPFamily")
    assert err("10.42.0.0/16,fd00::/56,10.43.0.0/16") == (
        "length of clusterCIDRs is:3 more than max allowed of 2")
    assert err("10.42.0.0/16,fd00::/56", node_cidr_mask_size=24) == (
        "usage of --node-cidr-mask-size is not allowed with dual-stack clusters")
    assert err(node_cidr_mask_size=24, node_cidr_mask_size_ipv4=24).startswith(
        "usage of --node-cidr-mask-size-ipv4 and --node-cidr-mask-size-ipv6 is not allowed "
        "if --node-cidr-mask-size is set")
    assert err(node_cidr_mask_size_ipv6=64) == (
        "usage of --node-cidr-mask-size-ipv6 is not allowed for a single-stack IPv4 cluster")
    assert err("fd00::/56", node_cidr_mask_size_ipv4=24) == (
        "usage of --node-cidr-mask-size-ipv4 is not allowed for a single-stack IPv6 cluster")
    assert err("fd00::/48", node_cidr_mask_size=120) == (
        "New CIDR set failed; the node CIDR size is too big")
    assert err(node_cidr_mask_size=33).startswith("Controller: Invalid --node-cidr-mask-size")
    assert err(service_cluster_ip_range="10.43.0.0/16,fd00::/112,10.44.0.0/16") == (
        "--service-cluster-ip-range can not contain more than two entries")
    assert err(service_cluster_ip_range="10.43.0.0/16,10.44.0.0/16") == (
        "serviceCIDR and secondaryServiceCIDR are not dualstack (from different IPfamiles)")
    c = NodeIPAMConfig.from_flags("10.99.0.0/16", node_cidr_mask_size=26)
    assert c.node_mask_sizes == (26,)
    assert NodeIPAMConfig.from_flags("fd00::/48").node_mask_sizes == (64,)
    assert NodeIPAMConfig.from_flags("10.42.1.7/16").cluster_cidrs[0] == \
        parse_cidr("10.42.0.0/16")   # host bits masked off, as Go's ParseCIDR


def test_cli_flags_and_start_up_error() -> None:
    import argparse

    from pyk8s.cli.main import _add_controller_args, controller_options
    p = argparse.ArgumentParser()
    _add_controller_args(p)
    o = controller_options(p.parse_args([]))
    assert (o.allocate_node_cidrs, o.cluster_cidr, o.service_cluster_ip_range) == (
        True, "10.42.0.0/16", "")
    assert o.enabled("nodeipam") and o.node_ipam_config().node_mask_sizes == (24,)
    o = controller_options(p.parse_args([
        "--allocate-node-cidrs=false", "--cluster-cidr", "10.99.0.0/16,fd00:99::/56",
        "--node-cidr-mask-size-ipv4", "26", "--node-cidr-mask-size-ipv6", "72",
        "--service-cluster-ip-range", "10.99.255.0/24"]))
    assert not o.allocate_node_cidrs
    assert o.node_ipam_config().node_mask_sizes == (26, 72)
    r = subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "controller-manager",
                        "--kubeconfig", "/nonexistent", "--node-cidr-mask-size", "8"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert "mask size of cluster CIDR must be less than or equal to --node-cidr-mask-size" \
        in r.stderr, r.stderr


def test_api_server_keeps_pod_cidr_immutable() -> None:
    empty = node("n")
    set_ = node("n", "10.42.0.0/24")
    other = node("n", "10.42.1.0/24")
    assert validate("", "Node", set_, empty) == []            # "" → valid
    assert validate("", "Node", set_, set_) == []
    msgs = [c["message"] for c in validate("", "Node", other, set_)]
    assert msgs == ['Forbidden: node updates may not change podCIDR except from "" to valid']
    assert validate("", "Node", empty, set_)[0]["field"] == "spec.podCIDRs"
    only_old_field = {"metadata": {"name": "n"}, "spec": {"podCIDR": "10.42.1.0/24"}}
    assert validate("", "Node", only_old_field, set_) != []
    bad = validate("", "Node", node("n", "10.42.0.0/24", "10.43.0.0/24"))
    assert [c["message"] for c in bad] == [
        'Invalid value: []string{"10.42.0.0/24", "10.43.0.0/24"}: may specify no more than '
        'one CIDR for each IP family']
    bad = validate("", "Node", node("n", "10.42.0.1"))
    assert bad[0]["field"] == "spec.podCIDRs[0]" and "must be a valid CIDR value" in \
        bad[0]["message"]
    assert validate("", "Node", node("n", "10.42.0.0/24", "fd00::/64")) == []
