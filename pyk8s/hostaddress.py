"""The host's primary address: what kube-apiserver advertises and the kubelet reports as
the node's InternalIP when no flag names one (upstream's ChooseHostInterface: the
default route's interface)."""
from __future__ import annotations

import ipaddress
import socket

# Any address outside the host: connect() on a UDP socket only picks the route and the
# source address, it sends nothing.
_ROUTE_PROBE = ("192.0.2.1", 9)


def primary_address() -> str:
    """The default route's source address, else the first non-loopback IPv4 the host name
    resolves to, else 127.0.0.1 (a host without a network)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(_ROUTE_PROBE)
            addr = str(s.getsockname()[0])
        if not ipaddress.ip_address(addr).is_loopback and addr != "0.0.0.0":
            return addr
    except OSError:
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addr = str(info[4][0])
            if not ipaddress.ip_address(addr).is_loopback:
                return addr
    except OSError:
        pass
    return "127.0.0.1"
