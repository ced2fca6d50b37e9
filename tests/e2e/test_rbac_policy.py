"""The RBAC bootstrap policy in a real `pyk8s up`, driven by kubectl: the bootstrap roles
and bindings exist, ClusterRole aggregation (a user role labelled aggregate-to-view shows
up in view, edit and admin), and reconciliation at restart (a deleted bootstrap role comes
back, removed rules come back, a role annotated autoupdate "false" is left alone)."""
from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, wait_for

Obj = dict[str, Any]
READY = "clusterrole-aggregation controller: synced"
WIDGETS = {"apiGroups": ["example.com"], "resources": ["widgets"],
           "verbs": ["get", "list", "watch"]}
CRD_VIEWER = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
    "metadata": {"name": "e2e-widget-viewer",
                 "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
    "rules": [WIDGETS]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    up = ServerProcess(tmp_path_factory.mktemp("pyk8s-rbac"), command="up",
                       ready_log=READY).start()
    try:
        yield up
    finally:
        up.stop()


def clusterrole(up: ServerProcess, name: str) -> Obj:
    return up.kubectl_json("get", "clusterrole", name)  # type: ignore[no-any-return]


def rules(up: ServerProcess, name: str) -> list[Obj]:
    return list(clusterrole(up, name).get("rules") or [])


def test_kubectl_lists_the_bootstrap_roles_and_bindings(cluster: ServerProcess) -> None:
    roles = set(cluster.kubectl("get", "clusterroles", "-o", "name").stdout.split())
    for name in ("cluster-admin", "admin", "edit", "view", "system:discovery",
                 "system:basic-user", "system:public-info-viewer", "system:node",
                 "system:kube-scheduler", "system:kube-controller-manager",
                 "system:aggregate-to-view", "system:controller:deployment-controller",
                 "system:controller:clusterrole-aggregation-controller",
                 "system:certificates.k8s.io:certificatesigningrequests:nodeclient"):
        assert f"clusterrole.rbac.authorization.k8s.io/{name}" in roles
    table = cluster.kubectl("get", "clusterroles").stdout
    assert table.splitlines()[0].split() == ["NAME", "CREATED", "AT"]
    bindings = set(cluster.kubectl("get", "clusterrolebindings", "-o", "name").stdout.split())
    for name in ("cluster-admin", "system:discovery", "pyk8s:kubelet-bootstrap",
                 "pyk8s:node-autoapprove-bootstrap",
                 "system:controller:replicaset-controller"):
        assert f"clusterrolebinding.rbac.authorization.k8s.io/{name}" in bindings
    roles_ks = cluster.kubectl("get", "roles", "-n", "kube-system", "-o", "name").stdout
    assert "role.rbac.authorization.k8s.io/extension-apiserver-authentication-reader" in roles_ks
    admin = clusterrole(cluster, "cluster-admin")
    assert admin["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
    assert admin["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] \
        == "true"


def test_view_edit_admin_are_aggregated(cluster: ServerProcess) -> None:
    view_src = rules(cluster, "system:aggregate-to-view")
    wait_for("view's aggregated rules", lambda: rules(cluster, "view") == view_src)
    assert not any("secrets" in r.get("resources", []) for r in rules(cluster, "view"))
    edit = wait_for("edit's aggregated rules",
                    lambda: (r := rules(cluster, "edit")) and len(r) > len(view_src) and r)
    assert all(r in edit for r in view_src)
    assert any("secrets" in r.get("resources", []) for r in edit)
    admin = wait_for("admin's aggregated rules",
                     lambda: (r := rules(cluster, "admin")) and len(r) > len(edit) and r)
    assert all(r in admin for r in edit)


def test_a_labelled_user_role_appears_in_view_edit_and_admin(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(CRD_VIEWER))
    for name in ("view", "edit", "admin"):
        wait_for(f"the widgets rule in {name}", lambda n=name: WIDGETS in rules(cluster, n),
                 timeout=10)
    view = cluster.kubectl_json("get", "clusterrole", "view", "--show-managed-fields")
    managers = {e["manager"] for e in view["metadata"]["managedFields"]}
    assert "clusterrole-aggregation-controller" in managers
    cluster.kubectl("delete", "clusterrole", "e2e-widget-viewer")
    for name in ("view", "edit", "admin"):
        wait_for(f"the widgets rule gone from {name}",
                 lambda n=name: WIDGETS not in rules(cluster, n), timeout=10)


def test_restart_reconciles_autoupdate_roles_and_leaves_protected_ones(
        cluster: ServerProcess) -> None:
    discovery = clusterrole(cluster, "system:discovery")
    cluster.kubectl("delete", "clusterrole", "system:discovery")
    # A rule removed from an autoupdate role, a user's extra rule on it.
    basic = rules(cluster, "system:basic-user")
    cluster.kubectl("patch", "clusterrole", "system:basic-user", "--type=json", "-p",
                    json.dumps([{"op": "replace", "path": "/rules", "value": [WIDGETS]}]))
    # A protected role, emptied.
    cluster.kubectl("annotate", "clusterrole", "system:heapster", "--overwrite",
                    "rbac.authorization.kubernetes.io/autoupdate=false")
    cluster.kubectl("patch", "clusterrole", "system:heapster", "--type=json", "-p",
                    json.dumps([{"op": "replace", "path": "/rules", "value": [WIDGETS]}]))
    # A binding whose subject was removed.
    cluster.kubectl("patch", "clusterrolebinding", "system:basic-user", "--type=json", "-p",
                    json.dumps([{"op": "replace", "path": "/subjects", "value": []}]))
    untouched = clusterrole(cluster, "system:kube-dns")["metadata"]["resourceVersion"]
    assert cluster.kubectl("get", "clusterrole", "system:discovery",
                           check=False).returncode != 0

    cluster.stop()
    cluster.start()

    back = clusterrole(cluster, "system:discovery")
    assert back["rules"] == discovery["rules"]
    assert back["metadata"]["uid"] != discovery["metadata"]["uid"]
    restored = rules(cluster, "system:basic-user")
    assert restored[0] == WIDGETS
    # The missing permissions come back (as upstream: one atomic rule per permission).
    for r in basic:
        for res in r["resources"]:
            assert {"apiGroups": r["apiGroups"], "resources": [res],
                    "verbs": r["verbs"]} in restored
    assert rules(cluster, "system:heapster") == [WIDGETS]
    subjects = cluster.kubectl_json("get", "clusterrolebinding", "system:basic-user")[
        "subjects"]
    assert subjects == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                         "name": "system:authenticated"}]
    # What needed nothing was not written.
    assert clusterrole(cluster, "system:kube-dns")["metadata"]["resourceVersion"] == untouched
