"""The pods/eviction subresource (upstream's `pkg/registry/core/pod/storage/eviction.go`).

POST /api/v1/namespaces/{ns}/pods/{name}/eviction with a policy/v1 (or v1beta1) Eviction
deletes the pod unless that would violate its PodDisruptionBudget:

- pods Pending, Succeeded, Failed or already terminating are deleted without looking at
  budgets (a Pending pod only at the resourceVersion just read, retried on conflict);
- a pod matched by more than one PDB (selectors of the pod's namespace; an empty or
  invalid selector matches nothing here) is refused with 500 InternalError, as
  upstream's guardPDB (NewInternalError);
- an unhealthy (not Ready) pod is deleted without spending the budget when the PDB's
  `unhealthyPodEvictionPolicy` is AlwaysAllow, or when the budget is currently met
  (currentHealthy ≥ desiredHealthy > 0, the IfHealthyBudget default); the delete is then
  made at the resourceVersion read, and a conflict answers 429;
- otherwise the PDB must have observed its generation (else 429 "still being processed",
  Retry-After 10) and allow a disruption (else 429 "needs N healthy pods and has M
  currently"); `disruptionsAllowed` is decremented and the pod recorded in
  `status.disruptedPods` in one optimistic-concurrency write of the PDB's status (a
  concurrent change re-runs the check on the new status);
- before deleting, the pod gets the condition DisruptionTarget=True
  (EvictionByEvictionAPI), then is deleted with the Eviction's deleteOptions (grace
  period, preconditions, dry run: `?dryRun=All` and `deleteOptions.dryRun` must agree);
- success answers 201 with a Status Success.
"""
from __future__ import annotations

import asyncio
import copy
import random
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from pyk8s.api import errors, meta
from pyk8s.api.selectors import SelectorError, label_selector_from_dict
from pyk8s.apiserver import negotiation as neg
from pyk8s.apiserver.responses import json_response
from pyk8s.registry.store import DeleteOptions, ListOptions, Store

Obj = dict[str, Any]

MAX_DISRUPTED_POD_SIZE = 2000
EVICTION_RETRY_STEPS = 20
EVICTION_RETRY_DELAY = 0.5
EVICTION_VERSIONS = ("policy/v1", "policy/v1beta1")
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
VIOLATION_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE_PDBS_MESSAGE = ("This pod has more than one PodDisruptionBudget, which the eviction "
                         "subresource does not support.")
MANAGER = "kube-apiserver"


class UnknownError(errors.ApiError):
    """A plain Go error reaching the handler: code 500 and no reason (StatusReasonUnknown)."""
    code, reason = 500, ""

    def status(self) -> dict[str, Any]:
        out = super().status()
        out.pop("reason", None)
        return out


# -- pure decisions -------------------------------------------------------------------------------
def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def can_ignore_pdb(pod: Obj) -> bool:
    """Terminal, pending and terminating pods are evicted without checking budgets."""
    return _phase(pod) in ("Succeeded", "Failed", "Pending") or \
        bool(_md(pod).get("deletionTimestamp"))


def should_enforce_resource_version(pod: Obj) -> bool:
    """Delete at the read resourceVersion unless the pod is terminal or terminating."""
    return _phase(pod) not in ("Succeeded", "Failed") and not _md(pod).get("deletionTimestamp")


def is_pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def matching_pdbs(pod: Obj, pdbs: list[Obj]) -> list[Obj]:
    """PDBs of the pod's namespace selecting it; empty or invalid selectors match nothing."""
    labels = _md(pod).get("labels") or {}
    out = []
    for pdb in pdbs:
        if _md(pdb).get("namespace") != _md(pod).get("namespace"):
            continue
        try:
            sel = label_selector_from_dict((pdb.get("spec") or {}).get("selector"))
        except SelectorError:
            continue
        if sel.empty or sel.selects_nothing or not sel.matches(labels):
            continue
        out.append(pdb)
    return out


def unhealthy_pod_bypasses_budget(pod: Obj, pdb: Obj) -> bool:
    """A not-Ready pod does not count as healthy: it is let go without spending the
    budget under AlwaysAllow, or (IfHealthyBudget, the default) while the budget is met."""
    if is_pod_ready(pod):
        return False
    if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return True
    st = pdb.get("status") or {}
    desired = int(st.get("desiredHealthy") or 0)
    return int(st.get("currentHealthy") or 0) >= desired and desired > 0


def too_many_requests(cause: str, retry_after: int = 0) -> errors.TooManyRequests:
    details: Obj = {"causes": [{"reason": DISRUPTION_BUDGET_CAUSE, "message": cause}]}
    err = errors.TooManyRequests(VIOLATION_MESSAGE, details=details)
    if retry_after > 0:
        details["retryAfterSeconds"] = retry_after
        err.headers["Retry-After"] = str(retry_after)
    return err


def still_processing(pdb_name: str) -> errors.TooManyRequests:
    return too_many_requests(f"The disruption budget {pdb_name} is still being processed by "
                             "the server.", 10)


def _forbidden(pdb_name: str, why: str) -> errors.Forbidden:
    return errors.Forbidden(f'poddisruptionbudget.policy "{pdb_name}" is forbidden: {why}',
                            details={"name": pdb_name, "group": "policy",
                                     "kind": "poddisruptionbudget"})


def check_and_decrement(pdb: Obj, pod_name: str, dry_run: bool, now: datetime) -> Obj:
    """The PDB with one disruption spent on `pod_name` (its status changed in place on a
    copy), or the error refusing it. A dry run only checks."""
    md, st = _md(pdb), pdb.get("status") or {}
    name = str(md.get("name") or "")
    if int(st.get("observedGeneration") or 0) < int(md.get("generation") or 0):
        raise still_processing(name)
    allowed = int(st.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise _forbidden(name, "pdb disruptions allowed is negative")
    if len(st.get("disruptedPods") or {}) > MAX_DISRUPTED_POD_SIZE:
        raise _forbidden(name, "DisruptedPods map too big - too many evictions not confirmed "
                               "by PDB controller")
    if allowed == 0:
        raise too_many_requests(f"The disruption budget {name} needs "
                                f"{int(st.get('desiredHealthy') or 0)} healthy pods and has "
                                f"{int(st.get('currentHealthy') or 0)} currently")
    new = copy.deepcopy(pdb)
    nst = new.setdefault("status", {})
    nst["disruptionsAllowed"] = allowed - 1
    if allowed - 1 == 0:
        _set_insufficient(nst, now)
    if not dry_run:
        nst.setdefault("disruptedPods", {})
        nst["disruptedPods"] = dict(nst["disruptedPods"] or {})
        nst["disruptedPods"][pod_name] = meta.rfc3339(now)
    return new


def _set_insufficient(status: Obj, now: datetime) -> None:
    """pdbhelper.UpdateDisruptionAllowedCondition once disruptionsAllowed reached 0."""
    conds = [dict(c) for c in status.get("conditions") or []]
    cond = next((c for c in conds if c.get("type") == "DisruptionAllowed"), None)
    if cond is None:
        cond = {"type": "DisruptionAllowed", "lastTransitionTime": meta.rfc3339(now)}
        conds.append(cond)
    if cond.get("status") != "False":
        cond["lastTransitionTime"] = meta.rfc3339(now)
    cond.update({"status": "False", "reason": "InsufficientPods", "message": "",
                 "observedGeneration": int(status.get("observedGeneration") or 0)})
    status["conditions"] = conds


def propagate_dry_run(delete_options: Obj | None, query_dry_run: list[str]) -> Obj:
    """The Eviction's deleteOptions with the request's dryRun (they must agree if both)."""
    opts = copy.deepcopy(delete_options) if isinstance(delete_options, dict) else {}
    body_dry = list(opts.get("dryRun") or [])
    if not body_dry:
        if query_dry_run:
            opts["dryRun"] = list(query_dry_run)
        return opts
    if query_dry_run and query_dry_run != body_dry:
        raise UnknownError(f"Non-matching dry-run options in request and content: "
                           f"[{' '.join(query_dry_run)}] and [{' '.join(body_dry)}]")
    return opts


def disruption_target_condition(pod: Obj, now: datetime) -> bool:
    """Set DisruptionTarget=True (EvictionByEvictionAPI) on `pod` in place (upstream's
    UpdatePodCondition); False when nothing changed."""
    st = pod.setdefault("status", {})
    conds = st.setdefault("conditions", [])
    new = {"type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
           "lastTransitionTime": meta.rfc3339(now), "reason": "EvictionByEvictionAPI",
           "message": "Eviction API: evicting"}
    for i, c in enumerate(conds):
        if c.get("type") == "DisruptionTarget":
            if c.get("status") == new["status"]:
                new["lastTransitionTime"] = c.get("lastTransitionTime")
            changed = any(c.get(k) != new[k] for k in ("status", "reason", "message",
                                                       "lastProbeTime", "lastTransitionTime"))
            conds[i] = new
            return changed
    conds.append(new)
    return True


# -- the handler ----------------------------------------------------------------------------------
class Eviction:
    """One eviction request against the pod and PDB stores."""

    def __init__(self, pods: Store, pdbs: Store, namespace: str, name: str, opts: DeleteOptions,
                 user: Any = None) -> None:
        self.pods, self.pdbs = pods, pdbs
        self.namespace, self.name = namespace, name
        self.opts = opts
        self.user = user

    @property
    def user_set_resource_version(self) -> bool:
        return bool(self.opts.preconditions.get("resourceVersion"))

    def _with_resource_version(self, rv: str) -> DeleteOptions:
        pre = dict(self.opts.preconditions)
        pre["resourceVersion"] = rv
        return replace(self.opts, preconditions=pre)

    async def run(self) -> Obj:
        """The Status to answer with (Success); refusals are raised as ApiErrors."""
        pod = await self._evict_if_pdb_can_be_ignored()
        if pod is None:
            return success()
        listed = await self.pdbs.list(self.namespace, ListOptions())
        pdbs = matching_pdbs(pod, listed.items)
        if len(pdbs) > 1:
            raise errors.InternalError.of(MULTIPLE_PDBS_MESSAGE)
        opts = self.opts
        pdb_name = ""
        bypass = False
        if pdbs:
            pdb_name = str(_md(pdbs[0]).get("name"))
            bypass = unhealthy_pod_bypasses_budget(pod, pdbs[0])
            if not bypass:
                await self._spend_budget(pdbs[0])
        if bypass:
            opts = self._with_resource_version(str(_md(pod).get("resourceVersion")))
        try:
            await self._add_condition_and_delete(opts)
        except errors.Conflict:
            if bypass and not self.user_set_resource_version:
                raise still_processing(pdb_name) from None
            raise
        return success()

    async def _evict_if_pdb_can_be_ignored(self) -> Obj | None:
        """Delete a pod that needs no budget check (None once done), else return it."""
        for attempt in range(EVICTION_RETRY_STEPS):
            pod = await self.pods.get(self.namespace, self.name)
            if not can_ignore_pdb(pod):
                return pod
            opts = self.opts
            if should_enforce_resource_version(pod) and not self.user_set_resource_version:
                opts = self._with_resource_version(str(_md(pod).get("resourceVersion")))
            try:
                await self._add_condition_and_delete(opts)
                return None
            except errors.Conflict:
                if self.user_set_resource_version or attempt == EVICTION_RETRY_STEPS - 1:
                    raise
                await asyncio.sleep(EVICTION_RETRY_DELAY * (1 + 0.1 * random.random()))
        raise AssertionError("unreachable")

    async def _spend_budget(self, pdb: Obj) -> None:
        now = datetime.now(timezone.utc)
        if self.opts.dry_run:
            check_and_decrement(pdb, self.name, True, now)
            return
        pdb_name = str(_md(pdb).get("name"))

        def mutate(current: Obj) -> Obj:
            return check_and_decrement(current, self.name, False, now)

        await self.pdbs.update(self.namespace, pdb_name, mutate, subresource="status",
                               manager=MANAGER, user=self.user)

    async def _add_condition_and_delete(self, opts: DeleteOptions) -> None:
        if not opts.dry_run:
            pre = opts.preconditions

            def mutate(current: Obj) -> Obj:
                cmd = current["metadata"]
                if pre.get("uid") and pre["uid"] != cmd.get("uid"):
                    raise errors.Conflict.of("", "Pod", self.name, (
                        f"the UID in the precondition ({pre['uid']}) does not match the UID "
                        f"in record ({cmd.get('uid')}). The object might have been deleted "
                        "and then recreated"))
                if pre.get("resourceVersion") and pre["resourceVersion"] != \
                        cmd.get("resourceVersion"):
                    raise errors.Conflict.of("", "Pod", self.name, (
                        f"the ResourceVersion in the precondition ({pre['resourceVersion']}) "
                        f"does not match the ResourceVersion in record "
                        f"({cmd.get('resourceVersion')}). The object might have been modified"))
                disruption_target_condition(current, datetime.now(timezone.utc))
                return current

            updated, _, _ = await self.pods.update(self.namespace, self.name, mutate,
                                                   subresource="status", manager=MANAGER,
                                                   user=self.user)
            if pre.get("resourceVersion"):
                pre = dict(pre)
                pre["resourceVersion"] = _md(updated).get("resourceVersion")
                opts = replace(opts, preconditions=pre)
        await self.pods.delete(self.namespace, self.name, opts, user=self.user)


def success() -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "code": 201}


def _check_body(body: Obj, namespace: str, name: str) -> None:
    kind, av = body.get("kind"), body.get("apiVersion")
    if kind and kind != "Eviction" or av and av not in EVICTION_VERSIONS:
        raise errors.BadRequest(f"not a Eviction object: {av or ''}, Kind={kind or ''}")
    md = body.get("metadata") or {}
    if md.get("name") != name:
        raise errors.BadRequest("name in URL does not match name in Eviction object")
    if md.get("namespace") not in (None, "", namespace):
        raise errors.BadRequest("the namespace of the provided object does not match the "
                                "namespace sent on the request")


async def handle(request: web.Request, pods: Store, pdbs: Store, namespace: str,
                 name: str, query_dry_run: list[str]) -> web.Response:
    """POST pods/{name}/eviction."""
    if request.method != "POST":
        raise errors.MethodNotAllowed("the server does not allow this method on the "
                                      "requested resource")
    body = await neg.read_object(request)
    _check_body(body, namespace, name)
    raw_opts = propagate_dry_run(body.get("deleteOptions"), query_dry_run)
    opts = DeleteOptions.from_body(raw_opts, {})
    if pods.admission is not None and pods.attributes is not None:
        # admission sees the Eviction as a create of pods/eviction (NodeRestriction: a
        # node evicts only its own pods; webhooks matching pods/eviction), as upstream
        attrs = pods.attributes(operation="CREATE", group="", version="v1", resource="pods",
                                kind="Eviction", namespace=namespace, name=name, object=body,
                                subresource="eviction", user=request.get("user"),
                                dry_run=bool(opts.dry_run))
        await pods.admission.admit(attrs)
        await pods.admission.validate(attrs)
    status = await Eviction(pods, pdbs, namespace, name, opts, request.get("user")).run()
    return json_response(status, 201)


__all__ = ["handle", "Eviction", "can_ignore_pdb", "should_enforce_resource_version",
           "matching_pdbs", "unhealthy_pod_bypasses_budget", "check_and_decrement",
           "propagate_dry_run", "disruption_target_condition", "too_many_requests",
           "VIOLATION_MESSAGE", "MULTIPLE_PDBS_MESSAGE"]
