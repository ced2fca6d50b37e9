"""Server-side printing (meta.k8s.io/v1 Table) — columns and cells as upstream prints them."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import pytest

from pyk8s.api.catalogue import BUILTIN
from pyk8s.apiserver import tables
from pyk8s.apiserver.tables import (build_table, column_definitions, human_duration, row_cells,
                                    short_human_duration, translate_timestamp_since)

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


def ago(**kw) -> str:
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, age: timedelta = timedelta(minutes=5), **extra) -> dict:
    return {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": "7",
            "creationTimestamp": (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ"), **extra}


def names(group: str, kind: str, priority: int | None = None) -> list[str]:
    return [c["name"] for c in column_definitions(group, kind)
            if priority is None or c["priority"] == priority]


# --------------------------------------------------------------------------------- durations

@pytest.mark.parametrize("delta, want", [
    (timedelta(seconds=0), "0s"),
    (timedelta(seconds=1), "1s"),
    (timedelta(seconds=70), "70s"),
    (timedelta(seconds=119), "119s"),
    (timedelta(seconds=120), "2m"),
    (timedelta(seconds=190), "3m10s"),
    (timedelta(seconds=200), "3m20s"),
    (timedelta(minutes=9, seconds=59), "9m59s"),
    (timedelta(minutes=10, seconds=30), "10m"),
    (timedelta(minutes=70), "70m"),
    (timedelta(minutes=179), "179m"),
    (timedelta(hours=3), "3h"),
    (timedelta(hours=4, minutes=5), "4h5m"),
    (timedelta(hours=7, minutes=59), "7h59m"),
    (timedelta(hours=8, minutes=30), "8h"),
    (timedelta(hours=47), "47h"),
    (timedelta(hours=49), "2d1h"),
    (timedelta(days=3), "3d"),
    (timedelta(days=8, hours=2), "8d"),
    (timedelta(days=367), "367d"),
    (timedelta(days=365 * 2, hours=25), "2y1d"),
    (timedelta(days=365 * 3), "3y"),
    (timedelta(days=365 * 8, hours=2), "8y"),
    (timedelta(seconds=-1), "0s"),          # clock skew of up to 2s counts as now
    (timedelta(seconds=-1, milliseconds=-900), "0s"),
    (timedelta(seconds=-2), "<invalid>"),
])
def test_human_duration(delta, want):
    assert human_duration(delta) == want


@pytest.mark.parametrize("delta, want", [
    (timedelta(seconds=59), "59s"), (timedelta(seconds=61), "1m"), (timedelta(hours=5), "5h"),
    (timedelta(days=3, hours=5), "3d"), (timedelta(days=800), "2y"),
    (timedelta(seconds=-5), "<invalid>"),
])
def test_short_human_duration(delta, want):
    assert short_human_duration(delta) == want


def test_translate_timestamp_since():
    assert translate_timestamp_since(ago(minutes=3, seconds=20), NOW) == "3m20s"
    assert translate_timestamp_since("2024-06-01T11:59:59.250000Z", NOW) == "0s"
    assert translate_timestamp_since(None, NOW) == "<unknown>"
    assert translate_timestamp_since("", NOW) == "<unknown>"
    assert translate_timestamp_since("2024-06-01T12:10:00Z", NOW) == "<invalid>"
    # naive "now" is taken as UTC
    assert translate_timestamp_since(ago(hours=5), NOW.replace(tzinfo=None)) == "5h"
    assert translate_timestamp_since(ago(hours=2), NOW) == "120m"  # minutes up to 3h


# ------------------------------------------------------------------------------ column lists

def test_every_catalogue_kind_has_columns_starting_with_name():
    for info in BUILTIN:
        cols = column_definitions(info.group, info.kind)
        assert cols, info.kind
        for col in cols:
            assert set(col) == {"name", "type", "format", "description", "priority"}
            assert col["description"], (info.kind, col["name"])
        name_cols = [c for c in cols if c["format"] == "name"]
        assert len(name_cols) == 1 and name_cols[0]["name"] == "Name"
        if info.kind != "Event":
            assert cols[0] == name_cols[0]
            assert cols[0]["type"] == "string" and cols[0]["priority"] == 0


def test_pod_columns():
    cols = column_definitions("", "Pod")
    assert [(c["name"], c["type"], c["priority"]) for c in cols] == [
        ("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0),
        ("Restarts", "string", 0), ("Age", "string", 0), ("IP", "string", 1),
        ("Node", "string", 1), ("Nominated Node", "string", 1), ("Readiness Gates", "string", 1)]
    assert cols[0]["description"].startswith("Name must be unique within a namespace.")
    assert cols[4]["description"].startswith("CreationTimestamp is a timestamp representing")


@pytest.mark.parametrize("group, kind, normal, wide", [
    ("apps", "Deployment", ["Name", "Ready", "Up-to-date", "Available", "Age"],
     ["Containers", "Images", "Selector"]),
    ("", "Service", ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"], ["Selector"]),
    ("", "Node", ["Name", "Status", "Roles", "Age", "Version"],
     ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"]),
    ("", "Namespace", ["Name", "Status", "Age"], []),
    ("", "ConfigMap", ["Name", "Data", "Age"], []),
    ("", "Secret", ["Name", "Type", "Data", "Age"], []),
    ("", "ServiceAccount", ["Name", "Secrets", "Age"], []),
    ("", "Event", ["Last Seen", "Type", "Reason", "Object", "Message"],
     ["Subobject", "Source", "First Seen", "Count", "Name"]),
    ("events.k8s.io", "Event", ["Last Seen", "Type", "Reason", "Object", "Message"],
     ["Subobject", "Source", "First Seen", "Count", "Name"]),
    ("batch", "Job", ["Name", "Status", "Completions", "Duration", "Age"],
     ["Containers", "Images", "Selector"]),
    ("batch", "CronJob", ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule",
                          "Age"], ["Containers", "Images", "Selector"]),
    ("apps", "ReplicaSet", ["Name", "Desired", "Current", "Ready", "Age"],
     ["Containers", "Images", "Selector"]),
    ("apps", "StatefulSet", ["Name", "Ready", "Age"], ["Containers", "Images"]),
    ("apps", "DaemonSet", ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available",
                           "Node Selector", "Age"], ["Containers", "Images", "Selector"]),
    ("", "ReplicationController", ["Name", "Desired", "Current", "Ready", "Age"],
     ["Containers", "Images", "Selector"]),
    ("", "Endpoints", ["Name", "Endpoints", "Age"], []),
    ("discovery.k8s.io", "EndpointSlice", ["Name", "AddressType", "Ports", "Endpoints", "Age"], []),
    ("", "PersistentVolume", ["Name", "Capacity", "Access Modes", "Reclaim Policy", "Status",
                              "Claim", "StorageClass", "VolumeAttributesClass", "Reason", "Age"],
     ["VolumeMode"]),
    ("", "PersistentVolumeClaim", ["Name", "Status", "Volume", "Capacity", "Access Modes",
                                   "StorageClass", "VolumeAttributesClass", "Age"], ["VolumeMode"]),
    ("", "ResourceQuota", ["Name", "Request", "Limit", "Age"], []),
    ("", "LimitRange", ["Name", "Created At"], []),
    ("", "PodTemplate", ["Name", "Containers", "Images", "Pod Labels"], []),
    ("apps", "ControllerRevision", ["Name", "Controller", "Revision", "Age"], []),
    ("coordination.k8s.io", "Lease", ["Name", "Holder", "Age"], []),
    ("autoscaling", "HorizontalPodAutoscaler", ["Name", "Reference", "Targets", "MinPods",
                                                "MaxPods", "Replicas", "Age"], []),
    ("policy", "PodDisruptionBudget", ["Name", "Min Available", "Max Unavailable",
                                       "Allowed Disruptions", "Age"], []),
    ("rbac.authorization.k8s.io", "Role", ["Name", "Created At"], []),
    ("rbac.authorization.k8s.io", "ClusterRole", ["Name", "Created At"], []),
    ("rbac.authorization.k8s.io", "RoleBinding", ["Name", "Role", "Age"],
     ["Users", "Groups", "ServiceAccounts"]),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", ["Name", "Role", "Age"],
     ["Users", "Groups", "ServiceAccounts"]),
    ("storage.k8s.io", "StorageClass", ["Name", "Provisioner", "ReclaimPolicy",
                                        "VolumeBindingMode", "AllowVolumeExpansion", "Age"], []),
    ("networking.k8s.io", "Ingress", ["Name", "Class", "Hosts", "Address", "Ports", "Age"], []),
    ("networking.k8s.io", "IngressClass", ["Name", "Controller", "Parameters", "Age"], []),
    ("networking.k8s.io", "NetworkPolicy", ["Name", "Pod-Selector", "Age"], []),
    ("scheduling.k8s.io", "PriorityClass", ["Name", "Value", "Global-Default", "Age",
                                            "PreemptionPolicy"], []),
])
def test_columns(group, kind, normal, wide):
    assert names(group, kind, 0) == normal
    assert names(group, kind, 1) == wide


def test_default_table_columns_for_unknown_kind():
    cols = column_definitions("example.com", "Widget")
    assert [(c["name"], c["type"], c["format"]) for c in cols] == [
        ("Name", "string", "name"), ("Created At", "date", "")]
    obj = {"metadata": {"name": "w1", "creationTimestamp": "2024-05-01T10:00:00+02:00"}}
    assert row_cells("example.com", "Widget", obj, NOW) == ["w1", "2024-05-01T08:00:00Z"]
    assert row_cells("example.com", "Widget", {"metadata": {"name": "w2"}}, NOW) == [
        "w2", "0001-01-01T00:00:00Z"]


def test_cells_match_columns_for_every_printer_even_on_sparse_objects():
    for (group, kind), printer in tables.PRINTERS.items():
        cells = row_cells(group, kind, {"metadata": {"name": "x"}}, NOW)
        assert len(cells) == len(printer.columns), kind
        json.dumps(cells)


# -------------------------------------------------------------------------------------- pods

def container_status(name, *, ready=False, restarts=0, state=None, last=None, started=None):
    cs = {"name": name, "ready": ready, "restartCount": restarts, "image": "img",
          "state": state or {}}
    if last is not None:
        cs["lastState"] = last
    if started is not None:
        cs["started"] = started
    return cs


def pod(name="web", *, containers=("app",), init=(), phase="Running", statuses=(),
        init_statuses=(), conditions=None, **extra_status) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": meta(name, labels={"app": name}),
        "spec": {"containers": [{"name": c, "image": f"{c}:1"} for c in containers],
                 "initContainers": [dict(c) if isinstance(c, dict) else {"name": c, "image": "i"}
                                    for c in init],
                 "nodeName": "node-1"},
        "status": {"phase": phase, "conditions": conditions or [],
                   "containerStatuses": list(statuses),
                   "initContainerStatuses": list(init_statuses),
                   **extra_status},
    }


RUNNING = {"running": {"startedAt": "2024-06-01T11:56:00Z"}}
READY_CONDS = [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}]


def test_pod_running():
    p = pod(statuses=[container_status("app", ready=True, state=RUNNING)],
            conditions=READY_CONDS, podIP="10.244.0.7",
            podIPs=[{"ip": "10.244.0.7"}, {"ip": "fd00::7"}])
    assert row_cells("", "Pod", p, NOW) == [
        "web", "1/1", "Running", "0", "5m", "10.244.0.7", "node-1", "<none>", "<none>"]


def test_pod_crashlooping_with_last_restart():
    p = pod(containers=("app", "sidecar"), statuses=[
        container_status("app", restarts=3,
                         state={"waiting": {"reason": "CrashLoopBackOff",
                                            "message": "back-off 40s restarting"}},
                         last={"terminated": {"exitCode": 1, "reason": "Error",
                                              "finishedAt": ago(seconds=45)}}),
        container_status("sidecar", ready=True, restarts=1, state=RUNNING,
                         last={"terminated": {"exitCode": 137, "finishedAt": ago(hours=2)}}),
    ])
    cells = row_cells("", "Pod", p, NOW)
    assert cells[1:5] == ["1/2", "CrashLoopBackOff", "4 (45s ago)", "5m"]


def test_pod_restarts_without_termination_time_have_no_suffix():
    p = pod(statuses=[container_status("app", ready=True, restarts=2, state=RUNNING)])
    assert row_cells("", "Pod", p, NOW)[3] == "2"


def test_pod_pending_container_creating():
    p = pod(phase="Pending", statuses=[
        container_status("app", state={"waiting": {"reason": "ContainerCreating"}})])
    assert row_cells("", "Pod", p, NOW)[1:3] == ["0/1", "ContainerCreating"]


def test_pod_pending_unscheduled_and_scheduling_gated():
    p = pod(phase="Pending")
    p["spec"].pop("nodeName")
    assert row_cells("", "Pod", p, NOW)[1:3] == ["0/1", "Pending"]
    assert row_cells("", "Pod", p, NOW)[6] == "<none>"
    p["status"]["conditions"] = [{"type": "PodScheduled", "status": "False",
                                  "reason": "SchedulingGated"}]
    assert row_cells("", "Pod", p, NOW)[2] == "SchedulingGated"


@pytest.mark.parametrize("init_statuses, want", [
    # first init container still running
    ([container_status("init-a", state=RUNNING), container_status("init-b")], "Init:0/2"),
    # first done, second running
    ([container_status("init-a", state={"terminated": {"exitCode": 0, "reason": "Completed"}}),
      container_status("init-b", state=RUNNING)], "Init:1/2"),
    # second crashlooping
    ([container_status("init-a", state={"terminated": {"exitCode": 0, "reason": "Completed"}}),
      container_status("init-b", restarts=4, state={"waiting": {"reason": "CrashLoopBackOff"}})],
     "Init:CrashLoopBackOff"),
    # failed with a reason / without one / killed by a signal
    ([container_status("init-a", state={"terminated": {"exitCode": 1, "reason": "Error"}})],
     "Init:Error"),
    ([container_status("init-a", state={"terminated": {"exitCode": 2}})], "Init:ExitCode:2"),
    ([container_status("init-a", state={"terminated": {"exitCode": 137, "signal": 9}})],
     "Init:Signal:9"),
    # waiting for PodInitializing is not a reason of its own
    ([container_status("init-a", state={"waiting": {"reason": "PodInitializing"}})],
     "Init:0/2"),
])
def test_pod_initializing(init_statuses, want):
    p = pod(phase="Pending", init=("init-a", "init-b"), init_statuses=init_statuses,
            statuses=[container_status("app", state={"waiting": {"reason": "PodInitializing"}})])
    cells = row_cells("", "Pod", p, NOW)
    assert cells[1:3] == ["0/1", want]


def test_pod_init_restarts_count_while_initializing():
    p = pod(phase="Pending", init=("init-a",), init_statuses=[
        container_status("init-a", restarts=4, state={"waiting": {"reason": "CrashLoopBackOff"}},
                         last={"terminated": {"exitCode": 1, "finishedAt": ago(seconds=30)}})])
    assert row_cells("", "Pod", p, NOW)[2:4] == ["Init:CrashLoopBackOff", "4 (30s ago)"]


def test_pod_initializing_done_shows_pod_initializing():
    p = pod(phase="Pending", init=("init-a",), conditions=[{"type": "Initialized",
                                                           "status": "True"}],
            init_statuses=[container_status("init-a", restarts=1, state={
                "terminated": {"exitCode": 0, "reason": "Completed"}})],
            statuses=[container_status("app", state={"waiting": {"reason": "PodInitializing"}})])
    # restarts of finished (non-sidecar) init containers no longer count
    assert row_cells("", "Pod", p, NOW)[1:4] == ["0/1", "PodInitializing", "0"]


def test_pod_sidecar_init_container_counts_as_container():
    sidecar = {"name": "proxy", "image": "envoy", "restartPolicy": "Always"}
    p = pod(init=(sidecar,), conditions=READY_CONDS, init_statuses=[
        container_status("proxy", ready=True, started=True, restarts=1, state=RUNNING,
                         last={"terminated": {"exitCode": 1, "finishedAt": ago(minutes=2)}})],
        statuses=[container_status("app", ready=True, state=RUNNING)])
    assert row_cells("", "Pod", p, NOW)[1:4] == ["2/2", "Running", "1 (2m ago)"]


def test_pod_terminating_and_node_lost():
    p = pod(statuses=[container_status("app", ready=True, state=RUNNING)])
    p["metadata"]["deletionTimestamp"] = ago(seconds=10)
    assert row_cells("", "Pod", p, NOW)[2] == "Terminating"
    p["status"]["reason"] = "NodeLost"
    assert row_cells("", "Pod", p, NOW)[2] == "Unknown"
    # a terminal pod being deleted keeps its status
    done = pod(phase="Succeeded", statuses=[container_status(
        "app", state={"terminated": {"exitCode": 0, "reason": "Completed"}})])
    done["metadata"]["deletionTimestamp"] = ago(seconds=10)
    assert row_cells("", "Pod", done, NOW)[2] == "Completed"


def test_pod_completed_and_row_conditions():
    p = pod(phase="Succeeded", statuses=[container_status(
        "app", state={"terminated": {"exitCode": 0, "reason": "Completed"}})])
    assert row_cells("", "Pod", p, NOW)[1:3] == ["0/1", "Completed"]
    table = build_table("", "Pod", [p], now=NOW, resource_version="9")
    assert table["rows"][0]["conditions"] == [{
        "type": "Completed", "status": "True", "reason": "Succeeded",
        "message": "The pod has completed successfully."}]
    failed = pod(phase="Failed", statuses=[container_status(
        "app", state={"terminated": {"exitCode": 3}})])
    assert row_cells("", "Pod", failed, NOW)[2] == "ExitCode:3"
    assert build_table("", "Pod", [failed], now=NOW)["rows"][0]["conditions"][0]["reason"] \
        == "Failed"
    running = pod(statuses=[container_status("app", ready=True, state=RUNNING)])
    assert "conditions" not in build_table("", "Pod", [running], now=NOW)["rows"][0]


def test_pod_completed_container_with_running_sibling():
    statuses = [container_status("app", ready=True, state=RUNNING),
                container_status("job", state={"terminated": {"exitCode": 0,
                                                              "reason": "Completed"}})]
    p = pod(containers=("app", "job"), statuses=statuses, conditions=READY_CONDS)
    assert row_cells("", "Pod", p, NOW)[1:3] == ["1/2", "Running"]
    p["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert row_cells("", "Pod", p, NOW)[2] == "NotReady"


def test_pod_evicted_and_oom_killed():
    evicted = pod(phase="Failed", reason="Evicted", message="The node was low on memory.")
    assert row_cells("", "Pod", evicted, NOW)[2] == "Evicted"
    oom = pod(statuses=[container_status("app", restarts=1, state={
        "terminated": {"exitCode": 137, "reason": "OOMKilled"}})])
    assert row_cells("", "Pod", oom, NOW)[2] == "OOMKilled"


def test_pod_wide_cells():
    p = pod(statuses=[container_status("app", ready=True, state=RUNNING)], podIP="10.1.2.3",
            nominatedNodeName="node-9",
            conditions=READY_CONDS + [{"type": "example.com/ready", "status": "True"}])
    p["spec"]["readinessGates"] = [{"conditionType": "example.com/ready"},
                                   {"conditionType": "example.com/other"}]
    assert row_cells("", "Pod", p, NOW)[5:] == ["10.1.2.3", "node-1", "node-9", "1/2"]


# ------------------------------------------------------------------------------- deployments

def deployment(desired=3, **status) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web", timedelta(days=3)),
        "spec": {"replicas": desired,
                 "selector": {"matchLabels": {"app": "web", "tier": "fe"},
                              "matchExpressions": [{"key": "env", "operator": "In",
                                                    "values": ["prod", "canary"]},
                                                   {"key": "legacy",
                                                    "operator": "DoesNotExist"}]},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"},
                                                      {"name": "log", "image": "busybox"}]}}},
        "status": status,
    }


def test_deployment_cells():
    d = deployment(desired=3, readyReplicas=2, updatedReplicas=3, availableReplicas=2,
                   replicas=3)
    assert row_cells("apps", "Deployment", d, NOW) == [
        "web", "2/3", 3, 2, "3d", "nginx,log", "nginx:1.27,busybox",
        "app=web,env in (canary,prod),!legacy,tier=fe"]


def test_deployment_new_and_default_replicas():
    d = deployment()
    del d["spec"]["replicas"]
    d["spec"]["selector"] = {}
    assert row_cells("apps", "Deployment", d, NOW)[:4] == ["web", "0/1", 0, 0]
    assert row_cells("apps", "Deployment", d, NOW)[-1] == ""


def test_replica_set_and_stateful_set_and_daemon_set():
    rs = deployment(desired=2, readyReplicas=1)
    rs["status"]["replicas"] = 2
    assert row_cells("apps", "ReplicaSet", rs, NOW) == [
        "web", 2, 2, 1, "3d", "nginx,log", "nginx:1.27,busybox",
        "app=web,env in (canary,prod),!legacy,tier=fe"]
    sts = deployment(desired=3, readyReplicas=3)
    assert row_cells("apps", "StatefulSet", sts, NOW) == [
        "web", "3/3", "3d", "nginx,log", "nginx:1.27,busybox"]
    ds = deployment()
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux"}
    ds["spec"]["selector"] = {"matchLabels": {"app": "web"}}
    ds["status"] = {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                    "updatedNumberScheduled": 3, "numberAvailable": 2}
    assert row_cells("apps", "DaemonSet", ds, NOW) == [
        "web", 3, 3, 2, 3, 2, "kubernetes.io/os=linux", "3d", "nginx,log",
        "nginx:1.27,busybox", "app=web"]


def test_replication_controller():
    rc = {"metadata": meta("old"), "spec": {"replicas": 2, "selector": {"b": "2", "a": "1"},
                                            "template": {"spec": {"containers": [
                                                {"name": "c", "image": "i"}]}}},
          "status": {"replicas": 2, "readyReplicas": 2}}
    assert row_cells("", "ReplicationController", rc, NOW) == [
        "old", 2, 2, 2, "5m", "c", "i", "a=1,b=2"]


# ---------------------------------------------------------------------------------- services

def service(svc_type, ports, **spec_extra) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta("svc", timedelta(hours=4)),
            "spec": {"type": svc_type, "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": ports, "selector": {"app": "web"}, **spec_extra},
            "status": {"loadBalancer": {}}}


def test_service_cluster_ip():
    svc = service("ClusterIP", [{"name": "http", "port": 80, "protocol": "TCP",
                                 "targetPort": 8080},
                                {"name": "dns", "port": 53, "protocol": "UDP"}])
    assert row_cells("", "Service", svc, NOW) == [
        "svc", "ClusterIP", "10.96.0.10", "<none>", "80/TCP,53/UDP", "4h", "app=web"]


def test_service_node_port():
    svc = service("NodePort", [{"port": 80, "nodePort": 30080, "protocol": "TCP"}])
    assert row_cells("", "Service", svc, NOW)[1:5] == [
        "NodePort", "10.96.0.10", "<none>", "80:30080/TCP"]


def test_service_load_balancer():
    svc = service("LoadBalancer", [{"port": 443, "nodePort": 31443, "protocol": "TCP"}])
    assert row_cells("", "Service", svc, NOW)[3:5] == ["<pending>", "443:31443/TCP"]
    svc["status"]["loadBalancer"]["ingress"] = [{"ip": "203.0.113.9"},
                                                {"hostname": "lb.example.com"},
                                                {"ip": "198.51.100.2"}]
    assert row_cells("", "Service", svc, NOW)[3] == "198.51.100.2,203.0.113.9,lb.example.com"
    svc["spec"]["externalIPs"] = ["192.0.2.1"]
    assert row_cells("", "Service", svc, NOW)[3] == \
        "198.51.100.2,203.0.113.9,lb.example.com,192.0.2.1"


def test_service_other_shapes():
    headless = service("ClusterIP", [], clusterIP="None", clusterIPs=["None"])
    headless["spec"].pop("selector")
    assert row_cells("", "Service", headless, NOW)[1:] == [
        "ClusterIP", "None", "<none>", "<none>", "4h", "<none>"]
    ext = {"metadata": meta("ext"), "spec": {"type": "ExternalName",
                                             "externalName": "db.example.com"}}
    assert row_cells("", "Service", ext, NOW)[1:5] == [
        "ExternalName", "<none>", "db.example.com", "<none>"]
    external_ips = service("ClusterIP", [{"port": 80}], externalIPs=["1.2.3.4", "5.6.7.8"])
    del external_ips["spec"]["clusterIPs"]
    assert row_cells("", "Service", external_ips, NOW)[2:5] == [
        "10.96.0.10", "1.2.3.4,5.6.7.8", "80/TCP"]


# ------------------------------------------------------------------------------------- nodes

def node(name, ready="True", labels=None, unschedulable=False, **info) -> dict:
    n = {"apiVersion": "v1", "kind": "Node",
         "metadata": meta(name, timedelta(days=12), labels=labels or {}),
         "spec": {"unschedulable": True} if unschedulable else {},
         "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                   {"type": "Ready", "status": ready}],
                    "addresses": [{"type": "InternalIP", "address": "172.18.0.2"},
                                  {"type": "Hostname", "address": name}],
                    "nodeInfo": {"kubeletVersion": "v1.32.0", **info}}}
    if ready is None:
        n["status"]["conditions"] = []
    return n


def test_node_ready_with_roles():
    n = node("cp", labels={"node-role.kubernetes.io/control-plane": "",
                           "node-role.kubernetes.io/etcd": "true",
                           "kubernetes.io/hostname": "cp"},
             osImage="Debian GNU/Linux 12 (bookworm)", kernelVersion="6.8.0",
             containerRuntimeVersion="containerd://1.7.18")
    assert row_cells("", "Node", n, NOW) == [
        "cp", "Ready", "control-plane,etcd", "12d", "v1.32.0", "172.18.0.2", "<none>",
        "Debian GNU/Linux 12 (bookworm)", "6.8.0", "containerd://1.7.18"]


def test_node_not_ready_cordoned_and_unknown():
    n = node("w1", ready="False", unschedulable=True, labels={"kubernetes.io/role": "worker"})
    assert row_cells("", "Node", n, NOW)[1:3] == ["NotReady,SchedulingDisabled", "worker"]
    n = node("w2", ready="Unknown")
    assert row_cells("", "Node", n, NOW)[1:3] == ["NotReady", "<none>"]
    n = node("w3", ready=None, unschedulable=True)
    assert row_cells("", "Node", n, NOW)[1] == "Unknown,SchedulingDisabled"
    assert row_cells("", "Node", n, NOW)[7:] == ["<unknown>", "<unknown>", "<unknown>"]
    # an empty role suffix or empty kubernetes.io/role value is not a role
    n = node("w4", labels={"node-role.kubernetes.io/": "", "kubernetes.io/role": ""})
    assert row_cells("", "Node", n, NOW)[2] == "<none>"


def test_namespace():
    ns = {"metadata": meta("team-a", timedelta(days=30)), "status": {"phase": "Terminating"}}
    assert row_cells("", "Namespace", ns, NOW) == ["team-a", "Terminating", "30d"]


# -------------------------------------------------------------------------------------- jobs

def job(**kw) -> dict:
    spec = {"template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}},
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}}}
    spec.update(kw.pop("spec", {}))
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("pi", timedelta(hours=1)),
            "spec": spec, "status": kw}


def test_job_complete():
    j = job(spec={"completions": 1, "parallelism": 1}, succeeded=1,
            startTime=ago(minutes=59), completionTime=ago(minutes=58, seconds=10),
            conditions=[{"type": "SuccessCriteriaMet", "status": "True"},
                        {"type": "Complete", "status": "True"}])
    assert row_cells("batch", "Job", j, NOW) == [
        "pi", "Complete", "1/1", "50s", "60m", "pi", "perl:5.34",
        "batch.kubernetes.io/controller-uid=abc"]


def test_job_running_failed_suspended_terminating():
    running = job(spec={"completions": 3}, succeeded=1, active=1, startTime=ago(minutes=4))
    assert row_cells("batch", "Job", running, NOW)[1:4] == ["Running", "1/3", "4m"]
    failed = job(failed=6, startTime=ago(minutes=30), conditions=[
        {"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}])
    assert row_cells("batch", "Job", failed, NOW)[1:4] == ["Failed", "0/1", "30m"]
    failing = job(conditions=[{"type": "FailureTarget", "status": "True"}])
    assert row_cells("batch", "Job", failing, NOW)[1:4] == ["FailureTarget", "0/1", ""]
    suspended = job(spec={"parallelism": 3, "suspend": True},
                    conditions=[{"type": "Suspended", "status": "True"}])
    assert row_cells("batch", "Job", suspended, NOW)[1:4] == ["Suspended", "0/1 of 3", ""]
    terminating = job(startTime=ago(minutes=2))
    terminating["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert row_cells("batch", "Job", terminating, NOW)[1] == "Terminating"
    # a condition that is present but not True does not count
    resumed = job(conditions=[{"type": "Suspended", "status": "False"}])
    assert row_cells("batch", "Job", resumed, NOW)[1] == "Running"


def test_cron_job():
    cj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta("nightly",
                                                                     timedelta(days=2)),
          "spec": {"schedule": "0 3 * * *", "suspend": False,
                   "jobTemplate": {"spec": {"template": {"spec": {"containers": [
                       {"name": "backup", "image": "backup:2"}]}}}}},
          "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": ago(hours=9)}}
    assert row_cells("batch", "CronJob", cj, NOW) == [
        "nightly", "0 3 * * *", "<none>", "False", 1, "9h", "2d", "backup", "backup:2",
        "<none>"]
    cj["spec"]["timeZone"] = "Europe/Paris"
    del cj["spec"]["suspend"]
    del cj["status"]["lastScheduleTime"]
    assert row_cells("batch", "CronJob", cj, NOW)[2:6] == ["Europe/Paris", "<unset>", 1, "<none>"]


# ------------------------------------------------------------------------------------ events

def core_event(**kw) -> dict:
    e = {"apiVersion": "v1", "kind": "Event",
         "metadata": meta("web.17d8a1b2c3", timedelta(minutes=10)),
         "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web",
                            "fieldPath": "spec.containers{app}"},
         "reason": "BackOff", "message": "Back-off restarting failed container\n",
         "source": {"component": "kubelet", "host": "node-1"},
         "firstTimestamp": ago(minutes=10), "lastTimestamp": ago(seconds=30), "count": 7,
         "type": "Warning"}
    e.update(kw)
    return e


def test_core_event():
    assert row_cells("", "Event", core_event(), NOW) == [
        "30s", "Warning", "BackOff", "pod/web", "spec.containers{app}", "kubelet, node-1",
        "Back-off restarting failed container", "10m", 7, "web.17d8a1b2c3"]


def test_event_without_last_timestamp_or_count():
    e = core_event(lastTimestamp=None, count=None, source={"component": "scheduler"},
                   involvedObject={"kind": "Node", "name": ""})
    assert row_cells("", "Event", e, NOW)[:9] == [
        "10m", "Warning", "BackOff", "node", "", "scheduler",
        "Back-off restarting failed container", "10m", 1]


def test_event_new_api_fields_in_core_shape():
    e = core_event(firstTimestamp=None, lastTimestamp=None, count=None, source={},
                   eventTime="2024-06-01T11:58:00.123456Z", reportingComponent="default-scheduler",
                   reportingInstance="default-scheduler-cp",
                   series={"count": 4, "lastObservedTime": "2024-06-01T11:59:40.000000Z"})
    cells = row_cells("", "Event", e, NOW)
    # 119.88s truncates to 119s, like Go's int(d.Seconds())
    assert cells[0] == "20s" and cells[7] == "119s" and cells[8] == 4
    assert cells[5] == "default-scheduler, default-scheduler-cp"


def test_events_k8s_io_event():
    e = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
         "metadata": meta("web.17d8", timedelta(minutes=3)),
         "eventTime": ago(minutes=3), "reportingController": "kubelet",
         "reportingInstance": "node-1", "action": "Pulling", "reason": "Pulling",
         "regarding": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
         "note": "Pulling image \"nginx\"", "type": "Normal"}
    assert row_cells("events.k8s.io", "Event", e, NOW) == [
        "3m", "Normal", "Pulling", "pod/web", "spec.containers{app}", "kubelet, node-1",
        "Pulling image \"nginx\"", "3m", 1, "web.17d8"]
    e.update(deprecatedFirstTimestamp=ago(hours=1), deprecatedLastTimestamp=ago(minutes=1),
             deprecatedCount=12, deprecatedSource={"component": "kubelet"})
    assert row_cells("events.k8s.io", "Event", e, NOW)[0::7] == ["60s", "60m"]
    assert row_cells("events.k8s.io", "Event", e, NOW)[8] == 12


# -------------------------------------------------------------------------- config & storage

def test_secrets_and_config_maps():
    s = {"metadata": meta("tls", timedelta(days=400)), "type": "kubernetes.io/tls",
         "data": {"tls.crt": "Y3J0", "tls.key": "a2V5"}}
    assert row_cells("", "Secret", s, NOW) == ["tls", "kubernetes.io/tls", 2, "400d"]
    empty = {"metadata": meta("empty", timedelta(seconds=30)), "type": "Opaque"}
    assert row_cells("", "Secret", empty, NOW) == ["empty", "Opaque", 0, "30s"]
    cm = {"metadata": meta("cfg", timedelta(days=800)), "data": {"a": "1", "b": "2"},
          "binaryData": {"c": "AA=="}}
    assert row_cells("", "ConfigMap", cm, NOW) == ["cfg", 3, "2y70d"]
    sa = {"metadata": meta("default", timedelta(days=1)), "secrets": [{"name": "tok"}]}
    assert row_cells("", "ServiceAccount", sa, NOW) == ["default", 1, "24h"]


def test_persistent_volumes_and_claims():
    pv = {"metadata": meta("pv-1", timedelta(days=5)),
          "spec": {"capacity": {"storage": "10Gi"},
                   "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                   "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "fast",
                   "claimRef": {"namespace": "default", "name": "data"}},
          "status": {"phase": "Bound"}}
    assert row_cells("", "PersistentVolume", pv, NOW) == [
        "pv-1", "10Gi", "RWO,RWX", "Retain", "Bound", "default/data", "fast", "<unset>", "",
        "5d", "<unset>"]
    pvc = {"metadata": meta("data", timedelta(days=5)),
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                    "resources": {"requests": {"storage": "8Gi"}}, "volumeMode": "Filesystem"},
           "status": {"phase": "Pending"}}
    assert row_cells("", "PersistentVolumeClaim", pvc, NOW) == [
        "data", "Pending", "", "", "", "fast", "<unset>", "5d", "Filesystem"]
    pvc["spec"]["volumeName"] = "pv-1"
    pvc["status"] = {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                     "capacity": {"storage": "10Gi"}}
    pvc["metadata"]["deletionTimestamp"] = ago(seconds=5)
    assert row_cells("", "PersistentVolumeClaim", pvc, NOW)[:5] == [
        "data", "Terminating", "pv-1", "10Gi", "RWO"]


def test_storage_class():
    sc = {"metadata": meta("standard", timedelta(days=9), annotations={
              "storageclass.kubernetes.io/is-default-class": "true"}),
          "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}
    assert row_cells("storage.k8s.io", "StorageClass", sc, NOW) == [
        "standard (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", False,
        "9d"]


def test_resource_quota():
    rq = {"metadata": meta("compute"),
          "status": {"hard": {"requests.cpu": "4", "limits.memory": "8Gi", "pods": "10",
                              "limits.cpu": "8"},
                     "used": {"requests.cpu": "500m", "pods": "3", "limits.cpu": "1"}}}
    assert row_cells("", "ResourceQuota", rq, NOW) == [
        "compute", "pods: 3/10, requests.cpu: 500m/4", "limits.cpu: 1/8, limits.memory: 0/8Gi",
        "5m"]


# ------------------------------------------------------------------------- the other printers

def test_endpoints_and_endpoint_slices():
    ep = {"metadata": meta("web"), "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
         "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]},
        {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]}]}
    assert row_cells("", "Endpoints", ep, NOW) == [
        "web", "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more...", "5m"]
    ep6 = {"metadata": meta("v6"), "subsets": [{"addresses": [{"ip": "fd00::1"}],
                                                "ports": [{"port": 53}]}]}
    assert row_cells("", "Endpoints", ep6, NOW)[1] == "[fd00::1]:53"
    headless = {"metadata": meta("h"), "subsets": [{"addresses": [{"ip": "10.0.0.9"}]}]}
    assert row_cells("", "Endpoints", headless, NOW)[1] == "10.0.0.9"
    assert row_cells("", "Endpoints", {"metadata": meta("none")}, NOW)[1] == "<none>"

    es = {"metadata": meta("web-abc"), "addressType": "IPv4",
          "ports": [{"name": "http", "port": 80}, {"name": "named"}, {}, {"port": 9}],
          "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}
    assert row_cells("discovery.k8s.io", "EndpointSlice", es, NOW) == [
        "web-abc", "IPv4", "80,named,* + 1 more...", "10.0.0.1,10.0.0.2", "5m"]
    assert row_cells("discovery.k8s.io", "EndpointSlice",
                     {"metadata": meta("e"), "addressType": "IPv6"}, NOW)[2:4] == [
        "<unset>", "<unset>"]


def test_ingress_and_ingress_class():
    ing = {"metadata": meta("web"),
           "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"]}],
                    "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}, {},
                              {"host": "c.example.com"}, {"host": "d.example.com"}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "172.18.0.5"}]}}}
    assert row_cells("networking.k8s.io", "Ingress", ing, NOW) == [
        "web", "nginx", "a.example.com,b.example.com,c.example.com + 2 more...", "172.18.0.5",
        "80, 443", "5m"]
    bare = {"metadata": meta("bare"), "spec": {"rules": [{}]}}
    assert row_cells("networking.k8s.io", "Ingress", bare, NOW)[1:5] == ["<none>", "*", "", "80"]
    ic = {"metadata": meta("nginx"), "spec": {"controller": "k8s.io/ingress-nginx",
                                              "parameters": {"apiGroup": "k8s.example.com",
                                                             "kind": "IngressParameters",
                                                             "name": "external-lb"}}}
    assert row_cells("networking.k8s.io", "IngressClass", ic, NOW) == [
        "nginx", "k8s.io/ingress-nginx", "IngressParameters.k8s.example.com/external-lb", "5m"]


def test_network_policy_and_pdb_and_priority_class_and_lease():
    np = {"metadata": meta("deny"), "spec": {"podSelector": {}}}
    assert row_cells("networking.k8s.io", "NetworkPolicy", np, NOW) == ["deny", "<none>", "5m"]
    np["spec"]["podSelector"] = {"matchExpressions": [{"key": "role", "operator": "NotIn",
                                                       "values": ["db"]}]}
    assert row_cells("networking.k8s.io", "NetworkPolicy", np, NOW)[1] == "role notin (db)"
    pdb = {"metadata": meta("web"), "spec": {"minAvailable": "50%"},
           "status": {"disruptionsAllowed": 1}}
    assert row_cells("policy", "PodDisruptionBudget", pdb, NOW) == ["web", "50%", "N/A", 1, "5m"]
    pc = {"metadata": meta("high"), "value": 1000000, "globalDefault": False,
          "preemptionPolicy": "PreemptLowerPriority"}
    assert row_cells("scheduling.k8s.io", "PriorityClass", pc, NOW) == [
        "high", 1000000, False, "5m", "PreemptLowerPriority"]
    lease = {"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "cp_1234"}}
    assert row_cells("coordination.k8s.io", "Lease", lease, NOW) == [
        "kube-scheduler", "cp_1234", "5m"]


def test_hpa_v2_and_v1():
    hpa = {"apiVersion": "autoscaling/v2", "metadata": meta("web"),
           "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2,
                    "maxReplicas": 10, "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "target": {
                            "type": "Utilization", "averageUtilization": 80}}},
                        {"type": "Resource", "resource": {"name": "memory", "target": {
                            "type": "AverageValue", "averageValue": "500Mi"}}},
                        {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {
                            "type": "AverageValue", "averageValue": "100"}}}]},
           "status": {"currentReplicas": 3, "currentMetrics": [
               {"type": "Resource", "resource": {"name": "cpu", "current": {
                   "averageUtilization": 35, "averageValue": "70m"}}}]}}
    assert row_cells("autoscaling", "HorizontalPodAutoscaler", hpa, NOW) == [
        "web", "Deployment/web", "cpu: 35%/80%, memory: <unknown>/500Mi + 1 more...", "2", 10,
        3, "5m"]
    v1 = {"apiVersion": "autoscaling/v1", "metadata": meta("web"),
          "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                   "targetCPUUtilizationPercentage": 50},
          "status": {"currentReplicas": 1, "currentCPUUtilizationPercentage": 12}}
    assert row_cells("autoscaling", "HorizontalPodAutoscaler", v1, NOW)[1:6] == [
        "Deployment/web", "cpu: 12%/50%", "<unset>", 5, 1]
    del v1["spec"]["targetCPUUtilizationPercentage"]
    assert row_cells("autoscaling", "HorizontalPodAutoscaler", v1, NOW)[2] == "<none>"


def test_role_bindings_and_roles():
    rb = {"metadata": meta("admins"), "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                  "kind": "ClusterRole", "name": "admin"},
          "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "ops"},
                       {"kind": "ServiceAccount", "namespace": "ci", "name": "deployer"},
                       {"kind": "User", "name": "bob"}]}
    assert row_cells("rbac.authorization.k8s.io", "RoleBinding", rb, NOW) == [
        "admins", "ClusterRole/admin", "5m", "alice, bob", "ops", "ci/deployer"]
    assert row_cells("rbac.authorization.k8s.io", "ClusterRoleBinding", rb, NOW)[:2] == [
        "admins", "ClusterRole/admin"]
    role = {"metadata": meta("reader")}
    assert row_cells("rbac.authorization.k8s.io", "Role", role, NOW) == [
        "reader", (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")]


def test_pod_templates_and_controller_revisions():
    pt = {"metadata": meta("tmpl"), "template": {"metadata": {"labels": {"app": "x"}},
                                                 "spec": {"containers": [
                                                     {"name": "a", "image": "a:1"}]}}}
    assert row_cells("", "PodTemplate", pt, NOW) == ["tmpl", "a", "a:1", "app=x"]
    cr = {"metadata": meta("web-5d8f", ownerReferences=[
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": True}]),
          "revision": 3}
    assert row_cells("apps", "ControllerRevision", cr, NOW) == [
        "web-5d8f", "statefulset.apps/web", 3, "5m"]
    cr["metadata"]["ownerReferences"] = []
    assert row_cells("apps", "ControllerRevision", cr, NOW)[1] == "<none>"


# ------------------------------------------------------------------------------- build_table

def test_build_table_list_with_metadata_objects():
    pods = [pod("a", statuses=[container_status("app", ready=True, state=RUNNING)]),
            pod("b", phase="Pending")]
    table = build_table("", "Pod", pods, now=NOW, resource_version="1234",
                        continue_token="eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ", remaining=5)
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "1234",
                                 "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ",
                                 "remainingItemCount": 5}
    assert table["columnDefinitions"] == column_definitions("", "Pod")
    assert [r["cells"][0] for r in table["rows"]] == ["a", "b"]
    assert table["rows"][0]["object"] == {"kind": "PartialObjectMetadata",
                                          "apiVersion": "meta.k8s.io/v1",
                                          "metadata": pods[0]["metadata"]}
    json.dumps(table)


def test_build_table_include_object_policies():
    p = pod(statuses=[container_status("app", ready=True, state=RUNNING)])
    original = copy.deepcopy(p)
    full = build_table("", "Pod", [p], now=NOW, include_object="Object")
    assert full["rows"][0]["object"] == p
    full["rows"][0]["object"]["metadata"]["name"] = "changed"
    assert p == original  # rows hold copies
    assert build_table("", "Pod", [p], now=NOW, include_object="None")["rows"][0]["object"] \
        is None
    for default in ("", None, "Metadata"):
        row = build_table("", "Pod", [p], now=NOW, include_object=default)["rows"][0]
        assert row["object"]["kind"] == "PartialObjectMetadata"
    with pytest.raises(ValueError) as err:
        build_table("", "Pod", [p], now=NOW, include_object="Everything")
    assert str(err.value) == (
        'Unable to convert to Table as requested: includeObject: Unsupported value: '
        '"Everything": supported values: "Metadata", "None", "Object"')


def test_build_table_watch_event_without_headers_and_empty_list():
    p = pod()
    event_table = build_table("", "Pod", [p], now=NOW, resource_version="8",
                              with_columns=False)
    assert event_table["columnDefinitions"] is None
    assert len(event_table["rows"]) == 1 and len(event_table["rows"][0]["cells"]) == 9
    empty = build_table("apps", "Deployment", [], now=NOW, resource_version="99")
    assert empty["rows"] == [] and empty["metadata"] == {"resourceVersion": "99"}
    assert [c["name"] for c in empty["columnDefinitions"]][:2] == ["Name", "Ready"]
    assert build_table("", "Pod", [], now=NOW)["metadata"] == {}


def test_build_table_default_convertor_and_v1beta1():
    lr = {"apiVersion": "v1", "kind": "LimitRange",
          "metadata": meta("limits", timedelta(days=1))}
    table = build_table("", "LimitRange", [lr], now=NOW, table_version="v1beta1")
    assert table["apiVersion"] == "meta.k8s.io/v1beta1"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Created At"]
    assert table["rows"][0]["cells"] == ["limits", "2024-05-31T12:00:00Z"]
    assert table["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"


def test_register_printer_for_custom_kind():
    cols = [{"name": "Name", "type": "string", "format": "name", "description": "n",
             "priority": 0},
            {"name": "Size", "type": "integer", "format": "", "description": "s",
             "priority": 0}]
    try:
        tables.register_printer("example.com", "Gadget", cols,
                                lambda obj, now: [obj["metadata"]["name"], obj["spec"]["size"]])
        assert column_definitions("example.com", "Gadget") == cols
        assert row_cells("example.com", "Gadget", {"metadata": {"name": "g"},
                                                   "spec": {"size": 3}}, NOW) == ["g", 3]
    finally:
        tables.PRINTERS.pop(("example.com", "Gadget"), None)


def test_label_selector_formatting():
    sel = {"matchLabels": {"z": "1"},
           "matchExpressions": [{"key": "a", "operator": "Exists"},
                                {"key": "m", "operator": "NotIn", "values": ["y", "x"]}]}
    assert tables.label_selector_string(sel) == "a,m notin (x,y),z=1"
    assert tables.format_label_selector(None) == "<none>"
    assert tables.format_label_selector({"matchExpressions": [
        {"key": "a", "operator": "In", "values": []}]}) == "<error>"
    assert tables.format_labels({"b": "2", "a": "1"}) == "a=1,b=2"
    assert tables.format_labels({}) == "<none>"
    bad = deployment()
    bad["spec"]["selector"] = {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}
    assert row_cells("apps", "Deployment", bad, NOW)[-1] == "<invalid>"
    assert row_cells("apps", "ReplicaSet", bad, NOW)[-1] == "<error>"
