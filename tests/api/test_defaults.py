"""pyk8s.api.defaults: what upstream fills in, compared with `kubectl get -o yaml` output."""
from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from pyk8s.api.defaults import apply_defaults, image_tag

CONTAINER_DEFAULTS = {"terminationMessagePath": "/dev/termination-log",
                      "terminationMessagePolicy": "File", "resources": {}}
POD_SPEC_DEFAULTS = {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                     "schedulerName": "default-scheduler", "securityContext": {},
                     "terminationGracePeriodSeconds": 30}


def defaulted(group: str, version: str, kind: str, obj: dict) -> dict:
    apply_defaults(group, version, kind, obj)
    return obj


# ---------------------------------------------------------------------------------------
# Snapshots
# ---------------------------------------------------------------------------------------


def test_pod_snapshot() -> None:
    pod = defaulted("", "v1", "Pod", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                            "readinessProbe": {"httpGet": {"port": 80}},
                            "env": [{"name": "NODE", "valueFrom": {
                                "fieldRef": {"fieldPath": "spec.nodeName"}}}],
                            "resources": {"limits": {"cpu": "500m"}}}],
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "tmp"}],
        }})
    assert pod == {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "containers": [{
                "name": "web", "image": "nginx", "imagePullPolicy": "Always",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                                   "timeoutSeconds": 1, "periodSeconds": 10,
                                   "successThreshold": 1, "failureThreshold": 3},
                "env": [{"name": "NODE", "valueFrom": {
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
                "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "500m"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            }],
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}},
                        {"name": "tmp", "emptyDir": {}}],
            **POD_SPEC_DEFAULTS,
            "enableServiceLinks": True,
        }}


def test_deployment_snapshot() -> None:
    dep = defaulted("apps", "v1", "Deployment", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}})
    assert dep == {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 1, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"creationTimestamp": None, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                                         "imagePullPolicy": "IfNotPresent",
                                         **CONTAINER_DEFAULTS}],
                         **POD_SPEC_DEFAULTS}},
        }}
    # Pod-only defaults stay out of templates, as upstream.
    assert "enableServiceLinks" not in dep["spec"]["template"]["spec"]
    assert "priority" not in dep["spec"]["template"]["spec"]


def test_service_snapshot() -> None:
    svc = defaulted("", "v1", "Service", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443,
                                                                      "targetPort": "https"}]}})
    assert svc == {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80},
                           {"port": 443, "protocol": "TCP", "targetPort": "https"}],
                 "type": "ClusterIP", "sessionAffinity": "None",
                 "internalTrafficPolicy": "Cluster",
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
        "status": {"loadBalancer": {}}}


def test_job_snapshot() -> None:
    job = defaulted("batch", "v1", "Job", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"},
        "spec": {"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {
            "containers": [{"name": "pi", "image": "perl:5.34.0"}], "restartPolicy": "Never"}}}})
    assert job == {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "labels": {"app": "pi"}},
        "spec": {
            "completions": 1, "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
            "suspend": False, "podReplacementPolicy": "TerminatingOrFailed",
            "template": {
                "metadata": {"creationTimestamp": None, "labels": {"app": "pi"}},
                "spec": {"containers": [{"name": "pi", "image": "perl:5.34.0",
                                         "imagePullPolicy": "IfNotPresent",
                                         **CONTAINER_DEFAULTS}],
                         **POD_SPEC_DEFAULTS, "restartPolicy": "Never"}},
        }}


# ---------------------------------------------------------------------------------------
# Details
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("image, tag", [
    ("nginx", "latest"), ("nginx:1.25", "1.25"), ("nginx:latest", "latest"),
    ("registry:5000/team/app", "latest"), ("registry:5000/team/app:v2", "v2"),
    ("app@sha256:abc", ""), ("app:v1@sha256:abc", "v1"),
])
def test_image_tag(image: str, tag: str) -> None:
    assert image_tag(image) == tag


@pytest.mark.parametrize("image, policy", [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.25", "IfNotPresent"),
    ("nginx@sha256:abc", "IfNotPresent"), ("localhost:5000/nginx", "Always"),
])
def test_image_pull_policy(image: str, policy: str) -> None:
    pod = defaulted("", "v1", "Pod", {"spec": {"containers": [{"name": "c", "image": image}]}})
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_explicit_values_are_kept() -> None:
    dep = defaulted("apps", "v1", "Deployment", {"spec": {
        "replicas": 0, "revisionHistoryLimit": 0, "strategy": {"type": "Recreate"},
        "template": {"spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 0,
                              "containers": [{"name": "c", "image": "x",
                                              "imagePullPolicy": "Never"}]}}}})
    assert dep["spec"]["replicas"] == 0
    assert dep["spec"]["revisionHistoryLimit"] == 0
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 0
    assert dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Never"


CASES: list[tuple[tuple[str, str, str], dict, dict]] = [
    (("", "v1", "ReplicationController"),
     {"spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}}}},
     {"metadata": {"labels": {"app": "x"}}, "spec": {
         "replicas": 1, "selector": {"app": "x"},
         "template": {"metadata": {"labels": {"app": "x"}, "creationTimestamp": None},
                      "spec": {"containers": [], **POD_SPEC_DEFAULTS}}}}),
    (("", "v1", "Secret"), {"stringData": {"user": "admin"}},
     {"type": "Opaque", "data": {"user": base64.b64encode(b"admin").decode()}}),
    (("", "v1", "Namespace"), {"metadata": {"name": "team"}},
     {"metadata": {"name": "team", "labels": {"kubernetes.io/metadata.name": "team"}},
      "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
    (("", "v1", "PersistentVolumeClaim"), {"spec": {"accessModes": ["ReadWriteOnce"]}},
     {"spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"},
      "status": {"phase": "Pending"}}),
    (("", "v1", "PersistentVolume"), {"spec": {"hostPath": {"path": "/d"}}},
     {"spec": {"hostPath": {"path": "/d", "type": ""}, "persistentVolumeReclaimPolicy": "Retain",
               "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}),
    (("", "v1", "Endpoints"), {"subsets": [{"ports": [{"port": 80}]}]},
     {"subsets": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}),
    (("", "v1", "LimitRange"), {"spec": {"limits": [{"type": "Container", "max": {"cpu": "1"},
                                                     "min": {"memory": "1Mi"}}]}},
     {"spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "1Mi"},
                           "default": {"cpu": "1"},
                           "defaultRequest": {"cpu": "1", "memory": "1Mi"}}]}}),
    (("", "v1", "Node"), {"status": {"capacity": {"cpu": "4"}}},
     {"status": {"capacity": {"cpu": "4"}, "allocatable": {"cpu": "4"}}}),
    (("apps", "v1", "ReplicaSet"), {"spec": {}},
     {"spec": {"replicas": 1, "template": {"metadata": {"creationTimestamp": None},
                                           "spec": POD_SPEC_DEFAULTS}}}),
    (("apps", "v1", "DaemonSet"), {"spec": {}},
     {"spec": {"revisionHistoryLimit": 10, "updateStrategy": {
         "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        "template": {"metadata": {"creationTimestamp": None}, "spec": POD_SPEC_DEFAULTS}}}),
    (("apps", "v1", "StatefulSet"),
     {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}},
     {"spec": {"replicas": 1, "revisionHistoryLimit": 10, "podManagementPolicy": "OrderedReady",
               "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
               "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain",
                                                        "whenScaled": "Retain"},
               "template": {"metadata": {"creationTimestamp": None}, "spec": POD_SPEC_DEFAULTS},
               "volumeClaimTemplates": [{
                   "metadata": {"name": "data", "creationTimestamp": None},
                   "spec": {"volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}]}}),
    (("batch", "v1", "CronJob"),
     {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {}}}}}},
     {"spec": {"schedule": "* * * * *", "concurrencyPolicy": "Allow", "suspend": False,
               "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
               "jobTemplate": {"metadata": {"creationTimestamp": None}, "spec": {
                   "template": {"metadata": {"creationTimestamp": None},
                                "spec": POD_SPEC_DEFAULTS}}}}}),
    (("batch", "v1", "Job"), {"spec": {"parallelism": 3, "backoffLimitPerIndex": 1,
                                       "podFailurePolicy": {"rules": [{
                                           "onPodConditions": [{"type": "DisruptionTarget"}]}]},
                                       "template": {"spec": {"restartPolicy": "Never"}}}},
     {"spec": {"parallelism": 3, "backoffLimitPerIndex": 1, "backoffLimit": 2147483647,
               "completionMode": "NonIndexed", "suspend": False,
               "podReplacementPolicy": "Failed",
               "podFailurePolicy": {"rules": [{"onPodConditions": [
                   {"type": "DisruptionTarget", "status": "True"}]}]},
               "template": {"metadata": {"creationTimestamp": None},
                            "spec": {**POD_SPEC_DEFAULTS, "restartPolicy": "Never"}}}}),
    (("autoscaling", "v2", "HorizontalPodAutoscaler"),
     {"spec": {"maxReplicas": 5, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}},
     {"spec": {"maxReplicas": 5, "minReplicas": 1, "metrics": [{"type": "Resource", "resource": {
         "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
         "behavior": {
             "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                 {"type": "Pods", "value": 4, "periodSeconds": 15},
                 {"type": "Percent", "value": 100, "periodSeconds": 15}]},
             "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [
                 {"type": "Percent", "value": 100, "periodSeconds": 15}]}}}}),
    (("autoscaling", "v1", "HorizontalPodAutoscaler"), {"spec": {"maxReplicas": 5}},
     {"spec": {"maxReplicas": 5, "minReplicas": 1}}),
    (("rbac.authorization.k8s.io", "v1", "RoleBinding"),
     {"roleRef": {"kind": "Role", "name": "r"}, "subjects": [
         {"kind": "User", "name": "a"}, {"kind": "ServiceAccount", "name": "s"}]},
     {"roleRef": {"kind": "Role", "name": "r", "apiGroup": "rbac.authorization.k8s.io"},
      "subjects": [{"kind": "User", "name": "a", "apiGroup": "rbac.authorization.k8s.io"},
                   {"kind": "ServiceAccount", "name": "s", "apiGroup": ""}]}),
    (("networking.k8s.io", "v1", "NetworkPolicy"),
     {"spec": {"egress": [{"ports": [{"port": 53}]}]}},
     {"spec": {"egress": [{"ports": [{"port": 53, "protocol": "TCP"}]}],
               "policyTypes": ["Ingress", "Egress"]}}),
    (("networking.k8s.io", "v1", "NetworkPolicy"), {"spec": {"podSelector": {}}},
     {"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
    (("networking.k8s.io", "v1", "IngressClass"),
     {"spec": {"controller": "a.io/c", "parameters": {"kind": "K", "name": "n"}}},
     {"spec": {"controller": "a.io/c", "parameters": {"kind": "K", "name": "n",
                                                      "scope": "Cluster"}}}),
    (("storage.k8s.io", "v1", "StorageClass"), {"provisioner": "x.io/p"},
     {"provisioner": "x.io/p", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}),
    (("scheduling.k8s.io", "v1", "PriorityClass"), {"value": 5},
     {"value": 5, "preemptionPolicy": "PreemptLowerPriority"}),
    (("discovery.k8s.io", "v1", "EndpointSlice"), {"ports": [{"port": 80}]},
     {"ports": [{"port": 80, "name": "", "protocol": "TCP"}]}),
    (("policy", "v1", "PodDisruptionBudget"), {"spec": {"minAvailable": 1}},
     {"spec": {"minAvailable": 1}}),
    (("example.com", "v1", "Widget"), {"spec": {"x": 1}}, {"spec": {"x": 1}}),
]


@pytest.mark.parametrize("gvk, given, expected", CASES,
                         ids=[f"{c[0][2]}-{i}" for i, c in enumerate(CASES)])
def test_kind_defaults(gvk: tuple[str, str, str], given: dict, expected: dict) -> None:
    assert defaulted(*gvk, copy.deepcopy(given)) == expected


@pytest.mark.parametrize("gvk, given, expected", CASES,
                         ids=[f"{c[0][2]}-{i}" for i, c in enumerate(CASES)])
def test_defaulting_is_idempotent(gvk: tuple[str, str, str], given: dict,
                                  expected: dict) -> None:
    once = defaulted(*gvk, copy.deepcopy(given))
    assert defaulted(*gvk, copy.deepcopy(once)) == once


@pytest.mark.parametrize("spec, expected", [
    ({"type": "NodePort", "ports": [{"port": 80, "targetPort": 0}]},
     {"externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
      "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}),
    ({"type": "LoadBalancer", "ports": [{"port": 80}]},
     {"externalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": True}),
    ({"clusterIP": "None"}, {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4"],
                             "clusterIPs": ["None"]}),
    ({"clusterIP": "None", "selector": {"a": "b"}}, {"ipFamilyPolicy": "SingleStack"}),
    ({"clusterIP": "fd00::10"}, {"ipFamilies": ["IPv6"], "clusterIPs": ["fd00::10"]}),
    ({"sessionAffinity": "ClientIP"},
     {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}}),
    ({"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}, {"sessionAffinity": "None"}),
])
def test_service_variants(spec: dict, expected: dict) -> None:
    svc = defaulted("", "v1", "Service", {"spec": spec})
    for key, value in expected.items():
        assert svc["spec"][key] == value
    if spec.get("sessionAffinity") != "ClientIP":
        assert "sessionAffinityConfig" not in svc["spec"]


def test_external_name_service_gets_no_ip_fields() -> None:
    svc = defaulted("", "v1", "Service", {"spec": {"type": "ExternalName", "externalName": "x"}})
    assert not {"ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy",
                "externalTrafficPolicy"} & set(svc["spec"])


def test_pod_volume_probe_and_lifecycle_defaults() -> None:
    pod = defaulted("", "v1", "Pod", {"spec": {
        "hostNetwork": True,
        "containers": [{
            "name": "c", "image": "x:1", "ports": [{"containerPort": 8080}],
            "livenessProbe": {"grpc": {"port": 9000}},
            "startupProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 3},
            "lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/stop"}}}}],
        "initContainers": [{"name": "i", "image": "busybox"}],
        "volumes": [
            {"name": "s", "secret": {"secretName": "s", "defaultMode": 256}},
            {"name": "d", "downwardAPI": {"items": [{"path": "l", "fieldRef": {
                "fieldPath": "metadata.labels"}}]}},
            {"name": "p", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
            {"name": "h", "hostPath": {"path": "/x"}},
            {"name": "e", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        ]}})
    spec = pod["spec"]
    ctr = spec["containers"][0]
    assert ctr["ports"] == [{"containerPort": 8080, "protocol": "TCP", "hostPort": 8080}]
    assert ctr["livenessProbe"] == {"grpc": {"port": 9000, "service": ""}, "timeoutSeconds": 1,
                                    "periodSeconds": 10, "successThreshold": 1,
                                    "failureThreshold": 3}
    assert ctr["startupProbe"]["periodSeconds"] == 3
    assert ctr["lifecycle"]["preStop"]["httpGet"] == {"port": 80, "path": "/stop",
                                                     "scheme": "HTTP"}
    assert spec["initContainers"][0]["imagePullPolicy"] == "Always"
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["s"]["secret"]["defaultMode"] == 256
    assert vols["d"]["downwardAPI"] == {"defaultMode": 420, "items": [{"path": "l", "fieldRef": {
        "apiVersion": "v1", "fieldPath": "metadata.labels"}}]}
    assert vols["p"]["projected"] == {"defaultMode": 420, "sources": [{"serviceAccountToken": {
        "path": "t", "expirationSeconds": 3600}}]}
    assert vols["h"]["hostPath"] == {"path": "/x", "type": ""}
    assert vols["e"]["ephemeral"]["volumeClaimTemplate"]["spec"] == {"volumeMode": "Filesystem"}


def test_pod_priority_left_to_named_class() -> None:
    pod = defaulted("", "v1", "Pod", {"spec": {"priorityClassName": "high", "containers": []}})
    assert "priority" not in pod["spec"]


@pytest.mark.parametrize("obj", [None, [], "x", {"spec": None}, {"spec": []},
                                 {"spec": {"containers": None, "volumes": "x"}}])
@pytest.mark.parametrize("kind", ["Pod", "Service", "Secret"])
def test_malformed_input_does_not_crash(obj: Any, kind: str) -> None:
    apply_defaults("", "v1", kind, copy.deepcopy(obj))
