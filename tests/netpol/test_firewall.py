"""Writing the rules into real tables: ipset + iptables-restore, only what changed, the jump
kept first in FORWARD, repair after someone else's flush, cleanup. Each scenario runs in a
network namespace of its own (`unshare --net`), so the host's tables are never touched."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pyk8s.netpol.iptables import PolicyFirewall, hook_in_place, ipset_restore_input
from pyk8s.netpol.rules import IPSet, Names, render
from pyk8s.proxy.iptables import IptablesError
from tests.conftest import needs, needs_root

P = "TNP"
ROOT = Path(__file__).resolve().parents[2]
tools = needs(not all(shutil.which(b) for b in ("iptables-restore", "ipset", "unshare")),
              "needs iptables, ipset and unshare")


def test_ipset_restore_input_swaps_each_set_in() -> None:
    text = ipset_restore_input({"X-B": IPSet("hash:net", ("10.0.0.0/8", "10.1.0.0/16 nomatch")),
                                "X-A": IPSet("hash:ip", ())}, "X-TMP")
    assert text.splitlines() == [
        "create X-A hash:ip family inet -exist", "create X-TMP hash:ip family inet -exist",
        "flush X-TMP", "swap X-TMP X-A", "destroy X-TMP",
        "create X-B hash:net family inet -exist", "create X-TMP hash:net family inet -exist",
        "flush X-TMP", "add X-TMP 10.0.0.0/8", "add X-TMP 10.1.0.0/16 nomatch",
        "swap X-TMP X-B", "destroy X-TMP"]


def test_hook_in_place() -> None:
    n = Names("A")
    ours = f'-A FORWARD -m comment --comment "pyk8s network policy A" -j A-FORWARD'
    other_np = f'-A FORWARD -m comment --comment "pyk8s network policy B" -j B-FORWARD'
    proxy = "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD"
    assert hook_in_place(["-P FORWARD ACCEPT", ours, proxy], n) is True
    assert hook_in_place(["-P FORWARD ACCEPT", other_np, ours, proxy], n) is True
    assert hook_in_place(["-P FORWARD ACCEPT", proxy, ours], n) is False
    assert hook_in_place(["-P FORWARD ACCEPT", proxy], n) is None
    assert hook_in_place([], n) is None


def _pod(name: str, ip: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"phase": "Running", "podIP": ip}}


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _sets() -> set[str]:
    return set(_sh("ipset", "list", "-n").split())


def _forward() -> list[str]:
    return [r for r in _sh("iptables", "-S", "FORWARD").splitlines() if r.startswith("-A ")]


async def _scenario() -> None:
    """Run inside a fresh network namespace (see test_firewall_in_a_network_namespace)."""
    n = Names(P)
    hook = f'-A FORWARD -m comment --comment "pyk8s network policy {P}" -j {n.forward}'
    subprocess.run(["iptables", "-A", "FORWARD", "-j", "ACCEPT"], check=True)
    # leftovers of a previous run are deleted at the first sync
    subprocess.run(["ipset", "create", f"{P}-P-OLD", "hash:ip"], check=True)
    subprocess.run(["iptables", "-N", f"{P}-I-OLD"], check=True)
    fw = PolicyFirewall(P)
    await fw.setup()
    assert _forward() == [hook, "-A FORWARD -j ACCEPT"]
    assert _sets() == {n.ingress, n.egress}
    assert f":{P}-I-OLD" not in _sh("iptables-save")

    pods = [_pod("a", "10.9.0.2", app="a"), _pod("b", "10.9.0.3", app="b")]
    deny = {"metadata": {"name": "deny", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "a"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}]}}
    await fw.sync(render([deny], pods, [], "n1", P))
    chain = n.policy_chain("Ingress", "default/deny")
    assert f"-N {chain}" in _sh("iptables", "-S")
    assert "10.9.0.2" in _sh("ipset", "list", n.ingress)
    # a new peer pod changes one set's members, no chain
    await fw.sync(render([deny], pods + [_pod("c", "10.9.0.4", app="b")], [], "n1", P))
    assert len(fw.last_written) == 1 and fw.last_written[0].startswith(f"{P}-P-")
    assert "10.9.0.4" in _sh("ipset", "list", fw.last_written[0])

    # someone inserts a rule before ours: at the next sync ours is first again
    subprocess.run(["iptables", "-I", "FORWARD", "1", "-j", "ACCEPT"], check=True)
    await fw.sync(render([deny], pods, [], "n1", P))
    assert _forward()[0] == hook and _forward().count(hook) == 1
    # someone flushes FORWARD and our chain: everything is written again
    subprocess.run(["iptables", "-F", "FORWARD"], check=True)
    subprocess.run(["iptables", "-F", n.forward], check=True)
    await fw.sync(render([deny], pods, [], "n1", P))
    assert _forward() == [hook]
    assert len(_sh("iptables", "-S", n.forward).splitlines()) > 3

    # a failed write raises; the next one rewrites everything
    subprocess.run(["ipset", "destroy", n.egress], check=False)
    bad = render([deny], pods, [], "n1", P)
    bad.chains[n.forward].append(f"-A {n.forward} -m set --match-set {P}-MISSING src -j DROP")
    try:
        await fw.sync(bad)
        raise AssertionError("the write should have failed")
    except IptablesError as e:
        assert "iptables-restore" in str(e)
    await fw.sync(render([deny], pods, [], "n1", P))
    assert n.egress in _sets()

    # the policy goes: its chain and sets go too
    await fw.sync(render([], pods, [], "n1", P))
    assert chain not in _sh("iptables", "-S") and _sets() == {n.ingress, n.egress}
    await fw.cleanup()
    assert _forward() == []
    assert f":{P}-" not in _sh("iptables-save") and _sets() == set()


@needs_root
@tools
def test_firewall_in_a_network_namespace() -> None:
    r = subprocess.run(["unshare", "--net", sys.executable, "-c",
                        "import asyncio, tests.netpol.test_firewall as t; "
                        "asyncio.run(t._scenario())"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout + r.stderr
