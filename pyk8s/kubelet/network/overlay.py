"""The pod network between nodes: flannel's VXLAN backend, run by every node with the oci
runtime (k3s runs flannel inside its agent the same way). IPv4.

- The device: `flannel.<VNI>`, a VXLAN device (VNI 1, UDP 8472 by default, learning off,
  MTU = the uplink's − 50, the outer headers) bound to the uplink — the interface of the
  node IP, or `--flannel-iface` — with the node's podCIDR network address as its only
  address, /32 (flannel's 10.42.1.0/32 on flannel.1): the source of host → remote pod
  traffic, so that replies come back through the overlay.
- What the node publishes on its own Node, flannel's annotations:
  `flannel.alpha.coreos.com/backend-type: vxlan`, `…/backend-data: {"VNI":1,"VtepMAC":…}`,
  `…/public-ip` (the uplink's address) and `…/kube-subnet-manager: "true"`.
- For every other node (its spec.podCIDR and those annotations), as flannel's
  handleSubnetEvents:

      ip neigh replace <its network address> lladdr <VtepMAC> dev flannel.<VNI> nud permanent
      bridge fdb replace <VtepMAC> dev flannel.<VNI> dst <its public-ip> self permanent
      ip route replace <its podCIDR> via <its network address> dev flannel.<VNI> onlink

  kept equal to the Node objects (watched, with a full reconcile of what the device holds
  at start and every RESYNC_SECONDS): entries come as nodes appear, go as they leave, and
  a restarted agent rebuilds them (reusing the device and its MAC; a re-created device
  gets the MAC its Node advertises, as flannel does, so peers need not update). Nodes on
  this host (their public IP is one of ours: several nodes in one network namespace share
  its routing table) are not peers.
- NAT and forwarding (flannel's trafficmngr): only traffic leaving the cluster CIDR is
  masqueraded — pod → pod across hosts keeps the pod's source IP — and forwarding to and
  from the cluster CIDR is accepted:

      nat    POSTROUTING → <P>-POSTRTG:  -m mark --mark 0x4000/0x4000 -j RETURN  (kube-proxy's)
                                         -s CLUSTER -d CLUSTER -j RETURN
                                         -s CLUSTER ! -d 224.0.0.0/4 -j MASQUERADE --random-fully
                                         ! -s CLUSTER -d PODCIDR -j RETURN
                                         ! -s CLUSTER -d CLUSTER -j MASQUERADE --random-fully
      filter FORWARD → <P>-FWD:          -s CLUSTER -j ACCEPT;  -d CLUSTER -j ACCEPT

  (the CNI bridge plugin's own ipMasq is off: it would masquerade everything leaving the
  node's /24).

Several clusters may share a network namespace (tests, two clusters on one host): the VNI
defaults to 1 for the default cluster CIDR 10.42.0.0/16, else to one derived from the
cluster CIDR (the same on every node of a cluster); the device and the chains are named
after the VNI (`flannel.1`, FLANNEL-POSTRTG / FLANNEL-FWD; `flannel.<n>`,
FLANNEL<n>-POSTRTG / -FWD), and a node claims its VNI in its network namespace
(hostclaims.py; a second node with that VNI there — most likely a second node of the
cluster on the host — runs without the overlay: the kernel allows one VXLAN device per VNI
and port). A clean stop removes the device (and so its routes, neighbours and FDB entries)
and the chains; `pyk8s killall` removes what a killed node left (`remove_leftovers`).
"""
from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pyk8s.client.syncloop import wait_any
from pyk8s.kubelet.network import hostclaims

log = logging.getLogger("pyk8s.kubelet.overlay")
Obj = dict[str, Any]

ANNOTATION_PREFIX = "flannel.alpha.coreos.com/"
BACKEND_TYPE = ANNOTATION_PREFIX + "backend-type"
BACKEND_DATA = ANNOTATION_PREFIX + "backend-data"
PUBLIC_IP = ANNOTATION_PREFIX + "public-ip"
KUBE_SUBNET_MANAGER = ANNOTATION_PREFIX + "kube-subnet-manager"

DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"
DEFAULT_VNI = 1
DEFAULT_PORT = 8472
VXLAN_OVERHEAD = 50           # outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14)
LOOPBACK_UPLINK_MTU = 1500    # a node on loopback: the MTU of an ordinary link, not lo's
MAX_VNI = 9_999_999           # flannel.<VNI> must fit the kernel's 15 characters
KUBE_PROXY_MASQ_MARK = "0x4000/0x4000"
CLAIM_KIND = "vxlan"
RESYNC_SECONDS = 30.0
RETRY_SECONDS = 2.0


class OverlayError(Exception):
    """The overlay cannot be set up as configured (a message naming the flag to change)."""


# -- names -------------------------------------------------------------------------------------
def default_vni(cluster_cidr: str) -> int:
    """1 (flannel's) for the default cluster CIDR; for another one a VNI derived from it
    (2 … MAX_VNI), so that clusters sharing a host do not share a VNI while every node of
    one cluster picks the same."""
    net = ipv4_cluster_cidr(cluster_cidr)
    if str(net) == DEFAULT_CLUSTER_CIDR:
        return DEFAULT_VNI
    digest = int(hashlib.sha1(str(net).encode()).hexdigest()[:8], 16)
    return 2 + digest % (MAX_VNI - 1)


def device_name(vni: int) -> str:
    return f"flannel.{vni}"


def chain_prefix(vni: int) -> str:
    """FLANNEL (flannel's chains) for VNI 1, else FLANNEL<vni>: never the proxy's or the
    network policy's prefix (theirs start with K)."""
    return "FLANNEL" if vni == DEFAULT_VNI else f"FLANNEL{vni}"


def ipv4_cluster_cidr(cluster_cidr: str) -> ipaddress.IPv4Network:
    """The IPv4 CIDR of a (possibly dual-stack, comma-separated) --cluster-cidr."""
    for part in cluster_cidr.split(","):
        try:
            net = ipaddress.ip_network(part.strip(), strict=False)
        except ValueError:
            raise OverlayError(f"--cluster-cidr: {part.strip()!r} is not a CIDR") from None
        if isinstance(net, ipaddress.IPv4Network):
            return net
    raise OverlayError(f"--cluster-cidr {cluster_cidr!r} has no IPv4 CIDR (the VXLAN "
                       "overlay is IPv4)")


def ipv4_pod_cidr(pod_cidr: str) -> ipaddress.IPv4Network | None:
    for part in pod_cidr.split(","):
        try:
            net = ipaddress.ip_network(part.strip(), strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            return net
    return None


# -- rules -------------------------------------------------------------------------------------
def _comment(text: str) -> str:
    return f'-m comment --comment "{text}"'


def masq_rules(chain: str, cluster_cidr: str, pod_cidr: str) -> list[str]:
    """The nat chain's rules (iptables-restore lines): flannel's masquerade rules."""
    c, p, m = cluster_cidr, pod_cidr, _comment("pyk8s overlay masq")
    return [f"-A {chain} -m mark --mark {KUBE_PROXY_MASQ_MARK} {m} -j RETURN",
            f"-A {chain} -s {c} -d {c} {m} -j RETURN",
            f"-A {chain} -s {c} ! -d 224.0.0.0/4 {m} -j MASQUERADE --random-fully",
            f"-A {chain} ! -s {c} -d {p} {m} -j RETURN",
            f"-A {chain} ! -s {c} -d {c} {m} -j MASQUERADE --random-fully"]


def forward_rules(chain: str, cluster_cidr: str) -> list[str]:
    m = _comment("pyk8s overlay forward")
    return [f"-A {chain} -s {cluster_cidr} {m} -j ACCEPT",
            f"-A {chain} -d {cluster_cidr} {m} -j ACCEPT"]


@dataclass(frozen=True)
class Chains:
    prefix: str

    @property
    def nat(self) -> str:
        return f"{self.prefix}-POSTRTG"

    @property
    def filter(self) -> str:
        return f"{self.prefix}-FWD"

    def hooks(self) -> list[tuple[str, str, list[str]]]:
        """(table, built-in chain, rule argv) of the jumps into ours."""
        return [("nat", "POSTROUTING", ["-m", "comment", "--comment", "pyk8s overlay masq",
                                        "-j", self.nat]),
                ("filter", "FORWARD", ["-m", "comment", "--comment", "pyk8s overlay forward",
                                       "-j", self.filter])]


# -- peers -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Peer:
    """Another node's end of the overlay."""
    node: str
    pod_cidr: ipaddress.IPv4Network
    public_ip: str
    vtep_mac: str

    @property
    def gateway(self) -> str:
        """Its VTEP's address on the overlay: its pod CIDR's network address."""
        return str(self.pod_cidr.network_address)


def _normal_mac(mac: str) -> str:
    parts = mac.strip().lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and int(p, 16) >= 0 for p in parts):
        raise ValueError(mac)
    return ":".join(parts)


def node_vtep(node: Obj) -> tuple[str, str] | None:
    """(VtepMAC, public IP) a Node publishes (flannel's annotations), or None."""
    ann = (node.get("metadata") or {}).get("annotations") or {}
    if ann.get(BACKEND_TYPE) != "vxlan":
        return None
    try:
        mac = _normal_mac(str(json.loads(ann.get(BACKEND_DATA) or "{}").get("VtepMAC") or ""))
        ip = str(ipaddress.IPv4Address(str(ann.get(PUBLIC_IP) or "")))
    except (ValueError, AttributeError, TypeError):
        return None
    return mac, ip


def node_peer(node: Obj) -> Peer | None:
    """The overlay peer a Node describes (IPv4 podCIDR + flannel's annotations), or None
    while it lacks either, or once it is being deleted."""
    md = node.get("metadata") or {}
    if md.get("deletionTimestamp"):
        return None
    spec = node.get("spec") or {}
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    pod_cidr = ipv4_pod_cidr(",".join(cidrs))
    vtep = node_vtep(node)
    if pod_cidr is None or vtep is None:
        return None
    return Peer(str(md.get("name") or ""), pod_cidr, vtep[1], vtep[0])


def annotations(vni: int, mac: str, public_ip: str) -> dict[str, str]:
    """What a node publishes (flannel's kube subnet manager's annotations)."""
    return {BACKEND_TYPE: "vxlan",
            BACKEND_DATA: json.dumps({"VNI": vni, "VtepMAC": mac}, separators=(",", ":")),
            PUBLIC_IP: public_ip, KUBE_SUBNET_MANAGER: "true"}


# -- the uplink --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    name: str
    mtu: int
    loopback: bool
    addresses: tuple[str, ...]     # IPv4


def host_links() -> list[Link]:
    """This network namespace's links with their IPv4 addresses (`ip -j -4 addr`)."""
    out = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True,
                         timeout=10).stdout
    links = []
    for i in json.loads(out or "[]"):
        addrs = tuple(a["local"] for a in i.get("addr_info") or []
                      if a.get("family") == "inet" and a.get("local"))
        links.append(Link(str(i.get("ifname")), int(i.get("mtu") or 1500),
                          "LOOPBACK" in (i.get("flags") or []), addrs))
    return links


def default_route_link() -> str:
    """The interface of the default route, or ""."""
    out = subprocess.run(["ip", "-j", "-4", "route", "show", "default"], capture_output=True,
                         text=True, timeout=10).stdout
    routes = json.loads(out or "[]")
    return str(routes[0].get("dev") or "") if routes else ""


def interface_address(iface: str) -> str:
    """The first IPv4 address of `iface` ("" if none or no such link)."""
    for link in host_links():
        if link.name == iface:
            return link.addresses[0] if link.addresses else ""
    return ""


def choose_uplink(node_ip: str, iface: str = "") -> tuple[Link, str]:
    """The uplink and the public IP (the VTEP's outer address): `iface` (--flannel-iface)
    with the node IP if it is one of its addresses, else its first; without `iface`, the
    link holding the node IP, else the default route's with its first address."""
    links = {link.name: link for link in host_links()}
    if iface:
        link = links.get(iface)
        if link is None:
            raise OverlayError(f"--flannel-iface {iface}: no such interface")
        if not link.addresses:
            raise OverlayError(f"--flannel-iface {iface}: the interface has no IPv4 address")
        return link, node_ip if node_ip in link.addresses else link.addresses[0]
    for link in links.values():
        if node_ip in link.addresses:
            return link, node_ip
    default = links.get(default_route_link())
    if default is None or not default.addresses:
        raise OverlayError(f"the node IP {node_ip} is not an address of this host and there "
                           "is no default route: give the overlay's interface with "
                           "--flannel-iface")
    log.warning("the node IP %s is not an address of this host: the overlay uses %s (%s)",
                node_ip, default.name, default.addresses[0])
    return default, default.addresses[0]


@dataclass(frozen=True)
class OverlayConfig:
    cluster_cidr: str       # IPv4
    public_ip: str
    iface: str
    loopback: bool          # the uplink is loopback: a single-host cluster
    vni: int
    port: int
    mtu: int                # the device's, and the pods'

    @property
    def device(self) -> str:
        return device_name(self.vni)

    @property
    def chains(self) -> Chains:
        return Chains(chain_prefix(self.vni))


def overlay_config(cluster_cidr: str, node_ip: str, iface: str = "", vni: int | None = None,
                   port: int = DEFAULT_PORT) -> OverlayConfig:
    """The overlay of a node; OverlayError naming the flag to fix."""
    net = ipv4_cluster_cidr(cluster_cidr)
    vni = default_vni(str(net)) if vni is None else vni
    if not 1 <= vni <= MAX_VNI:
        raise OverlayError(f"--flannel-vni {vni}: must be 1 … {MAX_VNI} (the device name "
                           "flannel.<VNI> has at most 15 characters)")
    if not 1 <= port <= 65535:
        raise OverlayError(f"--flannel-port {port}: not a UDP port")
    link, public_ip = choose_uplink(node_ip, iface)
    uplink_mtu = LOOPBACK_UPLINK_MTU if link.loopback else link.mtu
    return OverlayConfig(str(net), public_ip, link.name, link.loopback, vni, port,
                         uplink_mtu - VXLAN_OVERHEAD)


def is_local_address(ip: str) -> bool:
    """Whether `ip` is an address of this network namespace (binding to it works)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


# -- commands ----------------------------------------------------------------------------------
async def _run(*argv: str, stdin: str | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 60)
    return proc.returncode or 0, out.decode(errors="replace")


async def _check(*argv: str, stdin: str | None = None) -> str:
    rc, out = await _run(*argv, stdin=stdin)
    if rc != 0:
        raise OverlayError(f"{' '.join(argv)}: {out.strip()[:1000]}")
    return out


async def _json(*argv: str) -> list[Obj]:
    rc, out = await _run(*argv)
    if rc != 0:
        return []
    try:
        return list(json.loads(out or "[]"))
    except ValueError:
        return []


async def _link(name: str) -> Obj | None:
    found = await _json("ip", "-j", "-d", "link", "show", "dev", name)
    return found[0] if found else None


def _incompatible(link: Obj, c: OverlayConfig) -> str:
    """Why an existing device does not fit `c` ("" if it does)."""
    info = link.get("linkinfo") or {}
    data = info.get("info_data") or {}
    want = {"kind": ("vxlan", info.get("info_kind")), "vni": (c.vni, data.get("id")),
            "port": (c.port, data.get("port")), "local": (c.public_ip, data.get("local")),
            "link": (c.iface, data.get("link")), "learning": (False, data.get("learning"))}
    return ", ".join(f"{k} {have} (want {w})" for k, (w, have) in want.items() if w != have)


async def delete_link(name: str) -> None:
    if await _link(name) is not None:
        rc, out = await _run("ip", "link", "delete", "dev", name)
        if rc != 0 and await _link(name) is not None:
            log.warning("deleting %s: %s", name, out.strip())


async def delete_chains(chains: Chains) -> None:
    """Remove the jumps into our chains and the chains."""
    if not shutil.which("iptables"):
        return
    for table, builtin, rule in chains.hooks():
        while (await _run("iptables", "-w", "-t", table, "-D", builtin, *rule))[0] == 0:
            pass
    for table, chain in (("nat", chains.nat), ("filter", chains.filter)):
        if (await _run("iptables", "-w", "-t", table, "-F", chain))[0] == 0:
            await _run("iptables", "-w", "-t", table, "-X", chain)


def _write_sysctl(name: str, value: str) -> None:
    p = Path("/proc/sys") / name.replace(".", "/")
    try:
        if p.read_text().strip() != value:
            p.write_text(value)
    except OSError as e:
        log.warning("cannot set %s=%s: %s", name, value, e)


# -- the overlay -------------------------------------------------------------------------------
@dataclass
class Overlay:
    """One node's overlay: claimed with the runtime (`claim`), set up once the node's pod
    CIDR is known (`set_pod_cidr`), run beside the kubelet with the node's client (`run`)."""
    config: OverlayConfig
    pod_cidr: ipaddress.IPv4Network | None = None
    mac: str = ""
    peers: dict[str, Peer] = field(default_factory=dict)   # node name → peer
    _claim: hostclaims.HostClaim | None = None
    _has_pod_cidr: asyncio.Event | None = None
    _dirty: asyncio.Event | None = None
    _warned: set[str] = field(default_factory=set)

    @property
    def mtu(self) -> int:
        return self.config.mtu

    # -- host claim ---------------------------------------------------------------------------
    def claim(self, owner: str) -> None:
        """Take the VNI on this host for `owner` (the node's data dir); OverlayError naming
        the flags if another node of this network namespace has it."""
        if self._claim is not None:
            return
        try:
            self._claim = hostclaims.claim(CLAIM_KIND, str(self.config.vni), owner)
        except hostclaims.ClaimedElsewhere as e:
            raise OverlayError(
                f"the VXLAN network {self.config.vni} (device {self.config.device}) is in use "
                f"by another pyk8s node on this host ({e}): give this cluster its own with "
                "--flannel-vni (the default derives from --cluster-cidr), or stop the other "
                "one") from None

    def release(self) -> None:
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    async def close(self) -> None:
        """The node stops cleanly (after `run`): remove the device and the chains — also
        what an earlier, killed run of this node left if this one stopped before setting
        up: with the VNI's claim they are ours — then give the claim up."""
        if self._claim is None:
            return
        try:
            await self.cleanup()
        except Exception:  # pragma: no cover - best effort on the way out
            log.exception("overlay: removing %s and its chains", self.config.device)
        self.release()

    def set_pod_cidr(self, pod_cidr: str) -> None:
        """The node's pod CIDR, claimed by the runtime: the device can come up."""
        net = ipv4_pod_cidr(pod_cidr)
        if net is None:
            log.error("overlay: pod CIDR %s has no IPv4 CIDR; the overlay stays down", pod_cidr)
            return
        if not net.subnet_of(ipaddress.IPv4Network(self.config.cluster_cidr)):
            log.error("overlay: the node's pod CIDR %s is outside --cluster-cidr %s: give "
                      "this node the cluster's --cluster-cidr (pods' traffic to other nodes "
                      "would be masqueraded)", net, self.config.cluster_cidr)
        self.pod_cidr = net
        self._event("_has_pod_cidr").set()

    def _event(self, name: str) -> asyncio.Event:
        ev = getattr(self, name)
        if ev is None:
            ev = asyncio.Event()
            setattr(self, name, ev)
        return ev

    # -- the device and the rules -------------------------------------------------------------
    async def setup(self, mac_hint: str = "") -> str:
        """Create (or keep, if it fits) the device, its /32 address, MTU, up; the NAT and
        forward chains. The device's MAC. Needs the pod CIDR."""
        assert self.pod_cidr is not None
        c = self.config
        _write_sysctl("net.ipv4.ip_forward", "1")
        link = await _link(c.device)
        if link is not None and (why := _incompatible(link, c)):
            log.warning("overlay: %s exists with another configuration (%s): re-creating it",
                        c.device, why)
            await _check("ip", "link", "delete", "dev", c.device)
            link = None
        if link is None:
            argv = ["ip", "link", "add", c.device]
            if mac_hint:
                argv += ["address", mac_hint]
            argv += ["mtu", str(c.mtu), "type", "vxlan", "id", str(c.vni), "local",
                     c.public_ip, "dev", c.iface, "dstport", str(c.port), "nolearning"]
            await _check(*argv)
            link = await _link(c.device)
            log.info("overlay: created %s (VNI %d, UDP %d, via %s %s, MTU %d)", c.device,
                     c.vni, c.port, c.iface, c.public_ip, c.mtu)
        elif int(link.get("mtu") or 0) != c.mtu:
            await _check("ip", "link", "set", "dev", c.device, "mtu", str(c.mtu))
        await self._ensure_address()
        await _check("ip", "link", "set", "dev", c.device, "up")
        self.mac = _normal_mac(str((link or {}).get("address") or ""))
        await self.ensure_chains()
        return self.mac

    async def _ensure_address(self) -> None:
        assert self.pod_cidr is not None
        dev = self.config.device
        want = f"{self.pod_cidr.network_address}/32"
        found = await _json("ip", "-j", "-4", "addr", "show", "dev", dev)
        have = [f"{a['local']}/{a['prefixlen']}" for i in found
                for a in i.get("addr_info") or [] if a.get("family") == "inet"]
        for a in have:
            if a != want:
                await _check("ip", "addr", "del", a, "dev", dev)
        if want not in have:
            await _check("ip", "addr", "add", want, "dev", dev)

    async def ensure_chains(self) -> None:
        """Our nat and filter chains (rewritten whole) and the jumps into them (appended,
        as flannel does: the network policy's and the proxy's go first)."""
        assert self.pod_cidr is not None
        ch, cidr = self.config.chains, self.config.cluster_cidr
        text = "\n".join(["*nat", f":{ch.nat} - [0:0]",
                          *masq_rules(ch.nat, cidr, str(self.pod_cidr)), "COMMIT",
                          "*filter", f":{ch.filter} - [0:0]",
                          *forward_rules(ch.filter, cidr), "COMMIT"]) + "\n"
        await _check("iptables-restore", "--noflush", "--wait", stdin=text)
        for table, builtin, rule in ch.hooks():
            if (await _run("iptables", "-w", "-t", table, "-C", builtin, *rule))[0] != 0:
                await _check("iptables", "-w", "-t", table, "-A", builtin, *rule)

    async def cleanup(self) -> None:
        """Remove the device (its routes, neighbours and FDB entries go with it) and our
        chains."""
        await delete_link(self.config.device)
        await delete_chains(self.config.chains)
        self.peers.clear()

    # -- peers ---------------------------------------------------------------------------------
    def _usable(self, peers: Iterable[Peer]) -> dict[str, Peer]:
        """The peers to route to: not this node's own pod CIDR, not on this host (their
        pod CIDR is routed to their bridge already), one per pod CIDR."""
        out: dict[str, Peer] = {}
        for p in sorted(peers, key=lambda p: p.node):
            if self.pod_cidr is not None and p.pod_cidr.overlaps(self.pod_cidr):
                continue
            if p.public_ip == self.config.public_ip or is_local_address(p.public_ip):
                continue
            if self.config.loopback:
                self._warn(p.node, f"overlay: node {p.node} is on another host "
                           f"({p.public_ip}) but this node's address {self.config.public_ip} "
                           "is loopback, which it cannot reach: start this node with "
                           "--node-ip <its address>")
                continue
            if ipaddress.IPv4Address(p.public_ip).is_loopback:
                self._warn(p.node, f"overlay: node {p.node} publishes the loopback address "
                           f"{p.public_ip}: its pods are not reachable from this host")
                continue
            if any(q.pod_cidr.overlaps(p.pod_cidr) for q in out.values()):
                continue
            out[p.node] = p
        return out

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.error("%s", message)

    async def sync_peers(self, peers: Iterable[Peer]) -> None:
        """Make the device's routes, neighbours and FDB entries those of `peers` (others,
        of nodes gone or changed, are removed)."""
        want = self._usable(peers)
        dev = self.config.device
        routes = await _json("ip", "-j", "-4", "route", "show", "dev", dev)
        neighs = await _json("ip", "-j", "-4", "neigh", "show", "dev", dev)
        fdb = await _json("bridge", "-j", "fdb", "show", "dev", dev)
        w_routes = {str(p.pod_cidr): p.gateway for p in want.values()}
        w_neigh = {p.gateway: p.vtep_mac for p in want.values()}
        w_fdb = {(p.vtep_mac, p.public_ip) for p in want.values()}
        ip_cmds: list[str] = []
        for r in routes:
            dst = str(r.get("dst") or "")
            if dst and (w_routes.get(dst) != r.get("gateway") or "onlink" not in
                        (r.get("flags") or [])):
                ip_cmds.append(f"route del {dst} dev {dev}")
        for n in neighs:
            dst, mac = str(n.get("dst") or ""), str(n.get("lladdr") or "").lower()
            if dst and w_neigh.get(dst) != mac:
                ip_cmds.append(f"neigh del {dst} dev {dev}")
        br_cmds = [f"fdb del {e['mac']} dev {dev} dst {e['dst']} self"
                   for e in fdb if e.get("dst") and
                   (str(e.get("mac") or "").lower(), e["dst"]) not in w_fdb]
        have_neigh = {str(n.get("dst")): str(n.get("lladdr") or "").lower() for n in neighs}
        have_fdb = {(str(e.get("mac") or "").lower(), e.get("dst")) for e in fdb}
        have_routes = {str(r.get("dst")): r.get("gateway") for r in routes
                       if "onlink" in (r.get("flags") or [])}
        for p in want.values():   # as flannel: neighbour, FDB, then the route
            if have_neigh.get(p.gateway) != p.vtep_mac:
                ip_cmds.append(f"neigh replace {p.gateway} lladdr {p.vtep_mac} dev {dev} "
                               "nud permanent")
            if (p.vtep_mac, p.public_ip) not in have_fdb:
                br_cmds.append(f"fdb replace {p.vtep_mac} dev {dev} dst {p.public_ip} "
                               "self permanent")
        route_cmds = [f"route replace {p.pod_cidr} via {p.gateway} dev {dev} onlink"
                      for p in want.values() if have_routes.get(str(p.pod_cidr)) != p.gateway]
        if ip_cmds:
            await _check("ip", "-force", "-batch", "-", stdin="\n".join(ip_cmds) + "\n")
        if br_cmds:
            await _check("bridge", "-force", "-batch", "-", stdin="\n".join(br_cmds) + "\n")
        if route_cmds:
            await _check("ip", "-force", "-batch", "-", stdin="\n".join(route_cmds) + "\n")
        for name in set(want) - set(self.peers):
            p = want[name]
            log.info("overlay: node %s: pod CIDR %s via %s (VTEP %s)", name, p.pod_cidr,
                     p.public_ip, p.vtep_mac)
        for name in set(self.peers) - set(want):
            log.info("overlay: node %s is gone: removed its pod CIDR %s", name,
                     self.peers[name].pod_cidr)
        self.peers = want

    # -- running -----------------------------------------------------------------------------
    async def run(self, client: Any, node_name: str, stop: asyncio.Event,
                  nodes_client: Any = None) -> None:
        """Until `stop`: wait for the pod CIDR, set the device and chains up, publish the
        VTEP on the Node (with the node's `client`), then keep the peers equal to the
        Nodes, watched with `nodes_client` (an identity that may list every Node: the
        Node authorizer lets a node read only its own; default `client`). Removing it all
        is `close`'s, the runtime's on its way out."""
        from pyk8s.client.informer import EventHandlerFuncs, SharedInformer
        dirty = self._event("_dirty")
        if not await _until(self._event("_has_pod_cidr"), stop):
            return
        informer = SharedInformer(nodes_client or client, "/api/v1/nodes",
                                  name="overlay-nodes")

        def changed(old: Obj | None, new: Obj | None) -> None:
            # Not on every status update: only what routes (or our own VTEP) depend on.
            if (node_peer(old) if old else None) != (node_peer(new) if new else None):
                dirty.set()

        informer.add_event_handler(EventHandlerFuncs(
            on_add_fn=lambda o: changed(None, o), on_update_fn=changed,
            on_delete_fn=lambda o: changed(o, None)))
        try:
            if not await self._set_up(client, node_name, stop):
                return
            informer.start()
            while not stop.is_set() and not await informer.wait_for_sync(1.0):
                pass
            dirty.set()
            while not stop.is_set():
                await wait_any(dirty, stop, timeout=RESYNC_SECONDS)
                if stop.is_set():
                    break
                dirty.clear()
                try:
                    await self.ensure_chains()
                    await self._publish(client, node_name, informer.store.get(node_name))
                    await self.sync_peers(p for n in informer.store.list()
                                          if (p := node_peer(n)) is not None
                                          and p.node != node_name)
                except (OverlayError, OSError, asyncio.TimeoutError) as e:
                    log.error("overlay: %s; retrying", e)
                    await wait_any(stop, timeout=RETRY_SECONDS)
                    dirty.set()
                except Exception as e:   # an API error: retried by the next pass
                    log.warning("overlay: %s; retrying", e)
                    await wait_any(stop, timeout=RETRY_SECONDS)
                    dirty.set()
        finally:
            if informer.started:
                await informer.stop()

    async def _set_up(self, client: Any, node_name: str, stop: asyncio.Event) -> bool:
        """The device (with the MAC the Node advertises, if it has to be made) and chains,
        then the annotations; retried until done or `stop`."""
        while not stop.is_set():
            try:
                node = await client.get(f"/api/v1/nodes/{node_name}")
                vtep = node_vtep(node)
                await self.setup(vtep[0] if vtep else "")
                await self._publish(client, node_name, node)
                log.info("overlay: node %s VTEP %s at %s on %s", node_name, self.mac,
                         self.config.public_ip, self.config.device)
                return True
            except Exception as e:
                log.error("overlay: setting up %s: %s; retrying", self.config.device, e)
                await wait_any(stop, timeout=RETRY_SECONDS)
        return False

    async def _publish(self, client: Any, node_name: str, node: Obj | None) -> None:
        """Patch flannel's annotations onto our Node if it does not carry them."""
        want = annotations(self.config.vni, self.mac, self.config.public_ip)
        have = ((node or {}).get("metadata") or {}).get("annotations") or {}
        if node is not None and all(have.get(k) == v for k, v in want.items()):
            return
        await client.patch(f"/api/v1/nodes/{node_name}", {"metadata": {"annotations": want}})


async def _until(event: asyncio.Event, stop: asyncio.Event) -> bool:
    """Wait for `event` or `stop`; whether `event` came first."""
    await wait_any(event, stop)
    return event.is_set() and not stop.is_set()


async def remove_leftovers(owner: str) -> list[str]:
    """`pyk8s killall`: the devices and chains of the VNIs the node of data dir `owner`
    claimed in this network namespace (a killed node leaves its claim files); the devices
    removed."""
    removed = []
    for name in hostclaims.claimed_names(CLAIM_KIND, owner):
        try:
            vni = int(name)
        except ValueError:
            continue
        await delete_link(device_name(vni))
        await delete_chains(Chains(chain_prefix(vni)))
        removed.append(device_name(vni))
    return removed
