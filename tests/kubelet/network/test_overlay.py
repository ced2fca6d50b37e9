"""The VXLAN overlay (pyk8s/kubelet/network/overlay.py): names, rules and flannel's
annotations without root; with root, the device, its peers' routes / neighbours / FDB
entries, the chains, and their removal, in a network namespace of the test's own."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyk8s.kubelet.agent import check_node_ip
from pyk8s.kubelet.network import hostclaims
from pyk8s.kubelet.network.overlay import (BACKEND_DATA, BACKEND_TYPE, KUBE_SUBNET_MANAGER,
                                           PUBLIC_IP, Overlay, OverlayError, Peer, annotations,
                                           chain_prefix, default_vni, device_name,
                                           forward_rules, ipv4_cluster_cidr, masq_rules,
                                           node_peer, node_vtep, overlay_config)
from tests.conftest import ROOT, needs_root

MAC = "0a:58:0a:2a:01:01"


def _node(name: str = "n2", cidr: str | None = "10.42.1.0/24", **ann: str) -> dict[str, Any]:
    spec = {"podCIDR": cidr, "podCIDRs": [cidr]} if cidr else {}
    return {"metadata": {"name": name, "annotations": ann}, "spec": spec}


def _published(mac: str = MAC, ip: str = "192.0.2.12") -> dict[str, str]:
    return annotations(1, mac, ip)


# -- names -------------------------------------------------------------------------------------
def test_vni_device_and_chains_follow_the_cluster_cidr() -> None:
    assert default_vni("10.42.0.0/16") == 1 and default_vni("10.42.0.0/16,fd00::/56") == 1
    assert device_name(1) == "flannel.1" and chain_prefix(1) == "FLANNEL"
    other = default_vni("10.143.0.0/16")
    assert other == default_vni("10.143.0.0/16") and 2 <= other <= 9_999_999
    assert other != default_vni("10.144.0.0/16")
    assert len(device_name(other)) <= 15 and chain_prefix(other) == f"FLANNEL{other}"
    assert not chain_prefix(other).startswith("K")       # never the proxy's / netpol's


def test_cluster_cidr_must_have_ipv4() -> None:
    assert str(ipv4_cluster_cidr("fd00::/56, 10.9.0.0/16")) == "10.9.0.0/16"
    with pytest.raises(OverlayError, match="no IPv4"):
        ipv4_cluster_cidr("fd00::/56")
    with pytest.raises(OverlayError, match="not a CIDR"):
        ipv4_cluster_cidr("nonsense")


def test_config_refuses_bad_flags() -> None:
    with pytest.raises(OverlayError, match="--flannel-vni"):
        overlay_config("10.42.0.0/16", "127.0.0.1", vni=10_000_000)
    with pytest.raises(OverlayError, match="--flannel-port"):
        overlay_config("10.42.0.0/16", "127.0.0.1", port=70000)
    with pytest.raises(OverlayError, match="--flannel-iface nosuchif0: no such"):
        overlay_config("10.42.0.0/16", "127.0.0.1", iface="nosuchif0")


def test_loopback_node_uses_an_ordinary_mtu() -> None:
    c = overlay_config("10.42.0.0/16", "127.0.0.1")
    assert (c.iface, c.public_ip, c.loopback, c.mtu) == ("lo", "127.0.0.1", True, 1450)
    assert (c.vni, c.port, c.device) == (1, 8472, "flannel.1")


def test_one_node_per_vni_on_a_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostclaims, "CLAIMS_DIR", tmp_path)
    a = Overlay(overlay_config("10.42.0.0/16", "127.0.0.1"))
    b = Overlay(overlay_config("10.42.0.0/16", "127.0.0.1"))
    a.claim("/data/a")
    with pytest.raises(OverlayError, match=r"VXLAN network 1 \(device flannel.1\) is in use "
                       r"by another pyk8s node on this host \(/data/a .*--flannel-vni"):
        b.claim("/data/b")
    c = Overlay(overlay_config("10.42.0.0/16", "127.0.0.1", vni=7))
    c.claim("/data/b")
    a.release()
    b.claim("/data/b")
    assert sorted(hostclaims.claimed_names("vxlan", "/data/b")) == ["1", "7"]
    b.release()
    c.release()


def test_a_loopback_node_ip_is_refused_with_a_server_on_another_host() -> None:
    check_node_ip("127.0.0.1", "https://127.0.0.1:6443")          # all on this host
    check_node_ip("192.0.2.10", "https://192.0.2.1:6443")
    check_node_ip("127.0.0.1", "")                               # from a kubeconfig
    with pytest.raises(SystemExit, match=r"the node IP 127.0.0.1 is a loopback address, but "
                       r"the API server https://192.0.2.1:6443 is on another host.*--node-ip"):
        check_node_ip("127.0.0.1", "https://127.0.0.1:6443,https://192.0.2.1:6443")
    with pytest.raises(SystemExit, match="not an IP address"):
        check_node_ip("node-1", "https://127.0.0.1:6443")


# -- rules -------------------------------------------------------------------------------------
def test_masquerade_only_what_leaves_the_cluster_cidr() -> None:
    rules = [r.replace(' -m comment --comment "pyk8s overlay masq"', "")
             for r in masq_rules("FLANNEL-POSTRTG", "10.42.0.0/16", "10.42.1.0/24")]
    assert rules == [
        "-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -j RETURN",
        "-A FLANNEL-POSTRTG -s 10.42.0.0/16 -d 10.42.0.0/16 -j RETURN",
        "-A FLANNEL-POSTRTG -s 10.42.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE --random-fully",
        "-A FLANNEL-POSTRTG ! -s 10.42.0.0/16 -d 10.42.1.0/24 -j RETURN",
        "-A FLANNEL-POSTRTG ! -s 10.42.0.0/16 -d 10.42.0.0/16 -j MASQUERADE --random-fully"]
    assert [r.split(" -m comment")[0] for r in forward_rules("FLANNEL-FWD", "10.42.0.0/16")] \
        == ["-A FLANNEL-FWD -s 10.42.0.0/16", "-A FLANNEL-FWD -d 10.42.0.0/16"]


# -- flannel's annotations ---------------------------------------------------------------------
def test_annotations_are_flannels() -> None:
    a = annotations(1, MAC, "192.0.2.12")
    assert a == {BACKEND_TYPE: "vxlan", BACKEND_DATA: '{"VNI":1,"VtepMAC":"0a:58:0a:2a:01:01"}',
                 PUBLIC_IP: "192.0.2.12", KUBE_SUBNET_MANAGER: "true"}
    assert BACKEND_TYPE == "flannel.alpha.coreos.com/backend-type"


def test_node_peer_from_a_node() -> None:
    p = node_peer(_node(**_published(MAC.upper())))
    assert p == Peer("n2", p.pod_cidr, "192.0.2.12", MAC) and str(p.pod_cidr) == "10.42.1.0/24"
    assert p.gateway == "10.42.1.0"
    dual = _node(**_published())
    dual["spec"] = {"podCIDRs": ["fd00:1::/64", "10.42.7.0/24"]}
    assert str(node_peer(dual).pod_cidr) == "10.42.7.0/24"   # type: ignore[union-attr]


@pytest.mark.parametrize("node", [
    _node(),                                                   # no annotations yet
    _node(cidr=None, **_published()),                          # no pod CIDR yet
    _node(**{**_published(), BACKEND_TYPE: "host-gw"}),
    _node(**{**_published(), BACKEND_DATA: '{"VNI":1,"VtepMAC":"zz:00"}'}),
    _node(**{**_published(), BACKEND_DATA: "not json"}),
    _node(**{**_published(), PUBLIC_IP: "fd00::1"}),
])
def test_node_peer_needs_a_whole_vtep(node: dict[str, Any]) -> None:
    assert node_peer(node) is None


def test_a_node_being_deleted_is_no_peer() -> None:
    n = _node(**_published())
    n["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert node_peer(n) is None and node_vtep(n) == (MAC, "192.0.2.12")


# -- root: the device and its peers in a network namespace of the test's own -------------------
SCRIPT = """
import asyncio, ipaddress, json, sys
from pyk8s.kubelet.network.overlay import Overlay, Peer, overlay_config, remove_leftovers

def peer(name, cidr, ip, mac):
    return Peer(name, ipaddress.IPv4Network(cidr), ip, mac)

async def main():
    step = sys.argv[1]
    o = Overlay(overlay_config("10.77.0.0/16", "192.168.77.2"))
    o.claim(sys.argv[2])
    o.set_pod_cidr("10.77.1.0/24")
    if step == "leftovers":
        print(json.dumps(await remove_leftovers(sys.argv[2])))
        return
    mac = await o.setup(sys.argv[3] if len(sys.argv) > 3 else "")
    peers = [peer("n2", "10.77.2.0/24", "192.168.77.3", "0a:00:00:00:00:02"),
             peer("n3", "10.77.3.0/24", "192.168.77.4", "0a:00:00:00:00:03"),
             peer("same-host", "10.77.4.0/24", "192.168.77.2", "0a:00:00:00:00:04"),
             peer("overlapping", "10.77.1.0/24", "192.168.77.5", "0a:00:00:00:00:05")]
    if step == "two":
        await o.sync_peers(peers)
    elif step == "one":
        await o.sync_peers(peers[1:])        # n2 left; n3 moved to another host and MAC
        await o.sync_peers([peer("n3", "10.77.3.0/24", "192.168.77.6", "0a:00:00:00:00:33")])
    elif step == "cleanup":
        await o.cleanup()
    print(json.dumps({"mac": mac, "mtu": o.mtu, "device": o.config.device,
                      "chains": [o.config.chains.nat, o.config.chains.filter]}))
    o.release() if step != "crash" else None

asyncio.run(main())
"""


class Scratch:
    """A network namespace with an uplink 192.168.77.2/24 (MTU 1400; a veth whose peer
    stays in the namespace)."""

    def __init__(self, tmp: Path) -> None:
        self.name = f"pk8o{uuid.uuid4().hex[:6]}"
        self.claims = tmp / "claims"
        self.owner = str(tmp / "node")
        subprocess.run(["ip", "netns", "add", self.name], check=True)

    def set_up(self) -> None:
        for cmd in (["link", "set", "lo", "up"],
                    ["link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
                    ["link", "set", "eth0", "mtu", "1400", "up"], ["link", "set", "eth1", "up"],
                    ["addr", "add", "192.168.77.2/24", "dev", "eth0"]):
            subprocess.run(["ip", "-n", self.name, *cmd], check=True)

    def overlay(self, step: str, *args: str) -> Any:
        p = subprocess.run(["nsenter", f"--net=/run/netns/{self.name}", "--", sys.executable,
                            "-c", textwrap.dedent(SCRIPT), step, self.owner, *args],
                           capture_output=True, text=True, cwd=ROOT, timeout=60,
                           env={"PYK8S_CLAIMS_DIR": str(self.claims), "PATH": "/usr/sbin:"
                                "/usr/bin:/sbin:/bin"})
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout.strip().splitlines()[-1])

    def sh(self, *argv: str) -> str:
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.name}", "--", *argv],
                              capture_output=True, text=True, check=True).stdout

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Scratch]:
    s = Scratch(tmp_path)
    try:
        s.set_up()
        yield s
    finally:
        s.close()


@needs_root
def test_device_peers_and_cleanup(scratch: Scratch) -> None:
    out = scratch.overlay("two")
    dev = out["device"]
    assert out["mtu"] == 1350                                  # the uplink's − 50
    link = json.loads(scratch.sh("ip", "-j", "-d", "link", "show", "dev", dev))[0]
    data = link["linkinfo"]["info_data"]
    assert (data["id"], data["port"], data["local"], data["link"], data["learning"]) == \
        (int(dev.split(".")[1]), 8472, "192.168.77.2", "eth0", False)
    assert link["mtu"] == 1350 and link["address"] == out["mac"] and "UP" in link["flags"]
    assert "inet 10.77.1.0/32" in scratch.sh("ip", "-4", "addr", "show", "dev", dev)
    routes = scratch.sh("ip", "-4", "route", "show", "dev", dev)
    assert "10.77.2.0/24 via 10.77.2.0 onlink" in routes
    assert "10.77.3.0/24 via 10.77.3.0 onlink" in routes
    assert "10.77.4.0" not in routes and "10.77.1.0/24" not in routes   # same host, our own
    neigh = scratch.sh("ip", "neigh", "show", "dev", dev)
    assert "10.77.2.0 lladdr 0a:00:00:00:00:02 PERMANENT" in neigh
    fdb = scratch.sh("bridge", "fdb", "show", "dev", dev)
    assert "0a:00:00:00:00:02 dst 192.168.77.3 self permanent" in fdb
    save = scratch.sh("iptables-save")
    for chain in out["chains"]:
        assert f"-j {chain}" in save
    assert "! -s 10.77.0.0/16 -d 10.77.1.0/24" in save

    # a restart keeps the device (and its MAC); peers are reconciled to what is asked
    again = scratch.overlay("one")
    assert again["mac"] == out["mac"]
    routes = scratch.sh("ip", "-4", "route", "show", "dev", dev)
    assert "10.77.2.0" not in routes and "10.77.3.0/24 via 10.77.3.0 onlink" in routes
    neigh = scratch.sh("ip", "neigh", "show", "dev", dev)
    assert "10.77.2.0" not in neigh and "0a:00:00:00:00:33" in neigh
    fdb = scratch.sh("bridge", "fdb", "show", "dev", dev)
    assert "192.168.77.3" not in fdb and "192.168.77.4" not in fdb
    assert "0a:00:00:00:00:33 dst 192.168.77.6" in fdb

    scratch.overlay("cleanup")
    assert dev not in scratch.sh("ip", "link")
    assert "FLANNEL" not in scratch.sh("iptables-save")


@needs_root
def test_recreated_device_takes_the_advertised_mac_and_killall_removes_it(
        scratch: Scratch) -> None:
    out = scratch.overlay("crash", "0a:11:22:33:44:55")       # its claim file is left
    assert out["mac"] == "0a:11:22:33:44:55"
    assert scratch.overlay("leftovers") == [out["device"]]
    assert out["device"] not in scratch.sh("ip", "link")
    assert "FLANNEL" not in scratch.sh("iptables-save")
