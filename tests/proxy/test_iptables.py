"""iptables mode: the rendered chains (pure) and applying them to the host's tables (root:
a unique chain prefix, removed again)."""
from __future__ import annotations

import asyncio
import secrets
import subprocess

import pytest

from pyk8s.proxy.iptables import (Chains, IptablesProxier, chains_in_save, iptables_available,
                                  by_chain, render, restore_input, valid_prefix)
from pyk8s.proxy.model import Endpoint, ServicePort
from tests.conftest import needs, needs_root


def sp(name: str = "web", eps: list[Endpoint] | None = None, **kw: object) -> ServicePort:
    base: dict[str, object] = dict(namespace="default", name=name, port_name="http",
                                   protocol="TCP", port=80, cluster_ips=("10.96.0.5",))
    base.update(kw)
    return ServicePort(endpoints=list(eps or []), **base)  # type: ignore[arg-type]


E1, E2, E3 = (Endpoint(f"10.42.0.{i}", 8080, node_name="n1" if i < 3 else "n2")
              for i in (1, 2, 3))


def rules(r: object, chain: str) -> list[str]:
    return [x for x in r.nat + r.filter if x.startswith(f"-A {chain} ")]  # type: ignore


def test_prefix_rules() -> None:
    assert valid_prefix("KUBE") and valid_prefix("K1A2B3C")
    assert not valid_prefix("kube") and not valid_prefix("K1A2B3C4") and not valid_prefix("")
    with pytest.raises(ValueError):
        IptablesProxier("n1", "bad-prefix")


def test_chain_names_are_upstream_shaped_and_stable() -> None:
    c = Chains("KUBE")
    a = c.svc(sp())
    assert a.startswith("KUBE-SVC-") and len(a) == 25 and a == c.svc(sp())
    assert a != c.svc(sp(protocol="UDP")) and c.sep(sp(), E1) != c.sep(sp(), E2)
    assert len(Chains("K123456").sep(sp(), E1)) <= 28


def test_probabilities_split_evenly_and_last_endpoint_takes_the_rest() -> None:
    r = render([sp(eps=[E1, E2, E3])], "n1", "KUBE", ["10.42.0.0/16"])
    svc = rules(r, Chains("KUBE").svc(sp()))
    assert "--probability 0.33333333333" in svc[0]
    assert "--probability 0.50000000000" in svc[1]
    assert "statistic" not in svc[2]
    portal = rules(r, "KUBE-SERVICES")
    assert portal[0].endswith("-j KUBE-MARK-MASQ") and "! -s 10.42.0.0/16" in portal[0]
    assert "-d 10.96.0.5/32 -p tcp -m tcp --dport 80" in portal[1]
    assert portal[-1].endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    sep = rules(r, Chains("KUBE").sep(sp(), E1))
    assert sep[0].endswith("-s 10.42.0.1/32 -j KUBE-MARK-MASQ")        # hairpin
    assert sep[1].endswith("-j DNAT --to-destination 10.42.0.1:8080")


def test_no_endpoints_rejects_in_filter_and_no_nat_jump() -> None:
    r = render([sp(eps=[], node_port=30080)], "n1")
    assert not [x for x in r.nat if "10.96.0.5" in x]
    assert any("has no endpoints" in x and "-j REJECT" in x and "10.96.0.5" in x
               for x in rules(r, "KUBE-SERVICES"))
    assert any("--dport 30080" in x and "-j REJECT" in x
               for x in rules(r, "KUBE-EXTERNAL-SERVICES"))
    assert not rules(r, "KUBE-NODEPORTS")


def test_unready_endpoints_get_no_traffic() -> None:
    unready = Endpoint("10.42.0.9", 8080, ready=False, serving=False)
    r = render([sp(eps=[E1, unready])], "n1")
    assert not [x for x in r.nat if "10.42.0.9" in x]


def test_node_port_masquerades_and_local_policy_keeps_source() -> None:
    c = Chains("KUBE")
    r = render([sp(eps=[E1, E3], node_port=30080)], "n1")
    assert rules(r, "KUBE-NODEPORTS")[0].endswith(f"--dport 30080 -j {c.ext(sp())}")
    ext = rules(r, c.ext(sp()))
    assert ext[0].endswith("-j KUBE-MARK-MASQ") and ext[1].endswith(f"-j {c.svc(sp())}")
    local = sp(eps=[E1, E3], node_port=30080, external_local=True)
    r = render([local], "n2")
    ext = rules(r, c.ext(local))
    assert "-s 127.0.0.0/8" in ext[0] and ext[1].endswith(f"-j {c.svl(local)}")
    assert [x for x in rules(r, c.svl(local)) if "->" in x] == [
        x for x in rules(r, c.svl(local)) if "10.42.0.3:8080" in x]
    r = render([local], "n9")             # no local endpoint: dropped
    assert any("has no local endpoints" in x and "-j DROP" in x
               for x in rules(r, "KUBE-EXTERNAL-SERVICES"))


def test_session_affinity_uses_recent() -> None:
    s = sp(eps=[E1, E2], affinity_seconds=30)
    r = render([s], "n1")
    c = Chains("KUBE")
    svc = rules(r, c.svc(s))
    assert "--rcheck --seconds 30 --reap" in svc[0] and svc[0].endswith(c.sep(s, E1))
    assert "--set" in rules(r, c.sep(s, E1))[1]


def test_no_cluster_cidr_masquerades_every_cluster_ip_client() -> None:
    r = render([sp(eps=[E1])], "n1")
    first = rules(r, "KUBE-SERVICES")[0]
    assert "! -s" not in first and first.endswith("-j KUBE-MARK-MASQ")


def test_restore_input_flushes_ours_and_deletes_stale() -> None:
    r = render([sp(eps=[E1])], "n1")
    want = by_chain(r)
    assert want[("nat", "KUBE-MARK-MASQ")] == ["-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000"]
    assert ("filter", "KUBE-EXTERNAL-SERVICES") in want          # empty, still declared
    text = restore_input(want, stale=[("nat", "KUBE-SVC-OLD"), ("nat", "KUBE-SERVICES")])
    nat = text[text.index("*nat"):]
    assert ":KUBE-SVC-OLD - [0:0]" in nat and "-X KUBE-SVC-OLD" in nat
    assert "-X KUBE-SERVICES" not in nat                         # still wanted
    assert text.count("COMMIT") == 2
    only = restore_input({("nat", "KUBE-MARK-MASQ"): want[("nat", "KUBE-MARK-MASQ")]})
    assert "*filter" not in only and ":KUBE-SERVICES" not in only   # others untouched
    assert restore_input({}) == ""
    assert chains_in_save(":KUBE-SERVICES - [0:0]\n:OTHER - [0:0]\n", "KUBE") == [
        "KUBE-SERVICES"]


def _save() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True).stdout


@needs_root
@needs(not iptables_available(), "iptables is not installed")
def test_apply_resync_and_cleanup_on_the_host() -> None:
    prefix = "T" + secrets.token_hex(3).upper()
    p = IptablesProxier("n1", prefix, ["10.42.0.0/16"], localhost_nodeports=False)

    async def run() -> None:
        await p.setup()
        try:
            await p.sync([sp(eps=[E1, E2], node_port=30999)])
            text = _save()
            assert f"-A PREROUTING -m comment --comment \"kubernetes service portals\" " \
                   f"-j {prefix}-SERVICES" in text
            assert "--to-destination 10.42.0.2:8080" in text
            assert f"-A {prefix}-NODEPORTS" in text
            await p.sync([sp(eps=[E1])])          # E2's chain goes, the node port too
            assert 0 < p.last_chains_written < 8   # only the chains that changed
            text = _save()
            assert "10.42.0.2:8080" not in text and f"-A {prefix}-NODEPORTS" not in text
            assert Chains(prefix).sep(sp(), E2) not in text
            await p.setup()                        # again (a restart): hooks not doubled
            assert _save().count(f"-j {prefix}-POSTROUTING") == 1
        finally:
            await p.cleanup()
        assert prefix not in _save()

    asyncio.run(run())


@needs_root
@needs(not iptables_available(), "iptables is not installed")
def test_removed_jumps_and_chains_come_back() -> None:
    """Someone else flushes our jumps or deletes our chains (another cluster's cleanup, an
    `iptables -F`): the next sync after the check period restores everything, as
    upstream's canary chain does."""
    prefix = "T" + secrets.token_hex(3).upper()
    p = IptablesProxier("n1", prefix, ["10.42.0.0/16"], localhost_nodeports=False)
    p.hook_check_period = 0.0
    ports = [sp(eps=[E1], node_port=30998)]

    async def run() -> None:
        await p.setup()
        try:
            await p.sync(ports)
            jump = ["-m", "comment", "--comment", "kubernetes service portals",
                    "-j", f"{prefix}-SERVICES"]
            subprocess.run(["iptables", "-w", "-t", "nat", "-D", "PREROUTING", *jump],
                           check=True)
            svc = Chains(prefix).svc(ports[0])
            subprocess.run(["iptables", "-w", "-t", "nat", "-F", svc], check=True)
            assert f"-A PREROUTING -m comment --comment \"kubernetes service portals\" " \
                   f"-j {prefix}-SERVICES" not in _save()
            await p.sync(ports)                     # nothing changed in the API
            text = _save()
            assert f"-A PREROUTING -m comment --comment \"kubernetes service portals\" " \
                   f"-j {prefix}-SERVICES" in text
            assert f"-A {svc}" in text and "--to-destination 10.42.0.1:8080" in text
            assert text.count(f"-j {prefix}-SERVICES") == 4   # each hook once, none doubled
        finally:
            await p.cleanup()
        assert prefix not in _save()

    asyncio.run(run())
