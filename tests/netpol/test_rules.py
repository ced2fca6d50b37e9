"""NetworkPolicies → rules and ipsets (pure): selection of the node's pods, peers by pod and
namespace selectors, ipBlock with except, ports (named, endPort, protocols), policy types
and the default deny."""
from __future__ import annotations

from typing import Any

from pyk8s.netpol.rules import (IPSet, Names, Ruleset, chain_prefix, named_port, policy_key,
                                policy_types, render)

P = "KUBENP"
N = Names(P)
Obj = dict[str, Any]


def pod(name: str, ip: str, ns: str = "default", node: str = "n1", phase: str = "Running",
        host_network: bool = False, ports: list[Obj] | None = None, **labels: str) -> Obj:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "hostNetwork": host_network,
                     "containers": [{"name": "c", "ports": ports or []}]},
            "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}] if ip else []}}


def namespace(name: str, **labels: str) -> Obj:
    return {"metadata": {"name": name,
                         "labels": {"kubernetes.io/metadata.name": name, **labels}}}


def policy(name: str, ns: str = "default", selector: Obj | None = None, **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"podSelector": selector if selector is not None else {}, **spec}}


SERVER = pod("server", "10.42.0.10", ports=[{"name": "http", "containerPort": 8080}],
             app="server")
SERVER2 = pod("server2", "10.42.0.11", ports=[{"name": "http", "containerPort": 9090}],
              app="server")
CLIENT = pod("client", "10.42.1.20", node="n2", role="client")
OTHER = pod("other", "10.42.0.30", role="other")
REMOTE = pod("remote", "10.42.1.40", ns="prod", node="n2", role="client")
NAMESPACES = [namespace("default"), namespace("prod", team="a")]
PODS = [SERVER, SERVER2, CLIENT, OTHER, REMOTE]


def rs_of(*policies: Obj, pods: list[Obj] | None = None) -> Ruleset:
    return render(policies, PODS if pods is None else pods, NAMESPACES, "n1", P)


def chain(rs: Ruleset, direction: str, pol: Obj) -> list[str]:
    return rs.chains[N.policy_chain(direction, policy_key(pol))]


def members(rs: Ruleset, name: str) -> tuple[str, ...]:
    return rs.sets[name].members


def set_in(rule: str) -> str:
    """The first set a rule matches on."""
    return rule.split("--match-set ")[1].split()[0]


def sets_in(rule: str) -> list[str]:
    return [part.split()[0] for part in rule.split("--match-set ")[1:]]


def test_prefix_never_inside_the_proxys_namespace() -> None:
    assert chain_prefix("KUBE") == "KUBENP"
    assert not chain_prefix("KABCDEF").startswith("KABCDEF-")
    longest = Names(chain_prefix("KABCDEF"))
    assert len(longest.policy_chain("Ingress", "ns/name")) <= 28
    assert len(longest.peers("x")) <= 31 and len(longest.block("x")) <= 31


def test_no_policies_no_isolation() -> None:
    rs = rs_of()
    assert list(rs.chains) == [N.forward]
    assert rs.sets == {N.ingress: IPSet("hash:ip", ()), N.egress: IPSet("hash:ip", ())}
    fwd = rs.chains[N.forward]
    assert "--ctstate RELATED,ESTABLISHED -j RETURN" in fwd[0]
    assert fwd[-1] == f"-A {N.forward} -j MARK --set-xmark 0x0/0x30000"
    assert [r for r in fwd if r.endswith("-j DROP")] == [
        f'-A {N.forward} -m comment --comment "isolated for egress, no policy allows" '
        f"-m set --match-set {N.egress} src -m mark ! --mark 0x10000/0x10000 -j DROP",
        f'-A {N.forward} -m comment --comment "isolated for ingress, no policy allows" '
        f"-m set --match-set {N.ingress} dst -m mark ! --mark 0x20000/0x20000 -j DROP"]


def test_default_deny_ingress_isolates_the_local_pods_of_the_namespace() -> None:
    deny = policy("deny")
    rs = rs_of(deny)
    assert chain(rs, "Ingress", deny) == []                       # nothing allowed
    assert members(rs, N.ingress) == ("10.42.0.10", "10.42.0.11", "10.42.0.30")
    assert members(rs, N.egress) == ()
    assert members(rs, N.targets("default/deny")) == members(rs, N.ingress)
    fwd = rs.chains[N.forward]
    jump = [r for r in fwd if r.endswith(f"-j {N.policy_chain('Ingress', 'default/deny')}")]
    assert jump == [f'-A {N.forward} -m comment --comment "default/deny ingress" -m set '
                    f"--match-set {N.targets('default/deny')} dst "
                    f"-j {N.policy_chain('Ingress', 'default/deny')}"]
    # egress jumps and drop come before ingress ones: one pass checks both ends
    assert fwd.index(jump[0]) > next(i for i, r in enumerate(fwd) if N.egress in r)
    # a pod cannot block itself
    assert f'-A {N.forward} -m comment --comment "a pod cannot block itself" -s 10.42.0.10/32 ' \
           f"-d 10.42.0.10/32 -j RETURN" in fwd
    assert rs.policy_chains == {"default/deny": [N.policy_chain("Ingress", "default/deny")]}


def test_policy_of_a_namespace_without_local_pods_renders_nothing() -> None:
    rs = rs_of(policy("deny", ns="prod"))
    assert list(rs.chains) == [N.forward] and rs.policy_chains == {}


def test_finished_host_network_and_ipless_pods_are_ignored() -> None:
    pods = [pod("done", "10.42.0.50", phase="Succeeded"), pod("host", "192.0.2.9",
            host_network=True), pod("pending", ""), SERVER]
    rs = rs_of(policy("deny"), pods=pods)
    assert members(rs, N.ingress) == ("10.42.0.10",)


def test_allow_from_pod_selector_on_a_port() -> None:
    allow = policy("allow", selector={"matchLabels": {"app": "server"}},
                   ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                             "ports": [{"protocol": "TCP", "port": 8080}]}])
    rs = rs_of(allow)
    [rule] = chain(rs, "Ingress", allow)
    assert rule == (f"-A {N.policy_chain('Ingress', 'default/allow')} -m comment --comment "
                    f'"default/allow ingress rule 0" -m set --match-set {set_in(rule)} src '
                    f"-p tcp -m tcp --dport 8080 -j MARK --or-mark 0x20000")
    # the policy's namespace only: not prod's role=client pod
    assert members(rs, set_in(rule)) == ("10.42.1.20",)
    assert members(rs, N.ingress) == ("10.42.0.10", "10.42.0.11")


def test_namespace_selector_alone_and_with_pod_selector() -> None:
    ns_only = policy("ns", ingress=[{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "a"}}}]}])
    both = policy("both", ingress=[{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}]}])
    rs = rs_of(ns_only, both)
    [r1] = chain(rs, "Ingress", ns_only)
    [r2] = chain(rs, "Ingress", both)
    assert members(rs, set_in(r1)) == ("10.42.1.40",)
    assert members(rs, set_in(r2)) == ("10.42.1.20", "10.42.1.40")


def test_ip_block_with_except_is_a_net_set_with_nomatch() -> None:
    p = policy("block", ingress=[{"from": [{"ipBlock": {"cidr": "172.17.0.0/16",
                                                        "except": ["172.17.1.0/24"]}}]}])
    rs = rs_of(p)
    [rule] = chain(rs, "Ingress", p)
    assert set_in(rule).startswith(f"{P}-B-")
    assert rs.sets[set_in(rule)] == IPSet("hash:net", ("172.17.0.0/16", "172.17.1.0/24 nomatch"))


def test_ip_block_everything_is_two_halves() -> None:
    p = policy("all", policyTypes=["Egress"], egress=[{"to": [{"ipBlock": {
        "cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}])
    rs = rs_of(p)
    [rule] = chain(rs, "Egress", p)
    assert f"--match-set {set_in(rule)} dst -j MARK --or-mark 0x10000" in rule
    assert members(rs, set_in(rule)) == ("0.0.0.0/1", "10.0.0.0/8 nomatch", "128.0.0.0/1")
    assert members(rs, N.egress) == ("10.42.0.10", "10.42.0.11", "10.42.0.30")
    assert members(rs, N.ingress) == ()


def test_empty_rule_allows_everything_and_empty_from_means_all_sources() -> None:
    p = policy("open", ingress=[{}, {"from": [], "ports": [{"protocol": "UDP", "port": 53}]}])
    rs = rs_of(p)
    assert [r.split('" ', 1)[1] for r in chain(rs, "Ingress", p)] == [
        "-j MARK --or-mark 0x20000",
        "-p udp -m udp --dport 53 -j MARK --or-mark 0x20000"]


def test_protocols_end_port_and_port_less_entries() -> None:
    p = policy("ports", ingress=[{"ports": [
        {"protocol": "SCTP", "port": 7000, "endPort": 7010}, {"protocol": "UDP"},
        {"protocol": "TCP", "port": "8443"}]}])
    rules = chain(rs_of(p), "Ingress", p)
    assert [r.split('" ', 1)[1] for r in rules] == [
        "-p sctp -m sctp --dport 7000:7010 -j MARK --or-mark 0x20000",
        "-p udp -j MARK --or-mark 0x20000",
        "-p tcp -m tcp --dport 8443 -j MARK --or-mark 0x20000"]


def test_named_port_ingress_resolves_per_selected_pod() -> None:
    p = policy("named", selector={"matchLabels": {"app": "server"}},
               ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                         "ports": [{"protocol": "TCP", "port": "http"},
                                   {"protocol": "UDP", "port": "http"}]}])
    rs = rs_of(p)
    rules = chain(rs, "Ingress", p)
    assert len(rules) == 2                          # UDP "http" names no port: no rule
    by_port = {r.split("--dport ")[1].split()[0]: r for r in rules}
    assert set(by_port) == {"8080", "9090"}
    peers, dests = sets_in(by_port["8080"])
    assert members(rs, peers) == ("10.42.1.20",)
    assert members(rs, dests) == ("10.42.0.10",)
    assert members(rs, sets_in(by_port["9090"])[1]) == ("10.42.0.11",)


def test_named_port_egress_resolves_through_the_peers() -> None:
    p = policy("eg", selector={"matchLabels": {"role": "other"}}, policyTypes=["Egress"],
               egress=[{"to": [{"podSelector": {"matchLabels": {"app": "server"}}}],
                        "ports": [{"protocol": "TCP", "port": "http"}]},
                       {"to": [{"ipBlock": {"cidr": "10.42.0.11/32"}}],
                        "ports": [{"protocol": "TCP", "port": "http"}]}])
    rs = rs_of(p)
    rules = chain(rs, "Egress", p)
    got = {(r.split("rule ")[1][0], r.split("--dport ")[1].split()[0]):
           members(rs, set_in(r)) for r in rules}
    assert got == {("0", "8080"): ("10.42.0.10",), ("0", "9090"): ("10.42.0.11",),
                   ("1", "9090"): ("10.42.0.11",)}
    assert all(" dst " in r and " src " not in r for r in rules)


def test_policy_types_default_as_upstream() -> None:
    assert policy_types({}) == ["Ingress"]
    assert policy_types({"egress": [{}]}) == ["Ingress", "Egress"]
    assert policy_types({"policyTypes": ["Egress"], "ingress": [{}]}) == ["Egress"]
    both = policy("both", policyTypes=["Ingress", "Egress"])
    rs = rs_of(both)
    assert rs.policy_chains["default/both"] == [N.policy_chain("Ingress", "default/both"),
                                               N.policy_chain("Egress", "default/both")]
    assert members(rs, N.egress) == members(rs, N.ingress) != ()


def test_rules_name_sets_by_position_so_pods_change_members_only() -> None:
    allow = policy("allow", ingress=[{"from": [{"podSelector": {}}]}])
    before = rs_of(allow)
    after = rs_of(allow, pods=PODS + [pod("new", "10.42.0.99")])
    assert before.chains[N.policy_chain("Ingress", "default/allow")] == \
        after.chains[N.policy_chain("Ingress", "default/allow")]
    assert set(before.sets) == set(after.sets)
    assert "10.42.0.99" in members(after, N.ingress)


def test_named_port_lookup() -> None:
    p = pod("p", "10.0.0.1", ports=[{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "web", "containerPort": 80}])
    assert named_port(p, "dns", "UDP") == 53
    assert named_port(p, "dns", "TCP") is None
    assert named_port(p, "web", "TCP") == 80
