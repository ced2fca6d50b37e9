"""The host's primary address: what kube-apiserver advertises and the kubelet reports as
the node's InternalIP when no flag names one (upstream's ChooseHostInterface: the
default route's interface)."""
from __future__ import annotations

import ipaddress
import socket
import subprocess

# Any address outside the host: connect() on a UDP socket only picks the route and the
# source address, it sends nothing.
_ROUTE_PROBE = ("192.0.2.1", 9)


def primary_address() -> str:
    """The default route's source address, else the first global IPv4 of an interface
    that is up (a host without a default route: upstream's chooseIPFromHostInterfaces),
    else the first non-loopback IPv4 the host name resolves to, else 127.0.0.1."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(_ROUTE_PROBE)
            addr = str(s.getsockname()[0])
        if not ipaddress.ip_address(addr).is_loopback and addr != "0.0.0.0":
            return addr
    except OSError:
        pass
    addr = interface_address()
    if addr:
        return addr
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addr = str(info[4][0])
            if not ipaddress.ip_address(addr).is_loopback:
                return addr
    except OSError:
        pass
    return "127.0.0.1"


def interface_address() -> str:
    """The first global IPv4 address of an interface that is up (`ip -4 -o addr`), or ""."""
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global", "up"],
                             capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return first_global_address(out)


def first_global_address(ip_addr_output: str) -> str:
    """The first address of `ip -4 -o addr` lines (`2: eth0    inet 192.0.2.2/24 ...`)."""
    for line in ip_addr_output.splitlines():
        fields = line.split()
        if "inet" in fields[:-1]:
            return fields[fields.index("inet") + 1].split("/")[0]
    return ""
