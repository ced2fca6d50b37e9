"""Service IP and node port ranges: parsing and offset arithmetic (pure, no I/O).

Rules, as upstream's ipallocator / portallocator:

* a `ServiceIPRange` is a CIDR whose usable addresses are numbered from offset 0 = the first
  address after the network address; IPv4 leaves out the broadcast address, IPv6 ranges are
  capped at 65536 addresses. The kube-apiserver flag takes at most 20 host bits ("specified
  --service-cluster-ip-range is too large; for 32-bit addresses, the mask must be >= 12").
* a `PortRange` is `base..base+size-1`, written `30000-32767` (also `30000+2767` or one port).
* both split their offsets in two bands: the lower band (`band` offsets) is preferred for
  values users ask for, so dynamic allocation (`pick`) tries a random place in the upper band
  first, scans it round-robin, and only then the lower band (KEP-3070 for IPs: band =
  min(max(16, cidr size / 16), 256); KEP-3668 for ports: min(max(16, size / 32), 128)).
"""
from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from typing import Callable, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

MAX_CIDR_BITS = 20  # kube-apiserver: the service range has at most 2^20 addresses
IPV6_MAX_SIZE = 65536


class RangeError(ValueError):
    """A bad flag value; the message is upstream's."""


def _range_offset(size: int, lo: int, hi: int, step: int) -> int:
    """Upstream calculateRangeOffset: min(max(lo, size/step), hi); 0 for tiny ranges."""
    if size <= lo:
        return 0
    return max(lo, min(hi, size // step))


@dataclass(frozen=True)
class ServiceIPRange:
    network: Network
    size: int = field(init=False)
    band: int = field(init=False)
    _base: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        total = self.network.num_addresses
        size = min(total, IPV6_MAX_SIZE) if self.network.version == 6 else total - 1
        object.__setattr__(self, "size", max(0, size - 1))
        object.__setattr__(self, "band", _range_offset(total, 16, 256, 16))
        object.__setattr__(self, "_base", int(self.network.network_address) + 1)

    @property
    def family(self) -> str:
        return "IPv6" if self.network.version == 6 else "IPv4"

    def __str__(self) -> str:
        return str(self.network)

    def offset(self, ip: str) -> int | None:
        """The offset of `ip`, or None when it is not an allocatable address of the range."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if addr.version != self.network.version or addr not in self.network:
            return None
        off = int(addr) - self._base
        return off if 0 <= off < self.size else None

    def value(self, offset: int) -> str:
        return str(ipaddress.ip_address(self._base + offset))

    def first(self) -> str:
        """The first usable address (10.96.0.1): the `kubernetes` Service's cluster IP."""
        return self.value(0)


@dataclass(frozen=True)
class PortRange:
    base: int
    size: int

    @property
    def band(self) -> int:
        return _range_offset(self.size, 16, 128, 32)

    def __str__(self) -> str:
        return f"{self.base}-{self.base + self.size - 1}"

    def offset(self, port: int | str) -> int | None:
        try:
            p = int(port)
        except (TypeError, ValueError):
            return None
        off = p - self.base
        return off if 0 <= off < self.size else None

    def value(self, offset: int) -> str:
        return str(self.base + offset)


def parse_service_cidrs(value: str) -> list[ServiceIPRange]:
    """`--service-cluster-ip-range`: one CIDR, or two of different families (dual-stack)."""
    entries = [e.strip() for e in value.split(",")]
    if not value.strip() or not all(entries):
        raise RangeError("--service-cluster-ip-range must contain at least one valid cidr")
    if len(entries) > 2:
        raise RangeError("--service-cluster-ip-range must not contain more than two entries")
    out: list[ServiceIPRange] = []
    for e in entries:
        try:
            net = ipaddress.ip_network(e, strict=False) if "/" in e else None
        except ValueError:
            net = None
        if net is None:
            raise RangeError(f"service IP family {e!r} must have a valid CIDR "
                             f"(e.g. 10.96.0.0/12): invalid CIDR address: {e}")
        if net.max_prefixlen - net.prefixlen > MAX_CIDR_BITS:
            raise RangeError(f"specified --service-cluster-ip-range is too large; for "
                             f"{net.max_prefixlen}-bit addresses, the mask must be >= "
                             f"{net.max_prefixlen - MAX_CIDR_BITS}")
        out.append(ServiceIPRange(net))
    if len(out) == 2 and out[0].network.version == out[1].network.version:
        raise RangeError("--service-cluster-ip-range[0] and --service-cluster-ip-range[1] "
                         "must be of different IP family")
    return out


def parse_port_range(value: str) -> PortRange:
    """Upstream net.ParsePortRange: `30000-32767`, `30000+2767` or a single port."""
    v = value.strip()
    try:
        if "-" in v and "+" not in v:
            lo_s, hi_s = v.split("-", 1)
            low, high = int(lo_s), int(hi_s)
        elif "+" in v and "-" not in v:
            lo_s, off_s = v.split("+", 1)
            low = int(lo_s)
            high = low + int(off_s)
        elif v and "-" not in v and "+" not in v:
            low = high = int(v)
        else:
            raise RangeError(f"unable to parse port range: {value}")
    except ValueError as e:
        if isinstance(e, RangeError):
            raise
        raise RangeError(f"unable to parse port range: {value}") from None
    if low > 65535 or high > 65535:
        raise RangeError(f"the port range cannot be greater than 65535: {value}")
    if low < 1:
        raise RangeError(f"the port range must start at 1 or above: {value}")
    if high < low:
        raise RangeError(f"end port cannot be less than start port: {value}")
    return PortRange(low, high - low + 1)


def pick(size: int, band: int, taken: Callable[[int], bool],
         rng: random.Random | None = None) -> int | None:
    """A free offset as upstream's randomScanStrategyWithOffset finds it, or None (full)."""
    r = rng or random
    upper = size - band
    if upper > 0:
        start = r.randrange(upper)
        for i in range(upper):
            at = band + (start + i) % upper
            if not taken(at):
                return at
    if band > 0:
        start = r.randrange(band)
        for i in range(band):
            at = (start + i) % band
            if not taken(at):
                return at
    return None
