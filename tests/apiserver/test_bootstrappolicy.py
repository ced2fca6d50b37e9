"""The RBAC bootstrap policy data (upstream 1.32's bootstrappolicy testdata)."""
from __future__ import annotations

from typing import Any

from pyk8s.apiserver.authz import bootstrappolicy as bp
from pyk8s.apiserver.authz.rbac import covers

Obj = dict[str, Any]


def by_name(objs: list[Obj]) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objs}


def grants(role: Obj, verb: str, group: str, resource: str) -> bool:
    ok, _ = covers(role["rules"], [bp.rule((verb,), (group,), (resource,))])
    return ok


def test_names_are_unique_and_every_object_is_labelled_and_autoupdated() -> None:
    policy = bp.bootstrap_policy()
    everything = policy.cluster_roles + policy.cluster_role_bindings + \
        [o for objs in policy.roles.values() for o in objs] + \
        [o for objs in policy.role_bindings.values() for o in objs]
    assert len(by_name(policy.cluster_roles)) == len(policy.cluster_roles)
    assert len(by_name(policy.cluster_role_bindings)) == len(policy.cluster_role_bindings)
    for o in everything:
        md = o["metadata"]
        assert o["apiVersion"] == "rbac.authorization.k8s.io/v1"
        assert md["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults", md["name"]
        assert md["annotations"] == {"rbac.authorization.kubernetes.io/autoupdate": "true"}


def test_the_bootstrap_cluster_roles_are_there() -> None:
    names = set(by_name(bp.cluster_roles()))
    assert {"cluster-admin", "admin", "edit", "view", "system:aggregate-to-admin",
            "system:aggregate-to-edit", "system:aggregate-to-view", "system:discovery",
            "system:basic-user", "system:public-info-viewer", "system:auth-delegator",
            "system:heapster", "system:monitoring", "system:node", "system:node-proxier",
            "system:node-bootstrapper", "system:kube-scheduler",
            "system:kube-controller-manager", "system:kube-dns", "system:volume-scheduler",
            "system:persistent-volume-provisioner", "system:kube-aggregator",
            "system:service-account-issuer-discovery", "system:kubelet-api-admin",
            "system:node-problem-detector",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            "system:certificates.k8s.io:kubelet-serving-approver",
            "system:certificates.k8s.io:legacy-unknown-approver"} <= names


def test_cluster_admin_is_everything_on_everything() -> None:
    admin = by_name(bp.cluster_roles())["cluster-admin"]
    assert admin["rules"] == [
        {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
        {"verbs": ["*"], "nonResourceURLs": ["*"]}]
    binding = by_name(bp.cluster_role_bindings())["cluster-admin"]
    assert binding["subjects"] == [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
                                    "name": "system:masters"}]


def test_user_facing_roles_aggregate_and_chain_admin_edit_view() -> None:
    roles = by_name(bp.cluster_roles())
    for name in ("admin", "edit", "view"):
        assert roles[name]["rules"] == []
        assert roles[name]["aggregationRule"] == {"clusterRoleSelectors": [
            {"matchLabels": {f"rbac.authorization.k8s.io/aggregate-to-{name}": "true"}}]}
        assert roles[f"system:aggregate-to-{name}"]["metadata"]["labels"][
            f"rbac.authorization.k8s.io/aggregate-to-{name}"] == "true"
    # view's rules flow into edit, edit's into admin.
    assert roles["view"]["metadata"]["labels"][
        "rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert roles["edit"]["metadata"]["labels"][
        "rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert "aggregationRule" not in roles["cluster-admin"]


def test_view_has_no_secrets_edit_writes_them_admin_manages_rbac() -> None:
    roles = by_name(bp.cluster_roles())
    view, edit, admin = (roles[f"system:aggregate-to-{n}"] for n in ("view", "edit", "admin"))
    for verb in ("get", "list", "watch"):
        assert not grants(view, verb, "", "secrets")
        assert grants(view, verb, "", "pods")
        assert grants(view, verb, "apps", "deployments")
    assert not grants(view, "create", "", "pods")
    assert grants(edit, "get", "", "secrets") and grants(edit, "create", "", "secrets")
    assert grants(edit, "create", "", "pods/exec")
    assert not grants(edit, "create", "rbac.authorization.k8s.io", "rolebindings")
    assert grants(admin, "create", "rbac.authorization.k8s.io", "rolebindings")


def test_discovery_and_public_info_are_non_resource_urls() -> None:
    roles = by_name(bp.cluster_roles())
    assert roles["system:discovery"]["rules"] == [{"verbs": ["get"], "nonResourceURLs": [
        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
        "/readyz", "/version", "/version/"]}]
    assert roles["system:public-info-viewer"]["rules"] == [{"verbs": ["get"], "nonResourceURLs": [
        "/healthz", "/livez", "/readyz", "/version", "/version/"]}]
    bindings = by_name(bp.cluster_role_bindings())
    groups = [s["name"] for s in bindings["system:public-info-viewer"]["subjects"]]
    assert groups == ["system:authenticated", "system:unauthenticated"]
    assert [s["name"] for s in bindings["system:discovery"]["subjects"]] == \
        ["system:authenticated"]


def test_rules_are_sorted_as_rule_or_die_sorts_them() -> None:
    for role in bp.cluster_roles():
        for r in role["rules"]:
            for f in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"):
                if f in r:
                    assert r[f] == sorted(r[f]), (role["metadata"]["name"], r)


def test_every_controller_role_has_its_service_account_binding() -> None:
    roles = bp.controller_roles()
    bindings = by_name(bp.controller_role_bindings())
    assert len(roles) == len(bindings) == 33
    for role in roles:
        name = role["metadata"]["name"]
        assert name.startswith("system:controller:")
        b = bindings[name]
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                "kind": "ClusterRole", "name": name}
        assert b["subjects"] == [{"kind": "ServiceAccount", "namespace": "kube-system",
                                  "name": name[len("system:controller:"):]}]
    names = set(bindings)
    assert {"system:controller:deployment-controller", "system:controller:replicaset-controller",
            "system:controller:clusterrole-aggregation-controller",
            "system:controller:generic-garbage-collector",
            "system:controller:route-controller", "system:controller:service-controller",
            "system:controller:root-ca-cert-publisher",
            "system:controller:legacy-service-account-token-cleaner",
            "system:controller:validatingadmissionpolicy-status-controller"} <= names
    # Gated off by default in 1.32.
    assert "system:controller:resource-claim-controller" not in names
    assert "system:controller:service-cidrs-controller" not in names


def test_controller_roles_grant_what_their_controllers_do() -> None:
    roles = by_name(bp.controller_roles())
    agg = roles["system:controller:clusterrole-aggregation-controller"]
    assert agg["rules"] == [{"verbs": ["escalate", "get", "list", "patch", "update", "watch"],
                             "apiGroups": ["rbac.authorization.k8s.io"],
                             "resources": ["clusterroles"]}]
    rs = roles["system:controller:replicaset-controller"]
    assert grants(rs, "create", "", "pods") and grants(rs, "update", "apps", "replicasets/status")
    assert grants(rs, "create", "events.k8s.io", "events")
    gc = roles["system:controller:generic-garbage-collector"]
    assert grants(gc, "delete", "anything.example.com", "widgets")
    assert not grants(gc, "create", "", "pods")
    csr = roles["system:controller:certificate-controller"]
    ok, _ = covers(csr["rules"], [bp.rule(("sign",), ("certificates.k8s.io",), ("signers",),
                                          names=("kubernetes.io/kubelet-serving",))])
    assert ok


def test_node_role_and_its_empty_binding() -> None:
    roles = by_name(bp.cluster_roles())
    node = roles["system:node"]
    assert grants(node, "create", "", "nodes") and grants(node, "patch", "", "nodes/status")
    assert grants(node, "create", "certificates.k8s.io", "certificatesigningrequests")
    assert grants(node, "update", "coordination.k8s.io", "leases")
    # Deprecated since the Node authorizer: no subjects.
    assert by_name(bp.cluster_role_bindings())["system:node"]["subjects"] == []


def test_namespace_roles_and_bindings() -> None:
    roles = {ns: by_name(objs) for ns, objs in bp.namespace_roles().items()}
    assert set(roles["kube-system"]) == {
        "extension-apiserver-authentication-reader",
        "system::leader-locking-kube-controller-manager",
        "system::leader-locking-kube-scheduler", "system:controller:bootstrap-signer",
        "system:controller:cloud-provider", "system:controller:token-cleaner"}
    assert set(roles["kube-public"]) == {"system:controller:bootstrap-signer"}
    reader = roles["kube-system"]["extension-apiserver-authentication-reader"]
    assert reader["rules"] == [{"verbs": ["get", "list", "watch"], "apiGroups": [""],
                                "resources": ["configmaps"],
                                "resourceNames": ["extension-apiserver-authentication"]}]
    for ns, objs in bp.namespace_roles().items():
        for r in objs:
            assert r["kind"] == "Role" and r["metadata"]["namespace"] == ns
    bindings = {ns: by_name(objs) for ns, objs in bp.namespace_role_bindings().items()}
    reader_binding = bindings["kube-system"]["system::extension-apiserver-authentication-reader"]
    assert reader_binding["roleRef"]["name"] == "extension-apiserver-authentication-reader"
    assert [s["name"] for s in reader_binding["subjects"]] == \
        ["system:kube-controller-manager", "system:kube-scheduler"]
    signer = bindings["kube-public"]["system:controller:bootstrap-signer"]
    assert signer["subjects"] == [{"kind": "ServiceAccount", "name": "bootstrap-signer",
                                   "namespace": "kube-system"}]
    # Every binding refers to a role of its namespace.
    for ns, objs in bindings.items():
        for b in objs.values():
            assert b["roleRef"]["name"] in roles[ns]


def test_pyk8s_bindings_let_bootstrap_tokens_join_nodes() -> None:
    bindings = by_name(bp.pyk8s_bindings())
    assert {n: (b["roleRef"]["name"], [s["name"] for s in b["subjects"]])
            for n, b in bindings.items()} == {
        "pyk8s:kubelet-bootstrap": ("system:node-bootstrapper", ["system:bootstrappers"]),
        "pyk8s:node-autoapprove-bootstrap": (
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            ["system:bootstrappers"]),
        "pyk8s:node-autoapprove-certificate-rotation": (
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            ["system:nodes"]),
        "pyk8s:kubelet-serving-approver": (
            "system:certificates.k8s.io:kubelet-serving-approver", ["certificate-controller"]),
        "pyk8s:node-addon-approver": (
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            ["certificate-controller"]),
        "pyk8s:cluster-dns": ("pyk8s:cluster-dns", ["kube-dns"]),
        "system:pyk8s:network-policy": ("system:pyk8s:network-policy", ["system:kube-proxy"])}
    assert set(bindings) <= {b["metadata"]["name"]
                             for b in bp.bootstrap_policy().cluster_role_bindings}


def test_every_cluster_role_binding_refers_to_a_bootstrap_role() -> None:
    roles = set(by_name(bp.bootstrap_policy().cluster_roles))
    for b in bp.bootstrap_policy().cluster_role_bindings:
        assert b["roleRef"]["kind"] == "ClusterRole"
        assert b["roleRef"]["name"] in roles, b["metadata"]["name"]


def test_functions_return_fresh_objects() -> None:
    a = bp.cluster_roles()
    a[0]["rules"].clear()
    a[0]["metadata"]["labels"]["x"] = "y"
    b = by_name(bp.cluster_roles())["cluster-admin"]
    assert b["rules"] and "x" not in b["metadata"]["labels"]
