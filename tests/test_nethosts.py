"""The test "hosts" harness (tests/nethosts.py): hosts reach each other and the root
namespace over the test's bridge, and nothing of them is left after close()."""
from __future__ import annotations

import subprocess

from tests.conftest import needs_root
from tests.nethosts import NetHosts

pytestmark = needs_root


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def test_hosts_reach_each_other_and_are_removed() -> None:
    with NetHosts() as net:
        h1, h2 = net.add("h1"), net.add("h2")
        assert h1.run(["busybox", "ping", "-c1", "-W2", h2.ip]).returncode == 0
        assert h2.run(["busybox", "ping", "-c1", "-W2", net.gateway]).returncode == 0
        assert h1.ip in h1.run(["ip", "-4", "-o", "addr", "show", "eth0"]).stdout
        net.remove("h2")
        assert h2.netns not in subprocess.run(["ip", "netns"], capture_output=True,
                                              text=True).stdout
        bridge, veth = net.bridge, h1.veth
    assert bridge not in _links() and veth not in _links()
    assert h1.netns not in subprocess.run(["ip", "netns"], capture_output=True,
                                          text=True).stdout
