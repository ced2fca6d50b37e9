"""The Node authorizer's graph (upstream's plugin/pkg/auth/authorizer/node/graph.go): which
objects a node may read because a pod bound to it uses them.

Upstream keeps a directed graph whose edges all point towards nodes:

    pod → node              (spec.nodeName)
    secret, configmap, pvc, serviceAccount, resourceclaim → pod   (what the pod references)
    pv → pvc                (spec.claimRef)      secret → pv   (secrets the kubelet uses)
    volumeattachment → node, resourceslice → node                (spec.nodeName)

and answers "is there a path from this object to that node" by walking it. Here every
object a pod references keeps a count per node of the paths that reach the node, updated
as pods and PersistentVolumes come and go, so a question is one or two dictionary
lookups whatever the cluster's size (5,000 nodes, 150,000 pods):

- a pod on node N referencing X adds 1 to X's count for N (once per pod, however often it
  names X);
- a PersistentVolume bound to claim C reaches whatever C reaches; the secrets its source
  names (the ones the kubelet uses) get C's counts added, and follow C's changes.

Mirror pods only reach their node (no references: a node must not grant itself access by
creating a pod). Pure: the populator in node.py feeds it from the watch cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyk8s.api import references

Obj = dict[str, Any]

# Vertex types, named as upstream's (they appear in log messages).
CONFIGMAP = "configmap"
RESOURCE_SLICE = "resourceslice"
POD = "pod"
PVC = "pvc"
PV = "pv"
RESOURCE_CLAIM = "resourceclaim"
SECRET = "secret"
VOLUME_ATTACHMENT = "volumeattachment"
SERVICE_ACCOUNT = "serviceAccount"

Key = tuple[str, str, str]  # (vertex type, namespace, name)


class _Vertex:
    """An object pods reference: how many paths reach each node."""
    __slots__ = ("key", "nodes")

    def __init__(self, key: Key) -> None:
        self.key = key
        self.nodes: dict[str, int] = {}


@dataclass(slots=True)
class _Pod:
    node: str
    uid: str
    claim_statuses: tuple[tuple[str, str], ...]
    refs: tuple[_Vertex, ...]


@dataclass(slots=True)
class _PV:
    claim: tuple[str, str] | None
    secrets: tuple[Key, ...]


def _claim_statuses(pod: Obj) -> tuple[tuple[str, str], ...]:
    statuses = (pod.get("status") or {}).get("resourceClaimStatuses")
    if not statuses:
        return ()
    return tuple((str(s.get("name") or ""), str(s.get("resourceClaimName") or ""))
                 for s in statuses if isinstance(s, dict))


def pod_references(pod: Obj) -> list[Key]:
    """The vertices a bound pod points at, each once (upstream's AddPod)."""
    if references.is_mirror_pod(pod):
        return []
    ns = str(pod["metadata"].get("namespace") or "")
    keys: dict[Key, None] = {}
    sa = (pod.get("spec") or {}).get("serviceAccountName")
    if sa:
        keys[(SERVICE_ACCOUNT, ns, str(sa))] = None
    for name in references.pod_secret_names(pod):
        if name:
            keys[(SECRET, ns, name)] = None
    for name in references.pod_configmap_names(pod):
        if name:
            keys[(CONFIGMAP, ns, name)] = None
    for name in references.pod_claim_names(pod):
        if name:
            keys[(PVC, ns, name)] = None
    for name in references.pod_resource_claim_names(pod):
        keys[(RESOURCE_CLAIM, ns, name)] = None
    return list(keys)


class NodeGraph:
    def __init__(self) -> None:
        self._vertices: dict[Key, _Vertex] = {}
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._pvs: dict[str, _PV] = {}
        self._pvs_by_claim: dict[tuple[str, str], set[str]] = {}
        self._attachments: dict[str, str] = {}  # VolumeAttachment → node
        self._slices: dict[str, str] = {}  # ResourceSlice → node
        self._node_edges: dict[str, int] = {}  # node → pods, attachments, slices on it

    # -- counts ----------------------------------------------------------------------------
    def _add(self, key: Key, node: str, n: int) -> _Vertex:
        v = self._vertices.get(key)
        if v is None:
            v = self._vertices[key] = _Vertex(key)
        v.nodes[node] = v.nodes.get(node, 0) + n
        return v

    def _sub(self, v: _Vertex, node: str, n: int) -> None:
        left = v.nodes[node] - n
        if left:
            v.nodes[node] = left
            return
        del v.nodes[node]
        if not v.nodes and self._vertices.get(v.key) is v:
            del self._vertices[v.key]

    def _claim_reached(self, namespace: str, claim: str, node: str, n: int) -> None:
        """A pod on `node` started (n = 1) or stopped (n = -1) using a claim: the secrets
        of the PersistentVolumes bound to it follow."""
        for pv_name in self._pvs_by_claim.get((namespace, claim), ()):
            for key in self._pvs[pv_name].secrets:
                if n > 0:
                    self._add(key, node, n)
                else:
                    self._sub(self._vertices[key], node, -n)

    def _node_edge(self, node: str, n: int) -> None:
        left = self._node_edges.get(node, 0) + n
        if left:
            self._node_edges[node] = left
        else:
            self._node_edges.pop(node, None)

    # -- pods ------------------------------------------------------------------------------
    def set_pod(self, pod: Obj) -> None:
        """A pod was added or changed. Unbound pods are not in the graph; a bound pod's
        references cannot change (upstream re-adds it only when its node, its uid or its
        resource claim statuses change)."""
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        if not node:
            return
        md = pod["metadata"]
        key = (str(md.get("namespace") or ""), str(md["name"]))
        uid = str(md.get("uid") or "")
        statuses = _claim_statuses(pod)
        old = self._pods.get(key)
        if old is not None:
            if old.node == node and old.uid == uid and old.claim_statuses == statuses:
                return
            self._remove_pod(key, old)
        refs: list[_Vertex] = []
        for ref in pod_references(pod):
            refs.append(self._add(ref, node, 1))
            if ref[0] == PVC:
                self._claim_reached(ref[1], ref[2], node, 1)
        self._pods[key] = _Pod(node, uid, statuses, tuple(refs))
        self._node_edge(node, 1)

    def delete_pod(self, namespace: str, name: str) -> None:
        old = self._pods.get((namespace, name))
        if old is not None:
            self._remove_pod((namespace, name), old)

    def _remove_pod(self, key: tuple[str, str], old: _Pod) -> None:
        del self._pods[key]
        for v in old.refs:
            self._sub(v, old.node, 1)
            if v.key[0] == PVC:
                self._claim_reached(v.key[1], v.key[2], old.node, -1)
        self._node_edge(old.node, -1)

    # -- persistent volumes --------------------------------------------------------------------
    def set_pv(self, pv: Obj) -> None:
        name = str(pv["metadata"]["name"])
        self.delete_pv(name)
        ref = (pv.get("spec") or {}).get("claimRef")
        if not isinstance(ref, dict):
            return
        claim = (str(ref.get("namespace") or ""), str(ref.get("name") or ""))
        secrets = tuple(dict.fromkeys(
            (SECRET, ns, secret) for ns, secret, kubelet_visible
            in references.pv_secret_refs(pv) if kubelet_visible and secret))
        self._pvs[name] = _PV(claim, secrets)
        self._pvs_by_claim.setdefault(claim, set()).add(name)
        pvc = self._vertices.get((PVC, *claim))
        if pvc is not None and secrets:
            for node, n in pvc.nodes.items():
                for key in secrets:
                    self._add(key, node, n)

    def delete_pv(self, name: str) -> None:
        old = self._pvs.pop(name, None)
        if old is None or old.claim is None:
            return
        names = self._pvs_by_claim[old.claim]
        names.discard(name)
        if not names:
            del self._pvs_by_claim[old.claim]
        pvc = self._vertices.get((PVC, *old.claim))
        if pvc is not None and old.secrets:
            for node, n in list(pvc.nodes.items()):
                for key in old.secrets:
                    self._sub(self._vertices[key], node, n)

    # -- objects bound to a node directly -------------------------------------------------------
    def set_volume_attachment(self, name: str, node: str) -> None:
        self._set_direct(self._attachments, name, node)

    def delete_volume_attachment(self, name: str) -> None:
        self._set_direct(self._attachments, name, "")

    def set_resource_slice(self, name: str, node: str) -> None:
        self._set_direct(self._slices, name, node)

    def delete_resource_slice(self, name: str) -> None:
        self._set_direct(self._slices, name, "")

    def _set_direct(self, index: dict[str, str], name: str, node: str) -> None:
        old = index.pop(name, None)
        if old:
            self._node_edge(old, -1)
        if node:
            index[name] = node
            self._node_edge(node, 1)

    # -- questions --------------------------------------------------------------------------------
    def has_path(self, node: str, vertex_type: str, namespace: str, name: str) -> bool:
        """Whether the object reaches the node (upstream's hasPathFrom)."""
        if vertex_type == POD:
            pod = self._pods.get((namespace, name))
            return pod is not None and pod.node == node
        if vertex_type == PV:
            pv = self._pvs.get(name)
            if pv is None or pv.claim is None:
                return False
            pvc = self._vertices.get((PVC, *pv.claim))
            return pvc is not None and node in pvc.nodes
        if vertex_type == VOLUME_ATTACHMENT:
            return self._attachments.get(name) == node
        if vertex_type == RESOURCE_SLICE:
            return self._slices.get(name) == node
        v = self._vertices.get((vertex_type, namespace, name))
        return v is not None and node in v.nodes

    def why_not(self, node: str, vertex_type: str, namespace: str, name: str) -> str:
        """Upstream's explanation of a missing path (logged, not returned to clients)."""
        if node not in self._node_edges:
            return f"unknown node '{node}' cannot get {vertex_type} {namespace}/{name}"
        known = {POD: (namespace, name) in self._pods, PV: name in self._pvs,
                 VOLUME_ATTACHMENT: name in self._attachments,
                 RESOURCE_SLICE: name in self._slices}.get(
            vertex_type, (vertex_type, namespace, name) in self._vertices)
        if not known:
            return f"node '{node}' cannot get unknown {vertex_type} {namespace}/{name}"
        return (f"node '{node}' cannot get {vertex_type} {namespace}/{name}, no relationship "
                "to this object was found in the node authorizer graph")

    def nodes_reached(self, vertex_type: str, namespace: str, name: str) -> dict[str, int]:
        """The nodes an object reaches and by how many paths (for tests and debugging)."""
        v = self._vertices.get((vertex_type, namespace, name))
        return dict(v.nodes) if v is not None else {}

    def __len__(self) -> int:
        """Pods in the graph."""
        return len(self._pods)
