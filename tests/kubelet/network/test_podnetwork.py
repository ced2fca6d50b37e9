"""The node's pod network with the real CNI plugins (root): a bridge and a /24 of the
test's own, pods in pinned network namespaces, reached by TCP from the host and from each
other (only pod IPs on that bridge and addresses of this host), hostPorts through portmap,
and every trace gone after teardown / crash cleanup."""
from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import uuid
from typing import Any

import pytest

from pyk8s.kubelet.network.cni import CNIError, chain_name, find_plugin
from pyk8s.kubelet.network.namespaces import delete_pod_namespaces
from pyk8s.kubelet.network.podnetwork import NETWORK_NAME, PodNetwork, bridge_ports
from tests.conftest import needs, needs_root
from tests.kubelet.network.conftest import (NetEnv, ask, free_host_port, link_exists,
                                            rules_of, run)

pytestmark = [needs_root, needs(
    any(find_plugin(p, ["/usr/lib/cni", "/opt/cni/bin"]) is None
        for p in ("bridge", "host-local", "portmap")), "no CNI plugins installed")]


def pod(name: str, host_port: int = 0, container_port: int = 8080) -> dict[str, Any]:
    ports = [{"containerPort": container_port, "hostPort": host_port}] if host_port else []
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"containers": [{"name": "c", "ports": ports}]}}


def pod_addrs(netns: str, dev: str = "eth0") -> list[str]:
    info = json.loads(run("nsenter", f"--net={netns}", "ip", "-j", "addr", "show", "dev", dev))
    return [f"{a['local']}/{a['prefixlen']}" for i in info for a in i["addr_info"]
            if a["family"] in ("inet", "inet6") and a.get("scope") == "global"]


def veth_of(net: PodNetwork, sid: str) -> str:
    return net.results[sid].host_interfaces()[-1]


async def wait_gone(name: str, timeout: float = 5.0) -> bool:
    """A link removed with its netns goes asynchronously (the kernel's cleanup work)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while link_exists(name) and loop.time() < end:
        await asyncio.sleep(0.05)
    return not link_exists(name)


async def test_two_pods_reach_each_other_and_the_host(netenv: NetEnv) -> None:
    net = netenv.network()
    gw = str(netenv.subnet.network_address + 1)
    sa, na = await netenv.sandbox("a")
    sb, nb = await netenv.sandbox("b")
    ip_a = await net.setup(sa, na, pod("a"))
    ip_b = await net.setup(sb, nb, pod("b"))
    hosts = list(netenv.subnet.hosts())
    assert ip_a != ip_b and {ip_a, ip_b} <= {str(h) for h in hosts[1:]}   # .1: gateway
    assert pod_addrs(na) == [f"{ip_a}/24"]
    route = run("nsenter", f"--net={na}", "ip", "-4", "route", "show", "default")
    assert f"default via {gw} dev eth0" in route

    # The bridge: the gateway address, both veths enslaved; a host-local file per IP.
    assert f"inet {gw}/24" in run("ip", "-o", "-4", "addr", "show", "dev", netenv.bridge)
    assert bridge_ports(netenv.bridge) == sorted([veth_of(net, sa), veth_of(net, sb)])
    assert netenv.ip_file(ip_a).read_text().splitlines()[0] == sa
    assert netenv.ip_file(ip_b).is_file()
    assert sorted(net.attached()) == sorted([sa, sb])
    assert rules_of(NETWORK_NAME, sa)               # its masquerade chain

    netenv.listen(na, "A")
    netenv.listen(nb, "B")
    assert ask((ip_a, 8080)) == f"A {gw}"                          # host → pod
    assert ask((ip_b, 8080)) == f"B {gw}"
    assert ask((ip_a, 8080), nb) == f"A {ip_b}"                # pod → pod, no NAT
    assert ask((ip_b, 8080), na) == f"B {ip_a}"


async def test_host_port(netenv: NetEnv) -> None:
    """portmap DNATs the hostPort on every local address: the bridge's gateway address,
    and 127.0.0.1 too (its `snat` sets route_localnet on the bridge and masquerades)."""
    net = netenv.network()
    gw = str(netenv.subnet.network_address + 1)
    hp = free_host_port()
    sa, na = await netenv.sandbox("a")
    sb, nb = await netenv.sandbox("b")
    ip_a = await net.setup(sa, na, pod("a", hp))
    await net.setup(sb, nb, pod("b"))
    netenv.listen(na, "A")
    dn = chain_name(NETWORK_NAME, sa, "DN-")
    rules = rules_of(NETWORK_NAME, sa)
    assert f"-N {dn}" in rules
    assert any(f"--dport {hp}" in r and f"--to-destination {ip_a}:8080" in r for r in rules)
    assert rules_of(NETWORK_NAME, sb) and not any("DN-" in r for r in rules_of(NETWORK_NAME, sb))

    assert ask((gw, hp)) == f"A {gw}"                # host → a local address:hostPort
    assert run("sysctl", "-n", f"net.ipv4.conf.{netenv.bridge}.route_localnet").strip() == "1"
    assert ask(("127.0.0.1", hp)) == f"A {gw}"       # localhost works, masqueraded
    assert ask((gw, hp), nb) == f"A {gw}"        # another pod → node:hostPort
    assert ask((gw, hp), na) == f"A {gw}"        # hairpin: the pod to itself

    await net.teardown(sa, na)
    assert rules_of(NETWORK_NAME, sa) == []
    with pytest.raises(OSError):                     # nothing listens on the host there
        ask((gw, hp), timeout=1)


async def test_teardown_releases_everything(netenv: NetEnv) -> None:
    net = netenv.network()
    sa, na = await netenv.sandbox("a")
    sb, nb = await netenv.sandbox("b")
    ip_a = await net.setup(sa, na, pod("a", 0))
    ip_b = await net.setup(sb, nb, pod("b"))
    veth_a = veth_of(net, sa)
    assert link_exists(veth_a) and netenv.ip_file(ip_a).exists()

    await net.teardown(sa, na)
    assert not netenv.ip_file(ip_a).exists() and not link_exists(veth_a)
    assert net.cni is not None and net.cni.cached(sa) is None and net.attached() == [sb]
    assert rules_of(NETWORK_NAME, sa) == []
    links = run("nsenter", f"--net={na}", "ip", "-o", "link", "show").splitlines()
    assert len(links) == 1 and ": lo: " in links[0]                 # eth0 is gone
    await net.teardown(sa, na)                     # idempotent
    await net.teardown(sa, None)

    netenv.listen(nb, "B")
    assert ask((ip_b, 8080)) == f"B {netenv.subnet.network_address + 1}"    # b untouched
    # The netns reused for a new attachment (a restarted sandbox) gets an IP again.
    ip_a2 = await net.setup(sa, na, pod("a"))
    assert ip_a2 not in (ip_b,) and netenv.ip_file(ip_a2).exists()
    # setup of an attached sandbox replaces the attachment: still one IP, one veth.
    ip_a3 = await net.setup(sa, na, pod("a"))
    files = [p.name for p in (netenv.data / "ipam" / NETWORK_NAME).iterdir()
             if p.name[:1].isdigit()]
    assert sorted(files) == sorted([ip_a3, ip_b])
    assert len(bridge_ports(netenv.bridge) or []) == 2
    await net.teardown(sa, na)
    await net.teardown(sb, nb)
    assert bridge_ports(netenv.bridge) == []           # the bridge stays (cleanup_all)
    await net.cleanup_all()
    assert not link_exists(netenv.bridge)


async def test_teardown_with_netns_gone(netenv: NetEnv) -> None:
    """The pod's namespaces were deleted first (or lost): DEL with CNI_NETNS="" still
    releases the IP, the masquerade chain and the hostPort rules."""
    net = netenv.network()
    sa, na = await netenv.sandbox("a")
    ip_a = await net.setup(sa, na, pod("a", free_host_port()))
    veth = veth_of(net, sa)
    assert len(rules_of(NETWORK_NAME, sa)) > 4
    await delete_pod_namespaces(netenv.root, sa)
    assert await wait_gone(veth)                       # gone with the namespace
    await net.teardown(sa, na)
    assert not netenv.ip_file(ip_a).exists()
    assert rules_of(NETWORK_NAME, sa) == []
    assert net.attached() == []


async def test_teardown_after_the_interface_vanished(netenv: NetEnv) -> None:
    """The netns is there but eth0 is not (a DEL that failed half-way, retried): the
    bridge plugin then skips its masquerade teardown; the driver removes the chain."""
    net = netenv.network()
    sa, na = await netenv.sandbox("a")
    ip_a = await net.setup(sa, na, pod("a"))
    run("nsenter", f"--net={na}", "ip", "link", "delete", "dev", "eth0")
    await net.teardown(sa, na)
    assert not netenv.ip_file(ip_a).exists()
    assert rules_of(NETWORK_NAME, sa) == []


async def test_cleanup_leftovers_after_a_crash(netenv: NetEnv) -> None:
    """An agent died with pods attached: a later one (no PodNetwork yet, pod CIDR unknown)
    cleans what the cache under the data dir names, then the unused bridge."""
    net = netenv.network()
    sa, na = await netenv.sandbox("a")
    sb, nb = await netenv.sandbox("b")
    ip_a = await net.setup(sa, na, pod("a", free_host_port()))
    ip_b = await net.setup(sb, nb, pod("b"))
    veths = [veth_of(net, sa), veth_of(net, sb)]
    del net                                                 # "crash"
    await delete_pod_namespaces(netenv.root, sb)            # one netns is gone already
    done = await PodNetwork.cleanup_leftovers(netenv.data)
    assert sorted(done) == sorted([sa, sb])
    assert not netenv.ip_file(ip_a).exists() and not netenv.ip_file(ip_b).exists()
    assert rules_of(NETWORK_NAME, sa) == [] and rules_of(NETWORK_NAME, sb) == []
    assert not any(link_exists(v) for v in veths[:1]) and await wait_gone(veths[1])
    assert not link_exists(netenv.bridge)
    assert list((netenv.data / "cache" / "results").iterdir()) == []
    assert await PodNetwork.cleanup_leftovers(netenv.data) == []       # nothing left


async def test_concurrent_setups(netenv: NetEnv) -> None:
    """Several pods at once on a bridge that does not exist yet: distinct IPs, all
    reachable."""
    net = netenv.network()
    sandboxes = [await netenv.sandbox(f"p{i}") for i in range(4)]
    ips = await asyncio.gather(*(net.setup(sid, ns, pod(f"p{i}"))
                                 for i, (sid, ns) in enumerate(sandboxes)))
    assert len(set(ips)) == 4
    assert all(ipaddress.ip_address(ip) in netenv.subnet for ip in ips)
    for i, ((_, ns), ip) in enumerate(zip(sandboxes, ips)):
        netenv.listen(ns, f"p{i}")
        assert ask((ip, 8080)).startswith(f"p{i} ")
    await asyncio.gather(*(net.teardown(sid, ns) for sid, ns in sandboxes))
    assert bridge_ports(netenv.bridge) == [] and net.attached() == []


async def test_new_pod_cidr_replaces_the_stale_bridge(netenv: NetEnv) -> None:
    """The node's pod CIDR changed (a new cluster): the unused bridge, with the old
    gateway address, is deleted so the bridge plugin can set the new one."""
    old, new = netenv.subnets
    n1 = netenv.network(old)
    s1, ns1 = await netenv.sandbox("a")
    await n1.setup(s1, ns1, pod("a"))
    await n1.teardown(s1, ns1)
    assert f"inet {old.network_address + 1}/24" in run("ip", "-o", "addr", "show", "dev",
                                                       netenv.bridge)
    n2 = netenv.network(new)
    s2, ns2 = await netenv.sandbox("b")
    ip = await n2.setup(s2, ns2, pod("b"))
    assert ipaddress.ip_address(ip) in new
    addrs = run("ip", "-o", "-4", "addr", "show", "dev", netenv.bridge)
    assert f"inet {new.network_address + 1}/24" in addrs and str(old.network_address) not in addrs


async def test_dual_stack(netenv: NetEnv) -> None:
    """IPv4 and IPv6 (a ULA /64 of the test's own); the IPv6 masquerade chain goes too."""
    h = uuid.uuid4().hex
    v6 = ipaddress.IPv6Network(f"fd{h[:2]}:{h[2:6]}:{h[6:10]}::/64")
    net = netenv.network(f"{netenv.subnet},{v6}")
    sa, na = await netenv.sandbox("a")
    ip = await net.setup(sa, na, pod("a"))
    ips = net.results[sa].ips
    assert ip == ips[0] and ipaddress.ip_address(ips[0]) in netenv.subnet
    assert len(ips) == 2 and ipaddress.ip_address(ips[1]) in v6
    assert sorted(pod_addrs(na)) == sorted([f"{ips[0]}/24", f"{ips[1]}/64"])
    assert rules_of(NETWORK_NAME, sa, "ip6tables")
    netenv.listen(na, "A", family=socket.AF_INET6)
    assert ask((ips[0], 8080)).startswith("A ")
    # Over IPv6 only once the new bridge's gateway address has passed duplicate address
    # detection (≈ 1.5 s after the first pod on it; the bridge plugin does not wait). Until
    # then the host may also pick another of its addresses as the source.
    loop = asyncio.get_running_loop()
    end = loop.time() + 6
    while True:
        try:
            tag, peer = ask((ips[1], 8080), timeout=0.3).split()
            break
        except OSError:
            if loop.time() > end:
                raise
    host_addrs = {a.split()[3].split("/")[0]
                  for a in run("ip", "-o", "-6", "addr", "show").splitlines()}
    assert tag == "A" and peer in host_addrs
    await net.teardown(sa, na)
    assert rules_of(NETWORK_NAME, sa, "ip6tables") == [] and rules_of(NETWORK_NAME, sa) == []
    assert not netenv.ip_file(ips[1]).exists()


async def test_failed_setup_leaves_nothing(netenv: NetEnv) -> None:
    """ADD failing in the first plugin (not a netns) or in the second (portmap rejects the
    mapping, after bridge attached the pod): what was added is removed again."""
    net = netenv.network()
    not_netns = netenv.data.parent / "not-a-netns"
    not_netns.write_text("")
    with pytest.raises(CNIError) as ei:
        await net.setup(uuid.uuid4().hex, str(not_netns), pod("x"))
    assert ei.value.plugin == "bridge"
    sa, na = await netenv.sandbox("a")
    bad = pod("a", free_host_port())
    bad["spec"]["containers"][0]["ports"][0]["protocol"] = "BOGUS"
    with pytest.raises(CNIError) as ei:
        await net.setup(sa, na, bad)
    assert ei.value.plugin == "portmap" and "bogus" in str(ei.value).lower()
    assert net.attached() == [] and sa not in net.results
    assert rules_of(NETWORK_NAME, sa) == []
    assert [p.name for p in (netenv.data / "ipam" / NETWORK_NAME).iterdir()
            if p.name[:1].isdigit()] == []
    assert bridge_ports(netenv.bridge) == []
    links = run("nsenter", f"--net={na}", "ip", "-o", "link", "show").splitlines()
    assert len(links) == 1
    # The same sandbox attaches fine afterwards.
    ip = await net.setup(sa, na, pod("a"))
    assert netenv.ip_file(ip).exists()
