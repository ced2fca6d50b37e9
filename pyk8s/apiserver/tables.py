"""Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`.

kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints the rows the
server returns. This module is a port of upstream's printers
(`pkg/printers/internalversion/printers.go`, `AddHandlers` and the `print*` functions), of the
default table convertor for kinds without a printer
(`k8s.io/apiserver/pkg/registry/rest/table.go`: "Name", "Created At") and of the handler's
`includeObject` policy (`endpoints/handlers/response.go`, `asTable`).

Everything here is pure: objects are plain JSON dicts (as served, e.g. `v1` Pods) and `now` is
passed in, so output is deterministic.

Upstream details kept on purpose:

* The API server always generates tables with `Wide: true` (`pkg/printers/storage`), so every
  row carries the priority-1 cells too; kubectl drops priority>0 columns unless `-o wide`.
* Column names are mixed case ("Name", "Ready", "Up-to-date"); kubectl upper-cases them.
* Cell types are what upstream puts in the cell, even where the column's declared `type`
  differs (e.g. CronJob "Suspend" is a `boolean` column holding "True"/"False"/"<unset>").
* In a watch, only the first event's table carries column definitions; later events are
  generated with `noHeaders` and serialize `"columnDefinitions": null` (`with_columns=False`).
* With `includeObject=None` the row's object serializes as `null` (a Go `RawExtension` with
  no object), it is not dropped.

Quantities (capacity, quota) are printed as stored; upstream prints their canonical form, which
is the same string for quantities the registry has already canonicalized.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

TABLE_GROUP = "meta.k8s.io"
INCLUDE_OBJECT_VALUES = ("Metadata", "None", "Object")

# ---------------------------------------------------------------------------------------------
# Column descriptions (upstream takes most of them from the API types' swagger docs).
# ---------------------------------------------------------------------------------------------

_NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
_CREATED_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")
_CONTAINERS_DOC = "Names of each container in the template."
_IMAGES_DOC = "Images referenced by each container in the template."
_LABEL_SELECTORS = ("More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/"
                    "labels/#label-selectors")
_RC_WHAT_IS = ("More info: https://kubernetes.io/docs/concepts/workloads/controllers/"
               "replicationcontroller#what-is-a-replicationcontroller")
_RS_WHAT_IS = ("More info: https://kubernetes.io/docs/concepts/workloads/controllers/"
               "replicationcontroller/#what-is-a-replicationcontroller")
_DS_INFO = "More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"
_PV_INFO = "More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes"
_SVC_INFO = "More info: https://kubernetes.io/docs/concepts/services-networking/service/"

DOCS: dict[str, str] = {
    # core/v1
    "PodStatus.podIP": ("podIP address allocated to the pod. Routable at least within the "
                        "cluster. Empty if not yet allocated."),
    "PodSpec.nodeName": (
        "NodeName indicates in which node this pod is scheduled. If empty, this pod is a "
        "candidate for scheduling by the scheduler defined in schedulerName. Once this field is "
        "set, the kubelet for this node becomes responsible for the lifecycle of this pod. This "
        "field should not be used to express a desire for the pod to be scheduled on a specific "
        "node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename"),
    "PodStatus.nominatedNodeName": (
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it "
        "cannot be scheduled right away as preemption victims receive their graceful termination "
        "periods. This field does not guarantee that the pod will be scheduled on this node. "
        "Scheduler may decide to place the pod elsewhere if other nodes become available sooner. "
        "Scheduler may also decide to give the resources on this node to a higher priority pod "
        "that is created after preemption. As a result, this field may be different than "
        "PodSpec.nodeName when the pod is scheduled."),
    "PodSpec.readinessGates": (
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready "
        "when all its containers are ready AND all conditions specified in the readiness gates "
        "have status equal to \"True\" More info: "
        "https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates"),
    "PodSpec.nodeSelector": (
        "NodeSelector is a selector which must be true for the pod to fit on a node. Selector "
        "which must match a node's labels for the pod to be scheduled on that node. More info: "
        "https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
    "ReplicationControllerSpec.replicas": (
        "Replicas is the number of desired replicas. This is a pointer to distinguish between "
        "explicit zero and unspecified. Defaults to 1. " + _RC_WHAT_IS),
    "ReplicationControllerStatus.replicas": (
        "Replicas is the most recently observed number of replicas. " + _RC_WHAT_IS),
    "ReplicationControllerStatus.readyReplicas": (
        "The number of ready replicas for this replication controller."),
    "ReplicationControllerSpec.selector": (
        "Selector is a label query over pods that should match the Replicas count. If Selector "
        "is empty, it is defaulted to the labels present on the Pod template. Label keys and "
        "values that must match in order to be controlled by this replication controller, if "
        "empty defaulted to labels on Pod template. " + _LABEL_SELECTORS),
    "ServiceSpec.type": (
        "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are "
        "ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a "
        "cluster-internal IP address for load-balancing to endpoints. Endpoints are determined "
        "by the selector or if that is not specified, by manual construction of an Endpoints "
        "object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated "
        "and the endpoints are published as a set of endpoints rather than a virtual IP. "
        "\"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the "
        "same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an "
        "external load-balancer (if supported in the current cloud) which routes to the same "
        "endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified "
        "externalName. Several other fields do not apply to ExternalName services. More info: "
        "https://kubernetes.io/docs/concepts/services-networking/service/"
        "#publishing-services-service-types"),
    "ServiceSpec.clusterIP": (
        "clusterIP is the IP address of the service and is usually assigned randomly. If an "
        "address is specified manually, is in-range (as per system configuration), and is not in "
        "use, it will be allocated to the service; otherwise creation of the service will fail. "
        "This field may not be changed through updates unless the type field is also being "
        "changed to ExternalName (which requires this field to be blank) or the type field is "
        "being changed from ExternalName (in which case this field may optionally be specified, "
        "as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP "
        "address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is "
        "useful when direct endpoint connections are preferred and proxying is not required.  "
        "Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified "
        "when creating a Service of type ExternalName, creation will fail. This field will be "
        "wiped when updating a Service to type ExternalName. " + _SVC_INFO
        + "#virtual-ips-and-service-proxies"),
    "ServiceSpec.externalIPs": (
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept "
        "traffic for this service.  These IPs are not managed by Kubernetes.  The user is "
        "responsible for ensuring that traffic arrives at a node with this IP.  A common example "
        "is external load-balancers that are not part of the Kubernetes system."),
    "ServiceSpec.ports": ("The list of ports that are exposed by this service. " + _SVC_INFO
                          + "#virtual-ips-and-service-proxies"),
    "ServiceSpec.selector": (
        "Route service traffic to pods with label keys and values matching this selector. If "
        "empty or not present, the service is assumed to have an external process managing its "
        "endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, "
        "and LoadBalancer. Ignored if type is ExternalName. " + _SVC_INFO),
    "Endpoints.subsets": (
        "The set of all endpoints is the union of all subsets. Addresses are placed into subsets "
        "according to the IPs they share. A single address with multiple ports, some of which "
        "are ready and some of which are not (because they come from different containers) will "
        "result in the address being displayed in different subsets for the different ports. No "
        "address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of "
        "addresses and ports that comprise a service."),
    "NodeSystemInfo.kubeletVersion": "Kubelet Version reported by the node.",
    "NodeStatus.addresses": (
        "List of addresses reachable to the node. Queried from cloud provider, if available. "
        "More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This "
        "field is declared as mergeable, but the merge key is not sufficiently unique, which can "
        "cause data corruption when it is merged. Callers should instead use a full-replacement "
        "patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that "
        "addresses can change during the lifetime of a Node. However, there are some exceptions "
        "where this may not be possible, such as Pods that inherit a Node's address in its own "
        "status or consumers of the downward API (status.hostIP)."),
    "NodeSystemInfo.osImage": ("OS Image reported by the node from /etc/os-release (e.g. Debian "
                               "GNU/Linux 7 (wheezy))."),
    "NodeSystemInfo.kernelVersion": ("Kernel Version reported by the node from 'uname -r' (e.g. "
                                     "3.16.0-0.bpo.4-amd64)."),
    "NodeSystemInfo.containerRuntimeVersion": (
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. "
        "containerd://1.4.2)."),
    "Event.lastTimestamp": ("The time at which the most recent occurrence of this event was "
                            "recorded."),
    "Event.type": "Type of this event (Normal, Warning), new types could be added in the future",
    "Event.reason": ("This should be a short, machine understandable string that gives the reason "
                     "for the transition into the object's current status."),
    "Event.involvedObject": "The object that this event is about.",
    "ObjectReference.fieldPath": (
        "If referring to a piece of an object instead of an entire object, this string should "
        "contain a valid JSON/Go field access statement, such as "
        "desiredState.manifest.containers[2]. For example, if the object reference is to a "
        "container within a pod, this would take on a value like: \"spec.containers{name}\" "
        "(where \"name\" refers to the name of the container that triggered the event) or if no "
        "container name is specified \"spec.containers[2]\" (container with index 2 in this "
        "pod). This syntax is chosen only to have some well-defined way of referencing a part of "
        "an object."),
    "Event.source": ("The component reporting this event. Should be a short machine "
                     "understandable string."),
    "Event.message": "A human-readable description of the status of this operation.",
    "Event.firstTimestamp": ("The time at which the event was first recorded. (Time of server "
                             "receipt is in TypeMeta.)"),
    "Event.count": "The number of times this event has occurred.",
    "Secret.type": ("Used to facilitate programmatic handling of secret data. More info: "
                    "https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"),
    "Secret.data": (
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', "
        "'_' or '.'. The serialized form of the secret data is a base64 encoded string, "
        "representing the arbitrary (possibly non-string) data value here. Described in "
        "https://tools.ietf.org/html/rfc4648#section-4"),
    "ServiceAccount.secrets": (
        "Secrets is a list of the secrets in the same namespace that pods running using this "
        "ServiceAccount are allowed to use. Pods are only limited to this list if this service "
        "account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". "
        "The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. "
        "Prefer separate namespaces to isolate access to mounted secrets. This field should not "
        "be used to find auto-generated service account token secrets for use outside of pods. "
        "Instead, tokens can be requested directly using the TokenRequest API, or service account "
        "token secrets can be manually created. More info: "
        "https://kubernetes.io/docs/concepts/configuration/secret"),
    "PersistentVolumeSpec.capacity": ("capacity is the description of the persistent volume's "
                                      "resources and capacity. " + _PV_INFO + "#capacity"),
    "PersistentVolumeSpec.accessModes": ("accessModes contains all ways the volume can be "
                                         "mounted. " + _PV_INFO + "#access-modes"),
    "PersistentVolumeSpec.persistentVolumeReclaimPolicy": (
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released "
        "from its claim. Valid options are Retain (default for manually created "
        "PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and "
        "Recycle (deprecated). Recycle must be supported by the volume plugin underlying this "
        "PersistentVolume. " + _PV_INFO + "#reclaiming"),
    "PersistentVolumeStatus.phase": ("phase indicates if a volume is available, bound to a claim, "
                                     "or released by a claim. " + _PV_INFO + "#phase"),
    "PersistentVolumeSpec.claimRef": (
        "claimRef is part of a bi-directional binding between PersistentVolume and "
        "PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the "
        "authoritative bind between PV and PVC. " + _PV_INFO + "#binding"),
    "PersistentVolumeStatus.reason": (
        "reason is a brief CamelCase string that describes any failure and is meant for machine "
        "parsing and tidy display in the CLI."),
    "PersistentVolumeSpec.volumeMode": (
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to "
        "remain in raw block state. Value of Filesystem is implied when not included in spec."),
    "PersistentVolumeClaimStatus.phase": ("phase represents the current phase of "
                                          "PersistentVolumeClaim."),
    "PersistentVolumeClaimSpec.volumeName": ("volumeName is the binding reference to the "
                                             "PersistentVolume backing this claim."),
    "PersistentVolumeClaimStatus.capacity": ("capacity represents the actual resources of the "
                                             "underlying volume."),
    "PersistentVolumeClaimStatus.accessModes": (
        "accessModes contains the actual access modes the volume backing the PVC has. "
        + _PV_INFO + "#access-modes-1"),
    "PersistentVolumeClaimSpec.volumeMode": (
        "volumeMode defines what type of volume is required by the claim. Value of Filesystem is "
        "implied when not included in claim spec."),
    "ConfigMap.data": (
        "Data contains the configuration data. Each key must consist of alphanumeric characters, "
        "'-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The "
        "keys stored in Data must not overlap with the keys in the BinaryData field, this is "
        "enforced during validation process."),
    # extensions/v1beta1 (upstream still takes these descriptions from the old group)
    "ReplicaSetSpec.replicas": (
        "Replicas is the number of desired replicas. This is a pointer to distinguish between "
        "explicit zero and unspecified. Defaults to 1. " + _RS_WHAT_IS),
    "ReplicaSetStatus.replicas": "Replicas is the most recently observed number of replicas. "
                                 + _RS_WHAT_IS,
    "ReplicaSetStatus.readyReplicas": "The number of ready replicas for this replica set.",
    "ReplicaSetSpec.selector": (
        "Selector is a label query over pods that should match the replica count. If the "
        "selector is empty, it is defaulted to the labels present on the pod template. Label "
        "keys and values that must match in order to be controlled by this replica set. "
        + _LABEL_SELECTORS),
    "DaemonSetStatus.desiredNumberScheduled": (
        "The total number of nodes that should be running the daemon pod (including nodes "
        "correctly running the daemon pod). " + _DS_INFO),
    "DaemonSetStatus.currentNumberScheduled": (
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the "
        "daemon pod. " + _DS_INFO),
    "DaemonSetStatus.numberReady": (
        "The number of nodes that should be running the daemon pod and have one or more of the "
        "daemon pod running and ready."),
    "DaemonSetStatus.updatedNumberScheduled": ("The total number of nodes that are running "
                                               "updated daemon pod"),
    "DaemonSetStatus.numberAvailable": (
        "The number of nodes that should be running the daemon pod and have one or more of the "
        "daemon pod running and available (ready for at least spec.minReadySeconds)"),
    "DaemonSetSpec.selector": (
        "A label query over pods that are managed by the daemon set. Must match in order to be "
        "controlled. If empty, defaulted to labels on Pod template. " + _LABEL_SELECTORS),
    "DeploymentStatus.updatedReplicas": ("Total number of non-terminated pods targeted by this "
                                         "deployment that have the desired template spec."),
    "DeploymentStatus.availableReplicas": ("Total number of available pods (ready for at least "
                                           "minReadySeconds) targeted by this deployment."),
    "DeploymentSpec.selector": ("Label selector for pods. Existing ReplicaSets whose pods are "
                                "selected by this will be the ones affected by this deployment."),
    "NetworkPolicySpec.podSelector": (
        "Selects the pods to which this NetworkPolicy object applies. The array of ingress rules "
        "is applied to any pods selected by this field. Multiple network policies can select the "
        "same set of pods.  In this case, the ingress rules for each are combined additively. "
        "This field is NOT optional and follows standard label selector semantics. An empty "
        "podSelector matches all pods in this namespace."),
    # batch
    "JobStatus.succeeded": (
        "The number of pods which reached phase Succeeded. The value increases monotonically for "
        "a given spec. However, it may decrease in reaction to scale down of elastic indexed "
        "jobs."),
    "JobSpec.selector": (
        "A label query over pods that should match the pod count. Normally, the system sets this "
        "field for you. " + _LABEL_SELECTORS),
    "CronJobSpec.schedule": "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    "CronJobSpec.timeZone": (
        "The time zone name for the given schedule, see "
        "https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this "
        "will default to the time zone of the kube-controller-manager process. The set of valid "
        "time zone names and the time zone offset is loaded from the system-wide time zone "
        "database by the API server during CronJob validation and the controller manager during "
        "execution. If no system-wide time zone database can be found a bundled version of the "
        "database is used instead. If the time zone name becomes invalid during the lifetime of "
        "a CronJob or due to a change in host configuration, the controller will stop creating "
        "new new Jobs and will create a system event with the reason UnknownTimeZone. More "
        "information can be found in "
        "https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones This is "
        "beta field and must be enabled via the `CronJobTimeZone` feature gate."),
    "CronJobSpec.suspend": ("This flag tells the controller to suspend subsequent executions, it "
                            "does not apply to already started executions.  Defaults to false."),
    "CronJobStatus.active": "A list of pointers to currently running jobs.",
    "CronJobStatus.lastScheduleTime": ("Information when was the last time the job was "
                                       "successfully scheduled."),
    # autoscaling/v2beta1
    "HorizontalPodAutoscalerSpec.scaleTargetRef": (
        "scaleTargetRef points to the target resource to scale, and is used to the pods for "
        "which metrics should be collected, as well as to actually change the replica count."),
    "HorizontalPodAutoscalerSpec.metrics": (
        "metrics contains the specifications for which to use to calculate the desired replica "
        "count (the maximum replica count across all metrics will be used).  The desired replica "
        "count is calculated multiplying the ratio between the target value and the current "
        "value by the current number of pods.  Ergo, metrics used must decrease as the pod count "
        "is increased, and vice-versa.  See the individual metric source types for more "
        "information about how each type of metric must respond."),
    "HorizontalPodAutoscalerSpec.minReplicas": (
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can "
        "scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature "
        "gate HPAScaleToZero is enabled and at least one Object or External metric is "
        "configured.  Scaling is active as long as at least one metric value is available."),
    "HorizontalPodAutoscalerSpec.maxReplicas": (
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can "
        "scale up. It cannot be less that minReplicas."),
    "HorizontalPodAutoscalerStatus.currentReplicas": (
        "currentReplicas is current number of replicas of pods managed by this autoscaler, as "
        "last seen by the autoscaler."),
    # rbac/v1beta1
    "RoleBinding.roleRef": (
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global "
        "namespace. If the RoleRef cannot be resolved, the Authorizer must return an error."),
    "ClusterRoleBinding.roleRef": (
        "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot "
        "be resolved, the Authorizer must return an error."),
    # coordination/v1
    "LeaseSpec.holderIdentity": (
        "holderIdentity contains the identity of the holder of a current lease. If Coordinated "
        "Leader Election is used, the holder identity must be equal to the elected "
        "LeaseCandidate.metadata.name field."),
    # storage/v1
    "StorageClass.provisioner": "provisioner indicates the type of the provisioner.",
    "StorageClass.reclaimPolicy": (
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes "
        "of this storage class. Defaults to Delete."),
    "StorageClass.volumeBindingMode": (
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound. "
        " When unset, VolumeBindingImmediate is used. This field is only honored by servers that "
        "enable the VolumeScheduling feature."),
    "StorageClass.allowVolumeExpansion": ("allowVolumeExpansion shows whether the storage class "
                                          "allow volume expand."),
    # apps/v1beta1
    "ControllerRevision.revision": ("Revision indicates the revision of the state represented "
                                    "by Data."),
    # scheduling/v1
    "PriorityClass.value": (
        "value represents the integer value of this priority class. This is the actual priority "
        "that pods receive when they have the name of this class in their pod spec."),
    "PriorityClass.globalDefault": (
        "globalDefault specifies whether this PriorityClass should be considered as the default "
        "priority for pods that do not have any priority class. Only one PriorityClass can be "
        "marked as `globalDefault`. However, if more than one PriorityClasses exists with their "
        "`globalDefault` field set to true, the smallest value of such global default "
        "PriorityClasses will be used as the default priority."),
    "PriorityClass.preemptionPolicy": (
        "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, "
        "PreemptLowerPriority. Defaults to PreemptLowerPriority if unset."),
    # discovery/v1beta1
    "EndpointSlice.addressType": (
        "addressType specifies the type of address carried by this EndpointSlice. All addresses "
        "in this slice must be the same type. CAUTION: This field is immutable after creation. "
        "The following address types are currently supported: * IPv4: Represents an IPv4 "
        "Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified "
        "Domain Name."),
    "EndpointSlice.ports": (
        "ports specifies the list of network ports exposed by each endpoint in this slice. Each "
        "port must have a unique name. When ports is empty, it indicates that there are no "
        "defined ports. When a port is defined with a nil port value, it indicates \"all "
        "ports\". Each slice may include a maximum of 100 ports."),
    "EndpointSlice.endpoints": ("endpoints is a list of unique endpoints in this slice. Each "
                                "slice may include a maximum of 1000 endpoints."),
}


def _col(name: str, type_: str = "string", description: str = "", *, priority: int = 0,
         fmt: str = "") -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": description,
            "priority": priority}


def _name_col(priority: int = 0) -> dict:
    return _col("Name", "string", _NAME_DOC, priority=priority, fmt="name")


def _age_col() -> dict:
    return _col("Age", "string", _CREATED_DOC)


def _wide(name: str, description: str) -> dict:
    return _col(name, "string", description, priority=1)


# ---------------------------------------------------------------------------------------------
# Durations and timestamps (k8s.io/apimachinery/pkg/util/duration)
# ---------------------------------------------------------------------------------------------

def _micros(d: timedelta) -> int:
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


def _trunc(a: int, b: int) -> int:
    """Integer division rounding toward zero, like Go's int(x / y)."""
    q = abs(a) // b
    return q if a >= 0 else -q


def human_duration(d: timedelta) -> str:
    """`duration.HumanDuration`: ~2-3 significant figures ("5s", "3m20s", "4h5m", "3y20d")."""
    us = _micros(d)
    seconds = _trunc(us, 1_000_000)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = us // 60_000_000
    if minutes < 10:
        s = (us // 1_000_000) % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = us // 3_600_000_000
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if dy == 0 else f"{years}y{dy}d"
    return f"{hours // 24 // 365}y"


def short_human_duration(d: timedelta) -> str:
    """`duration.ShortHumanDuration`: one unit only ("5s", "3m", "4h", "2d", "3y")."""
    us = _micros(d)
    seconds = _trunc(us, 1_000_000)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60:
        return f"{seconds}s"
    minutes = us // 60_000_000
    if minutes < 60:
        return f"{minutes}m"
    hours = us // 3_600_000_000
    if hours < 24:
        return f"{hours}h"
    if hours < 24 * 365:
        return f"{hours // 24}d"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (metav1.Time / MicroTime) as an aware datetime; None if unset."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    if t.year <= 1:  # Go's zero time
        return None
    return t


def _now(now: datetime) -> datetime:
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


def translate_timestamp_since(value: Any, now: datetime) -> str:
    """`translateTimestampSince`: "<unknown>" for an unset time, else HumanDuration(now - t)."""
    t = parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration(_now(now) - t)


# ---------------------------------------------------------------------------------------------
# Small helpers mirroring upstream formatting functions
# ---------------------------------------------------------------------------------------------

def _get(obj: Any, path: str, default: Any = None) -> Any:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return default
        cur = cur.get(part)
        if cur is None:
            return default
    return cur


def _name(obj: dict) -> str:
    return _get(obj, "metadata.name", "")


def _age(obj: dict, now: datetime) -> str:
    return translate_timestamp_since(_get(obj, "metadata.creationTimestamp"), now)


def format_labels(labels: dict | None) -> str:
    """`labels.FormatLabels`: sorted "k=v" pairs joined by ",", or "<none>"."""
    text = ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))
    return text or "<none>"


def label_selector_string(selector: dict | None) -> str:
    """`metav1.LabelSelectorAsSelector(sel).String()`; "" for a nil or empty selector."""
    if not selector:
        return ""
    reqs: list[tuple[str, str]] = []
    for k, v in (selector.get("matchLabels") or {}).items():
        reqs.append((k, f"{k}={v}"))
    for expr in selector.get("matchExpressions") or []:
        key = expr.get("key", "")
        op = expr.get("operator", "")
        raw_values = expr.get("values") or []
        values = ",".join(sorted(raw_values))
        if op in ("In", "NotIn"):
            if not raw_values:
                raise ValueError("for 'in', 'notin' operators, values set can't be empty")
            reqs.append((key, f"{key} {op.lower()} ({values})"))
        elif op in ("Exists", "DoesNotExist"):
            if raw_values:
                raise ValueError("values set must be empty for exists and does not exist")
            reqs.append((key, key if op == "Exists" else f"!{key}"))
        else:
            raise ValueError(f"{op!r} is not a valid label selector operator")
    reqs.sort(key=lambda r: r[0])
    return ",".join(text for _, text in reqs)


def format_label_selector(selector: dict | None) -> str:
    """`metav1.FormatLabelSelector`: like the selector string, but "<none>" when empty."""
    try:
        text = label_selector_string(selector)
    except ValueError:
        return "<error>"
    return text or "<none>"


def _containers_and_images(containers: list | None) -> tuple[str, str]:
    """`layoutContainerCells`."""
    containers = containers or []
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _replicas(spec: dict | None) -> int:
    """Desired replicas; the API defaults an unset `spec.replicas` to 1."""
    value = (spec or {}).get("replicas")
    return 1 if value is None else _int(value)


def _int_or_string(value: Any) -> str:
    return str(value)


def _bool_ptr(value: Any) -> str:
    """`printBoolPtr`."""
    if value is None:
        return "<unset>"
    return "True" if value else "False"


def _list_with_more(items: list[str], more: bool, count: int, max_: int) -> str:
    text = ",".join(items)
    if more:
        return f"{text} + {count - max_} more..."
    return text or "<unset>"


def _join_host_port(host: str, port: Any) -> str:
    """`net.JoinHostPort`."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _access_modes(modes: Iterable[str] | None) -> str:
    """`helper.GetAccessModesAsString`."""
    modes = set(modes or [])
    out = []
    for mode, short in (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"),
                        ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")):
        if mode in modes:
            out.append(short)
    return ",".join(out)


def _quantity(value: Any) -> str:
    if value is None:
        return "0"
    return str(value)


# ---------------------------------------------------------------------------------------------
# Printers: one (columns, cells) pair per kind
# ---------------------------------------------------------------------------------------------

CellsFunc = Callable[[dict, datetime], list]
ConditionsFunc = Callable[[dict], list]


@dataclass(frozen=True)
class Printer:
    columns: tuple[dict, ...]
    cells: CellsFunc
    conditions: ConditionsFunc | None = None


# --- pods -----------------------------------------------------------------------------------

POD_COLUMNS = (
    _name_col(),
    _col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "string", "The aggregate status of the containers in this pod."),
    _col("Restarts", "string", "The number of times the containers in this pod have been "
         "restarted and when the last container in this pod has restarted."),
    _age_col(),
    _wide("IP", DOCS["PodStatus.podIP"]),
    _wide("Node", DOCS["PodSpec.nodeName"]),
    _wide("Nominated Node", DOCS["PodStatus.nominatedNodeName"]),
    _wide("Readiness Gates", DOCS["PodSpec.readinessGates"]),
)

_NODE_UNREACHABLE_POD_REASON = "NodeLost"


def _restartable_init_container(container: dict | None) -> bool:
    """`podutil.IsRestartableInitContainer`: a sidecar (restartPolicy: Always)."""
    return bool(container) and container.get("restartPolicy") == "Always"


def _condition_true(conditions: list | None, type_: str) -> bool:
    for cond in conditions or []:
        if cond.get("type") == type_:
            return cond.get("status") == "True"
    return False


def _later(current: datetime | None, candidate: Any) -> datetime | None:
    t = parse_time(candidate)
    if t is not None and (current is None or current < t):
        return t
    return current


def _pod_status_reason(pod: dict) -> tuple[int, int, str, int, datetime | None]:
    """The core of upstream `printPod`: (ready, total, reason, restarts, last restart time)."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    init_containers = spec.get("initContainers") or []

    restarts = 0
    restartable_init_restarts = 0
    total = len(spec.get("containers") or [])
    ready = 0
    last_restart: datetime | None = None
    last_restartable_init_restart: datetime | None = None

    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in conditions:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_by_name = {c.get("name"): c for c in init_containers}
    total += sum(1 for c in init_containers if _restartable_init_container(c))

    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += _int(cs.get("restartCount"))
        last_terminated = _get(cs, "lastState.terminated")
        if last_terminated is not None:
            last_restart = _later(last_restart, last_terminated.get("finishedAt"))
        restartable = _restartable_init_container(init_by_name.get(cs.get("name")))
        if restartable:
            restartable_init_restarts += _int(cs.get("restartCount"))
            if last_terminated is not None:
                last_restartable_init_restart = _later(last_restartable_init_restart,
                                                       last_terminated.get("finishedAt"))
        state = cs.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated is not None and _int(terminated.get("exitCode")) == 0:
            continue
        if restartable and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            # initialization failed
            if not terminated.get("reason"):
                if _int(terminated.get("signal")) != 0:
                    reason = f"Init:Signal:{_int(terminated.get('signal'))}"
                else:
                    reason = f"Init:ExitCode:{_int(terminated.get('exitCode'))}"
            else:
                reason = "Init:" + terminated["reason"]
        elif (waiting is not None and waiting.get("reason")
              and waiting.get("reason") != "PodInitializing"):
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_containers)}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts = restartable_init_restarts
        last_restart = last_restartable_init_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += _int(cs.get("restartCount"))
            last_terminated = _get(cs, "lastState.terminated")
            if last_terminated is not None:
                last_restart = _later(last_restart, last_terminated.get("finishedAt"))
            state = cs.get("state") or {}
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                if _int(terminated.get("signal")) != 0:
                    reason = f"Signal:{_int(terminated.get('signal'))}"
                else:
                    reason = f"ExitCode:{_int(terminated.get('exitCode'))}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        # back to "Running" if at least one container is still reporting as running
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"

    deleting = _get(pod, "metadata.deletionTimestamp") is not None
    if deleting and status.get("reason") == _NODE_UNREACHABLE_POD_REASON:
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return ready, total, reason, restarts, last_restart


def _pod_cells(pod: dict, now: datetime) -> list:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    ready, total, reason, restarts, last_restart = _pod_status_reason(pod)
    restarts_text = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_text = f"{restarts} ({translate_timestamp_since(last_restart, now)} ago)"

    pod_ips = status.get("podIPs") or []
    pod_ip = (pod_ips[0].get("ip") if pod_ips else status.get("podIP")) or "<none>"
    readiness_gates = "<none>"
    gates = spec.get("readinessGates") or []
    if gates:
        true_conditions = 0
        for gate in gates:
            for cond in status.get("conditions") or []:
                if cond.get("type") == gate.get("conditionType"):
                    if cond.get("status") == "True":
                        true_conditions += 1
                    break
        readiness_gates = f"{true_conditions}/{len(gates)}"
    return [_name(pod), f"{ready}/{total}", reason, restarts_text, _age(pod, now),
            pod_ip, spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", readiness_gates]


def _pod_conditions(pod: dict) -> list:
    phase = _get(pod, "status.phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed",
                 "message": "The pod failed."}]
    return []


# --- pod templates, controllers --------------------------------------------------------------

POD_TEMPLATE_COLUMNS = (
    _name_col(),
    _col("Containers", "string", _CONTAINERS_DOC),
    _col("Images", "string", _IMAGES_DOC),
    _col("Pod Labels", "string", "The labels for the pod template."),
)


def _pod_template_cells(obj: dict, now: datetime) -> list:
    names, images = _containers_and_images(_get(obj, "template.spec.containers"))
    return [_name(obj), names, images, format_labels(_get(obj, "template.metadata.labels"))]


REPLICATION_CONTROLLER_COLUMNS = (
    _name_col(),
    _col("Desired", "integer", DOCS["ReplicationControllerSpec.replicas"]),
    _col("Current", "integer", DOCS["ReplicationControllerStatus.replicas"]),
    _col("Ready", "integer", DOCS["ReplicationControllerStatus.readyReplicas"]),
    _age_col(),
    _wide("Containers", _CONTAINERS_DOC),
    _wide("Images", _IMAGES_DOC),
    _wide("Selector", DOCS["ReplicationControllerSpec.selector"]),
)


def _replication_controller_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    names, images = _containers_and_images(_get(spec, "template.spec.containers"))
    return [_name(obj), _replicas(spec), _int(_get(obj, "status.replicas")),
            _int(_get(obj, "status.readyReplicas")), _age(obj, now),
            names, images, format_labels(spec.get("selector"))]


REPLICA_SET_COLUMNS = (
    _name_col(),
    _col("Desired", "integer", DOCS["ReplicaSetSpec.replicas"]),
    _col("Current", "integer", DOCS["ReplicaSetStatus.replicas"]),
    _col("Ready", "integer", DOCS["ReplicaSetStatus.readyReplicas"]),
    _age_col(),
    _wide("Containers", _CONTAINERS_DOC),
    _wide("Images", _IMAGES_DOC),
    _wide("Selector", DOCS["ReplicaSetSpec.selector"]),
)


def _replica_set_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    names, images = _containers_and_images(_get(spec, "template.spec.containers"))
    return [_name(obj), _replicas(spec), _int(_get(obj, "status.replicas")),
            _int(_get(obj, "status.readyReplicas")), _age(obj, now),
            names, images, format_label_selector(spec.get("selector"))]


DAEMON_SET_COLUMNS = (
    _name_col(),
    _col("Desired", "integer", DOCS["DaemonSetStatus.desiredNumberScheduled"]),
    _col("Current", "integer", DOCS["DaemonSetStatus.currentNumberScheduled"]),
    _col("Ready", "integer", DOCS["DaemonSetStatus.numberReady"]),
    _col("Up-to-date", "integer", DOCS["DaemonSetStatus.updatedNumberScheduled"]),
    _col("Available", "integer", DOCS["DaemonSetStatus.numberAvailable"]),
    _col("Node Selector", "string", DOCS["PodSpec.nodeSelector"]),
    _age_col(),
    _wide("Containers", _CONTAINERS_DOC),
    _wide("Images", _IMAGES_DOC),
    _wide("Selector", DOCS["DaemonSetSpec.selector"]),
)


def _daemon_set_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    names, images = _containers_and_images(_get(spec, "template.spec.containers"))
    return [_name(obj), _int(status.get("desiredNumberScheduled")),
            _int(status.get("currentNumberScheduled")), _int(status.get("numberReady")),
            _int(status.get("updatedNumberScheduled")), _int(status.get("numberAvailable")),
            format_labels(_get(spec, "template.spec.nodeSelector")), _age(obj, now),
            names, images, format_label_selector(spec.get("selector"))]


DEPLOYMENT_COLUMNS = (
    _name_col(),
    _col("Ready", "string", "Number of the pod with ready state"),
    _col("Up-to-date", "string", DOCS["DeploymentStatus.updatedReplicas"]),
    _col("Available", "string", DOCS["DeploymentStatus.availableReplicas"]),
    _age_col(),
    _wide("Containers", _CONTAINERS_DOC),
    _wide("Images", _IMAGES_DOC),
    _wide("Selector", DOCS["DeploymentSpec.selector"]),
)


def _deployment_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    try:
        selector = label_selector_string(spec.get("selector"))
    except ValueError:
        selector = "<invalid>"
    names, images = _containers_and_images(_get(spec, "template.spec.containers"))
    return [_name(obj), f"{_int(status.get('readyReplicas'))}/{_replicas(spec)}",
            _int(status.get("updatedReplicas")), _int(status.get("availableReplicas")),
            _age(obj, now), names, images, selector]


STATEFUL_SET_COLUMNS = (
    _name_col(),
    _col("Ready", "string", "Number of the pod with ready state"),
    _age_col(),
    _wide("Containers", _CONTAINERS_DOC),
    _wide("Images", _IMAGES_DOC),
)


def _stateful_set_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    names, images = _containers_and_images(_get(spec, "template.spec.containers"))
    return [_name(obj), f"{_int(_get(obj, 'status.readyReplicas'))}/{_replicas(spec)}",
            _age(obj, now), names, images]


CONTROLLER_REVISION_COLUMNS = (
    _name_col(),
    _col("Controller", "string", "Controller of the object"),
    _col("Revision", "string", DOCS["ControllerRevision.revision"]),
    _age_col(),
)


def _controller_revision_cells(obj: dict, now: datetime) -> list:
    controller = "<none>"
    for ref in _get(obj, "metadata.ownerReferences", []) or []:
        if ref.get("controller"):
            api_version = ref.get("apiVersion", "")
            group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
            kind = ref.get("kind", "")
            group_kind = f"{kind}.{group}" if group else kind
            controller = f"{group_kind.lower()}/{ref.get('name', '')}" if group_kind else \
                ref.get("name", "")
            break
    return [_name(obj), controller, _int(obj.get("revision")), _age(obj, now)]


# --- batch -----------------------------------------------------------------------------------

JOB_COLUMNS = (
    _name_col(),
    _col("Status", "string", "Status of the job."),
    _col("Completions", "string", DOCS["JobStatus.succeeded"]),
    _col("Duration", "string", "Time required to complete the job."),
    _age_col(),
    _wide("Containers", _CONTAINERS_DOC),
    _wide("Images", _IMAGES_DOC),
    _wide("Selector", DOCS["JobSpec.selector"]),
)


def _job_status(obj: dict) -> str:
    conditions = _get(obj, "status.conditions", [])
    if _condition_true(conditions, "Complete"):
        return "Complete"
    if _condition_true(conditions, "Failed"):
        return "Failed"
    if _get(obj, "metadata.deletionTimestamp") is not None:
        return "Terminating"
    if _condition_true(conditions, "Suspended"):
        return "Suspended"
    if _condition_true(conditions, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def _job_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    succeeded = _int(status.get("succeeded"))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{_int(spec['completions'])}"
    else:
        parallelism = _int(spec.get("parallelism"))
        completions = (f"{succeeded}/1 of {parallelism}" if parallelism > 1
                       else f"{succeeded}/1")
    start = parse_time(status.get("startTime"))
    completion = parse_time(status.get("completionTime"))
    if start is None:
        duration = ""
    elif completion is None:
        duration = human_duration(_now(now) - start)
    else:
        duration = human_duration(completion - start)
    names, images = _containers_and_images(_get(spec, "template.spec.containers"))
    return [_name(obj), _job_status(obj), completions, duration, _age(obj, now),
            names, images, format_label_selector(spec.get("selector"))]


CRON_JOB_COLUMNS = (
    _name_col(),
    _col("Schedule", "string", DOCS["CronJobSpec.schedule"]),
    _col("Timezone", "string", DOCS["CronJobSpec.timeZone"]),
    _col("Suspend", "boolean", DOCS["CronJobSpec.suspend"]),
    _col("Active", "integer", DOCS["CronJobStatus.active"]),
    _col("Last Schedule", "string", DOCS["CronJobStatus.lastScheduleTime"]),
    _age_col(),
    _wide("Containers", _CONTAINERS_DOC),
    _wide("Images", _IMAGES_DOC),
    _wide("Selector", DOCS["JobSpec.selector"]),
)


def _cron_job_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    last = status.get("lastScheduleTime")
    last_schedule = "<none>" if last is None else translate_timestamp_since(last, now)
    job_spec = _get(spec, "jobTemplate.spec", {})
    names, images = _containers_and_images(_get(job_spec, "template.spec.containers"))
    time_zone = spec.get("timeZone")
    return [_name(obj), spec.get("schedule", ""), "<none>" if time_zone is None else time_zone,
            _bool_ptr(spec.get("suspend")), len(status.get("active") or []), last_schedule,
            _age(obj, now), names, images, format_label_selector(job_spec.get("selector"))]


# --- services, endpoints, ingress ------------------------------------------------------------

SERVICE_COLUMNS = (
    _name_col(),
    _col("Type", "string", DOCS["ServiceSpec.type"]),
    _col("Cluster-IP", "string", DOCS["ServiceSpec.clusterIP"]),
    _col("External-IP", "string", DOCS["ServiceSpec.externalIPs"]),
    _col("Port(s)", "string", DOCS["ServiceSpec.ports"]),
    _age_col(),
    _wide("Selector", DOCS["ServiceSpec.selector"]),
)


def _load_balancer_ingress(ingress: list | None) -> str:
    """`loadBalancerStatusStringer` with wide=true (the server never clips)."""
    found = set()
    for entry in ingress or []:
        if entry.get("ip"):
            found.add(entry["ip"])
        elif entry.get("hostname"):
            found.add(entry["hostname"])
    return ",".join(sorted(found))


def _service_external_ip(svc: dict) -> str:
    spec = svc.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    external_ips = spec.get("externalIPs") or []
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) if external_ips else "<none>"
    if svc_type == "LoadBalancer":
        lb_ips = _load_balancer_ingress(_get(svc, "status.loadBalancer.ingress"))
        if external_ips:
            results = (lb_ips.split(",") if lb_ips else []) + list(external_ips)
            return ",".join(results)
        return lb_ips or "<pending>"
    if svc_type == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def _service_ports(ports: list | None) -> str:
    """`makePortString`: "80/TCP", "80:30080/TCP"."""
    pieces = []
    for port in ports or []:
        protocol = port.get("protocol") or "TCP"
        node_port = _int(port.get("nodePort"))
        if node_port > 0:
            pieces.append(f"{_int(port.get('port'))}:{node_port}/{protocol}")
        else:
            pieces.append(f"{_int(port.get('port'))}/{protocol}")
    return ",".join(pieces)


def _service_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [_name(obj), spec.get("type") or "ClusterIP",
            cluster_ips[0] if cluster_ips else "<none>", _service_external_ip(obj),
            _service_ports(spec.get("ports")) or "<none>", _age(obj, now),
            format_labels(spec.get("selector"))]


ENDPOINTS_COLUMNS = (
    _name_col(),
    _col("Endpoints", "string", DOCS["Endpoints.subsets"]),
    _age_col(),
)


def format_endpoints(endpoints: dict, ports: set[str] | None = None) -> str:
    """`formatEndpoints`: up to three "ip:port" entries, then " + N more..."."""
    subsets = endpoints.get("subsets") or []
    if not subsets:
        return "<none>"
    items: list[str] = []
    max_ = 3
    more = False
    count = 0
    for subset in subsets:
        addresses = subset.get("addresses") or []
        subset_ports = subset.get("ports") or []
        if not subset_ports:
            # headless services can have no ports
            count += len(addresses)
            for addr in addresses:
                if len(items) == max_:
                    more = True
                    break
                items.append(addr.get("ip", ""))
            continue
        for port in subset_ports:
            if ports is None or port.get("name", "") in ports:
                count += len(addresses)
                for addr in addresses:
                    if len(items) == max_:
                        more = True
                        break
                    items.append(_join_host_port(addr.get("ip", ""), _int(port.get("port"))))
    text = ",".join(items)
    if more:
        return f"{text} + {count - max_} more..."
    return text


def _endpoints_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), format_endpoints(obj), _age(obj, now)]


ENDPOINT_SLICE_COLUMNS = (
    _name_col(),
    _col("AddressType", "string", DOCS["EndpointSlice.addressType"]),
    _col("Ports", "string", DOCS["EndpointSlice.ports"]),
    _col("Endpoints", "string", DOCS["EndpointSlice.endpoints"]),
    _age_col(),
)


def _endpoint_slice_cells(obj: dict, now: datetime) -> list:
    max_ = 3
    ports: list[str] = []
    more = False
    count = 0
    for port in obj.get("ports") or []:
        if len(ports) < max_:
            if port.get("port") is not None:
                ports.append(str(_int(port["port"])))
            elif port.get("name") is not None:
                ports.append(port["name"])
            else:
                ports.append("*")
        elif len(ports) == max_:
            more = True
        count += 1
    ports_text = _list_with_more(ports, more, count, max_)

    addrs: list[str] = []
    more = False
    count = 0
    for endpoint in obj.get("endpoints") or []:
        for address in endpoint.get("addresses") or []:
            if len(addrs) < max_:
                addrs.append(address)
            elif len(addrs) == max_:
                more = True
            count += 1
    endpoints_text = _list_with_more(addrs, more, count, max_)
    return [_name(obj), obj.get("addressType", ""), ports_text, endpoints_text, _age(obj, now)]


INGRESS_COLUMNS = (
    _name_col(),
    _col("Class", "string", "The name of the IngressClass resource that should be used for "
         "additional configuration"),
    _col("Hosts", "string", "Hosts that incoming requests are matched against before the "
         "ingress rule"),
    _col("Address", "string", "Address is a list containing ingress points for the "
         "load-balancer"),
    _col("Ports", "string", "Ports of TLS configurations that open"),
    _age_col(),
)


def _ingress_hosts(rules: list | None) -> str:
    """`formatHosts`."""
    rules = rules or []
    hosts: list[str] = []
    max_ = 3
    more = False
    for rule in rules:
        if len(hosts) == max_:
            more = True
        if not more and rule.get("host"):
            hosts.append(rule["host"])
    if not hosts:
        return "*"
    text = ",".join(hosts)
    if more:
        return f"{text} + {len(rules) - max_} more..."
    return text


def _ingress_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    class_name = spec.get("ingressClassName")
    return [_name(obj), "<none>" if class_name is None else class_name,
            _ingress_hosts(spec.get("rules")),
            _load_balancer_ingress(_get(obj, "status.loadBalancer.ingress")),
            "80, 443" if spec.get("tls") else "80", _age(obj, now)]


INGRESS_CLASS_COLUMNS = (
    _name_col(),
    _col("Controller", "string", "Controller that is responsible for handling this class"),
    _col("Parameters", "string", "A reference to a resource with additional parameters"),
    _age_col(),
)


def _ingress_class_cells(obj: dict, now: datetime) -> list:
    params = _get(obj, "spec.parameters")
    parameters = "<none>"
    if params is not None:
        parameters = params.get("kind", "")
        if params.get("apiGroup") is not None:
            parameters += "." + params["apiGroup"]
        parameters += "/" + params.get("name", "")
    return [_name(obj), _get(obj, "spec.controller", ""), parameters, _age(obj, now)]


NETWORK_POLICY_COLUMNS = (
    _name_col(),
    _col("Pod-Selector", "string", DOCS["NetworkPolicySpec.podSelector"]),
    _age_col(),
)


def _network_policy_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), format_label_selector(_get(obj, "spec.podSelector", {})),
            _age(obj, now)]


# --- nodes, namespaces -----------------------------------------------------------------------

NODE_COLUMNS = (
    _name_col(),
    _col("Status", "string", "The status of the node"),
    _col("Roles", "string", "The roles of the node"),
    _age_col(),
    _col("Version", "string", DOCS["NodeSystemInfo.kubeletVersion"]),
    _wide("Internal-IP", DOCS["NodeStatus.addresses"]),
    _wide("External-IP", DOCS["NodeStatus.addresses"]),
    _wide("OS-Image", DOCS["NodeSystemInfo.osImage"]),
    _wide("Kernel-Version", DOCS["NodeSystemInfo.kernelVersion"]),
    _wide("Container-Runtime", DOCS["NodeSystemInfo.containerRuntimeVersion"]),
)

_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
_NODE_ROLE_LABEL = "kubernetes.io/role"


def node_roles(node: dict) -> list[str]:
    """`findNodeRoles`: from `node-role.kubernetes.io/<role>` and `kubernetes.io/role=<role>`."""
    roles = set()
    for key, value in (_get(node, "metadata.labels", {}) or {}).items():
        if key.startswith(_NODE_ROLE_PREFIX):
            role = key[len(_NODE_ROLE_PREFIX):]
            if role:
                roles.add(role)
        elif key == _NODE_ROLE_LABEL and value:
            roles.add(value)
    return sorted(roles)


def _node_address(node: dict, type_: str) -> str:
    for address in _get(node, "status.addresses", []) or []:
        if address.get("type") == type_:
            return address.get("address", "")
    return "<none>"


def _node_cells(obj: dict, now: datetime) -> list:
    status_parts: list[str] = []
    conditions = {c.get("type"): c for c in _get(obj, "status.conditions", []) or []}
    ready = conditions.get("Ready")
    if ready is not None:
        status_parts.append("Ready" if ready.get("status") == "True" else "NotReady")
    if not status_parts:
        status_parts.append("Unknown")
    if _get(obj, "spec.unschedulable"):
        status_parts.append("SchedulingDisabled")
    info = _get(obj, "status.nodeInfo", {}) or {}
    return [_name(obj), ",".join(status_parts), ",".join(node_roles(obj)) or "<none>",
            _age(obj, now), info.get("kubeletVersion", ""),
            _node_address(obj, "InternalIP"), _node_address(obj, "ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


NAMESPACE_COLUMNS = (
    _name_col(),
    _col("Status", "string", "The status of the namespace"),
    _age_col(),
)


def _namespace_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), _get(obj, "status.phase", ""), _age(obj, now)]


# --- events ----------------------------------------------------------------------------------

EVENT_COLUMNS = (
    _col("Last Seen", "string", DOCS["Event.lastTimestamp"]),
    _col("Type", "string", DOCS["Event.type"]),
    _col("Reason", "string", DOCS["Event.reason"]),
    _col("Object", "string", DOCS["Event.involvedObject"]),
    _wide("Subobject", DOCS["ObjectReference.fieldPath"]),
    _wide("Source", DOCS["Event.source"]),
    _col("Message", "string", DOCS["Event.message"]),
    _wide("First Seen", DOCS["Event.firstTimestamp"]),
    _wide("Count", DOCS["Event.count"]),
    _name_col(priority=1),
)


def _as_core_event(obj: dict) -> dict:
    """An `events.k8s.io/v1` Event in the core (`v1`) shape (upstream prints the internal type)."""
    return {
        "metadata": obj.get("metadata") or {},
        "involvedObject": obj.get("regarding") or {},
        "reason": obj.get("reason", ""),
        "message": obj.get("note", ""),
        "source": obj.get("deprecatedSource") or {},
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount"),
        "type": obj.get("type", ""),
        "eventTime": obj.get("eventTime"),
        "series": obj.get("series"),
        "reportingComponent": obj.get("reportingController", ""),
        "reportingInstance": obj.get("reportingInstance", ""),
    }


def _event_cells(event: dict, now: datetime) -> list:
    """`printEvent` for a core/v1 Event."""
    if parse_time(event.get("firstTimestamp")) is None:
        first_seen = translate_timestamp_since(event.get("eventTime"), now)
    else:
        first_seen = translate_timestamp_since(event.get("firstTimestamp"), now)
    if parse_time(event.get("lastTimestamp")) is None:
        last_seen = first_seen
    else:
        last_seen = translate_timestamp_since(event.get("lastTimestamp"), now)
    count = _int(event.get("count"))
    series = event.get("series")
    if series is not None:
        last_seen = translate_timestamp_since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1  # singleton events don't have a count set in the new API
    involved = event.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    instance = source.get("host") or event.get("reportingInstance") or ""
    source_text = f"{component}, {instance}" if instance else component
    return [last_seen, event.get("type", ""), event.get("reason", ""), target,
            involved.get("fieldPath", ""), source_text, (event.get("message") or "").strip(),
            first_seen, count, _name(event)]


def _events_v1_cells(obj: dict, now: datetime) -> list:
    return _event_cells(_as_core_event(obj), now)


# --- config and storage ----------------------------------------------------------------------

SECRET_COLUMNS = (
    _name_col(),
    _col("Type", "string", DOCS["Secret.type"]),
    _col("Data", "string", DOCS["Secret.data"]),
    _age_col(),
)


def _secret_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), obj.get("type", ""), len(obj.get("data") or {}), _age(obj, now)]


CONFIG_MAP_COLUMNS = (
    _name_col(),
    _col("Data", "string", DOCS["ConfigMap.data"]),
    _age_col(),
)


def _config_map_cells(obj: dict, now: datetime) -> list:
    count = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [_name(obj), count, _age(obj, now)]


SERVICE_ACCOUNT_COLUMNS = (
    _name_col(),
    _col("Secrets", "string", DOCS["ServiceAccount.secrets"]),
    _age_col(),
)


def _service_account_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), len(obj.get("secrets") or []), _age(obj, now)]


_BETA_STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"

PERSISTENT_VOLUME_COLUMNS = (
    _name_col(),
    _col("Capacity", "string", DOCS["PersistentVolumeSpec.capacity"]),
    _col("Access Modes", "string", DOCS["PersistentVolumeSpec.accessModes"]),
    _col("Reclaim Policy", "string", DOCS["PersistentVolumeSpec.persistentVolumeReclaimPolicy"]),
    _col("Status", "string", DOCS["PersistentVolumeStatus.phase"]),
    _col("Claim", "string", DOCS["PersistentVolumeSpec.claimRef"]),
    _col("StorageClass", "string", "StorageClass of the pv"),
    _col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
    _col("Reason", "string", DOCS["PersistentVolumeStatus.reason"]),
    _age_col(),
    _wide("VolumeMode", DOCS["PersistentVolumeSpec.volumeMode"]),
)


def _storage_class_of(obj: dict) -> str:
    annotations = _get(obj, "metadata.annotations", {}) or {}
    if _BETA_STORAGE_CLASS_ANNOTATION in annotations:
        return annotations[_BETA_STORAGE_CLASS_ANNOTATION]
    return _get(obj, "spec.storageClassName", "") or ""


def _persistent_volume_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    claim_ref = spec.get("claimRef")
    claim = ""
    if claim_ref is not None:
        claim = f"{claim_ref.get('namespace', '')}/{claim_ref.get('name', '')}"
    phase = _get(obj, "status.phase", "")
    if _get(obj, "metadata.deletionTimestamp") is not None:
        phase = "Terminating"
    vac = spec.get("volumeAttributesClassName")
    return [_name(obj), _quantity((spec.get("capacity") or {}).get("storage")),
            _access_modes(spec.get("accessModes")),
            spec.get("persistentVolumeReclaimPolicy", ""), phase, claim,
            _storage_class_of(obj), "<unset>" if vac is None else vac,
            _get(obj, "status.reason", ""), _age(obj, now),
            spec.get("volumeMode") or "<unset>"]


PERSISTENT_VOLUME_CLAIM_COLUMNS = (
    _name_col(),
    _col("Status", "string", DOCS["PersistentVolumeClaimStatus.phase"]),
    _col("Volume", "string", DOCS["PersistentVolumeClaimSpec.volumeName"]),
    _col("Capacity", "string", DOCS["PersistentVolumeClaimStatus.capacity"]),
    _col("Access Modes", "string", DOCS["PersistentVolumeClaimStatus.accessModes"]),
    _col("StorageClass", "string", "StorageClass of the pvc"),
    _col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
    _age_col(),
    _wide("VolumeMode", DOCS["PersistentVolumeClaimSpec.volumeMode"]),
)


def _persistent_volume_claim_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    phase = status.get("phase", "")
    if _get(obj, "metadata.deletionTimestamp") is not None:
        phase = "Terminating"
    capacity = access_modes = ""
    if spec.get("volumeName"):
        access_modes = _access_modes(status.get("accessModes"))
        capacity = _quantity((status.get("capacity") or {}).get("storage"))
    vac = spec.get("volumeAttributesClassName")
    return [_name(obj), phase, spec.get("volumeName", ""), capacity, access_modes,
            _storage_class_of(obj), "<unset>" if vac is None else vac, _age(obj, now),
            spec.get("volumeMode") or "<unset>"]


STORAGE_CLASS_COLUMNS = (
    _name_col(),
    _col("Provisioner", "string", DOCS["StorageClass.provisioner"]),
    _col("ReclaimPolicy", "string", DOCS["StorageClass.reclaimPolicy"]),
    _col("VolumeBindingMode", "string", DOCS["StorageClass.volumeBindingMode"]),
    _col("AllowVolumeExpansion", "string", DOCS["StorageClass.allowVolumeExpansion"]),
    _age_col(),
)

_DEFAULT_STORAGE_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                                      "storageclass.beta.kubernetes.io/is-default-class")


def _storage_class_cells(obj: dict, now: datetime) -> list:
    annotations = _get(obj, "metadata.annotations", {}) or {}
    name = _name(obj)
    if any(annotations.get(a) == "true" for a in _DEFAULT_STORAGE_CLASS_ANNOTATIONS):
        name += " (default)"
    return [name, obj.get("provisioner", ""), obj.get("reclaimPolicy") or "Delete",
            obj.get("volumeBindingMode") or "Immediate",
            bool(obj.get("allowVolumeExpansion") or False), _age(obj, now)]


RESOURCE_QUOTA_COLUMNS = (
    _name_col(),
    _col("Request", "string", "Request represents a minimum amount of cpu/memory that a "
         "container may consume."),
    _col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container "
         "may use independent of contention on the node."),
    _age_col(),
)


def _resource_quota_cells(obj: dict, now: datetime) -> list:
    hard = _get(obj, "status.hard", {}) or {}
    used = _get(obj, "status.used", {}) or {}
    requests: list[str] = []
    limits: list[str] = []
    for resource in sorted(hard):
        pieces = resource.split(".")
        target = limits if len(pieces) > 1 and pieces[0] == "limits" else requests
        target.append(f"{resource}: {_quantity(used.get(resource))}/{_quantity(hard[resource])}")
    return [_name(obj), ", ".join(requests), ", ".join(limits), _age(obj, now)]


# --- policy, scheduling, coordination, autoscaling, rbac -------------------------------------

POD_DISRUPTION_BUDGET_COLUMNS = (
    _name_col(),
    _col("Min Available", "string", "The minimum number of pods that must be available."),
    _col("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
    _col("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at "
         "this time."),
    _age_col(),
)


def _pod_disruption_budget_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    min_available = spec.get("minAvailable")
    max_unavailable = spec.get("maxUnavailable")
    return [_name(obj), "N/A" if min_available is None else _int_or_string(min_available),
            "N/A" if max_unavailable is None else _int_or_string(max_unavailable),
            _int(_get(obj, "status.disruptionsAllowed")), _age(obj, now)]


PRIORITY_CLASS_COLUMNS = (
    _name_col(),
    _col("Value", "integer", DOCS["PriorityClass.value"]),
    _col("Global-Default", "boolean", DOCS["PriorityClass.globalDefault"]),
    _age_col(),
    _col("PreemptionPolicy", "string", DOCS["PriorityClass.preemptionPolicy"]),
)


def _priority_class_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), _int(obj.get("value")), bool(obj.get("globalDefault") or False),
            _age(obj, now), obj.get("preemptionPolicy") or ""]


LEASE_COLUMNS = (
    _name_col(),
    _col("Holder", "string", DOCS["LeaseSpec.holderIdentity"]),
    _age_col(),
)


def _lease_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), _get(obj, "spec.holderIdentity", "") or "", _age(obj, now)]


HORIZONTAL_POD_AUTOSCALER_COLUMNS = (
    _name_col(),
    _col("Reference", "string", DOCS["HorizontalPodAutoscalerSpec.scaleTargetRef"]),
    _col("Targets", "string", DOCS["HorizontalPodAutoscalerSpec.metrics"]),
    _col("MinPods", "string", DOCS["HorizontalPodAutoscalerSpec.minReplicas"]),
    _col("MaxPods", "string", DOCS["HorizontalPodAutoscalerSpec.maxReplicas"]),
    _col("Replicas", "string", DOCS["HorizontalPodAutoscalerStatus.currentReplicas"]),
    _age_col(),
)


def _hpa_metrics(obj: dict) -> tuple[list, list]:
    """Metric specs and statuses in the autoscaling/v2 shape (v1 objects are converted)."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if "metrics" in spec or "currentMetrics" in status \
            or "targetCPUUtilizationPercentage" not in spec:
        return spec.get("metrics") or [], status.get("currentMetrics") or []
    specs = [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization",
        "averageUtilization": spec["targetCPUUtilizationPercentage"]}}}]
    statuses = []
    if status.get("currentCPUUtilizationPercentage") is not None:
        statuses = [{"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": status["currentCPUUtilizationPercentage"]}}}]
    return specs, statuses


def format_hpa_metrics(specs: list, statuses: list) -> str:
    """`formatHPAMetrics`: e.g. "cpu: 40%/80%", at most two, then " + N more..."."""
    if not specs:
        return "<none>"
    items: list[str] = []
    max_ = 2

    def status_of(i: int, key: str) -> dict | None:
        if len(statuses) > i and statuses[i].get(key) is not None:
            return statuses[i][key]
        return None

    for i, spec in enumerate(specs):
        mtype = spec.get("type")
        if mtype == "External":
            target = _get(spec, "external.target", {}) or {}
            current = status_of(i, "external")
            if target.get("averageValue") is not None:
                cur = "<unknown>"
                if current is not None and _get(current, "current.averageValue") is not None:
                    cur = str(current["current"]["averageValue"])
                items.append(f"{cur}/{target['averageValue']} (avg)")
            else:
                cur = "<unknown>"
                if current is not None:
                    cur = _quantity(_get(current, "current.value"))
                items.append(f"{cur}/{_quantity(target.get('value'))}")
        elif mtype == "Pods":
            current = status_of(i, "pods")
            cur = "<unknown>"
            if current is not None:
                cur = _quantity(_get(current, "current.averageValue"))
            items.append(f"{cur}/{_quantity(_get(spec, 'pods.target.averageValue'))}")
        elif mtype == "Object":
            target = _get(spec, "object.target", {}) or {}
            current = status_of(i, "object")
            if target.get("averageValue") is not None:
                cur = "<unknown>"
                if current is not None and _get(current, "current.averageValue") is not None:
                    cur = str(current["current"]["averageValue"])
                items.append(f"{cur}/{target['averageValue']} (avg)")
            else:
                cur = "<unknown>"
                if current is not None:
                    cur = _quantity(_get(current, "current.value"))
                items.append(f"{cur}/{_quantity(target.get('value'))}")
        elif mtype in ("Resource", "ContainerResource"):
            key = "resource" if mtype == "Resource" else "containerResource"
            source = spec.get(key) or {}
            target = source.get("target") or {}
            current = status_of(i, key)
            name = source.get("name", "")
            if target.get("averageValue") is not None:
                cur = "<unknown>"
                if current is not None:
                    cur = _quantity(_get(current, "current.averageValue"))
                items.append(f"{name}: {cur}/{target['averageValue']}")
            else:
                cur = "<unknown>"
                if current is not None and \
                        _get(current, "current.averageUtilization") is not None:
                    cur = f"{_int(current['current']['averageUtilization'])}%"
                tgt = "<auto>"
                if target.get("averageUtilization") is not None:
                    tgt = f"{_int(target['averageUtilization'])}%"
                items.append(f"{name}: {cur}/{tgt}")
        else:
            items.append("<unknown type>")
    count = len(items)
    if count > max_:
        return f"{', '.join(items[:max_])} + {count - max_} more..."
    return ", ".join(items)


def _hpa_cells(obj: dict, now: datetime) -> list:
    spec = obj.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    specs, statuses = _hpa_metrics(obj)
    min_replicas = spec.get("minReplicas")
    return [_name(obj), f"{ref.get('kind', '')}/{ref.get('name', '')}",
            format_hpa_metrics(specs, statuses),
            "<unset>" if min_replicas is None else str(_int(min_replicas)),
            _int(spec.get("maxReplicas")), _int(_get(obj, "status.currentReplicas")),
            _age(obj, now)]


def _binding_columns(what: str) -> tuple[dict, ...]:
    return (
        _name_col(),
        _col("Role", "string", DOCS[f"{what}.roleRef"]),
        _age_col(),
        _wide("Users", f"Users in the {what[0].lower()}{what[1:]}"),
        _wide("Groups", f"Groups in the {what[0].lower()}{what[1:]}"),
        _wide("ServiceAccounts", f"ServiceAccounts in the {what[0].lower()}{what[1:]}"),
    )


ROLE_BINDING_COLUMNS = _binding_columns("RoleBinding")
CLUSTER_ROLE_BINDING_COLUMNS = _binding_columns("ClusterRoleBinding")


def _binding_cells(obj: dict, now: datetime) -> list:
    """`printRoleBinding` / `printClusterRoleBinding` with `rbac.SubjectsStrings`."""
    ref = obj.get("roleRef") or {}
    users: list[str] = []
    groups: list[str] = []
    service_accounts: list[str] = []
    for subject in obj.get("subjects") or []:
        kind = subject.get("kind")
        if kind == "ServiceAccount":
            service_accounts.append(f"{subject.get('namespace', '')}/{subject.get('name', '')}")
        elif kind == "User":
            users.append(subject.get("name", ""))
        elif kind == "Group":
            groups.append(subject.get("name", ""))
    return [_name(obj), f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(obj, now),
            ", ".join(users), ", ".join(groups), ", ".join(service_accounts)]


# --- default table (no printer registered) ---------------------------------------------------

DEFAULT_COLUMNS = (
    _name_col(),
    _col("Created At", "date", _CREATED_DOC),
)


def format_rfc3339(value: Any) -> str:
    """`metav1.Time.UTC().Format(time.RFC3339)`; Go's zero time for an unset timestamp."""
    t = parse_time(value)
    if t is None:
        return "0001-01-01T00:00:00Z"
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _default_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), format_rfc3339(_get(obj, "metadata.creationTimestamp"))]


DEFAULT_PRINTER = Printer(DEFAULT_COLUMNS, _default_cells)

# ---------------------------------------------------------------------------------------------
# Registry: (group, kind) -> printer. Kinds upstream serves with the default table convertor
# (LimitRange, Role, ClusterRole) are deliberately absent.
# ---------------------------------------------------------------------------------------------

PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "Pod"): Printer(POD_COLUMNS, _pod_cells, _pod_conditions),
    ("", "PodTemplate"): Printer(POD_TEMPLATE_COLUMNS, _pod_template_cells),
    ("", "ReplicationController"): Printer(REPLICATION_CONTROLLER_COLUMNS,
                                           _replication_controller_cells),
    ("", "Service"): Printer(SERVICE_COLUMNS, _service_cells),
    ("", "Endpoints"): Printer(ENDPOINTS_COLUMNS, _endpoints_cells),
    ("", "Node"): Printer(NODE_COLUMNS, _node_cells),
    ("", "Namespace"): Printer(NAMESPACE_COLUMNS, _namespace_cells),
    ("", "Event"): Printer(EVENT_COLUMNS, _event_cells),
    ("events.k8s.io", "Event"): Printer(EVENT_COLUMNS, _events_v1_cells),
    ("", "Secret"): Printer(SECRET_COLUMNS, _secret_cells),
    ("", "ConfigMap"): Printer(CONFIG_MAP_COLUMNS, _config_map_cells),
    ("", "ServiceAccount"): Printer(SERVICE_ACCOUNT_COLUMNS, _service_account_cells),
    ("", "PersistentVolume"): Printer(PERSISTENT_VOLUME_COLUMNS, _persistent_volume_cells),
    ("", "PersistentVolumeClaim"): Printer(PERSISTENT_VOLUME_CLAIM_COLUMNS,
                                           _persistent_volume_claim_cells),
    ("", "ResourceQuota"): Printer(RESOURCE_QUOTA_COLUMNS, _resource_quota_cells),
    ("apps", "Deployment"): Printer(DEPLOYMENT_COLUMNS, _deployment_cells),
    ("apps", "ReplicaSet"): Printer(REPLICA_SET_COLUMNS, _replica_set_cells),
    ("apps", "StatefulSet"): Printer(STATEFUL_SET_COLUMNS, _stateful_set_cells),
    ("apps", "DaemonSet"): Printer(DAEMON_SET_COLUMNS, _daemon_set_cells),
    ("apps", "ControllerRevision"): Printer(CONTROLLER_REVISION_COLUMNS,
                                            _controller_revision_cells),
    ("batch", "Job"): Printer(JOB_COLUMNS, _job_cells),
    ("batch", "CronJob"): Printer(CRON_JOB_COLUMNS, _cron_job_cells),
    ("autoscaling", "HorizontalPodAutoscaler"): Printer(HORIZONTAL_POD_AUTOSCALER_COLUMNS,
                                                        _hpa_cells),
    ("coordination.k8s.io", "Lease"): Printer(LEASE_COLUMNS, _lease_cells),
    ("discovery.k8s.io", "EndpointSlice"): Printer(ENDPOINT_SLICE_COLUMNS,
                                                   _endpoint_slice_cells),
    ("policy", "PodDisruptionBudget"): Printer(POD_DISRUPTION_BUDGET_COLUMNS,
                                               _pod_disruption_budget_cells),
    ("rbac.authorization.k8s.io", "RoleBinding"): Printer(ROLE_BINDING_COLUMNS, _binding_cells),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): Printer(CLUSTER_ROLE_BINDING_COLUMNS,
                                                                 _binding_cells),
    ("storage.k8s.io", "StorageClass"): Printer(STORAGE_CLASS_COLUMNS, _storage_class_cells),
    ("networking.k8s.io", "Ingress"): Printer(INGRESS_COLUMNS, _ingress_cells),
    ("networking.k8s.io", "IngressClass"): Printer(INGRESS_CLASS_COLUMNS, _ingress_class_cells),
    ("networking.k8s.io", "NetworkPolicy"): Printer(NETWORK_POLICY_COLUMNS,
                                                    _network_policy_cells),
    ("scheduling.k8s.io", "PriorityClass"): Printer(PRIORITY_CLASS_COLUMNS,
                                                    _priority_class_cells),
}


def register_printer(group: str, kind: str, columns: Iterable[dict], cells: CellsFunc,
                     conditions: ConditionsFunc | None = None) -> None:
    """Add (or replace) the printer of a kind, e.g. from a CRD's additionalPrinterColumns."""
    PRINTERS[(group, kind)] = Printer(tuple(columns), cells, conditions)


def printer_for(group: str, kind: str) -> Printer:
    return PRINTERS.get((group, kind), DEFAULT_PRINTER)


def has_printer(group: str, kind: str) -> bool:
    return (group, kind) in PRINTERS


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------

def column_definitions(group: str, kind: str) -> list[dict]:
    """All column definitions of a kind (priority 0 and the `-o wide` priority 1 ones)."""
    return [dict(c) for c in printer_for(group, kind).columns]


def row_cells(group: str, kind: str, obj: dict, now: datetime) -> list:
    """The cells of one object's row, one per column of `column_definitions`."""
    return printer_for(group, kind).cells(obj, now)


def validate_include_object(value: str | None) -> str | None:
    """None if valid, else upstream's message (the handler answers 400 BadRequest with it)."""
    if value in (None, "", *INCLUDE_OBJECT_VALUES):
        return None
    supported = ", ".join(f'"{v}"' for v in INCLUDE_OBJECT_VALUES)
    return (f'Unable to convert to Table as requested: includeObject: Unsupported value: '
            f'"{value}": supported values: {supported}')


def _row_object(obj: dict, include_object: str, table_version: str) -> dict | None:
    if include_object == "Object":
        return copy.deepcopy(obj)
    if include_object == "None":
        return None
    return {"kind": "PartialObjectMetadata", "apiVersion": f"{TABLE_GROUP}/{table_version}",
            "metadata": copy.deepcopy(obj.get("metadata") or {})}


def build_table(group: str, kind: str, objects: list[dict], *, now: datetime,
                include_object: str | None = "Metadata", resource_version: str = "",
                continue_token: str | None = None, remaining: int | None = None,
                with_columns: bool = True, table_version: str = "v1") -> dict:
    """A `meta.k8s.io/v1` Table for `objects` (a list, a single GET, or one watch event).

    `include_object` is the `includeObject` query parameter ("" or None mean Metadata); an
    unsupported value raises ValueError carrying upstream's BadRequest message.
    `with_columns=False` is the `noHeaders` form used for watch events after the first.
    """
    error = validate_include_object(include_object)
    if error is not None:
        raise ValueError(error)
    include_object = include_object or "Metadata"
    printer = printer_for(group, kind)

    metadata: dict[str, Any] = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    if remaining is not None:
        metadata["remainingItemCount"] = remaining

    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer.cells(obj, now)}
        if printer.conditions is not None:
            conditions = printer.conditions(obj)
            if conditions:
                row["conditions"] = conditions
        row["object"] = _row_object(obj, include_object, table_version)
        rows.append(row)

    return {
        "kind": "Table",
        "apiVersion": f"{TABLE_GROUP}/{table_version}",
        "metadata": metadata,
        "columnDefinitions": ([dict(c) for c in printer.columns] if with_columns else None),
        "rows": rows,
    }


# --- admissionregistration, certificates, node, apiregistration ---------------------------------
# (upstream's printers.go: webhook configurations, CSRs, RuntimeClasses; APIServices as the
# kube-aggregator prints them)

def _webhooks_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), len(obj.get("webhooks") or []), _age(obj, now)]


_WEBHOOK_COLUMNS = (
    _name_col(),
    _col("Webhooks", "integer", "Webhooks is a list of webhooks and the affected resources "
         "and operations."),
    _age_col(),
)


def _csr_condition(obj: dict) -> str:
    conds = [str(c.get("type")) for c in (_get(obj, "status.conditions") or [])
             if c.get("status", "True") == "True"]
    if not conds:
        return "Pending"
    if _get(obj, "status.certificate") and "Approved" in conds:
        conds.append("Issued")
    return ",".join(conds)


def _csr_cells(obj: dict, now: datetime) -> list:
    seconds = _get(obj, "spec.expirationSeconds")
    duration = human_duration(timedelta(seconds=int(seconds))) if seconds else "<none>"
    return [_name(obj), _age(obj, now), _get(obj, "spec.signerName", "") or "<none>",
            _get(obj, "spec.username", "") or "", duration, _csr_condition(obj)]


_CSR_COLUMNS = (
    _name_col(),
    _age_col(),
    _col("SignerName", "string", "Requested signer for the request."),
    _col("Requestor", "string", "Name of the user which created the request."),
    _col("RequestedDuration", "string", "Requested duration of the issued certificate."),
    _col("Condition", "string", "Conditions applied to the request."),
)


def _runtime_class_cells(obj: dict, now: datetime) -> list:
    return [_name(obj), obj.get("handler") or "", _age(obj, now)]


_RUNTIME_CLASS_COLUMNS = (
    _name_col(),
    _col("Handler", "string", "Handler specifies the underlying runtime and configuration "
         "that the CRI implementation will use to handle pods of this class."),
    _age_col(),
)


def _api_service_cells(obj: dict, now: datetime) -> list:
    svc = _get(obj, "spec.service")
    service = f"{svc.get('namespace')}/{svc.get('name')}" if isinstance(svc, dict) else "Local"
    available = "Unknown"
    for c in _get(obj, "status.conditions") or []:
        if c.get("type") == "Available":
            available = str(c.get("status"))
            if c.get("status") != "True" and c.get("reason"):
                available += f" ({c['reason']})"
    return [_name(obj), service, available, _age(obj, now)]


_API_SERVICE_COLUMNS = (
    _name_col(),
    _col("Service", "string", "The reference to the service that hosts this API endpoint."),
    _col("Available", "string", "Whether this service is available."),
    _age_col(),
)

register_printer("admissionregistration.k8s.io", "MutatingWebhookConfiguration",
                 _WEBHOOK_COLUMNS, _webhooks_cells)
register_printer("admissionregistration.k8s.io", "ValidatingWebhookConfiguration",
                 _WEBHOOK_COLUMNS, _webhooks_cells)
register_printer("certificates.k8s.io", "CertificateSigningRequest", _CSR_COLUMNS, _csr_cells)
register_printer("node.k8s.io", "RuntimeClass", _RUNTIME_CLASS_COLUMNS, _runtime_class_cells)
register_printer("apiregistration.k8s.io", "APIService", _API_SERVICE_COLUMNS,
                 _api_service_cells)
