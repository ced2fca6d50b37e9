"""NetworkPolicies + Pods + Namespaces → the filter rules and ipsets that enforce them on one
node (pure: no I/O). `P` is the node's chain prefix (`chain_prefix`, e.g. KUBENP).

    FORWARD → P-FORWARD (our first rule there; it only RETURNs or DROPs: policies restrict,
                         they never accept what the host would otherwise drop)
      RELATED,ESTABLISHED → RETURN     replies and connections already let through are
                                       kept, also when a new policy would deny them
      clear our two mark bits
      -s ip -d ip → RETURN             per isolated local pod: a pod cannot block itself
      src ∈ P-T-<policy> → P-E-<policy>    per policy with Egress selecting a local pod;
                                           its rules set EGRESS_MARK on what they allow
      src ∈ P-EGRESS, EGRESS_MARK unset → DROP        (the pod is isolated for egress)
      dst ∈ P-T-<policy> → P-I-<policy>    likewise for Ingress, INGRESS_MARK
      dst ∈ P-INGRESS, INGRESS_MARK unset → DROP
      clear our two mark bits

A packet between two pods of this node is checked for the source's egress and the
destination's ingress in one pass; across nodes, the source's node checks egress and the
destination's ingress. Peers are matched by pod IP (never by interface), so the same rules
hold whatever carries the packet between nodes. Traffic between a pod and its own node
(kubelet probes, the node's DNS server) goes through OUTPUT / INPUT, not FORWARD: always
allowed, as upstream's documentation says.

ipsets (hash:ip unless said): P-T-<policy> the local pods a policy selects; P-INGRESS /
P-EGRESS the local pods isolated for each direction; P-P-<…> a peer's pods (podSelector,
namespaceSelector, or both); P-B-<…> an ipBlock (hash:net, its `except` entries
`nomatch`); P-N-<…> pods whose named port resolves to one number. Rules refer to sets by
names that depend on the policy and the rule's position only, so a pod coming or going
changes set members, not rules.

Upstream's semantics: a pod selected by a policy of a direction (policyTypes; Ingress
always, Egress when egress rules exist if unset) accepts in that direction only what one of
those policies' rules allows; a rule without peers allows every peer, without ports every
port; a peer's podSelector alone means the policy's namespace; named ports resolve through
the destination pod's containerPorts (ingress: the selected pod's; egress: the peer's);
endPort makes a range. Pods without an IP, hostNetwork pods and finished pods (Succeeded,
Failed) are neither selected nor peers. IPv4 only, as the service proxy.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from pyk8s.api.selectors import LabelSelector, SelectorError, label_selector_from_dict
from pyk8s.proxy.iptables import _comment, _hash

Obj = dict[str, Any]

EGRESS_MARK = "0x10000"      # kube-router's bits; the proxy uses 0x4000, portmap 0x2000
INGRESS_MARK = "0x20000"
MARKS = "0x30000"
HOOK_COMMENT = "pyk8s network policy"
PROTOCOLS = ("TCP", "UDP", "SCTP")


def chain_prefix(proxy_prefix: str) -> str:
    """The node's network-policy prefix: the service proxy's + NP (KUBE → KUBENP). Never
    `<proxy prefix>-…`, which the proxy counts as its own and deletes."""
    return f"{proxy_prefix}NP"


@dataclass(frozen=True)
class Names:
    """Chain and set names of prefix `p` (at most 9 characters: chains stay within
    iptables' 28, sets within ipset's 31)."""
    p: str

    @property
    def forward(self) -> str:
        return f"{self.p}-FORWARD"

    @property
    def ingress(self) -> str:
        return f"{self.p}-INGRESS"

    @property
    def egress(self) -> str:
        return f"{self.p}-EGRESS"

    def policy_chain(self, direction: str, key: str) -> str:
        return f"{self.p}-{direction[0]}-{_hash(key)}"

    def targets(self, key: str) -> str:
        return f"{self.p}-T-{_hash(key)}"

    def peers(self, *parts: str) -> str:
        return f"{self.p}-P-{_hash(*parts)}"

    def block(self, *parts: str) -> str:
        return f"{self.p}-B-{_hash(*parts)}"

    def named(self, *parts: str) -> str:
        return f"{self.p}-N-{_hash(*parts)}"

    def hook(self) -> list[str]:
        """The jump from FORWARD (iptables argv after the chain name)."""
        return ["-m", "comment", "--comment", f"{HOOK_COMMENT} {self.p}", "-j", self.forward]


@dataclass(frozen=True)
class IPSet:
    kind: str                         # hash:ip | hash:net
    members: tuple[str, ...]          # "10.0.0.1"; "10.0.0.0/8"; "10.1.0.0/16 nomatch"


@dataclass
class Ruleset:
    """What the node's tables should hold: filter chains (P-FORWARD first) with their
    rules, the ipsets the rules refer to, and each policy's chains (`ns/name` → chains,
    to tell which policies a failed write concerned)."""
    chains: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, IPSet] = field(default_factory=dict)
    policy_chains: dict[str, list[str]] = field(default_factory=dict)

    def rules(self) -> int:
        return sum(len(r) for r in self.chains.values())


# -- pods ---------------------------------------------------------------------------------
def pod_ips(pod: Obj) -> list[str]:
    """The pod's IPv4 addresses (status.podIPs, else status.podIP)."""
    status = pod.get("status") or {}
    ips = [p.get("ip", "") for p in status.get("podIPs") or []] or [status.get("podIP", "")]
    out = []
    for ip in ips:
        try:
            if ip and ipaddress.ip_address(ip).version == 4:
                out.append(ip)
        except ValueError:
            continue
    return out


def active(pod: Obj) -> bool:
    """A pod policies apply to: pod network, an IP, not finished."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    return (not spec.get("hostNetwork") and status.get("phase") not in ("Succeeded", "Failed")
            and bool(pod_ips(pod)))


def _labels(obj: Obj) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _ns(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("namespace") or ""


def policy_key(obj: Obj) -> str:
    md = obj.get("metadata") or {}
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


def named_port(pod: Obj, name: str, protocol: str) -> int | None:
    """The containerPort called `name` with `protocol` in the pod, if any."""
    spec = pod.get("spec") or {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for p in c.get("ports") or []:
            if p.get("name") == name and (p.get("protocol") or "TCP") == protocol:
                return int(p["containerPort"])
    return None


# -- policies -----------------------------------------------------------------------------
def policy_types(spec: Obj) -> list[str]:
    """spec.policyTypes, defaulted as upstream when unset."""
    return list(spec.get("policyTypes") or
                (["Ingress"] + (["Egress"] if spec.get("egress") else [])))


def _selector(sel: Obj | None) -> LabelSelector:
    try:
        return label_selector_from_dict(sel)
    except SelectorError:              # validation rejects these; select nothing
        return LabelSelector.nothing()


@dataclass(frozen=True)
class Port:
    """One entry of a rule's ports (None: any port of any protocol)."""
    protocol: str
    port: int | str | None
    end_port: int | None

    def match(self, number: int | None = None) -> str:
        """iptables match for this port; `number`: a named port resolved."""
        p = self.protocol.lower()
        value = number if number is not None else self.port
        if value is None:
            return f"-p {p}"
        end = f":{self.end_port}" if self.end_port and number is None else ""
        return f"-p {p} -m {p} --dport {value}{end}"

    @property
    def is_named(self) -> bool:
        return isinstance(self.port, str) and not self.port.isdigit()


def _ports(rule: Obj) -> list[Port | None]:
    out: list[Port | None] = []
    for p in rule.get("ports") or []:
        proto = str(p.get("protocol") or "TCP").upper()
        if proto not in PROTOCOLS:
            continue
        port = p.get("port")
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        out.append(Port(proto, port, p.get("endPort")))
    return out or [None]


def _ip_block(block: Obj) -> IPSet | None:
    """An ipBlock as a hash:net set (IPv6 blocks: None). ipset's hash:net takes no /0,
    so 0.0.0.0/0 is its two halves."""
    try:
        net = ipaddress.ip_network(block.get("cidr", ""), strict=False)
    except ValueError:
        return None
    if net.version != 4:
        return None
    nets = list(net.subnets(new_prefix=1)) if net.prefixlen == 0 else [net]
    members = [str(n) for n in nets]
    for e in block.get("except") or []:
        try:
            ex = ipaddress.ip_network(e, strict=False)
        except ValueError:
            continue
        if ex.version == 4:
            members.append(f"{ex} nomatch")
    return IPSet("hash:net", tuple(sorted(members)))


def _in_block(ip: str, block: Obj) -> bool:
    addr = ipaddress.ip_address(ip)
    try:
        if addr not in ipaddress.ip_network(block.get("cidr", ""), strict=False):
            return False
        return not any(addr in ipaddress.ip_network(e, strict=False)
                       for e in block.get("except") or [])
    except (ValueError, TypeError):
        return False


class _Cluster:
    """The pods and namespaces policies select from, for one render."""

    def __init__(self, pods: Iterable[Obj], namespaces: Iterable[Obj]) -> None:
        self.pods = sorted((p for p in pods if active(p)), key=policy_key)
        self.ns_labels = {(n.get("metadata") or {}).get("name", ""): _labels(n)
                          for n in namespaces}

    def peer_pods(self, peer: Obj, policy_ns: str) -> list[Obj] | None:
        """The pods a peer without ipBlock selects (None: the peer has an ipBlock)."""
        if peer.get("ipBlock") is not None:
            return None
        pod_sel = _selector(peer.get("podSelector") or {})
        if peer.get("namespaceSelector") is None:
            return [p for p in self.pods if _ns(p) == policy_ns and pod_sel.matches(_labels(p))]
        ns_sel = _selector(peer.get("namespaceSelector"))
        return [p for p in self.pods if ns_sel.matches(self.ns_labels.get(_ns(p), {}))
                and pod_sel.matches(_labels(p))]


def _ips(pods: Iterable[Obj]) -> tuple[str, ...]:
    return tuple(sorted({ip for p in pods for ip in pod_ips(p)},
                        key=lambda ip: ipaddress.ip_address(ip)))


class _PolicyRenderer:
    """The chain of one policy in one direction, and the sets it needs."""

    def __init__(self, names: Names, out: Ruleset, cluster: _Cluster, policy: Obj,
                 direction: str, targets: list[Obj]) -> None:
        self.n, self.out, self.cluster = names, out, cluster
        self.key = policy_key(policy)
        self.ns = _ns(policy)
        self.direction = direction                 # Ingress | Egress
        self.targets = targets
        self.chain = names.policy_chain(direction, self.key)
        self.mark = INGRESS_MARK if direction == "Ingress" else EGRESS_MARK
        self.peer_dir = "src" if direction == "Ingress" else "dst"
        spec = policy.get("spec") or {}
        self.rules: list[Obj] = spec.get("ingress" if direction == "Ingress" else "egress") or []

    def render(self) -> list[str]:
        lines: list[str] = []
        for i, rule in enumerate(self.rules):
            peers = rule.get("from" if self.direction == "Ingress" else "to") or [None]
            for j, peer in enumerate(peers):
                for k, port in enumerate(_ports(rule)):
                    lines += self._rule(i, j, peer, k, port)
        return lines

    def _accept(self, i: int, matches: Sequence[str]) -> str:
        what = " ".join(m for m in matches if m)
        c = _comment(f"{self.key} {self.direction.lower()} rule {i}")
        return f"-A {self.chain} {c} {what + ' ' if what else ''}-j MARK --or-mark {self.mark}"

    def _peer_match(self, i: int, j: int, peer: Obj | None) -> str:
        if peer is None:
            return ""
        if peer.get("ipBlock") is not None:
            ipset = _ip_block(peer["ipBlock"]) or IPSet("hash:net", ())
            name = self.n.block(self.chain, str(i), str(j))
        else:
            ipset = IPSet("hash:ip", _ips(self.cluster.peer_pods(peer, self.ns) or []))
            name = self.n.peers(self.chain, str(i), str(j))
        self.out.sets[name] = ipset
        return f"-m set --match-set {name} {self.peer_dir}"

    def _rule(self, i: int, j: int, peer: Obj | None, k: int, port: Port | None) -> list[str]:
        if port is None or not port.is_named:
            return [self._accept(i, [self._peer_match(i, j, peer),
                                     port.match() if port else ""])]
        # A named port: the destination pods grouped by the number it names in each.
        if self.direction == "Ingress":
            peer_match = self._peer_match(i, j, peer)
            dests = self.targets
        else:
            peer_match = ""
            dests = self._egress_dests(peer)
        by_number: dict[int, list[Obj]] = {}
        for pod in dests:
            number = named_port(pod, str(port.port), port.protocol)
            if number is not None:
                by_number.setdefault(number, []).append(pod)
        lines = []
        for number, pods in sorted(by_number.items()):
            name = self.n.named(self.chain, str(i), str(j), str(k), str(number))
            self.out.sets[name] = IPSet("hash:ip", _ips(pods))
            lines.append(self._accept(i, [peer_match, f"-m set --match-set {name} dst",
                                          port.match(number)]))
        return lines

    def _egress_dests(self, peer: Obj | None) -> list[Obj]:
        if peer is None:
            return self.cluster.pods
        pods = self.cluster.peer_pods(peer, self.ns)
        if pods is not None:
            return pods
        return [p for p in self.cluster.pods
                if any(_in_block(ip, peer["ipBlock"]) for ip in pod_ips(p))]


def render(policies: Iterable[Obj], pods: Iterable[Obj], namespaces: Iterable[Obj],
           node_name: str, prefix: str) -> Ruleset:
    """The rules and sets enforcing `policies` for the pods of node `node_name`."""
    n = Names(prefix)
    cluster = _Cluster(pods, namespaces)
    local = [p for p in cluster.pods if (p.get("spec") or {}).get("nodeName") == node_name]
    out = Ruleset()
    out.chains[n.forward] = []
    jumps: dict[str, list[str]] = {"Ingress": [], "Egress": []}
    isolated: dict[str, list[Obj]] = {"Ingress": [], "Egress": []}
    for policy in sorted(policies, key=policy_key):
        spec = policy.get("spec") or {}
        sel = _selector(spec.get("podSelector") or {})
        targets = [p for p in local if _ns(p) == _ns(policy) and sel.matches(_labels(p))]
        if not targets:
            continue
        key = policy_key(policy)
        tset = n.targets(key)
        out.sets[tset] = IPSet("hash:ip", _ips(targets))
        for direction in policy_types(spec):
            if direction not in jumps:
                continue
            r = _PolicyRenderer(n, out, cluster, policy, direction, targets)
            out.chains[r.chain] = r.render()
            out.policy_chains.setdefault(key, []).append(r.chain)
            where = "dst" if direction == "Ingress" else "src"
            jumps[direction].append(
                f"-A {n.forward} {_comment(f'{key} {direction.lower()}')} -m set "
                f"--match-set {tset} {where} -j {r.chain}")
            isolated[direction] += targets
    out.sets[n.ingress] = IPSet("hash:ip", _ips(isolated["Ingress"]))
    out.sets[n.egress] = IPSet("hash:ip", _ips(isolated["Egress"]))
    out.chains[n.forward] = _forward(n, jumps, _ips(isolated["Ingress"] + isolated["Egress"]))
    return out


def _forward(n: Names, jumps: dict[str, list[str]], isolated_ips: Sequence[str]) -> list[str]:
    f = n.forward
    clear = f"-A {f} -j MARK --set-xmark 0x0/{MARKS}"
    lines = [f"-A {f} {_comment('established connections are kept')} -m conntrack "
             f"--ctstate RELATED,ESTABLISHED -j RETURN", clear]
    lines += [f"-A {f} {_comment('a pod cannot block itself')} -s {ip}/32 -d {ip}/32 -j RETURN"
              for ip in isolated_ips]
    lines += jumps["Egress"]
    lines.append(f"-A {f} {_comment('isolated for egress, no policy allows')} -m set "
                 f"--match-set {n.egress} src -m mark ! --mark {EGRESS_MARK}/{EGRESS_MARK} "
                 f"-j DROP")
    lines += jumps["Ingress"]
    lines.append(f"-A {f} {_comment('isolated for ingress, no policy allows')} -m set "
                 f"--match-set {n.ingress} dst -m mark ! --mark {INGRESS_MARK}/{INGRESS_MARK} "
                 f"-j DROP")
    lines.append(clear)
    return lines
