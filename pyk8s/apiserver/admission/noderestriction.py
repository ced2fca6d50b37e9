"""NodeRestriction, as upstream's plugin/pkg/admission/noderestriction in 1.32: what a node
identity (`system:node:<name>` in `system:nodes`) may write, beyond what the Node
authorizer allows by resource and verb.

- pods: create only mirror pods bound to itself, owned by its Node (one controller
  reference with the Node's uid, no blockOwnerDeletion) and referencing no service
  account, secret, configmap, ClusterTrustBundle or persistent volume claim; delete only
  pods bound to itself; update status only of pods bound to itself, without changing
  labels or resource claim statuses; evict only pods bound to itself;
- nodes: create, update and delete only its own Node; on create no configSource and no
  labels in `node-restriction.kubernetes.io`, nor `kubernetes.io` / `k8s.io` labels the
  kubelet may not set; on update no change of taints, of labels like those, nor a new
  configSource;
- persistent volume claims: only `status`, and only its capacity, conditions and
  allocated resources (statuses);
- `serviceaccounts/token`: only tokens bound to a pod (with its uid) bound to itself;
- leases: only its own, in `kube-node-lease`; CSINodes: only its own; ResourceSlices:
  create / delete only with its own spec.nodeName;
- CertificateSigningRequests for the kubelet's signers only with CN `system:node:<name>`.

Upstream's plugin is a mutating one (it changes nothing): it runs in the mutating phase
here too; deletes, which the store sends through the validating phase only, are checked
there. Pods and nodes the checks need come from the watch cache (upstream: informers).
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from pyk8s.api import errors, references
from pyk8s.apiserver.admission.chain import (CREATE, DELETE, UPDATE, Attributes, Plugin,
                                             forbidden)
from pyk8s.apiserver.authz.nodeidentity import node_identity

Obj = dict[str, Any]

NODE_LEASE_NAMESPACE = "kube-node-lease"
LABEL_NAMESPACE_NODE_RESTRICTION = "node-restriction.kubernetes.io"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"

# Upstream's kubeletapis: the kubernetes.io / k8s.io labels a kubelet may set on its Node.
KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
})
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _label_namespace(key: str) -> str:
    prefix, sep, _ = key.partition("/")
    return prefix if sep else ""


def _in_namespace(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith("." + domain)


def is_kubelet_label(key: str) -> bool:
    if key in KUBELET_LABELS:
        return True
    namespace = _label_namespace(key)
    return any(_in_namespace(namespace, allowed) for allowed in KUBELET_LABEL_NAMESPACES)


def _is_kubernetes_label(key: str) -> bool:
    namespace = _label_namespace(key)
    return _in_namespace(namespace, "kubernetes.io") or _in_namespace(namespace, "k8s.io")


def modified_labels(new: dict[str, str], old: dict[str, str]) -> set[str]:
    """Keys added, removed or changed between the two label sets."""
    return {k for k in new.keys() | old.keys()
            if k not in new or k not in old or new[k] != old[k]}


def forbidden_labels(keys: set[str]) -> list[str]:
    """Upstream's getForbiddenLabels: node-restriction labels, and kubernetes.io / k8s.io
    labels the kubelet does not own (sorted)."""
    out = set()
    for key in keys:
        if _in_namespace(_label_namespace(key), LABEL_NAMESPACE_NODE_RESTRICTION):
            out.add(key)
        if _is_kubernetes_label(key) and not is_kubelet_label(key):
            out.add(key)
    return sorted(out)


def _md(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def _spec(obj: Obj | None) -> Obj:
    return (obj or {}).get("spec") or {}


def _labels(obj: Obj | None) -> dict[str, str]:
    return dict(_md(obj).get("labels") or {})


class NodeRestriction(Plugin):
    name = "NodeRestriction"
    mutating = True
    validating = True

    def __init__(self, server: Any) -> None:
        """`server`: the API server, for its catalogue and watch cache."""
        self.server = server

    def handles(self, attrs: Attributes) -> bool:
        return attrs.operation in (CREATE, UPDATE, DELETE) and node_identity(attrs.user)[1]

    async def admit(self, attrs: Attributes) -> None:
        if attrs.operation != DELETE:
            await self.check(attrs)

    async def validate(self, attrs: Attributes) -> None:
        if attrs.operation == DELETE:
            await self.check(attrs)

    # -- the checks ---------------------------------------------------------------------------
    async def check(self, attrs: Attributes) -> None:
        node, _ = node_identity(attrs.user)
        if not node:
            raise forbidden(attrs, f'could not determine node from user '
                                   f'"{attrs.user.username}"')
        resource = (attrs.group, attrs.resource)
        if resource == ("", "pods"):
            if not attrs.subresource:
                await self._pod(node, attrs)
            elif attrs.subresource == "status":
                self._pod_status(node, attrs)
            elif attrs.subresource == "eviction":
                await self._pod_eviction(node, attrs)
            else:
                raise forbidden(attrs, f'unexpected pod subresource "{attrs.subresource}", '
                                       "only 'status' and 'eviction' are allowed")
        elif resource == ("", "nodes"):
            self._node(node, attrs)
        elif resource == ("", "persistentvolumeclaims"):
            if attrs.subresource != "status":
                raise forbidden(attrs, "may only update PVC status")
            self._pvc_status(node, attrs)
        elif resource == ("", "serviceaccounts"):
            await self._service_account(node, attrs)
        elif resource == ("coordination.k8s.io", "leases"):
            self._lease(node, attrs)
        elif resource == ("storage.k8s.io", "csinodes"):
            self._csinode(node, attrs)
        elif resource == ("resource.k8s.io", "resourceslices"):
            self._resource_slice(node, attrs)
        elif resource == ("certificates.k8s.io", "certificatesigningrequests"):
            self._csr(node, attrs)

    async def _cached(self, group: str, version: str, plural: str, namespace: str | None,
                      name: str) -> Obj | None:
        """An object from the watch cache; when missing, once more after the cache caught
        up with storage (an object created an instant ago)."""
        info = self.server.catalogue.lookup(group, version, plural)
        if info is None:
            return None
        key = info.key(namespace, name)
        found = self.server.cache.resource(info.storage_prefix).objects.get(key)
        if found is None:
            try:
                await self.server.cache.consistent_rev()
            except Exception:
                return None
            found = self.server.cache.resource(info.storage_prefix).objects.get(key)
        return found

    async def _existing_pod(self, namespace: str, name: str) -> Obj:
        pod = await self._cached("", "v1", "pods", namespace, name)
        if pod is None:
            raise errors.NotFound.of("", "pods", name)
        return pod

    # pods
    async def _pod(self, node: str, attrs: Attributes) -> None:
        if attrs.operation == CREATE:
            await self._mirror_pod_create(node, attrs)
        elif attrs.operation == DELETE:
            pod = attrs.old_object or await self._existing_pod(attrs.namespace, attrs.name)
            if _spec(pod).get("nodeName") != node:
                raise forbidden(attrs, f'node "{node}" can only delete pods with spec.nodeName '
                                       "set to itself")
        else:
            raise forbidden(attrs, f'unexpected operation "{attrs.operation}", node "{node}" '
                                   "can only create and delete mirror pods")

    async def _mirror_pod_create(self, node: str, attrs: Attributes) -> None:
        pod = attrs.object or {}
        if not references.is_mirror_pod(pod):
            raise forbidden(attrs, f'pod does not have "{references.MIRROR_POD_ANNOTATION}" '
                                   f'annotation, node "{node}" can only create mirror pods')
        spec = _spec(pod)
        if spec.get("nodeName") != node:
            raise forbidden(attrs, f'node "{node}" can only create pods with spec.nodeName set '
                                   "to itself")
        owners = _md(pod).get("ownerReferences") or []
        if len(owners) > 1:
            raise forbidden(attrs, f'node "{node}" can only create pods with a single owner '
                                   "reference set to itself")
        if not owners:
            raise forbidden(attrs, f'node "{node}" can only create pods with an owner '
                                   "reference set to itself")
        owner = owners[0]
        if owner.get("apiVersion") != "v1" or owner.get("kind") != "Node" or \
                owner.get("name") != node:
            raise forbidden(attrs, f'node "{node}" can only create pods with an owner '
                                   "reference set to itself")
        if owner.get("controller") is not True:
            raise forbidden(attrs, f'node "{node}" can only create pods with a controller '
                                   "owner reference set to itself")
        if owner.get("blockOwnerDeletion") is True:
            raise forbidden(attrs, f'node "{node}" must not set blockOwnerDeletion on an owner '
                                   "reference")
        node_obj = await self._cached("", "v1", "nodes", None, node)
        if node_obj is None:
            raise errors.NotFound.of("", "nodes", node)
        owner_uid, node_uid = owner.get("uid") or "", _md(node_obj).get("uid") or ""
        if owner_uid != node_uid:
            raise forbidden(attrs, f"node {node} UID mismatch: expected {owner_uid} got "
                                   f"{node_uid}")
        if spec.get("serviceAccountName"):
            raise forbidden(attrs, f'node "{node}" can not create pods that reference a '
                                   "service account")
        if next(references.pod_secret_names(pod), None) is not None:
            raise forbidden(attrs, f'node "{node}" can not create pods that reference secrets')
        if next(references.pod_configmap_names(pod), None) is not None:
            raise forbidden(attrs, f'node "{node}" can not create pods that reference '
                                   "configmaps")
        if references.uses_cluster_trust_bundles(pod):
            raise forbidden(attrs, f'node "{node}" can not create pods that reference '
                                   "clustertrustbundles")
        if any(isinstance(v, dict) and v.get("persistentVolumeClaim") is not None
               for v in spec.get("volumes") or []):
            raise forbidden(attrs, f'node "{node}" can not create pods that reference '
                                   "persistentvolumeclaims")

    def _pod_status(self, node: str, attrs: Attributes) -> None:
        if attrs.operation != UPDATE:
            raise forbidden(attrs, f'unexpected operation "{attrs.operation}"')
        if _spec(attrs.old_object).get("nodeName") != node:
            raise forbidden(attrs, f'node "{node}" can only update pod status for pods with '
                                   "spec.nodeName set to itself")
        if _labels(attrs.old_object) != _labels(attrs.object):
            raise forbidden(attrs, f'node "{node}" cannot update labels through pod status')
        if _claim_statuses(attrs.old_object) != _claim_statuses(attrs.object):
            raise forbidden(attrs, f'node "{node}" cannot update resource claim statues')

    async def _pod_eviction(self, node: str, attrs: Attributes) -> None:
        if attrs.operation != CREATE:
            raise forbidden(attrs, f"unexpected operation {attrs.operation}")
        name = attrs.name or str(_md(attrs.object).get("name") or "")
        if not name:
            raise forbidden(attrs, "could not determine pod from request data")
        pod = await self._existing_pod(attrs.namespace, name)
        if _spec(pod).get("nodeName") != node:
            raise forbidden(attrs, f"node {node} can only evict pods with spec.nodeName set "
                                   "to itself")

    # nodes
    def _node(self, node: str, attrs: Attributes) -> None:
        if attrs.name != node:
            raise forbidden(attrs, f'node "{node}" is not allowed to modify node '
                                   f'"{attrs.name}"')
        new = attrs.object
        if attrs.operation == CREATE:
            if _spec(new).get("configSource") is not None:
                raise forbidden(attrs, f'node "{node}" is not allowed to create pods with a '
                                       "non-nil configSource")
            bad = forbidden_labels(modified_labels(_labels(new), {}))
            if bad:
                raise forbidden(attrs, f'node "{node}" is not allowed to set the following '
                                       f"labels: {', '.join(bad)}")
        elif attrs.operation == UPDATE:
            old = attrs.old_object
            source = _spec(new).get("configSource")
            if source is not None and source != _spec(old).get("configSource"):
                raise forbidden(attrs, f'node "{node}" is not allowed to update configSource '
                                       "to a new non-nil configSource")
            if (_spec(new).get("taints") or []) != (_spec(old).get("taints") or []):
                raise forbidden(attrs, f'node "{node}" is not allowed to modify taints')
            bad = forbidden_labels(modified_labels(_labels(new), _labels(old)))
            if bad:
                raise forbidden(attrs, f"is not allowed to modify labels: {', '.join(bad)}")

    # persistent volume claims
    def _pvc_status(self, node: str, attrs: Attributes) -> None:
        if attrs.operation != UPDATE:
            raise forbidden(attrs, f'unexpected operation "{attrs.operation}"')
        old, new = _comparable_claim(attrs.old_object), _comparable_claim(attrs.object)
        if old != new:
            raise forbidden(attrs, f'node "{node}" is not allowed to update fields other than '
                                   f"status.quantity and status.conditions: "
                                   f"{', '.join(_differences(old, new))}")

    # service account tokens
    async def _service_account(self, node: str, attrs: Attributes) -> None:
        if attrs.operation != CREATE or attrs.subresource != "token":
            return
        ref = _spec(attrs.object).get("boundObjectRef")
        if not isinstance(ref, dict) or ref.get("apiVersion") != "v1" or \
                ref.get("kind") != "Pod" or not ref.get("name"):
            raise forbidden(attrs, "node requested token not bound to a pod")
        if not ref.get("uid"):
            raise forbidden(attrs, "node requested token with a pod binding without a uid")
        pod = await self._existing_pod(attrs.namespace, str(ref["name"]))
        if ref["uid"] != _md(pod).get("uid"):
            raise forbidden(attrs, f"the UID in the bound object reference ({ref['uid']}) does "
                                   "not match the UID in record. The object might have been "
                                   "deleted and then recreated")
        if _spec(pod).get("nodeName") != node:
            raise forbidden(attrs, "node requested token bound to a pod scheduled on a "
                                   "different node")

    # leases, CSINodes, ResourceSlices
    def _lease(self, node: str, attrs: Attributes) -> None:
        if attrs.namespace != NODE_LEASE_NAMESPACE:
            raise forbidden(attrs, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" '
                                   "system namespace")
        name = _md(attrs.object).get("name") if attrs.operation == CREATE else attrs.name
        if name != node:
            raise forbidden(attrs, "can only access node lease with the same name as the "
                                   "requesting node")

    def _csinode(self, node: str, attrs: Attributes) -> None:
        name = _md(attrs.object).get("name") if attrs.operation == CREATE else attrs.name
        if name != node:
            raise forbidden(attrs, "can only access CSINode with the same name as the "
                                   "requesting node")

    def _resource_slice(self, node: str, attrs: Attributes) -> None:
        if attrs.operation == CREATE and _spec(attrs.object).get("nodeName") != node:
            raise forbidden(attrs, "can only create ResourceSlice with the same NodeName as "
                                   "the requesting node")
        if attrs.operation == DELETE and _spec(attrs.old_object).get("nodeName") != node:
            raise forbidden(attrs, "can only delete ResourceSlice with the same NodeName as "
                                   "the requesting node")

    # certificate signing requests
    def _csr(self, node: str, attrs: Attributes) -> None:
        if attrs.operation != CREATE:
            return
        spec = _spec(attrs.object)
        if spec.get("signerName") not in (KUBELET_SERVING_SIGNER, KUBELET_CLIENT_SIGNER):
            return
        try:
            request = base64.b64decode(spec.get("request") or "", validate=True)
            csr = x509.load_pem_x509_csr(request)
            names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        except (ValueError, binascii.Error) as e:
            raise forbidden(attrs, f"unable to parse csr: {e}") from None
        common_name = str(names[0].value) if names else ""
        if common_name != f"system:node:{node}":
            raise forbidden(attrs, f"can only create a node CSR with CN=system:node:{node}")


def _claim_statuses(pod: Obj | None) -> list[tuple[str, Any]]:
    return [(s.get("name"), s.get("resourceClaimName"))
            for s in ((pod or {}).get("status") or {}).get("resourceClaimStatuses") or []
            if isinstance(s, dict)]


# What a node may change in a claim's status (RecoverVolumeExpansionFailure is on in 1.32).
_PVC_STATUS_FIELDS = ("capacity", "conditions", "allocatedResources",
                      "allocatedResourceStatuses")


def _comparable_claim(claim: Obj | None) -> Obj:
    out = dict(claim or {})
    md = dict(out.get("metadata") or {})
    md.pop("resourceVersion", None)
    md.pop("managedFields", None)
    out["metadata"] = md
    status = {k: v for k, v in (out.get("status") or {}).items()
              if k not in _PVC_STATUS_FIELDS}
    out["status"] = status
    return out


def _differences(old: Obj, new: Obj, path: str = "") -> list[str]:
    """The paths where two objects differ (the forbidden message's diff)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(old.keys() | new.keys()):
            if old.get(k) != new.get(k):
                out.extend(_differences(old.get(k), new.get(k), f"{path}.{k}" if path else k))
        return out
    return [path]
