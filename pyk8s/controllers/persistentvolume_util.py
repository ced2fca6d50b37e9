"""Pure rules of the PersistentVolume binder (upstream's
`pkg/controller/volume/persistentvolume/index.go` and the helpers of `pv_controller.go`);
no I/O.

Matching a claim to a volume (`find_best_match`), as upstream's `findMatchingVolume`:

- a volume whose `claimRef` points at the claim (name and namespace; uid empty or the
  claim's) is taken first, when its capacity and volume mode fit;
- otherwise a volume is a candidate when it is `Available`, has no `claimRef`, is not
  being deleted, has the claim's storage class (`""` matches no class), the claim's
  volume mode (`Filesystem` when unset), every access mode the claim asks for, a
  capacity ≥ the claim's `resources.requests.storage` and labels the claim's `selector`
  matches;
- among candidates, the one with the fewest access modes, then the smallest capacity wins
  (upstream indexes volumes by access-mode set, tries the smallest sets first and takes
  the smallest volume in a set).
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Iterable

from pyk8s.api.selectors import label_selector_from_dict
from pyk8s.api.validation import parse_quantity

Obj = dict[str, Any]

# Annotations (upstream's names).
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"

# Provisioners this controller serves itself (k3s's name, so k3s manifests work, and ours).
LOCAL_PATH_PROVISIONERS = ("rancher.io/local-path", "pyk8s.io/local-path")
DEFAULT_LOCAL_PATH_DIR = "/var/lib/pyk8s/storage"


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def claim_class(claim: Obj) -> str:
    """The claim's storage class: spec.storageClassName, else the beta annotation, else ""."""
    name = _spec(claim).get("storageClassName")
    if name is not None:
        return str(name)
    return str((_md(claim).get("annotations") or {}).get(ANN_BETA_STORAGE_CLASS) or "")


def volume_class(pv: Obj) -> str:
    name = _spec(pv).get("storageClassName")
    if name is not None:
        return str(name)
    return str((_md(pv).get("annotations") or {}).get(ANN_BETA_STORAGE_CLASS) or "")


def requested_storage(claim: Obj) -> Fraction:
    req = ((_spec(claim).get("resources") or {}).get("requests") or {}).get("storage")
    return parse_quantity(req) or Fraction(0) if req is not None else Fraction(0)


def volume_capacity(pv: Obj) -> Fraction:
    cap = (_spec(pv).get("capacity") or {}).get("storage")
    return parse_quantity(cap) or Fraction(0) if cap is not None else Fraction(0)


def volume_mode(obj: Obj) -> str:
    return str(_spec(obj).get("volumeMode") or "Filesystem")


def is_default_class(sc: Obj) -> bool:
    ann = _md(sc).get("annotations") or {}
    return ann.get(ANN_DEFAULT_CLASS) == "true" or ann.get(ANN_BETA_DEFAULT_CLASS) == "true"


def is_bound_to_claim(pv: Obj, claim: Obj) -> bool:
    """Upstream's IsVolumeBoundToClaim: claimRef names the claim (uid empty or equal)."""
    ref = _spec(pv).get("claimRef")
    if not ref:
        return False
    md = _md(claim)
    if ref.get("name") != md.get("name") or \
            (ref.get("namespace") or "") != (md.get("namespace") or ""):
        return False
    return not ref.get("uid") or ref.get("uid") == md.get("uid")


def access_modes_satisfied(claim: Obj, pv: Obj) -> bool:
    have = set(_spec(pv).get("accessModes") or [])
    return all(m in have for m in _spec(claim).get("accessModes") or [])


def satisfies_claim(pv: Obj, claim: Obj) -> str:
    """Why `pv` cannot serve `claim` ("" when it can): upstream's checkVolumeSatisfyClaim,
    used for a claim that names its volume."""
    if volume_capacity(pv) < requested_storage(claim):
        return "requested PV is too small"
    if volume_class(pv) != claim_class(claim):
        return "storageClassName does not match"
    if volume_mode(pv) != volume_mode(claim):
        return "incompatible volumeMode"
    if not access_modes_satisfied(claim, pv):
        return "incompatible accessMode"
    return ""


def find_best_match(claim: Obj, volumes: Iterable[Obj], *, delay_binding: bool = False
                    ) -> Obj | None:
    """The volume `claim` should bind to, or None (see the module docstring). With
    `delay_binding` (WaitForFirstConsumer) only a volume pre-bound to the claim is taken."""
    requested = requested_storage(claim)
    want_class = claim_class(claim)
    try:
        selector = label_selector_from_dict(_spec(claim).get("selector")) \
            if _spec(claim).get("selector") else None
    except ValueError:
        return None
    best: Obj | None = None
    best_key: tuple[int, Fraction] | None = None
    for pv in volumes:
        spec = _spec(pv)
        if spec.get("claimRef") and not is_bound_to_claim(pv, claim):
            continue
        cap = volume_capacity(pv)
        if cap < requested or volume_mode(pv) != volume_mode(claim):
            continue
        if _md(pv).get("deletionTimestamp"):
            continue
        if not access_modes_satisfied(claim, pv):
            continue
        if is_bound_to_claim(pv, claim):
            return pv
        if delay_binding:
            continue
        if (pv.get("status") or {}).get("phase") != "Available":
            continue
        if selector is not None and not selector.matches(_md(pv).get("labels") or {}):
            continue
        if volume_class(pv) != want_class:
            continue
        key = (len(spec.get("accessModes") or []), cap)
        if best_key is None or key < best_key:
            best, best_key = pv, key
    return best


def claim_ref(claim: Obj) -> Obj:
    """The ObjectReference a volume's claimRef holds."""
    md = _md(claim)
    return {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
            "namespace": md.get("namespace") or "", "name": md.get("name") or "",
            "uid": md.get("uid") or "", "resourceVersion": md.get("resourceVersion") or ""}


def provisioned_path(root: str, claim: Obj) -> str:
    """Where the local-path provisioner keeps a claim's data (k3s's layout):
    `<root>/pvc-<uid>_<namespace>_<name>`."""
    md = _md(claim)
    return f"{root.rstrip('/')}/pvc-{md.get('uid')}_{md.get('namespace')}_{md.get('name')}"


def provisioned_volume(claim: Obj, sc: Obj, root: str) -> Obj:
    """The PV the local-path provisioner makes for `claim` of class `sc`: named
    `pvc-<claim uid>`, a DirectoryOrCreate hostPath under `root`, the claim's size, access
    modes and volume mode, the class's reclaim policy (Delete by default) and mount
    options, pre-bound to the claim."""
    md = _md(claim)
    spec = _spec(claim)
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    pv_spec: Obj = {
        "capacity": {"storage": storage},
        "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
        "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
        "storageClassName": _md(sc).get("name"),
        "volumeMode": volume_mode(claim),
        "hostPath": {"path": provisioned_path(root, claim), "type": "DirectoryOrCreate"},
        "claimRef": claim_ref(claim),
    }
    if sc.get("mountOptions"):
        pv_spec["mountOptions"] = list(sc["mountOptions"])
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"pvc-{md.get('uid')}",
                         "annotations": {ANN_PROVISIONED_BY: sc.get("provisioner") or "",
                                         ANN_BOUND_BY_CONTROLLER: "yes"}},
            "spec": pv_spec}


def default_storage_class() -> Obj:
    """k3s's default class: `local-path`, provisioner rancher.io/local-path."""
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local-path", "annotations": {ANN_DEFAULT_CLASS: "true"}},
            "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate"}


__all__ = ["find_best_match", "satisfies_claim", "is_bound_to_claim", "claim_class",
           "volume_class", "claim_ref", "provisioned_volume", "provisioned_path",
           "default_storage_class", "is_default_class", "LOCAL_PATH_PROVISIONERS",
           "DEFAULT_LOCAL_PATH_DIR"]
