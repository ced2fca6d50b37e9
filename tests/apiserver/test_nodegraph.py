"""The Node authorizer's graph, built from objects directly: which objects reach which
node, as pods and PersistentVolumes come, change and go."""
from __future__ import annotations

from typing import Any

from pyk8s.api import references
from pyk8s.apiserver.authz import nodegraph as g
from pyk8s.apiserver.authz.nodegraph import NodeGraph

Obj = dict[str, Any]


def pod(name: str, node: str = "n1", ns: str = "default", uid: str = "", **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": ns, "uid": uid or f"uid-{name}"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}], **spec}}


def secret_volume(secret: str, name: str = "v") -> Obj:
    return {"name": name, "secret": {"secretName": secret}}


def pv(name: str, claim: tuple[str, str] | None, **source: Any) -> Obj:
    spec: Obj = dict(source)
    if claim:
        spec["claimRef"] = {"namespace": claim[0], "name": claim[1]}
    return {"metadata": {"name": name}, "spec": spec}


def test_pod_references_every_kind() -> None:
    p = pod("p", serviceAccountName="robot",
            imagePullSecrets=[{"name": "pull"}],
            initContainers=[{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
            containers=[{"name": "c", "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-s", "key": "k"}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}}],
                "envFrom": [{"configMapRef": {"name": "from-cm"}}]}],
            ephemeralContainers=[{"name": "e", "envFrom": [{"secretRef": {"name": "eph"}}]}],
            volumes=[secret_volume("vol-s"),
                     {"name": "cm", "configMap": {"name": "vol-cm"}},
                     {"name": "proj", "projected": {"sources": [
                         {"secret": {"name": "proj-s"}}, {"configMap": {"name": "proj-cm"}},
                         {"serviceAccountToken": {"path": "t"}}]}},
                     {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}},
                     {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}},
                     {"name": "csi", "csi": {"driver": "d",
                                             "nodePublishSecretRef": {"name": "csi-s"}}}],
            resourceClaims=[{"name": "gpu", "resourceClaimName": "gpu-claim"},
                            {"name": "tpl", "resourceClaimTemplateName": "t"},
                            {"name": "later", "resourceClaimTemplateName": "t"}])
    p["status"] = {"resourceClaimStatuses": [{"name": "tpl", "resourceClaimName": "p-tpl-x"}]}
    assert sorted(g.pod_references(p)) == sorted([
        (g.SERVICE_ACCOUNT, "default", "robot"),
        *((g.SECRET, "default", s) for s in ("pull", "init-env", "env-s", "eph", "vol-s",
                                             "proj-s", "csi-s")),
        *((g.CONFIGMAP, "default", c) for c in ("env-cm", "from-cm", "vol-cm", "proj-cm")),
        (g.PVC, "default", "data"), (g.PVC, "default", "p-scratch"),
        (g.RESOURCE_CLAIM, "default", "gpu-claim"), (g.RESOURCE_CLAIM, "default", "p-tpl-x")])


def test_mirror_pods_reach_only_their_node() -> None:
    graph = NodeGraph()
    mirror = pod("static", volumes=[secret_volume("s")])
    mirror["metadata"]["annotations"] = {references.MIRROR_POD_ANNOTATION: "hash"}
    graph.set_pod(mirror)
    assert graph.has_path("n1", g.POD, "default", "static")
    assert not graph.has_path("n1", g.SECRET, "default", "s")


def test_secrets_reach_the_nodes_of_their_pods_only() -> None:
    graph = NodeGraph()
    graph.set_pod(pod("a", "n1", volumes=[secret_volume("s1")]))
    graph.set_pod(pod("b", "n2", volumes=[secret_volume("s2")]))
    graph.set_pod(pod("c", "n2", ns="other", volumes=[secret_volume("s1")]))
    graph.set_pod({"metadata": {"name": "pending", "namespace": "default", "uid": "u"},
                   "spec": {"volumes": [secret_volume("s3")]}})
    assert graph.has_path("n1", g.SECRET, "default", "s1")
    assert not graph.has_path("n2", g.SECRET, "default", "s1")  # other namespace's s1
    assert graph.has_path("n2", g.SECRET, "other", "s1")
    assert not graph.has_path("n1", g.SECRET, "default", "s2")
    assert not graph.has_path("n1", g.SECRET, "default", "s3")  # unbound pods: not in graph
    assert graph.has_path("n1", g.POD, "default", "a")
    assert not graph.has_path("n2", g.POD, "default", "a")
    assert len(graph) == 3
    assert graph.why_not("n9", g.SECRET, "default", "s1") == \
        "unknown node 'n9' cannot get secret default/s1"
    assert graph.why_not("n1", g.SECRET, "default", "nope") == \
        "node 'n1' cannot get unknown secret default/nope"
    assert graph.why_not("n1", g.SECRET, "default", "s2").endswith(
        "no relationship to this object was found in the node authorizer graph")


def test_counts_follow_pods_coming_and_going() -> None:
    graph = NodeGraph()
    # two pods on n1 share s; one names it twice (volume and env): counted once per pod
    graph.set_pod(pod("a", volumes=[secret_volume("s")], containers=[
        {"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}]))
    graph.set_pod(pod("b", volumes=[secret_volume("s")]))
    assert graph.nodes_reached(g.SECRET, "default", "s") == {"n1": 2}
    graph.delete_pod("default", "a")
    assert graph.nodes_reached(g.SECRET, "default", "s") == {"n1": 1}
    graph.delete_pod("default", "b")
    assert graph.nodes_reached(g.SECRET, "default", "s") == {}
    assert not graph.has_path("n1", g.SECRET, "default", "s")
    graph.delete_pod("default", "b")  # twice: nothing happens


def test_status_updates_keep_references_a_new_uid_replaces_them() -> None:
    graph = NodeGraph()
    graph.set_pod(pod("a", uid="1", volumes=[secret_volume("old")]))
    # same node and uid: references of a bound pod are immutable, nothing is re-read
    graph.set_pod(pod("a", uid="1", volumes=[secret_volume("ignored")]))
    assert graph.has_path("n1", g.SECRET, "default", "old")
    assert not graph.has_path("n1", g.SECRET, "default", "ignored")
    # deleted and re-created under the same name (events merged): the new pod counts
    graph.set_pod(pod("a", "n2", uid="2", volumes=[secret_volume("new")]))
    assert not graph.has_path("n1", g.SECRET, "default", "old")
    assert not graph.has_path("n1", g.POD, "default", "a")
    assert graph.has_path("n2", g.SECRET, "default", "new")


def test_resource_claim_statuses_re_add_the_pod() -> None:
    graph = NodeGraph()
    p = pod("a", resourceClaims=[{"name": "gpu", "resourceClaimTemplateName": "t"}])
    graph.set_pod(p)
    assert not graph.has_path("n1", g.RESOURCE_CLAIM, "default", "a-gpu-1")
    p = dict(p, status={"resourceClaimStatuses": [{"name": "gpu",
                                                   "resourceClaimName": "a-gpu-1"}]})
    graph.set_pod(p)
    assert graph.has_path("n1", g.RESOURCE_CLAIM, "default", "a-gpu-1")


def test_persistent_volumes_and_their_secrets() -> None:
    graph = NodeGraph()
    graph.set_pv(pv("vol", ("default", "data"), csi={
        "driver": "d", "volumeHandle": "h",
        "nodePublishSecretRef": {"namespace": "storage", "name": "publish"},
        "controllerPublishSecretRef": {"namespace": "storage", "name": "controller"}}))
    # no pod uses the claim yet
    assert not graph.has_path("n1", g.PV, "", "vol")
    assert not graph.has_path("n1", g.SECRET, "storage", "publish")
    graph.set_pod(pod("a", volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]))
    graph.set_pod(pod("b", "n2", volumes=[
        {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]))
    assert graph.has_path("n1", g.PVC, "default", "data")
    assert graph.has_path("n1", g.PV, "", "vol")
    assert graph.has_path("n2", g.PV, "", "vol")
    assert graph.has_path("n1", g.SECRET, "storage", "publish")
    assert not graph.has_path("n1", g.SECRET, "storage", "controller")  # not the kubelet's
    graph.delete_pod("default", "a")
    assert not graph.has_path("n1", g.PV, "", "vol")
    assert not graph.has_path("n1", g.SECRET, "storage", "publish")
    assert graph.has_path("n2", g.SECRET, "storage", "publish")
    # the PV changes its secret: counts move with it
    graph.set_pv(pv("vol", ("default", "data"), rbd={"image": "i", "monitors": ["m"],
                                                     "secretRef": {"name": "ceph"}}))
    assert not graph.has_path("n2", g.SECRET, "storage", "publish")
    assert graph.has_path("n2", g.SECRET, "default", "ceph")  # the claim's namespace
    graph.delete_pv("vol")
    assert not graph.has_path("n2", g.SECRET, "default", "ceph")
    assert not graph.has_path("n2", g.PV, "", "vol")
    assert graph.has_path("n2", g.PVC, "default", "data")
    graph.delete_pod("default", "b")
    assert graph.nodes_reached(g.PVC, "default", "data") == {}


def test_a_secret_used_by_a_pod_and_a_volume() -> None:
    graph = NodeGraph()
    graph.set_pod(pod("a", volumes=[secret_volume("s"),
                                    {"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]))
    graph.set_pv(pv("vol", ("default", "c"), iscsi={"secretRef": {"name": "s"}}))
    assert graph.nodes_reached(g.SECRET, "default", "s") == {"n1": 2}
    graph.delete_pv("vol")
    assert graph.nodes_reached(g.SECRET, "default", "s") == {"n1": 1}
    graph.set_pv(pv("vol", ("default", "c"), iscsi={"secretRef": {"name": "s"}}))
    graph.delete_pod("default", "a")
    assert graph.nodes_reached(g.SECRET, "default", "s") == {}
    graph.delete_pv("vol")
    assert graph.nodes_reached(g.SECRET, "default", "s") == {}


def test_unbound_volumes_reach_nothing() -> None:
    graph = NodeGraph()
    graph.set_pod(pod("a", volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]))
    graph.set_pv(pv("free", None, iscsi={"secretRef": {"name": "s"}}))
    assert not graph.has_path("n1", g.PV, "", "free")
    assert not graph.has_path("n1", g.SECRET, "default", "s")


def test_attachments_and_slices_point_at_their_node() -> None:
    graph = NodeGraph()
    graph.set_volume_attachment("va", "n1")
    graph.set_resource_slice("slice", "n2")
    assert graph.has_path("n1", g.VOLUME_ATTACHMENT, "", "va")
    assert not graph.has_path("n2", g.VOLUME_ATTACHMENT, "", "va")
    assert graph.has_path("n2", g.RESOURCE_SLICE, "", "slice")
    graph.set_volume_attachment("va", "n2")
    assert not graph.has_path("n1", g.VOLUME_ATTACHMENT, "", "va")
    graph.delete_volume_attachment("va")
    graph.delete_resource_slice("slice")
    assert not graph.has_path("n2", g.VOLUME_ATTACHMENT, "", "va")
    assert graph.why_not("n2", g.RESOURCE_SLICE, "", "slice").startswith("unknown node")
