"""Per-resource rules, as upstream's `pkg/registry/<group>/<resource>/strategy.go`.

A `Strategy` says what happens to an object on create and update, for the main resource
and for its status subresource. The generic store calls it; it does no I/O.
"""
from __future__ import annotations

import copy
from typing import Any

from pyk8s.api import defaults, validation
from pyk8s.api.catalogue import ResourceInfo
from pyk8s.api.errors import StatusCause

Obj = dict[str, Any]

# Kinds whose spec changes bump metadata.generation (upstream strategies that do so).
_GENERATION_KINDS = {
    ("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "StatefulSet"),
    ("apps", "DaemonSet"), ("", "ReplicationController"), ("batch", "Job"),
    ("batch", "CronJob"), ("autoscaling", "HorizontalPodAutoscaler"),
    ("policy", "PodDisruptionBudget"), ("networking.k8s.io", "NetworkPolicy"),
    ("networking.k8s.io", "Ingress"), ("", "Service"), ("discovery.k8s.io", "EndpointSlice"),
}

_META_SYSTEM_FIELDS = ("uid", "creationTimestamp", "deletionTimestamp",
                       "deletionGracePeriodSeconds", "generation", "selfLink")


def _spec_like(obj: Obj) -> Obj:
    """Everything but metadata and status: what a spec change means for generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Strategy:
    """Default rules: the main resource keeps status when a status subresource exists."""

    def __init__(self, info: ResourceInfo) -> None:
        self.info = info
        self.has_status = "status" in info.subresources
        self.tracks_generation = (info.group, info.kind) in _GENERATION_KINDS

    # -- create ----------------------------------------------------------------------------
    def default(self, obj: Obj) -> None:
        defaults.apply_defaults(self.info.group, self.info.version, self.info.kind, obj)

    def prepare_for_create(self, obj: Obj) -> None:
        md = obj["metadata"]
        for f in _META_SYSTEM_FIELDS:
            md.pop(f, None)
        if self.has_status:
            obj.pop("status", None)
        if self.tracks_generation:
            md["generation"] = 1

    def prepare_with_identity(self, obj: Obj) -> None:
        """Create rules that need the new object's uid (upstream fills the system fields
        before PrepareForCreate; here they are set after prepare_for_create)."""

    def validate(self, obj: Obj, old: Obj | None = None) -> list[StatusCause]:
        return validation.validate(self.info.group, self.info.kind, obj, old)

    # -- update ----------------------------------------------------------------------------
    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        md, old_md = new["metadata"], old.get("metadata", {})
        for f in _META_SYSTEM_FIELDS:
            if f in old_md:
                md[f] = old_md[f]
            else:
                md.pop(f, None)
        if self.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if self.tracks_generation and _spec_like(new) != _spec_like(old):
            md["generation"] = int(old_md.get("generation") or 1) + 1

    def prepare_for_status_update(self, new: Obj, old: Obj) -> Obj:
        """The status subresource takes only `status` from the request."""
        result = copy.deepcopy(old)
        if "status" in new:
            result["status"] = new["status"]
        else:
            result.pop("status", None)
        result["metadata"]["resourceVersion"] = new.get("metadata", {}).get("resourceVersion")
        return result

    def validate_status(self, obj: Obj, old: Obj) -> list[StatusCause]:
        return []

    # -- delete ----------------------------------------------------------------------------
    def graceful_delete_seconds(self, obj: Obj, requested: int | None) -> int:
        """Seconds of grace before removal; 0 deletes at once (pods override this)."""
        return 0

    def on_delete_pending(self, obj: Obj) -> None:
        """Called when deletion starts but the object must remain (finalizers, grace)."""


class NamespaceStrategy(Strategy):
    def prepare_for_create(self, obj: Obj) -> None:
        super().prepare_for_create(obj)
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        super().prepare_for_update(new, old)
        # spec.finalizers change only through /finalize.
        if "spec" in old:
            new["spec"] = copy.deepcopy(old["spec"])

    def prepare_for_finalize(self, new: Obj, old: Obj) -> Obj:
        result = copy.deepcopy(old)
        result.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get("finalizers") or []
        result["metadata"]["resourceVersion"] = new.get("metadata", {}).get("resourceVersion")
        return result

    def on_delete_pending(self, obj: Obj) -> None:
        obj.setdefault("status", {})["phase"] = "Terminating"


class PodStrategy(Strategy):
    def prepare_for_create(self, obj: Obj) -> None:
        super().prepare_for_create(obj)
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj.get("spec") or {})}

    def graceful_delete_seconds(self, obj: Obj, requested: int | None) -> int:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        # Unbound pods and finished pods go at once, as upstream.
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(0, requested)
        return int(spec.get("terminationGracePeriodSeconds", 30))


def _qos_class(spec: Obj) -> str:
    """Guaranteed / Burstable / BestEffort, from the containers' requests and limits."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and str(req[r]) != str(lim[r])):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


class DeploymentStrategy(Strategy):
    def prepare_for_status_update(self, new: Obj, old: Obj) -> Obj:
        """Upstream's deploymentStatusStrategy resets only spec and labels: the annotations
        come from the request (the deployment controller writes its revision annotation
        through /status)."""
        result = super().prepare_for_status_update(new, old)
        annotations = (new.get("metadata") or {}).get("annotations")
        if annotations:
            result["metadata"]["annotations"] = copy.deepcopy(annotations)
        else:
            result["metadata"].pop("annotations", None)
        return result


JOB_NAME_LABELS = ("job-name", "batch.kubernetes.io/job-name")
CONTROLLER_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")


class JobStrategy(Strategy):
    def prepare_with_identity(self, obj: Obj) -> None:
        """Upstream's generateSelector (unless spec.manualSelector): the pod template gets
        the job-name and controller-uid labels (new and legacy keys; ones the user set are
        kept, validation then judges them) and the selector matches the controller uid."""
        spec = obj.setdefault("spec", {})
        if spec.get("manualSelector") is True:
            return
        md = obj["metadata"]
        labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault(
            "labels", {})
        for key in JOB_NAME_LABELS:
            labels.setdefault(key, md.get("name") or "")
        for key in CONTROLLER_UID_LABELS:
            labels.setdefault(key, md["uid"])
        selector = spec.get("selector") if isinstance(spec.get("selector"), dict) else {}
        spec["selector"] = selector
        selector.setdefault("matchLabels", {}).setdefault(CONTROLLER_UID_LABELS[1], md["uid"])


_STRATEGIES: dict[tuple[str, str], type[Strategy]] = {
    ("batch", "Job"): JobStrategy,
    ("", "Namespace"): NamespaceStrategy,
    ("", "Pod"): PodStrategy,
    ("apps", "Deployment"): DeploymentStrategy,
}


def strategy_for(info: ResourceInfo) -> Strategy:
    if (info.group, info.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition"):
        from pyk8s.registry.customresource import CRDStrategy
        return CRDStrategy(info)
    from pyk8s.registry.admission_kinds import STRATEGIES as admission_kinds
    cls = _STRATEGIES.get((info.group, info.kind)) or admission_kinds.get((info.group, info.kind))
    return (cls or Strategy)(info)
