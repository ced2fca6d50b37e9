"""What runs beside every node's kubelet in `pyk8s up` and `pyk8s agent`: the service
proxy and the cluster DNS server (k3s runs kube-proxy in its agent and CoreDNS as pods;
we run both in the node's process, talking to the API server like any component).

- proxy mode `auto`: iptables for the oci runtime (pods behind a bridge), userspace for the
  process runtime (pods are host processes), none for the fake runtime;
- DNS (oci runtime, unless --disable-dns): listens on the node's pod-bridge gateway
  (the first address of its podCIDR), port 53, publishes itself as the node's endpoint of
  `kube-system/kube-dns` (internalTrafficPolicy Local: pods reach their own node's DNS
  through the cluster IP), and ensures that Service with the --cluster-dns IP;
- NetworkPolicy enforcement (oci runtime, unless --disable-network-policy; pyk8s/netpol/),
  with the proxy's identity, chains named after the proxy's prefix (KUBE → KUBENP-…).
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
from pathlib import Path
from typing import Any

from pyk8s.client.rest import ApiError, RESTClient
from pyk8s.kubelet.agent import until_stopped

log = logging.getLogger(__name__)

DEFAULT_SERVICE_RANGE = "10.96.0.0/12"


def add_node_addon_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("service proxy and cluster DNS")
    g.add_argument("--proxy-mode", choices=["auto", "iptables", "userspace", "none"],
                   default="auto", help="auto: iptables with the oci runtime, userspace with "
                                        "the process runtime, none with the fake runtime")
    g.add_argument("--proxy-chain-prefix", default="",
                   help="iptables chain prefix (default KUBE with the cni0 bridge, else "
                        "derived from --cni-bridge)")
    g.add_argument("--proxy-vip-interface", default="",
                   help="userspace mode: a dummy link to add the cluster IPs to (root)")
    g.add_argument("--disable-dns", action="store_true",
                   help="do not run the cluster DNS server on this node")
    g.add_argument("--disable-network-policy", action="store_true",
                   help="do not enforce NetworkPolicies on this node (enforced with the oci "
                        "runtime)")


def dns_service_ip(service_range: str = DEFAULT_SERVICE_RANGE) -> str:
    """The tenth address of the service range (upstream's 10.96.0.10)."""
    net = ipaddress.ip_network(service_range.split(",")[0].strip(), strict=False)
    return str(net.network_address + 10)


def proxy_mode(requested: str, runtime: str) -> str:
    if requested != "auto":
        return requested
    return {"oci": "iptables", "process": "userspace"}.get(runtime, "none")


async def _node_pod_cidr(client: RESTClient, node: str, stop: asyncio.Event) -> str | None:
    while not stop.is_set():
        try:
            spec = (await client.get(f"/api/v1/nodes/{node}")).get("spec") or {}
            if spec.get("podCIDR"):
                return str(spec["podCIDR"])
        except (ApiError, OSError):
            pass
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
    return None


async def run_node_addons(client: RESTClient, node_name: str, runtime: str,
                          args: argparse.Namespace, stop: asyncio.Event,
                          pki_dir: Path | None = None) -> None:
    """The proxy, network-policy enforcement and DNS of node `node_name` until `stop`,
    with the add-on identities (pyk8s/cli/addonidentity.py: the proxy's also serves network
    policy) the node (`client`) asks for and keeps in `pki_dir`."""
    from pyk8s.cli.addonidentity import DNS, PROXY, AddonIdentity, addon_identity
    tasks: list[asyncio.Task[None]] = []
    identities: list[AddonIdentity] = []

    async def identity(prefix: str, subject: Any) -> RESTClient:
        ident = await addon_identity(client, pki_dir, prefix, subject,
                                     user_agent=f"pyk8s-{prefix}/{node_name}")
        identities.append(ident)
        tasks.append(asyncio.create_task(ident.run(stop), name=f"{prefix}-certificate"))
        return ident.client

    mode = proxy_mode(getattr(args, "proxy_mode", "auto"), runtime)
    run_dns_server = runtime == "oci" and not getattr(args, "disable_dns", False)
    run_netpol = runtime == "oci" and not getattr(args, "disable_network_policy", False)
    from pyk8s.proxy.component import default_chain_prefix
    bridge = getattr(args, "cni_bridge", "cni0") or "cni0"
    chain_prefix = getattr(args, "proxy_chain_prefix", "") or default_chain_prefix(bridge)
    try:
        proxy_client = None
        if mode != "none" or run_netpol:
            proxy_client = await until_stopped(identity("kube-proxy-client", PROXY), stop)
        if mode != "none" and proxy_client is not None:
            from pyk8s.proxy.component import ProxyOptions, run_proxy
            cidr = getattr(args, "cluster_cidr", "") or ""
            o = ProxyOptions(node_name=node_name, mode=mode, chain_prefix=chain_prefix,
                             cluster_cidrs=[c.strip() for c in cidr.split(",") if c.strip()],
                             vip_interface=getattr(args, "proxy_vip_interface", ""))
            tasks.append(asyncio.create_task(run_proxy(proxy_client, stop, o), name="proxy"))
        if run_netpol and proxy_client is not None:
            from pyk8s.netpol.controller import NetworkPolicyOptions, run_network_policy
            from pyk8s.netpol.rules import chain_prefix as netpol_prefix
            np = NetworkPolicyOptions(node_name=node_name,
                                      chain_prefix=netpol_prefix(chain_prefix))
            tasks.append(asyncio.create_task(run_network_policy(proxy_client, stop, np),
                                             name="network-policy"))
        if run_dns_server:
            dns_client = await until_stopped(identity("kube-dns-client", DNS), stop)
            if dns_client is not None:
                tasks.append(asyncio.create_task(
                    _run_dns(dns_client, client, node_name, args, stop), name="dns"))
        if not tasks:
            return
        for t in tasks:  # a failure is logged when it happens, not when the node stops
            t.add_done_callback(_log_failure)
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for t in tasks:
            t.cancel()
        for ident in identities:
            await ident.close()


def _log_failure(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed: %r", task.get_name(), task.exception())


async def _run_dns(client: RESTClient, node_client: RESTClient, node_name: str,
                   args: argparse.Namespace, stop: asyncio.Event) -> None:
    """The DNS server with its own `client`; the node's Node (its pod CIDR, hence the
    listening address) is read with the node's."""
    from pyk8s.dns.component import DNSOptions, run_dns
    cidr = await _node_pod_cidr(node_client, node_name, stop)
    if cidr is None:
        return
    gateway = str(ipaddress.ip_network(cidr, strict=False).network_address + 1)
    service_ip = (getattr(args, "cluster_dns", "") or "").split(",")[0].strip() or None
    o = DNSOptions(cluster_domain=getattr(args, "cluster_domain", "") or "cluster.local",
                   listen=[(gateway, 53)], node_name=node_name, publish_address=gateway,
                   service_ip=service_ip,
                   upstream_resolv_conf=getattr(args, "resolv_conf", "") or "/etc/resolv.conf")
    log.info("cluster DNS of node %s on %s:53 (service IP %s)", node_name, gateway, service_ip)
    await run_dns(client, stop, o)
