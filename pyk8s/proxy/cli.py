"""`pyk8s proxy`: kube-proxy alone, against the API server a kubeconfig names (upstream's
flag names where they exist)."""
from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from typing import Any

from pyk8s.cli.logging_setup import add_logging_args
from pyk8s.proxy.component import ProxyOptions, run_proxy


def add_proxy_parser(sub: Any) -> None:
    p = sub.add_parser("proxy", help="run the service proxy (kube-proxy) of a node")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    p.add_argument("--hostname-override", default="", help="this node's name (default: the "
                                                            "host name)")
    p.add_argument("--proxy-mode", choices=["iptables", "userspace"], default="iptables")
    p.add_argument("--cluster-cidr", default="",
                   help="the pods' CIDR(s), comma-separated: other sources are masqueraded "
                        "when they reach a cluster IP (default: the node's podCIDRs)")
    p.add_argument("--iptables-chain-prefix", default="KUBE",
                   help="pyk8s: prefix of the iptables chains (KUBE-SERVICES, …)")
    p.add_argument("--iptables-localhost-nodeports", default="true",
                   choices=["true", "false"], help="NodePorts answer on 127.0.0.1 too "
                                                   "(sets route_localnet)")
    p.add_argument("--vip-interface", default="",
                   help="userspace: a dummy link the cluster IPs are added to (root)")
    p.add_argument("--nodeport-address", default="0.0.0.0",
                   help="userspace: the address NodePorts listen on")
    p.add_argument("--cleanup", action="store_true",
                   help="remove the chains (or links) of this prefix and exit")
    add_logging_args(p)


def proxy_options(args: argparse.Namespace) -> ProxyOptions:
    return ProxyOptions(
        node_name=(args.hostname_override or socket.gethostname()).lower(),
        mode=args.proxy_mode, chain_prefix=args.iptables_chain_prefix,
        cluster_cidrs=[c.strip() for c in args.cluster_cidr.split(",") if c.strip()],
        vip_interface=args.vip_interface, nodeport_address=args.nodeport_address,
        localhost_nodeports=args.iptables_localhost_nodeports == "true")


async def _main(args: argparse.Namespace) -> None:
    from pyk8s.client.rest import RESTClient
    from pyk8s.proxy.component import make_backend
    o = proxy_options(args)
    if args.cleanup:
        backend = make_backend(o)
        await backend.cleanup()
        return
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with RESTClient.from_kubeconfig(args.kubeconfig,
                                          user_agent=f"pyk8s-proxy/{o.node_name}") as client:
        await run_proxy(client, stop, o)


def run_proxy_command(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_main(args))
    except ValueError as e:
        raise SystemExit(f"pyk8s proxy: {e}") from None
    return 0
