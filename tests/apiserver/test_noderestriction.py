"""NodeRestriction through the store's admission chain: what a node may write, with
upstream's messages."""
from __future__ import annotations

import base64
from typing import Any

import pytest

from pyk8s.api import errors
from pyk8s.apiserver.admission import Attributes
from pyk8s.apiserver.admission.noderestriction import forbidden_labels, modified_labels
from pyk8s.apiserver.admission.plugins import ORDER
from pyk8s.apiserver.app import APIServer, ServerConfig
from pyk8s.apiserver.authn import UserInfo
from pyk8s.kubelet.certificates import CLIENT_SIGNER, Subject, make_csr, new_private_key
from pyk8s.registry.store import DeleteOptions
from pyk8s.storage.memory import MemoryStorage

Obj = dict[str, Any]

N1 = UserInfo("system:node:n1", groups=("system:nodes", "system:authenticated"))
ALICE = UserInfo("alice", groups=("system:authenticated",))
MIRROR = "kubernetes.io/config.mirror"


def store(s: APIServer, group: str, plural: str, version: str = "v1") -> Any:
    info = s.catalogue.lookup(group, version, plural)
    assert info is not None
    return s.store(info)


def node(name: str, **labels: str) -> Obj:
    return {"metadata": {"name": name, "labels": labels}, "spec": {}}


def pod(name: str, node_name: str = "n1", **spec: Any) -> Obj:
    return {"metadata": {"name": name},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "nginx"}],
                     **spec}}


async def mirror_pod(s: APIServer, name: str = "static", **spec: Any) -> Obj:
    n1 = await store(s, "", "nodes").get(None, "n1")
    p = pod(name, **spec)
    p["metadata"]["annotations"] = {MIRROR: "hash"}
    p["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": "n1",
                                         "uid": n1["metadata"]["uid"], "controller": True}]
    return p


def test_labels_a_kubelet_may_set() -> None:
    keys = modified_labels({"a": "1", "kubernetes.io/hostname": "h", "same": "x"},
                           {"a": "2", "gone": "", "same": "x"})
    assert keys == {"a", "kubernetes.io/hostname", "gone"}
    assert forbidden_labels({
        "kubernetes.io/hostname", "node.kubernetes.io/instance-type", "kubernetes.io/arch",
        "kubelet.kubernetes.io/x", "foo.node.kubernetes.io/y", "example.com/z", "plain",
        "topology.kubernetes.io/zone", "beta.kubernetes.io/os"}) == []
    assert forbidden_labels({
        "node-restriction.kubernetes.io/pool", "a.node-restriction.kubernetes.io/b",
        "node-role.kubernetes.io/control-plane", "k8s.io/x", "foo.k8s.io/y",
        "kubernetes.io/role"}) == [
        "a.node-restriction.kubernetes.io/b", "foo.k8s.io/y", "k8s.io/x",
        "kubernetes.io/role", "node-restriction.kubernetes.io/pool",
        "node-role.kubernetes.io/control-plane"]


def test_registered_in_upstream_order(server: APIServer) -> None:
    assert ORDER.index("ServiceAccount") < ORDER.index("NodeRestriction") < \
        ORDER.index("DefaultStorageClass")
    assert [p.name for p in server.admission.plugins][:4] == \
        ["NamespaceLifecycle", "LimitRanger", "ServiceAccount", "NodeRestriction"]


async def test_disabled_by_flag() -> None:
    s = APIServer(MemoryStorage(), ServerConfig(compaction_interval=0,
                                                disabled_admission_plugins=("NodeRestriction",)))
    await s.start()
    try:
        assert s.admission.get("NodeRestriction") is None
        await store(s, "", "nodes").create(None, node("n2"), user=N1)
    finally:
        await s.stop()


async def test_nodes_only_their_own(server: APIServer) -> None:
    nodes = store(server, "", "nodes")
    with pytest.raises(errors.Forbidden) as e:
        await nodes.create(None, node("n2"), user=N1)
    assert str(e.value) == 'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'
    with pytest.raises(errors.Forbidden, match='node "n1" is not allowed to set the following '
                       r"labels: foo.k8s.io/x, node-restriction.kubernetes.io/pool$"):
        await nodes.create(None, node("n1", **{"node-restriction.kubernetes.io/pool": "a",
                                               "foo.k8s.io/x": "b",
                                               "kubernetes.io/hostname": "n1"}), user=N1)
    await nodes.create(None, node("n1", **{"kubernetes.io/hostname": "n1",
                                           "example.com/rack": "r1"}), user=N1)
    await nodes.create(None, node("n2"))  # the admin

    def taint(cur: Obj) -> Obj:
        cur["spec"]["taints"] = [{"key": "k", "effect": "NoSchedule"}]
        return cur
    with pytest.raises(errors.Forbidden, match='node "n1" is not allowed to modify taints'):
        await nodes.update(None, "n1", taint, user=N1)

    def relabel(cur: Obj) -> Obj:
        cur["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = ""
        cur["metadata"]["labels"]["example.com/rack"] = "r2"
        return cur
    with pytest.raises(errors.Forbidden) as e:
        await nodes.update(None, "n1", relabel, user=N1)
    assert str(e.value) == ('nodes "n1" is forbidden: is not allowed to modify labels: '
                            "node-role.kubernetes.io/control-plane")

    def ready(cur: Obj) -> Obj:
        cur["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
        return cur
    await nodes.update(None, "n1", ready, subresource="status", user=N1)
    with pytest.raises(errors.Forbidden, match='node "n1" is not allowed to modify node "n2"'):
        await nodes.update(None, "n2", ready, subresource="status", user=N1)
    await nodes.update(None, "n1", lambda cur: cur, user=N1)  # nothing changed: fine
    # others are not restricted
    await nodes.update(None, "n1", taint, user=ALICE)
    with pytest.raises(errors.Forbidden, match='not allowed to modify node "n2"'):
        await nodes.delete(None, "n2", DeleteOptions(), user=N1)


async def test_mirror_pods_only(server: APIServer) -> None:
    await store(server, "", "nodes").create(None, node("n1"))
    pods = store(server, "", "pods")
    with pytest.raises(errors.Forbidden) as e:
        await pods.create("default", pod("plain"), user=N1)
    assert str(e.value) == ('pods "plain" is forbidden: pod does not have '
                            '"kubernetes.io/config.mirror" annotation, node "n1" can only '
                            "create mirror pods")
    ok = await mirror_pod(server)
    created, _ = await pods.create("default", ok, user=N1)
    assert "serviceAccountName" not in created["spec"]

    async def refused(p: Obj, message: str) -> None:
        with pytest.raises(errors.Forbidden) as e:
            await pods.create("default", p, user=N1)
        assert str(e.value).split(": ", 1)[1] == message

    elsewhere = await mirror_pod(server, "m2")
    elsewhere["spec"]["nodeName"] = "n2"
    await refused(elsewhere, 'node "n1" can only create pods with spec.nodeName set to itself')
    orphan = await mirror_pod(server, "m3")
    orphan["metadata"]["ownerReferences"] = []
    await refused(orphan, 'node "n1" can only create pods with an owner reference set to itself')
    not_controller = await mirror_pod(server, "m4")
    not_controller["metadata"]["ownerReferences"][0]["controller"] = False
    await refused(not_controller,
                  'node "n1" can only create pods with a controller owner reference set to itself')
    blocking = await mirror_pod(server, "m5")
    blocking["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = True
    await refused(blocking, 'node "n1" must not set blockOwnerDeletion on an owner reference')
    stale = await mirror_pod(server, "m6")
    stale["metadata"]["ownerReferences"][0]["uid"] = "old"
    uid = (await store(server, "", "nodes").get(None, "n1"))["metadata"]["uid"]
    await refused(stale, f"node n1 UID mismatch: expected old got {uid}")
    await refused(await mirror_pod(server, "m7", serviceAccountName="robot"),
                  'node "n1" can not create pods that reference a service account')
    await refused(await mirror_pod(server, "m8", imagePullSecrets=[{"name": "pull"}]),
                  'node "n1" can not create pods that reference secrets')
    await refused(await mirror_pod(server, "m9", volumes=[
        {"name": "v", "configMap": {"name": "cm"}}]),
        'node "n1" can not create pods that reference configmaps')
    await refused(await mirror_pod(server, "m10", volumes=[
        {"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]),
        'node "n1" can not create pods that reference persistentvolumeclaims')
    await refused(await mirror_pod(server, "m11", volumes=[{"name": "v", "projected": {
        "sources": [{"clusterTrustBundle": {"name": "b", "path": "p"}}]}}]),
        'node "n1" can not create pods that reference clustertrustbundles')


async def test_pod_delete_status_and_eviction_of_own_pods(server: APIServer) -> None:
    pods = store(server, "", "pods")
    await pods.create("default", pod("mine"))
    await pods.create("default", pod("theirs", "n2"))

    def running(cur: Obj) -> Obj:
        cur["status"] = {"phase": "Running"}
        return cur
    await pods.update("default", "mine", running, subresource="status", user=N1)
    with pytest.raises(errors.Forbidden) as e:
        await pods.update("default", "theirs", running, subresource="status", user=N1)
    assert str(e.value) == ('pods "theirs" is forbidden: node "n1" can only update pod status '
                            "for pods with spec.nodeName set to itself")

    def relabel(cur: Obj) -> Obj:
        cur["metadata"]["labels"] = {"hijacked": "yes"}
        return cur
    # labels through status: the store's status strategy keeps the old metadata anyway; the
    # plugin's own check, as upstream's (whose status strategy lets labels through)
    old = await pods.get("default", "mine")
    new = relabel(dict(old, metadata=dict(old["metadata"])))
    with pytest.raises(errors.Forbidden, match='node "n1" cannot update labels through pod '
                                               "status"):
        await server.admission.admit(Attributes("UPDATE", "", "v1", "pods", "Pod", "default",
                                                "mine", new, old, subresource="status",
                                                user=N1))
    claims = dict(old, status={"resourceClaimStatuses": [{"name": "gpu",
                                                          "resourceClaimName": "other"}]})
    with pytest.raises(errors.Forbidden, match='node "n1" cannot update resource claim statues'):
        await server.admission.admit(Attributes("UPDATE", "", "v1", "pods", "Pod", "default",
                                                "mine", claims, old, subresource="status",
                                                user=N1))
    with pytest.raises(errors.Forbidden, match='unexpected operation "UPDATE", node "n1" can '
                                               "only create and delete mirror pods"):
        await pods.update("default", "mine", relabel, user=N1)

    # evictions: the chain sees a create of pods/eviction (as eviction.handle builds it)
    def eviction(name: str) -> Attributes:
        return Attributes("CREATE", "", "v1", "pods", "Eviction", "default", name,
                          {"apiVersion": "policy/v1", "kind": "Eviction",
                           "metadata": {"name": name}}, subresource="eviction", user=N1)
    await server.admission.admit(eviction("mine"))
    with pytest.raises(errors.Forbidden) as e:
        await server.admission.admit(eviction("theirs"))
    assert str(e.value) == ('pods "theirs" is forbidden: node n1 can only evict pods with '
                            "spec.nodeName set to itself")
    with pytest.raises(errors.NotFound, match='pods "ghost" not found'):
        await server.admission.admit(eviction("ghost"))

    with pytest.raises(errors.Forbidden) as e:
        await pods.delete("default", "theirs", DeleteOptions(grace_period_seconds=0), user=N1)
    assert str(e.value) == ('pods "theirs" is forbidden: node "n1" can only delete pods with '
                            "spec.nodeName set to itself")
    await pods.delete("default", "mine", DeleteOptions(grace_period_seconds=0), user=N1)


async def test_service_account_tokens_bound_to_own_pods(server: APIServer) -> None:
    pods = store(server, "", "pods")
    mine, _ = await pods.create("default", pod("mine"))
    theirs, _ = await pods.create("default", pod("theirs", "n2"))
    await server.cache.consistent_rev()

    def token(ref: Obj | None) -> Attributes:
        spec: Obj = {"audiences": ["api"]}
        if ref is not None:
            spec["boundObjectRef"] = ref
        return Attributes("CREATE", "", "v1", "serviceaccounts", "TokenRequest", "default",
                          "default", {"spec": spec}, subresource="token", user=N1)

    def ref(p: Obj, **over: str) -> Obj:
        return {"apiVersion": "v1", "kind": "Pod", "name": p["metadata"]["name"],
                "uid": p["metadata"]["uid"], **over}

    await server.admission.admit(token(ref(mine)))

    async def refused(attrs: Attributes, message: str) -> None:
        with pytest.raises(errors.Forbidden) as e:
            await server.admission.admit(attrs)
        assert str(e.value) == f'serviceaccounts "default" is forbidden: {message}'

    await refused(token(None), "node requested token not bound to a pod")
    await refused(token(ref(mine, kind="Secret")), "node requested token not bound to a pod")
    await refused(token(ref(mine, uid="")), "node requested token with a pod binding without a uid")
    await refused(token(ref(mine, uid="old")),
                  "the UID in the bound object reference (old) does not match the UID in record. "
                  "The object might have been deleted and then recreated")
    await refused(token(ref(theirs)),
                  "node requested token bound to a pod scheduled on a different node")


async def test_leases_claims_and_csrs(server: APIServer) -> None:
    leases = store(server, "coordination.k8s.io", "leases")
    await leases.create("kube-node-lease", {"metadata": {"name": "n1"}, "spec": {}}, user=N1)
    with pytest.raises(errors.Forbidden) as e:
        await leases.create("kube-node-lease", {"metadata": {"name": "n2"}, "spec": {}}, user=N1)
    assert str(e.value) == ('leases.coordination.k8s.io "n2" is forbidden: can only access node '
                            "lease with the same name as the requesting node")
    with pytest.raises(errors.Forbidden, match='can only access leases in the "kube-node-lease" '
                                               "system namespace"):
        await leases.create("default", {"metadata": {"name": "n1"}, "spec": {}}, user=N1)

    claims = store(server, "", "persistentvolumeclaims")
    await claims.create("default", {"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})

    def resized(cur: Obj) -> Obj:
        cur["status"] = {"capacity": {"storage": "2Gi"},
                         "conditions": [{"type": "Resizing", "status": "True"}]}
        return cur
    await claims.update("default", "data", resized, subresource="status", user=N1)

    def bound(cur: Obj) -> Obj:
        cur["status"]["phase"] = "Bound"
        return cur
    with pytest.raises(errors.Forbidden, match='node "n1" is not allowed to update fields other '
                                               "than status.quantity and status.conditions: "
                                               "status.phase"):
        await claims.update("default", "data", bound, subresource="status", user=N1)
    with pytest.raises(errors.Forbidden, match="may only update PVC status"):
        await claims.update("default", "data", lambda cur: cur, user=N1)

    csrs = store(server, "certificates.k8s.io", "certificatesigningrequests")

    def csr(name: str, common_name: str, signer: str = CLIENT_SIGNER) -> Obj:
        pem = make_csr(new_private_key(), Subject(common_name))
        return {"metadata": {"name": name}, "spec": {
            "request": base64.b64encode(pem).decode(), "signerName": signer,
            "usages": ["digital signature", "client auth"]}}
    await csrs.create(None, csr("own", "system:node:n1"), user=N1)
    with pytest.raises(errors.Forbidden) as e:
        await csrs.create(None, csr("other", "system:node:n2"), user=N1)
    assert str(e.value) == ('certificatesigningrequests.certificates.k8s.io "other" is '
                            "forbidden: can only create a node CSR with CN=system:node:n1")
    await csrs.create(None, csr("custom", "anything", signer="example.com/x"), user=N1)
    await csrs.create(None, csr("admin", "system:node:n2"), user=ALICE)


async def test_unidentifiable_nodes_are_refused(server: APIServer) -> None:
    nameless = UserInfo("system:node:", groups=("system:nodes",))
    with pytest.raises(errors.Forbidden, match='could not determine node from user '
                                               '"system:node:"'):
        await store(server, "", "configmaps").create(
            "default", {"metadata": {"name": "c"}}, user=nameless)
    # a node writing what NodeRestriction does not look at: the authorizer's business
    await store(server, "", "configmaps").create("default", {"metadata": {"name": "c"}},
                                                 user=N1)
