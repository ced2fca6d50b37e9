"""The Node authorizer against an in-process API server: decisions and reasons as
upstream's (1.32, AuthorizeNodeWithSelectors on), and a graph that follows the watch cache."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest

from pyk8s.apiserver.app import APIServer
from pyk8s.apiserver.authn import UserInfo
from pyk8s.apiserver.authz.attributes import Attributes, Decision
from pyk8s.apiserver.authz.node import NodeAuthorizer
from pyk8s.registry.store import DeleteOptions

Obj = dict[str, Any]

N1 = UserInfo("system:node:n1", groups=("system:nodes", "system:authenticated"))
N2 = UserInfo("system:node:n2", groups=("system:nodes", "system:authenticated"))
ALLOW = (Decision.ALLOW, "")
NO_RELATIONSHIP = (Decision.NO_OPINION, "no relationship found between node 'n1' and this object")


def store(s: APIServer, group: str, plural: str, version: str = "v1") -> Any:
    info = s.catalogue.lookup(group, version, plural)
    assert info is not None
    return s.store(info)


def pod(name: str, node: str = "n1", **spec: Any) -> Obj:
    return {"metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}], **spec}}


def req(user: UserInfo, verb: str, resource: str, name: str = "", namespace: str = "",
        **kw: Any) -> Attributes:
    return Attributes(user=user, verb=verb, resource=resource, name=name, namespace=namespace,
                      api_version="v1", **kw)


@pytest.fixture
async def authz(server: APIServer) -> AsyncIterator[NodeAuthorizer]:
    a = NodeAuthorizer(server)
    await a.start()
    try:
        yield a
    finally:
        await a.stop()


async def test_only_nodes_get_an_opinion(authz: NodeAuthorizer) -> None:
    alice = UserInfo("alice", groups=("system:nodes",))
    assert await authz.authorize(req(alice, "get", "secrets", "s", "default")) == \
        (Decision.NO_OPINION, "")
    # the name without the group is not a node either
    impostor = UserInfo("system:node:n1", groups=("system:authenticated",))
    assert await authz.authorize(req(impostor, "get", "nodes", "n1")) == \
        (Decision.NO_OPINION, "")
    nameless = UserInfo("system:node:", groups=("system:nodes",))
    assert await authz.authorize(req(nameless, "get", "nodes", "n1")) == \
        (Decision.NO_OPINION, 'unknown node for user "system:node:"')
    assert authz.rules_for(N1, "default") == \
        ([], [], True, "node authorizer does not support user rule resolution")
    assert authz.rules_for(UserInfo("alice"), "default") == ([], [], False, "")


async def test_secrets_of_pods_on_the_node(server: APIServer, authz: NodeAuthorizer) -> None:
    for name in ("s1", "s2"):
        await store(server, "", "secrets").create("default", {"metadata": {"name": name}})
    await store(server, "", "pods").create("default", pod(
        "web", volumes=[{"name": "v", "secret": {"secretName": "s1"}}],
        containers=[{"name": "c", "image": "nginx", "envFrom": [{"configMapRef": {"name": "cm"}}]}]))
    # asked at once: the graph catches up with the cache (and the cache with storage)
    assert await authz.authorize(req(N1, "get", "secrets", "s1", "default")) == ALLOW
    assert await authz.authorize(req(N1, "get", "secrets", "s2", "default")) == NO_RELATIONSHIP
    assert await authz.authorize(req(N2, "get", "secrets", "s1", "default")) == \
        (Decision.NO_OPINION, "no relationship found between node 'n2' and this object")
    assert await authz.authorize(req(N1, "get", "configmaps", "cm", "default")) == ALLOW
    # the service account defaulted by admission
    assert await authz.authorize(req(N1, "create", "serviceaccounts", "default", "default",
                                     subresource="token")) == ALLOW
    assert await authz.authorize(req(N1, "create", "serviceaccounts", "other", "default",
                                     subresource="token")) == NO_RELATIONSHIP
    # 1.32 has no `get serviceaccounts` for nodes (that came with 1.33's credential providers)
    assert await authz.authorize(req(N1, "get", "serviceaccounts", "default", "default")) == \
        (Decision.NO_OPINION, "can only create tokens for individual service accounts")
    # list / watch of one named secret (fieldSelector metadata.name) is a read of it
    assert await authz.authorize(req(N1, "watch", "secrets", "s1", "default")) == ALLOW
    assert await authz.authorize(req(N1, "list", "secrets", "", "default")) == \
        (Decision.NO_OPINION, "No Object name found")
    assert await authz.authorize(req(N1, "update", "secrets", "s1", "default")) == \
        (Decision.NO_OPINION, "can only read resources of this type")
    assert await authz.authorize(req(N1, "get", "secrets", "s1")) == \
        (Decision.NO_OPINION, "can only read namespaced object of this type")
    # the pod goes: so does the access, once the cache saw it go (an allowed request does
    # not wait for storage; upstream's informer-fed graph lags the same way)
    await store(server, "", "pods").delete("default", "web", DeleteOptions(grace_period_seconds=0))
    await server.cache.consistent_rev()
    assert await authz.authorize(req(N1, "get", "secrets", "s1", "default")) == NO_RELATIONSHIP


async def test_pods_nodes_and_selectors(server: APIServer, authz: NodeAuthorizer) -> None:
    await store(server, "", "pods").create("default", pod("mine"))
    await store(server, "", "pods").create("default", pod("theirs", "n2"))
    assert await authz.authorize(req(N1, "get", "pods", "mine", "default")) == ALLOW
    assert await authz.authorize(req(N1, "get", "pods", "theirs", "default")) == NO_RELATIONSHIP
    assert await authz.authorize(req(N1, "list", "pods", field_selector="spec.nodeName=n1")) == \
        ALLOW
    assert await authz.authorize(req(N1, "watch", "pods", namespace="default",
                                     field_selector="spec.nodeName==n1")) == ALLOW
    only_own = (Decision.NO_OPINION, "can only list/watch pods with spec.nodeName field selector")
    assert await authz.authorize(req(N1, "list", "pods")) == only_own
    assert await authz.authorize(req(N1, "list", "pods", field_selector="spec.nodeName=n2")) == \
        only_own
    assert await authz.authorize(req(N1, "list", "pods", field_selector="spec.nodeName!=n2")) == \
        only_own
    assert await authz.authorize(req(N1, "list", "pods", label_selector="a=b",
                                     field_selector="bad selector")) == only_own
    assert await authz.authorize(req(N1, "watch", "pods", "mine", "default")) == ALLOW
    assert await authz.authorize(req(N1, "create", "pods", namespace="default")) == ALLOW
    assert await authz.authorize(req(N1, "patch", "pods", "theirs", "default",
                                     subresource="status")) == ALLOW  # NodeRestriction decides
    assert await authz.authorize(req(N1, "create", "pods", "x", "default",
                                     subresource="eviction")) == ALLOW
    assert await authz.authorize(req(N1, "update", "pods", "mine", "default")) == \
        (Decision.NO_OPINION, "")
    assert await authz.authorize(req(N1, "get", "pods", "mine", "default", subresource="log")) \
        == (Decision.NO_OPINION, "")
    # nodes: only its own Node is readable
    assert await authz.authorize(req(N1, "get", "nodes", "n1")) == ALLOW
    assert await authz.authorize(req(N1, "watch", "nodes", "n1")) == ALLOW
    assert await authz.authorize(req(N1, "get", "nodes", "n2")) == \
        (Decision.NO_OPINION, "node 'n1' cannot read 'n2', only its own Node object")
    assert await authz.authorize(req(N1, "list", "nodes")) == \
        (Decision.NO_OPINION, "node 'n1' cannot read all nodes, only its own Node object")
    assert await authz.authorize(req(N1, "patch", "nodes", "n2", subresource="status")) == ALLOW
    assert await authz.authorize(req(N1, "create", "nodes")) == ALLOW
    assert await authz.authorize(req(N1, "delete", "nodes", "n1")) == (Decision.NO_OPINION, "")
    assert await authz.authorize(req(N1, "get", "nodes", "n1", subresource="proxy")) == \
        (Decision.NO_OPINION, "")


async def test_leases_and_csinodes(authz: NodeAuthorizer) -> None:
    lease = dict(api_group="coordination.k8s.io")
    assert await authz.authorize(req(N1, "update", "leases", "n1", "kube-node-lease",
                                     **lease)) == ALLOW
    assert await authz.authorize(req(N1, "create", "leases", "", "kube-node-lease",
                                     **lease)) == ALLOW
    assert await authz.authorize(req(N1, "update", "leases", "n2", "kube-node-lease",
                                     **lease)) == \
        (Decision.NO_OPINION, "can only access node lease with the same name as the requesting node")
    assert await authz.authorize(req(N1, "get", "leases", "n1", "default", **lease)) == \
        (Decision.NO_OPINION, 'can only access leases in the "kube-node-lease" system namespace')
    assert await authz.authorize(req(N1, "list", "leases", "", "kube-node-lease", **lease)) == \
        (Decision.NO_OPINION, "can only get, create, update, patch, or delete a node lease")
    csinode = dict(api_group="storage.k8s.io")
    assert await authz.authorize(req(N1, "get", "csinodes", "n1", **csinode)) == ALLOW
    assert await authz.authorize(req(N1, "get", "csinodes", "n2", **csinode)) == \
        (Decision.NO_OPINION, "can only access CSINode with the same name as the requesting node")
    slices = dict(api_group="resource.k8s.io")
    assert await authz.authorize(req(N1, "list", "resourceslices",
                                     field_selector="spec.nodeName=n1", **slices)) == ALLOW
    assert await authz.authorize(req(N1, "list", "resourceslices", **slices)) == \
        (Decision.NO_OPINION,
         "can only list/watch/deletecollection resourceslices with nodeName field selector")


async def test_everything_else_by_the_system_node_rules(authz: NodeAuthorizer) -> None:
    assert await authz.authorize(req(N1, "create", "events", namespace="default")) == ALLOW
    assert await authz.authorize(req(N1, "watch", "services")) == ALLOW
    assert await authz.authorize(req(N1, "get", "endpoints", "x", "default")) == ALLOW
    assert await authz.authorize(req(N1, "create", "certificatesigningrequests",
                                     api_group="certificates.k8s.io")) == ALLOW
    assert await authz.authorize(req(N1, "create", "tokenreviews",
                                     api_group="authentication.k8s.io")) == ALLOW
    assert await authz.authorize(req(N1, "list", "runtimeclasses", api_group="node.k8s.io")) \
        == ALLOW
    assert await authz.authorize(req(N1, "delete", "events", "e", "default")) == \
        (Decision.NO_OPINION, "")
    assert await authz.authorize(req(N1, "list", "deployments", api_group="apps")) == \
        (Decision.NO_OPINION, "")
    assert await authz.authorize(Attributes(user=N1, verb="get", resource_request=False,
                                            path="/healthz")) == (Decision.NO_OPINION, "")


async def test_volumes_claims_and_their_secrets(server: APIServer,
                                                 authz: NodeAuthorizer) -> None:
    await store(server, "", "persistentvolumes").create(None, {
        "metadata": {"name": "vol"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "claimRef": {"namespace": "default", "name": "data"},
                 "csi": {"driver": "d", "volumeHandle": "h",
                         "nodeStageSecretRef": {"namespace": "kube-system", "name": "stage"}}}})
    await store(server, "", "pods").create("default", pod(
        "db", volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]))
    assert await authz.authorize(req(N1, "get", "persistentvolumeclaims", "data", "default")) \
        == ALLOW
    assert await authz.authorize(req(N1, "get", "persistentvolumes", "vol")) == ALLOW
    assert await authz.authorize(req(N1, "get", "secrets", "stage", "kube-system")) == ALLOW
    assert await authz.authorize(req(N2, "get", "persistentvolumes", "vol")) == \
        (Decision.NO_OPINION, "no relationship found between node 'n2' and this object")
    assert await authz.authorize(req(N1, "patch", "persistentvolumeclaims", "data", "default",
                                     subresource="status")) == ALLOW
    assert await authz.authorize(req(N1, "get", "persistentvolumeclaims", "data", "default",
                                     subresource="status")) == \
        (Decision.NO_OPINION, "can only get/update/patch this type")
    assert await authz.authorize(req(N1, "list", "persistentvolumes")) == \
        (Decision.NO_OPINION, "can only get individual resources of this type")
    # the volume is released: its secret is no longer the node's business
    await store(server, "", "persistentvolumes").delete(None, "vol", DeleteOptions())
    await server.cache.consistent_rev()
    assert await authz.authorize(req(N1, "get", "secrets", "stage", "kube-system")) == \
        (Decision.NO_OPINION, "no relationship found between node 'n1' and this object")


async def test_graph_rebuilt_when_its_watch_closes(server: APIServer,
                                                   authz: NodeAuthorizer) -> None:
    for feed in authz._feeds:
        feed.watcher.close("watch cache reloaded")
    await store(server, "", "pods").create("default", pod(
        "late", volumes=[{"name": "v", "secret": {"secretName": "late"}}]))
    for _ in range(100):
        if await authz.authorize(req(N1, "get", "secrets", "late", "default")) == ALLOW:
            break
        await asyncio.sleep(0.02)
    assert await authz.authorize(req(N1, "get", "secrets", "late", "default")) == ALLOW
    assert all(f.watcher.closed_reason is None for f in authz._feeds)


async def test_graph_follows_without_questions(server: APIServer,
                                               authz: NodeAuthorizer) -> None:
    """The background consumers keep the graph current between requests."""
    await store(server, "", "pods").create("default", pod(
        "bg", volumes=[{"name": "v", "secret": {"secretName": "bg"}}]))
    await server.cache.consistent_rev()
    for _ in range(100):
        if authz.graph.has_path("n1", "secret", "default", "bg"):
            break
        await asyncio.sleep(0.01)
    assert authz.graph.has_path("n1", "secret", "default", "bg")
