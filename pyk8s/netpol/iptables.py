"""Putting a `Ruleset` (rules.py) into the node's tables, the way the service proxy does.

Each sync writes, in this order:
1. the ipsets whose members changed, with one `ipset restore`: a set is filled under a
   temporary name and swapped in, so rules never see it half-filled;
2. the chains whose rules changed, with one `iptables-restore --noflush` (the proxy's
   `restore_input`: a chain declared is flushed and refilled atomically, a chain of ours no
   longer wanted is deleted);
3. `ipset destroy` of the sets no rule refers to any more.

The jump from FORWARD into P-FORWARD must come before the service proxy's (its chain
accepts masqueraded traffic) and the CNI plugins' (they accept pod traffic): it is
inserted first and put back first whenever anything but another network-policy jump
precedes it, checked at every sync (the controller syncs at least every few seconds). If
the jump or chains vanish (an `iptables -F`), everything is rewritten.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pyk8s.netpol.rules import HOOK_COMMENT, IPSet, Names, Ruleset, render
from pyk8s.proxy.iptables import (IptablesError, _run, _write_sysctl, chains_in_save,
                                  iptables_available, restore_input)

log = logging.getLogger(__name__)


def ipset_available() -> bool:
    return shutil.which("ipset") is not None


def ipset_restore_input(changed: dict[str, IPSet], tmp: str) -> str:
    """`ipset restore` input refilling each set of `changed` through `tmp`."""
    out: list[str] = []
    for name, s in sorted(changed.items()):
        out.append(f"create {name} {s.kind} family inet -exist")
        out.append(f"create {tmp} {s.kind} family inet -exist")
        out.append(f"flush {tmp}")
        out += [f"add {tmp} {m}" for m in s.members]
        out += [f"swap {tmp} {name}", f"destroy {tmp}"]
    return "\n".join(out) + "\n" if out else ""


def hook_in_place(forward_rules: list[str], names: Names) -> bool | None:
    """Whether our jump is in FORWARD (`iptables -S FORWARD` lines) ahead of everything but
    other network-policy jumps; None when it is missing."""
    mine = f'--comment "{HOOK_COMMENT} {names.p}"'
    appended = [r for r in forward_rules if r.startswith("-A FORWARD ")]
    for rule in appended:
        if mine in rule:
            return True
        if f'--comment "{HOOK_COMMENT} ' not in rule:
            return False if any(mine in r for r in appended) else None
    return None


class PolicyFirewall:
    """Keeps the node's network-policy chains and sets (prefix `prefix`) equal to the
    rendered ruleset."""

    def __init__(self, prefix: str) -> None:
        self.names = Names(prefix)
        self.tmp_set = f"{prefix}-TMP"
        self._chains: dict[str, list[str]] = {}      # what the tables hold now
        self._sets: dict[str, IPSet] = {}
        self._leftover_chains: set[str] = set()      # a previous run's
        self._leftover_sets: set[str] = set()
        self._set_up = False
        self._repair_hook = False
        self.last_written: list[str] = []            # chains and sets of the last sync

    async def setup(self) -> None:
        """Check the tools; bridged pod traffic through iptables (br_netfilter); note a
        previous run's chains and sets (to delete); our empty chains and the jump."""
        if not iptables_available() or not ipset_available():
            raise IptablesError("network policies need iptables, iptables-save, "
                                "iptables-restore and ipset (apt-get install iptables ipset)")
        if not Path("/proc/sys/net/bridge").exists() and shutil.which("modprobe"):
            await _run(["modprobe", "br_netfilter"])
        if not (Path("/proc/sys/net/bridge").exists()
                and _write_sysctl("net.bridge.bridge-nf-call-iptables", "1")):
            log.error("br_netfilter is not loaded: traffic between pods on one bridge "
                      "bypasses iptables, so network policies between pods of this node are "
                      "not enforced (modprobe br_netfilter)")
        rc, out = await _run(["iptables-save", "-t", "filter"])
        if rc == 0:
            self._leftover_chains = set(chains_in_save(out, self.names.p))
        self._leftover_sets = set(await self._our_sets())
        await _run(["ipset", "destroy", self.tmp_set])
        self._chains.clear()
        self._sets.clear()
        try:
            await self.sync(render([], [], [], "", self.names.p))
            await self._ensure_hook()
        except BaseException:
            await self.cleanup()           # nothing half-made is left behind
            raise
        self._set_up = True

    async def _our_sets(self) -> list[str]:
        rc, out = await _run(["ipset", "list", "-n"])
        return [s for s in out.split() if s.startswith(f"{self.names.p}-")] if rc == 0 else []

    async def _forward_rules(self) -> list[str]:
        rc, out = await _run(["iptables", "-w", "-S", "FORWARD"])
        if rc != 0:
            raise IptablesError(f"iptables -S FORWARD: {out.strip()}")
        return out.splitlines()

    async def _ensure_hook(self) -> None:
        """Put the jump first if it is missing or behind another rule."""
        state = hook_in_place(await self._forward_rules(), self.names)
        if state:
            return
        hook = self.names.hook()
        if state is False:
            log.info("network policy: a rule came before our jump from FORWARD; putting "
                     "it first again")
            while (await _run(["iptables", "-w", "-D", "FORWARD", *hook]))[0] == 0:
                pass
        rc, out = await _run(["iptables", "-w", "-I", "FORWARD", "1", *hook])
        if rc != 0:
            raise IptablesError(f"iptables -I FORWARD: {out.strip()}")

    async def _check_hook(self) -> None:
        """Our jump first, and our chains still there (else everything is rewritten at
        this sync and the jump put back)."""
        if not self._set_up:
            return
        rc, _ = await _run(["iptables", "-w", "-S", self.names.forward])
        state = hook_in_place(await self._forward_rules(), self.names)
        if rc != 0 or state is None:
            log.warning("network policy: our jump or chains are gone (removed by someone "
                        "else?): rewriting every rule")
            self._forget()
            self._repair_hook = True
        elif state is False:
            await self._ensure_hook()

    def _forget(self) -> None:
        """After a failed or lost write: what we had written counts as leftovers, so the
        next sync rewrites every chain and set and deletes the ones no longer wanted."""
        self._leftover_chains |= set(self._chains)
        self._leftover_sets |= set(self._sets)
        self._chains.clear()
        self._sets.clear()

    async def sync(self, rs: Ruleset) -> None:
        """Write what changed (see the module docstring); IptablesError if a write failed
        (the next sync then rewrites everything)."""
        await self._check_hook()
        sets = {k: v for k, v in rs.sets.items() if self._sets.get(k) != v}
        chains = {k: v for k, v in rs.chains.items() if self._chains.get(k) != v}
        stale_chains = (set(self._chains) | self._leftover_chains) - set(rs.chains)
        stale_sets = (set(self._sets) | self._leftover_sets) - set(rs.sets)
        self.last_written = sorted(chains) + sorted(sets)
        try:
            text = ipset_restore_input(sets, self.tmp_set)
            if text:
                rc, out = await _run(["ipset", "restore"], text)
                if rc != 0:
                    await _run(["ipset", "destroy", self.tmp_set])
                    raise IptablesError(f"ipset restore: {out.strip()[:2000]}")
            text = restore_input({("filter", c): r for c, r in chains.items()},
                                 {("filter", c) for c in stale_chains})
            if text:
                rc, out = await _run(["iptables-restore", "--noflush", "--wait"], text)
                if rc != 0:
                    raise IptablesError(f"iptables-restore: {out.strip()[:2000]}")
        except BaseException:
            self._leftover_chains |= set(chains)
            self._leftover_sets |= set(sets)
            self._forget()
            raise
        self._chains = dict(rs.chains)
        self._sets = dict(rs.sets)
        self._leftover_chains = set()
        self._leftover_sets = set()
        for name in sorted(stale_sets):
            if not await self._destroy(name):
                self._leftover_sets.add(name)
        if self._repair_hook:
            await self._ensure_hook()
            self._repair_hook = False

    async def _destroy(self, name: str) -> bool:
        rc, out = await _run(["ipset", "destroy", name])
        if rc != 0 and "does not exist" not in out:
            log.warning("ipset destroy %s: %s", name, out.strip())
            return False
        return True

    async def cleanup(self) -> None:
        """Remove the jump, every chain and every set of ours (when the node stops, and
        `pyk8s killall`)."""
        hook = self.names.hook()
        while (await _run(["iptables", "-w", "-D", "FORWARD", *hook]))[0] == 0:
            pass
        chains = set(self._chains) | self._leftover_chains
        rc, out = await _run(["iptables-save", "-t", "filter"])
        if rc == 0:
            chains.update(chains_in_save(out, self.names.p))
        text = restore_input({}, {("filter", c) for c in chains})
        if text:
            rc, out = await _run(["iptables-restore", "--noflush", "--wait"], text)
            if rc != 0:
                log.warning("removing the network-policy chains: %s", out.strip()[:500])
        sets = set(self._sets) | self._leftover_sets | set(await self._our_sets())
        for name in sorted(sets):
            await self._destroy(name)
        self._chains.clear()
        self._sets.clear()
        self._leftover_chains.clear()
        self._leftover_sets.clear()
        self._set_up = False
