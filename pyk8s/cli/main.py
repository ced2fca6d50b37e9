"""The `pyk8s` command: `server` (the API server alone), `up` (the all-in-one cluster: API
server, controllers, scheduler and a local node's kubelet) and `controller-manager` (the controllers alone)."""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import re
import signal
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

from pyk8s.apiserver.app import APIServer, ServerConfig
from pyk8s.apiserver.authn import ADMIN, Authenticator, ServiceAccountSigner, UserInfo
from pyk8s.apiserver.certs import ensure_credentials, write_kubeconfig
from pyk8s.cli.logging_setup import add_logging_args, setup_logging
from pyk8s.storage import open_storage

log = logging.getLogger("pyk8s")


DEFAULT_SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/12"


def _service_cidrs_flag(value: str) -> str:
    from pyk8s.registry.service.ranges import RangeError, parse_service_cidrs
    try:
        parse_service_cidrs(value)
    except RangeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def _authorization_modes_flag(value: str) -> str:
    from pyk8s.apiserver.authz.union import parse_modes
    try:
        return ",".join(parse_modes(value))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _port_range_flag(value: str) -> str:
    from pyk8s.registry.service.ranges import RangeError, parse_port_range
    try:
        return str(parse_port_range(value))
    except RangeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _ip_flag(value: str) -> str:
    import ipaddress
    if not value.strip():
        return ""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IP address: {value!r}") from None


def default_advertise_address(bind: str) -> str:
    """--advertise-address's default: the bind address when it is a specific one; for
    0.0.0.0 / :: the host's primary address (hostaddress.py)."""
    import ipaddress
    try:
        if not ipaddress.ip_address(bind).is_unspecified:
            return str(ipaddress.ip_address(bind))
    except ValueError:  # a host name
        try:
            return socket.gethostbyname(bind)
        except OSError:
            return "127.0.0.1"
    from pyk8s.hostaddress import primary_address
    return primary_address()


def _add_server_args(p: argparse.ArgumentParser, up: bool = False) -> None:
    p.add_argument("--data-dir", default=".pyk8s", help="state, certificates and kubeconfig")
    p.add_argument("--bind", default="0.0.0.0",
                   help="address to listen on (default: all, as kube-apiserver's "
                        "--bind-address; pods reach the API server through the kubernetes "
                        "Service at the advertised address)")
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--advertise-address", type=_ip_flag, default="",
                   help="the API server's address in the kubernetes Service's endpoints "
                        "(default: --bind when specific, else the host's primary address — "
                        "the default route's — else its first non-loopback IPv4, else "
                        "127.0.0.1; loopback addresses are not published)")
    # `up`: one flag for the API server and the controllers (nodeipam); unset, the API
    # server uses the default and nodeipam excludes nothing (as kube-controller-manager).
    p.add_argument("--service-cluster-ip-range", type=_service_cidrs_flag,
                   default=None if up else DEFAULT_SERVICE_CLUSTER_IP_RANGE,
                   help="the Services' CIDR range (cluster IPs; at most 20 host bits); "
                        f"default {DEFAULT_SERVICE_CLUSTER_IP_RANGE}" +
                        ("; also never handed out as node pod CIDRs" if up else ""))
    p.add_argument("--service-node-port-range", type=_port_range_flag, default="30000-32767",
                   help="the range of node ports of NodePort and LoadBalancer Services")
    p.add_argument("--storage", choices=["sqlite", "memory", "etcd"], default="sqlite")
    p.add_argument("--etcd-servers", default="http://127.0.0.1:2379",
                   help="with --storage etcd: comma-separated etcd client URLs")
    p.add_argument("--token", default=None,
                   help="with --storage etcd: the cluster token (k3s's): the first server "
                        "stores the CA, keys and tokens in etcd sealed with it, servers "
                        "given it join them (default: DATA_DIR/server-token, made by a "
                        "first server; docs/ha.md)")
    p.add_argument("--token-file", default=None, help="read the cluster token from this file")
    p.add_argument("--encryption-provider-config", default="",
                   help="file with an EncryptionConfiguration: how resources are encrypted "
                        "at rest (aescbc, aesgcm, secretbox, identity)")
    p.set_defaults(encryption=None)
    p.add_argument("--insecure-http", action="store_true",
                   help="serve plain HTTP without authentication (tests only)")
    p.add_argument("--watch-cache-size", type=int, default=5000,
                   help="events kept per resource for watch resume")
    p.add_argument("--bookmark-interval", type=float, default=15.0,
                   help="seconds between watch bookmarks")
    p.add_argument("--compaction-interval", type=float, default=300.0,
                   help="seconds between storage compactions (0 disables)")
    g = p.add_argument_group("authorization")
    g.add_argument("--authorization-mode", type=_authorization_modes_flag, default="Node,RBAC",
                   help="ordered, comma-separated authorizers: AlwaysAllow, AlwaysDeny, Node, "
                        "RBAC, Webhook (members of system:masters may always do everything)")
    g.add_argument("--anonymous-auth", type=_parse_bool_flag, nargs="?", const=True,
                   default=True, help="requests without credentials are system:anonymous "
                                      "(RBAC lets it read /healthz, /livez, /readyz, /version)")
    g.add_argument("--authorization-webhook-config-file", default="",
                   help="with --authorization-mode Webhook: a kubeconfig naming the "
                        "SubjectAccessReview webhook")
    g.add_argument("--authorization-webhook-cache-authorized-ttl", type=parse_duration,
                   default=300.0, help="how long the webhook's allows are cached")
    g.add_argument("--authorization-webhook-cache-unauthorized-ttl", type=parse_duration,
                   default=30.0, help="how long the webhook's denials are cached")
    p.add_argument("--disable-admission-plugins", default="",
                   help="comma-separated admission plugins to turn off (all are on)")
    p.add_argument("--client-ca-file", default="",
                   help="CA bundle verifying client certificates (x509 authentication: CN "
                        "= user, O = groups); default: the cluster CA, DATA_DIR/tls/ca.crt")
    k = p.add_argument_group("kubelet connections (logs, exec, attach, port-forward, "
                             "nodes/proxy)")
    k.add_argument("--kubelet-certificate-authority", default=None,
                   help="CA bundle verifying kubelets' serving certificates (default: the "
                        "cluster CA, DATA_DIR/tls/ca.crt; \"\": not verified)")
    k.add_argument("--kubelet-client-certificate", default="",
                   help="the API server's client certificate for kubelets (default: "
                        "DATA_DIR/tls/kubelet-client.crt, CN kube-apiserver-kubelet-client, O "
                        "system:masters, issued at start with the cluster CA)")
    k.add_argument("--kubelet-client-key", default="",
                   help="the key of --kubelet-client-certificate")
    a = p.add_argument_group("audit log (kube-apiserver's flags; on with a policy and a path)")
    a.add_argument("--audit-policy-file", default="",
                   help="an audit.k8s.io/v1 Policy (YAML or JSON)")
    a.add_argument("--audit-log-path", default="",
                   help="file the audit events are written to, one JSON line each; '-' "
                        "means standard output")
    a.add_argument("--audit-log-maxsize", type=int, default=0,
                   help="megabytes of the audit log before it is rotated (0: 100)")
    a.add_argument("--audit-log-maxbackup", type=int, default=0,
                   help="rotated audit logs kept (0: all)")
    a.add_argument("--audit-log-maxage", type=int, default=0,
                   help="days rotated audit logs are kept, by the time in their names "
                        "(0: no limit)")
    add_logging_args(p)


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}


def parse_duration(value: str) -> float:
    """Go's time.ParseDuration (`15s`, `1m30s`, `500ms`); a bare number is seconds."""
    v = value.strip()
    try:
        return float(v)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", v)
    if not parts or "".join(n + u for n, u in parts) != v.lstrip("+"):
        raise argparse.ArgumentTypeError(f"time: invalid duration {value!r}")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def _parse_bool_flag(value: str) -> bool:
    from pyk8s.api.meta import parse_bool
    try:
        return parse_bool(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_controller_args(p: argparse.ArgumentParser, service_range: bool = True) -> None:
    """kube-controller-manager's flags (the subset pyk8s implements), upstream's names.
    `service_range` False: --service-cluster-ip-range comes with the API server's flags."""
    g = p.add_argument_group("controller manager")
    g.add_argument("--leader-elect", type=_parse_bool_flag, nargs="?", const=True,
                   default=True, help="run the controllers only while holding the lease")
    g.add_argument("--leader-elect-lease-duration", type=parse_duration, default=15.0)
    g.add_argument("--leader-elect-renew-deadline", type=parse_duration, default=10.0)
    g.add_argument("--leader-elect-retry-period", type=parse_duration, default=2.0)
    g.add_argument("--leader-elect-resource-name", default="kube-controller-manager")
    g.add_argument("--leader-elect-resource-namespace", default="kube-system")
    g.add_argument("--kube-api-qps", type=float, default=400.0,
                   help="client-side requests per second to the API server (upstream: 20)")
    g.add_argument("--kube-api-burst", type=int, default=800,
                   help="client-side request burst (upstream: 30)")
    g.add_argument("--kube-api-max-inflight", type=int, default=32,
                   help="pyk8s: at most this many concurrent requests (0: no cap); keeps the "
                        "API server responsive during bursts")
    g.add_argument("--controllers", default="*",
                   help="comma-separated: '*' all, 'name' enables, '-name' disables")
    g.add_argument("--concurrent-replicaset-syncs", type=int, default=5)
    g.add_argument("--concurrent-rc-syncs", "--concurrent_rc_syncs", dest="concurrent_rc_syncs",
                   type=int, default=5)
    g.add_argument("--concurrent-gc-syncs", type=int, default=5)
    g.add_argument("--terminated-pod-gc-threshold", type=int, default=12500,
                   help="terminated pods kept before the pod GC deletes the oldest (0: off)")
    g.add_argument("--node-monitor-period", type=parse_duration, default=5.0)
    g.add_argument("--node-monitor-grace-period", type=parse_duration, default=40.0,
                   help="a node whose status and lease stop advancing this long is Unknown")
    g.add_argument("--node-startup-grace-period", type=parse_duration, default=60.0)
    g.add_argument("--node-eviction-rate", type=float, default=0.1,
                   help="nodes per second tainted NoExecute (taint-based eviction)")
    g.add_argument("--allocate-node-cidrs", type=_parse_bool_flag, nargs="?", const=True,
                   default=True, help="give every Node a spec.podCIDR from --cluster-cidr "
                                      "(pyk8s, as k3s: on; upstream: off)")
    g.add_argument("--cluster-cidr", default="10.42.0.0/16",
                   help="the pods' CIDR range: one IPv4 and / or one IPv6 CIDR, comma-"
                        "separated (k3s's default)")
    if service_range:
        g.add_argument("--service-cluster-ip-range", default="",
                       help="the Services' CIDR range(s): never handed out as node pod CIDRs")
    g.add_argument("--local-path-dir", default="",
                   help="where the local-path provisioner makes volumes (default: "
                        "DATA_DIR/storage for `up`, /var/lib/pyk8s/storage otherwise)")
    g.add_argument("--node-cidr-mask-size", type=int, default=0,
                   help="mask size of a node's pod CIDR (default 24 for IPv4, 64 for IPv6)")
    g.add_argument("--node-cidr-mask-size-ipv4", type=int, default=0,
                   help="IPv4 node pod CIDR mask size in a dual-stack cluster (default 24)")
    g.add_argument("--node-cidr-mask-size-ipv6", type=int, default=0,
                   help="IPv6 node pod CIDR mask size in a dual-stack cluster (default 64)")
    g.add_argument("--cluster-signing-cert-file", default="",
                   help="CA certificate the csrsigning controller issues kubernetes.io/* "
                        "certificates with (`up`: DATA_DIR/tls/ca.crt; unset: no signing)")
    g.add_argument("--cluster-signing-key-file", default="",
                   help="the CA's private key (`up`: DATA_DIR/tls/ca.key)")
    g.add_argument("--use-service-account-credentials", type=_parse_bool_flag, nargs="?",
                   const=True, default=None,
                   help="each controller talks with its own service account "
                        "(kube-system/<controller>) instead of the manager's identity "
                        "(default: true for `up`, false for `controller-manager`)")
    g.add_argument("--cluster-signing-duration", type=parse_duration, default=8760 * 3600.0,
                   help="the longest validity of issued certificates (a CSR's "
                        "spec.expirationSeconds may ask for less, at least 10m)")
    g.add_argument("--root-ca-file", default="",
                   help="If set, this root certificate authority will be included in service "
                        "account's token secret. This must be a valid PEM-encoded CA bundle. "
                        "(pyk8s: published as the kube-root-ca.crt ConfigMaps; unset: the "
                        "kubeconfig's CA; `up`: DATA_DIR/tls/ca.crt)")


def controller_options(args: argparse.Namespace, identity: str | None = None) -> Any:
    from pyk8s.controllers.manager import ControllerManagerOptions
    o = ControllerManagerOptions(
        leader_elect=bool(args.leader_elect),
        lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
        lock_name=args.leader_elect_resource_name,
        lock_namespace=args.leader_elect_resource_namespace,
        kube_api_qps=args.kube_api_qps, kube_api_burst=args.kube_api_burst,
        max_inflight=args.kube_api_max_inflight,
        controllers=tuple(c.strip() for c in args.controllers.split(",") if c.strip()),
        concurrent_replicaset_syncs=args.concurrent_replicaset_syncs,
        concurrent_rc_syncs=args.concurrent_rc_syncs,
        concurrent_gc_syncs=args.concurrent_gc_syncs,
        terminated_pod_gc_threshold=args.terminated_pod_gc_threshold,
        node_monitor_period=args.node_monitor_period,
        node_monitor_grace_period=args.node_monitor_grace_period,
        node_startup_grace_period=args.node_startup_grace_period,
        node_eviction_rate=args.node_eviction_rate,
        allocate_node_cidrs=bool(args.allocate_node_cidrs), cluster_cidr=args.cluster_cidr,
        service_cluster_ip_range=args.service_cluster_ip_range or "",
        node_cidr_mask_size=args.node_cidr_mask_size,
        node_cidr_mask_size_ipv4=args.node_cidr_mask_size_ipv4,
        node_cidr_mask_size_ipv6=args.node_cidr_mask_size_ipv6)
    if identity:
        o.identity = identity
    if getattr(args, "local_path_dir", ""):
        o.local_path_dir = args.local_path_dir
    elif getattr(args, "command", "") == "up":
        o.local_path_dir = str(Path(args.data_dir).resolve() / "storage")
    o.cluster_signing_cert_file = args.cluster_signing_cert_file
    o.cluster_signing_key_file = args.cluster_signing_key_file
    o.cluster_signing_duration = args.cluster_signing_duration
    o.root_ca_file = args.root_ca_file
    o.use_service_account_credentials = (
        getattr(args, "command", "") == "up" if args.use_service_account_credentials is None
        else bool(args.use_service_account_credentials))
    if getattr(args, "command", "") == "up" and not getattr(args, "insecure_http", False):
        # `up` signs with the cluster CA it made (k3s's server does the same).
        tls = Path(args.data_dir).resolve() / "tls"
        o.cluster_signing_cert_file = o.cluster_signing_cert_file or str(tls / "ca.crt")
        o.cluster_signing_key_file = o.cluster_signing_key_file or str(tls / "ca.key")
        # The CA that signed the API server's serving certificate (certs.py).
        o.root_ca_file = o.root_ca_file or str(tls / "ca.crt")
    return o



async def _finish(task: "asyncio.Task[None]", timeout: float) -> bool:
    """Wait for a component of `up` to stop on its own (it watches the stop event); False
    if it failed."""
    try:
        await asyncio.wait_for(task, timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        pass
    except Exception:
        log.exception("%s failed", task.get_name())
        return False
    return True

def kubelet_client_tls(args: argparse.Namespace, config: ServerConfig, data_dir: Path,
                       ca_cert: Path) -> None:
    """How the API server dials kubelets: their serving certificates verified against
    --kubelet-certificate-authority (default the cluster CA), its own client certificate
    (default one it issues itself with the cluster CA)."""
    from pyk8s.apiserver.certs import ensure_kubelet_client_cert
    ca = args.kubelet_certificate_authority
    config.kubelet_certificate_authority = str(ca_cert) if ca is None else ca
    if args.kubelet_client_certificate:
        config.kubelet_client_certificate = args.kubelet_client_certificate
        config.kubelet_client_key = args.kubelet_client_key or args.kubelet_client_certificate
    else:
        crt, key = ensure_kubelet_client_cert(data_dir)
        config.kubelet_client_certificate, config.kubelet_client_key = str(crt), str(key)


def leader_identity(data_dir: Path) -> str:
    """`up`'s leader election identity (controller manager and scheduler): stable, so a
    restarted `up` takes its own Leases back at once, and distinct for every data dir, so
    the servers of an HA cluster sharing a host name (containers, tests) do not all think
    they hold the Leases: `<hostname>_<8 hex of the data dir>_pyk8s-up`."""
    import hashlib
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}_{digest}_pyk8s-up"


async def run_server(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    storage = await open_storage(args.storage, str(data_dir), etcd_servers=args.etcd_servers,
                                 wait=60.0)
    if args.storage == "etcd" and not args.insecure_http:  # several servers, one cluster
        from pyk8s.apiserver.bootstrapdata import (BootstrapError, given_token,
                                                   share_bootstrap_data)
        try:
            await share_bootstrap_data(storage, data_dir,
                                       given_token(data_dir, args.token, args.token_file))
        except BootstrapError as e:
            raise SystemExit(f"pyk8s: {e}") from None
    if args.encryption is not None:  # loaded by main() from --encryption-provider-config
        storage = args.encryption.wrap(storage)
    host = args.bind if args.bind not in ("0.0.0.0", "::") else "127.0.0.1"
    from pyk8s.registry.service.ranges import parse_service_cidrs
    service_range = args.service_cluster_ip_range or DEFAULT_SERVICE_CLUSTER_IP_RANGE
    kubernetes_ip = parse_service_cidrs(service_range)[0].first()
    advertise = args.advertise_address or default_advertise_address(args.bind)
    ssl_ctx: ssl.SSLContext | None = None
    authn: Authenticator | None = None
    if args.insecure_http:
        scheme = "http"
        creds = None
    else:
        scheme = "https"
        creds = ensure_credentials(data_dir, [args.bind, advertise, kubernetes_ip])
        # Not create_default_context(CLIENT_AUTH): it would trust the system's CAs for
        # client certificates too.
        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_ctx.load_cert_chain(creds.server_cert, creds.server_key)
        # x509 client certificates: asked for, not required; verified against the client CA.
        ssl_ctx.verify_mode = ssl.CERT_OPTIONAL
        ssl_ctx.load_verify_locations(cafile=args.client_ca_file or str(creds.ca_cert))
        # The node token (DIR/node-token) is a bootstrap token: agents use it to ask for
        # their own client certificate (CSR approved by csrapproving), as kubeadm's
        # system:bootstrap:<id> tokens.
        node_user = UserInfo("system:bootstrap:pyk8s",
                             groups=("system:bootstrappers", "system:authenticated"))
        authn = Authenticator({creds.admin_token: ADMIN, creds.node_token: node_user},
                              ServiceAccountSigner.load_or_create(data_dir / "tls" / "sa.key"))
    url = f"{scheme}://{host}:{args.port}"
    config = ServerConfig(server_address=f"{host}:{args.port}",
                          bookmark_interval=args.bookmark_interval,
                          watch_cache_size=args.watch_cache_size,
                          compaction_interval=args.compaction_interval,
                          disabled_admission_plugins=tuple(
                              p for p in args.disable_admission_plugins.split(",") if p),
                          service_cluster_ip_range=service_range,
                          service_node_port_range=args.service_node_port_range,
                          advertise_address=advertise,
                          authorization_modes=tuple(args.authorization_mode.split(",")),
                          anonymous_auth=bool(args.anonymous_auth),
                          authorization_webhook_config_file=args.authorization_webhook_config_file,
                          authorization_webhook_cache_authorized_ttl=(
                              args.authorization_webhook_cache_authorized_ttl),
                          authorization_webhook_cache_unauthorized_ttl=(
                              args.authorization_webhook_cache_unauthorized_ttl),
                          audit_policy_file=args.audit_policy_file,
                          audit_log_path=args.audit_log_path,
                          audit_log_maxsize=args.audit_log_maxsize,
                          audit_log_maxbackup=args.audit_log_maxbackup,
                          audit_log_maxage=args.audit_log_maxage)
    if creds is not None:
        kubelet_client_tls(args, config, data_dir, creds.ca_cert)
    server = APIServer(storage, config, authn=authn)
    await server.start()
    write_kubeconfig(data_dir / "kubeconfig.yaml", url, creds.admin_token if creds else "",
                     creds.ca_cert if creds else None)
    # handler_cancellation: a watch handler ends as soon as its client goes away.
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False,
                           handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, args.bind, args.port, ssl_context=ssl_ctx, backlog=1024)
    await site.start()
    # What start-up allocated (schemas, catalogue, modules) lives for the whole run: keep it
    # out of the cyclic collector's way, so full collections under load stay short.
    gc.collect()
    gc.freeze()
    log.info("pyk8s API server listening on %s (storage %s, ready in %.0f ms)", url,
             args.storage, (time.perf_counter() - started) * 1000)
    log.info("kubeconfig: %s", data_dir / "kubeconfig.yaml")
    stop, signalled = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: (signalled.set(), stop.set()))
    controllers: asyncio.Task[None] | None = None
    scheduler: asyncio.Task[None] | None = None
    addons: asyncio.Task[None] | None = None
    if getattr(args, "command", None) == "up":
        from pyk8s.cli.serveraddons import deploy_server_addons
        from pyk8s.controllers.manager import run_controllers
        addons = asyncio.create_task(deploy_server_addons(data_dir / "kubeconfig.yaml", stop),
                                     name="server-addons")
        # Their own identities (client certificates, as kubeadm's), not the admin's;
        # without TLS (--insecure-http) there is no authentication: the admin kubeconfig.
        cm_kubeconfig = sched_kubeconfig = data_dir / "kubeconfig.yaml"
        if creds is not None:
            from pyk8s.cli.identities import ensure_control_plane_kubeconfigs
            cm_kubeconfig, sched_kubeconfig = ensure_control_plane_kubeconfigs(data_dir, url)
        identity = leader_identity(data_dir)
        cm_options = controller_options(args, identity)
        if creds is None:
            cm_options.use_service_account_credentials = False  # no tokens without TLS
        elif not cm_options.use_service_account_credentials:
            log.warning("--use-service-account-credentials=false: the controllers write as "
                        "system:kube-controller-manager, whose role only lists and watches; "
                        "bind it more rights or they will be forbidden")
        controllers = asyncio.create_task(
            run_controllers(str(cm_kubeconfig), stop, cm_options), name="controllers")
        if getattr(args, "scheduler", False):
            from pyk8s.scheduler.scheduler import SchedulerOptions, run_scheduler
            scheduler = asyncio.create_task(run_scheduler(
                str(sched_kubeconfig), stop,
                SchedulerOptions(identity=identity, leader_elect=bool(args.leader_elect),
                                 lease_duration=args.leader_elect_lease_duration,
                                 renew_deadline=args.leader_elect_renew_deadline,
                                 retry_period=args.leader_elect_retry_period)),
                name="scheduler")
    local_node: asyncio.Task[None] | None = None
    if getattr(args, "command", None) == "up" and not getattr(args, "disable_agent", True):
        from pyk8s.kubelet.agent import run_local_node
        if creds is not None:
            from pyk8s.cli.localnodecerts import issue_local_node_certificates
            issue_local_node_certificates(
                data_dir, url, (args.node_name or socket.gethostname()).lower())
        local_node = asyncio.create_task(run_local_node(
            url, creds.node_token if creds else "", creds.ca_cert if creds else None,
            data_dir / "agent", args.node_name, args.node_ip or advertise, args.runtime, stop,
            pod_manifest_path=args.pod_manifest_path, runtime_args=args,
            addons=node_addons(args, args.runtime)), name="local-node")
    await stop.wait()
    log.info("shutting down")
    # The local node first: its containers stop before the API server does. A node that
    # ended on its own with an error (its runtime could not start: the pod bridge is
    # another cluster's, …) stopped `up`, which then exits 1.
    node_ok = await _finish(local_node, 40.0) if local_node is not None else True
    node_failed = not node_ok and not signalled.is_set()
    for task, timeout in ((controllers, 10.0), (scheduler, 10.0), (addons, 1.0)):
        if task is not None:
            await _finish(task, timeout)
    server.close_watches()  # open watches end first, so the HTTP server can close promptly
    await runner.cleanup()
    await server.stop()
    if node_failed:
        raise SystemExit(1)


async def run_controller_manager(args: argparse.Namespace) -> None:
    """The controllers alone, against the API server a kubeconfig names."""
    from pyk8s.controllers.manager import run_controllers
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gc.collect()
    gc.freeze()  # start-up objects: out of the cyclic collector's way
    await run_controllers(args.kubeconfig, stop, controller_options(args))


async def run_scheduler_process(args: argparse.Namespace) -> None:
    """`pyk8s scheduler`: the scheduler alone, against the API server a kubeconfig names."""
    from pyk8s.scheduler.scheduler import SchedulerOptions, run_scheduler
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    o = SchedulerOptions(config_file=args.config, leader_elect=bool(args.leader_elect),
                         lease_duration=args.leader_elect_lease_duration,
                         renew_deadline=args.leader_elect_renew_deadline,
                         retry_period=args.leader_elect_retry_period,
                         kube_api_qps=args.kube_api_qps, kube_api_burst=args.kube_api_burst)
    gc.collect()
    gc.freeze()
    await run_scheduler(args.kubeconfig, stop, o)


def _add_scheduler_parser(sub: Any) -> None:
    p = sub.add_parser("scheduler", help="run the scheduler alone")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    p.add_argument("--config", default=None, help="a KubeSchedulerConfiguration file")
    add_logging_args(p)
    p.add_argument("--leader-elect", type=_parse_bool_flag, nargs="?", const=True, default=True)
    p.add_argument("--leader-elect-lease-duration", type=parse_duration, default=15.0)
    p.add_argument("--leader-elect-renew-deadline", type=parse_duration, default=10.0)
    p.add_argument("--leader-elect-retry-period", type=parse_duration, default=2.0)
    p.add_argument("--kube-api-qps", type=float, default=0.0,
                   help="client-side requests per second (0: unthrottled; upstream: 50)")
    p.add_argument("--kube-api-burst", type=int, default=0)


def node_addons(args: argparse.Namespace, runtime: str) -> Any:
    """The proxy and DNS beside a node's kubelet (pyk8s/cli/nodeaddons.py)."""
    from pyk8s.cli.nodeaddons import run_node_addons

    # The add-ons' certificates live beside the node's: DATA_DIR/agent/pki in `up`.
    agent_dir = Path(args.data_dir).resolve() / ("agent" if args.command == "up" else "")
    pki_dir = agent_dir / "pki"

    def start(client: Any, node_name: str, stop: asyncio.Event) -> Any:
        return run_node_addons(client, node_name, runtime, args, stop, pki_dir)
    return start


def set_cluster_dns_default(args: argparse.Namespace) -> None:
    """Pods of an oci node use the cluster DNS: by default the tenth address of the
    service range (10.96.0.10), as kubeadm sets clusterDNS."""
    from pyk8s.cli.nodeaddons import DEFAULT_SERVICE_RANGE, dns_service_ip
    if not getattr(args, "cluster_dns", "") and not getattr(args, "disable_dns", False):
        args.cluster_dns = dns_service_ip(getattr(args, "service_cluster_ip_range", "")
                                          or DEFAULT_SERVICE_RANGE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyk8s", description="Kubernetes, implemented in Python")
    sub = parser.add_subparsers(dest="command", required=True)
    p_server = sub.add_parser("server", help="run the API server")
    _add_server_args(p_server)
    p_up = sub.add_parser("up", help="run the all-in-one cluster (API server, controllers, "
                                     "scheduler and a local node)")
    _add_server_args(p_up, up=True)
    _add_controller_args(p_up, service_range=False)
    p_up.add_argument("--scheduler", type=_parse_bool_flag, nargs="?", const=True, default=True,
                      help="run the scheduler too (pyk8s scheduler's defaults)")
    p_up.add_argument("--disable-agent", action="store_true",
                      help="run no local node (k3s's flag); join nodes with `pyk8s agent`")
    p_up.add_argument("--node-name", default=None, help="the local node's name (default: the "
                                                         "host name)")
    p_up.add_argument("--node-ip", type=_ip_flag, default="",
                      help="the local node's InternalIP, where the API server reaches its "
                           "kubelet (default: the advertise address)")
    p_up.add_argument("--runtime", default=None, choices=["oci", "process", "fake"],
                      help="the local node's runtime (default: oci when available — root, "
                           "runc or crun, CNI plugins — else process)")
    p_up.add_argument("--pod-manifest-path", default="",
                      help="static pods of the local node: a directory (or file) of manifests")
    from pyk8s.kubelet.agent import add_container_runtime_args
    add_container_runtime_args(p_up)
    from pyk8s.cli.nodeaddons import add_node_addon_args
    add_node_addon_args(p_up)
    p_cm = sub.add_parser("controller-manager", help="run the controllers alone")
    p_cm.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    add_logging_args(p_cm)
    _add_controller_args(p_cm)
    _add_scheduler_parser(sub)
    from pyk8s.kubelet.agent import add_agent_parser
    add_node_addon_args(add_agent_parser(sub))
    from pyk8s.proxy.cli import add_proxy_parser, run_proxy_command
    add_proxy_parser(sub)
    from pyk8s.dns.cli import add_dns_parser, run_dns_command
    add_dns_parser(sub)
    from pyk8s.cli.image import add_image_parser, run_image
    add_image_parser(sub)
    from pyk8s.cli.killall import add_killall_parser, run_killall
    add_killall_parser(sub)
    args = parser.parse_args(argv)
    setup_logging(args, logging.WARNING if args.command == "image" else logging.INFO)
    uvloop.install()
    if args.command in ("up", "server") and "Webhook" in args.authorization_mode.split(",") \
            and not args.authorization_webhook_config_file:
        parser.error("authorization-mode Webhook's authorization config file not passed")
    if args.command in ("up", "server"):
        from pyk8s.apiserver.audit.filter import AuditConfigError, check_config
        try:  # an invalid audit policy stops the server before it starts, as upstream
            check_config(args.audit_policy_file, args.audit_log_path, args.audit_log_maxsize,
                         args.audit_log_maxbackup, args.audit_log_maxage)
        except AuditConfigError as e:
            print(f"Error: {e}", file=sys.stderr)
            return 1
    if args.command in ("up", "controller-manager"):
        o = controller_options(args)
        if o.enabled("nodeipam") and o.allocate_node_cidrs:
            try:
                o.node_ipam_config()
            except ValueError as e:
                parser.error(str(e))
        if args.root_ca_file and o.enabled("root-ca-cert-publisher"):
            from pyk8s.controllers.rootcacertpublisher import read_root_ca
            try:  # a given file must hold a CA (`up`'s own is made when the server starts)
                read_root_ca(args.root_ca_file)
            except ValueError as e:
                parser.error(str(e))
    if args.command in ("server", "up") and args.encryption_provider_config:
        from pyk8s.apiserver.encryptionconfig import EncryptionConfigError, load_encryption_config
        try:
            args.encryption = load_encryption_config(args.encryption_provider_config)
        except EncryptionConfigError as e:
            parser.error(str(e))
    if args.command == "up":
        kc = Path(args.data_dir).resolve() / "kubeconfig.yaml"
        if not args.disable_agent:
            from pyk8s.kubelet.agent import default_runtime
            args.runtime = args.runtime or default_runtime()
            if args.runtime == "oci":
                from pyk8s.kubelet.runtimes.oci import oci_available
                set_cluster_dns_default(args)
                if not oci_available():
                    parser.error("--runtime oci needs root, runc or crun, and the CNI "
                                 "plugins (apt-get install runc containernetworking-plugins)")
        print(f"pyk8s: starting; then use: export KUBECONFIG={kc}; kubectl get ns", flush=True)
        if not args.disable_agent:
            print("pyk8s: try: kubectl create deployment hello --image=busybox -- sleep 3600; "
                  "kubectl get pods -o wide", flush=True)
            if args.runtime == "oci":
                print("pyk8s: without internet, load an image into this node first: "
                      f"pyk8s image import --data-dir {Path(args.data_dir).resolve()} FILE, "
                      "and give it a tag other than latest (docs/images.md)", flush=True)
    if args.command == "controller-manager":
        asyncio.run(run_controller_manager(args))
    elif args.command == "scheduler":
        asyncio.run(run_scheduler_process(args))
    elif args.command == "agent":
        from pyk8s.kubelet.agent import run_agent
        if args.runtime == "oci":
            set_cluster_dns_default(args)
        try:
            asyncio.run(run_agent(args, addons=node_addons(args, args.runtime)))
        except RuntimeError as e:  # the runtime cannot start (e.g. a bridge in use)
            log.error("the node failed: %s", e)
            return 1
    elif args.command == "proxy":
        return run_proxy_command(args)
    elif args.command == "dns":
        return run_dns_command(args)
    elif args.command == "image":
        return run_image(args)
    elif args.command == "killall":
        return run_killall(args)
    else:
        asyncio.run(run_server(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
