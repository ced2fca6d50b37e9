"""VolumeBinding (upstream's plugin, the part that needs no volume binder): a pod's
PersistentVolumeClaims must exist, not be terminating, and be bound unless their
StorageClass binds on first consumer (WaitForFirstConsumer: the PV controller
provisions once the pod has a node); a bound claim's PV with required node affinity fits
only the nodes it selects. The claims, volumes and classes come from the scheduler's
informers through `VolumeListers` (set by the scheduler; without them the plugin passes
every pod, as a profile that disables it would)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pyk8s.api.scheduling import node_selector_term_matches
from pyk8s.scheduler.framework import (SKIP_STATUS, CycleState, NodeInfo, Plugin, PodInfo,
                                       Status, unresolvable)

Obj = dict[str, Any]

UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NODE_CONFLICT = "node(s) had volume node affinity conflict"
STATE_KEY = "VolumeBinding/volumes"


@dataclass
class VolumeListers:
    claim: Callable[[str, str], Obj | None]          # (namespace, name) → PVC
    volume: Callable[[str], Obj | None]              # name → PV
    storage_class: Callable[[str], Obj | None]       # name → StorageClass


def claim_names(pod: PodInfo) -> list[str]:
    """The claims a pod uses: persistentVolumeClaim volumes, and generic ephemeral volumes
    (their claim is `<pod>-<volume>`)."""
    out = []
    for v in pod.spec.get("volumes") or []:
        if (v.get("persistentVolumeClaim") or {}).get("claimName"):
            out.append(str(v["persistentVolumeClaim"]["claimName"]))
        elif v.get("ephemeral") is not None and v.get("name"):
            out.append(f"{pod.name}-{v['name']}")
    return out


def _bound(claim: Obj) -> bool:
    return bool((claim.get("spec") or {}).get("volumeName")) and \
        (claim.get("status") or {}).get("phase") == "Bound"


class VolumeBinding(Plugin):
    name = "VolumeBinding"
    has_filter = True
    listers: VolumeListers | None = None

    def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        names = claim_names(pod)
        if not names or self.listers is None:
            return SKIP_STATUS
        volumes: list[Obj] = []
        for name in names:
            claim = self.listers.claim(pod.namespace, name)
            if claim is None:
                return unresolvable(f'persistentvolumeclaim "{name}" not found', self.name)
            if (claim.get("metadata") or {}).get("deletionTimestamp"):
                return unresolvable(f'persistentvolumeclaim "{name}" is being deleted',
                                    self.name)
            if _bound(claim):
                pv = self.listers.volume(str(claim["spec"]["volumeName"]))
                if pv is not None:
                    volumes.append(pv)
                continue
            cls_name = (claim.get("spec") or {}).get("storageClassName") or ""
            cls = self.listers.storage_class(cls_name) if cls_name else None
            if (cls or {}).get("volumeBindingMode") != "WaitForFirstConsumer":
                return unresolvable(UNBOUND_IMMEDIATE, self.name)
        affinity = [pv for pv in volumes
                    if ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")]
        if not affinity:
            return SKIP_STATUS
        state[STATE_KEY] = affinity
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        for pv in state.get(STATE_KEY) or []:
            terms = pv["spec"]["nodeAffinity"]["required"].get("nodeSelectorTerms") or []
            if not any(node_selector_term_matches(t, node.labels, node.name) for t in terms):
                return unresolvable(NODE_CONFLICT, self.name)
        return None
