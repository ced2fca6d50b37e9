"""`pyk8s dns`: the cluster DNS server alone, against the API server a kubeconfig names."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
from typing import Any

from pyk8s.cli.logging_setup import add_logging_args, setup_logging
from pyk8s.client.rest import RESTClient
from pyk8s.dns.component import DNSOptions, run_dns

log = logging.getLogger("pyk8s.dns")


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or `:PORT` (all IPv4 addresses) → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    try:
        n = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: bad port") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: port out of range")
    return host, n


def add_dns_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("dns", help="run the cluster DNS server")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--listen", type=parse_listen, action="append", default=None,
                   metavar="HOST:PORT",
                   help="UDP and TCP address to serve on (repeatable; default "
                        "127.0.0.1:10053)")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf",
                   help="upstream resolvers for names outside the cluster")
    p.add_argument("--node-name", default=socket.gethostname().lower(),
                   help="names this server's EndpointSlice (default: the host name)")
    p.add_argument("--publish-address", default=None,
                   help="publish this address in an EndpointSlice of Service kube-dns")
    p.add_argument("--service-ip", default=None,
                   help="create Service kube-system/kube-dns with this ClusterIP if absent")
    add_logging_args(p)
    return p


def dns_options(args: argparse.Namespace) -> DNSOptions:
    return DNSOptions(cluster_domain=args.cluster_domain,
                      listen=list(args.listen or [("127.0.0.1", 10053)]),
                      upstream_resolv_conf=args.resolv_conf, node_name=args.node_name,
                      publish_address=args.publish_address, service_ip=args.service_ip)


async def _serve(args: argparse.Namespace) -> None:
    client = RESTClient.from_kubeconfig(args.kubeconfig, user_agent="pyk8s-dns")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_dns(client, stop, dns_options(args))
    finally:
        await client.close()


def run_dns_command(args: argparse.Namespace) -> int:
    """Run until SIGINT / SIGTERM; 1 when the server cannot start."""
    setup_logging(args)
    try:
        asyncio.run(_serve(args))
    except OSError as e:
        log.error("DNS server failed: %s", e)
        return 1
    return 0


__all__ = ["add_dns_parser", "run_dns_command", "dns_options", "parse_listen"]
