"""What the workload controllers share, after upstream's `pkg/controller/controller_utils.go`
and `controller_ref_manager.go`:

- `ControllerExpectations` / `UIDTrackingControllerExpectations`: how many creations and
  deletions a controller still expects to observe through its informers, so a burst of
  events never makes it act twice on a stale cache (5 minute TTL).
- `ControllerRefManager`: adoption and release of dependents by selector and
  `ownerReferences` (`claim`), with upstream's rules.
- pods: `is_pod_active`, `is_pod_ready`, `is_pod_available`, `pod_from_template`,
  `PodControl` (create / delete with SuccessfulCreate / FailedCreate / SuccessfulDelete /
  FailedDelete events), `active_pods_deletion_order` (upstream's ActivePodsWithRanks).
- `slow_start_batch(count, initial, fn)`: 1, 2, 4, … calls in parallel, stopping at the
  first batch with an error.
- informer event handlers: `ControllerEventHandlers` (a controller's own objects: enqueue,
  forget on deletion or uid change) and `DependentEventHandlers` (pods / revisions: enqueue
  the controller their controllerRef names — `resolve_controller_ref` — or, for an orphan,
  the controllers selecting it — `controllers_selecting` —, with expectations).
"""
from __future__ import annotations

import asyncio
import copy
import functools
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable

from pyk8s.api.meta import parse_time
from pyk8s.api.selectors import LabelSelector
from pyk8s.client.events import NORMAL, WARNING, EventRecorder
from pyk8s.client.informer import controller_ref, object_key
from pyk8s.client.rest import ApiError, NotFound

log = logging.getLogger("pyk8s.controllers")

Obj = dict[str, Any]

EXPECTATIONS_TIMEOUT = 5 * 60.0
SLOW_START_INITIAL_BATCH_SIZE = 1
NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"


async def sync_or_drop(sync: Callable[[str], Awaitable[None]], queue: Any, key: str,
                       component: str, what: str, max_retries: int) -> None:
    """upstream's handleErr: run `sync(key)`; an error in a terminating namespace is not
    retried, and a key that failed `max_retries` times is dropped (until its next event);
    any other error propagates so the worker requeues the key with backoff."""
    try:
        await sync(key)
    except Exception as e:
        if isinstance(e, ApiError) and e.has_cause(NAMESPACE_TERMINATING_CAUSE):
            return
        if queue.num_requeues(key) >= max_retries:
            log.info("%s: dropping %s %s out of the queue: %s", component, what, key, e)
            return
        raise
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def resource_version(obj: Obj) -> int:
    """metadata.resourceVersion as a number (0: unset or not a number), to tell which of
    two copies of an object is newer."""
    try:
        return int(_md(obj).get("resourceVersion") or 0)
    except ValueError:
        return 0


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- expectations -------------------------------------------------------------------------------
@dataclass
class ControlleeExpectations:
    add: int = 0
    delete: int = 0
    timestamp: float = 0.0

    def fulfilled(self) -> bool:
        return self.add <= 0 and self.delete <= 0


class ControllerExpectations:
    """Per controller key: creations and deletions expected to be seen by the informers."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 ttl: float = EXPECTATIONS_TIMEOUT) -> None:
        self.clock = clock
        self.ttl = ttl
        self._store: dict[str, ControlleeExpectations] = {}

    def get(self, key: str) -> ControlleeExpectations | None:
        return self._store.get(key)

    def satisfied_expectations(self, key: str) -> bool:
        """True when the controller may act: nothing pending, expectations expired, or none
        recorded (a new controller, or one whose expectations were deleted)."""
        exp = self._store.get(key)
        if exp is None:
            return True
        if exp.fulfilled():
            return True
        if self.clock() - exp.timestamp > self.ttl:
            log.info("expectations of %s expired (add %d, del %d)", key, exp.add, exp.delete)
            return True
        return False

    def set_expectations(self, key: str, add: int, delete: int) -> None:
        self._store[key] = ControlleeExpectations(add, delete, self.clock())

    def expect_creations(self, key: str, adds: int) -> None:
        self.set_expectations(key, adds, 0)

    def expect_deletions(self, key: str, dels: int) -> None:
        self.set_expectations(key, 0, dels)

    def lower_expectations(self, key: str, add: int, delete: int) -> None:
        exp = self._store.get(key)
        if exp is not None:
            exp.add -= add
            exp.delete -= delete

    def raise_expectations(self, key: str, add: int, delete: int) -> None:
        exp = self._store.get(key)
        if exp is not None:
            exp.add += add
            exp.delete += delete

    def creation_observed(self, key: str) -> None:
        self.lower_expectations(key, 1, 0)

    def deletion_observed(self, key: str) -> None:
        self.lower_expectations(key, 0, 1)

    def delete_expectations(self, key: str) -> None:
        self._store.pop(key, None)


class UIDTrackingControllerExpectations(ControllerExpectations):
    """Deletions are tracked by the keys of the pods deleted, so that a pod seen twice
    (first with a deletionTimestamp, then deleted) lowers the expectations once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 ttl: float = EXPECTATIONS_TIMEOUT) -> None:
        super().__init__(clock, ttl)
        self._uids: dict[str, set[str]] = {}

    def get_uids(self, key: str) -> set[str]:
        return self._uids.get(key, set())

    def expect_deletions(self, key: str, deleted_keys: Iterable[str]) -> None:  # type: ignore[override]
        keys = set(deleted_keys)
        self._uids[key] = keys
        self.set_expectations(key, 0, len(keys))

    def deletion_observed(self, key: str, deleted_key: str = "") -> None:  # type: ignore[override]
        uids = self._uids.get(key)
        if uids is not None and deleted_key in uids:
            uids.discard(deleted_key)
            self.lower_expectations(key, 0, 1)

    def delete_expectations(self, key: str) -> None:
        super().delete_expectations(key)
        self._uids.pop(key, None)


# -- pods ---------------------------------------------------------------------------------------
def is_pod_active(pod: Obj) -> bool:
    """Not Succeeded, not Failed, not being deleted (controller.IsPodActive)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not _md(pod).get("deletionTimestamp")


def filter_active_pods(pods: Iterable[Obj]) -> list[Obj]:
    return [p for p in pods if is_pod_active(p)]


def pod_ready_condition(pod: Obj) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = pod_ready_condition(pod)
    return c is not None and c.get("status") == "True"


def is_pod_available(pod: Obj, min_ready_seconds: int, now: datetime | None = None) -> bool:
    """Ready for at least `min_ready_seconds` (podutil.IsPodAvailable)."""
    c = pod_ready_condition(pod)
    if c is None or c.get("status") != "True":
        return False
    if not min_ready_seconds:
        return True
    since = parse_time(c.get("lastTransitionTime"))
    if since is None:
        return False
    now = now or datetime.now(timezone.utc)
    return since.timestamp() + min_ready_seconds < now.timestamp()


def pod_key(pod: Obj) -> str:
    return object_key(pod)


def new_controller_ref(owner: Obj, api_version: str, kind: str) -> Obj:
    """metav1.NewControllerRef: controller and blockOwnerDeletion true."""
    md = _md(owner)
    return {"apiVersion": api_version, "kind": kind, "name": md.get("name"),
            "uid": md.get("uid"), "controller": True, "blockOwnerDeletion": True}


def pod_from_template(template: Obj, parent: Obj, ref: Obj | None) -> Obj:
    """The pod a controller creates from its template (controller.GetPodFromTemplate):
    labels, annotations and finalizers copied, `generateName: <parent>-`, the controller
    reference, and the template's spec."""
    tmd = template.get("metadata") or {}
    md: Obj = {"generateName": f"{_md(parent).get('name')}-"}
    if tmd.get("labels"):
        md["labels"] = dict(tmd["labels"])
    if tmd.get("annotations"):
        md["annotations"] = dict(tmd["annotations"])
    if tmd.get("finalizers"):
        md["finalizers"] = list(tmd["finalizers"])
    if ref is not None:
        md["ownerReferences"] = [dict(ref)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": copy.deepcopy(template.get("spec") or {})}


class PodControl:
    """Creates and deletes pods on behalf of a controller, recording events about it
    (controller.RealPodControl)."""

    def __init__(self, client: Any, recorder: EventRecorder) -> None:
        self.client = client
        self.recorder = recorder

    async def create_pods(self, namespace: str, template: Obj, parent: Obj,
                          ref: Obj | None, generate_name: str | None = None) -> Obj:
        """CreatePods / CreatePodsWithGenerateName: `generate_name` replaces the default
        `<parent>-`."""
        pod = pod_from_template(template, parent, ref)
        if generate_name is not None:
            pod["metadata"]["generateName"] = generate_name
        if not (pod["metadata"].get("labels")):
            raise ValueError("unable to create pods, no labels")
        try:
            created = await self.client.create(f"/api/v1/namespaces/{namespace}/pods", pod)
        except ApiError as e:
            if not e.has_cause(NAMESPACE_TERMINATING_CAUSE):
                self.recorder.event(parent, WARNING, "FailedCreate", f"Error creating: {e.message}")
            raise
        self.recorder.event(parent, NORMAL, "SuccessfulCreate",
                            f"Created pod: {_md(created).get('name')}")
        return created

    async def delete_pod(self, namespace: str, name: str, parent: Obj) -> None:
        try:
            await self.client.delete(f"/api/v1/namespaces/{namespace}/pods/{name}")
        except NotFound:
            log.debug("pod %s/%s has already been deleted", namespace, name)
            raise
        except ApiError as e:
            self.recorder.event(parent, WARNING, "FailedDelete", f"Error deleting: {e.message}")
            raise
        self.recorder.event(parent, NORMAL, "SuccessfulDelete", f"Deleted pod: {name}")

    async def patch_pod(self, namespace: str, name: str, patch: Obj) -> Obj:
        return await self.client.patch(f"/api/v1/namespaces/{namespace}/pods/{name}", patch,
                                       "strategic")


async def slow_start_batch(count: int, initial_batch_size: int,
                           fn: Callable[[], Awaitable[object]]) -> tuple[int, Exception | None]:
    """Call `fn` `count` times in batches of 1, 2, 4, … run concurrently; stop after a
    batch with a failure. Returns (successes, the first error or None)."""
    remaining = count
    successes = 0
    batch = min(remaining, initial_batch_size)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for r in errors:
            if isinstance(r, asyncio.CancelledError):
                raise r
        successes += batch - len(errors)
        if errors:
            err = errors[0]
            return successes, err if isinstance(err, Exception) else Exception(str(err))
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


# -- deletion order -----------------------------------------------------------------------------
_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def _ts(value: str | None) -> float:
    """Seconds since the epoch; 0 for a missing time (Go's zero time sorts first)."""
    t = parse_time(value)
    return t.timestamp() if t is not None else 0.0


def _after_or_zero(t1: float, t2: float) -> bool:
    if t1 == 0 or t2 == 0:
        return t1 == 0
    return t1 > t2


def _log_rank_diff(t1: float, t2: float, now: float) -> int:
    d1, d2 = (now - t1) * 1e9, (now - t2) * 1e9
    r1 = int(math.log2(d1)) if d1 > 0 else -1
    r2 = int(math.log2(d2)) if d2 > 0 else -1
    return r1 - r2


def _deletion_cost(pod: Obj) -> int:
    try:
        return int((_md(pod).get("annotations") or {}).get(POD_DELETION_COST, 0))
    except ValueError:
        return 0


def _max_restarts(pod: Obj) -> int:
    st = pod.get("status") or {}
    counts = [int(c.get("restartCount") or 0) for c in st.get("containerStatuses") or []]
    return max(counts, default=0)


def _compare_pods(a: tuple[Obj, int], b: tuple[Obj, int], now: float) -> int:
    """-1 when a should be deleted before b (upstream's ActivePodsWithRanks.Less)."""
    def less(x: tuple[Obj, int], y: tuple[Obj, int]) -> bool:
        pi, ri = x
        pj, rj = y
        ni = (pi.get("spec") or {}).get("nodeName") or ""
        nj = (pj.get("spec") or {}).get("nodeName") or ""
        # 1. unassigned < assigned
        if ni != nj and (not ni or not nj):
            return not ni
        # 2. Pending < Unknown < Running
        oi = _PHASE_ORDINAL.get((pi.get("status") or {}).get("phase"), 0)
        oj = _PHASE_ORDINAL.get((pj.get("status") or {}).get("phase"), 0)
        if oi != oj:
            return oi < oj
        # 3. not ready < ready
        if is_pod_ready(pi) != is_pod_ready(pj):
            return not is_pod_ready(pi)
        # 4. lower pod-deletion-cost < higher
        ci, cj = _deletion_cost(pi), _deletion_cost(pj)
        if ci != cj:
            return ci < cj
        # 5. doubled up (more related pods on the same node) < not
        if ri != rj:
            return ri > rj
        # 6. ready for less time < more time (logarithmic buckets)
        if is_pod_ready(pi) and is_pod_ready(pj):
            t1 = _ts((pod_ready_condition(pi) or {}).get("lastTransitionTime"))
            t2 = _ts((pod_ready_condition(pj) or {}).get("lastTransitionTime"))
            if t1 != t2:
                if t1 == 0 or t2 == 0:
                    return _after_or_zero(t1, t2)
                d = _log_rank_diff(t1, t2, now)
                if d == 0:
                    return str(_md(pi).get("uid")) < str(_md(pj).get("uid"))
                return d < 0
        # 7. more container restarts < fewer
        ki, kj = _max_restarts(pi), _max_restarts(pj)
        if ki != kj:
            return ki > kj
        # 8. no creation time < newer < older (logarithmic buckets)
        t1, t2 = _ts(_md(pi).get("creationTimestamp")), _ts(_md(pj).get("creationTimestamp"))
        if t1 != t2:
            if t1 == 0 or t2 == 0:
                return _after_or_zero(t1, t2)
            d = _log_rank_diff(t1, t2, now)
            if d == 0:
                return str(_md(pi).get("uid")) < str(_md(pj).get("uid"))
            return d < 0
        return False
    if less(a, b):
        return -1
    if less(b, a):
        return 1
    return 0


def pods_to_delete(filtered: list[Obj], related: list[Obj], diff: int,
                   now: float | None = None) -> list[Obj]:
    """The `diff` pods to delete first (upstream's getPodsToDelete): ranked by the
    number of active related pods on the same node, then by ActivePodsWithRanks."""
    if diff >= len(filtered):
        return list(filtered[:diff])
    on_node: dict[str, int] = {}
    for p in related:
        if is_pod_active(p):
            n = (p.get("spec") or {}).get("nodeName") or ""
            on_node[n] = on_node.get(n, 0) + 1
    ranked = [(p, on_node.get((p.get("spec") or {}).get("nodeName") or "", 0)) for p in filtered]
    t = time.time() if now is None else now
    ranked.sort(key=functools.cmp_to_key(lambda a, b: _compare_pods(a, b, t)))
    return [p for p, _ in ranked[:diff]]


# -- adoption and release -----------------------------------------------------------------------
@dataclass
class ControllerRefManager:
    """Claims dependents for `controller` (upstream's BaseControllerRefManager +
    PodControllerRefManager): keeps owned ones that match, releases owned ones that no
    longer match, adopts orphans that match. `can_adopt` is checked once, before the first
    adoption (a fresh read of the controller: not being deleted, same uid)."""
    client: Any
    controller: Obj
    api_version: str
    kind: str
    selector: LabelSelector
    can_adopt: Callable[[], Awaitable[None]] | None = None
    dependent_path: Callable[[Obj], str] = field(
        default=lambda o: f"/api/v1/namespaces/{_md(o).get('namespace')}/pods/"
                          f"{_md(o).get('name')}")
    _can_adopt_result: Exception | None = field(default=None, init=False)
    _can_adopt_checked: bool = field(default=False, init=False)

    @property
    def uid(self) -> str:
        return str(_md(self.controller).get("uid") or "")

    def _match(self, obj: Obj) -> bool:
        return self.selector.matches(_md(obj).get("labels"))

    async def claim(self, objs: Iterable[Obj],
                    match: Callable[[Obj], bool] | None = None) -> list[Obj]:
        """The objects this controller owns after adoption / release. Raises the first
        error (after trying every object)."""
        match = match or self._match
        claimed: list[Obj] = []
        errors: list[Exception] = []
        for obj in objs:
            try:
                ok = await self.claim_object(obj, match)
            except ApiError as e:
                errors.append(e)
                continue
            except RuntimeError as e:
                errors.append(e)
                continue
            if ok:
                claimed.append(obj)
        if errors:
            raise errors[0]
        return claimed

    async def claim_object(self, obj: Obj, match: Callable[[Obj], bool]) -> bool:
        ref = controller_ref(obj)
        cmd = _md(self.controller)
        if ref is not None:
            if ref.get("uid") != self.uid:
                return False  # owned by another controller
            if match(obj):
                return True
            if cmd.get("deletionTimestamp"):
                return False  # being deleted: leave its dependents alone
            try:
                await self.release(obj)
            except NotFound:
                pass
            return False
        # an orphan
        if cmd.get("deletionTimestamp") or not match(obj):
            return False
        if _md(obj).get("deletionTimestamp"):
            return False
        if cmd.get("namespace") and cmd.get("namespace") != _md(obj).get("namespace"):
            return False
        try:
            await self.adopt(obj)
        except NotFound:
            return False
        return True

    async def _check_can_adopt(self) -> None:
        if not self._can_adopt_checked:
            self._can_adopt_checked = True
            if self.can_adopt is not None:
                try:
                    await self.can_adopt()
                except Exception as e:
                    self._can_adopt_result = e
        if self._can_adopt_result is not None:
            raise RuntimeError(f"can't adopt {self.kind} {_md(self.controller).get('name')}: "
                               f"{self._can_adopt_result}")

    async def adopt(self, obj: Obj) -> None:
        await self._check_can_adopt()
        md = _md(obj)
        ref = {"apiVersion": self.api_version, "kind": self.kind,
               "name": _md(self.controller).get("name"), "uid": self.uid,
               "controller": True, "blockOwnerDeletion": True}
        await self.client.patch(self.dependent_path(obj),
                                {"metadata": {"ownerReferences": [ref], "uid": md.get("uid")}},
                                "strategic")

    async def release(self, obj: Obj) -> None:
        md = _md(obj)
        patch = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": self.uid}],
                              "uid": md.get("uid")}}
        try:
            await self.client.patch(self.dependent_path(obj), patch, "strategic")
        except ApiError as e:
            # Gone, or its uid changed (Invalid on the uid precondition): nothing to release.
            if e.code in (404, 422):
                return
            raise


# -- dependents' events -------------------------------------------------------------------------
def resolve_controller_ref(store: Any, namespace: str, ref: Obj | None, kind: str,
                           group: str | None = None) -> Obj | None:
    """upstream's resolveControllerRef: the controller `ref` names, from an informer's
    `store`, when the reference is of `kind` (and API `group`, when given) and the object
    still has the referenced uid; otherwise None."""
    if ref is None or ref.get("kind") != kind:
        return None
    if group is not None and str(ref.get("apiVersion", "")).split("/")[0] != group:
        return None
    obj = store.get_by_name(namespace, str(ref.get("name")))
    if obj is None or _md(obj).get("uid") != ref.get("uid"):
        return None
    return obj  # type: ignore[no-any-return]


def controllers_selecting(store: Any, obj: Obj, selector: Callable[[Obj], LabelSelector]
                          ) -> list[Obj]:
    """The controllers in `obj`'s namespace (from an informer's `store`) whose non-empty
    selector matches its labels; an unlabelled object matches none, and a controller with
    an invalid selector (`selector` raises ValueError) is skipped."""
    labels = _md(obj).get("labels") or {}
    if not labels:
        return []
    out = []
    for c in store.list_namespace(str(_md(obj).get("namespace") or "")):
        try:
            sel = selector(c)
        except ValueError:
            continue
        if not sel.empty and sel.matches(labels):
            out.append(c)
    return out


class ControllerEventHandlers:
    """The informer event handlers of a controller's own objects (upstream's addX /
    updateX / deleteX of the ReplicaSet, DaemonSet and Job controllers): every event
    enqueues the object; an update that changed the uid is first the old object's
    deletion; a deletion first calls `forget(obj)` (drops its expectations, …)."""

    def __init__(self, enqueue: Callable[[Obj], None], forget: Callable[[Obj], None]) -> None:
        self.enqueue = enqueue
        self.forget = forget

    def on_add(self, obj: Obj) -> None:
        self.enqueue(obj)

    def on_update(self, old: Obj, cur: Obj) -> None:
        if _md(old).get("uid") != _md(cur).get("uid"):
            self.on_delete(old)
        self.enqueue(cur)

    def on_delete(self, obj: Obj) -> None:
        self.forget(obj)
        self.enqueue(obj)


class DependentEventHandlers:
    """The informer event handlers of the objects a controller owns (pods,
    ControllerRevisions): upstream's addPod / updatePod / deletePod of the ReplicaSet,
    DaemonSet and StatefulSet controllers (and the DaemonSet's *History ones). An object
    with a controllerRef enqueues its live controller (`resolve(namespace, ref)`); an
    orphan enqueues the controllers whose selector matches it (`owners_for(obj)`), which
    may adopt it; a changed controllerRef enqueues the previous controller too. A usable
    informer `EventHandler` itself (`on_add`, `on_update`, `on_delete`).

    What differs between controllers:
    - `expectations`: creations and deletions observed under the controller's key;
    - `update_deleting`: an update to an object being deleted counts as its deletion
      (ReplicaSet and DaemonSet pods; not StatefulSet pods nor ControllerRevisions);
    - `relabelled_deleting_old`: … and, when its labels changed, so does the old object
      (upstream's ReplicaSet);
    - `enqueue_after`: a pod turning Ready re-enqueues its controller after the
      controller's `minReadySeconds` (when > 0) plus `min_ready_extra` seconds.
    """

    def __init__(self, resolve: Callable[[str, Obj], Obj | None],
                 owners_for: Callable[[Obj], list[Obj]], enqueue: Callable[[Obj], None], *,
                 expectations: UIDTrackingControllerExpectations | None = None,
                 update_deleting: bool = True, relabelled_deleting_old: bool = False,
                 enqueue_after: Callable[[Obj, float], None] | None = None,
                 min_ready_extra: float = 0.0) -> None:
        self.resolve = resolve
        self.owners_for = owners_for
        self.enqueue = enqueue
        self.expectations = expectations
        self.update_deleting = update_deleting
        self.relabelled_deleting_old = relabelled_deleting_old
        self.enqueue_after = enqueue_after
        self.min_ready_extra = min_ready_extra

    def _owner(self, obj: Obj, ref: Obj) -> Obj | None:
        return self.resolve(str(_md(obj).get("namespace") or ""), ref)

    def on_add(self, obj: Obj) -> None:
        if _md(obj).get("deletionTimestamp"):
            self.on_delete(obj)
            return
        ref = controller_ref(obj)
        if ref is not None:
            owner = self._owner(obj, ref)
            if owner is None:
                return
            if self.expectations is not None:
                self.expectations.creation_observed(object_key(owner))
            self.enqueue(owner)
            return
        for owner in self.owners_for(obj):
            self.enqueue(owner)

    def on_update(self, old: Obj, cur: Obj) -> None:
        omd, cmd = _md(old), _md(cur)
        if omd.get("resourceVersion") == cmd.get("resourceVersion"):
            return  # a resync
        label_changed = omd.get("labels") != cmd.get("labels")
        if self.update_deleting and cmd.get("deletionTimestamp"):
            self.on_delete(cur)
            if self.relabelled_deleting_old and label_changed:
                self.on_delete(old)
            return
        cur_ref, old_ref = controller_ref(cur), controller_ref(old)
        ref_changed = cur_ref != old_ref
        if ref_changed and old_ref is not None:
            owner = self._owner(cur, old_ref)
            if owner is not None:
                self.enqueue(owner)
        if cur_ref is not None:
            owner = self._owner(cur, cur_ref)
            if owner is None:
                return
            self.enqueue(owner)
            if self.enqueue_after is not None:
                min_ready = int((owner.get("spec") or {}).get("minReadySeconds") or 0)
                if not is_pod_ready(old) and is_pod_ready(cur) and min_ready > 0:
                    self.enqueue_after(owner, min_ready + self.min_ready_extra)
            return
        if label_changed or ref_changed:
            for owner in self.owners_for(cur):
                self.enqueue(owner)

    def on_delete(self, obj: Obj) -> None:
        ref = controller_ref(obj)
        if ref is None:
            return
        owner = self._owner(obj, ref)
        if owner is None:
            return
        if self.expectations is not None:
            self.expectations.deletion_observed(object_key(owner), pod_key(obj))
        self.enqueue(owner)


def recheck_deletion_timestamp(get_fresh: Callable[[], Awaitable[Obj]], uid: str
                               ) -> Callable[[], Awaitable[None]]:
    """A `can_adopt` check: re-read the controller, fail if deleted or replaced
    (upstream's RecheckDeletionTimestamp)."""
    async def check() -> None:
        fresh = await get_fresh()
        md = _md(fresh)
        if md.get("uid") != uid:
            raise RuntimeError(f"original object is gone: got uid {md.get('uid')}, "
                               f"wanted {uid}")
        if md.get("deletionTimestamp"):
            raise RuntimeError(f"{md.get('namespace')}/{md.get('name')} has just been deleted "
                               f"at {md['deletionTimestamp']}")
    return check


__all__ = ["ControllerExpectations", "UIDTrackingControllerExpectations",
           "ControllerRefManager", "PodControl", "slow_start_batch", "pods_to_delete",
           "is_pod_active", "filter_active_pods", "is_pod_ready", "is_pod_available",
           "pod_from_template", "new_controller_ref", "recheck_deletion_timestamp", "pod_key",
           "now_rfc3339", "SLOW_START_INITIAL_BATCH_SIZE", "resolve_controller_ref",
           "controllers_selecting", "ControllerEventHandlers", "DependentEventHandlers"]
