"""The controller manager: runs the controllers against an API server, over HTTP only.

Like kube-controller-manager: with leader election on (the default) the process stands
for the Lease `kube-system/kube-controller-manager` and runs its controllers only while it
holds it; when it loses the lease the controllers are cancelled and it stands again. One
`SharedInformerFactory` (with the manager's own identity) is shared by every controller;
with `--use-service-account-credentials` each controller writes and records its events
with its own service account (clientbuilder.py, context.py). Requests are throttled by
`--kube-api-qps` / `--kube-api-burst`, one budget for the whole manager (leader election
has its own unthrottled client, so renewals never queue behind a burst of pod creations).
"""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Awaitable, Callable

from pyk8s.client.informer import SharedInformerFactory
from pyk8s.client.leaderelection import LeaderElectionConfig, run_while_leading, default_identity
from pyk8s.client.rest import RESTClient
from pyk8s.controllers.clientbuilder import DynamicClientBuilder, SimpleClientBuilder
from pyk8s.controllers.clusterroleaggregation import ClusterRoleAggregationController
from pyk8s.controllers.context import ControllerContext
from pyk8s.controllers.cronjob import CronJobController
from pyk8s.controllers.daemonset import DaemonSetsController
from pyk8s.controllers.deployment import DeploymentController
from pyk8s.controllers.disruption import DisruptionController
from pyk8s.controllers.endpoints import EndpointsController
from pyk8s.controllers.endpointslice import EndpointSliceController
from pyk8s.controllers.garbagecollector import GarbageCollector
from pyk8s.controllers.job import JobController, utcnow
from pyk8s.controllers.namespace import NamespaceController
from pyk8s.controllers.nodeipam import DEFAULT_CLUSTER_CIDR, NodeIPAMConfig, NodeIPAMController
from pyk8s.controllers.nodelifecycle import NodeLifecycleController
from pyk8s.controllers.podgc import DEFAULT_TERMINATED_POD_THRESHOLD, PodGCController
from pyk8s.controllers.replicaset import REPLICATION_CONTROLLER, ReplicaSetController
from pyk8s.controllers.resourcequota import ResourceQuotaController
from pyk8s.controllers.rootcacertpublisher import RootCACertPublisher, read_root_ca
from pyk8s.controllers.serviceaccount import ServiceAccountsController
from pyk8s.controllers.statefulset import StatefulSetController
from pyk8s.controllers.ttlafterfinished import TTLAfterFinishedController

log = logging.getLogger("pyk8s.controllers.manager")

# Upstream's controller names (--controllers).
ALL_CONTROLLERS = ("garbagecollector", "namespace", "replicaset", "replicationcontroller",
                   "serviceaccount", "podgc", "deployment", "endpoint", "endpointslice",
                   "resourcequota", "nodelifecycle", "nodeipam",
                   "job", "cronjob", "ttl-after-finished",
                   "disruption", "daemonset", "statefulset", "persistentvolume-binder",
                   "csrsigning", "csrapproving", "clusterrole-aggregation",
                   "root-ca-cert-publisher")


@dataclass
class ControllerManagerOptions:
    """What `pyk8s controller-manager`'s flags set (upstream's names in comments)."""
    leader_elect: bool = True                       # --leader-elect
    lease_duration: float = 15.0                    # --leader-elect-lease-duration
    renew_deadline: float = 10.0                    # --leader-elect-renew-deadline
    retry_period: float = 2.0                       # --leader-elect-retry-period
    lock_name: str = "kube-controller-manager"      # --leader-elect-resource-name
    lock_namespace: str = "kube-system"             # --leader-elect-resource-namespace
    identity: str = field(default_factory=default_identity)
    kube_api_qps: float = 400.0                     # --kube-api-qps (upstream: 20)
    kube_api_burst: int = 800                       # --kube-api-burst (upstream: 30)
    max_inflight: int = 32                          # concurrent requests (0: no cap)
    controllers: tuple[str, ...] = ("*",)           # --controllers
    concurrent_replicaset_syncs: int = 5            # --concurrent-replicaset-syncs
    concurrent_rc_syncs: int = 5                    # --concurrent_rc_syncs
    concurrent_deployment_syncs: int = 5            # --concurrent-deployment-syncs
    concurrent_daemonset_syncs: int = 2             # --concurrent-daemonset-syncs
    concurrent_statefulset_syncs: int = 5           # --concurrent-statefulset-syncs
    concurrent_endpoint_syncs: int = 5              # --concurrent-endpoint-syncs
    concurrent_service_endpoint_syncs: int = 5      # --concurrent-service-endpoint-syncs
    concurrent_gc_syncs: int = 5                    # --concurrent-gc-syncs
    concurrent_resource_quota_syncs: int = 5        # --concurrent-resource-quota-syncs
    resource_quota_sync_period: float = 10.0        # --resource-quota-sync-period (5m)
    terminated_pod_gc_threshold: int = DEFAULT_TERMINATED_POD_THRESHOLD
    pod_gc_period: float = 20.0
    node_monitor_period: float = 5.0                # --node-monitor-period
    node_monitor_grace_period: float = 40.0         # --node-monitor-grace-period
    node_startup_grace_period: float = 60.0         # --node-startup-grace-period
    node_eviction_rate: float = 0.1                 # --node-eviction-rate (nodes/s)
    allocate_node_cidrs: bool = True                # --allocate-node-cidrs (upstream: false)
    cluster_cidr: str = DEFAULT_CLUSTER_CIDR        # --cluster-cidr (k3s's default)
    service_cluster_ip_range: str = ""              # --service-cluster-ip-range
    node_cidr_mask_size: int = 0                    # --node-cidr-mask-size (0: 24 / 64)
    node_cidr_mask_size_ipv4: int = 0               # --node-cidr-mask-size-ipv4 (0: 24)
    node_cidr_mask_size_ipv6: int = 0               # --node-cidr-mask-size-ipv6 (0: 64)
    concurrent_job_syncs: int = 5                   # --concurrent-job-syncs
    concurrent_cron_job_syncs: int = 5              # --concurrent-cron-job-syncs
    concurrent_ttl_after_finished_syncs: int = 5    # --concurrent-ttl-after-finished-syncs
    # Each controller with its own service account's tokens (`up`: true).
    use_service_account_credentials: bool = False   # --use-service-account-credentials
    cluster_signing_cert_file: str = ""             # --cluster-signing-cert-file
    cluster_signing_key_file: str = ""              # --cluster-signing-key-file
    cluster_signing_duration: float = 8760 * 3600.0  # --cluster-signing-duration
    # The CA bundle published as kube-root-ca.crt (empty: the kubeconfig's CA).
    root_ca_file: str = ""                          # --root-ca-file
    # The local-path provisioner's directory (--local-path-dir; `up`: <data-dir>/storage).
    local_path_dir: str = "/var/lib/pyk8s/storage"
    # Test hooks without flags, from the environment: the Job controller's pod re-creation
    # backoff base (upstream: 10 s) and a shift of the CronJob controller's clock (s).
    job_backoff_base: float = field(default_factory=lambda: _env_float(
        "PYK8S_JOB_BACKOFF_BASE", 10.0))
    cronjob_clock_offset: float = field(default_factory=lambda: _env_float(
        "PYK8S_CRONJOB_CLOCK_OFFSET", 0.0))

    def enabled(self, name: str) -> bool:
        """Upstream's rule: `*` enables all, `name` enables, `-name` disables."""
        if name in self.controllers:
            return True
        if f"-{name}" in self.controllers:
            return False
        return "*" in self.controllers

    def node_ipam_config(self) -> NodeIPAMConfig:
        """The node IPAM flags, validated (ValueError with upstream's messages)."""
        return NodeIPAMConfig.from_flags(
            self.cluster_cidr, node_cidr_mask_size=self.node_cidr_mask_size,
            node_cidr_mask_size_ipv4=self.node_cidr_mask_size_ipv4,
            node_cidr_mask_size_ipv6=self.node_cidr_mask_size_ipv6,
            service_cluster_ip_range=self.service_cluster_ip_range)


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


async def _supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a controller; if it fails, log and start it again after a backoff."""
    backoff = 1.0
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("controller %s failed; restarting in %.0fs", name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


def root_ca(client: RESTClient, options: ControllerManagerOptions) -> bytes:
    """What the root CA publisher publishes: --root-ca-file's bundle, else the CA of the
    manager's own kubeconfig (upstream: the root client config's CAData); empty when
    neither has one. ValueError when --root-ca-file holds no certificate."""
    if options.root_ca_file:
        return read_root_ca(options.root_ca_file)
    config = getattr(client, "config", None)   # test clients have no kubeconfig
    return getattr(config, "ca_data", None) or b""


async def run_all(client: RESTClient, options: ControllerManagerOptions) -> None:
    """Start the enabled controllers and run them until cancelled. The shared informers
    use `client`, the manager's own identity; each controller writes (and records events)
    with `ctx.client(<its service account>)`: with --use-service-account-credentials that
    account's own tokens, else `client` too (upstream's controller client builders)."""
    factory = SharedInformerFactory(client)
    o = options
    ctx = ControllerContext(DynamicClientBuilder(client) if o.use_service_account_credentials
                            else SimpleClientBuilder(client))
    makers: dict[str, Callable[[], Awaitable[None]]] = {}
    if o.enabled("garbagecollector"):
        makers["garbagecollector"] = lambda: GarbageCollector(
            ctx.client("generic-garbage-collector"), workers=o.concurrent_gc_syncs).run()
    if o.enabled("namespace"):
        makers["namespace"] = lambda: NamespaceController(
            ctx.client("namespace-controller"), factory=factory).run()
    if o.enabled("replicaset"):
        makers["replicaset"] = lambda: ReplicaSetController(
            ctx.client("replicaset-controller"), factory,
            ctx.recorder("replicaset-controller", "replicaset-controller"),
            workers=o.concurrent_replicaset_syncs).run()
    if o.enabled("replicationcontroller"):
        makers["replicationcontroller"] = lambda: ReplicaSetController(
            ctx.client("replication-controller"), factory,
            ctx.recorder("replication-controller", "replication-controller"),
            kind=REPLICATION_CONTROLLER, workers=o.concurrent_rc_syncs).run()
    if o.enabled("serviceaccount"):
        makers["serviceaccount"] = lambda: ServiceAccountsController(
            ctx.client("service-account-controller"), factory).run()
    if o.enabled("clusterrole-aggregation"):
        makers["clusterrole-aggregation"] = lambda: ClusterRoleAggregationController(
            ctx.client("clusterrole-aggregation-controller"), factory).run()
    if o.enabled("deployment"):
        makers["deployment"] = lambda: DeploymentController(
            ctx.client("deployment-controller"), factory,
            ctx.recorder("deployment-controller", "deployment-controller"),
            workers=o.concurrent_deployment_syncs).run()
    if o.enabled("daemonset"):
        makers["daemonset"] = lambda: DaemonSetsController(
            ctx.client("daemon-set-controller"), factory,
            ctx.recorder("daemon-set-controller", "daemonset-controller"),
            workers=o.concurrent_daemonset_syncs).run()
    if o.enabled("statefulset"):
        makers["statefulset"] = lambda: StatefulSetController(
            ctx.client("statefulset-controller"), factory,
            ctx.recorder("statefulset-controller", "statefulset-controller"),
            workers=o.concurrent_statefulset_syncs).run()
    if o.enabled("endpoint"):
        makers["endpoint"] = lambda: EndpointsController(
            ctx.client("endpoint-controller"), factory,
            ctx.recorder("endpoint-controller", "endpoint-controller"),
            workers=o.concurrent_endpoint_syncs).run()
    if o.enabled("endpointslice"):
        makers["endpointslice"] = lambda: EndpointSliceController(
            ctx.client("endpointslice-controller"), factory,
            ctx.recorder("endpointslice-controller", "endpoint-slice-controller"),
            workers=o.concurrent_service_endpoint_syncs).run()
    if o.enabled("resourcequota"):
        makers["resourcequota"] = lambda: ResourceQuotaController(
            ctx.client("resourcequota-controller"), factory,
            workers=o.concurrent_resource_quota_syncs,
            resync_period=o.resource_quota_sync_period).run()
    if o.enabled("podgc"):
        makers["podgc"] = lambda: PodGCController(
            ctx.client("pod-garbage-collector"), factory,
            terminated_pod_threshold=o.terminated_pod_gc_threshold,
            gc_check_period=o.pod_gc_period).run()
    if o.enabled("nodelifecycle"):
        makers["nodelifecycle"] = lambda: NodeLifecycleController(
            ctx.client("node-controller"), factory,
            ctx.recorder("node-controller", "node-controller"),
            node_monitor_period=o.node_monitor_period,
            node_monitor_grace_period=o.node_monitor_grace_period,
            node_startup_grace_period=o.node_startup_grace_period,
            eviction_rate=o.node_eviction_rate).run()
    if o.enabled("disruption"):
        makers["disruption"] = lambda: DisruptionController(
            ctx.client("disruption-controller"), factory,
            ctx.recorder("disruption-controller", "controllermanager")).run()
    if o.enabled("nodeipam") and o.allocate_node_cidrs:
        ipam_config = o.node_ipam_config()
        makers["nodeipam"] = lambda: NodeIPAMController(
            ctx.client("node-controller"), factory,
            ctx.recorder("node-controller", "cidrAllocator"), ipam_config).run()
    if o.enabled("job"):
        makers["job"] = lambda: JobController(
            ctx.client("job-controller"), factory,
            ctx.recorder("job-controller", "job-controller"),
            workers=o.concurrent_job_syncs, backoff_base=o.job_backoff_base).run()
    if o.enabled("cronjob"):
        makers["cronjob"] = lambda: CronJobController(
            ctx.client("cronjob-controller"), factory,
            ctx.recorder("cronjob-controller", "cronjob-controller"),
            workers=o.concurrent_cron_job_syncs,
            clock=lambda: utcnow() + timedelta(seconds=o.cronjob_clock_offset)).run()
    if o.enabled("ttl-after-finished"):
        makers["ttl-after-finished"] = lambda: TTLAfterFinishedController(
            ctx.client("ttl-after-finished-controller"), factory,
            workers=o.concurrent_ttl_after_finished_syncs).run()
    if o.enabled("csrsigning"):
        if o.cluster_signing_cert_file and o.cluster_signing_key_file:
            from pyk8s.controllers.csrsigning import CAProvider, CSRSigningController
            makers["csrsigning"] = lambda: CSRSigningController(
                ctx.client("certificate-controller"), factory,
                CAProvider(o.cluster_signing_cert_file, o.cluster_signing_key_file),
                duration=o.cluster_signing_duration).run()
        else:
            log.info("Skipping CSR signer controller because no csr cert/key was specified")
    if o.enabled("csrapproving"):
        from pyk8s.controllers.csrapproving import CSRApprovingController
        makers["csrapproving"] = lambda: CSRApprovingController(
            ctx.client("certificate-controller"), factory).run()
    if o.enabled("root-ca-cert-publisher"):
        ca = root_ca(client, o)
        if ca:
            makers["root-ca-cert-publisher"] = lambda: RootCACertPublisher(
                ctx.client("root-ca-cert-publisher"), factory, ca).run()
        else:
            log.info("Skipping root CA certificate publisher because no --root-ca-file was "
                     "specified and the kubeconfig has no certificate authority")
    if o.enabled("persistentvolume-binder"):
        from pyk8s.controllers.persistentvolume import PersistentVolumeController
        makers["persistentvolume-binder"] = lambda: PersistentVolumeController(
            ctx.client("persistent-volume-binder"), factory,
            ctx.recorder("persistent-volume-binder", "persistentvolume-controller"),
            local_path_dir=o.local_path_dir).run()
    loop = asyncio.get_running_loop()
    ctx.start()
    # Controllers register their informers when constructed, i.e. when their task first
    # runs: start the tasks, let them construct, then start the shared informers.
    tasks = [loop.create_task(_supervise(n, f), name=f"controller-{n}") for n, f in makers.items()]
    await asyncio.sleep(0)
    factory.start()
    log.info("controller manager: started %s", ", ".join(makers))
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await factory.stop()
        await ctx.shutdown(timeout=1.0)


async def run_controllers(kubeconfig_path: str, stop: asyncio.Event,
                          options: ControllerManagerOptions | None = None) -> None:
    """Run the controllers until `stop` is set (leader-elected unless disabled)."""
    o = options or ControllerManagerOptions()
    if o.enabled("nodeipam") and o.allocate_node_cidrs:
        o.node_ipam_config()   # bad flags fail the start, not every leadership term
    if o.enabled("root-ca-cert-publisher") and o.root_ca_file:
        read_root_ca(o.root_ca_file)
    client = RESTClient.from_kubeconfig(kubeconfig_path, user_agent="pyk8s-controller-manager",
                                        qps=o.kube_api_qps, burst=o.kube_api_burst,
                                        max_inflight=o.max_inflight)
    le_client = RESTClient.from_kubeconfig(kubeconfig_path,
                                           user_agent="pyk8s-controller-manager/leader-election",
                                           timeout=o.renew_deadline)
    config = LeaderElectionConfig(
        lock_namespace=o.lock_namespace, lock_name=o.lock_name, identity=o.identity,
        lease_duration=o.lease_duration, renew_deadline=o.renew_deadline,
        retry_period=o.retry_period) if o.leader_elect else None
    try:
        await run_while_leading("controller manager", lambda: run_all(client, o), stop,
                                le_client, config)
    finally:
        await client.close()
        await le_client.close()
        log.info("controller manager: stopped")


__all__ = ["run_controllers", "run_all", "ControllerManagerOptions", "ALL_CONTROLLERS"]
