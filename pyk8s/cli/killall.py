"""`pyk8s killall --data-dir DIR` (`make down`): stop a cluster or node and remove everything
it left on the host, as k3s's `k3s-killall.sh` — for a cluster killed with SIGKILL that is
not going to be started again (a restarted node cleans up after itself).

1. The pyk8s processes of DIR (`up`, `agent`, …, found by their `--data-dir`) get SIGTERM,
   then SIGKILL after `--timeout`.
2. The node's leftovers go: the process runtime's container processes (the sessions it
   recorded; this needs no root), runc containers (and so their processes), rootfs mounts,
   pod network namespaces, CNI attachments (IPs, veths) and the pod bridge, pod cgroups,
   the service proxy's iptables chains and the network policy's chains and ipsets, the pod
   network overlay's VXLAN device and chains. The bridge, the overlay's VNI and the node
   name come from the host claims the node held (/run/pyk8s) and from its client
   certificate.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger("pyk8s.killall")


def add_killall_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("killall", help="stop the cluster or node of a data dir and remove "
                                       "what it left on the host (containers, mounts, "
                                       "network, cgroups, iptables chains)")
    p.add_argument("--data-dir", default=".pyk8s", help="the cluster's or agent's data dir")
    p.add_argument("--timeout", type=float, default=15.0,
                   help="seconds between SIGTERM and SIGKILL")
    p.add_argument("--log-level", default=os.environ.get("PYK8S_LOG_LEVEL", "INFO"))


def pyk8s_processes(data_dir: Path) -> list[int]:
    """Pids of pyk8s commands running with `--data-dir` = `data_dir` (not this one)."""
    want = data_dir.resolve()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if not any("pyk8s" in a for a in args[:4]) or "killall" in args:
            continue
        for i, a in enumerate(args):
            value = args[i + 1] if a == "--data-dir" and i + 1 < len(args) else \
                a.split("=", 1)[1] if a.startswith("--data-dir=") else None
            if value is not None and (cwd / value).resolve() == want:
                found.append(int(entry.name))
                break
    return found


def stop_processes(pids: list[int], timeout: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in pids if _alive(p)]
        for pid in alive:
            log.info("sending %s to pid %d", sig.name, pid)
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline and any(_alive(p) for p in alive):
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _node_dirs(data_dir: Path) -> list[Path]:
    """The node data dirs under DIR: `up`'s DIR/agent, or DIR itself for an agent."""
    from pyk8s.kubelet.runtimes.process import GROUPS_DIR
    return [d for d in (data_dir / "agent", data_dir) if (d / "runc").is_dir() or
            (d / "pki").is_dir() or (d / "cni").is_dir() or (d / GROUPS_DIR).is_dir()]


def _claimed_bridges(node_dir: Path) -> list[str]:
    from pyk8s.kubelet.network.hostclaims import claimed_names
    return claimed_names("bridge", str(node_dir.resolve()))


def _node_name(node_dir: Path) -> str:
    from pyk8s.kubelet.certificates import load_pem_file
    try:
        cn = load_pem_file(node_dir / "pki" / "kubelet-client-current.pem").common_name
    except (OSError, ValueError):
        return ""
    return cn[len("system:node:"):] if cn.startswith("system:node:") else ""


async def clean_node(node_dir: Path) -> None:
    """Remove what the node of `node_dir` left (see the module docstring)."""
    from pyk8s.kubelet.network.podnetwork import PodNetwork
    from pyk8s.kubelet.runtimes.oci import OCIRuntime
    from pyk8s.proxy.component import default_chain_prefix
    from pyk8s.proxy.iptables import IptablesProxier, iptables_available
    # Only a node that did not stop cleanly leaves its claim files (unlocked): they name
    # its bridge. Without them there is no bridge of its to remove, and no chains: the
    # default `cni0` / `KUBE-` ones may be another cluster's, still running.
    bridges = _claimed_bridges(node_dir)
    node = _node_name(node_dir)
    log.info("cleaning node %s (data dir %s, bridges %s)", node or "?", node_dir,
             ", ".join(bridges) or "none known")
    if node:
        # containers, mounts, CNI attachments, namespaces, pod dirs, cgroups
        await OCIRuntime(node_dir, node).remove_leftovers()
    await PodNetwork.cleanup_leftovers(node_dir / "cni", bridges=bridges)
    if iptables_available():
        from pyk8s.netpol.iptables import PolicyFirewall, ipset_available
        from pyk8s.netpol.rules import chain_prefix
        for bridge in bridges:
            await IptablesProxier(node or "node", default_chain_prefix(bridge)).cleanup()
            if ipset_available():   # network-policy chains and ipsets
                await PolicyFirewall(chain_prefix(default_chain_prefix(bridge))).cleanup()
    from pyk8s.kubelet.network.overlay import remove_leftovers as remove_overlay
    await remove_overlay(str(node_dir.resolve()))
    from pyk8s.kubelet.network.hostclaims import remove_stale
    remove_stale(str(node_dir.resolve()))


def run_killall(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        log.error("no data dir %s", data_dir)
        return 1
    stop_processes(pyk8s_processes(data_dir), args.timeout)
    from pyk8s.kubelet.runtimes.process import ProcessRuntime
    for node_dir in _node_dirs(data_dir):   # host processes: no root needed
        asyncio.run(ProcessRuntime(node_dir).remove_leftovers())
    if os.geteuid() != 0:
        log.warning("not root: processes stopped, but containers, mounts, network and "
                    "cgroups can only be removed by root")
        return 0
    for node_dir in _node_dirs(data_dir):
        asyncio.run(clean_node(node_dir))
    return 0
