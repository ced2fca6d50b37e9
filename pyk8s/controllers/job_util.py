"""The pure parts of the Job controller (upstream's `pkg/controller/job`: `job_controller.go`
helpers, `indexed_job_utils.go`, `backoff_utils.go`, `pod_failure_policy.go`, and
`pkg/controller/job/util`). No I/O; times are timezone-aware UTC datetimes.

Rules kept here:
- labels / annotations / finalizer names as upstream (`batch.kubernetes.io/...`);
- conditions: `new_condition` sets lastProbeTime and lastTransitionTime; `ensure_condition`
  replaces a condition whose status, reason or message changed and never adds a False one;
  a Job is finished once it has a True Complete or Failed condition;
- completion indexes: the pod annotation `batch.kubernetes.io/job-completion-index`;
  `Intervals` is the `status.completedIndexes` / `failedIndexes` string ("0-2,4");
- a pod counts as failed when its phase is Failed, or (unless pods are only replaced once
  Failed) when it is being deleted without having succeeded;
- pod failure policy: rules in order, the first whose onExitCodes (a non-zero exit code of
  a terminated container, regular ones first) or onPodConditions matches decides;
- pod re-creation backoff: `base * 2**(failures-1)` capped at `max`, counted from the last
  failure after the last success.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from pyk8s.api.meta import parse_time

Obj = dict[str, Any]

# -- names ----------------------------------------------------------------------------------------
JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_FAILURE_COUNT_ANNOTATION = "batch.kubernetes.io/job-index-failure-count"
INDEX_IGNORED_FAILURE_COUNT_ANNOTATION = "batch.kubernetes.io/job-index-ignored-failure-count"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
JOB_CONTROLLER_NAME = "kubernetes.io/job-controller"

COMPLETE = "Complete"
FAILED = "Failed"
SUSPENDED = "Suspended"
FAILURE_TARGET = "FailureTarget"
SUCCESS_CRITERIA_MET = "SuccessCriteriaMet"

REASON_BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
REASON_DEADLINE_EXCEEDED = "DeadlineExceeded"
REASON_POD_FAILURE_POLICY = "PodFailurePolicy"
REASON_FAILED_INDEXES = "FailedIndexes"
REASON_MAX_FAILED_INDEXES_EXCEEDED = "MaxFailedIndexesExceeded"
REASON_COMPLETIONS_REACHED = "CompletionsReached"

MSG_BACKOFF_LIMIT = "Job has reached the specified backoff limit"
MSG_DEADLINE = "Job was active longer than specified deadline"
MSG_FAILED_INDEXES = "Job has failed indexes"
MSG_MAX_FAILED_INDEXES = "Job has exceeded the specified maximal number of failed indexes"
MSG_COMPLETIONS_REACHED = "Reached expected number of succeeded pods"

DEFAULT_BACKOFF = 10.0          # DefaultJobPodFailureBackOff
MAX_BACKOFF = 360.0             # MaxJobPodFailureBackOff (6 minutes)
MAX_POD_CREATE_DELETE_PER_SYNC = 500
UNKNOWN_INDEX = -1


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- spec -----------------------------------------------------------------------------------------
def is_indexed(job: Obj) -> bool:
    return _spec(job).get("completionMode") == "Indexed"


def is_suspended(job: Obj) -> bool:
    return _spec(job).get("suspend") is True


def completions(job: Obj) -> int | None:
    c = _spec(job).get("completions")
    return None if c is None else int(c)


def parallelism(job: Obj) -> int:
    p = _spec(job).get("parallelism")
    return 1 if p is None else int(p)


def backoff_limit(job: Obj) -> int:
    b = _spec(job).get("backoffLimit")
    return 6 if b is None else int(b)


def has_backoff_limit_per_index(job: Obj) -> bool:
    return _spec(job).get("backoffLimitPerIndex") is not None


def only_replace_failed_pods(job: Obj) -> bool:
    """New pods wait until the old ones are Failed (podReplacementPolicy Failed, or any
    pod failure policy)."""
    spec = _spec(job)
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def restart_policy(job: Obj) -> str:
    return str(((_spec(job).get("template") or {}).get("spec") or {}).get("restartPolicy") or "")


# -- conditions -----------------------------------------------------------------------------------
def find_condition(conditions: Iterable[Obj] | None, type_: str) -> Obj | None:
    for c in conditions or []:
        if c.get("type") == type_:
            return c
    return None


def new_condition(type_: str, status: str, reason: str, message: str, now: datetime) -> Obj:
    ts = rfc3339(now)
    return {"type": type_, "status": status, "lastProbeTime": ts, "lastTransitionTime": ts,
            "reason": reason, "message": message}


def ensure_condition(conditions: list[Obj], type_: str, status: str, reason: str,
                     message: str, now: datetime) -> bool:
    """upstream's ensureJobConditionStatus, in place; True when `conditions` changed."""
    for i, c in enumerate(conditions):
        if c.get("type") == type_:
            if c.get("status") != status or (c.get("reason") or "") != reason or \
                    (c.get("message") or "") != message:
                conditions[i] = new_condition(type_, status, reason, message, now)
                return True
            return False
    if status != "False":
        conditions.append(new_condition(type_, status, reason, message, now))
        return True
    return False


def finished_condition(job: Obj) -> Obj | None:
    """The True Complete or Failed condition of a finished Job."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in (COMPLETE, FAILED) and c.get("status") == "True":
            return c
    return None


def is_finished(job: Obj) -> bool:
    return finished_condition(job) is not None


def is_succeeded(job: Obj) -> bool:
    c = finished_condition(job)
    return c is not None and c.get("type") == COMPLETE


def has_true_condition(job: Obj, type_: str) -> Obj | None:
    c = find_condition((job.get("status") or {}).get("conditions"), type_)
    return c if c is not None and c.get("status") == "True" else None


# -- pods -----------------------------------------------------------------------------------------
def phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def has_tracking_finalizer(pod: Obj) -> bool:
    return JOB_TRACKING_FINALIZER in (_md(pod).get("finalizers") or [])


def is_pod_failed(pod: Obj, job: Obj) -> bool:
    """upstream's isPodFailed: Failed, or deleted before succeeding (orphans never reach a
    terminal phase) unless only Failed pods are replaced."""
    if phase(pod) == "Failed":
        return True
    if only_replace_failed_pods(job):
        return False
    return bool(_md(pod).get("deletionTimestamp")) and phase(pod) != "Succeeded"


def is_terminating(pod: Obj) -> bool:
    """Being deleted and not yet in a terminal phase (controller.CountTerminatingPods)."""
    return bool(_md(pod).get("deletionTimestamp")) and phase(pod) not in ("Succeeded", "Failed")


def completion_index(pod: Obj) -> int:
    """The pod's completion index, UNKNOWN_INDEX when missing or not a number."""
    value = (_md(pod).get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION)
    if value is None:
        return UNKNOWN_INDEX
    try:
        ix = int(value)
    except (TypeError, ValueError):
        return UNKNOWN_INDEX
    return ix if ix >= 0 else UNKNOWN_INDEX


def valid_index(pod: Obj, job: Obj) -> bool:
    ix = completion_index(pod)
    c = completions(job)
    return ix != UNKNOWN_INDEX and c is not None and ix < c


def index_failure_count(pod: Obj) -> int:
    try:
        return int((_md(pod).get("annotations") or {}).get(INDEX_FAILURE_COUNT_ANNOTATION, 0))
    except (TypeError, ValueError):
        return 0


def pod_finished_time(pod: Obj, now: datetime) -> datetime:
    """When a pod finished (upstream's getFinishedTime): the latest container finish time,
    else its deletion time, else `now`."""
    st = pod.get("status") or {}
    latest: datetime | None = None
    for cs in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or []):
        t = parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if t is not None and (latest is None or t > latest):
            latest = t
    if latest is not None:
        return latest
    dt = parse_time(_md(pod).get("deletionTimestamp"))
    return dt if dt is not None else now


def past_backoff_limit_on_failure(job: Obj, pods: Iterable[Obj]) -> bool:
    """restartPolicy OnFailure: the container restarts of running / pending pods reach
    backoffLimit (any restart when it is 0)."""
    if restart_policy(job) != "OnFailure":
        return False
    total = 0
    for p in pods:
        if phase(p) in ("Running", "Pending"):
            st = p.get("status") or {}
            for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
                total += int(cs.get("restartCount") or 0)
    limit = backoff_limit(job)
    return total > 0 if limit == 0 else total >= limit


# -- pod failure policy ---------------------------------------------------------------------------
def _exit_code_matches(code: int, req: Obj) -> bool:
    values = [int(v) for v in req.get("values") or []]
    return (code in values) if req.get("operator") == "In" else (code not in values)


def _match_exit_codes(pod: Obj, req: Obj) -> Obj | None:
    st = pod.get("status") or {}
    for statuses in (st.get("containerStatuses") or [], st.get("initContainerStatuses") or []):
        for cs in statuses:
            term = (cs.get("state") or {}).get("terminated")
            if term is None:
                continue
            if req.get("containerName") and req["containerName"] != cs.get("name"):
                continue
            code = int(term.get("exitCode") or 0)
            if code != 0 and _exit_code_matches(code, req):
                return cs
    return None


def _match_pod_conditions(pod: Obj, patterns: list[Obj]) -> Obj | None:
    conds = (pod.get("status") or {}).get("conditions") or []
    for pattern in patterns:
        for c in conds:
            if c.get("type") == pattern.get("type") and \
                    c.get("status") == (pattern.get("status") or "True"):
                return c
    return None


def match_pod_failure_policy(policy: Obj | None, pod: Obj
                             ) -> tuple[str | None, bool, str | None]:
    """(FailJob message, whether the failure counts against backoffLimit, action) for a
    failed pod (upstream's matchPodFailurePolicy)."""
    if policy is None:
        return None, True, None
    ns, name = _md(pod).get("namespace"), _md(pod).get("name")
    for index, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        if rule.get("onExitCodes") is not None:
            cs = _match_exit_codes(pod, rule["onExitCodes"])
            if cs is None:
                continue
            code = ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
            msg = (f"Container {cs.get('name')} for pod {ns}/{name} failed with exit code "
                   f"{code} matching {action} rule at index {index}")
        elif rule.get("onPodConditions") is not None:
            cond = _match_pod_conditions(pod, rule["onPodConditions"])
            if cond is None:
                continue
            msg = (f"Pod {ns}/{name} has condition {cond.get('type')} matching {action} rule "
                   f"at index {index}")
        else:
            continue
        if action == "Ignore":
            return None, False, "Ignore"
        if action == "FailIndex":
            return None, True, "FailIndex"
        if action == "Count":
            return None, True, "Count"
        if action == "FailJob":
            return msg, True, "FailJob"
    return None, True, None


def fail_job_message(job: Obj, pods: Iterable[Obj]) -> str | None:
    """The message of the first failed pod (with the tracking finalizer) whose failure
    matches a FailJob rule (upstream's getFailJobMessage)."""
    policy = _spec(job).get("podFailurePolicy")
    if policy is None:
        return None
    for p in pods:
        if is_pod_failed(p, job) and has_tracking_finalizer(p):
            msg, _, action = match_pod_failure_policy(policy, p)
            if action == "FailJob" and msg is not None:
                return msg
    return None


# -- completion indexes ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Intervals:
    """Ordered, disjoint, non-adjacent [first, last] intervals of indexes (upstream's
    orderedIntervals)."""
    items: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, text: str | None, completions: int | None = None) -> "Intervals":
        """Parse "0-2,4"; values outside [0, completions) and malformed parts are dropped."""
        out: list[int] = []
        for part in (text or "").split(","):
            part = part.strip()
            if not part:
                continue
            first, _, last = part.partition("-")
            try:
                a, b = int(first), int(last) if last else int(first)
            except ValueError:
                continue
            if completions is not None:
                b = min(b, completions - 1)
            out.extend(range(max(a, 0), b + 1))
        return cls.of(out)

    @classmethod
    def of(cls, indexes: Iterable[int]) -> "Intervals":
        items: list[tuple[int, int]] = []
        for ix in sorted(set(indexes)):
            if items and items[-1][1] + 1 == ix:
                items[-1] = (items[-1][0], ix)
            else:
                items.append((ix, ix))
        return cls(tuple(items))

    def __contains__(self, ix: object) -> bool:
        return isinstance(ix, int) and any(a <= ix <= b for a, b in self.items)

    def indexes(self) -> list[int]:
        return [i for a, b in self.items for i in range(a, b + 1)]

    def with_indexes(self, more: Iterable[int]) -> "Intervals":
        return Intervals.of([*self.indexes(), *more])

    def total(self) -> int:
        return sum(b - a + 1 for a, b in self.items)

    def __str__(self) -> str:
        return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in self.items)


def first_pending_indexes(active_pods: Iterable[Obj], done: Intervals, count: int,
                          completions_: int, job: Obj, failed: Intervals | None = None
                          ) -> list[int]:
    """The lowest `count` indexes in [0, completions) neither done, failed nor held by an
    active pod with a valid index."""
    held = {completion_index(p) for p in active_pods if valid_index(p, job)}
    out: list[int] = []
    for ix in range(completions_):
        if len(out) >= count:
            break
        if ix in held or ix in done or (failed is not None and ix in failed):
            continue
        out.append(ix)
    return out


def add_completion_index(template: Obj, job_name: str, index: int) -> Obj:
    """A copy of the pod template for `index`: the annotation and label, hostname
    `<job>-<index>`, and JOB_COMPLETION_INDEX in every container (upstream's
    addCompletionIndexAnnotation / addCompletionIndexEnvVariables / hostname)."""
    t = copy.deepcopy(template)
    md = t.setdefault("metadata", {})
    md.setdefault("annotations", {})[COMPLETION_INDEX_ANNOTATION] = str(index)
    md.setdefault("labels", {})[COMPLETION_INDEX_ANNOTATION] = str(index)
    spec = t.setdefault("spec", {})
    if not spec.get("hostname"):
        spec["hostname"] = f"{job_name}-{index}"
    env_var = {"name": COMPLETION_INDEX_ENV, "valueFrom": {"fieldRef": {
        "fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}}
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            env = c.setdefault("env", [])
            if not any(e.get("name") == COMPLETION_INDEX_ENV for e in env):
                env.append(copy.deepcopy(env_var))
    return t


# -- backoff --------------------------------------------------------------------------------------
@dataclass
class BackoffRecord:
    """Failures since the last success and when the last of them happened."""
    failures_after_last_success: int = 0
    last_failure_time: datetime | None = None

    def remaining(self, now: datetime, base: float = DEFAULT_BACKOFF,
                  max_backoff: float = MAX_BACKOFF) -> float:
        """Seconds until a new pod may be created (0: now)."""
        if self.failures_after_last_success == 0 or self.last_failure_time is None:
            return 0.0
        backoff = base
        for _ in range(1, self.failures_after_last_success):
            backoff *= 2
            if backoff >= max_backoff:
                backoff = max_backoff
                break
        backoff = min(backoff, max_backoff)
        elapsed = (now - self.last_failure_time).total_seconds()
        return 0.0 if backoff < elapsed else backoff - elapsed


def new_backoff_record(prev: BackoffRecord | None, new_succeeded: list[Obj],
                       new_failed: list[Obj], now: datetime) -> BackoffRecord:
    """upstream's newBackoffRecord: a success resets the count to the failures after it."""
    rec = BackoffRecord(prev.failures_after_last_success, prev.last_failure_time) \
        if prev is not None else BackoffRecord()
    failed_times = sorted(pod_finished_time(p, now) for p in new_failed)
    if not new_succeeded:
        if failed_times:
            rec.failures_after_last_success += len(failed_times)
            rec.last_failure_time = failed_times[-1]
        return rec
    last_success = max(pod_finished_time(p, now) for p in new_succeeded)
    after = [t for t in failed_times if t > last_success]
    return BackoffRecord(len(after), after[-1] if after else None)


def seconds(td: timedelta) -> float:
    return td.total_seconds()


__all__ = [n for n in dir() if n.isupper()] + [
    "Intervals", "BackoffRecord", "new_backoff_record", "match_pod_failure_policy",
    "fail_job_message", "first_pending_indexes", "add_completion_index", "is_pod_failed",
    "completion_index", "valid_index", "ensure_condition", "new_condition", "find_condition",
    "finished_condition", "is_finished", "is_succeeded", "past_backoff_limit_on_failure",
    "pod_finished_time", "has_tracking_finalizer", "is_terminating", "rfc3339"]
