"""Shared pieces of the pod network's tests: fake CNI plugins (no root needed); for the
root tests, sockets inside pod network namespaces and a network of the test's own (a
unique bridge and /24, cleaned up by the `netenv` fixture even when the test fails)."""
from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable, TypeVar

import pytest

from pyk8s.kubelet.network.cni import CNINetwork, chain_name
from pyk8s.kubelet.network.namespaces import create_pod_namespaces, delete_all
from pyk8s.kubelet.network.podnetwork import NETWORK_NAME, PodNetwork

T = TypeVar("T")

# A fake plugin: logs each call (type, CNI_COMMAND, CNI_* env, stdin config, pid) as a
# JSON line, then does what its config's `act[<command>]` says (sleep / JSON error /
# stderr + exit status / raw stdout); ADD returns prevResult plus an interface of its own
# and the config's `ip` or, with an `ipam` section, the range's .2 address.
FAKE = r'''#!{python} -I
import ipaddress, json, os, sys, time
LOG = {log!r}
cmd = os.environ.get("CNI_COMMAND", "")
if cmd == "VERSION":
    # Exits without reading stdin (as real plugins do).
    print(json.dumps({{"cniVersion": "1.0.0", "supportedVersions": {versions!r}}}))
    sys.exit(0)
conf = json.load(sys.stdin)
env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
with open(LOG, "a") as f:
    f.write(json.dumps({{"type": conf["type"], "cmd": cmd, "env": env, "conf": conf,
                         "pid": os.getpid()}}) + "\n")
act = (conf.get("act") or {{}}).get(cmd) or {{}}
if act.get("sleep"):
    time.sleep(act["sleep"])
if act.get("error"):
    print(json.dumps(act["error"]))
    sys.exit(1)
if act.get("stderr"):
    sys.stderr.write(act["stderr"])
    sys.exit(act.get("rc", 1))
if act.get("stdout") is not None:
    sys.stdout.write(act["stdout"])
    sys.exit(0)
if cmd == "ADD":
    res = conf.get("prevResult") or {{"cniVersion": conf["cniVersion"], "interfaces": [],
                                      "ips": []}}
    res.setdefault("interfaces", []).append({{"name": conf["type"] + "-if"}})
    if conf.get("ip"):
        res.setdefault("ips", []).append({{"address": conf["ip"]}})
    for r in (conf.get("ipam") or {{}}).get("ranges") or []:
        n = ipaddress.ip_network(r[0]["subnet"])
        addr = f"{{n.network_address + 2}}/{{n.prefixlen}}"
        res.setdefault("ips", []).append({{"address": addr}})
    print(json.dumps(res))
'''


class Fakes:
    """A bin dir of fake plugins and the log they write."""

    def __init__(self, d: Path) -> None:
        self.bin = d / "bin"
        self.bin.mkdir()
        self.log = d / "calls.jsonl"
        self.cache = d / "cache"

    def plugin(self, name: str, versions: tuple[str, ...] = ("0.4.0", "1.0.0")) -> Path:
        p = self.bin / name
        p.write_text(FAKE.format(python=sys.executable, log=str(self.log),
                                 versions=list(versions)))
        p.chmod(0o755)
        return p

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def summary(self) -> list[tuple[str, str]]:
        return [(c["type"], c["cmd"]) for c in self.calls()]

    def clear(self) -> None:
        self.log.unlink(missing_ok=True)

    def network(self, plugins: list[dict[str, Any]], **kw: Any) -> CNINetwork:
        for p in plugins:
            if not (self.bin / p["type"]).exists():
                self.plugin(p["type"])
        return CNINetwork({"cniVersion": "1.0.0", "name": "testnet", "plugins": plugins},
                          [self.bin], self.cache, **kw)


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    return Fakes(tmp_path)


# -- root tests: sockets inside namespaces, a bridge network of the test's own ---------------

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
CLONE_NEWNET = 0x40000000


def in_netns(path: str, fn: Callable[[], T]) -> T:
    """`fn()` in a short-lived thread that has joined the network namespace `path`: a
    socket created there stays in that namespace (usable from any thread)."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns {path}: {os.strerror(e)}")
            finally:
                os.close(fd)
            out["v"] = fn()
        except BaseException as e:  # handed to the caller
            out["e"] = e

    t = threading.Thread(target=run, name="in-netns")
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["v"]  # type: ignore[no-any-return]


class Listener:
    """A TCP server in a pod's netns answering every connection with `<tag> <peer ip>`."""

    def __init__(self, netns: str, tag: str, port: int = 8080,
                 family: socket.AddressFamily = socket.AF_INET) -> None:
        def make() -> socket.socket:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
            s.listen(16)
            return s

        self.sock = in_netns(netns, make)
        self.tag, self.port = tag, port
        self.thread = threading.Thread(target=self._serve, name=f"listener-{tag}", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return                      # closed
            with conn:
                peer_ip = peer[0].removeprefix("::ffff:")
                conn.sendall(f"{self.tag} {peer_ip}".encode())

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


def ask(addr: tuple[str, int], netns: str | None = None, timeout: float = 3.0) -> str:
    """Connect to `addr` (from the host, or from inside `netns`); what the listener said."""
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    if netns is None:
        s = socket.socket(family, socket.SOCK_STREAM)
    else:
        s = in_netns(netns, lambda: socket.socket(family, socket.SOCK_STREAM))
    with s:
        s.settimeout(timeout)
        s.connect(addr)
        return s.recv(200).decode()


def run(*cmd: str, check: bool = True) -> str:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30).stdout


def nat_rules(binary: str = "iptables") -> list[str]:
    return run(binary, "-w", "5", "-t", "nat", "-S").splitlines()


def rules_of(network: str, sandbox_id: str, binary: str = "iptables") -> list[str]:
    """The nat rules / chains of one container: its masquerade and hostPort chains and
    every rule naming it in a comment."""
    chains = {chain_name(network, sandbox_id), chain_name(network, sandbox_id, "DN-")}
    return [r for r in nat_rules(binary)
            if sandbox_id in r or any(c in r.split() for c in chains)]


def _purge_rules(network: str, sandbox_id: str) -> None:
    """Last-resort cleanup of a failed test: delete whatever nat rules / chains of the
    container are left (only those: the names hash the container id)."""
    chains = [chain_name(network, sandbox_id), chain_name(network, sandbox_id, "DN-")]
    for binary in ("iptables", "ip6tables"):
        for rule in rules_of(network, sandbox_id, binary):
            words = shlex.split(rule)
            if words[0] == "-A" and words[1] not in chains:
                run(binary, "-w", "5", "-t", "nat", "-D", *words[1:], check=False)
        for c in chains:
            run(binary, "-w", "5", "-t", "nat", "-F", c, check=False)
            run(binary, "-w", "5", "-t", "nat", "-X", c, check=False)


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


ROUTE_TYPES = ("unicast", "local", "broadcast", "multicast", "anycast", "blackhole",
               "unreachable", "prohibit", "throw", "nat")


def _used_v4_nets() -> list[ipaddress.IPv4Network]:
    nets = []
    for line in run("ip", "-4", "-o", "route", "show", "table", "all").splitlines():
        words = line.split()
        if len(words) > 1 and words[0] in ROUTE_TYPES:      # "local 10.1.2.3 dev ..."
            words = words[1:]
        dst = words[0] if words else ""
        try:
            nets.append(ipaddress.IPv4Network(dst, strict=False))
        except ValueError:
            continue                            # "default", "unreachable", ...
    return nets


def unique_subnet(count: int = 1) -> list[ipaddress.IPv4Network]:
    """`count` /24s in 10.2-99.x.0 that no route of this host touches (the e2e tests'
    clusters use 10.100-250.0.0/16): parallel workers each get their own."""
    used = _used_v4_nets()
    out: list[ipaddress.IPv4Network] = []
    rnd = random.SystemRandom()
    while len(out) < count:
        n = ipaddress.IPv4Network(f"10.{rnd.randint(2, 99)}.{rnd.randint(0, 255)}.0/24")
        if n not in out and not any(n.overlaps(u) for u in used if u.prefixlen > 0):
            out.append(n)
    return out


def unique_bridge() -> str:
    return f"pk8n{uuid.uuid4().hex[:6]}"


def free_host_port() -> int:
    """A TCP port nothing on this host listens on, outside the ephemeral range (a hostPort
    DNATs every local address's port while a test runs)."""
    rnd = random.SystemRandom()
    while True:
        port = rnd.randint(20000, 29999)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port


class NetEnv:
    """A test's own pod network: a bridge and /24 nobody else uses, namespaces under
    `root`, CNI state under `data`; `close()` removes everything it made (fixtures call
    it even when the test failed)."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "sandboxes"
        self.data = tmp / "cni"
        self.bridges: list[str] = [unique_bridge()]
        self.bridge = self.bridges[0]
        self.subnets = unique_subnet(2)
        self.subnet = self.subnets[0]
        self.sandboxes: list[str] = []
        self.networks: list[PodNetwork] = []
        self.listeners: list[Listener] = []

    def network(self, subnet: ipaddress.IPv4Network | str | None = None,
                bridge: str | None = None) -> PodNetwork:
        if bridge is not None and bridge not in self.bridges:
            self.bridges.append(bridge)
        net = PodNetwork(str(subnet or self.subnet), bridge or self.bridge, self.data)
        self.networks.append(net)
        return net

    async def sandbox(self, hostname: str = "pod") -> tuple[str, str]:
        """A new sandbox's id and network namespace path."""
        sid = uuid.uuid4().hex
        self.sandboxes.append(sid)
        ns = await create_pod_namespaces(self.root, sid, hostname)
        assert ns.net is not None
        return sid, ns.net

    def listen(self, netns: str, tag: str, **kw: Any) -> Listener:
        lst = Listener(netns, tag, **kw)
        self.listeners.append(lst)
        return lst

    def ip_file(self, ip: str) -> Path:
        return self.data / "ipam" / NETWORK_NAME / ip

    async def close(self) -> None:
        errors: list[BaseException] = []
        for lst in self.listeners:
            lst.close()
        for step in (lambda: PodNetwork.cleanup_leftovers(self.data, bridges=self.bridges),
                     lambda: delete_all(self.root)):
            try:
                await step()
            except Exception as e:  # still clean the rest
                errors.append(e)
        for sid in self.sandboxes:
            _purge_rules(NETWORK_NAME, sid)
        for br in self.bridges:
            if link_exists(br):
                run("ip", "link", "delete", "dev", br, check=False)
        if errors:
            raise errors[0]


@pytest.fixture
async def netenv(tmp_path: Path) -> AsyncIterator[NetEnv]:
    env = NetEnv(tmp_path)
    try:
        yield env
    finally:
        await env.close()
