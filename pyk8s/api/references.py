"""The API objects a pod or a PersistentVolume refers to by name, as upstream's
`VisitPodSecretNames` / `VisitPodConfigmapNames` (pkg/api/v1/pod), `VisitPVSecretNames`
(pkg/api/v1/persistentvolume), the ephemeral volumes' claim names
(component-helpers/storage/ephemeral) and `resourceclaim.Name` (dynamic-resource-allocation).

Shared by the Node authorizer's graph and the NodeRestriction admission plugin. Names are
yielded as written, empty ones included (a reference with an empty name still counts as a
reference for the admission plugin); callers that index by name skip empty ones.
"""
from __future__ import annotations

from typing import Any, Iterator

Obj = dict[str, Any]

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"

CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")

# Volume sources whose `secretRef` names a Secret in the pod's namespace.
_POD_VOLUME_SECRET_REFS = ("cephfs", "cinder", "flexVolume", "rbd", "scaleIO", "iscsi",
                           "storageos", "csi")


def _d(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def is_mirror_pod(pod: Obj) -> bool:
    return MIRROR_POD_ANNOTATION in (_d(_d(pod.get("metadata")).get("annotations")))


def containers(spec: Obj) -> Iterator[Obj]:
    """Init, regular and ephemeral containers (upstream's AllContainers)."""
    for key in CONTAINER_FIELDS:
        for c in _l(spec.get(key)):
            if isinstance(c, dict):
                yield c


def _env_ref_names(spec: Obj, env_from_ref: str, key_ref: str) -> Iterator[str]:
    """The names containers' `envFrom[].<env_from_ref>` and `env[].valueFrom.<key_ref>`
    give."""
    for c in containers(spec):
        for env_from in _l(c.get("envFrom")):
            ref = _d(env_from).get(env_from_ref)
            if isinstance(ref, dict):
                yield str(ref.get("name") or "")
        for env in _l(c.get("env")):
            ref = _d(_d(env).get("valueFrom")).get(key_ref)
            if isinstance(ref, dict):
                yield str(ref.get("name") or "")


def _projected_names(projected: Obj, source: str) -> Iterator[str]:
    """The names a projected volume's `sources[].<source>` give."""
    for src in _l(projected.get("sources")):
        ref = _d(src).get(source)
        if isinstance(ref, dict):
            yield str(ref.get("name") or "")


def pod_secret_names(pod: Obj) -> Iterator[str]:
    """Secrets of image pull secrets, containers' envFrom / env and volumes."""
    spec = _d(pod.get("spec"))
    for ref in _l(spec.get("imagePullSecrets")):
        yield str(_d(ref).get("name") or "")
    yield from _env_ref_names(spec, "secretRef", "secretKeyRef")
    for volume in _l(spec.get("volumes")):
        volume = _d(volume)
        azure = volume.get("azureFile")
        if isinstance(azure, dict):
            if azure.get("secretName"):
                yield str(azure["secretName"])
            continue
        projected = volume.get("projected")
        if isinstance(projected, dict):
            yield from _projected_names(projected, "secret")
            continue
        secret = volume.get("secret")
        if isinstance(secret, dict):
            yield str(secret.get("secretName") or "")
            continue
        for source in _POD_VOLUME_SECRET_REFS:
            src = volume.get(source)
            if isinstance(src, dict):
                ref = src.get("nodePublishSecretRef" if source == "csi" else "secretRef")
                if isinstance(ref, dict):
                    yield str(ref.get("name") or "")
                break


def pod_configmap_names(pod: Obj) -> Iterator[str]:
    """ConfigMaps of containers' envFrom / env and of configMap / projected volumes."""
    spec = _d(pod.get("spec"))
    yield from _env_ref_names(spec, "configMapRef", "configMapKeyRef")
    for volume in _l(spec.get("volumes")):
        volume = _d(volume)
        projected = volume.get("projected")
        if isinstance(projected, dict):
            yield from _projected_names(projected, "configMap")
            continue
        cm = volume.get("configMap")
        if isinstance(cm, dict):
            yield str(cm.get("name") or "")


def pod_claim_names(pod: Obj) -> Iterator[str]:
    """PersistentVolumeClaims of `persistentVolumeClaim` volumes, and of generic ephemeral
    volumes (`<pod name>-<volume name>`)."""
    pod_name = str(_d(pod.get("metadata")).get("name") or "")
    for volume in _l(_d(pod.get("spec")).get("volumes")):
        volume = _d(volume)
        pvc = volume.get("persistentVolumeClaim")
        if isinstance(pvc, dict):
            yield str(pvc.get("claimName") or "")
        elif isinstance(volume.get("ephemeral"), dict):
            yield f"{pod_name}-{volume.get('name') or ''}"


def pod_resource_claim_names(pod: Obj) -> Iterator[str]:
    """ResourceClaims of `spec.resourceClaims`: a named claim, or the one generated from a
    template as `status.resourceClaimStatuses` records it (none yet: skipped)."""
    statuses = {str(_d(s).get("name") or ""): _d(s).get("resourceClaimName")
                for s in _l(_d(pod.get("status")).get("resourceClaimStatuses"))}
    for claim in _l(_d(pod.get("spec")).get("resourceClaims")):
        claim = _d(claim)
        if claim.get("resourceClaimName"):
            yield str(claim["resourceClaimName"])
        elif claim.get("resourceClaimTemplateName"):
            generated = statuses.get(str(claim.get("name") or ""))
            if generated:
                yield str(generated)


def uses_cluster_trust_bundles(pod: Obj) -> bool:
    for volume in _l(_d(pod.get("spec")).get("volumes")):
        for src in _l(_d(_d(volume).get("projected")).get("sources")):
            if _d(src).get("clusterTrustBundle") is not None:
                return True
    return False


# -- PersistentVolumes ------------------------------------------------------------------------
# Sources whose `secretRef` names a Secret: (source, a reference without a namespace is in
# the claim's namespace); cinder's and storageos' references carry the namespace.
_PV_SECRET_REFS = (("cephfs", True), ("flexVolume", True), ("rbd", True), ("scaleIO", True),
                   ("iscsi", True), ("cinder", False), ("storageos", False))
# CSI's secret references: (field, visible to the kubelet).
_CSI_SECRET_REFS = (("controllerPublishSecretRef", False), ("nodeStageSecretRef", True),
                    ("nodePublishSecretRef", True), ("controllerExpandSecretRef", False),
                    ("nodeExpandSecretRef", True))


def pv_secret_refs(pv: Obj) -> Iterator[tuple[str, str, bool]]:
    """(namespace, name, visible to the kubelet) of the Secrets a PersistentVolume's
    source names; a reference without a namespace is in the claim's namespace."""
    spec = _d(pv.get("spec"))
    claim_ns = str(_d(spec.get("claimRef")).get("namespace") or "")
    azure = spec.get("azureFile")
    if isinstance(azure, dict):
        if azure.get("secretName"):
            yield str(azure.get("secretNamespace") or claim_ns), str(azure["secretName"]), True
        return
    for source, in_claim_ns in _PV_SECRET_REFS:
        src = spec.get(source)
        if isinstance(src, dict):
            ref = src.get("secretRef")
            if isinstance(ref, dict):
                ns = ref.get("namespace") or (claim_ns if in_claim_ns else "")
                yield str(ns), str(ref.get("name") or ""), True
            return
    csi = spec.get("csi")
    if isinstance(csi, dict):
        for field, visible in _CSI_SECRET_REFS:
            ref = csi.get(field)
            if isinstance(ref, dict):
                yield str(ref.get("namespace") or ""), str(ref.get("name") or ""), visible
