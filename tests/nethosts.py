"""Test "hosts" on one machine: network namespaces joined by a bridge of the test.

`NetHosts()` makes a bridge `pk8b<hex>` in the root namespace with the address
`172.<a>.<b>.1/24` (a subnet of the test's own choosing, random so that parallel tests
and other clusters on this machine do not meet); `add("h1")` makes a network namespace
`pk8h<hex>-h1` with a veth into the bridge (`eth0`, `172.<a>.<b>.<10+i>/24`, default
route via the bridge's address) and loopback up. Processes run in a host with
`host.popen([...])` / `host.run([...])` through nsenter (not `ip netns exec`, which
remounts /sys and hides the cgroup filesystem a container runtime needs). `close()` (or
leaving the `with` block) removes the namespaces, veths and bridge it made; the processes
the test started in them are the test's to stop first.

Traffic stays on this bridge and in these namespaces: the root namespace reaches the
hosts at their addresses and they reach it at `gateway` (a control plane listening
there), as the repository's test rules ask."""
from __future__ import annotations

import random
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Any


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(("-n", netns) if netns else ()), *args]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip()}")
    return p.stdout


@dataclass
class NetHost:
    name: str
    netns: str
    ip: str
    veth: str    # its end in the root namespace

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def argv(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net={self.netns_path}", "--", *argv]

    def popen(self, argv: list[str], **kw: Any) -> "subprocess.Popen[bytes]":
        return subprocess.Popen(self.argv(argv), **kw)

    def run(self, argv: list[str], timeout: float = 30, check: bool = True
            ) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(self.argv(argv), capture_output=True, text=True,
                              timeout=timeout, check=check)


@dataclass
class NetHosts:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    prefix: str = field(default_factory=lambda: f"172.{random.randint(16, 31)}."
                                                f"{random.randint(0, 255)}")
    hosts: dict[str, NetHost] = field(default_factory=dict)
    _next: int = 10

    def __post_init__(self) -> None:
        self.bridge = f"pk8b{self.tag}"
        self.gateway = f"{self.prefix}.1"
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def __enter__(self) -> "NetHosts":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def add(self, name: str) -> NetHost:
        i = self._next
        self._next += 1
        host = NetHost(name, f"pk8h{self.tag}-{name}", f"{self.prefix}.{i}",
                       f"pk8v{self.tag}{i}")
        _ip("netns", "add", host.netns)
        _ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns",
            host.netns)
        _ip("link", "set", host.veth, "master", self.bridge, "up")
        _ip("addr", "add", f"{host.ip}/24", "dev", "eth0", netns=host.netns)
        _ip("link", "set", "lo", "up", netns=host.netns)
        _ip("link", "set", "eth0", "up", netns=host.netns)
        _ip("route", "add", "default", "via", self.gateway, netns=host.netns)
        self.hosts[name] = host
        return host

    def remove(self, name: str) -> None:
        host = self.hosts.pop(name, None)
        if host is None:
            return
        _ip("link", "del", host.veth, check=False)   # its peer goes with it
        _ip("netns", "del", host.netns, check=False)

    def close(self) -> None:
        for name in list(self.hosts):
            self.remove(name)
        _ip("link", "del", self.bridge, check=False)
