"""Pure helpers of the StatefulSet controller, after upstream's
`pkg/controller/statefulset/stateful_set_utils.go`. No I/O.

- identity: pod `<set>-<ordinal>` (ordinals from `spec.ordinals.start`, default 0), labels
  `statefulset.kubernetes.io/pod-name: <pod>` and `apps.kubernetes.io/pod-index:
  <ordinal>`, `spec.hostname` = the pod name and `spec.subdomain` = `spec.serviceName`;
- storage: one PVC per volumeClaimTemplate and ordinal, `<template>-<set>-<ordinal>`,
  labelled with the template's labels plus the selector's matchLabels; the pod's volume
  of the template's name points at it;
- revisions: the pod label `controller-revision-hash` holds the name of the
  ControllerRevision the pod was made from; a missing pod below the partition is made
  from the current revision, others from the update revision;
- `persistentVolumeClaimRetentionPolicy` (whenDeleted / whenScaled: Retain | Delete)
  through ownerReferences on the claims (not controller refs): whenDeleted Delete → the
  set owns its claims; whenScaled Delete → a condemned pod (ordinal out of range) owns
  its claims, so the garbage collector removes them with the pod;
- health: Running and Ready (and available for `minReadySeconds`), not terminating.
"""
from __future__ import annotations

import copy
import re
from datetime import datetime, timezone
from typing import Any

from pyk8s.controllers.controller_utils import is_pod_available, is_pod_ready, pod_from_template
from pyk8s.controllers.history import apply_revision_template

Obj = dict[str, Any]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"
API_VERSION = "apps/v1"
KIND = "StatefulSet"
RETAIN = "Retain"
DELETE = "Delete"
ROLLING_UPDATE = "RollingUpdate"
ON_DELETE = "OnDelete"
PARALLEL = "Parallel"

_ORDINAL_RE = re.compile(r"^(.*)-([0-9]+)$")


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


# -- ordinals -----------------------------------------------------------------------------------
def parent_name_and_ordinal(pod: Obj) -> tuple[str, int]:
    m = _ORDINAL_RE.match(str(_md(pod).get("name") or ""))
    if not m:
        return "", -1
    try:
        return m.group(1), int(m.group(2))
    except ValueError:
        return "", -1


def get_ordinal(pod: Obj) -> int:
    return parent_name_and_ordinal(pod)[1]


def replicas(s: Obj) -> int:
    r = _spec(s).get("replicas")
    return 1 if r is None else int(r)


def start_ordinal(s: Obj) -> int:
    return int((_spec(s).get("ordinals") or {}).get("start") or 0)


def end_ordinal(s: Obj) -> int:
    return start_ordinal(s) + replicas(s) - 1


def pod_in_ordinal_range(pod: Obj, s: Obj) -> bool:
    o = get_ordinal(pod)
    return start_ordinal(s) <= o <= end_ordinal(s)


def is_member_of(s: Obj, pod: Obj) -> bool:
    return parent_name_and_ordinal(pod)[0] == _md(s).get("name")


def pod_name(s: Obj, ordinal: int) -> str:
    return f"{_md(s).get('name')}-{ordinal}"


# -- claims -------------------------------------------------------------------------------------
def claim_name(s: Obj, template: Obj, ordinal: int) -> str:
    return f"{_md(template).get('name')}-{_md(s).get('name')}-{ordinal}"


def persistent_volume_claims(s: Obj, ordinal: int) -> list[tuple[str, Obj]]:
    """(template name, claim) for every volumeClaimTemplate, in template order."""
    match_labels = (_spec(s).get("selector") or {}).get("matchLabels") or {}
    out = []
    for t in _spec(s).get("volumeClaimTemplates") or []:
        claim = copy.deepcopy(t)
        claim.pop("status", None)
        md = claim.setdefault("metadata", {})
        md["name"] = claim_name(s, t, ordinal)
        md["namespace"] = _md(s).get("namespace")
        labels = dict(md.get("labels") or {})
        labels.update(match_labels)
        if labels:
            md["labels"] = labels
        claim["apiVersion"] = "v1"
        claim["kind"] = "PersistentVolumeClaim"
        out.append((str(_md(t).get("name")), claim))
    return out


# -- identity and storage -----------------------------------------------------------------------
def identity_matches(s: Obj, pod: Obj) -> bool:
    parent, ordinal = parent_name_and_ordinal(pod)
    labels = _md(pod).get("labels") or {}
    name = _md(pod).get("name")
    return ordinal >= 0 and parent == _md(s).get("name") and name == pod_name(s, ordinal) \
        and _md(pod).get("namespace") == _md(s).get("namespace") \
        and labels.get(POD_NAME_LABEL) == name and labels.get(POD_INDEX_LABEL) == str(ordinal)


def update_identity(s: Obj, pod: Obj) -> None:
    ordinal = get_ordinal(pod)
    md = pod.setdefault("metadata", {})
    md["name"] = pod_name(s, ordinal)
    md["namespace"] = _md(s).get("namespace")
    labels = md.setdefault("labels", {})
    labels[POD_NAME_LABEL] = md["name"]
    labels[POD_INDEX_LABEL] = str(ordinal)


def init_identity(s: Obj, pod: Obj) -> None:
    update_identity(s, pod)
    spec = pod.setdefault("spec", {})
    spec["hostname"] = _md(pod)["name"]
    if _spec(s).get("serviceName"):
        spec["subdomain"] = _spec(s)["serviceName"]


def storage_matches(s: Obj, pod: Obj) -> bool:
    ordinal = get_ordinal(pod)
    if ordinal < 0:
        return False
    volumes = {v.get("name"): v for v in _spec(pod).get("volumes") or []}
    for t in _spec(s).get("volumeClaimTemplates") or []:
        v = volumes.get(_md(t).get("name"))
        pvc = (v or {}).get("persistentVolumeClaim")
        if pvc is None or pvc.get("claimName") != claim_name(s, t, ordinal):
            return False
    return True


def update_storage(s: Obj, pod: Obj) -> None:
    """The pod's volumes: one per claim template (replacing any of that name), then the
    pod's other volumes."""
    claims = persistent_volume_claims(s, get_ordinal(pod))
    names = {n for n, _ in claims}
    spec = pod.setdefault("spec", {})
    new = [{"name": n, "persistentVolumeClaim": {"claimName": c["metadata"]["name"]}}
           for n, c in claims]
    new += [v for v in spec.get("volumes") or [] if v.get("name") not in names]
    if new:
        spec["volumes"] = new


# -- pods ---------------------------------------------------------------------------------------
def new_stateful_set_pod(s: Obj, ordinal: int) -> Obj:
    ref = {"apiVersion": API_VERSION, "kind": KIND, "name": _md(s).get("name"),
           "uid": _md(s).get("uid"), "controller": True, "blockOwnerDeletion": True}
    pod = pod_from_template(_spec(s).get("template") or {}, s, ref)
    pod["metadata"]["name"] = pod_name(s, ordinal)
    init_identity(s, pod)
    update_storage(s, pod)
    return pod


def new_versioned_pod(current_set: Obj, update_set: Obj, current_revision: str,
                      update_revision: str, ordinal: int) -> Obj:
    """A missing pod: at the current revision below the partition (or below
    currentReplicas for a RollingUpdate without parameters), else at the update revision
    (upstream's newVersionedStatefulSetPod, Go's operator precedence included)."""
    us = _spec(current_set).get("updateStrategy") or {}
    rolling = us.get("rollingUpdate")
    cur_replicas = int((current_set.get("status") or {}).get("currentReplicas") or 0)
    if (us.get("type", ROLLING_UPDATE) == ROLLING_UPDATE and rolling is None
            and ordinal < cur_replicas) or \
            (rolling is not None and ordinal < int(rolling.get("partition") or 0)):
        pod = new_stateful_set_pod(current_set, ordinal)
        set_pod_revision(pod, current_revision)
        return pod
    pod = new_stateful_set_pod(update_set, ordinal)
    set_pod_revision(pod, update_revision)
    return pod


def set_pod_revision(pod: Obj, revision: str) -> None:
    pod.setdefault("metadata", {}).setdefault("labels", {})[REVISION_LABEL] = revision


def pod_revision(pod: Obj) -> str:
    return str((_md(pod).get("labels") or {}).get(REVISION_LABEL) or "")


def apply_revision(s: Obj, revision: Obj) -> Obj:
    return apply_revision_template(s, revision)


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def is_created(pod: Obj) -> bool:
    return _phase(pod) != ""


def is_pending(pod: Obj) -> bool:
    return _phase(pod) == "Pending"


def is_failed(pod: Obj) -> bool:
    return _phase(pod) == "Failed"


def is_succeeded(pod: Obj) -> bool:
    return _phase(pod) == "Succeeded"


def is_terminating(pod: Obj) -> bool:
    return bool(_md(pod).get("deletionTimestamp"))


def is_running_and_ready(pod: Obj) -> bool:
    return _phase(pod) == "Running" and is_pod_ready(pod)


def is_running_and_available(pod: Obj, min_ready_seconds: int,
                             now: datetime | None = None) -> bool:
    return is_pod_available(pod, min_ready_seconds, now or datetime.now(timezone.utc))


def is_healthy(pod: Obj) -> bool:
    return is_running_and_ready(pod) and not is_terminating(pod)


def allows_burst(s: Obj) -> bool:
    return _spec(s).get("podManagementPolicy") == PARALLEL


# -- retention policy ---------------------------------------------------------------------------
def retention_policy(s: Obj) -> tuple[str, str]:
    """(whenDeleted, whenScaled), Retain when unset."""
    p = _spec(s).get("persistentVolumeClaimRetentionPolicy") or {}
    return str(p.get("whenDeleted") or RETAIN), str(p.get("whenScaled") or RETAIN)


def has_owner_ref(target: Obj, owner: Obj) -> bool:
    uid = _md(owner).get("uid")
    return any(r.get("uid") == uid for r in _md(target).get("ownerReferences") or [])


def has_stale_owner_ref(target: Obj, owner: Obj) -> bool:
    """A reference to the owner's name with another uid (a previous incarnation)."""
    md = _md(owner)
    return any(r.get("name") == md.get("name") and r.get("uid") != md.get("uid")
               for r in _md(target).get("ownerReferences") or [])


def _set_owner_ref(target: Obj, owner: Obj, api_version: str, kind: str) -> bool:
    if has_owner_ref(target, owner):
        return False
    md = _md(owner)
    target["metadata"].setdefault("ownerReferences", []).append(
        {"apiVersion": api_version, "kind": kind, "name": md.get("name"), "uid": md.get("uid")})
    return True


def _remove_owner_ref(target: Obj, owner: Obj) -> bool:
    if not has_owner_ref(target, owner):
        return False
    uid = _md(owner).get("uid")
    refs = [r for r in _md(target).get("ownerReferences") or [] if r.get("uid") != uid]
    if refs:
        target["metadata"]["ownerReferences"] = refs
    else:
        target["metadata"].pop("ownerReferences", None)
    return True


def claim_owner_matches_set_and_pod(claim: Obj, s: Obj, pod: Obj) -> bool:
    """upstream's claimOwnerMatchesSetAndPod."""
    when_deleted, when_scaled = retention_policy(s)
    set_ref, pod_ref = has_owner_ref(claim, s), has_owner_ref(claim, pod)
    scaled_down = not pod_in_ordinal_range(pod, s)
    if when_scaled == DELETE and when_deleted == DELETE:
        return scaled_down != set_ref and scaled_down == pod_ref
    if when_scaled == DELETE:
        return not set_ref and scaled_down == pod_ref
    if when_deleted == DELETE:
        return set_ref and not pod_ref
    return not set_ref and not pod_ref


def update_claim_owner_refs(claim: Obj, s: Obj, pod: Obj) -> bool:
    """Make the claim's ownerReferences follow the policy; True when it changed (upstream's
    updateClaimOwnerRefForSetAndPod)."""
    when_deleted, when_scaled = retention_policy(s)
    scaled_down = not pod_in_ordinal_range(pod, s)
    changed = False

    def own(owner: Obj, api_version: str, kind: str, on: bool) -> None:
        nonlocal changed
        changed = (_set_owner_ref(claim, owner, api_version, kind) if on
                   else _remove_owner_ref(claim, owner)) or changed
    if when_scaled == DELETE and when_deleted == DELETE:
        own(s, API_VERSION, KIND, not scaled_down)
        own(pod, "v1", "Pod", scaled_down)
    elif when_scaled == DELETE:
        own(s, API_VERSION, KIND, False)
        own(pod, "v1", "Pod", scaled_down)
    elif when_deleted == DELETE:
        own(s, API_VERSION, KIND, True)
        own(pod, "v1", "Pod", False)
    else:
        own(s, API_VERSION, KIND, False)
        own(pod, "v1", "Pod", False)
    return changed


# -- status -------------------------------------------------------------------------------------
def compute_replica_status(pods: list[Obj], min_ready_seconds: int, current_revision: str,
                           update_revision: str, now: datetime | None = None) -> dict[str, int]:
    """replicas (created), readyReplicas, availableReplicas, currentReplicas,
    updatedReplicas (upstream's computeReplicaStatus)."""
    st = dict.fromkeys(("replicas", "readyReplicas", "availableReplicas", "currentReplicas",
                        "updatedReplicas"), 0)
    for pod in pods:
        if is_created(pod):
            st["replicas"] += 1
        if is_running_and_ready(pod):
            st["readyReplicas"] += 1
            if is_running_and_available(pod, min_ready_seconds, now):
                st["availableReplicas"] += 1
        if is_created(pod) and not is_terminating(pod):
            rev = pod_revision(pod)
            st["currentReplicas"] += rev == current_revision
            st["updatedReplicas"] += rev == update_revision
    return st


def inconsistent_status(s: Obj, status: Obj) -> bool:
    old = s.get("status") or {}
    if int(status.get("observedGeneration") or 0) > int(old.get("observedGeneration") or 0):
        return True
    for f in ("replicas", "currentReplicas", "readyReplicas", "updatedReplicas",
              "availableReplicas"):
        if int(status.get(f) or 0) != int(old.get(f) or 0):
            return True
    return any((status.get(f) or "") != (old.get(f) or "")
               for f in ("currentRevision", "updateRevision")) or \
        status.get("collisionCount") != old.get("collisionCount")


def complete_rolling_update(s: Obj, status: Obj) -> None:
    """A finished RollingUpdate makes the update revision current."""
    us = _spec(s).get("updateStrategy") or {}
    if us.get("type", ROLLING_UPDATE) == ROLLING_UPDATE and \
            status.get("updatedReplicas") == status.get("replicas") and \
            status.get("readyReplicas") == status.get("replicas"):
        status["currentReplicas"] = status.get("updatedReplicas")
        status["currentRevision"] = status.get("updateRevision")


__all__ = ["POD_NAME_LABEL", "POD_INDEX_LABEL", "REVISION_LABEL", "get_ordinal",
           "parent_name_and_ordinal", "start_ordinal", "end_ordinal", "pod_in_ordinal_range",
           "is_member_of", "pod_name", "claim_name", "persistent_volume_claims",
           "identity_matches", "update_identity", "init_identity", "storage_matches",
           "update_storage", "new_stateful_set_pod", "new_versioned_pod", "pod_revision",
           "set_pod_revision", "apply_revision", "is_created", "is_healthy",
           "is_running_and_ready", "is_running_and_available", "allows_burst",
           "retention_policy", "claim_owner_matches_set_and_pod", "update_claim_owner_refs",
           "has_stale_owner_ref", "compute_replica_status", "inconsistent_status",
           "complete_rolling_update"]
