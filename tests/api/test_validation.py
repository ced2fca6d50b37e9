"""pyk8s.api.validation: upstream's field paths and messages, kind by kind."""
from __future__ import annotations

import base64
import copy
import random
from typing import Any

import pytest

from pyk8s.api import validation as v
from pyk8s.api.catalogue import BUILTIN
from pyk8s.api.defaults import apply_defaults

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    r"used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
QNAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
PORT_RANGE = "must be between 1 and 65535, inclusive"

# ---------------------------------------------------------------------------------------
# Fixtures: minimal valid objects per kind (before defaulting)
# ---------------------------------------------------------------------------------------


def _meta(name: str = "x", ns: str | None = "default", **extra: Any) -> dict:
    md: dict = {"name": name, **extra}
    if ns:
        md["namespace"] = ns
    return md


def _pod_spec(**over: Any) -> dict:
    return {"containers": [{"name": "c", "image": "nginx:1.25"}], **over}


def _template(labels: dict | None = None, **spec: Any) -> dict:
    return {"metadata": {"labels": labels if labels is not None else {"app": "x"}},
            "spec": _pod_spec(**spec)}


VALID: dict[tuple[str, str, str], dict] = {
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"): {
        "metadata": _meta("things.example.com", None),
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "things", "kind": "Thing"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object"}}}]}},
    ("", "v1", "Pod"): {"metadata": _meta(), "spec": _pod_spec()},
    ("", "v1", "PodTemplate"): {"metadata": _meta(), "template": _template()},
    ("", "v1", "ReplicationController"): {"metadata": _meta(), "spec": {"template": _template()}},
    ("", "v1", "Service"): {"metadata": _meta(),
                            "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}},
    ("", "v1", "ConfigMap"): {"metadata": _meta(), "data": {"a.conf": "x", "B_2": "y"}},
    ("", "v1", "Secret"): {"metadata": _meta(), "data": {"k": base64.b64encode(b"v").decode()}},
    ("", "v1", "Namespace"): {"metadata": _meta("team-a", None)},
    ("", "v1", "Node"): {"metadata": _meta("node-1", None),
                         "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}},
    ("", "v1", "Endpoints"): {"metadata": _meta(), "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]},
    ("", "v1", "Event"): {"metadata": _meta("x.17a"), "involvedObject": {"kind": "Pod"}},
    ("", "v1", "ServiceAccount"): {"metadata": _meta()},
    ("", "v1", "PersistentVolume"): {"metadata": _meta("pv-1", None), "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
        "hostPath": {"path": "/data"}}},
    ("", "v1", "PersistentVolumeClaim"): {"metadata": _meta(), "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
    ("", "v1", "ResourceQuota"): {"metadata": _meta(), "spec": {"hard": {"pods": "10"}}},
    ("", "v1", "LimitRange"): {"metadata": _meta(), "spec": {"limits": [
        {"type": "Container", "max": {"cpu": "1"}}]}},
    ("apps", "v1", "Deployment"): {"metadata": _meta(), "spec": {
        "selector": {"matchLabels": {"app": "x"}}, "template": _template()}},
    ("apps", "v1", "ReplicaSet"): {"metadata": _meta(), "spec": {
        "selector": {"matchLabels": {"app": "x"}}, "template": _template()}},
    ("apps", "v1", "StatefulSet"): {"metadata": _meta(), "spec": {
        "selector": {"matchLabels": {"app": "x"}}, "serviceName": "x", "template": _template(),
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}},
    ("apps", "v1", "DaemonSet"): {"metadata": _meta(), "spec": {
        "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]},
        "template": _template()}},
    ("apps", "v1", "ControllerRevision"): {"metadata": _meta(), "data": {"a": 1}, "revision": 1},
    ("batch", "v1", "Job"): {"metadata": _meta(), "spec": {
        "template": _template(restartPolicy="Never")}},
    ("batch", "v1", "CronJob"): {"metadata": _meta(), "spec": {
        "schedule": "*/5 * * * *", "jobTemplate": {"spec": {
            "template": _template(restartPolicy="OnFailure")}}}},
    ("autoscaling", "v2", "HorizontalPodAutoscaler"): {"metadata": _meta(), "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
        "maxReplicas": 3}},
    ("autoscaling", "v1", "HorizontalPodAutoscaler"): {"metadata": _meta(), "spec": {
        "scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 3,
        "targetCPUUtilizationPercentage": 50}},
    ("coordination.k8s.io", "v1", "Lease"): {"metadata": _meta(), "spec": {
        "holderIdentity": "a", "leaseDurationSeconds": 15}},
    ("discovery.k8s.io", "v1", "EndpointSlice"): {"metadata": _meta(), "addressType": "IPv4",
                                                  "endpoints": [{"addresses": ["10.0.0.1"]}],
                                                  "ports": [{"name": "http", "port": 80}]},
    ("events.k8s.io", "v1", "Event"): {"metadata": _meta("x.1"), "eventTime": None},
    ("policy", "v1", "PodDisruptionBudget"): {"metadata": _meta(), "spec": {
        "minAvailable": "50%", "selector": {"matchLabels": {"app": "x"}}}},
    ("rbac.authorization.k8s.io", "v1", "Role"): {"metadata": _meta("system:x"), "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
    ("rbac.authorization.k8s.io", "v1", "ClusterRole"): {"metadata": _meta("Admin:X", None),
                                                         "rules": [{"nonResourceURLs": ["/x"],
                                                                    "verbs": ["get"]}]},
    ("rbac.authorization.k8s.io", "v1", "RoleBinding"): {"metadata": _meta(), "roleRef": {
        "kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "alice"},
                                                   {"kind": "ServiceAccount", "name": "default"}]},
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"): {
        "metadata": _meta("b", None), "roleRef": {"kind": "ClusterRole", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "default"}]},
    ("storage.k8s.io", "v1", "StorageClass"): {"metadata": _meta("fast", None),
                                               "provisioner": "kubernetes.io/no-provisioner"},
    ("networking.k8s.io", "v1", "Ingress"): {"metadata": _meta(), "spec": {"rules": [{
        "host": "example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                                                    "backend": {"service": {
                                                        "name": "web", "port": {"number": 80}}}}]}
    }]}},
    ("networking.k8s.io", "v1", "IngressClass"): {"metadata": _meta("nginx", None),
                                                  "spec": {"controller": "k8s.io/ingress-nginx"}},
    ("networking.k8s.io", "v1", "NetworkPolicy"): {"metadata": _meta(), "spec": {
        "podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}},
    ("scheduling.k8s.io", "v1", "PriorityClass"): {"metadata": _meta("high", None),
                                                   "value": 1000},
    ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration"): {
        "metadata": _meta("m", None), "webhooks": [{
            "name": "m.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": "https://127.0.0.1:9443/m"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["configmaps"]}]}]},
    ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration"): {
        "metadata": _meta("v", None), "webhooks": [{
            "name": "v.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "clientConfig": {"service": {"namespace": "default", "name": "wh"}}}]},
    ("certificates.k8s.io", "v1", "CertificateSigningRequest"): {
        "metadata": _meta("csr", None), "spec": {
            "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
            "signerName": "example.com/signer", "usages": ["client auth"]}},
    ("node.k8s.io", "v1", "RuntimeClass"): {"metadata": _meta("gvisor", None),
                                            "handler": "runsc"},
    ("apiregistration.k8s.io", "v1", "APIService"): {
        "metadata": _meta("v1.example.com", None), "spec": {
            "group": "example.com", "version": "v1", "groupPriorityMinimum": 1000,
            "versionPriority": 15, "service": {"namespace": "default", "name": "api"}}},
}


def defaulted(gvk: tuple[str, str, str]) -> dict:
    obj = copy.deepcopy(VALID[gvk])
    apply_defaults(gvk[0], gvk[1], gvk[2], obj)
    return obj


def errs(group: str, kind: str, obj: dict, old: dict | None = None) -> list[tuple[str, str]]:
    return [(c.get("field", ""), c["message"]) for c in v.validate(group, kind, obj, old)]


def test_every_catalogue_kind_has_a_valid_fixture() -> None:
    assert {(r.group, r.version, r.kind) for r in BUILTIN if "get" in r.verbs} <= set(VALID)


@pytest.mark.parametrize("gvk", sorted(VALID), ids=lambda g: "/".join(x for x in g if x))
def test_valid_objects_pass(gvk: tuple[str, str, str]) -> None:
    assert errs(gvk[0], gvk[2], defaulted(gvk)) == []


@pytest.mark.parametrize("gvk", sorted(VALID), ids=lambda g: "/".join(x for x in g if x))
def test_unchanged_update_passes(gvk: tuple[str, str, str]) -> None:
    obj = defaulted(gvk)
    obj["metadata"].update(uid="u1", creationTimestamp="2024-01-01T00:00:00Z")
    assert errs(gvk[0], gvk[2], copy.deepcopy(obj), obj) == []


# ---------------------------------------------------------------------------------------
# Value checkers
# ---------------------------------------------------------------------------------------


def test_checker_messages() -> None:
    assert v.is_dns1123_subdomain("Foo") == [SUBDOMAIN_MSG]
    assert v.is_dns1123_subdomain("a" * 254) == ["must be no more than 253 characters"]
    assert v.is_dns1123_label("a.b") == ["must not contain dots"]
    assert v.is_dns1123_label("-a") == [LABEL_MSG]
    assert v.is_dns1035_label("1abc") == [DNS1035_MSG]
    assert v.is_qualified_name("example.com/") == ["name part must be non-empty", QNAME_MSG]
    assert v.is_qualified_name("a/b/c")[0].startswith("a qualified name must consist of")
    assert v.is_qualified_name("Bad_/x")[0].startswith("prefix part a lowercase RFC 1123")
    assert v.is_valid_label_value("-x") == [LABEL_VALUE_MSG]
    assert v.is_valid_port_name("HTTP--") == [
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        "must contain at least one letter (a-z)", "must not contain consecutive hyphens",
        "must not begin or end with a hyphen"]
    assert v.is_valid_port_name("a-very-long-port-name") == ["must be no more than 15 characters"]
    assert v.is_valid_path_segment_name("..") == ["may not be '..'"]
    assert v.is_valid_path_segment_name("a/b%") == ["may not contain '/'", "may not contain '%'"]
    assert v.is_config_map_key("..x") == ["must not start with '..'"]
    assert v.is_relaxed_env_var_name("A=B") == [
        "a valid environment variable name must consist only of printable ASCII characters "
        "other than '='"]


@pytest.mark.parametrize("text, value", [
    ("1", 1), ("500m", 0.5), ("1Gi", 2**30), ("1e3", 1000), ("1.5k", 1500), ("+2", 2),
    ("-1", -1), (".5", 0.5), ("100Mi", 100 * 2**20), (3, 3), (0.25, 0.25)])
def test_parse_quantity(text: Any, value: float) -> None:
    assert v.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1X", "1..0", "Gi", "1 Gi", None, True])
def test_parse_quantity_rejects(text: Any) -> None:
    assert v.parse_quantity(text) is None


@pytest.mark.parametrize("spec, problem", [
    ("*/5 * * * *", None), ("0 0 1 JAN MON", None), ("@hourly", None), ("@every 1h30m", None),
    ("CRON_TZ=UTC 0 * * * *", None), ("0-59/15 1,2,3 ? * 1-5", None),
    ("* * *", "expected exactly 5 fields, found 3: [* * *]"),
    ("60 * * * *", "end of range (60) above maximum (59): 60"),
    ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
])
def test_cron_schedules(spec: str, problem: str | None) -> None:
    assert v.parse_cron_schedule(spec) == problem


# ---------------------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------------------


def test_name_required_and_formats() -> None:
    cm = defaulted(("", "v1", "ConfigMap"))
    del cm["metadata"]["name"]
    assert errs("", "ConfigMap", cm) == [
        ("metadata.name", "Required value: name or generateName is required")]
    cm["metadata"]["name"] = "Bad_Name"
    assert errs("", "ConfigMap", cm) == [
        ("metadata.name", f'Invalid value: "Bad_Name": {SUBDOMAIN_MSG}')]


@pytest.mark.parametrize("group, kind, name, message", [
    ("", "Namespace", "a.b", 'Invalid value: "a.b": must not contain dots'),
    ("", "Namespace", "A", f'Invalid value: "A": {LABEL_MSG}'),
    ("", "Service", "1svc", f'Invalid value: "1svc": {DNS1035_MSG}'),
    ("rbac.authorization.k8s.io", "Role", "a/b", 'Invalid value: "a/b": may not contain \'/\''),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", ".",
     'Invalid value: ".": may not be \'.\''),
    ("apps", "Deployment", "a" * 254,
     f'Invalid value: "{"a" * 254}": must be no more than 253 characters'),
])
def test_name_rules_per_kind(group: str, kind: str, name: str, message: str) -> None:
    gvk = next(g for g in VALID if g[0] == group and g[2] == kind)
    obj = defaulted(gvk)
    obj["metadata"]["name"] = name
    assert ("metadata.name", message) in errs(group, kind, obj)


def test_csr_names_are_free_form() -> None:
    """Kubelets name their CSRs `node-csr-<base64url digest>` (capitals, underscores):
    upstream's ValidateCertificateRequestName accepts any name."""
    csr = defaulted(("certificates.k8s.io", "v1", "CertificateSigningRequest"))
    csr["metadata"]["name"] = "node-csr-Ld7SJ_5wFpRcNw7xszC3cJ1rFYx4x0sOT0jW-3Ub3yM"
    assert not [e for e in errs("certificates.k8s.io", "CertificateSigningRequest", csr)
                if e[0] == "metadata.name"]
    csr["metadata"]["name"] = "a/b"
    assert ("metadata.name", 'Invalid value: "a/b": may not contain \'/\'') in \
        errs("certificates.k8s.io", "CertificateSigningRequest", csr)


def test_generate_name_prefix_may_end_with_dash() -> None:
    cm = defaulted(("", "v1", "ConfigMap"))
    cm["metadata"]["generateName"] = "web-"
    assert errs("", "ConfigMap", cm) == []
    cm["metadata"]["generateName"] = "Web-"
    assert errs("", "ConfigMap", cm)[0][0] == "metadata.generateName"


def test_namespace_rules() -> None:
    cm = defaulted(("", "v1", "ConfigMap"))
    del cm["metadata"]["namespace"]
    assert errs("", "ConfigMap", cm) == [("metadata.namespace", "Required value")]
    ns = defaulted(("", "v1", "Namespace"))
    ns["metadata"]["namespace"] = "default"
    assert errs("", "Namespace", ns) == [("metadata.namespace",
                                          "Forbidden: not allowed on this type")]


def test_labels_annotations_owner_refs_finalizers() -> None:
    cm = defaulted(("", "v1", "ConfigMap"))
    md = cm["metadata"]
    md["labels"] = {"app": "-bad", "example.com/": "ok"}
    md["annotations"] = {"big": "x" * (256 * 1024)}
    md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "", "name": "a", "uid": "1",
                              "controller": True},
                             {"apiVersion": "v1", "kind": "K", "name": "b", "uid": "2",
                              "controller": True}]
    md["finalizers"] = ["custom", "example.com/x", "Bad_/y"]
    got = errs("", "ConfigMap", cm)
    assert ("metadata.labels", f'Invalid value: "-bad": {LABEL_VALUE_MSG}') in got
    assert ("metadata.labels",
            'Invalid value: "example.com/": name part must be non-empty') in got
    assert ("metadata.annotations", "Too long: must have at most 262144 bytes") in got
    assert ("metadata.ownerReferences.kind", 'Invalid value: "": kind must not be empty') in got
    assert any(f == "metadata.ownerReferences" and "Only one reference can have Controller set "
               'to true. Found "true" in references for /a and K/b' in m for f, m in got)
    assert ("metadata.finalizers[0]", 'Invalid value: "custom": name is neither a standard '
            "finalizer name nor is it fully qualified") in got
    assert any(f == "metadata.finalizers" and m.startswith('Invalid value: "Bad_/y": prefix part')
               for f, m in got)
    reasons = {c["reason"] for c in v.validate("", "ConfigMap", cm)}
    assert reasons == {"FieldValueInvalid", "FieldValueTooLong"}


def test_custom_resources_get_metadata_checks_only() -> None:
    obj = {"metadata": {"name": "Bad", "finalizers": ["plain"]}, "spec": {"anything": [1]}}
    assert errs("example.com", "Widget", obj) == [
        ("metadata.name", f'Invalid value: "Bad": {SUBDOMAIN_MSG}')]
    obj["metadata"]["name"] = "ok"
    assert v.validate("example.com", "Widget", obj, namespaced=True) == [
        {"reason": "FieldValueRequired", "message": "Required value",
         "field": "metadata.namespace"}]


def test_metadata_immutable_on_update() -> None:
    old = defaulted(("", "v1", "ConfigMap"))
    old["metadata"].update(uid="u1", creationTimestamp="2024-01-01T00:00:00Z", generation=3)
    new = copy.deepcopy(old)
    new["metadata"].update(name="y", namespace="other", uid="u2",
                           creationTimestamp="2025-01-01T00:00:00Z", generation=2)
    assert errs("", "ConfigMap", new, old) == [
        ("metadata.generation", "Invalid value: 2: must not be decremented"),
        ("metadata.name", 'Invalid value: "y": field is immutable'),
        ("metadata.namespace", 'Invalid value: "other": field is immutable'),
        ("metadata.uid", 'Invalid value: "u2": field is immutable'),
        ("metadata.creationTimestamp", 'Invalid value: "2025-01-01T00:00:00Z": field is immutable'),
    ]
    # omitted system fields are carried over by the registry, not errors
    new = copy.deepcopy(old)
    del new["metadata"]["uid"], new["metadata"]["creationTimestamp"]
    assert errs("", "ConfigMap", new, old) == []


def test_no_new_finalizers_while_deleting() -> None:
    old = defaulted(("", "v1", "ConfigMap"))
    old["metadata"].update(deletionTimestamp="2024-01-01T00:00:00Z", finalizers=["a.io/x"])
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = ["a.io/x", "a.io/y"]
    assert errs("", "ConfigMap", new, old) == [(
        "metadata.finalizers", 'Forbidden: no new finalizers can be added if the object is '
        'being deleted, found new finalizers []string{"a.io/y"}')]


# ---------------------------------------------------------------------------------------
# Pods and pod templates
# ---------------------------------------------------------------------------------------


def _pod(**spec: Any) -> dict:
    obj = {"metadata": _meta(), "spec": _pod_spec(**spec)}
    apply_defaults("", "v1", "Pod", obj)
    return obj


def _ctr(**fields: Any) -> dict:
    return {"name": "c", "image": "nginx", **fields}


POD_CASES: list[tuple[str, dict, tuple[str, str]]] = [
    ("no containers", {"containers": []}, ("spec.containers", "Required value")),
    ("container name required", {"containers": [_ctr(name="")]},
     ("spec.containers[0].name", "Required value")),
    ("container name label", {"containers": [_ctr(name="Web")]},
     ("spec.containers[0].name", f'Invalid value: "Web": {LABEL_MSG}')),
    ("duplicate container", {"containers": [_ctr(), _ctr()]},
     ("spec.containers[1].name", 'Duplicate value: "c"')),
    ("init duplicates container", {"initContainers": [_ctr()]},
     ("spec.initContainers[0].name", 'Duplicate value: "c"')),
    ("image required", {"containers": [_ctr(image="")]},
     ("spec.containers[0].image", "Required value")),
    ("containerPort range", {"containers": [_ctr(ports=[{"containerPort": 70000}])]},
     ("spec.containers[0].ports[0].containerPort", f"Invalid value: 70000: {PORT_RANGE}")),
    ("containerPort required", {"containers": [_ctr(ports=[{"name": "http"}])]},
     ("spec.containers[0].ports[0].containerPort", "Required value")),
    ("hostPort range", {"containers": [_ctr(ports=[{"containerPort": 80, "hostPort": -1}])]},
     ("spec.containers[0].ports[0].hostPort", f"Invalid value: -1: {PORT_RANGE}")),
    ("protocol", {"containers": [_ctr(ports=[{"containerPort": 80, "protocol": "HTTP"}])]},
     ("spec.containers[0].ports[0].protocol",
      'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"')),
    ("port name", {"containers": [_ctr(ports=[{"containerPort": 80, "name": "8080"}])]},
     ("spec.containers[0].ports[0].name",
      'Invalid value: "8080": must contain at least one letter (a-z)')),
    ("duplicate port name", {"containers": [_ctr(ports=[{"containerPort": 80, "name": "web"},
                                                        {"containerPort": 81, "name": "web"}])]},
     ("spec.containers[0].ports[1].name", 'Duplicate value: "web"')),
    ("duplicate hostPort", {"containers": [_ctr(ports=[
        {"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 8080}])]},
     ("spec.containers[0].ports[1].hostPort", 'Duplicate value: "TCP//8080"')),
    ("env name", {"containers": [_ctr(env=[{"name": "A=B", "value": "1"}])]},
     ("spec.containers[0].env[0].name", 'Invalid value: "A=B": a valid environment variable '
      "name must consist only of printable ASCII characters other than '='")),
    ("env name required", {"containers": [_ctr(env=[{"value": "1"}])]},
     ("spec.containers[0].env[0].name", "Required value")),
    ("env value and valueFrom", {"containers": [_ctr(env=[{"name": "A", "value": "1",
        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])]},
     ("spec.containers[0].env[0].valueFrom",
      'Invalid value: "": may not be specified when `value` is not empty')),
    ("env fieldRef path", {"containers": [_ctr(env=[{"name": "A", "valueFrom": {
        "fieldRef": {"fieldPath": "spec.bogus"}}}])]},
     ("spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
      'Unsupported value: "spec.bogus": supported values: "metadata.annotations", '
      '"metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid", '
      '"spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", '
      '"status.podIP", "status.podIPs"')),
    ("duplicate volume", {"volumes": [{"name": "v", "emptyDir": {}},
                                      {"name": "v", "emptyDir": {}}]},
     ("spec.volumes[1].name", 'Duplicate value: "v"')),
    ("two volume sources", {"volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/"}}]},
     ("spec.volumes[0].emptyDir", "Forbidden: may not specify more than 1 volume type")),
    ("configMap volume name", {"volumes": [{"name": "v", "configMap": {}}]},
     ("spec.volumes[0].configMap.name", "Required value")),
    ("defaultMode", {"volumes": [{"name": "v", "secret": {"secretName": "s",
                                                          "defaultMode": 1000}}]},
     ("spec.volumes[0].secret.defaultMode", "Invalid value: 1000: must be a number between 0 "
      "and 0777 (octal), both inclusive")),
    ("mount of unknown volume", {"containers": [_ctr(volumeMounts=[
        {"name": "data", "mountPath": "/data"}])]},
     ("spec.containers[0].volumeMounts[0].name", 'Not found: "data"')),
    ("mountPath required", {"volumes": [{"name": "v", "emptyDir": {}}], "containers": [_ctr(
        volumeMounts=[{"name": "v"}])]},
     ("spec.containers[0].volumeMounts[0].mountPath", "Required value")),
    ("subPath escapes", {"volumes": [{"name": "v", "emptyDir": {}}], "containers": [_ctr(
        volumeMounts=[{"name": "v", "mountPath": "/d", "subPath": "../etc"}])]},
     ("spec.containers[0].volumeMounts[0].subPath", 'Invalid value: "../etc": must not '
      "contain '..'")),
    ("restartPolicy", {"restartPolicy": "Sometimes"},
     ("spec.restartPolicy", 'Unsupported value: "Sometimes": supported values: "Always", '
      '"OnFailure", "Never"')),
    ("dnsPolicy", {"dnsPolicy": "Cluster"},
     ("spec.dnsPolicy", 'Unsupported value: "Cluster": supported values: '
      '"ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"')),
    ("dnsPolicy None needs dnsConfig", {"dnsPolicy": "None"},
     ("spec.dnsConfig", "Required value: must provide `dnsConfig` when `dnsPolicy` is None")),
    ("imagePullPolicy", {"containers": [_ctr(imagePullPolicy="Sometimes")]},
     ("spec.containers[0].imagePullPolicy", 'Unsupported value: "Sometimes": supported '
      'values: "Always", "IfNotPresent", "Never"')),
    ("bad quantity", {"containers": [_ctr(resources={"limits": {"cpu": "lots"}})]},
     ("spec.containers[0].resources.limits[cpu]", 'Invalid value: "lots": quantities must '
      "match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")),
    ("negative quantity", {"containers": [_ctr(resources={"requests": {"memory": "-1Gi"}})]},
     ("spec.containers[0].resources.requests[memory]",
      'Invalid value: "-1Gi": must be greater than or equal to 0')),
    ("requests above limits", {"containers": [_ctr(resources={"requests": {"cpu": "2"},
                                                              "limits": {"cpu": "500m"}})]},
     ("spec.containers[0].resources.requests",
      'Invalid value: "2": must be less than or equal to cpu limit of 500m')),
    ("unknown resource", {"containers": [_ctr(resources={"limits": {"gpu": "1"}})]},
     ("spec.containers[0].resources.limits[gpu]",
      'Invalid value: "gpu": must be a standard resource for containers')),
    ("extended resource integer", {"containers": [_ctr(resources={
        "limits": {"example.com/gpu": "500m"}, "requests": {"example.com/gpu": "500m"}})]},
     ("spec.containers[0].resources.limits[example.com/gpu]",
      'Invalid value: "500m": must be an integer')),
    ("extended resource needs a limit", {"containers": [_ctr(resources={
        "requests": {"example.com/gpu": "1"}})]},
     ("spec.containers[0].resources.limits",
      "Required value: Limit must be set for non overcommitable resources")),
    ("extended resource request equals limit", {"containers": [_ctr(resources={
        "requests": {"example.com/gpu": "1"}, "limits": {"example.com/gpu": "2"}})]},
     ("spec.containers[0].resources.requests",
      'Invalid value: "1": must be equal to example.com/gpu limit of 2')),
    ("probe handler", {"containers": [_ctr(livenessProbe={"periodSeconds": 5})]},
     ("spec.containers[0].livenessProbe", "Required value: must specify a handler type")),
    ("liveness success", {"containers": [_ctr(livenessProbe={
        "exec": {"command": ["true"]}, "successThreshold": 2})]},
     ("spec.containers[0].livenessProbe.successThreshold", "Invalid value: 2: must be 1")),
    ("probe port", {"containers": [_ctr(readinessProbe={"httpGet": {"port": 0}})]},
     ("spec.containers[0].readinessProbe.httpGet.port", f"Invalid value: 0: {PORT_RANGE}")),
    ("restartPolicy on container", {"containers": [_ctr(restartPolicy="Always")]},
     ("spec.containers[0].restartPolicy", "Forbidden: may not be set for non-init containers")),
    ("init probe", {"initContainers": [_ctr(name="i", readinessProbe={
        "exec": {"command": ["true"]}})]},
     ("spec.initContainers[0].readinessProbe",
      "Forbidden: may not be set for init containers without restartPolicy=Always")),
    ("nodeSelector", {"nodeSelector": {"disk": "s s d"}},
     ("spec.nodeSelector", f'Invalid value: "s s d": {LABEL_VALUE_MSG}')),
    ("activeDeadlineSeconds", {"activeDeadlineSeconds": 0},
     ("spec.activeDeadlineSeconds", "Invalid value: 0: must be between 1 and 2147483647, "
      "inclusive")),
    ("serviceAccountName", {"serviceAccountName": "Bad"},
     ("spec.serviceAccountName", f'Invalid value: "Bad": {SUBDOMAIN_MSG}')),
    ("toleration operator", {"tolerations": [{"key": "k", "operator": "Maybe"}]},
     ("spec.tolerations[0].operator",
      'Unsupported value: "Maybe": supported values: "Equal", "Exists"')),
    ("toleration effect", {"tolerations": [{"operator": "Exists", "effect": "Never"}]},
     ("spec.tolerations[0].effect", 'Unsupported value: "Never": supported values: '
      '"NoSchedule", "PreferNoSchedule", "NoExecute"')),
    ("hostNetwork port mismatch", {"hostNetwork": True, "containers": [_ctr(ports=[
        {"containerPort": 80, "hostPort": 81}])]},
     ("spec.containers[0].ports[0].hostPort",
      "Invalid value: 81: must match `containerPort` when `hostNetwork` is true")),
]


@pytest.mark.parametrize("spec, expected", [c[1:] for c in POD_CASES],
                         ids=[c[0] for c in POD_CASES])
def test_pod_spec_errors(spec: dict, expected: tuple[str, str]) -> None:
    assert expected in errs("", "Pod", _pod(**spec))


def test_pod_template_errors_in_workloads_use_template_paths() -> None:
    dep = defaulted(("apps", "v1", "Deployment"))
    dep["spec"]["template"]["spec"]["containers"].append({"name": "c", "image": ""})
    dep["spec"]["template"]["metadata"]["labels"]["bad key!"] = "x"
    got = errs("apps", "Deployment", dep)
    assert ("spec.template.spec.containers[1].image", "Required value") in got
    assert ("spec.template.spec.containers[1].name", 'Duplicate value: "c"') in got
    # upstream's quirk: template label errors are reported at `<template>.labels`
    assert any(f == "spec.template.labels" for f, _ in got)


def test_pod_update_allows_image_and_rejects_the_rest() -> None:
    old = _pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.26"
    new["spec"]["activeDeadlineSeconds"] = 30
    new["spec"]["tolerations"] = [{"key": "k", "operator": "Exists"}]
    assert errs("", "Pod", new, old) == []
    changed = copy.deepcopy(old)
    changed["spec"]["containers"][0]["ports"] = [{"containerPort": 8080, "protocol": "TCP"}]
    got = errs("", "Pod", changed, old)
    assert len(got) == 1 and got[0][0] == "spec"
    assert got[0][1].startswith(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
        "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to "
        "be set to 1 if it was previously negative)\n")
    assert "spec.containers[0].ports" in got[0][1]
    more = copy.deepcopy(old)
    more["spec"]["containers"].append({"name": "d", "image": "busybox"})
    apply_defaults("", "v1", "Pod", more)
    assert errs("", "Pod", more, old) == [
        ("spec.containers", "Forbidden: pod updates may not add or remove containers")]


def test_pod_update_active_deadline_and_tolerations() -> None:
    old = _pod(activeDeadlineSeconds=10, tolerations=[{"key": "k", "operator": "Exists"}])
    new = copy.deepcopy(old)
    new["spec"]["activeDeadlineSeconds"] = 20
    assert errs("", "Pod", new, old) == [("spec.activeDeadlineSeconds", "Invalid value: 20: "
                                          "must be less than or equal to previous value")]
    new = copy.deepcopy(old)
    new["spec"]["tolerations"] = []
    assert ("spec.tolerations", "Forbidden: existing toleration can not be modified except "
            "its tolerationSeconds") in errs("", "Pod", new, old)


# ---------------------------------------------------------------------------------------
# apps/v1
# ---------------------------------------------------------------------------------------

SELECTOR_GO = ('v1.LabelSelector{MatchLabels:map[string]string{"app":"x"}, '
               "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}")


def test_deployment_selector_rules() -> None:
    dep = defaulted(("apps", "v1", "Deployment"))
    dep["spec"]["template"]["metadata"]["labels"] = {"app": "y"}
    assert errs("apps", "Deployment", dep) == [(
        "spec.template.metadata.labels", 'Invalid value: map[string]string{"app":"y"}: '
        "`selector` does not match template `labels`")]
    del dep["spec"]["selector"]
    got = errs("apps", "Deployment", dep)
    assert got[0] == ("spec.selector", "Required value")
    dep["spec"]["selector"] = {}
    dep["spec"]["template"]["metadata"]["labels"] = {"app": "x"}
    assert errs("apps", "Deployment", dep) == [(
        "spec.selector", "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for "
        "deployment")]
    dep["spec"]["selector"] = {"matchExpressions": [{"key": "app", "operator": "Has"}]}
    got = errs("apps", "Deployment", dep)
    assert ("spec.selector.matchExpressions[0].operator",
            'Invalid value: "Has": not a valid selector operator') in got
    assert got[-1][1].endswith("invalid label selector")


def test_deployment_selector_is_immutable() -> None:
    old = defaulted(("apps", "v1", "Deployment"))
    new = copy.deepcopy(old)
    new["spec"]["selector"]["matchLabels"]["tier"] = "web"
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "web"
    assert errs("apps", "Deployment", new, old) == [(
        "spec.selector", 'Invalid value: v1.LabelSelector{MatchLabels:map[string]string'
        '{"app":"x", "tier":"web"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: '
        "field is immutable")]


@pytest.mark.parametrize("mutate, expected", [
    (lambda s: s.update(replicas=-1),
     ("spec.replicas", "Invalid value: -1: must be greater than or equal to 0")),
    (lambda s: s["strategy"].update(type="BlueGreen", rollingUpdate=None),
     ("spec.strategy.type", 'Unsupported value: "BlueGreen": supported values: "Recreate", '
      '"RollingUpdate"')),
    (lambda s: s["strategy"].update(rollingUpdate={"maxSurge": 0, "maxUnavailable": "0%"}),
     ("spec.strategy.rollingUpdate.maxUnavailable",
      'Invalid value: "0%": may not be 0 when `maxSurge` is 0')),
    (lambda s: s["strategy"].update(rollingUpdate={"maxSurge": "x", "maxUnavailable": 1}),
     ("spec.strategy.rollingUpdate.maxSurge", 'Invalid value: "x": a valid percent string must '
      "be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for "
      "validation is '[0-9]+%')")),
    (lambda s: s["strategy"].update(rollingUpdate={"maxSurge": 1, "maxUnavailable": "150%"}),
     ("spec.strategy.rollingUpdate.maxUnavailable",
      'Invalid value: "150%": must not be greater than 100%')),
    (lambda s: s["strategy"].update(type="Recreate"),
     ("spec.strategy.rollingUpdate",
      "Forbidden: may not be specified when strategy `type` is 'Recreate'")),
    (lambda s: s.update(progressDeadlineSeconds=5, minReadySeconds=10),
     ("spec.progressDeadlineSeconds", "Invalid value: 5: must be greater than minReadySeconds")),
    (lambda s: s["template"]["spec"].update(restartPolicy="Never"),
     ("spec.template.spec.restartPolicy",
      'Unsupported value: "Never": supported values: "Always"')),
    (lambda s: s["template"]["spec"].update(activeDeadlineSeconds=5),
     ("spec.template.spec.activeDeadlineSeconds",
      "Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported")),
])
def test_deployment_spec_errors(mutate: Any, expected: tuple[str, str]) -> None:
    dep = defaulted(("apps", "v1", "Deployment"))
    mutate(dep["spec"])
    assert expected in errs("apps", "Deployment", dep)


def test_replicaset_statefulset_daemonset() -> None:
    rs = defaulted(("apps", "v1", "ReplicaSet"))
    rs["spec"]["replicas"] = -2
    assert errs("apps", "ReplicaSet", rs) == [
        ("spec.replicas", "Invalid value: -2: must be greater than or equal to 0")]

    sts = defaulted(("apps", "v1", "StatefulSet"))
    sts["spec"]["podManagementPolicy"] = "Random"
    sts["spec"]["template"]["metadata"]["labels"] = {}
    got = errs("apps", "StatefulSet", sts)
    assert ("spec.podManagementPolicy",
            "Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'") in got
    assert ("spec.template.metadata.labels", "Invalid value: map[string]string{}: `selector` "
            "does not match template `labels`") in got
    old = defaulted(("apps", "v1", "StatefulSet"))
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 5
    assert errs("apps", "StatefulSet", new, old) == []
    new["spec"]["serviceName"] = "other"
    assert errs("apps", "StatefulSet", new, old) == [(
        "spec", "Forbidden: updates to statefulset spec for fields other than 'replicas', "
        "'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
        "'minReadySeconds' are forbidden")]

    ds = defaulted(("apps", "v1", "DaemonSet"))
    ds["spec"]["updateStrategy"]["rollingUpdate"] = {"maxUnavailable": 0, "maxSurge": 0}
    assert errs("apps", "DaemonSet", ds) == [(
        "spec.updateStrategy.rollingUpdate.maxUnavailable",
        "Required value: cannot be 0 when maxSurge is 0")]
    ds["spec"]["updateStrategy"]["rollingUpdate"] = {"maxUnavailable": 1, "maxSurge": 1}
    assert errs("apps", "DaemonSet", ds) == [(
        "spec.updateStrategy.rollingUpdate.maxSurge",
        "Invalid value: 1: may not be set when maxUnavailable is non-zero")]
    del ds["spec"]["selector"]
    ds["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"] = 0
    assert errs("apps", "DaemonSet", ds) == [
        ("spec.selector", "Required value"),
        ("spec.template.metadata.labels", 'Invalid value: map[string]string{"app":"x"}: '
         "`selector` does not match template `labels`")]


def test_replication_controller() -> None:
    rc = defaulted(("", "v1", "ReplicationController"))
    assert rc["spec"]["selector"] == {"app": "x"}
    rc["spec"]["selector"] = {"app": "other"}
    assert errs("", "ReplicationController", rc) == [(
        "spec.template.metadata.labels", 'Invalid value: map[string]string{"app":"x"}: '
        "`selector` does not match template `labels`")]


# ---------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------


def _svc(**spec: Any) -> dict:
    obj = {"metadata": _meta(), "spec": {"selector": {"app": "x"}, **spec}}
    apply_defaults("", "v1", "Service", obj)
    return obj


SERVICE_CASES: list[tuple[str, dict, tuple[str, str]]] = [
    ("ports required", {}, ("spec.ports", "Required value")),
    ("port range", {"ports": [{"port": 0}]},
     ("spec.ports[0].port", f"Invalid value: 0: {PORT_RANGE}")),
    ("names required", {"ports": [{"port": 80}, {"port": 81, "name": "b"}]},
     ("spec.ports[0].name", "Required value")),
    ("duplicate names", {"ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]},
     ("spec.ports[1].name", 'Duplicate value: "a"')),
    ("port name label", {"ports": [{"port": 80, "name": "Web"}]},
     ("spec.ports[0].name", f'Invalid value: "Web": {LABEL_MSG}')),
    ("protocol", {"ports": [{"port": 80, "protocol": "ICMP"}]},
     ("spec.ports[0].protocol",
      'Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"')),
    ("targetPort number", {"ports": [{"port": 80, "targetPort": 99999}]},
     ("spec.ports[0].targetPort", f"Invalid value: 99999: {PORT_RANGE}")),
    ("targetPort name", {"ports": [{"port": 80, "targetPort": "Http"}]},
     ("spec.ports[0].targetPort", 'Invalid value: "Http": must contain only alpha-numeric '
      "characters (a-z, 0-9), and hyphens (-)")),
    ("duplicate port", {"ports": [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]},
     ("spec.ports[1]", 'Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", '
      'AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, '
      'StrVal:""}, NodePort:0}')),
    ("nodePort on ClusterIP", {"ports": [{"port": 80, "nodePort": 30080}]},
     ("spec.ports[0].nodePort", "Forbidden: may not be used when `type` is 'ClusterIP'")),
    ("type", {"type": "Public", "ports": [{"port": 80}]},
     ("spec.type", 'Unsupported value: "Public": supported values: "ClusterIP", '
      '"ExternalName", "LoadBalancer", "NodePort"')),
    ("clusterIP", {"clusterIP": "10.0.0.300", "ports": [{"port": 80}]},
     ("spec.clusterIPs[0]", 'Invalid value: "10.0.0.300": must be a valid IP address, (e.g. '
      "10.9.8.7 or 2001:db8::ffff)")),
    ("externalName required", {"type": "ExternalName"},
     ("spec.externalName", "Required value")),
    ("externalName format", {"type": "ExternalName", "externalName": "Bad_Host"},
     ("spec.externalName", f'Invalid value: "Bad_Host": {SUBDOMAIN_MSG}')),
    ("headless NodePort", {"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]},
     ("spec.clusterIPs[0]", "Invalid value: \"None\": may not be set to 'None' for NodePort "
      "services")),
    ("externalTrafficPolicy on ClusterIP", {"externalTrafficPolicy": "Local",
                                            "ports": [{"port": 80}]},
     ("spec.externalTrafficPolicy",
      'Invalid value: "Local": may only be set for externally-accessible services')),
    ("sessionAffinity", {"sessionAffinity": "Cookie", "ports": [{"port": 80}]},
     ("spec.sessionAffinity",
      'Unsupported value: "Cookie": supported values: "ClientIP", "None"')),
]


@pytest.mark.parametrize("spec, expected", [c[1:] for c in SERVICE_CASES],
                         ids=[c[0] for c in SERVICE_CASES])
def test_service_errors(spec: dict, expected: tuple[str, str]) -> None:
    assert expected in errs("", "Service", _svc(**spec))


@pytest.mark.parametrize("spec", [
    {"clusterIP": "None"},  # headless: ports optional
    {"type": "ExternalName", "externalName": "db.example.com."},
    {"type": "LoadBalancer", "ports": [{"port": 443, "name": "https", "nodePort": 30443},
                                       {"port": 80, "name": "http"}]},
    {"clusterIP": "10.96.0.10", "ports": [{"port": 53, "protocol": "UDP", "name": "dns"},
                                          {"port": 53, "protocol": "TCP", "name": "dns-tcp"}]},
])
def test_valid_services(spec: dict) -> None:
    assert errs("", "Service", _svc(**spec)) == []


def test_service_cluster_ip_may_not_change() -> None:
    old = _svc(clusterIP="10.96.0.10", ports=[{"port": 80}])
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = new["spec"]["clusterIPs"][0] = "10.96.0.11"
    assert errs("", "Service", new, old) == [
        ("spec.clusterIPs[0]", 'Invalid value: "10.96.0.11": may not change once set')]


# ---------------------------------------------------------------------------------------
# ConfigMaps, Secrets, Namespaces
# ---------------------------------------------------------------------------------------


def test_config_map_keys_size_and_immutability() -> None:
    cm = defaulted(("", "v1", "ConfigMap"))
    cm["data"] = {"bad key": "x", "..x": "y"}
    assert errs("", "ConfigMap", cm) == [
        ("data[bad key]", 'Invalid value: "bad key": a valid config key must consist of '
         "alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
         "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
        ("data[..x]", "Invalid value: \"..x\": must not start with '..'")]
    cm["data"] = {"a": "x" * (1 << 20), "b": "y"}
    assert errs("", "ConfigMap", cm) == [("", "Too long: must have at most 1048576 bytes")]

    old = defaulted(("", "v1", "ConfigMap"))
    old["immutable"] = True
    new = copy.deepcopy(old)
    new["data"]["a.conf"] = "changed"
    assert errs("", "ConfigMap", new, old) == [
        ("data", "Forbidden: field is immutable when `immutable` is set")]
    new = copy.deepcopy(old)
    new["immutable"] = False
    assert errs("", "ConfigMap", new, old) == [
        ("immutable", "Forbidden: field is immutable when `immutable` is set")]
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"a": "b"}
    assert errs("", "ConfigMap", new, old) == []


def _secret(stype: str | None = None, **data: bytes) -> dict:
    obj: dict = {"metadata": _meta(),
                 "data": {k: base64.b64encode(val).decode() for k, val in data.items()}}
    if stype:
        obj["type"] = stype
    apply_defaults("", "v1", "Secret", obj)
    return obj


@pytest.mark.parametrize("obj, expected", [
    (_secret("kubernetes.io/dockerconfigjson"), [("data[.dockerconfigjson]", "Required value")]),
    (_secret("kubernetes.io/dockerconfigjson", **{".dockerconfigjson": b"{nope"}),
     [("data[.dockerconfigjson]", 'Invalid value: "<secret contents redacted>": invalid '
       "character 'n' looking for beginning of value")]),
    (_secret("kubernetes.io/tls", **{"tls.crt": b"c"}), [("data[tls.key]", "Required value")]),
    (_secret("kubernetes.io/basic-auth"),
     [("data[username]", "Required value"), ("data[password]", "Required value")]),
    (_secret("kubernetes.io/ssh-auth"), [("data[ssh-privatekey]", "Required value")]),
    (_secret("kubernetes.io/service-account-token"),
     [("metadata.annotations[kubernetes.io/service-account.name]", "Required value")]),
    (_secret("kubernetes.io/tls", **{"tls.crt": b"c", "tls.key": b"k"}), []),
    (_secret("example.com/custom", anything=b"goes"), []),
])
def test_secret_types(obj: dict, expected: list) -> None:
    assert errs("", "Secret", obj) == expected


def test_secret_data_and_immutability() -> None:
    s = _secret(k=b"v")
    s["data"]["raw"] = "not base64!"
    s["data"]["bad key"] = "eA=="
    got = errs("", "Secret", s)
    assert ("data[raw]", 'Invalid value: "<secret contents redacted>": illegal base64 data') \
        in got
    assert got[-1][0] == "data[bad key]"
    old = _secret(k=b"v")
    old["immutable"] = True
    new = copy.deepcopy(old)
    new["data"]["k"] = "eA=="
    new["type"] = "kubernetes.io/basic-auth"
    assert errs("", "Secret", new, old) == [
        ("data[username]", "Required value"), ("data[password]", "Required value"),
        ("data", "Forbidden: field is immutable when `immutable` is set"),
        ("type", 'Invalid value: "kubernetes.io/basic-auth": field is immutable')]


def test_namespace_spec_finalizers() -> None:
    ns = defaulted(("", "v1", "Namespace"))
    ns["spec"]["finalizers"] = ["kubernetes", "custom"]
    assert errs("", "Namespace", ns) == [("spec.finalizers", 'Invalid value: "custom": name is '
                                          "neither a standard finalizer name nor is it fully "
                                          "qualified")]


# ---------------------------------------------------------------------------------------
# batch/v1
# ---------------------------------------------------------------------------------------


def test_job_rules() -> None:
    job = defaulted(("batch", "v1", "Job"))
    job["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    job["spec"]["completions"] = -1
    job["spec"]["parallelism"] = -1
    assert errs("batch", "Job", job) == [
        ("spec.parallelism", "Invalid value: -1: must be greater than or equal to 0"),
        ("spec.completions", "Invalid value: -1: must be greater than or equal to 0"),
        ("spec.template.spec.restartPolicy", 'Required value: valid values: "OnFailure", '
         '"Never"')]
    job = defaulted(("batch", "v1", "Job"))
    job["spec"]["completionMode"] = "Indexed"
    del job["spec"]["completions"]
    assert errs("batch", "Job", job) == [
        ("spec.completions", "Required value: when completion mode is Indexed")]
    job = defaulted(("batch", "v1", "Job"))
    job["spec"]["selector"] = {"matchLabels": {"job": "other"}}
    assert errs("batch", "Job", job) == [(
        "spec.template.metadata.labels", 'Invalid value: map[string]string{"app":"x"}: '
        "`selector` does not match template `labels`")]


def test_job_update_immutables() -> None:
    old = defaulted(("batch", "v1", "Job"))
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    new["spec"]["completions"] = 3
    assert errs("batch", "Job", new, old) == [
        ("spec.completions", "Invalid value: 3: field is immutable"),
        ("spec.template", "Invalid value: core.PodTemplateSpec{...}: field is immutable")]
    new = copy.deepcopy(old)
    new["spec"]["parallelism"] = 4
    new["spec"]["suspend"] = True
    assert errs("batch", "Job", new, old) == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda s: s.pop("schedule"), ("spec.schedule", "Required value")),
    (lambda s: s.update(schedule="* * *"), ("spec.schedule", 'Invalid value: "* * *": expected '
                                            "exactly 5 fields, found 3: [* * *]")),
    (lambda s: s.update(schedule="TZ=UTC * * * * *"),
     ("spec.schedule", 'Invalid value: "TZ=UTC * * * * *": cannot use TZ or CRON_TZ in '
      "schedule, use timeZone field instead")),
    (lambda s: s.update(concurrencyPolicy="Sometimes"),
     ("spec.concurrencyPolicy", 'Unsupported value: "Sometimes": supported values: "Allow", '
      '"Forbid", "Replace"')),
    (lambda s: s.update(timeZone="Mars/Olympus"),
     ("spec.timeZone", 'Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus')),
    (lambda s: s["jobTemplate"]["spec"]["template"]["spec"].update(restartPolicy="Always"),
     ("spec.jobTemplate.spec.template.spec.restartPolicy",
      'Required value: valid values: "OnFailure", "Never"')),
    (lambda s: s["jobTemplate"]["spec"].update(selector={"matchLabels": {"a": "b"}}),
     ("spec.jobTemplate.spec.selector", 'Invalid value: v1.LabelSelector{MatchLabels:'
      'map[string]string{"a":"b"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: '
      "`selector` will be auto-generated")),
])
def test_cronjob_errors(mutate: Any, expected: tuple[str, str]) -> None:
    cj = defaulted(("batch", "v1", "CronJob"))
    mutate(cj["spec"])
    assert expected in errs("batch", "CronJob", cj)


def test_cronjob_name_limit_only_on_create() -> None:
    cj = defaulted(("batch", "v1", "CronJob"))
    cj["metadata"]["name"] = "a" * 53
    assert errs("batch", "CronJob", cj) == [
        ("metadata.name", f'Invalid value: "{"a" * 53}": must be no more than 52 characters')]
    assert errs("batch", "CronJob", copy.deepcopy(cj), cj) == []


# ---------------------------------------------------------------------------------------
# Other groups
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("gvk, mutate, expected", [
    (("scheduling.k8s.io", "v1", "PriorityClass"), lambda o: o.update(value=2_000_000_000),
     ("value", "Forbidden: maximum allowed value of a user defined priority is 1000000000")),
    (("scheduling.k8s.io", "v1", "PriorityClass"),
     lambda o: o["metadata"].update(name="system-mine"),
     ("metadata.name", "Forbidden: priority class names with 'system-' prefix are reserved for "
      "system use only. error: system-mine is not a known system priority class")),
    (("autoscaling", "v2", "HorizontalPodAutoscaler"), lambda o: o["spec"].update(minReplicas=5),
     ("spec.minReplicas", "Invalid value: 5: must be less than or equal to maxReplicas")),
    (("autoscaling", "v2", "HorizontalPodAutoscaler"),
     lambda o: o["spec"]["scaleTargetRef"].pop("name"),
     ("spec.scaleTargetRef.name", "Required value")),
    (("coordination.k8s.io", "v1", "Lease"), lambda o: o["spec"].update(leaseDurationSeconds=0),
     ("spec.leaseDurationSeconds", "Invalid value: 0: must be greater than 0")),
    (("discovery.k8s.io", "v1", "EndpointSlice"),
     lambda o: o["endpoints"][0].update(addresses=["fe80::1"]),
     ("endpoints[0].addresses[0]", 'Invalid value: "fe80::1": must be a valid IPv4 address')),
    (("policy", "v1", "PodDisruptionBudget"), lambda o: o["spec"].update(maxUnavailable=1),
     ("spec.minAvailable", 'Invalid value: "50%": minAvailable and maxUnavailable cannot be '
      "both set")),
    (("rbac.authorization.k8s.io", "v1", "Role"), lambda o: o["rules"][0].update(verbs=[]),
     ("rules[0].verbs", "Required value: verbs must contain at least one value")),
    (("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
     lambda o: o["roleRef"].update(kind="Role"),
     ("roleRef.kind", 'Unsupported value: "Role": supported values: "ClusterRole"')),
    (("rbac.authorization.k8s.io", "v1", "RoleBinding"),
     lambda o: o["subjects"].append({"kind": "Robot", "name": "r"}),
     ("subjects[2].kind", 'Unsupported value: "Robot": supported values: "ServiceAccount", '
      '"User", "Group"')),
    (("storage.k8s.io", "v1", "StorageClass"), lambda o: o.update(reclaimPolicy="Recycle"),
     ("reclaimPolicy", 'Unsupported value: "Recycle": supported values: "Delete", "Retain"')),
    (("networking.k8s.io", "v1", "Ingress"),
     lambda o: o["spec"]["rules"][0]["http"]["paths"][0].pop("pathType"),
     ("spec.rules[0].http.paths[0].pathType", "Required value: pathType must be specified")),
    (("networking.k8s.io", "v1", "Ingress"), lambda o: o["spec"].pop("rules"),
     ("spec", "Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified")),
    (("networking.k8s.io", "v1", "NetworkPolicy"),
     lambda o: o["spec"].update(policyTypes=["Sideways"]),
     ("spec.policyTypes[0]", 'Unsupported value: "Sideways": supported values: "Ingress", '
      '"Egress"')),
    (("", "v1", "PersistentVolumeClaim"), lambda o: o["spec"].update(accessModes=[]),
     ("spec.accessModes", "Required value: at least 1 access mode is required")),
    (("", "v1", "PersistentVolumeClaim"), lambda o: o["spec"]["resources"].update(requests={}),
     ("spec.resources[storage]", "Required value")),
    (("", "v1", "Node"), lambda o: o["spec"]["taints"][0].update(effect="Maybe"),
     ("spec.taints[0].effect", 'Unsupported value: "Maybe": supported values: "NoSchedule", '
      '"PreferNoSchedule", "NoExecute"')),
    (("", "v1", "Endpoints"), lambda o: o["subsets"][0]["addresses"][0].update(ip="x"),
     ("subsets[0].addresses[0].ip", 'Invalid value: "x": must be a valid IP address, (e.g. '
      "10.9.8.7 or 2001:db8::ffff)")),
])
def test_other_kinds(gvk: tuple[str, str, str], mutate: Any, expected: tuple[str, str]) -> None:
    obj = defaulted(gvk)
    mutate(obj)
    assert expected in errs(gvk[0], gvk[2], obj)


def test_update_only_rules_of_other_kinds() -> None:
    pc = defaulted(("scheduling.k8s.io", "v1", "PriorityClass"))
    new = copy.deepcopy(pc)
    new["value"] = 5
    assert errs("scheduling.k8s.io", "PriorityClass", new, pc) == [
        ("value", "Forbidden: may not be changed in an update.")]
    sc = defaulted(("storage.k8s.io", "v1", "StorageClass"))
    new = copy.deepcopy(sc)
    new["parameters"] = {"type": "ssd"}
    assert errs("storage.k8s.io", "StorageClass", new, sc) == [
        ("parameters", "Forbidden: updates to parameters are forbidden.")]
    rb = defaulted(("rbac.authorization.k8s.io", "v1", "RoleBinding"))
    new = copy.deepcopy(rb)
    new["roleRef"]["name"] = "other"
    assert errs("rbac.authorization.k8s.io", "RoleBinding", new, rb) == [
        ("roleRef", "Invalid value: rbac.RoleRef{...}: cannot change roleRef")]


# ---------------------------------------------------------------------------------------
# Robustness: wrongly typed values never crash validation
# ---------------------------------------------------------------------------------------


def _mutations(obj: Any, rng: random.Random) -> Any:
    junk = [None, 1, -5, "x", True, [], {}, [1, "a"], {"a": 1}, 1.5]
    if isinstance(obj, dict):
        return {k: (rng.choice(junk) if rng.random() < 0.2 else _mutations(x, rng))
                for k, x in obj.items()}
    if isinstance(obj, list):
        return [rng.choice(junk) if rng.random() < 0.2 else _mutations(x, rng) for x in obj]
    return obj


@pytest.mark.parametrize("seed", range(20))
def test_wrong_types_do_not_crash(seed: int) -> None:
    rng = random.Random(seed)
    for gvk in VALID:
        obj = _mutations(defaulted(gvk), rng)
        old = _mutations(defaulted(gvk), rng)
        v.validate(gvk[0], gvk[2], obj)
        v.validate(gvk[0], gvk[2], obj, old)
        apply_defaults(*gvk, _mutations(copy.deepcopy(VALID[gvk]), rng))


def test_statefulset_template_may_mount_its_claim_templates() -> None:
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                        "containers": [{"name": "c", "image": "busybox",
                                        "volumeMounts": [{"name": "data",
                                                          "mountPath": "/data"}]}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}]}}
    assert v.validate("apps", "StatefulSet", sts, None) == []
    sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] = "other"
    errs = v.validate("apps", "StatefulSet", sts, None)
    assert [e["field"] for e in errs] == [
        "spec.template.spec.containers[0].volumeMounts[0].name"]
