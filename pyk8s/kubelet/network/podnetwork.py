"""The node's pod network: a Linux bridge on the node's spec.podCIDR, as k3s's flannel
CNI config does — CNI `bridge` (gateway on the bridge, hairpin, host-local IPAM with its
allocations under our data dir) then `portmap` (hostPort, SNAT). Loopback is not a plugin
here: namespaces.py brings `lo` up when it creates the netns. With the VXLAN overlay
(overlay.py) the bridge's MTU is the overlay's and the bridge plugin does not masquerade
(the overlay masquerades only what leaves the cluster CIDR); without it (a node with
`--flannel-backend none`) the bridge plugin masquerades what leaves the node's pod CIDR.

    data_dir/ipam/<network>/<ip>      host-local allocations (one file per pod IP)
    data_dir/cache/results/...        the CNI result cache (cni.py)

The pod CIDR is known only once the Node's spec.podCIDR is set, so the caller creates a
PodNetwork lazily; until then (or when the plugins are missing) the network is not ready,
with upstream's message."""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any, Sequence

from pyk8s.kubelet.network.cni import (DEFAULT_BIN_DIRS, CNIError, CNINetwork, CNIResult,
                                       delete_all_cached, find_plugin, plugin_versions)

log = logging.getLogger(__name__)
Obj = dict[str, Any]

NETWORK_NAME = "pyk8s"
PLUGINS = ("bridge", "host-local", "portmap")
NETWORK_NOT_READY = ("container runtime network not ready: NetworkReady=false "
                     "reason:NetworkPluginNotReady message:Network plugin returns error: "
                     "cni plugin not initialized")


class NetworkNotReady(Exception):
    """The pod network cannot attach pods (yet): no pod CIDR, or no CNI plugins."""

    def __init__(self, message: str = NETWORK_NOT_READY) -> None:
        super().__init__(f"network is not ready: {message}")
        self.message = message


def network_status(network: "PodNetwork | None") -> tuple[bool, str]:
    """(ready, message) as the runtime reports NetworkReady; `network` None: no pod CIDR
    yet."""
    if network is None:
        return False, NETWORK_NOT_READY
    return network.status()


def _cidrs(pod_cidr: str | Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    items = pod_cidr.split(",") if isinstance(pod_cidr, str) else list(pod_cidr)
    nets = [ipaddress.ip_network(c.strip(), strict=False) for c in items if c.strip()]
    if not nets:
        raise ValueError(f"invalid pod CIDR {pod_cidr!r}")
    return sorted(nets, key=lambda n: n.version)


def valid_link_name(name: str) -> bool:
    """The kernel's rules for a network device name (dev_valid_name): 1-15 bytes, not
    `.` / `..`, no `/`, `:` or whitespace."""
    return (0 < len(name.encode()) <= 15 and name not in (".", "..")
            and not any(c in "/:" or c.isspace() for c in name))


def default_conflist(pod_cidr: str | Sequence[str], bridge: str = "cni0",
                     ipam_data_dir: Path | str | None = None, mtu: int | None = None, *,
                     cni_version: str = "1.0.0", name: str = NETWORK_NAME,
                     ip_masq: bool = True) -> Obj:
    """bridge (+host-local) and portmap on `pod_cidr` (several, comma-separated, for dual
    stack). `ipam_data_dir` None: host-local's default /var/lib/cni/networks. `ip_masq`:
    the bridge plugin masquerades what leaves `pod_cidr` (off under the overlay)."""
    if not valid_link_name(bridge):
        raise ValueError(f"invalid bridge name {bridge!r}")
    nets = _cidrs(pod_cidr)
    ipam: Obj = {"type": "host-local",
                 "ranges": [[{"subnet": str(n)}] for n in nets],
                 "routes": [{"dst": "0.0.0.0/0" if n.version == 4 else "::/0"} for n in nets]}
    if ipam_data_dir is not None:
        ipam["dataDir"] = str(ipam_data_dir)
    br: Obj = {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": ip_masq,
               "hairpinMode": True, "ipam": ipam}
    if mtu:
        br["mtu"] = int(mtu)
    return {"cniVersion": cni_version, "name": name,
            "plugins": [br, {"type": "portmap", "capabilities": {"portMappings": True},
                             "snat": True}]}


async def choose_cni_version(bin_dirs: Sequence[str | os.PathLike[str]] = DEFAULT_BIN_DIRS,
                             plugins: Sequence[str] = PLUGINS) -> str:
    """1.0.0 when every plugin supports it (CNI_COMMAND=VERSION), else 0.4.0."""
    supported = await asyncio.gather(*(plugin_versions(p, bin_dirs) for p in plugins))
    for v in ("1.0.0", "0.4.0"):
        if all(v in s for s in supported):
            return v
    raise CNIError(f"the CNI plugins {list(plugins)} share no spec version of 1.0.0, 0.4.0")


def port_mappings(pod: Obj) -> list[Obj]:
    """CNI portMappings from the pod's containers' ports with a hostPort (upstream's
    MakePortMappings + the CRI runtime's: protocol default TCP, lower case for CNI)."""
    out: list[Obj] = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            try:
                host_port, container_port = int(p.get("hostPort") or 0), int(p["containerPort"])
            except (KeyError, TypeError, ValueError):
                continue
            if host_port <= 0:
                continue
            m = {"hostPort": host_port, "containerPort": container_port,
                 "protocol": str(p.get("protocol") or "TCP").lower(),
                 "hostIP": str(p.get("hostIP") or "")}
            if m not in out:
                out.append(m)
    return out


def _pod_ref(pod: Obj) -> tuple[str, str, str]:
    md = pod.get("metadata") or {}
    return (md.get("namespace") or "default", md.get("name") or "", md.get("uid") or "")


async def _ip(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(errors="replace")


def bridge_ports(bridge: str) -> list[str] | None:
    """The interfaces enslaved to `bridge`; None if it does not exist. Asked through
    netlink (`ip -j link`), not /sys/class/net: a process that entered another network
    namespace (nsenter) still sees the sysfs of the namespace that mounted it."""
    def links(*args: str) -> list[dict[str, Any]] | None:
        try:
            p = subprocess.run(["ip", "-j", "link", "show", *args], capture_output=True,
                               text=True, timeout=30)
            return list(json.loads(p.stdout or "[]")) if p.returncode == 0 else None
        except (OSError, subprocess.SubprocessError, ValueError):
            return None
    if not valid_link_name(bridge) or not links("dev", bridge):
        return None
    return sorted(str(i.get("ifname")) for i in links("master", bridge) or [])


async def delete_bridge_if_unused(bridge: str) -> bool:
    """Delete the bridge link when no interface is left on it; True if deleted."""
    ports = bridge_ports(bridge)
    if ports is None or ports:
        return False
    rc, out = await _ip("link", "delete", "dev", bridge, "type", "bridge")
    if rc != 0 and bridge_ports(bridge) is not None:
        log.warning("deleting bridge %s: %s", bridge, out.strip())
        return False
    return True


class PodNetwork:
    """The node's pod network on `pod_cidr` (bridge `bridge`, state under `data_dir`;
    `mtu` and `ip_masq` as default_conflist's)."""

    def __init__(self, pod_cidr: str | Sequence[str], bridge: str = "cni0",
                 data_dir: Path | str = Path("/var/lib/pyk8s/cni"), *,
                 bin_dirs: Sequence[str | os.PathLike[str]] = DEFAULT_BIN_DIRS,
                 mtu: int | None = None, name: str = NETWORK_NAME,
                 ip_masq: bool = True) -> None:
        self.cidrs = _cidrs(pod_cidr)          # ValueError on a bad CIDR
        self.pod_cidr = ",".join(str(n) for n in self.cidrs)
        self.bridge = bridge
        self.data_dir = Path(data_dir)
        self.ipam_dir = self.data_dir / "ipam"
        self.cache_dir = self.data_dir / "cache"
        self.bin_dirs = [str(d) for d in bin_dirs]
        self.mtu = mtu
        self.name = name
        self.ip_masq = ip_masq
        self.conflist()  # validates
        self.cni: CNINetwork | None = None
        self.results: dict[str, CNIResult] = {}
        self._lock: asyncio.Lock | None = None
        self._error = ""

    def conflist(self, cni_version: str = "1.0.0") -> Obj:
        return default_conflist(self.pod_cidr, self.bridge, self.ipam_dir, self.mtu,
                                cni_version=cni_version, name=self.name,
                                ip_masq=self.ip_masq)

    # -- readiness ------------------------------------------------------------------------
    def status(self) -> tuple[bool, str]:
        """(ready, message): the plugins are installed and initialisation did not fail."""
        missing = [p for p in PLUGINS if find_plugin(p, self.bin_dirs) is None]
        if missing:
            return False, NETWORK_NOT_READY
        if self._error:
            return False, ("container runtime network not ready: NetworkReady=false "
                           f"reason:NetworkPluginNotReady message:Network plugin returns "
                           f"error: {self._error}")
        return True, ""

    @property
    def ready(self) -> bool:
        return self.status()[0]

    async def init(self) -> CNINetwork:
        """Pick the spec version, build the conflist, drop a stale unused bridge (an
        earlier pod CIDR's gateway address would make the bridge plugin fail)."""
        if self.cni is not None:
            return self.cni
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.cni is not None:
                return self.cni
            ok, msg = self.status()
            if not ok and not self._error:
                raise NetworkNotReady(msg)
            try:
                version = await choose_cni_version(self.bin_dirs)
            except CNIError as e:
                self._error = str(e)
                raise NetworkNotReady(self.status()[1]) from None
            self._error = ""
            await self._drop_stale_bridge()
            self.ipam_dir.mkdir(parents=True, exist_ok=True)
            self.cni = CNINetwork(self.conflist(version), self.bin_dirs, self.cache_dir)
            return self.cni

    async def _drop_stale_bridge(self) -> None:
        if bridge_ports(self.bridge) is None:
            return
        rc, out = await _ip("-j", "addr", "show", "dev", self.bridge)
        try:
            addrs = [f"{a['local']}/{a['prefixlen']}" for i in json.loads(out) if rc == 0
                     for a in i.get("addr_info", []) if a.get("family") == "inet"]
        except (ValueError, KeyError, TypeError):
            return
        gateways = {f"{n.network_address + 1}/{n.prefixlen}" for n in self.cidrs
                    if n.version == 4}
        if any(a not in gateways for a in addrs) and await delete_bridge_if_unused(self.bridge):
            log.info("removed bridge %s of an earlier pod CIDR (%s)", self.bridge,
                     ", ".join(addrs))

    # -- pods -------------------------------------------------------------------------------
    async def setup(self, sandbox_id: str, netns_path: str, pod: Obj) -> str:
        """CNI ADD of the sandbox's netns (eth0); its IP (IPv4 first). Raises
        NetworkNotReady or CNIError (nothing left attached then). A sandbox already
        attached is detached first."""
        cni = await self.init()
        if cni.cached(sandbox_id) is not None:
            await cni.delete(sandbox_id, netns_path)
        result = await cni.add(sandbox_id, netns_path, "eth0", port_mappings(pod),
                               _pod_ref(pod))
        if not result.ips:
            await cni.delete(sandbox_id, netns_path)
            raise CNIError("the CNI result has no IP address", plugin="bridge", command="ADD")
        self.results[sandbox_id] = result
        return result.ip

    async def teardown(self, sandbox_id: str, netns_path: str | None) -> None:
        """CNI DEL (netns None or gone: still releases the IP and the iptables rules).
        Idempotent. Raises CNIError."""
        self.results.pop(sandbox_id, None)
        cni = self.cni
        if cni is None:
            # Not initialised (no ADD by this object): only cached attachments exist.
            cni = CNINetwork(self.conflist(), self.bin_dirs, self.cache_dir)
            if cni.cached(sandbox_id) is None:
                return
        await cni.delete(sandbox_id, netns_path)

    def attached(self) -> list[str]:
        """Sandbox ids with a cached attachment."""
        from pyk8s.kubelet.network.cni import cached_entries
        return [e.get("containerId", "") for _, e in cached_entries(self.cache_dir)]

    async def cleanup_all(self) -> None:
        """Agent shutdown / tests: DEL every cached sandbox, then delete the bridge if no
        interface is left on it."""
        await self.cleanup_leftovers(self.data_dir, self.bin_dirs, bridges=[self.bridge])
        self.results.clear()

    @classmethod
    async def cleanup_leftovers(cls, data_dir: Path | str,
                                bin_dirs: Sequence[str | os.PathLike[str]] = DEFAULT_BIN_DIRS,
                                bridges: Sequence[str] = (), keep: Sequence[str] = ()
                                ) -> list[str]:
        """After an agent crash (pod CIDR not known yet): DEL what the cache under
        `data_dir` holds — but the sandboxes in `keep`, adopted by the restarted agent —
        with the cached configs and netns paths, then delete the bridges they used (and
        `bridges`) if unused. The sandbox ids deleted."""
        done = await delete_all_cached(Path(data_dir) / "cache", bin_dirs, keep=keep)
        names = list(bridges)
        for cid, conf, err in done:
            if err is not None:
                log.warning("CNI DEL of %s: %s", cid, err)
            for p in conf.get("plugins") or []:
                if p.get("type") == "bridge" and p.get("bridge") and p["bridge"] not in names:
                    names.append(p["bridge"])
        for b in names:
            await delete_bridge_if_unused(b)
        return [cid for cid, _, err in done if err is None]
