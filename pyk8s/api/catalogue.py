"""The resource catalogue: which kinds the API serves, as data.

One `ResourceInfo` per (group, version, resource). Adding a kind is one entry here plus,
optionally, a strategy (registry) and printer columns (apiserver.tables). Custom resources
will register `ResourceInfo`s at run time through `Catalogue.add`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceInfo:
    group: str  # "" for core
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # e.g. ("status", "scale")
    verbs: tuple[str, ...] = ALL_VERBS
    # A dotted group here puts the keys under `/registry/<storage_group>/<plural>/`.
    storage_group: str | None = None

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def group_resource(self) -> str:
        """`deployments.apps`, or `pods` in the core group (as used in error messages)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage_prefix(self) -> str:
        """Storage key prefix: `/registry/<resource>/` for built-in groups (as upstream),
        `/registry/<group>/<resource>/` where `storage_group` names a dotted group (custom
        resources, and kinds that must not share a built-in prefix)."""
        if self.storage_group:
            return f"/registry/{self.storage_group}/{self.plural}/"
        return f"/registry/{self.plural}/"

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.storage_prefix}{namespace}/{name}"
        return f"{self.storage_prefix}{name}"

    def list_prefix(self, namespace: str | None) -> str:
        if self.namespaced and namespace:
            return f"{self.storage_prefix}{namespace}/"
        return self.storage_prefix


def _r(group: str, version: str, kind: str, plural: str, *, namespaced: bool = True,
       short: Iterable[str] = (), cats: Iterable[str] = (), sub: Iterable[str] = (),
       verbs: Iterable[str] = ALL_VERBS, storage_group: str | None = None) -> ResourceInfo:
    return ResourceInfo(group=group, version=version, kind=kind, plural=plural,
                        singular=kind.lower(), namespaced=namespaced, short_names=tuple(short),
                        categories=tuple(cats), subresources=tuple(sub), verbs=tuple(verbs),
                        storage_group=storage_group)


_NS_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")

BUILTIN: tuple[ResourceInfo, ...] = (
    # core/v1
    _r("", "v1", "Namespace", "namespaces", namespaced=False, short=["ns"],
       sub=["status", "finalize"], verbs=_NS_VERBS),
    _r("", "v1", "Pod", "pods", short=["po"], cats=["all"],
       sub=["status", "binding", "eviction", "log", "exec", "attach", "portforward"]),
    _r("", "v1", "Service", "services", short=["svc"], cats=["all"], sub=["status"],
       verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")),
    _r("", "v1", "Endpoints", "endpoints", short=["ep"]),
    _r("", "v1", "ConfigMap", "configmaps", short=["cm"]),
    _r("", "v1", "Secret", "secrets"),
    _r("", "v1", "Node", "nodes", namespaced=False, short=["no"], sub=["status", "proxy"]),
    _r("", "v1", "Event", "events", short=["ev"]),
    _r("", "v1", "ServiceAccount", "serviceaccounts", short=["sa"], sub=["token"]),
    _r("", "v1", "PersistentVolume", "persistentvolumes", namespaced=False, short=["pv"],
       sub=["status"]),
    _r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short=["pvc"],
       sub=["status"]),
    _r("", "v1", "ReplicationController", "replicationcontrollers", short=["rc"],
       cats=["all"], sub=["status", "scale"]),
    _r("", "v1", "ResourceQuota", "resourcequotas", short=["quota"], sub=["status"]),
    _r("", "v1", "LimitRange", "limitranges", short=["limits"]),
    _r("", "v1", "PodTemplate", "podtemplates"),
    # apps/v1
    _r("apps", "v1", "Deployment", "deployments", short=["deploy"], cats=["all"],
       sub=["status", "scale"]),
    _r("apps", "v1", "ReplicaSet", "replicasets", short=["rs"], cats=["all"],
       sub=["status", "scale"]),
    _r("apps", "v1", "StatefulSet", "statefulsets", short=["sts"], cats=["all"],
       sub=["status", "scale"]),
    _r("apps", "v1", "DaemonSet", "daemonsets", short=["ds"], cats=["all"], sub=["status"]),
    _r("apps", "v1", "ControllerRevision", "controllerrevisions"),
    # batch/v1
    _r("batch", "v1", "Job", "jobs", cats=["all"], sub=["status"]),
    _r("batch", "v1", "CronJob", "cronjobs", short=["cj"], cats=["all"], sub=["status"]),
    # autoscaling v2 (preferred) and v1 share storage
    _r("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
       short=["hpa"], cats=["all"], sub=["status"]),
    _r("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
       short=["hpa"], cats=["all"], sub=["status"]),
    # coordination, discovery, events
    _r("coordination.k8s.io", "v1", "Lease", "leases"),
    _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    _r("events.k8s.io", "v1", "Event", "events", short=["ev"]),  # stored as core v1 Events
    # policy
    _r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short=["pdb"],
       sub=["status"]),
    # rbac
    _r("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
       namespaced=False),
    # storage
    _r("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False,
       short=["sc"]),
    # networking
    _r("networking.k8s.io", "v1", "Ingress", "ingresses", short=["ing"], sub=["status"]),
    _r("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False),
    _r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short=["netpol"]),
    # authentication / authorization: computed answers, never stored
    _r("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", namespaced=False,
       verbs=["create"]),
    _r("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews",
       namespaced=False, verbs=["create"]),
    _r("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
       namespaced=False, verbs=["create"]),
    _r("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
       namespaced=False, verbs=["create"]),
    _r("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews",
       namespaced=False, verbs=["create"]),
    _r("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews",
       verbs=["create"]),
    # scheduling
    _r("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", namespaced=False,
       short=["pc"]),
    # admission and the kinds served alongside it
    _r("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
       "mutatingwebhookconfigurations", namespaced=False, cats=["api-extensions"]),
    _r("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
       "validatingwebhookconfigurations", namespaced=False, cats=["api-extensions"]),
    _r("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests",
       namespaced=False, short=["csr"], sub=["status", "approval"]),
    _r("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", namespaced=False),
    _r("apiregistration.k8s.io", "v1", "APIService", "apiservices", namespaced=False,
       cats=["api-extensions"], sub=["status"], storage_group="apiregistration.k8s.io"),
    # apiextensions (served in-process, as upstream's apiextensions-apiserver)
    _r("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
       namespaced=False, short=["crd", "crds"], cats=["api-extensions"], sub=["status"],
       storage_group="apiextensions.k8s.io"),
)

# Group versions in the order discovery lists them; the first version of a group is preferred.
GROUP_ORDER: tuple[str, ...] = (
    "", "apps", "events.k8s.io", "autoscaling", "batch", "policy",
    "rbac.authorization.k8s.io", "storage.k8s.io", "networking.k8s.io", "scheduling.k8s.io",
    "coordination.k8s.io", "discovery.k8s.io", "authentication.k8s.io", "authorization.k8s.io",
    "apiextensions.k8s.io", "admissionregistration.k8s.io", "certificates.k8s.io",
    "node.k8s.io", "apiregistration.k8s.io",
)


@dataclass
class Catalogue:
    resources: list[ResourceInfo] = field(default_factory=lambda: list(BUILTIN))

    def add(self, info: ResourceInfo) -> None:
        self.resources.append(info)

    def remove(self, info: ResourceInfo) -> None:
        self.resources = [r for r in self.resources if r != info]

    def lookup(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        for r in self.resources:
            if r.group == group and r.version == version and r.plural == plural:
                return r
        return None

    def by_kind(self, group: str, version: str, kind: str) -> ResourceInfo | None:
        for r in self.resources:
            if r.group == group and r.version == version and r.kind == kind:
                return r
        return None

    def groups(self) -> list[str]:
        seen: list[str] = []
        for g in GROUP_ORDER:
            if any(r.group == g for r in self.resources):
                seen.append(g)
        for r in self.resources:
            if r.group not in seen:
                seen.append(r.group)
        return seen

    def versions(self, group: str) -> list[str]:
        out: list[str] = []
        for r in self.resources:
            if r.group == group and r.version not in out:
                out.append(r.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceInfo]:
        return [r for r in self.resources if r.group == group and r.version == version]
