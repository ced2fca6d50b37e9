"""`pyk8s agent`: a node joining a cluster with the node token (the API server writes it
to DIR/node-token), running the kubelet with a container runtime."""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from pyk8s.client.loadbalancer import LoadBalancer
from pyk8s.client.rest import ClientConfig, RESTClient
from pyk8s.kubelet.bootstrap import BootstrapError, NodeCredentials, NodeIdentity
from pyk8s.kubelet.certmanager import CSRWatcher
from pyk8s.kubelet.kubelet import Kubelet, KubeletOptions
from pyk8s.kubelet.node import (NodeConfig, NodeResources, filesystem_bytes,
                                host_os_image, read_meminfo_bytes)
from pyk8s.kubelet.podworkers import default_pod_cidr
from pyk8s.kubelet.runtime import NotImplementedRuntime, Runtime, make_runtime

log = logging.getLogger("pyk8s.agent")

T = TypeVar("T")


def _bool_flag(value: str) -> bool:
    from pyk8s.api.meta import parse_bool
    try:
        return parse_bool(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _memory(value: str) -> int:
    from pyk8s.api.validation import parse_quantity
    q = parse_quantity(value)
    if q is None or q <= 0:
        raise SystemExit(f"--fake-memory: {value!r} is not a quantity")
    return int(q)


def add_agent_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("agent", help="run a node agent (kubelet) joined to a cluster")
    p.add_argument("--server", default=None,
                   help="API server URL, e.g. https://127.0.0.1:6443 (default: the "
                        "--bootstrap-kubeconfig's or --kubeconfig's); several, comma-"
                        "separated: the node's clients go through a local load balancer "
                        "that fails over between them (k3s's; docs/ha.md)")
    p.add_argument("--token", default=os.environ.get("PYK8S_TOKEN"),
                   help="bootstrap credentials: the cluster's node token (its DIR/node-token)")
    p.add_argument("--token-file", default=None, help="read the node token from this file")
    p.add_argument("--certificate-authority", default=None,
                   help="CA bundle of the API server (its DIR/tls/ca.crt); without it TLS is "
                        "not verified")
    p.add_argument("--data-dir", default=".pyk8s-agent", help="the agent's state")
    p.add_argument("--bootstrap-kubeconfig", default=None,
                   help="a kubeconfig with bootstrap credentials (a bootstrap token), used "
                        "to request the node's client certificate when --kubeconfig holds "
                        "no valid one (TLS bootstrapping)")
    p.add_argument("--kubeconfig", default=None,
                   help="the node's kubeconfig; written by bootstrapping, pointing at "
                        "DATA_DIR/pki/kubelet-client-current.pem (default: "
                        "DATA_DIR/kubelet.kubeconfig)")
    p.add_argument("--rotate-certificates", type=_bool_flag, nargs="?", const=True,
                   default=True, help="renew the client certificate through the "
                                      "certificates API as it nears expiry")
    p.add_argument("--rotate-server-certificates", type=_bool_flag, nargs="?", const=True,
                   default=True,
                   help="serve the kubelet API with a certificate from a "
                        "kubernetes.io/kubelet-serving CSR, renewed as it nears expiry "
                        "(false: a self-signed one)")
    p.add_argument("--client-ca-file", default=None,
                   help="CA bundle verifying client certificates to the kubelet API "
                        "(default: --certificate-authority, else the kubeconfig's CA)")
    p.add_argument("--node-name", default=None, help="default: the host name")
    p.add_argument("--count", type=int, default=1,
                   help="run this many hollow nodes in this process (--runtime fake), named "
                        "<node-name>-0 … <node-name>-(N-1), each with its own client "
                        "certificate (DATA_DIR/nodes/<name>/pki) and API client "
                        "(upstream kubemark)")
    p.add_argument("--startup-stagger", type=float, default=0.005,
                   help="with --count: seconds between two hollow nodes' start-up, so "
                        "registration does not stampede the API server")
    p.add_argument("--node-ip", default="",
                   help="the node's InternalIP, where the API server reaches its kubelet, "
                        "and (oci) the address of the pod network overlay's interface "
                        "(default: --flannel-iface's address, else the host's primary "
                        "address — the default route's); a loopback address is refused "
                        "when the API server is on another host")
    p.add_argument("--node-labels", default="", help="k=v,k2=v2 added to the Node")
    p.add_argument("--runtime", default="fake",
                   help="fake (hollow containers), process (host processes, no images) or "
                        "oci (containers from images with runc / crun; root)")
    p.add_argument("--pod-cidr", default=None, help="default: a per-node /24 in 10.244.0.0/16")
    p.add_argument("--cluster-cidr", default="10.42.0.0/16",
                   help="oci: the cluster's pod CIDR range, as the server's --cluster-cidr "
                        "(k3s agents learn it from the server): traffic leaving it is "
                        "masqueraded, and the overlay's default VNI derives from it")
    p.add_argument("--fake-cpu", type=int, default=None, help="report this many CPUs")
    p.add_argument("--fake-memory", default=None, help="report this much memory (e.g. 8Gi)")
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument("--pod-manifest-path", default="",
                   help="a directory (or file) of static pod manifests the kubelet runs "
                        "itself, shown in the API as mirror pods")
    p.add_argument("--file-check-frequency", type=float, default=20.0,
                   help="seconds between re-reads of --pod-manifest-path")
    p.add_argument("--node-status-update-frequency", type=float, default=10.0)
    p.add_argument("--node-status-report-frequency", type=float, default=300.0)
    p.add_argument("--kubelet-port", type=int, default=10250,
                   help="the kubelet's HTTPS port (logs, exec for the API server); 0: any "
                        "free port; if taken, the agent runs without it")
    p.add_argument("--volume-sync-period", type=float, default=60.0,
                   help="pyk8s: seconds between refreshes of mounted ConfigMaps / Secrets / "
                        "downward API files (upstream: the pod resync, ~60 s)")
    p.add_argument("--node-lease-renew-interval", type=float, default=10.0,
                   help="pyk8s: seconds between Lease renewals (upstream: a quarter of the "
                        "40 s lease duration)")
    from pyk8s.cli.logging_setup import add_logging_args
    add_logging_args(p)
    add_container_runtime_args(p)
    return p


def add_container_runtime_args(p: Any) -> None:
    """The container flags of `pyk8s agent` and `pyk8s up` (most for the oci runtime)."""
    from pyk8s.cli.main import parse_duration
    p.add_argument("--container-restart-backoff", type=float, default=10.0,
                   help="first crash-loop back-off in seconds (doubles up to the maximum)")
    p.add_argument("--container-restart-backoff-max", type=float, default=300.0)
    p.add_argument("--image-gc-high-threshold", type=int, default=85,
                   help="oci: disk usage percent of the image store's filesystem that "
                        "starts image garbage collection")
    p.add_argument("--image-gc-low-threshold", type=int, default=80,
                   help="oci: the usage percent image garbage collection frees down to")
    p.add_argument("--image-minimum-gc-age", type=parse_duration, default=120.0,
                   help="oci: an unused image is kept at least this long (e.g. 2m)")
    p.add_argument("--pod-max-pids", type=int, default=-1,
                   help="oci: the most processes a pod may run (its pod cgroup's pids.max; "
                        "-1: no limit)")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST:PORT",
                   help="oci: a registry reached over plain HTTP (or HTTPS without "
                        "verification), e.g. 127.0.0.1:5000; repeatable")
    p.add_argument("--cni-bridge", default="cni0",
                   help="oci: the Linux bridge of the node's pod network")
    p.add_argument("--cluster-dns", default="",
                   help="oci: the cluster DNS server's IP(s), comma-separated (pods with "
                        "dnsPolicy ClusterFirst use them; none: the node's resolv.conf, with "
                        "a MissingClusterDNS event, as upstream)")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf",
                   help="the resolver configuration dnsPolicy Default pods get")
    p.add_argument("--flannel-backend", choices=["vxlan", "none"], default="vxlan",
                   help="oci: the pod network between nodes (k3s's flag): vxlan, flannel's "
                        "VXLAN overlay; none, pods reach only their own node's pods (the "
                        "bridge masquerades what leaves the node)")
    p.add_argument("--flannel-iface", default="",
                   help="oci: the interface the overlay uses (default: the node IP's)")
    p.add_argument("--flannel-vni", type=int, default=None,
                   help="oci: the overlay's VXLAN network identifier, the same on every node "
                        "(default: 1 with --cluster-cidr 10.42.0.0/16, else derived from the "
                        "cluster CIDR, so that clusters sharing a host differ)")
    p.add_argument("--flannel-port", type=int, default=8472,
                   help="oci: the overlay's UDP port, the same on every node")


def apply_container_runtime_args(opts: KubeletOptions, args: argparse.Namespace) -> None:
    """The kubelet's share of add_container_runtime_args' flags."""
    opts.backoff_initial = args.container_restart_backoff
    opts.backoff_max = args.container_restart_backoff_max
    opts.image_gc_high_threshold = args.image_gc_high_threshold
    opts.image_gc_low_threshold = args.image_gc_low_threshold
    opts.image_minimum_gc_age = args.image_minimum_gc_age


def oci_options(args: argparse.Namespace, node_name: str, node_ip: str = "") -> dict[str, Any]:
    """The oci runtime's options; with `node_ip` and --flannel-backend vxlan, its overlay
    (on --cluster-cidr: `up`'s, or the agent's own flag)."""
    return {"node_name": node_name,
            "insecure_registries": tuple(args.insecure_registry or ()),
            "cni_bridge": args.cni_bridge,
            "cluster_dns": tuple(x.strip() for x in (args.cluster_dns or "").split(",")
                                 if x.strip()),
            "cluster_domain": args.cluster_domain, "resolv_conf": args.resolv_conf,
            "pod_max_pids": args.pod_max_pids, "overlay": node_overlay(args, node_ip)}


def node_overlay(args: argparse.Namespace, node_ip: str) -> Any:
    """The node's VXLAN overlay (pyk8s/kubelet/network/overlay.py), or None without a node
    IP or with --flannel-backend none."""
    if not node_ip or args.flannel_backend == "none":
        return None
    from pyk8s.kubelet.network.overlay import (DEFAULT_CLUSTER_CIDR, Overlay, OverlayError,
                                               overlay_config)
    try:
        return Overlay(overlay_config(getattr(args, "cluster_cidr", "") or DEFAULT_CLUSTER_CIDR,
                                      node_ip, args.flannel_iface, args.flannel_vni,
                                      args.flannel_port))
    except OverlayError as e:
        raise SystemExit(f"pyk8s: the pod network overlay: {e}") from None


def agent_node_ip(args: argparse.Namespace) -> str:
    """--node-ip; else --flannel-iface's address (k3s); else the host's primary address."""
    from pyk8s.hostaddress import primary_address
    if args.node_ip:
        return str(args.node_ip)
    if args.flannel_iface:
        from pyk8s.kubelet.network.overlay import interface_address
        addr = interface_address(args.flannel_iface)
        if not addr:
            raise SystemExit(f"pyk8s agent: --flannel-iface {args.flannel_iface}: no such "
                             "interface, or it has no IPv4 address")
        return addr
    return primary_address()


def check_node_ip(node_ip: str, server: str) -> None:
    """Refuse a loopback node IP when the API server is on another host: neither it (logs,
    exec, port-forward) nor the other nodes (the overlay) could reach this node."""
    import urllib.parse
    try:
        loopback = ipaddress.ip_address(node_ip).is_loopback
    except ValueError:
        raise SystemExit(f"pyk8s agent: --node-ip {node_ip!r} is not an IP address") from None
    if not server or not loopback:
        return
    from pyk8s.kubelet.network.overlay import is_local_address
    for url in server.split(","):
        host = urllib.parse.urlsplit(url.strip()).hostname or ""
        try:
            addrs = {str(i[4][0]) for i in socket.getaddrinfo(host, None, socket.AF_INET)}
        except OSError:
            continue
        if addrs and not any(ipaddress.ip_address(a).is_loopback or is_local_address(a)
                             for a in addrs):
            raise SystemExit(
                f"pyk8s agent: the node IP {node_ip} is a loopback address, but the API "
                f"server {url.strip()} is on another host: neither it nor the other nodes "
                "could reach this node. Give the node's address with --node-ip (or the "
                "interface with --flannel-iface)")


def _labels(s: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (x.strip() for x in s.split(","))):
        k, sep, v = part.partition("=")
        if not sep:
            raise SystemExit(f"--node-labels: {part!r} is not key=value")
        out[k] = v
    return out


NodeAddons = Callable[[RESTClient, str, asyncio.Event], Awaitable[None]]


async def _with_addons(addons: NodeAddons | None, client: RESTClient, name: str,
                       stop: asyncio.Event, main: Awaitable[None]) -> None:
    """Run the node's kubelet (`main`) and what runs beside it (proxy, DNS: given by the
    caller, so the kubelet imports neither) until `stop`."""
    await _beside(main, addons(client, name, stop) if addons is not None else None, stop,
                  20, "node addons")


async def _beside(main: Awaitable[None], side: Awaitable[None] | None, stop: asyncio.Event,
                  timeout: float, what: str) -> None:
    """Run `main` with `side` beside it; once `main` ends, `stop` is set and `side` has
    `timeout` seconds to finish (its failure is logged, not raised)."""
    task = asyncio.ensure_future(side) if side is not None else None
    try:
        await main
    finally:
        if task is not None:
            stop.set()
            try:
                await asyncio.wait_for(task, timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
            except Exception:
                log.exception("%s failed", what)


async def _with_overlay(runtime: Runtime, client: RESTClient, name: str, stop: asyncio.Event,
                        main: Awaitable[None], pki_dir: Path) -> None:
    """Run `main` (the kubelet) and the runtime's pod network overlay, if it has one,
    until `stop` (set when `main` ends, so the overlay stops too; the runtime's shutdown
    removes its device and chains). The overlay watches every Node as the node's service
    proxy identity, system:kube-proxy (k3s's flannel runs with a controller identity of
    its own): the Node authorizer lets a node read only its own Node."""
    overlay = getattr(runtime, "overlay", None)
    if overlay is None:
        await main
        return

    async def run_overlay() -> None:
        from pyk8s.cli.addonidentity import PROXY, addon_identity
        ident = await until_stopped(addon_identity(
            client, pki_dir, "overlay-client", PROXY, user_agent=f"pyk8s-overlay/{name}"),
            stop)
        if ident is None:
            return
        rotation = asyncio.create_task(ident.run(stop), name="overlay-certificate")
        try:
            await overlay.run(client, name, stop, nodes_client=ident.client)
        finally:
            rotation.cancel()
            await asyncio.gather(rotation, return_exceptions=True)
            await ident.close()

    await _beside(main, run_overlay(), stop, 30, "the pod network overlay")


def bootstrap_config(args: argparse.Namespace) -> ClientConfig | None:
    """The bootstrap credentials: --bootstrap-kubeconfig, else --token / --token-file with
    --server and --certificate-authority; None without either."""
    if args.bootstrap_kubeconfig:
        try:
            config = ClientConfig.from_kubeconfig(args.bootstrap_kubeconfig)
        except (OSError, ValueError) as e:
            raise SystemExit(f"pyk8s agent: unable to load the bootstrap kubeconfig: {e}")
        if args.server:
            config = dataclasses.replace(config, server=args.server.rstrip("/"))
        return config
    token = args.token
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
    if not token:
        return None
    if not args.server:
        raise SystemExit("pyk8s agent: --server is required with --token / --token-file")
    ca = Path(args.certificate_authority).read_bytes() if args.certificate_authority else None
    if args.server.startswith("https://") and ca is None:
        log.warning("no --certificate-authority: the API server's certificate is not verified")
    return ClientConfig(server=args.server.rstrip("/"), token=token, ca_data=ca,
                        insecure_skip_tls_verify=ca is None)


def node_credentials(args: argparse.Namespace, data_dir: Path) -> NodeCredentials:
    kubeconfig = Path(args.kubeconfig).resolve() if args.kubeconfig \
        else data_dir / "kubelet.kubeconfig"
    creds = NodeCredentials(kubeconfig=kubeconfig, pki_dir=data_dir / "pki",
                            bootstrap=bootstrap_config(args),
                            rotate=bool(args.rotate_certificates))
    if creds.bootstrap is None and not kubeconfig.exists():
        raise SystemExit("pyk8s agent: no bootstrap credentials (--token, --token-file or "
                         f"--bootstrap-kubeconfig) and no kubeconfig at {kubeconfig}")
    return creds


async def until_stopped(aw: Awaitable[T], stop: asyncio.Event) -> T | None:
    """`aw`'s result, or None if `stop` is set first (then `aw` is cancelled)."""
    task = asyncio.ensure_future(aw)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    return task.result()


async def run_agent(args: argparse.Namespace, addons: NodeAddons | None = None) -> None:
    """`pyk8s agent` until SIGINT / SIGTERM; with several --server URLs behind a local
    load balancer (pyk8s/client/loadbalancer.py)."""
    args.node_ip = agent_node_ip(args)
    check_node_ip(args.node_ip, args.server or "")   # the servers, not the balancer
    lb = await start_load_balancer(args)
    try:
        await _run_agent(args, addons)
    finally:
        if lb is not None:
            await lb.close()


async def start_load_balancer(args: argparse.Namespace) -> LoadBalancer | None:
    """With several --server URLs: the load balancer over them, started; `args.server`
    becomes its local URL, which the node's kubeconfig of an earlier run is pointed at too
    (its port changes from run to run). None for one server."""
    if not args.server or "," not in args.server:
        return None
    ca = Path(args.certificate_authority).read_bytes() if args.certificate_authority else None
    try:
        lb = LoadBalancer(args.server.split(","), ca_data=ca)
    except ValueError as e:
        raise SystemExit(f"pyk8s agent: --server: {e}") from None
    await lb.start()
    args.server = lb.url
    kubeconfig = Path(args.kubeconfig).resolve() if args.kubeconfig \
        else Path(args.data_dir).resolve() / "kubelet.kubeconfig"
    _point_kubeconfig_at(kubeconfig, lb.url)
    return lb


def _point_kubeconfig_at(path: Path, server: str) -> None:
    """Set every cluster's server in the kubeconfig at `path` (if any) to `server`."""
    import yaml

    from pyk8s.kubelet.certificates import write_private
    if not path.exists():
        return
    cfg = yaml.safe_load(path.read_text()) or {}
    clusters = [c.get("cluster") or {} for c in cfg.get("clusters") or []]
    if all(c.get("server") == server for c in clusters):
        return
    for c in clusters:
        c["server"] = server
    write_private(path, yaml.safe_dump(cfg, sort_keys=False).encode())


async def _run_agent(args: argparse.Namespace, addons: NodeAddons | None) -> None:
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if args.count < 1:
        raise SystemExit("pyk8s agent: --count must be at least 1")
    if args.count > 1 and args.runtime != "fake":
        raise SystemExit("pyk8s agent: --count > 1 needs --runtime fake (hollow nodes)")
    name = (args.node_name or socket.gethostname()).lower()
    node_ip = agent_node_ip(args)
    try:
        runtime = make_runtime(args.runtime, str(data_dir), oci_options(
            args, name, node_ip if args.runtime == "oci" else ""))
    except NotImplementedRuntime as e:
        raise SystemExit(f"pyk8s agent: {e}") from None
    creds = node_credentials(args, data_dir)
    resources = NodeResources(
        cpu=args.fake_cpu or os.cpu_count() or 1,
        memory_bytes=_memory(args.fake_memory) if args.fake_memory else read_meminfo_bytes(),
        ephemeral_bytes=filesystem_bytes(str(data_dir)), pods=args.max_pods)
    node = NodeConfig(name=name, node_ip=node_ip, resources=resources,
                      runtime_version=runtime.version(), labels=_labels(args.node_labels))
    if args.runtime != "fake":
        node.os_image = host_os_image()
    opts = KubeletOptions(node=node, pod_cidr=args.pod_cidr or default_pod_cidr(name),
                          status_update_frequency=args.node_status_update_frequency,
                          status_report_frequency=args.node_status_report_frequency,
                          lease_interval=args.node_lease_renew_interval,
                          pod_manifest_path=args.pod_manifest_path,
                          file_check_frequency=args.file_check_frequency,
                          data_dir=str(data_dir), volume_sync_period=args.volume_sync_period)
    apply_container_runtime_args(opts, args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.count > 1:
        await run_hollow_nodes(creds, opts, args.count, args.startup_stagger, stop, data_dir)
        return
    identity = NodeIdentity(creds, name, user_agent=f"pyk8s-kubelet/{name}")
    client_ca_file = args.client_ca_file or args.certificate_authority
    try:
        await run_node(identity, runtime, opts, stop, addons, port=args.kubelet_port,
                       client_ca=Path(client_ca_file).read_bytes() if client_ca_file else None,
                       rotate_server_certificates=bool(args.rotate_server_certificates))
    except BootstrapError as e:
        log.error("%s", e)
        raise SystemExit(f"pyk8s agent: {e}") from None


async def run_node(identity: NodeIdentity, runtime: Runtime, opts: KubeletOptions,
                   stop: asyncio.Event, addons: NodeAddons | None, *, port: int,
                   bind: str = "0.0.0.0", client_ca: bytes | None = None,
                   rotate_server_certificates: bool = True) -> None:
    """One node until `stop`: its client certificate (kept, or bootstrapped: a Denied /
    Failed request raises BootstrapError), then its kubelet, kubelet server (client
    certificates verified against `client_ca`, default the API server's CA) and
    certificate rotation."""
    try:
        client = await until_stopped(identity.start(), stop)
        if client is None:
            return
        node = opts.node
        log.info("node %s: runtime %s, pod CIDR %s", node.name, runtime.version(),
                 opts.pod_cidr)
        from pyk8s.kubelet.server import KubeletServer
        kubelet = Kubelet(client, runtime, opts)
        kserver = KubeletServer(kubelet, Path(opts.data_dir), port, bind=bind,
                                client_ca=client_ca or client.config.ca_data,
                                cluster_ca=client.config.ca_data,
                                rotate_server_certificates=rotate_server_certificates)
        node.kubelet_port = await kserver.start()
        rotation = asyncio.create_task(identity.run(stop), name="client-certificate")
        try:
            await _with_addons(addons, client, node.name, stop,
                               _with_overlay(runtime, client, node.name, stop, kubelet.run(stop),
                                             Path(opts.data_dir) / "pki"))
        finally:
            rotation.cancel()
            await asyncio.gather(rotation, return_exceptions=True)
            await kserver.stop()
            await runtime.shutdown()   # no container process outlives the node
    finally:
        await identity.close()


def hollow_node_names(base: str, count: int) -> list[str]:
    return [base] if count == 1 else [f"{base}-{i}" for i in range(count)]


# A hollow node's client: one connection for its pods watch, one for its requests (each
# connection is a TLS handshake with the node's certificate and ~40 KB of buffers).
HOLLOW_NODE_CONNECTIONS = 2


async def run_hollow_nodes(creds: NodeCredentials, base: KubeletOptions, count: int,
                           stagger: float, stop: asyncio.Event, data_dir: Path) -> None:
    """`count` kubelets on the fake runtime in this process (upstream kubemark's hollow
    nodes): each its own client certificate (bootstrapped concurrently through one
    shared bootstrap client and CSR watch, kept in DATA_DIR/nodes/<name>/pki, so a
    restart reuses it) and REST client, Node, Lease and status loops and pod informer, one
    pod worker; node i starts `i * stagger` seconds in, which also spreads their
    heartbeats."""
    from pyk8s.kubelet.runtimes.fake import FakeRuntime
    names = hollow_node_names(base.node.name, count)
    log.info("pyk8s agent: %d hollow nodes %s … %s (runtime fake)", count, names[0], names[-1])
    boot = (RESTClient(creds.bootstrap, user_agent=f"pyk8s-kubelet/{base.node.name}-hollow "
                       "(bootstrap)", max_inflight=64)
            if creds.bootstrap is not None else None)
    watcher = CSRWatcher(boot, keep_open=True) if boot is not None else None

    async def one(i: int, name: str) -> None:
        if stagger > 0 and i:
            try:
                await asyncio.wait_for(stop.wait(), i * stagger)
                return
            except asyncio.TimeoutError:
                pass
        node_creds = dataclasses.replace(creds, pki_dir=data_dir / "nodes" / name / "pki",
                                         write_kubeconfig=False)
        identity = NodeIdentity(node_creds, name, user_agent=f"pyk8s-kubelet/{name}",
                                client_kw={"connection_limit": HOLLOW_NODE_CONNECTIONS},
                                bootstrap_client=boot, watcher=watcher)
        try:
            client = await until_stopped(identity.start(), stop)
            if client is None:
                return
            node = dataclasses.replace(base.node, name=name, labels=dict(base.node.labels))
            opts = dataclasses.replace(base, node=node, pod_cidr=default_pod_cidr(name),
                                       workers=1)
            rotation = asyncio.create_task(identity.run(stop), name=f"{name}-certificate")
            try:
                await Kubelet(client, FakeRuntime(), opts).run(stop)
            finally:
                rotation.cancel()
                await asyncio.gather(rotation, return_exceptions=True)
        finally:
            await identity.close()

    try:
        results = await asyncio.gather(*(one(i, n) for i, n in enumerate(names)),
                                       return_exceptions=True)
    finally:
        if watcher is not None:
            await watcher.close()
        if boot is not None:
            await boot.close()
    for name, r in zip(names, results):
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
            log.error("hollow node %s failed: %s", name, r)


def default_runtime() -> str:
    """`oci` when available (root, runc or crun, the CNI plugins), else `process`."""
    from pyk8s.kubelet.runtimes.oci import oci_available
    return "oci" if oci_available() else "process"


async def run_local_node(server: str, token: str, ca_file: Path | None, data_dir: Path,
                         node_name: str | None, node_ip: str, runtime_name: str,
                         stop: asyncio.Event, pod_manifest_path: str = "",
                         runtime_args: argparse.Namespace | None = None,
                         addons: NodeAddons | None = None) -> None:
    """`pyk8s up`'s own node (as k3s server's embedded agent): a kubelet in the same
    process, bootstrapping its client certificate with the node token as any agent does
    (DATA_DIR/agent/kubelet.kubeconfig); its containers stop with it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    name = (node_name or socket.gethostname()).lower()
    runtime = make_runtime(runtime_name, str(data_dir), oci_options(
        runtime_args, name, node_ip if runtime_name == "oci" else "") if runtime_args else None)
    resources = NodeResources(cpu=os.cpu_count() or 1, memory_bytes=read_meminfo_bytes(),
                              ephemeral_bytes=filesystem_bytes(str(data_dir)), pods=110)
    ca = ca_file.read_bytes() if ca_file is not None else None
    bootstrap = ClientConfig(server=server.rstrip("/"), token=token or None, ca_data=ca,
                             insecure_skip_tls_verify=ca is None)
    node = NodeConfig(name=name, node_ip=node_ip, resources=resources,
                      runtime_version=runtime.version(), os_image=host_os_image())
    opts = KubeletOptions(node=node, pod_cidr=default_pod_cidr(name), data_dir=str(data_dir),
                          pod_manifest_path=str(Path(pod_manifest_path).resolve())
                          if pod_manifest_path else "")
    if runtime_args is not None:
        apply_container_runtime_args(opts, runtime_args)
    creds = NodeCredentials(kubeconfig=data_dir / "kubelet.kubeconfig",
                            pki_dir=data_dir / "pki", bootstrap=bootstrap)
    identity = NodeIdentity(creds, name, user_agent=f"pyk8s-kubelet/{name}")
    try:
        # An ephemeral port (Node status reports it): several `up`s may share a host.
        await run_node(identity, runtime, opts, stop, addons, port=0,
                       bind="127.0.0.1" if ipaddress.ip_address(node_ip).is_loopback
                       else "0.0.0.0",
                       client_ca=ca, rotate_server_certificates=ca is not None)
    except BootstrapError as e:
        log.error("local node: %s", e)
