"""The RBAC bootstrap policy: the ClusterRoles, ClusterRoleBindings, Roles and RoleBindings
every API server ensures at start (upstream 1.32's plugin/pkg/auth/authorizer/rbac/
bootstrappolicy: policy.go, controller_policy.go, namespace_policy.go, with the default
feature gates; its testdata/*.yaml are the result this module reproduces).

Pure data built by small helpers, as upstream's rule and binding builders: `rule` sorts its
lists as `RuleOrDie` does, every object carries the label `kubernetes.io/bootstrapping:
rbac-defaults` and the annotation `rbac.authorization.kubernetes.io/autoupdate: "true"`.
Every function returns fresh dicts (callers may change them).

Feature-gated parts of upstream's policy whose gates are off by default in 1.32 are left
out (DynamicResourceAllocation, MultiCIDRServiceAllocator, SELinuxChangePolicy,
VolumeAttributesClass, StorageVersionMigrator, StorageVersionAPI, ClusterTrustBundle,
KubeletFineGrainedAuthz), as in upstream's testdata.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

Obj = dict[str, Any]

API_VERSION = "rbac.authorization.k8s.io/v1"
RBAC_GROUP = "rbac.authorization.k8s.io"
BOOTSTRAP_LABEL = "kubernetes.io/bootstrapping"
AUTOUPDATE_ANNOTATION = "rbac.authorization.kubernetes.io/autoupdate"
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"
CONTROLLER_ROLE_PREFIX = "system:controller:"

# Verb sets (upstream's Read, ReadWrite, Write, ReadUpdate).
READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection")
READ_WRITE = READ + WRITE
READ_UPDATE = READ + ("update", "patch")

# API groups.
LEGACY = ""
APPS = "apps"
AUTHN = "authentication.k8s.io"
AUTHZ = "authorization.k8s.io"
AUTOSCALING = "autoscaling"
BATCH = "batch"
CERTIFICATES = "certificates.k8s.io"
COORDINATION = "coordination.k8s.io"
DISCOVERY = "discovery.k8s.io"
EXTENSIONS = "extensions"
POLICY = "policy"
STORAGE = "storage.k8s.io"
NETWORKING = "networking.k8s.io"
EVENTS = "events.k8s.io"
ADMISSION_REGISTRATION = "admissionregistration.k8s.io"
NODE = "node.k8s.io"
RESOURCE_METRICS = "metrics.k8s.io"
CUSTOM_METRICS = "custom.metrics.k8s.io"
EXTERNAL_METRICS = "external.metrics.k8s.io"

# Well-known users and groups (k8s.io/apiserver/pkg/authentication/user).
SYSTEM_MASTERS = "system:masters"
MONITORING_GROUP = "system:monitoring"
NODES_GROUP = "system:nodes"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"
KUBE_PROXY = "system:kube-proxy"
KUBE_CONTROLLER_MANAGER = "system:kube-controller-manager"
KUBE_SCHEDULER = "system:kube-scheduler"
NETWORK_POLICY_ROLE = "system:pyk8s:network-policy"

# Certificate signers (k8s.io/api/certificates/v1).
KUBE_APISERVER_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
KUBE_APISERVER_CLIENT_KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN_SIGNER = "kubernetes.io/legacy-unknown"

# The ConfigMap kube-apiserver tracks legacy service-account token use in.
LEGACY_TOKEN_TRACKING_CONFIGMAP = "kube-apiserver-legacy-service-account-token-tracking"


# -- builders ---------------------------------------------------------------------------------
def rule(verbs: Iterable[str], groups: Iterable[str], resources: Iterable[str],
         names: Iterable[str] = ()) -> Obj:
    """A resource PolicyRule, its lists sorted (upstream's NewRule(...).RuleOrDie())."""
    out: Obj = {"verbs": sorted(verbs), "apiGroups": sorted(groups),
                "resources": sorted(resources)}
    if names:
        out["resourceNames"] = sorted(names)
    return out


def url_rule(verbs: Iterable[str], urls: Iterable[str]) -> Obj:
    """A non-resource PolicyRule (upstream's NewRule(...).URLs(...).RuleOrDie())."""
    return {"verbs": sorted(verbs), "nonResourceURLs": sorted(urls)}


def events_rule() -> Obj:
    """create / update / patch of core and events.k8s.io Events."""
    return rule(("create", "update", "patch"), (LEGACY, EVENTS), ("events",))


def _metadata(name: str, namespace: str = "", labels: dict[str, str] | None = None) -> Obj:
    md: Obj = {"name": name,
               "labels": {BOOTSTRAP_LABEL: "rbac-defaults", **(labels or {})},
               "annotations": {AUTOUPDATE_ANNOTATION: "true"}}
    if namespace:
        md["namespace"] = namespace
    return md


def _aggregate_label(to: str) -> dict[str, str]:
    return {AGGREGATE_TO + to: "true"}


def cluster_role(name: str, rules: list[Obj], *, labels: dict[str, str] | None = None,
                 aggregate_from: str = "") -> Obj:
    """A ClusterRole; `aggregate_from` ("admin", "edit", "view") gives it the aggregationRule
    selecting ClusterRoles labelled `rbac.authorization.k8s.io/aggregate-to-<that>`."""
    out: Obj = {"apiVersion": API_VERSION, "kind": "ClusterRole",
                "metadata": _metadata(name, labels=labels), "rules": rules}
    if aggregate_from:
        out["aggregationRule"] = {
            "clusterRoleSelectors": [{"matchLabels": _aggregate_label(aggregate_from)}]}
    return out


def role(namespace: str, name: str, rules: list[Obj]) -> Obj:
    return {"apiVersion": API_VERSION, "kind": "Role",
            "metadata": _metadata(name, namespace), "rules": rules}


def user(name: str) -> Obj:
    return {"kind": "User", "apiGroup": RBAC_GROUP, "name": name}


def group(name: str) -> Obj:
    return {"kind": "Group", "apiGroup": RBAC_GROUP, "name": name}


def service_account(namespace: str, name: str) -> Obj:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def cluster_role_binding(role_name: str, subjects: list[Obj], *, name: str = "") -> Obj:
    """A ClusterRoleBinding of ClusterRole `role_name`, named after it unless `name`."""
    return {"apiVersion": API_VERSION, "kind": "ClusterRoleBinding",
            "metadata": _metadata(name or role_name),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role_name},
            "subjects": subjects}


def role_binding(namespace: str, role_name: str, subjects: list[Obj], *, name: str = "",
                 role_kind: str = "Role") -> Obj:
    return {"apiVersion": API_VERSION, "kind": "RoleBinding",
            "metadata": _metadata(name or role_name, namespace),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": role_kind, "name": role_name},
            "subjects": subjects}


# -- policy.go --------------------------------------------------------------------------------
def node_rules() -> list[Obj]:
    """What kubelets need (the Node authorizer and NodeRestriction narrow it per node)."""
    return [
        # API access checks; these creates do not mutate anything.
        rule(("create",), (AUTHN,), ("tokenreviews",)),
        rule(("create",), (AUTHZ,), ("subjectaccessreviews", "localsubjectaccessreviews")),
        # The service lister behind the pods' service environment variables.
        rule(READ, (LEGACY,), ("services",)),
        # Registering and reporting on its own Node.
        rule(("create", "get", "list", "watch"), (LEGACY,), ("nodes",)),
        rule(("update", "patch"), (LEGACY,), ("nodes/status",)),
        rule(("update", "patch"), (LEGACY,), ("nodes",)),
        rule(("create", "update", "patch"), (LEGACY,), ("events",)),
        rule(READ, (LEGACY,), ("pods",)),
        # Mirror pods, pod status, evictions.
        rule(("create", "delete"), (LEGACY,), ("pods",)),
        rule(("update", "patch"), (LEGACY,), ("pods/status",)),
        rule(("create",), (LEGACY,), ("pods/eviction",)),
        # Secrets and config maps of its pods' volumes and environment.
        rule(("get", "list", "watch"), (LEGACY,), ("secrets", "configmaps")),
        rule(("get",), (LEGACY,), ("persistentvolumeclaims", "persistentvolumes")),
        rule(("get",), (LEGACY,), ("endpoints",)),
        # Client certificate rotation.
        rule(("create", "get", "list", "watch"), (CERTIFICATES,),
             ("certificatesigningrequests",)),
        rule(("get", "create", "update", "patch", "delete"), (COORDINATION,), ("leases",)),
        rule(("get",), (STORAGE,), ("volumeattachments",)),
        rule(("create",), (LEGACY,), ("serviceaccounts/token",)),
        rule(("get", "update", "patch"), (LEGACY,), ("persistentvolumeclaims/status",)),
        rule(("get", "watch", "list"), (STORAGE,), ("csidrivers",)),
        rule(("get", "create", "update", "patch", "delete"), (STORAGE,), ("csinodes",)),
        rule(READ, (NODE,), ("runtimeclasses",)),
    ]


def _aggregate_to_edit_rules() -> list[Obj]:
    return [
        # Reading the escalating resources.
        rule(READ, (LEGACY,), ("pods/attach", "pods/proxy", "pods/exec", "pods/portforward",
                               "secrets", "services/proxy")),
        rule(("impersonate",), (LEGACY,), ("serviceaccounts",)),
        rule(WRITE, (LEGACY,), ("pods", "pods/attach", "pods/proxy", "pods/exec",
                                "pods/portforward")),
        rule(("create",), (LEGACY,), ("pods/eviction",)),
        rule(WRITE, (LEGACY,), ("replicationcontrollers", "replicationcontrollers/scale",
                                "serviceaccounts", "services", "services/proxy",
                                "persistentvolumeclaims", "configmaps", "secrets", "events")),
        rule(("create",), (LEGACY,), ("serviceaccounts/token",)),
        rule(WRITE, (APPS,), ("statefulsets", "statefulsets/scale", "daemonsets",
                              "deployments", "deployments/scale", "deployments/rollback",
                              "replicasets", "replicasets/scale")),
        rule(WRITE, (AUTOSCALING,), ("horizontalpodautoscalers",)),
        rule(WRITE, (BATCH,), ("jobs", "cronjobs")),
        rule(WRITE, (EXTENSIONS,), ("daemonsets", "deployments", "deployments/scale",
                                    "deployments/rollback", "ingresses", "replicasets",
                                    "replicasets/scale", "replicationcontrollers/scale",
                                    "networkpolicies")),
        rule(WRITE, (POLICY,), ("poddisruptionbudgets",)),
        rule(WRITE, (NETWORKING,), ("networkpolicies", "ingresses")),
        rule(READ_WRITE, (COORDINATION,), ("leases",)),
    ]


def _aggregate_to_view_rules() -> list[Obj]:
    # Read-only access to the non-escalating resources of a namespace: no secrets.
    return [
        rule(READ, (LEGACY,), ("pods", "replicationcontrollers",
                               "replicationcontrollers/scale", "serviceaccounts", "services",
                               "services/status", "endpoints", "persistentvolumeclaims",
                               "persistentvolumeclaims/status", "configmaps")),
        rule(READ, (LEGACY,), ("limitranges", "resourcequotas", "bindings", "events",
                               "pods/status", "resourcequotas/status", "namespaces/status",
                               "replicationcontrollers/status", "pods/log")),
        # Reading namespaces in a namespace tells which namespaces one has access to.
        rule(READ, (LEGACY,), ("namespaces",)),
        rule(READ, (DISCOVERY,), ("endpointslices",)),
        rule(READ, (APPS,), ("controllerrevisions", "statefulsets", "statefulsets/status",
                             "statefulsets/scale", "daemonsets", "daemonsets/status",
                             "deployments", "deployments/status", "deployments/scale",
                             "replicasets", "replicasets/status", "replicasets/scale")),
        rule(READ, (AUTOSCALING,), ("horizontalpodautoscalers",
                                    "horizontalpodautoscalers/status")),
        rule(READ, (BATCH,), ("jobs", "cronjobs", "cronjobs/status", "jobs/status")),
        rule(READ, (EXTENSIONS,), ("daemonsets", "daemonsets/status", "deployments",
                                   "deployments/scale", "deployments/status", "ingresses",
                                   "ingresses/status", "replicasets", "replicasets/scale",
                                   "replicasets/status", "replicationcontrollers/scale",
                                   "networkpolicies")),
        rule(READ, (POLICY,), ("poddisruptionbudgets", "poddisruptionbudgets/status")),
        rule(READ, (NETWORKING,), ("ingresses", "ingresses/status", "networkpolicies")),
    ]


def _kube_scheduler_rules() -> list[Obj]:
    return [
        events_rule(),
        rule(("create",), (COORDINATION,), ("leases",)),
        rule(("get", "update"), (COORDINATION,), ("leases",), names=("kube-scheduler",)),
        rule(READ, (LEGACY,), ("nodes",)),
        rule(READ + ("delete",), (LEGACY,), ("pods",)),
        rule(("create",), (LEGACY,), ("pods/binding", "bindings")),
        rule(("patch", "update"), (LEGACY,), ("pods/status",)),
        rule(READ, (LEGACY,), ("replicationcontrollers", "services")),
        rule(READ, (APPS, EXTENSIONS), ("replicasets",)),
        rule(READ, (APPS,), ("statefulsets",)),
        rule(READ, (POLICY,), ("poddisruptionbudgets",)),
        rule(READ, (LEGACY,), ("persistentvolumeclaims", "persistentvolumes")),
        # Delegated authentication and authorization of its own endpoints.
        rule(("create",), (AUTHN,), ("tokenreviews",)),
        rule(("create",), (AUTHZ,), ("subjectaccessreviews",)),
        rule(READ, (STORAGE,), ("csinodes",)),
        rule(READ, (LEGACY,), ("namespaces",)),
        rule(READ, (STORAGE,), ("csidrivers",)),
        rule(READ, (STORAGE,), ("csistoragecapacities",)),
    ]


def _csr_role(name: str, subresource: str) -> Obj:
    return cluster_role(name, [rule(("create",), (CERTIFICATES,),
                                    (f"certificatesigningrequests/{subresource}",))])


def _approver_role(name: str, signer: str) -> Obj:
    return cluster_role(name, [rule(("approve",), (CERTIFICATES,), ("signers",),
                                    names=(signer,))])


def base_cluster_roles() -> list[Obj]:
    """Upstream's ClusterRoles(): every bootstrap ClusterRole but the controllers' ones."""
    return [
        # A "root" role which can do absolutely anything.
        cluster_role("cluster-admin", [rule(("*",), ("*",), ("*",)),
                                       url_rule(("*",), ("*",))]),
        # Just enough to discover API versions for negotiation, and the health checks.
        cluster_role("system:discovery", [url_rule(("get",), (
            "/livez", "/readyz", "/healthz", "/version", "/version/",
            "/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*"))]),
        cluster_role("system:monitoring", [url_rule(("get",), (
            "/metrics", "/metrics/slis", "/livez", "/readyz", "/healthz",
            "/livez/*", "/readyz/*", "/healthz/*"))]),
        # What a user needs to learn about themselves.
        cluster_role("system:basic-user", [
            rule(("create",), (AUTHZ,), ("selfsubjectaccessreviews", "selfsubjectrulesreviews")),
            rule(("create",), (AUTHN,), ("selfsubjectreviews",)),
        ]),
        cluster_role("system:public-info-viewer", [url_rule(("get",), (
            "/livez", "/readyz", "/healthz", "/version", "/version/"))]),
        # The user-facing roles: their rules are aggregated from the aggregate-to-* roles
        # (and any ClusterRole labelled for them) by the aggregation controller.
        cluster_role("admin", [], aggregate_from="admin"),
        cluster_role("edit", [], labels=_aggregate_label("admin"), aggregate_from="edit"),
        cluster_role("view", [], labels=_aggregate_label("edit"), aggregate_from="view"),
        cluster_role("system:aggregate-to-admin", [
            rule(("create",), (AUTHZ,), ("localsubjectaccessreviews",)),
            rule(READ_WRITE, (RBAC_GROUP,), ("roles", "rolebindings")),
        ], labels=_aggregate_label("admin")),
        cluster_role("system:aggregate-to-edit", _aggregate_to_edit_rules(),
                     labels=_aggregate_label("edit")),
        cluster_role("system:aggregate-to-view", _aggregate_to_view_rules(),
                     labels=_aggregate_label("view")),
        cluster_role("system:heapster", [
            rule(READ, (LEGACY,), ("events", "pods", "nodes", "namespaces")),
            rule(READ, (EXTENSIONS,), ("deployments",)),
        ]),
        cluster_role("system:node", node_rules()),
        # kube-proxy.
        cluster_role("system:node-proxier", [
            rule(("list", "watch"), (LEGACY,), ("services", "endpoints")),
            rule(READ, (LEGACY,), ("nodes",)),
            events_rule(),
            rule(("list", "watch"), (DISCOVERY,), ("endpointslices",)),
        ]),
        cluster_role("system:node-problem-detector", [
            rule(("get",), (LEGACY,), ("nodes",)),
            rule(("patch",), (LEGACY,), ("nodes/status",)),
            events_rule(),
        ]),
        # Full access to the kubelet API.
        cluster_role("system:kubelet-api-admin", [
            rule(READ, (LEGACY,), ("nodes",)),
            rule(("proxy",), (LEGACY,), ("nodes",)),
            rule(("*",), (LEGACY,), ("nodes/proxy", "nodes/metrics", "nodes/stats",
                                     "nodes/log")),
        ]),
        # What a kubelet needs to get its client certificate.
        cluster_role("system:node-bootstrapper", [
            rule(("create", "get", "list", "watch"), (CERTIFICATES,),
                 ("certificatesigningrequests",)),
        ]),
        # Delegated authentication and authorization (extension API servers).
        cluster_role("system:auth-delegator", [
            rule(("create",), (AUTHN,), ("tokenreviews",)),
            rule(("create",), (AUTHZ,), ("subjectaccessreviews",)),
        ]),
        cluster_role("system:kube-aggregator", [
            rule(READ, (LEGACY,), ("services", "endpoints")),
        ]),
        # kube-controller-manager itself (its controllers have roles of their own).
        cluster_role("system:kube-controller-manager", [
            events_rule(),
            rule(("create",), (COORDINATION,), ("leases",)),
            rule(("get", "update"), (COORDINATION,), ("leases",),
                 names=("kube-controller-manager",)),
            rule(("create",), (LEGACY,), ("secrets", "serviceaccounts")),
            rule(("delete",), (LEGACY,), ("secrets",)),
            rule(("get",), (LEGACY,), ("namespaces", "secrets", "serviceaccounts",
                                       "configmaps")),
            rule(("update",), (LEGACY,), ("secrets", "serviceaccounts")),
            rule(("create",), (AUTHN,), ("tokenreviews",)),
            rule(("create",), (AUTHZ,), ("subjectaccessreviews",)),
            rule(("list", "watch"), ("*",), ("*",)),
            rule(("create",), (LEGACY,), ("serviceaccounts/token",)),
        ]),
        cluster_role("system:kube-dns", [
            rule(("list", "watch"), (LEGACY,), ("endpoints", "services")),
        ]),
        cluster_role("system:persistent-volume-provisioner", [
            rule(("get", "list", "watch", "create", "delete"), (LEGACY,),
                 ("persistentvolumes",)),
            # update: adding annotations to claims.
            rule(("get", "list", "watch", "update"), (LEGACY,), ("persistentvolumeclaims",)),
            rule(READ, (STORAGE,), ("storageclasses",)),
            rule(("watch",), (LEGACY,), ("events",)),
            events_rule(),
        ]),
        _csr_role("system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                  "nodeclient"),
        _csr_role("system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                  "selfnodeclient"),
        cluster_role("system:volume-scheduler", [
            rule(READ_UPDATE, (LEGACY,), ("persistentvolumes",)),
            rule(READ, (STORAGE,), ("storageclasses",)),
            rule(READ_UPDATE, (LEGACY,), ("persistentvolumeclaims",)),
        ]),
        _approver_role("system:certificates.k8s.io:legacy-unknown-approver",
                       LEGACY_UNKNOWN_SIGNER),
        _approver_role("system:certificates.k8s.io:kubelet-serving-approver",
                       KUBELET_SERVING_SIGNER),
        _approver_role("system:certificates.k8s.io:kube-apiserver-client-approver",
                       KUBE_APISERVER_CLIENT_SIGNER),
        _approver_role("system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
                       KUBE_APISERVER_CLIENT_KUBELET_SIGNER),
        cluster_role("system:service-account-issuer-discovery", [
            url_rule(("get",), ("/.well-known/openid-configuration", "/openid/v1/jwks")),
        ]),
        cluster_role("system:kube-scheduler", _kube_scheduler_rules()),
    ]


def base_cluster_role_bindings() -> list[Obj]:
    """Upstream's ClusterRoleBindings()."""
    return [
        cluster_role_binding("cluster-admin", [group(SYSTEM_MASTERS)]),
        cluster_role_binding("system:monitoring", [group(MONITORING_GROUP)]),
        cluster_role_binding("system:discovery", [group(AUTHENTICATED)]),
        cluster_role_binding("system:basic-user", [group(AUTHENTICATED)]),
        cluster_role_binding("system:public-info-viewer",
                             [group(AUTHENTICATED), group(UNAUTHENTICATED)]),
        cluster_role_binding("system:node-proxier", [user(KUBE_PROXY)]),
        cluster_role_binding("system:kube-controller-manager", [user(KUBE_CONTROLLER_MANAGER)]),
        cluster_role_binding("system:kube-dns", [service_account("kube-system", "kube-dns")]),
        cluster_role_binding("system:kube-scheduler", [user(KUBE_SCHEDULER)]),
        cluster_role_binding("system:volume-scheduler", [user(KUBE_SCHEDULER)]),
        # Deprecated since the Node authorizer (1.7): kept with no subjects.
        cluster_role_binding("system:node", []),
        # Every in-cluster workload may read the service-account issuer's OIDC discovery.
        cluster_role_binding("system:service-account-issuer-discovery",
                             [group(SERVICE_ACCOUNTS_GROUP)]),
    ]


# -- controller_policy.go ---------------------------------------------------------------------
def _controller(name: str, *rules: Obj) -> Obj:
    return cluster_role(CONTROLLER_ROLE_PREFIX + name, list(rules))


def controller_roles() -> list[Obj]:
    """Upstream's ControllerRoles(): one ClusterRole per kube-controller-manager controller
    identity (`system:controller:<name>`, bound to the ServiceAccount kube-system/<name>)."""
    return [
        _controller(
            "attachdetach-controller",
            rule(("list", "watch"), (LEGACY,), ("persistentvolumes", "persistentvolumeclaims")),
            rule(READ, (LEGACY,), ("nodes",)),
            rule(("patch", "update"), (LEGACY,), ("nodes/status",)),
            rule(("list", "watch"), (LEGACY,), ("pods",)),
            events_rule(),
            rule(("get", "create", "delete", "list", "watch"), (STORAGE,),
                 ("volumeattachments",)),
            rule(READ, (STORAGE,), ("csidrivers",)),
            rule(READ, (STORAGE,), ("csinodes",))),
        # It must be able to write any ClusterRole's rules.
        _controller(
            "clusterrole-aggregation-controller",
            rule(("escalate", "get", "list", "watch", "update", "patch"), (RBAC_GROUP,),
                 ("clusterroles",))),
        _controller(
            "cronjob-controller",
            rule(READ + ("update",), (BATCH,), ("cronjobs",)),
            rule(READ + ("create", "update", "delete", "patch"), (BATCH,), ("jobs",)),
            rule(("update",), (BATCH,), ("cronjobs/status",)),
            rule(("update",), (BATCH,), ("cronjobs/finalizers",)),
            rule(("list", "watch", "delete"), (LEGACY,), ("pods",)),
            events_rule()),
        _controller(
            "daemon-set-controller",
            rule(READ, (EXTENSIONS, APPS), ("daemonsets",)),
            rule(("update",), (EXTENSIONS, APPS), ("daemonsets/status",)),
            rule(("update",), (EXTENSIONS, APPS), ("daemonsets/finalizers",)),
            rule(("list", "watch"), (LEGACY,), ("nodes",)),
            rule(("list", "watch", "create", "delete", "patch"), (LEGACY,), ("pods",)),
            rule(("create",), (LEGACY,), ("pods/binding",)),
            rule(READ + ("create", "delete", "update", "patch"), (APPS,),
                 ("controllerrevisions",)),
            events_rule()),
        _controller(
            "deployment-controller",
            rule(READ + ("update",), (EXTENSIONS, APPS), ("deployments",)),
            rule(("update",), (EXTENSIONS, APPS), ("deployments/status",)),
            rule(("update",), (EXTENSIONS, APPS), ("deployments/finalizers",)),
            rule(READ + ("create", "update", "patch", "delete"), (APPS, EXTENSIONS),
                 ("replicasets",)),
            rule(READ + ("update",), (LEGACY,), ("pods",)),
            events_rule()),
        _controller(
            "disruption-controller",
            rule(READ, (EXTENSIONS, APPS), ("deployments",)),
            rule(READ, (APPS, EXTENSIONS), ("replicasets",)),
            rule(READ, (LEGACY,), ("replicationcontrollers",)),
            rule(READ, (POLICY,), ("poddisruptionbudgets",)),
            rule(READ, (APPS,), ("statefulsets",)),
            rule(("update",), (POLICY,), ("poddisruptionbudgets/status",)),
            rule(("patch", "update"), (LEGACY,), ("pods/status",)),
            rule(("get",), ("*",), ("*/scale",)),
            events_rule()),
        _controller(
            "endpoint-controller",
            rule(READ, (LEGACY,), ("services", "pods")),
            rule(READ + ("create", "update", "delete"), (LEGACY,), ("endpoints",)),
            rule(("create",), (LEGACY,), ("endpoints/restricted",)),
            events_rule()),
        _controller(
            "endpointslice-controller",
            rule(READ, (LEGACY,), ("services", "pods", "nodes")),
            # Owner references with blockOwnerDeletion need the Service's finalizers.
            rule(("update",), (LEGACY,), ("services/finalizers",)),
            rule(READ + ("create", "update", "delete"), (DISCOVERY,), ("endpointslices",)),
            events_rule()),
        _controller(
            "endpointslicemirroring-controller",
            rule(READ, (LEGACY,), ("services", "endpoints")),
            rule(("update",), (LEGACY,), ("services/finalizers",)),
            rule(("update",), (LEGACY,), ("endpoints/finalizers",)),
            rule(READ + ("create", "update", "delete"), (DISCOVERY,), ("endpointslices",)),
            events_rule()),
        _controller(
            "expand-controller",
            rule(READ + ("update", "patch"), (LEGACY,), ("persistentvolumes",)),
            rule(("update", "patch"), (LEGACY,), ("persistentvolumeclaims/status",)),
            rule(READ, (LEGACY,), ("persistentvolumeclaims",)),
            events_rule(),
            # The portworx volume plugin.
            rule(("get",), (LEGACY,), ("services",))),
        _controller(
            "ephemeral-volume-controller",
            rule(READ, (LEGACY,), ("pods",)),
            rule(("update",), (LEGACY,), ("pods/finalizers",)),
            rule(READ + ("create",), (LEGACY,), ("persistentvolumeclaims",)),
            events_rule()),
        # List / watch, selective gets and updates of anything.
        _controller(
            "generic-garbage-collector",
            rule(READ + ("patch", "update", "delete"), ("*",), ("*",)),
            events_rule()),
        _controller(
            "horizontal-pod-autoscaler",
            rule(READ, (AUTOSCALING,), ("horizontalpodautoscalers",)),
            rule(("update",), (AUTOSCALING,), ("horizontalpodautoscalers/status",)),
            rule(("get", "update"), ("*",), ("*/scale",)),
            rule(("list", "watch"), (LEGACY,), ("pods",)),
            # Resource, custom and external metrics.
            rule(("list", "watch"), (RESOURCE_METRICS,), ("pods",)),
            rule(READ, (CUSTOM_METRICS,), ("*",)),
            rule(READ, (EXTERNAL_METRICS,), ("*",)),
            events_rule()),
        _controller(
            "job-controller",
            rule(READ + ("update", "patch"), (BATCH,), ("jobs",)),
            rule(("update",), (BATCH,), ("jobs/status",)),
            rule(("update",), (BATCH,), ("jobs/finalizers",)),
            rule(("list", "watch", "create", "delete", "patch"), (LEGACY,), ("pods",)),
            events_rule()),
        _controller(
            "namespace-controller",
            rule(READ + ("delete",), (LEGACY,), ("namespaces",)),
            rule(("update",), (LEGACY,), ("namespaces/finalize", "namespaces/status")),
            rule(READ + ("delete", "deletecollection"), ("*",), ("*",))),
        _controller(
            "node-controller",
            rule(READ + ("update", "delete", "patch"), (LEGACY,), ("nodes",)),
            rule(("patch", "update"), (LEGACY,), ("nodes/status",)),
            # Pod deletion and MarkPodsNotReady.
            rule(("patch", "update"), (LEGACY,), ("pods/status",)),
            rule(READ + ("delete",), (LEGACY,), ("pods",)),
            events_rule()),
        _controller(
            "persistent-volume-binder",
            rule(READ + ("update", "create", "delete"), (LEGACY,), ("persistentvolumes",)),
            rule(("update",), (LEGACY,), ("persistentvolumes/status",)),
            rule(READ + ("update",), (LEGACY,), ("persistentvolumeclaims",)),
            rule(("update",), (LEGACY,), ("persistentvolumeclaims/status",)),
            rule(READ + ("create", "delete"), (LEGACY,), ("pods",)),
            rule(READ, (STORAGE,), ("storageclasses",)),
            rule(("list", "watch"), (LEGACY,), ("nodes",)),
            events_rule(),
            # The recycler watches its pod's events.
            rule(("watch",), (LEGACY,), ("events",)),
            # The portworx volume plugin.
            rule(("get",), (LEGACY,), ("services",))),
        _controller(
            "pod-garbage-collector",
            rule(("list", "watch", "delete"), (LEGACY,), ("pods",)),
            rule(READ, (LEGACY,), ("nodes",)),
            rule(("patch",), (LEGACY,), ("pods/status",))),
        _controller(
            "replicaset-controller",
            rule(READ + ("update",), (APPS, EXTENSIONS), ("replicasets",)),
            rule(("update",), (APPS, EXTENSIONS), ("replicasets/status",)),
            rule(("update",), (APPS, EXTENSIONS), ("replicasets/finalizers",)),
            rule(("list", "watch", "patch", "create", "delete"), (LEGACY,), ("pods",)),
            events_rule()),
        _controller(
            "replication-controller",
            # 1.0 controllers needed get and update: old controllers on new servers.
            rule(READ + ("update",), (LEGACY,), ("replicationcontrollers",)),
            rule(("update",), (LEGACY,), ("replicationcontrollers/status",)),
            rule(("update",), (LEGACY,), ("replicationcontrollers/finalizers",)),
            rule(("list", "watch", "patch", "create", "delete"), (LEGACY,), ("pods",)),
            events_rule()),
        # Quota may count anything.
        _controller(
            "resourcequota-controller",
            rule(("list", "watch"), ("*",), ("*",)),
            rule(("update",), (LEGACY,), ("resourcequotas/status",)),
            events_rule()),
        _controller(
            "route-controller",
            rule(("list", "watch"), (LEGACY,), ("nodes",)),
            rule(("patch",), (LEGACY,), ("nodes/status",)),
            events_rule()),
        _controller(
            "service-account-controller",
            rule(("create",), (LEGACY,), ("serviceaccounts",)),
            events_rule()),
        _controller(
            "service-controller",
            rule(READ, (LEGACY,), ("services",)),
            rule(("patch", "update"), (LEGACY,), ("services/status",)),
            rule(("list", "watch"), (LEGACY,), ("nodes",)),
            events_rule()),
        _controller(
            "statefulset-controller",
            rule(("list", "watch"), (LEGACY,), ("pods",)),
            rule(READ, (APPS,), ("statefulsets",)),
            rule(("update",), (APPS,), ("statefulsets/status",)),
            rule(("update",), (APPS,), ("statefulsets/finalizers",)),
            rule(("get", "create", "delete", "update", "patch"), (LEGACY,), ("pods",)),
            rule(READ + ("create", "delete", "update", "patch"), (APPS,),
                 ("controllerrevisions",)),
            rule(("get", "create", "list", "watch"), (LEGACY,), ("persistentvolumeclaims",)),
            events_rule(),
            # StatefulSetAutoDeletePVC (GA in 1.32): ownerReferences on claims.
            rule(("update", "delete"), (LEGACY,), ("persistentvolumeclaims",)),
            rule(("update",), (LEGACY,), ("pods/finalizers",))),
        _controller(
            "ttl-controller",
            rule(("update", "patch", "list", "watch"), (LEGACY,), ("nodes",)),
            events_rule()),
        _controller(
            "certificate-controller",
            rule(READ + ("delete",), (CERTIFICATES,), ("certificatesigningrequests",)),
            rule(("update",), (CERTIFICATES,), ("certificatesigningrequests/status",
                                                "certificatesigningrequests/approval")),
            rule(("approve",), (CERTIFICATES,), ("signers",),
                 names=(KUBE_APISERVER_CLIENT_KUBELET_SIGNER,)),
            rule(("sign",), (CERTIFICATES,), ("signers",),
                 names=(LEGACY_UNKNOWN_SIGNER, KUBE_APISERVER_CLIENT_SIGNER,
                        KUBE_APISERVER_CLIENT_KUBELET_SIGNER, KUBELET_SERVING_SIGNER)),
            rule(("create",), (AUTHZ,), ("subjectaccessreviews",)),
            events_rule()),
        _controller(
            "pvc-protection-controller",
            rule(READ + ("update",), (LEGACY,), ("persistentvolumeclaims",)),
            rule(READ, (LEGACY,), ("pods",)),
            events_rule()),
        _controller(
            "pv-protection-controller",
            rule(READ + ("update",), (LEGACY,), ("persistentvolumes",)),
            events_rule()),
        _controller(
            "ttl-after-finished-controller",
            rule(READ + ("delete",), (BATCH,), ("jobs",)),
            events_rule()),
        _controller(
            "root-ca-cert-publisher",
            rule(("create", "update"), (LEGACY,), ("configmaps",)),
            events_rule()),
        _controller(
            "validatingadmissionpolicy-status-controller",
            rule(READ, (ADMISSION_REGISTRATION,), ("validatingadmissionpolicies",)),
            rule(("get", "patch", "update"), (ADMISSION_REGISTRATION,),
                 ("validatingadmissionpolicies/status",)),
            events_rule()),
        _controller(
            "legacy-service-account-token-cleaner",
            rule(("get",), (LEGACY,), ("configmaps",),
                 names=(LEGACY_TOKEN_TRACKING_CONFIGMAP,)),
            rule(("patch", "delete"), (LEGACY,), ("secrets",))),
    ]


def controller_role_bindings() -> list[Obj]:
    """Upstream's ControllerRoleBindings(): `system:controller:<name>` → the ServiceAccount
    kube-system/<name>."""
    out = []
    for r in controller_roles():
        name = r["metadata"]["name"]
        out.append(cluster_role_binding(
            name, [service_account("kube-system", name[len(CONTROLLER_ROLE_PREFIX):])]))
    return out


# -- namespace_policy.go ----------------------------------------------------------------------
def namespace_roles() -> dict[str, list[Obj]]:
    """Upstream's NamespaceRoles(): namespace → its bootstrap Roles."""
    kube_system, kube_public = "kube-system", "kube-public"

    def leader_locking() -> list[Obj]:
        return [rule(("get", "list", "watch", "create", "update"), (COORDINATION,),
                     ("leases",)),
                rule(("get", "list", "watch", "create", "update"), (COORDINATION,),
                     ("leasecandidates",))]
    return {
        kube_system: [
            # Extension API servers read the front proxy's client CA from here.
            role(kube_system, "extension-apiserver-authentication-reader", [
                rule(READ, (LEGACY,), ("configmaps",),
                     names=("extension-apiserver-authentication",)),
            ]),
            role(kube_system, "system::leader-locking-kube-controller-manager",
                 leader_locking()),
            role(kube_system, "system::leader-locking-kube-scheduler",
                 leader_locking()),
            role(kube_system, CONTROLLER_ROLE_PREFIX + "bootstrap-signer", [
                rule(READ, (LEGACY,), ("secrets",)),
            ]),
            role(kube_system, CONTROLLER_ROLE_PREFIX + "cloud-provider", [
                rule(("create", "get", "list", "watch"), (LEGACY,), ("configmaps",)),
            ]),
            role(kube_system, CONTROLLER_ROLE_PREFIX + "token-cleaner", [
                rule(READ + ("delete",), (LEGACY,), ("secrets",)),
                events_rule(),
            ]),
        ],
        kube_public: [
            role(kube_public, CONTROLLER_ROLE_PREFIX + "bootstrap-signer", [
                rule(READ, (LEGACY,), ("configmaps",)),
                rule(("update",), (LEGACY,), ("configmaps",), names=("cluster-info",)),
                events_rule(),
            ]),
        ],
    }


def namespace_role_bindings() -> dict[str, list[Obj]]:
    """Upstream's NamespaceRoleBindings(): namespace → its bootstrap RoleBindings."""
    ks, kp = "kube-system", "kube-public"
    return {
        ks: [
            role_binding(ks, "extension-apiserver-authentication-reader",
                         [user(KUBE_CONTROLLER_MANAGER), user(KUBE_SCHEDULER)],
                         name="system::extension-apiserver-authentication-reader"),
            role_binding(ks, "system::leader-locking-kube-controller-manager",
                         [user(KUBE_CONTROLLER_MANAGER),
                          service_account(ks, "kube-controller-manager"),
                          service_account(ks, "leader-election-controller")]),
            role_binding(ks, "system::leader-locking-kube-scheduler",
                         [user(KUBE_SCHEDULER), service_account(ks, "kube-scheduler")]),
            role_binding(ks, CONTROLLER_ROLE_PREFIX + "bootstrap-signer",
                         [service_account(ks, "bootstrap-signer")]),
            role_binding(ks, CONTROLLER_ROLE_PREFIX + "cloud-provider",
                         [service_account(ks, "cloud-provider")]),
            role_binding(ks, CONTROLLER_ROLE_PREFIX + "token-cleaner",
                         [service_account(ks, "token-cleaner")]),
        ],
        kp: [
            role_binding(kp, CONTROLLER_ROLE_PREFIX + "bootstrap-signer",
                         [service_account(ks, "bootstrap-signer")]),
        ],
    }


# -- pyk8s ------------------------------------------------------------------------------------
def pyk8s_bindings() -> list[Obj]:
    """ClusterRoleBindings pyk8s adds, as kubeadm does on its clusters (they are not part of
    upstream's bootstrap policy).

    A node joins with the node token, a bootstrap identity in the group
    `system:bootstrappers`: it may create the CertificateSigningRequest of its kubelet's
    client certificate (system:node-bootstrapper), and such `nodeclient` requests are
    approved automatically; a node's kubelet (group `system:nodes`) may renew its own
    certificate (`selfnodeclient`) and have that approved too. pyk8s's csrapproving
    controller also approves a node's kubelet serving certificate (upstream leaves that to
    other approvers), so its service account may approve for that signer. Like the rest of
    the policy these are reconciled at every start and carry the autoupdate annotation.
    """
    return [
        cluster_role_binding("system:node-bootstrapper", [group(BOOTSTRAPPERS_GROUP)],
                             name="pyk8s:kubelet-bootstrap"),
        cluster_role_binding(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            [group(BOOTSTRAPPERS_GROUP)], name="pyk8s:node-autoapprove-bootstrap"),
        cluster_role_binding(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            [group(NODES_GROUP)], name="pyk8s:node-autoapprove-certificate-rotation"),
        cluster_role_binding(
            "system:certificates.k8s.io:kubelet-serving-approver",
            [service_account("kube-system", "certificate-controller")],
            name="pyk8s:kubelet-serving-approver"),
        # ... and nodes' add-on identities (system:kube-proxy, the kube-dns service account)
        cluster_role_binding(
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            [service_account("kube-system", "certificate-controller")],
            name="pyk8s:node-addon-approver"),
        cluster_role_binding("pyk8s:cluster-dns",
                             [service_account("kube-system", "kube-dns")]),
        cluster_role_binding(NETWORK_POLICY_ROLE, [user(KUBE_PROXY)]),
    ]


# -- everything -------------------------------------------------------------------------------
def pyk8s_cluster_roles() -> list[Obj]:
    """pyk8s's cluster DNS server runs beside every kubelet as the kube-dns service
    account: it reads what CoreDNS's `system:coredns` role lets it read (Services,
    EndpointSlices, Namespaces) — upstream's `system:kube-dns` predates EndpointSlices.
    Network-policy enforcement runs beside every kubelet as `system:kube-proxy` (k3s runs
    kube-router's policy controller in its agent): it reads policies, pods, namespaces."""
    return [cluster_role("pyk8s:cluster-dns", [
        rule(("list", "watch"), (LEGACY,), ("services", "namespaces", "endpoints")),
        rule(("list", "watch"), (DISCOVERY,), ("endpointslices",)),
    ]), cluster_role(NETWORK_POLICY_ROLE, [
        rule(("list", "watch"), (LEGACY,), ("pods", "namespaces")),
        rule(("list", "watch"), (NETWORKING,), ("networkpolicies",)),
    ])]


def pyk8s_roles() -> dict[str, list[Obj]]:
    """The cluster DNS publishes itself: the `kube-system/kube-dns` Service and its node's
    EndpointSlice `kube-dns-<node>` (CoreDNS is a Deployment behind a Service kubeadm
    creates; pyk8s's DNS is per node and publishes itself)."""
    return {"kube-system": [role("kube-system", "pyk8s:cluster-dns-publisher", [
        rule(("get", "create", "update"), (LEGACY,), ("services",)),
        rule(("get", "create", "update", "delete"), (DISCOVERY,), ("endpointslices",)),
    ])]}


def pyk8s_role_bindings() -> dict[str, list[Obj]]:
    return {"kube-system": [role_binding(
        "kube-system", "pyk8s:cluster-dns-publisher",
        [service_account("kube-system", "kube-dns")])]}


def cluster_roles() -> list[Obj]:
    """Every bootstrap ClusterRole the API server ensures: upstream's ClusterRoles() and
    ControllerRoles()."""
    return base_cluster_roles() + controller_roles()


def cluster_role_bindings() -> list[Obj]:
    """Every bootstrap ClusterRoleBinding: upstream's ClusterRoleBindings() and
    ControllerRoleBindings(). pyk8s's own are in `pyk8s_bindings()`."""
    return base_cluster_role_bindings() + controller_role_bindings()


@dataclass(frozen=True)
class Policy:
    """What reconciliation ensures, in the order it ensures it (upstream's
    PolicyData): roles before the bindings that refer to them."""
    cluster_roles: list[Obj]
    cluster_role_bindings: list[Obj]
    roles: dict[str, list[Obj]]
    role_bindings: dict[str, list[Obj]]


def bootstrap_policy() -> Policy:
    """The whole policy, pyk8s's own roles and bindings included."""
    roles, bindings = namespace_roles(), namespace_role_bindings()
    for ns, extra in pyk8s_roles().items():
        roles[ns] = roles.get(ns, []) + extra
    for ns, extra in pyk8s_role_bindings().items():
        bindings[ns] = bindings.get(ns, []) + extra
    return Policy(cluster_roles() + pyk8s_cluster_roles(),
                  cluster_role_bindings() + pyk8s_bindings(), roles, bindings)


__all__ = ["rule", "url_rule", "cluster_roles", "cluster_role_bindings", "controller_roles",
           "controller_role_bindings", "namespace_roles", "namespace_role_bindings",
           "pyk8s_bindings", "bootstrap_policy", "Policy", "AUTOUPDATE_ANNOTATION",
           "BOOTSTRAP_LABEL"]
