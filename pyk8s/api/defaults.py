"""Upstream's defaulting for built-in kinds, applied in place.

`apply_defaults(group, version, kind, obj)` fills what upstream's `SetDefaults_*` functions
(pkg/apis/*/v1/defaults.go) and the generated declarative defaults (zz_generated.defaults.go)
fill, plus the few values other parts of the apiserver always set that `kubectl get -o yaml`
shows on upstream (a Service's IP family fields, a Namespace's `kubernetes` finalizer,
`creationTimestamp: null` in embedded templates' metadata, `resources: {}` in containers; a
Pod's `priority` / `preemptionPolicy` come from the Priority admission plugin).

As in Go, a field counts as unset when it is absent, null, or (for strings) empty. Nested
defaulting follows upstream's type structure: every PodTemplateSpec gets the PodSpec
defaults, every Container the container defaults, and so on. Pod-only defaults
(`SetDefaults_Pod`) are not applied to templates, as upstream.
"""
from __future__ import annotations

import copy
import ipaddress
from typing import Any, Callable

Obj = dict[str, Any]

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def _unset(obj: Obj, key: str) -> bool:
    v = obj.get(key)
    return v is None or v == ""


def _set(obj: Obj, key: str, value: Any) -> None:
    """Go's `if x == nil/"" { x = value }`."""
    if _unset(obj, key):
        obj[key] = copy.deepcopy(value)


def _dict(obj: Obj, key: str) -> Obj:
    """The dict at obj[key], created when absent/null (Go's non-pointer struct field)."""
    v = obj.get(key)
    if not isinstance(v, dict):
        v = {}
        obj[key] = v
    return v


def _dicts(v: Any) -> list[Obj]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _sub(obj: Any, *keys: str) -> Obj | None:
    """obj[k1][k2]... when every step is a dict, else None (pointer field unset)."""
    for k in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)
    return obj if isinstance(obj, dict) else None


def _template_meta(template: Obj) -> None:
    """An embedded ObjectMeta serializes as `metadata: {creationTimestamp: null}`."""
    meta = _dict(template, "metadata")
    meta.setdefault("creationTimestamp", None)


# ---------------------------------------------------------------------------------------
# core/v1: containers, probes, volumes, pod specs
# ---------------------------------------------------------------------------------------


def image_tag(image: str) -> str:
    """The tag `parsers.ParseImageName` finds: "latest" when neither tag nor digest is given."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return "" if digest else "latest"


def _default_http_get(action: Obj | None) -> None:
    if action is None:
        return
    _set(action, "path", "/")
    _set(action, "scheme", "HTTP")


def _default_handler(handler: Obj | None) -> None:
    if handler is None:
        return
    _default_http_get(_sub(handler, "httpGet"))
    grpc = _sub(handler, "grpc")
    if grpc is not None and grpc.get("service") is None:
        grpc["service"] = ""


def _default_probe(probe: Obj | None) -> None:
    if probe is None:
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        if not probe.get(key):
            probe[key] = value
    _default_handler(probe)


def _default_field_ref(ref: Obj | None) -> None:
    if ref is not None:
        _set(ref, "apiVersion", "v1")


def default_container(ctr: Obj) -> None:
    """SetDefaults_Container plus the declarative defaults below a Container."""
    if _unset(ctr, "imagePullPolicy"):
        tag = image_tag(ctr.get("image") if isinstance(ctr.get("image"), str) else "")
        ctr["imagePullPolicy"] = "Always" if tag == "latest" else "IfNotPresent"
    _set(ctr, "terminationMessagePath", "/dev/termination-log")
    _set(ctr, "terminationMessagePolicy", "File")
    _dict(ctr, "resources")
    for port in _dicts(ctr.get("ports")):
        _set(port, "protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(_sub(ctr, probe))
    lifecycle = _sub(ctr, "lifecycle")
    if lifecycle is not None:
        _default_handler(_sub(lifecycle, "postStart"))
        _default_handler(_sub(lifecycle, "preStop"))
    for env in _dicts(ctr.get("env")):
        _default_field_ref(_sub(env, "valueFrom", "fieldRef"))


_VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret",
    "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder",
    "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume",
    "quobyte", "azureDisk", "photonPersistentDisk", "projected", "portworxVolume", "scaleIO",
    "storageos", "csi", "ephemeral", "image")


def _default_volume_sources(vol: Obj) -> None:
    """Defaults of the VolumeSource members (shared with PersistentVolumeSource)."""
    for key in ("secret", "configMap", "downwardAPI", "projected"):
        src = _sub(vol, key)
        if src is not None and src.get("defaultMode") is None:
            src["defaultMode"] = 420
    for item in _dicts((_sub(vol, "downwardAPI") or {}).get("items")):
        _default_field_ref(_sub(item, "fieldRef"))
    for source in _dicts((_sub(vol, "projected") or {}).get("sources")):
        for item in _dicts((_sub(source, "downwardAPI") or {}).get("items")):
            _default_field_ref(_sub(item, "fieldRef"))
        token = _sub(source, "serviceAccountToken")
        if token is not None and token.get("expirationSeconds") is None:
            token["expirationSeconds"] = 3600
    host_path = _sub(vol, "hostPath")
    if host_path is not None and host_path.get("type") is None:
        host_path["type"] = ""
    iscsi = _sub(vol, "iscsi")
    if iscsi is not None:
        _set(iscsi, "iscsiInterface", "default")
    rbd = _sub(vol, "rbd")
    if rbd is not None:
        _set(rbd, "pool", "rbd")
        _set(rbd, "user", "admin")
        _set(rbd, "keyring", "/etc/ceph/keyring")
    azure_disk = _sub(vol, "azureDisk")
    if azure_disk is not None:
        for key, value in (("cachingMode", "ReadWrite"), ("fsType", "ext4"),
                           ("readOnly", False), ("kind", "Shared")):
            if azure_disk.get(key) is None:
                azure_disk[key] = value
    scale_io = _sub(vol, "scaleIO")
    if scale_io is not None:
        _set(scale_io, "storageMode", "ThinProvisioned")
        _set(scale_io, "fsType", "xfs")
    image = _sub(vol, "image")
    if image is not None and _unset(image, "pullPolicy"):
        ref = image.get("reference") if isinstance(image.get("reference"), str) else ""
        image["pullPolicy"] = "Always" if image_tag(ref) == "latest" else "IfNotPresent"


def default_volume(vol: Obj) -> None:
    if not any(vol.get(k) is not None for k in _VOLUME_SOURCES):
        vol["emptyDir"] = {}
    _default_volume_sources(vol)
    claim_template = _sub(vol, "ephemeral", "volumeClaimTemplate")
    if claim_template is not None:
        _default_pvc_spec(_dict(claim_template, "spec"))


def default_pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec and everything below a PodSpec (for Pods and templates)."""
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "restartPolicy", "Always")
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    _set(spec, "schedulerName", "default-scheduler")
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for ctr in _dicts(spec.get(key)):
            default_container(ctr)
    for vol in _dicts(spec.get("volumes")):
        default_volume(vol)


def default_pod_template(template: Obj) -> None:
    _template_meta(template)
    default_pod_spec(_dict(template, "spec"))


def _default_pod(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    default_pod_spec(spec)
    # SetDefaults_Pod: requests default to limits, for Pods only.
    for key in ("containers", "initContainers"):
        for ctr in _dicts(spec.get(key)):
            resources = _dict(ctr, "resources")
            limits = resources.get("limits")
            if isinstance(limits, dict) and limits:
                requests = _dict(resources, "requests")
                for name, value in limits.items():
                    requests.setdefault(name, copy.deepcopy(value))
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    if spec.get("hostNetwork") is True:
        for key in ("containers", "initContainers"):
            for ctr in _dicts(spec.get(key)):
                for port in _dicts(ctr.get("ports")):
                    if not port.get("hostPort"):
                        port["hostPort"] = port.get("containerPort")


def _default_pod_template_object(obj: Obj) -> None:
    default_pod_template(_dict(obj, "template"))


# ---------------------------------------------------------------------------------------
# core/v1: other kinds
# ---------------------------------------------------------------------------------------


def _default_replication_controller(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    template = _sub(spec, "template")
    labels = (_sub(template, "metadata") or {}).get("labels") if template else None
    if isinstance(labels, dict):
        if not spec.get("selector"):
            spec["selector"] = copy.deepcopy(labels)
        meta = _dict(obj, "metadata")
        if not meta.get("labels"):
            meta["labels"] = copy.deepcopy(labels)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if template is not None:
        default_pod_template(template)


def _default_service(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client_ip = _sub(spec, "sessionAffinityConfig", "clientIP")
        if client_ip is None or client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    _set(spec, "type", "ClusterIP")
    for port in _dicts(spec.get("ports")):
        _set(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    stype = spec["type"]
    externally_accessible = stype in ("NodePort", "LoadBalancer") or (
        stype == "ClusterIP" and bool(spec.get("externalIPs")))
    if externally_accessible:
        _set(spec, "externalTrafficPolicy", "Cluster")
    if spec.get("internalTrafficPolicy") is None and stype in ("ClusterIP", "NodePort",
                                                               "LoadBalancer"):
        spec["internalTrafficPolicy"] = "Cluster"
    if stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    _default_service_ip_families(spec)
    status = _dict(obj, "status")
    _dict(status, "loadBalancer")


def _default_service_ip_families(spec: Obj) -> None:
    """What the service REST's IP family initialisation fills on a single-stack IPv4 cluster.

    The cluster IP itself is allocated by the registry; `clusterIPs` mirrors `clusterIP`.
    """
    if spec.get("type") == "ExternalName":
        return
    cluster_ip = spec.get("clusterIP")
    if isinstance(cluster_ip, str) and cluster_ip and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [cluster_ip]
    headless = cluster_ip == "None"
    if spec.get("ipFamilyPolicy") is None:
        spec["ipFamilyPolicy"] = "RequireDualStack" if headless and not spec.get("selector") \
            else "SingleStack"
    if not spec.get("ipFamilies"):
        family = "IPv4"
        if isinstance(cluster_ip, str) and cluster_ip not in ("", "None"):
            try:
                family = "IPv6" if ipaddress.ip_address(cluster_ip).version == 6 else "IPv4"
            except ValueError:
                pass
        spec["ipFamilies"] = [family]


def _default_secret(obj: Obj) -> None:
    # Upstream's v1 → internal conversion folds stringData into data (base64) and drops it.
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        import base64
        data = _dict(obj, "data")
        for k, v in string_data.items():
            if isinstance(v, str):
                data[k] = base64.b64encode(v.encode()).decode()
    _set(obj, "type", "Opaque")


def _default_namespace(obj: Obj) -> None:
    meta = _dict(obj, "metadata")
    name = meta.get("name")
    if isinstance(name, str) and name:
        _dict(meta, "labels")["kubernetes.io/metadata.name"] = name
    spec = _dict(obj, "spec")
    if not spec.get("finalizers"):
        spec["finalizers"] = ["kubernetes"]
    _set(_dict(obj, "status"), "phase", "Active")


def _default_pvc_spec(spec: Obj) -> None:
    _set(spec, "volumeMode", "Filesystem")


def _default_pvc(obj: Obj) -> None:
    _default_pvc_spec(_dict(obj, "spec"))
    _set(_dict(obj, "status"), "phase", "Pending")


def _default_pv(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "persistentVolumeReclaimPolicy", "Retain")
    _set(spec, "volumeMode", "Filesystem")
    _default_volume_sources(spec)
    _set(_dict(obj, "status"), "phase", "Pending")


def _default_endpoints(obj: Obj) -> None:
    for subset in _dicts(obj.get("subsets")):
        for port in _dicts(subset.get("ports")):
            _set(port, "protocol", "TCP")


def _default_node(obj: Obj) -> None:
    status = _sub(obj, "status")
    if status is not None and status.get("allocatable") is None and \
            isinstance(status.get("capacity"), dict):
        status["allocatable"] = copy.deepcopy(status["capacity"])


def _default_limit_range(obj: Obj) -> None:
    for item in _dicts((_sub(obj, "spec") or {}).get("limits")):
        if item.get("type") != "Container":
            continue
        default, request = _dict(item, "default"), _dict(item, "defaultRequest")
        for key, value in (_sub(item, "max") or {}).items():
            default.setdefault(key, copy.deepcopy(value))
        for key, value in default.items():
            request.setdefault(key, copy.deepcopy(value))
        for key, value in (_sub(item, "min") or {}).items():
            request.setdefault(key, copy.deepcopy(value))


# ---------------------------------------------------------------------------------------
# apps/v1
# ---------------------------------------------------------------------------------------


def _default_deployment(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = _dict(spec, "strategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = "25%"
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    default_pod_template(_dict(spec, "template"))


def _default_daemonset(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    strategy = _dict(spec, "updateStrategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = 1
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_pod_template(_dict(spec, "template"))


def _default_statefulset(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "podManagementPolicy", "OrderedReady")
    strategy = _dict(spec, "updateStrategy")
    if _unset(strategy, "type"):
        strategy["type"] = "RollingUpdate"
        _dict(strategy, "rollingUpdate")
    rolling = _sub(strategy, "rollingUpdate")
    if strategy["type"] == "RollingUpdate" and rolling is not None and \
            rolling.get("partition") is None:
        rolling["partition"] = 0
    retention = _dict(spec, "persistentVolumeClaimRetentionPolicy")
    _set(retention, "whenDeleted", "Retain")
    _set(retention, "whenScaled", "Retain")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_pod_template(_dict(spec, "template"))
    for claim in _dicts(spec.get("volumeClaimTemplates")):
        _template_meta(claim)
        _default_pvc(claim)


def _default_replica_set(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    default_pod_template(_dict(spec, "template"))


# ---------------------------------------------------------------------------------------
# batch/v1
# ---------------------------------------------------------------------------------------


def _default_job_template_spec(spec: Obj) -> None:
    """What every JobSpec gets (also inside CronJob.jobTemplate): the pod template's."""
    default_pod_template(_dict(spec, "template"))


def _default_job(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2**31 - 1 if spec.get("backoffLimitPerIndex") is not None else 6
    labels = (_sub(spec, "template", "metadata") or {}).get("labels")
    if isinstance(labels, dict) and labels and not (_sub(obj, "metadata") or {}).get("labels"):
        _dict(obj, "metadata")["labels"] = copy.deepcopy(labels)
    _set(spec, "completionMode", "NonIndexed")
    if spec.get("suspend") is None:
        spec["suspend"] = False
    policy = _sub(spec, "podFailurePolicy")
    if policy is not None:
        for rule in _dicts(policy.get("rules")):
            for pattern in _dicts(rule.get("onPodConditions")):
                _set(pattern, "status", "True")
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if policy is not None else "TerminatingOrFailed"
    _default_job_template_spec(spec)


def _default_cronjob(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "concurrencyPolicy", "Allow")
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("successfulJobsHistoryLimit") is None:
        spec["successfulJobsHistoryLimit"] = 3
    if spec.get("failedJobsHistoryLimit") is None:
        spec["failedJobsHistoryLimit"] = 1
    job_template = _dict(spec, "jobTemplate")
    _template_meta(job_template)
    _default_job_template_spec(_dict(job_template, "spec"))


# ---------------------------------------------------------------------------------------
# Other groups
# ---------------------------------------------------------------------------------------

_HPA_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                 "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                              {"type": "Percent", "value": 100, "periodSeconds": 15}]}
_HPA_SCALE_DOWN = {"selectPolicy": "Max",
                   "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def _hpa_rules(given: Any, defaults: Obj) -> Obj:
    rules = copy.deepcopy(defaults)
    if isinstance(given, dict):
        for key in ("selectPolicy", "stabilizationWindowSeconds", "policies"):
            if given.get(key) is not None:
                rules[key] = given[key]
        for key, value in given.items():
            rules.setdefault(key, value)
    return rules


def _default_hpa_v2(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec.get("minReplicas") is None:
        spec["minReplicas"] = 1
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    behavior = _sub(spec, "behavior")
    if behavior is not None:
        behavior["scaleUp"] = _hpa_rules(behavior.get("scaleUp"), _HPA_SCALE_UP)
        behavior["scaleDown"] = _hpa_rules(behavior.get("scaleDown"), _HPA_SCALE_DOWN)


def _default_hpa_v1(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec.get("minReplicas") is None:
        spec["minReplicas"] = 1


def _default_role_binding(obj: Obj) -> None:
    role_ref = _dict(obj, "roleRef")
    _set(role_ref, "apiGroup", "rbac.authorization.k8s.io")
    for subject in _dicts(obj.get("subjects")):
        if _unset(subject, "apiGroup"):
            if subject.get("kind") in ("User", "Group"):
                subject["apiGroup"] = "rbac.authorization.k8s.io"
            elif subject.get("kind") == "ServiceAccount":
                subject["apiGroup"] = ""


def _default_network_policy(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    for direction in ("ingress", "egress"):
        for rule in _dicts(spec.get(direction)):
            for port in _dicts(rule.get("ports")):
                _set(port, "protocol", "TCP")
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types


def _default_ingress_class(obj: Obj) -> None:
    params = _sub(obj, "spec", "parameters")
    if params is not None:
        _set(params, "scope", "Cluster")


def _default_storage_class(obj: Obj) -> None:
    _set(obj, "reclaimPolicy", "Delete")
    _set(obj, "volumeBindingMode", "Immediate")


def _default_priority_class(obj: Obj) -> None:
    _set(obj, "preemptionPolicy", "PreemptLowerPriority")


def _default_endpoint_slice(obj: Obj) -> None:
    for port in _dicts(obj.get("ports")):
        if port.get("name") is None:
            port["name"] = ""
        _set(port, "protocol", "TCP")


# ---------------------------------------------------------------------------------------
# Registry and entry point
# ---------------------------------------------------------------------------------------

Defaulter = Callable[[Obj], None]

# Keyed by (group, kind); a (group, version, kind) entry overrides for one version.
_DEFAULTERS: dict[tuple[str, ...], Defaulter] = {
    ("", "Pod"): _default_pod,
    ("", "PodTemplate"): _default_pod_template_object,
    ("", "ReplicationController"): _default_replication_controller,
    ("", "Service"): _default_service,
    ("", "Secret"): _default_secret,
    ("", "Namespace"): _default_namespace,
    ("", "PersistentVolumeClaim"): _default_pvc,
    ("", "PersistentVolume"): _default_pv,
    ("", "Endpoints"): _default_endpoints,
    ("", "Node"): _default_node,
    ("", "LimitRange"): _default_limit_range,
    ("apps", "Deployment"): _default_deployment,
    ("apps", "DaemonSet"): _default_daemonset,
    ("apps", "StatefulSet"): _default_statefulset,
    ("apps", "ReplicaSet"): _default_replica_set,
    ("batch", "Job"): _default_job,
    ("batch", "CronJob"): _default_cronjob,
    ("autoscaling", "v2", "HorizontalPodAutoscaler"): _default_hpa_v2,
    ("autoscaling", "v1", "HorizontalPodAutoscaler"): _default_hpa_v1,
    ("rbac.authorization.k8s.io", "RoleBinding"): _default_role_binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _default_role_binding,
    ("networking.k8s.io", "NetworkPolicy"): _default_network_policy,
    ("networking.k8s.io", "IngressClass"): _default_ingress_class,
    ("storage.k8s.io", "StorageClass"): _default_storage_class,
    ("scheduling.k8s.io", "PriorityClass"): _default_priority_class,
    ("discovery.k8s.io", "EndpointSlice"): _default_endpoint_slice,
}


def apply_defaults(group: str, version: str, kind: str, obj: dict) -> None:
    """Fill upstream's defaults into `obj` in place; unknown kinds are left unchanged."""
    if not isinstance(obj, dict):
        return
    fn = _DEFAULTERS.get((group, version, kind)) or _DEFAULTERS.get((group, kind))
    if fn is not None:
        fn(obj)
