"""The host's primary address (what `up` advertises and a node reports by default)."""
from __future__ import annotations

import ipaddress

from pyk8s.hostaddress import first_global_address, primary_address


def test_first_global_address_of_ip_addr_lines() -> None:
    out = ("3: eth1    inet 198.51.100.7/24 brd 198.51.100.255 scope global eth1\\"
           "       valid_lft forever preferred_lft forever\n"
           "4: eth2    inet 203.0.113.9/24 scope global eth2\\       valid_lft forever\n")
    assert first_global_address(out) == "198.51.100.7"
    assert first_global_address("") == ""


def test_primary_address_is_a_usable_ipv4() -> None:
    addr = ipaddress.ip_address(primary_address())
    assert addr.version == 4 and not addr.is_unspecified
