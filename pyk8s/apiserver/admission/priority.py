"""Priority: a pod's `spec.priority` (and `preemptionPolicy`) from its PriorityClass, as
upstream's `plugin/pkg/admission/priority` (so the scheduler and the kubelet read the
pod alone, never PriorityClasses).

Pods (mutating):
- create: `priorityClassName` names the class (none: `no PriorityClass with name X was
  found`, 403); without a name the global default class (the lowest value if several)
  gives name, value and policy, else priority 0 and PreemptLowerPriority. A `priority`
  or `preemptionPolicy` the client sent that differs from the class's is rejected (403,
  upstream's messages);
- update: the old pod's priority / preemptionPolicy are kept when the new body has none
  (validation keeps them immutable).

PriorityClasses (validating, create / update): at most one `globalDefault`.

The system classes `system-node-critical` and `system-cluster-critical` are created at
API server start (`ensure_system_priority_classes`, upstream's
scheduling/bootstrap-system-priority-classes post-start hook).
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Awaitable, Callable

from pyk8s.api import errors
from pyk8s.apiserver.admission.chain import CREATE, UPDATE, Attributes, Plugin, forbidden
from pyk8s.apiserver.authn import ADMIN

log = logging.getLogger("pyk8s.apiserver.admission.priority")

Obj = dict[str, Any]
ListFn = Callable[[str, str, str, str | None], Awaitable[list[Obj]]]

PREEMPT_LOWER_PRIORITY = "PreemptLowerPriority"
DEFAULT_PRIORITY = 0          # upstream's DefaultPriorityWhenNoDefaultClassExists

# Upstream's SystemPriorityClasses (pkg/apis/scheduling).
SYSTEM_PRIORITY_CLASSES: tuple[Obj, ...] = (
    {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
     "metadata": {"name": "system-node-critical"}, "value": 2_000_001_000,
     "description": "Used for system critical pods that must not be moved from their "
                    "current node."},
    {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
     "metadata": {"name": "system-cluster-critical"}, "value": 2_000_000_000,
     "description": "Used for system critical pods that must run in the cluster, but can "
                    "be moved to another node if necessary."},
)


def default_priority_class(classes: list[Obj]) -> Obj | None:
    """The globalDefault class; with several (a race), the one with the lowest value."""
    found: Obj | None = None
    for pc in classes:
        if pc.get("globalDefault") and \
                (found is None or int(found.get("value") or 0) > int(pc.get("value") or 0)):
            found = pc
    return found


class Priority(Plugin):
    name = "Priority"
    mutating = True
    validating = True

    def __init__(self, list_objects: ListFn) -> None:
        self.list_objects = list_objects

    async def _classes(self) -> list[Obj]:
        return await self.list_objects("scheduling.k8s.io", "v1", "priorityclasses", None)

    def handles(self, attrs: Attributes) -> bool:
        if attrs.subresource or attrs.object is None:
            return False
        if attrs.group == "" and attrs.resource == "pods":
            return attrs.operation in (CREATE, UPDATE)
        return attrs.group == "scheduling.k8s.io" and attrs.resource == "priorityclasses" \
            and attrs.operation in (CREATE, UPDATE)

    async def admit(self, attrs: Attributes) -> None:
        if attrs.resource != "pods":
            return
        pod = attrs.object
        assert pod is not None
        spec = pod.setdefault("spec", {})
        if attrs.operation == UPDATE:
            old = (attrs.old_object or {}).get("spec") or {}
            for f in ("priority", "preemptionPolicy"):
                if spec.get(f) is None and old.get(f) is not None:
                    spec[f] = old[f]
            return
        name = spec.get("priorityClassName") or ""
        if not name:
            pc = default_priority_class(await self._classes())
            if pc is not None:
                spec["priorityClassName"] = pc["metadata"]["name"]
                priority = int(pc.get("value") or 0)
                policy = pc.get("preemptionPolicy")
            else:
                priority, policy = DEFAULT_PRIORITY, PREEMPT_LOWER_PRIORITY
        else:
            pc = next((c for c in await self._classes()
                       if c["metadata"].get("name") == name), None)
            if pc is None:
                raise forbidden(attrs, f"no PriorityClass with name {name} was found")
            priority, policy = int(pc.get("value") or 0), pc.get("preemptionPolicy")
        given = spec.get("priority")
        if given is not None and given != priority:
            raise forbidden(attrs, f"the integer value of priority ({given}) must not be "
                                   f"provided in pod spec; priority admission controller "
                                   f"computed {priority} from the given PriorityClass name")
        spec["priority"] = priority
        if policy:
            given = spec.get("preemptionPolicy")
            if given and given != policy:
                raise forbidden(attrs, f"the string value of PreemptionPolicy ({given}) must "
                                       f"not be provided in pod spec; priority admission "
                                       f"controller computed {policy} from the given "
                                       f"PriorityClass name")
            spec["preemptionPolicy"] = policy

    async def validate(self, attrs: Attributes) -> None:
        if attrs.resource != "priorityclasses" or not (attrs.object or {}).get("globalDefault"):
            return
        dpc = default_priority_class(await self._classes())
        if dpc is None:
            return
        name = dpc["metadata"].get("name")
        if attrs.operation == CREATE or name != attrs.name:
            raise forbidden(attrs, f"PriorityClass {name} is already marked as default. "
                                   "Only one default can exist")


async def ensure_system_priority_classes(server: Any) -> None:
    """Create the system classes that are missing (as the API server itself)."""
    info = server.catalogue.lookup("scheduling.k8s.io", "v1", "priorityclasses")
    if info is None:
        return
    store = server.store(info)
    for pc in SYSTEM_PRIORITY_CLASSES:
        try:
            await store.create(None, copy.deepcopy(pc), user=ADMIN,
                               manager="kube-apiserver")
            log.info("created PriorityClass %s", pc["metadata"]["name"])
        except errors.AlreadyExists:
            pass


__all__ = ["Priority", "ensure_system_priority_classes", "default_priority_class",
           "SYSTEM_PRIORITY_CLASSES"]
