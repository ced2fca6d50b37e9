"""The node's pod network without root: its conflist, hostPort mappings, readiness, and
PodNetwork's bookkeeping driving fake bridge / host-local / portmap plugins."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pyk8s.kubelet.network.cni import CNIError, CNINetwork
from pyk8s.kubelet.network.podnetwork import (NETWORK_NOT_READY, NetworkNotReady, PodNetwork,
                                              bridge_ports, choose_cni_version,
                                              default_conflist, network_status, port_mappings)
from tests.kubelet.network.conftest import Fakes

# -- default_conflist ----------------------------------------------------------------------


def test_default_conflist_ipv4() -> None:
    c = default_conflist("10.244.3.0/24", "cni0", "/data/ipam")
    assert c["cniVersion"] == "1.0.0" and c["name"] == "pyk8s"
    br, pm = c["plugins"]
    assert br == {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True,
                  "hairpinMode": True,
                  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.3.0/24"}]],
                           "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/data/ipam"}}
    assert pm == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
    CNINetwork(c)                                              # a valid conflist


def test_default_conflist_dual_stack_options() -> None:
    c = default_conflist("fd00:10:244:3::/64, 10.244.3.7/24", "br-x", mtu=1400,
                         cni_version="0.4.0", name="other")
    assert c["cniVersion"] == "0.4.0" and c["name"] == "other"
    br = c["plugins"][0]
    # IPv4 first, host bits dropped; one route per family; no dataDir: host-local's own.
    assert br["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}],
                                    [{"subnet": "fd00:10:244:3::/64"}]]
    assert br["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert "dataDir" not in br["ipam"] and br["mtu"] == 1400
    assert default_conflist(["10.1.0.0/16", "fd00::/64"])["plugins"][0]["ipam"]["ranges"] == [
        [{"subnet": "10.1.0.0/16"}], [{"subnet": "fd00::/64"}]]
    assert "mtu" not in default_conflist("10.1.0.0/16")["plugins"][0]


def test_default_conflist_under_the_overlay() -> None:
    """With the VXLAN overlay: its MTU, and no masquerade by the bridge plugin (the overlay
    masquerades only what leaves the cluster CIDR)."""
    br = default_conflist("10.42.3.0/24", "cni0", mtu=1450, ip_masq=False)["plugins"][0]
    assert br["ipMasq"] is False and br["mtu"] == 1450
    net = PodNetwork("10.42.3.0/24", "cni0", mtu=1450, ip_masq=False)
    assert net.conflist()["plugins"][0]["ipMasq"] is False


@pytest.mark.parametrize("bridge", ["", "a" * 16, "a/b", " cni0", "cni0 ", "c ni", "a:b",
                                    ".", "..", "a\tb"])
def test_default_conflist_rejects_bridge_names(bridge: str) -> None:
    with pytest.raises(ValueError, match="bridge name"):
        default_conflist("10.1.0.0/16", bridge)


@pytest.mark.parametrize("cidr", ["", " , ", "10.1.0.0/33", "nonsense", "10.1.0.0/16,x"])
def test_default_conflist_rejects_cidrs(cidr: str) -> None:
    with pytest.raises(ValueError):
        default_conflist(cidr, "cni0")
    with pytest.raises(ValueError):
        PodNetwork(cidr, "cni0")


def test_default_conflist_accepts_limits() -> None:
    assert default_conflist("10.1.0.0/16", "a" * 15)["plugins"][0]["bridge"] == "a" * 15
    assert default_conflist("10.1.0.0/16", "br-0.1_x")["plugins"][0]["bridge"] == "br-0.1_x"


# -- port_mappings ---------------------------------------------------------------------------


def _pod(*containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [{"name": f"c{i}", "ports": ports}
                                    for i, ports in enumerate(containers)]}}


def test_port_mappings() -> None:
    pod = _pod([{"containerPort": 80},                                  # no hostPort
                {"containerPort": 443, "hostPort": 8443},
                {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"},
                {"containerPort": 9, "hostPort": 0},
                {"containerPort": 7, "hostPort": 7007, "protocol": "SCTP",
                 "hostIP": "127.0.0.1"}],
               [{"containerPort": 443, "hostPort": 8443, "protocol": "TCP"},  # duplicate
                {"containerPort": "x", "hostPort": 1},                      # malformed
                {"hostPort": 2},
                {"containerPort": 8080, "hostPort": "8081", "name": "web"}])
    assert port_mappings(pod) == [
        {"hostPort": 8443, "containerPort": 443, "protocol": "tcp", "hostIP": ""},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": ""},
        {"hostPort": 7007, "containerPort": 7, "protocol": "sctp", "hostIP": "127.0.0.1"},
        {"hostPort": 8081, "containerPort": 8080, "protocol": "tcp", "hostIP": ""}]
    assert port_mappings({}) == [] and port_mappings({"spec": {"containers": None}}) == []
    assert port_mappings(_pod([{"containerPort": 80}])) == []
    # Same port, both protocols: two mappings.
    assert [m["protocol"] for m in port_mappings(_pod(
        [{"containerPort": 53, "hostPort": 53}, {"containerPort": 53, "hostPort": 53,
                                                 "protocol": "UDP"}]))] == ["tcp", "udp"]


# -- readiness, PodNetwork with fake plugins ------------------------------------------------


# A network name of these tests' own: the driver removes the ipMasq chains of its
# containers from the real iptables (harmless: none ever exists for this name).
NET = "pk8fake"


def _net(fakes: Fakes, data: Path, cidr: str) -> PodNetwork:
    return PodNetwork(cidr, "pk8nfake", data, bin_dirs=[fakes.bin], name=NET)


def _fake_plugins(fakes: Fakes, versions: tuple[str, ...] = ("0.4.0", "1.0.0")) -> None:
    for name in ("bridge", "host-local", "portmap"):
        fakes.plugin(name, versions)


async def test_not_ready_without_plugins(fakes: Fakes, tmp_path: Path) -> None:
    assert network_status(None) == (False, NETWORK_NOT_READY)
    net = _net(fakes, tmp_path / "data", "10.7.0.0/24")
    assert net.status() == (False, NETWORK_NOT_READY) and not net.ready
    with pytest.raises(NetworkNotReady, match="cni plugin not initialized"):
        await net.setup("s1", "/x", _pod())
    _fake_plugins(fakes)
    assert network_status(net) == (True, "") and net.ready


async def test_choose_cni_version(fakes: Fakes) -> None:
    _fake_plugins(fakes)
    assert await choose_cni_version([fakes.bin]) == "1.0.0"
    fakes.plugin("portmap", ("0.3.1", "0.4.0"))
    assert await choose_cni_version([fakes.bin]) == "0.4.0"
    fakes.plugin("portmap", ("0.3.1",))
    with pytest.raises(CNIError, match="share no spec version"):
        await choose_cni_version([fakes.bin])


async def test_init_reports_version_mismatch(fakes: Fakes, tmp_path: Path) -> None:
    _fake_plugins(fakes)
    fakes.plugin("bridge", ("0.3.1",))
    net = _net(fakes, tmp_path / "data", "10.7.0.0/24")
    with pytest.raises(NetworkNotReady, match="share no spec version"):
        await net.init()
    ready, msg = net.status()
    assert not ready and "share no spec version" in msg
    fakes.plugin("bridge")                         # fixed: the next init succeeds
    assert (await net.init()).cni_version == "1.0.0" and net.status() == (True, "")


async def test_setup_teardown_bookkeeping(fakes: Fakes, tmp_path: Path) -> None:
    _fake_plugins(fakes, ("0.3.1", "0.4.0"))
    data = tmp_path / "data"
    net = _net(fakes, data, "10.7.0.0/24,fd00:7::/64")
    pod = _pod([{"containerPort": 80, "hostPort": 8080}])
    pod["metadata"] = {"name": "web", "namespace": "prod", "uid": "uid-9"}
    ip = await net.setup("sb1", "/netns/sb1", pod)
    assert ip == "10.7.0.2" and net.results["sb1"].ips == ["10.7.0.2", "fd00:7::2"]
    assert (data / "ipam").is_dir() and net.attached() == ["sb1"]
    calls = fakes.calls()
    assert [(c["type"], c["cmd"]) for c in calls] == [("bridge", "ADD"), ("portmap", "ADD")]
    br, pm = (c["conf"] for c in calls)
    assert br["cniVersion"] == "0.4.0" and br["bridge"] == "pk8nfake"
    assert br["ipam"]["dataDir"] == str(data / "ipam")
    assert pm["runtimeConfig"] == {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]}
    assert calls[0]["env"]["CNI_ARGS"] == (
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;"
        "K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-9")
    assert calls[0]["env"]["CNI_IFNAME"] == "eth0"

    # A second setup of the same sandbox detaches it first.
    fakes.clear()
    assert await net.setup("sb1", "/netns/sb1", pod) == "10.7.0.2"
    assert fakes.summary() == [("portmap", "DEL"), ("bridge", "DEL"), ("bridge", "ADD"),
                               ("portmap", "ADD")]

    # teardown by another object (an agent restart): from the cache alone.
    fakes.clear()
    other = _net(fakes, data, "10.7.0.0/24")
    await other.teardown("sb1", None)
    assert fakes.summary() == [("portmap", "DEL"), ("bridge", "DEL")]
    assert all(c["conf"]["cniVersion"] == "0.4.0" for c in fakes.calls())  # the cached conf
    assert other.attached() == [] and other.cni is None
    fakes.clear()
    await other.teardown("sb1", None)                 # unknown to both: nothing runs
    await net.teardown("sb1", "/netns/sb1")           # initialised: DEL anyway (idempotent)
    assert fakes.summary() == [("portmap", "DEL"), ("bridge", "DEL")]
    assert "sb1" not in net.results


async def test_setup_without_ip_is_undone(fakes: Fakes, tmp_path: Path) -> None:
    _fake_plugins(fakes)
    net = _net(fakes, tmp_path / "data", "10.7.0.0/24")
    cni = await net.init()
    cni.conflist["plugins"][0]["ipam"]["ranges"] = []         # the fake returns no IP
    with pytest.raises(CNIError, match="no IP address"):
        await net.setup("sb2", "/netns/sb2", _pod())
    assert fakes.summary()[-2:] == [("portmap", "DEL"), ("bridge", "DEL")]
    assert net.attached() == [] and "sb2" not in net.results


async def test_cleanup_leftovers_from_cache(fakes: Fakes, tmp_path: Path) -> None:
    _fake_plugins(fakes)
    data = tmp_path / "data"
    net = _net(fakes, data, "10.7.0.0/24")
    for sid in ("a", "b"):
        await net.setup(sid, f"/netns/{sid}", _pod())
    failing = json.loads((data / "cache" / "results" / f"{NET}-b-eth0").read_text())
    fakes.clear()
    # "b"'s DEL fails: reported, its entry kept for a later retry.
    (fakes.bin / "portmap").write_text("#!/bin/sh\necho 'iptables: busy' >&2\nexit 1\n")
    done = await PodNetwork.cleanup_leftovers(data, [fakes.bin], bridges=["pk8nnone"])
    assert done == []
    assert sorted(p.name for p in (data / "cache" / "results").iterdir()) == [
        f"{NET}-a-eth0", f"{NET}-b-eth0"]
    assert failing["containerId"] == "b"
    _fake_plugins(fakes)
    assert sorted(await PodNetwork.cleanup_leftovers(data, [fakes.bin])) == ["a", "b"]
    assert net.attached() == [] and bridge_ports("pk8nfake") is None
    assert await PodNetwork.cleanup_leftovers(tmp_path / "never-used", [fakes.bin]) == []
