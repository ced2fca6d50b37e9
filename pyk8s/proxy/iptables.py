"""kube-proxy's iptables mode: the NAT and filter chains of upstream's proxier
(pkg/proxy/iptables), named with a prefix so that several clusters can share a host.

nat:    PREROUTING, OUTPUT → P-SERVICES: per cluster IP:port, mark off-cluster sources for
        masquerade, then → P-SVC-x (all usable endpoints) or P-SVL-x (this node's, for
        internalTrafficPolicy Local) → probability-weighted jumps → P-SEP-y → DNAT; the
        last rule sends local destinations to P-NODEPORTS → P-EXT-x (masquerade unless
        externalTrafficPolicy Local) → P-SVC-x / P-SVL-x. Session affinity ClientIP with
        the `recent` match. POSTROUTING → P-POSTROUTING masquerades marked packets (mark
        0x4000, upstream's).
filter: P-SERVICES / P-EXTERNAL-SERVICES reject connections to service ports without
        endpoints (drop: without local endpoints under a Local policy); P-FORWARD accepts
        marked and established traffic; P-FIREWALL drops martian packets to 127/8 (from
        route_localnet, which localhost NodePorts need).

Everything is applied in one `iptables-restore --noflush` per sync: a chain declared is
flushed and refilled atomically, a chain of ours no longer needed is flushed and deleted.
IPv4 only (ip6tables is not driven).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from pyk8s.proxy.model import Endpoint, ServicePort

log = logging.getLogger(__name__)

MASQ_MARK = "0x4000"
PREFIX_RE = re.compile(r"^[A-Z][A-Z0-9]{0,6}$")


def valid_prefix(prefix: str) -> bool:
    """A chain prefix: 1-7 capitals/digits, so P-SVC-<16> stays within 28 characters."""
    return bool(PREFIX_RE.match(prefix))


def _hash(*parts: str) -> str:
    """Upstream's portProtoHash: base32 of sha256, 16 characters."""
    digest = hashlib.sha256("".join(parts).encode()).digest()
    return base64.b32encode(digest).decode()[:16]


@dataclass
class Chains:
    prefix: str

    def __post_init__(self) -> None:
        p = self.prefix
        self.services = f"{p}-SERVICES"
        self.external = f"{p}-EXTERNAL-SERVICES"
        self.nodeports = f"{p}-NODEPORTS"
        self.postrouting = f"{p}-POSTROUTING"
        self.mark_masq = f"{p}-MARK-MASQ"
        self.forward = f"{p}-FORWARD"
        self.firewall = f"{p}-FIREWALL"

    def svc(self, sp: ServicePort) -> str:
        return f"{self.prefix}-SVC-{_hash(sp.key, sp.protocol)}"

    def svl(self, sp: ServicePort) -> str:
        return f"{self.prefix}-SVL-{_hash(sp.key, sp.protocol)}"

    def ext(self, sp: ServicePort) -> str:
        return f"{self.prefix}-EXT-{_hash(sp.key, sp.protocol)}"

    def sep(self, sp: ServicePort, ep: Endpoint) -> str:
        return f"{self.prefix}-SEP-{_hash(sp.key, sp.protocol, ep.address)}"

    def hooks(self) -> list[tuple[str, str, list[str]]]:
        """(table, built-in chain, rule) jumps into our chains, in insertion order."""
        c = lambda text: ["-m", "comment", "--comment", text]  # noqa: E731
        new = ["-m", "conntrack", "--ctstate", "NEW"]
        return [
            ("nat", "PREROUTING", c("kubernetes service portals") + ["-j", self.services]),
            ("nat", "OUTPUT", c("kubernetes service portals") + ["-j", self.services]),
            ("nat", "POSTROUTING", c("kubernetes postrouting rules") + ["-j", self.postrouting]),
            ("filter", "INPUT", new + c("kubernetes externally-visible service portals")
             + ["-j", self.external]),
            ("filter", "INPUT", ["-j", self.firewall]),
            ("filter", "FORWARD", c("kubernetes forwarding rules") + ["-j", self.forward]),
            ("filter", "FORWARD", new + c("kubernetes service portals") + ["-j", self.services]),
            ("filter", "FORWARD", new + c("kubernetes externally-visible service portals")
             + ["-j", self.external]),
            ("filter", "OUTPUT", new + c("kubernetes service portals") + ["-j", self.services]),
            ("filter", "OUTPUT", ["-j", self.firewall]),
        ]


def _comment(text: str) -> str:
    return f'-m comment --comment "{text}"'


def _proto(sp: ServicePort) -> str:
    p = sp.protocol.lower()
    return f"-p {p} -m {p}"


def _ipv4(ips: Iterable[str]) -> list[str]:
    return [ip for ip in ips if ipaddress.ip_address(ip).version == 4]


@dataclass
class Rendered:
    nat: list[str]
    filter: list[str]
    nat_chains: list[str]
    filter_chains: list[str]

    def rules(self) -> int:
        return len(self.nat) + len(self.filter)


def render(ports: Sequence[ServicePort], node_name: str, prefix: str = "KUBE",
           cluster_cidrs: Sequence[str] = ()) -> Rendered:
    """The rules for `ports` as seen from node `node_name`. `cluster_cidrs`: pod CIDRs
    whose sources need no masquerade to reach a cluster IP (empty: masquerade all)."""
    ch = Chains(prefix)
    nat: list[str] = []
    flt: list[str] = []
    nat_chains = [ch.services, ch.nodeports, ch.postrouting, ch.mark_masq]
    filter_chains = [ch.services, ch.external, ch.forward, ch.firewall]
    cidrs = [c for c in cluster_cidrs if ipaddress.ip_network(c, strict=False).version == 4]
    sep_done: set[str] = set()
    last: list[str] = []                # P-SERVICES' final NODEPORTS jump goes last

    def endpoint_chain(chain: str, sp: ServicePort, eps: list[Endpoint]) -> None:
        nat_chains.append(chain)
        seps = [(ch.sep(sp, e), e) for e in eps]
        if sp.affinity_seconds:
            for sep, _ in seps:
                nat.append(f"-A {chain} {_comment(sp.key)} -m recent --name {sep} --mask "
                           f"255.255.255.255 --rcheck --seconds {sp.affinity_seconds} "
                           f"--reap -j {sep}")
        for i, (sep, e) in enumerate(seps):
            left = len(seps) - i
            stat = (f"-m statistic --mode random --probability {1.0 / left:.11f} "
                    if left > 1 else "")
            nat.append(f"-A {chain} {_comment(f'{sp.key} -> {e.address}')} {stat}-j {sep}")
            if sep in sep_done:
                continue
            sep_done.add(sep)
            nat_chains.append(sep)
            nat.append(f"-A {sep} {_comment(sp.key)} -s {e.ip}/32 -j {ch.mark_masq}")
            recent = (f"-m recent --name {sep} --mask 255.255.255.255 --set "
                      if sp.affinity_seconds else "")
            nat.append(f"-A {sep} {_comment(sp.key)} {recent}{_proto(sp)} -j DNAT "
                       f"--to-destination {e.address}")

    for sp in ports:
        ips = _ipv4(sp.cluster_ips)
        if not ips:
            continue
        every = sp.usable()
        local = sp.usable([e for e in sp.endpoints if e.node_name == node_name])
        wanted: dict[str, list[Endpoint]] = {}
        internal_chain = ch.svl(sp) if sp.internal_local else ch.svc(sp)
        internal_eps = local if sp.internal_local else every
        if internal_eps:
            wanted[internal_chain] = internal_eps
        external_chain = ch.svl(sp) if sp.external_local else ch.svc(sp)
        external_eps = local if sp.external_local else every
        if sp.node_port and external_eps:
            wanted[external_chain] = external_eps
        for chain, eps in wanted.items():
            endpoint_chain(chain, sp, eps)
        for ip in ips:
            dst = f"-d {ip}/32 {_proto(sp)} --dport {sp.port}"
            if internal_eps:
                if cidrs:
                    for c in cidrs:
                        nat.append(f"-A {ch.services} {_comment(sp.key + ' cluster IP')} "
                                   f"! -s {c} {dst} -j {ch.mark_masq}")
                else:
                    nat.append(f"-A {ch.services} {_comment(sp.key + ' cluster IP')} {dst} "
                               f"-j {ch.mark_masq}")
                nat.append(f"-A {ch.services} {_comment(sp.key + ' cluster IP')} {dst} "
                           f"-j {internal_chain}")
            else:
                why, verdict = (("has no local endpoints", "DROP") if every
                                else ("has no endpoints", "REJECT"))
                flt.append(f"-A {ch.services} {_comment(f'{sp.key} {why}')} {dst} "
                           f"-j {verdict}")
        if not sp.node_port:
            continue
        np = f"{_proto(sp)} --dport {sp.node_port}"
        if external_eps:
            ext = ch.ext(sp)
            nat_chains.append(ext)
            nat.append(f"-A {ch.nodeports} {_comment(sp.key)} {np} -j {ext}")
            if sp.external_local:
                nat.append(f"-A {ext} {_comment('masquerade LOCAL traffic for ' + sp.key)} "
                           f"-s 127.0.0.0/8 -j {ch.mark_masq}")
            else:
                nat.append(f"-A {ext} {_comment('masquerade traffic for ' + sp.key)} "
                           f"-j {ch.mark_masq}")
            nat.append(f"-A {ext} -j {external_chain}")
        else:
            why, verdict = (("has no local endpoints", "DROP") if every
                            else ("has no endpoints", "REJECT"))
            flt.append(f"-A {ch.external} {_comment(f'{sp.key} {why}')} -m addrtype "
                       f"--dst-type LOCAL {np} -j {verdict}")
    note = _comment("kubernetes service nodeports; NOTE: this must be the last rule in "
                    "this chain")
    last.append(f"-A {ch.services} {note} -m addrtype --dst-type LOCAL -j {ch.nodeports}")
    nat = nat + last + [
        f"-A {ch.postrouting} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        f"-A {ch.postrouting} -j MARK --xor-mark {MASQ_MARK}",
        f"-A {ch.postrouting} {_comment('kubernetes service traffic requiring SNAT')} "
        f"-j MASQUERADE --random-fully",
        f"-A {ch.mark_masq} -j MARK --or-mark {MASQ_MARK}",
    ]
    flt += [
        f"-A {ch.forward} -m conntrack --ctstate INVALID -j DROP",
        f"-A {ch.forward} {_comment('kubernetes forwarding rules')} -m mark --mark "
        f"{MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
        f"-A {ch.forward} {_comment('kubernetes forwarding conntrack rule')} -m conntrack "
        f"--ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A {ch.firewall} {_comment('block incoming localnet connections')} -d 127.0.0.0/8 "
        f"! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
    ]
    return Rendered(nat, flt, nat_chains, filter_chains)


ChainKey = tuple[str, str]          # (table, chain)


def by_chain(r: Rendered) -> dict[ChainKey, list[str]]:
    """Every chain of `r` (empty ones too) with its rules, in order."""
    out: dict[ChainKey, list[str]] = {}
    for table, chains, rules in (("filter", r.filter_chains, r.filter),
                                 ("nat", r.nat_chains, r.nat)):
        for c in chains:
            out.setdefault((table, c), [])
        for rule in rules:
            out[(table, rule.split(" ", 2)[1])].append(rule)
    return out


def restore_input(want: dict[ChainKey, list[str]], stale: Iterable[ChainKey] = ()) -> str:
    """iptables-restore --noflush input: each chain in `want` declared (so flushed) and
    refilled; each `stale` chain flushed and deleted (after every chain that jumped to it
    has been refilled). Chains not named are left as they are."""
    out: list[str] = []
    gone = set(stale) - set(want)
    for table in ("filter", "nat"):
        mine = [c for t, c in want if t == table]
        old = sorted(c for t, c in gone if t == table)
        if not mine and not old:
            continue
        out.append(f"*{table}")
        out += [f":{c} - [0:0]" for c in mine + old]
        for c in mine:
            out += want[(table, c)]
        out += [f"-X {c}" for c in old]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def chains_in_save(text: str, prefix: str) -> list[str]:
    """Our chains in `iptables-save` output."""
    return [line[1:].split()[0] for line in text.splitlines()
            if line.startswith(f":{prefix}-")]


class IptablesError(Exception):
    pass


async def _run(argv: Sequence[str], stdin: str | None = None,
               timeout: float = 120.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None),
                                    timeout)
    return proc.returncode or 0, out.decode(errors="replace")


def _write_sysctl(name: str, value: str) -> bool:
    p = Path("/proc/sys") / name.replace(".", "/")
    try:
        if p.read_text().strip() != value:
            p.write_text(value)
        return True
    except OSError as e:
        log.warning("cannot set %s=%s: %s", name, value, e)
        return False


def iptables_available() -> bool:
    return all(shutil.which(b) for b in ("iptables", "iptables-restore", "iptables-save"))


class IptablesProxier:
    """Keeps the node's chains (prefix `prefix`) equal to the rendered service ports."""

    def __init__(self, node_name: str, prefix: str = "KUBE",
                 cluster_cidrs: Sequence[str] = (), localhost_nodeports: bool = True) -> None:
        if not valid_prefix(prefix):
            raise ValueError(f"invalid iptables chain prefix {prefix!r} (1-7 of A-Z0-9, "
                             "starting with a letter)")
        self.node_name = node_name
        self.prefix = prefix
        self.chains = Chains(prefix)
        self.cluster_cidrs = list(cluster_cidrs)
        self.localhost_nodeports = localhost_nodeports
        self._applied: dict[ChainKey, list[str]] = {}   # what the tables hold now
        self._leftover: set[ChainKey] = set()            # a previous run's chains
        self._last_full = 0.0
        self.full_sync_period = 3600.0                  # upstream's FullSyncPeriod
        self.hook_check_period = 10.0                   # upstream checks its canary chain
        self._last_hook_check = 0.0                     # 0: setup has not run
        self._repair_hooks = False
        self.last_rules = 0
        self.last_chains_written = 0

    async def setup(self) -> None:
        """Sysctls upstream needs (bridged pod traffic through iptables; localhost
        NodePorts), the chains a previous run left (to delete), and the hooks."""
        if not iptables_available():
            raise IptablesError("iptables mode needs iptables, iptables-save and "
                                "iptables-restore (apt-get install iptables)")
        _write_sysctl("net.ipv4.ip_forward", "1")
        if Path("/proc/sys/net/bridge").exists():
            _write_sysctl("net.bridge.bridge-nf-call-iptables", "1")
        else:
            log.warning("br_netfilter is not loaded: traffic between pods on one bridge "
                        "bypasses iptables, so a pod reaching a service backed by a pod on "
                        "the same node may fail (modprobe br_netfilter)")
        if self.localhost_nodeports:
            _write_sysctl("net.ipv4.conf.all.route_localnet", "1")
        for table in ("nat", "filter"):
            rc, out = await _run(["iptables-save", "-t", table])
            if rc == 0:
                self._leftover.update((table, c) for c in chains_in_save(out, self.prefix))
        self._applied.clear()                            # the next sync is a full one
        # The chains must exist before the hooks can jump to them.
        await self.sync([])
        await self._insert_missing_hooks()
        self._last_hook_check = time.monotonic()

    async def _insert_missing_hooks(self) -> int:
        """Insert the jumps from the built-in chains that are missing; how many were."""
        missing = 0
        for table, chain, rule in self.chains.hooks():
            rc, _ = await _run(["iptables", "-w", "-t", table, "-C", chain, *rule])
            if rc != 0:
                missing += 1
                rc, out = await _run(["iptables", "-w", "-t", table, "-I", chain, "1", *rule])
                if rc != 0:
                    raise IptablesError(f"iptables -t {table} -I {chain}: {out.strip()}")
        return missing

    async def _check_hooks(self) -> None:
        """Every `hook_check_period`: if someone removed our jumps or chains (another
        program flushing, `iptables -F`), rewrite everything and put the jumps back, as
        upstream's canary chain triggers a full resync."""
        if time.monotonic() - self._last_hook_check < self.hook_check_period:
            return
        self._last_hook_check = time.monotonic()
        for table, chain, rule in self.chains.hooks():
            rc, _ = await _run(["iptables", "-w", "-t", table, "-C", chain, *rule])
            if rc != 0:
                log.warning("the proxy's jump from %s/%s is gone (removed by someone "
                            "else?): restoring every rule", table, chain)
                self._applied.clear()               # the next restore is a full one
                self._repair_hooks = True
                return

    async def sync(self, ports: Sequence[ServicePort]) -> float:
        """Apply the rules for `ports`; the seconds it took. Only chains whose rules
        changed are rewritten (upstream's MinimizeIPTablesRestore), except for a full
        rewrite after setup, every `full_sync_period`, and when the jumps into our chains
        were removed (checked every `hook_check_period`)."""
        t0 = time.perf_counter()
        if self._last_hook_check:
            await self._check_hooks()
        r = render(ports, self.node_name, self.prefix, self.cluster_cidrs)
        want = by_chain(r)
        full = not self._applied or time.monotonic() - self._last_full > self.full_sync_period
        changed = want if full else {k: v for k, v in want.items()
                                     if self._applied.get(k) != v}
        stale = (set(self._applied) | self._leftover) - set(want)
        text = restore_input(changed, stale)
        if text:
            rc, out = await _run(["iptables-restore", "--noflush", "--wait"], text)
            if rc != 0:
                self._applied.clear()                    # unknown state: full next time
                raise IptablesError(f"iptables-restore: {out.strip()[:2000]}")
        if full:
            self._last_full = time.monotonic()
        self._applied, self._leftover = want, set()
        if self._repair_hooks:
            self._repair_hooks = False
            await self._insert_missing_hooks()
        self.last_rules = r.rules()
        self.last_chains_written = len(changed)
        return time.perf_counter() - t0

    async def cleanup(self) -> None:
        """Remove the hooks and every chain of ours (`pyk8s proxy --cleanup`, and when a
        node stops: nothing of it is left on the host)."""
        for table, chain, rule in self.chains.hooks():
            while (await _run(["iptables", "-w", "-t", table, "-D", chain, *rule]))[0] == 0:
                pass
        ours = set(self._applied) | self._leftover
        for table in ("nat", "filter"):
            rc, out = await _run(["iptables-save", "-t", table])
            if rc == 0:
                ours.update((table, c) for c in chains_in_save(out, self.prefix))
        text = restore_input({}, ours)
        if text:
            rc, out = await _run(["iptables-restore", "--noflush", "--wait"], text)
            if rc != 0:
                log.warning("removing the proxy's chains: %s", out.strip()[:500])
        self._applied.clear()
        self._leftover.clear()
