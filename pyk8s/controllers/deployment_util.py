"""Pure helpers of the Deployment controller, after upstream's
`pkg/controller/deployment/util/deployment_util.go` (and the bits of
`pkg/controller/controller_utils.go` and `k8s.io/apimachinery/pkg/util/intstr` it uses).

No I/O here: the controller (`deployment.py`) reads the informers and writes through the
REST client; everything that decides *what* to write lives in this module so that it can
be unit-tested on plain dicts:

- the pod-template-hash (`compute_hash`): FNV-32a of the pod template, with the
  Deployment's `status.collisionCount` appended as 8 little-endian bytes, rendered with
  upstream's `SafeEncodeString` (the label value and the ReplicaSet name suffix). Upstream
  hashes go-spew's dump of the Go struct; here the template is hashed as canonical JSON
  (sorted keys), so the values differ from upstream's but are stable across processes
  and restarts, and collisions are resolved the same way (bump `collisionCount`).
- rolling-update arithmetic: `resolve_fenceposts`, `max_surge`, `max_unavailable`,
  `new_rs_new_replicas`, `get_proportion` (proportional scaling), Go's rounding;
- the revision annotations (`deployment.kubernetes.io/revision`, `revision-history`,
  `desired-replicas`, `max-replicas`) and the annotations copied from the Deployment;
- conditions (Available / Progressing / ReplicaFailure) and the progress predicates
  (`deployment_complete`, `deployment_progressing`, `deployment_timed_out`);
- finding the new / old ReplicaSets and the sort orders upstream uses.
"""
from __future__ import annotations

import copy
import functools
import logging
import math
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import orjson

from pyk8s.api.meta import parse_time

log = logging.getLogger("pyk8s.controllers.deployment")

Obj = dict[str, Any]

# -- names upstream uses ------------------------------------------------------------------------
DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
DEPRECATED_ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED_CONFIG_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

# Condition reasons (deploymentutil constants).
ROLLBACK_REVISION_NOT_FOUND = "DeploymentRollbackRevisionNotFound"
ROLLBACK_TEMPLATE_UNCHANGED = "DeploymentRollbackTemplateUnchanged"
ROLLBACK_DONE = "DeploymentRollback"
REPLICA_SET_UPDATED_REASON = "ReplicaSetUpdated"
FAILED_RS_CREATE_REASON = "ReplicaSetCreateError"
NEW_REPLICA_SET_REASON = "NewReplicaSetCreated"
FOUND_NEW_RS_REASON = "FoundNewReplicaSet"
NEW_RS_AVAILABLE_REASON = "NewReplicaSetAvailable"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
PAUSED_DEPLOY_REASON = "DeploymentPaused"
RESUMED_DEPLOY_REASON = "DeploymentResumed"
MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
MINIMUM_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"

DEPLOYMENT_AVAILABLE = "Available"
DEPLOYMENT_PROGRESSING = "Progressing"
DEPLOYMENT_REPLICA_FAILURE = "ReplicaFailure"

ROLLING_UPDATE = "RollingUpdate"
RECREATE = "Recreate"

MAX_INT32 = 2**31 - 1
# limit revision history length to 100 elements (~2000 chars), as upstream
MAX_REV_HISTORY_LENGTH_IN_CHARS = 2000

ANNOTATIONS_TO_SKIP = frozenset({
    LAST_APPLIED_CONFIG_ANNOTATION, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, DEPRECATED_ROLLBACK_TO})


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def now_rfc3339(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the pod-template-hash ----------------------------------------------------------------------
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # utilrand.SafeEncodeString (no vowels)
_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def fnv32a(data: bytes, h: int = _FNV32_OFFSET) -> int:
    """FNV-1a, 32 bits (Go's hash/fnv New32a), continuing from `h`."""
    for b in data:
        h = ((h ^ b) * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def safe_encode_string(s: str) -> str:
    """Upstream's `rand.SafeEncodeString`: every byte mapped into a vowel-free alphabet
    so that the result never spells words and is a valid label value."""
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in s.encode())


def compute_hash(template: Obj, collision_count: int | None) -> str:
    """`controller.ComputeHash`: FNV-32a of the template (here canonical JSON), then the
    collision count as 8 little-endian bytes (the uint32 in the first four) when set;
    the decimal sum, safe-encoded."""
    h = fnv32a(orjson.dumps(template, option=orjson.OPT_SORT_KEYS))
    if collision_count is not None:
        h = fnv32a((int(collision_count) & 0xFFFFFFFF).to_bytes(4, "little") + b"\0" * 4, h)
    return safe_encode_string(str(h))


# -- semantic equality --------------------------------------------------------------------------
def _semantic(v: Any) -> Any:
    """Drop what Go's semantic DeepEqual cannot tell from absent (nil / empty maps and
    slices), recursively."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            x = _semantic(x)
            if x is None or x == {} or x == []:
                continue
            out[k] = x
        return out
    if isinstance(v, list):
        return [_semantic(x) for x in v]
    return v


def semantic_equal(a: Any, b: Any) -> bool:
    return bool(_semantic(a) == _semantic(b))


def _without_hash(template: Obj | None) -> Obj:
    t = copy.copy(template or {})
    md = dict(t.get("metadata") or {})
    labels = dict(md.get("labels") or {})
    labels.pop(DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY, None)
    md["labels"] = labels
    t["metadata"] = md
    return t


def equal_ignore_hash(t1: Obj | None, t2: Obj | None) -> bool:
    """Templates equal apart from the pod-template-hash label (EqualIgnoreHash)."""
    return semantic_equal(_without_hash(t1), _without_hash(t2))


# -- int-or-percent -----------------------------------------------------------------------------
def scaled_value_from_int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """`intstr.GetScaledValueFromIntOrPercent`; raises ValueError when invalid."""
    if value is None:
        raise ValueError("nil value for IntOrString")
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if not value.endswith("%"):
            raise ValueError("invalid value for IntOrString: invalid type: string is not a "
                             "percentage")
        try:
            pct = int(value[:-1])
        except ValueError:
            raise ValueError(f"invalid value {value!r}: not an integer percentage") from None
        # Exact integer arithmetic gives the same result as Go's float64 ceil / floor.
        if round_up:
            return -((-pct * total) // 100)
        return (pct * total) // 100
    raise ValueError(f"invalid type for IntOrString: {type(value).__name__}")


def go_round(x: float) -> int:
    """Go's math.Round: half away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else int(math.ceil(x - 0.5))


# -- deployment spec accessors ------------------------------------------------------------------
def replicas(obj: Obj) -> int:
    """spec.replicas (defaulted to 1 when unset)."""
    r = _spec(obj).get("replicas")
    return 1 if r is None else int(r)


def strategy_type(d: Obj) -> str:
    return str((_spec(d).get("strategy") or {}).get("type") or ROLLING_UPDATE)


def is_rolling_update(d: Obj) -> bool:
    return strategy_type(d) == ROLLING_UPDATE


def _rolling(d: Obj) -> Obj:
    return (_spec(d).get("strategy") or {}).get("rollingUpdate") or {}


def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    """(surge, unavailable) as absolute numbers: surge rounds up, unavailable rounds
    down; both zero is not allowed, so unavailable becomes 1 (ResolveFenceposts)."""
    surge = scaled_value_from_int_or_percent(0 if max_surge is None else max_surge, desired,
                                             True)
    unavailable = scaled_value_from_int_or_percent(
        0 if max_unavailable is None else max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_unavailable(d: Obj) -> int:
    if not is_rolling_update(d) or replicas(d) == 0:
        return 0
    r = _rolling(d)
    _, unavailable = resolve_fenceposts(r.get("maxSurge"), r.get("maxUnavailable"), replicas(d))
    return min(unavailable, replicas(d))


def min_available(d: Obj) -> int:
    if not is_rolling_update(d):
        return 0
    return replicas(d) - max_unavailable(d)


def max_surge(d: Obj) -> int:
    if not is_rolling_update(d):
        return 0
    r = _rolling(d)
    surge, _ = resolve_fenceposts(r.get("maxSurge"), r.get("maxUnavailable"), replicas(d))
    return surge


def has_progress_deadline(d: Obj) -> bool:
    p = _spec(d).get("progressDeadlineSeconds")
    return p is not None and int(p) != MAX_INT32


def has_revision_history_limit(d: Obj) -> bool:
    r = _spec(d).get("revisionHistoryLimit")
    return r is not None and int(r) != MAX_INT32


# -- replica sets -------------------------------------------------------------------------------
def rs_replicas(rs: Obj | None) -> int:
    if rs is None:
        return 0
    return replicas(rs)


def _created(obj: Obj) -> float:
    t = parse_time(_md(obj).get("creationTimestamp"))
    return t.timestamp() if t is not None else 0.0


def _cmp(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


def _by_creation_cmp(a: Obj, b: Obj) -> int:
    """ReplicaSetsByCreationTimestamp: older first, then by name."""
    ta, tb = _created(a), _created(b)
    if ta == tb:
        return _cmp(str(_md(a).get("name")), str(_md(b).get("name")))
    return _cmp(ta, tb)


def sort_by_creation(rss: list[Obj]) -> list[Obj]:
    return sorted(rss, key=functools.cmp_to_key(_by_creation_cmp))


def sort_by_size_older(rss: list[Obj]) -> list[Obj]:
    """Larger first; equal sizes: older first (scaling down)."""
    def cmp(a: Obj, b: Obj) -> int:
        ra, rb = rs_replicas(a), rs_replicas(b)
        if ra == rb:
            return _by_creation_cmp(a, b)
        return -_cmp(ra, rb)
    return sorted(rss, key=functools.cmp_to_key(cmp))


def sort_by_size_newer(rss: list[Obj]) -> list[Obj]:
    """Larger first; equal sizes: newer first (scaling up)."""
    def cmp(a: Obj, b: Obj) -> int:
        ra, rb = rs_replicas(a), rs_replicas(b)
        if ra == rb:
            return _by_creation_cmp(b, a)
        return -_cmp(ra, rb)
    return sorted(rss, key=functools.cmp_to_key(cmp))


def sort_by_revision(rss: list[Obj]) -> list[Obj]:
    """ReplicaSetsByRevision: lower revision first; unparsable or equal: by creation."""
    def cmp(a: Obj, b: Obj) -> int:
        try:
            ra, rb = revision(a), revision(b)
        except ValueError:
            return _by_creation_cmp(a, b)
        if ra == rb:
            return _by_creation_cmp(a, b)
        return _cmp(ra, rb)
    return sorted(rss, key=functools.cmp_to_key(cmp))


def filter_active(rss: Iterable[Obj | None]) -> list[Obj]:
    """ReplicaSets with spec.replicas > 0 (controller.FilterActiveReplicaSets)."""
    return [rs for rs in rss if rs is not None and rs_replicas(rs) > 0]


def find_new_replica_set(d: Obj, rs_list: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template equals the Deployment's (FindNewReplicaSet)."""
    template = _spec(d).get("template")
    for rs in sort_by_creation(rs_list):
        if equal_ignore_hash(_spec(rs).get("template"), template):
            return rs
    return None


def find_old_replica_sets(d: Obj, rs_list: list[Obj]) -> tuple[list[Obj], list[Obj]]:
    """(old ones with pods, all old ones): every ReplicaSet but the new one."""
    new_rs = find_new_replica_set(d, rs_list)
    required, all_old = [], []
    for rs in rs_list:
        if new_rs is not None and _md(rs).get("uid") == _md(new_rs).get("uid"):
            continue
        all_old.append(rs)
        if rs_replicas(rs) != 0:
            required.append(rs)
    return required, all_old


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    """The only active ReplicaSet, or the newest one when none is active; None when
    several are active (FindActiveOrLatest)."""
    if new_rs is None and not old_rss:
        return None
    old_sorted = list(reversed(sort_by_creation(old_rss)))
    all_active = filter_active(old_sorted + [new_rs])
    if not all_active:
        return new_rs if new_rs is not None else old_sorted[0]
    if len(all_active) == 1:
        return all_active[0]
    return None


def replica_count(rss: Iterable[Obj | None]) -> int:
    return sum(rs_replicas(rs) for rs in rss if rs is not None)


def _status_sum(rss: Iterable[Obj | None], field: str) -> int:
    return sum(int(_status(rs).get(field) or 0) for rs in rss if rs is not None)


def actual_replica_count(rss: Iterable[Obj | None]) -> int:
    return _status_sum(rss, "replicas")


def ready_replica_count(rss: Iterable[Obj | None]) -> int:
    return _status_sum(rss, "readyReplicas")


def available_replica_count(rss: Iterable[Obj | None]) -> int:
    return _status_sum(rss, "availableReplicas")


# -- annotations --------------------------------------------------------------------------------
def revision(obj: Obj) -> int:
    """The revision annotation (0 when absent); ValueError when not an integer."""
    v = (_md(obj).get("annotations") or {}).get(REVISION_ANNOTATION)
    if v is None:
        return 0
    return int(v)


def max_revision(rss: Iterable[Obj]) -> int:
    best = 0
    for rs in rss:
        try:
            v = revision(rs)
        except ValueError:
            log.debug("couldn't parse the revision of replica set %s", _md(rs).get("name"))
            continue
        best = max(best, v)
    return best


def last_revision(rss: Iterable[Obj | None]) -> int:
    """The second highest revision (what "roll back to the previous one" means)."""
    top = second = 0
    for rs in rss:
        if rs is None:
            continue
        try:
            v = revision(rs)
        except ValueError:
            continue
        if v >= top:
            second, top = top, v
        elif v > second:
            second = v
    return second


def _annotations(obj: Obj) -> Obj:
    md = obj.setdefault("metadata", {})
    ann = md.get("annotations")
    if ann is None:
        ann = md["annotations"] = {}
    return ann  # type: ignore[no-any-return]


def copy_deployment_annotations_to_rs(d: Obj, rs: Obj) -> bool:
    """Copy the Deployment's annotations but the revision / apply ones onto `rs`
    (mutated); True if anything changed."""
    changed = False
    ann = _annotations(rs)
    for k, v in (_md(d).get("annotations") or {}).items():
        if k in ANNOTATIONS_TO_SKIP or ann.get(k) == v:
            continue
        ann[k] = v
        changed = True
    return changed


def set_deployment_annotations_to(d: Obj, rollback_to_rs: Obj) -> None:
    """The Deployment keeps its skipped annotations and takes the others from the
    ReplicaSet it rolls back to (SetDeploymentAnnotationsTo)."""
    md = d.setdefault("metadata", {})
    kept = {k: v for k, v in (md.get("annotations") or {}).items() if k in ANNOTATIONS_TO_SKIP}
    for k, v in (_md(rollback_to_rs).get("annotations") or {}).items():
        if k not in ANNOTATIONS_TO_SKIP:
            kept[k] = v
    md["annotations"] = kept


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = _annotations(rs)
    changed = False
    for key, value in ((DESIRED_REPLICAS_ANNOTATION, str(desired)),
                       (MAX_REPLICAS_ANNOTATION, str(max_replicas))):
        if ann.get(key) != value:
            ann[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = _md(rs).get("annotations")
    if ann is None:
        return True
    return ann.get(DESIRED_REPLICAS_ANNOTATION) != str(desired) or \
        ann.get(MAX_REPLICAS_ANNOTATION) != str(max_replicas)


def _int_annotation(rs: Obj, key: str) -> int | None:
    v = (_md(rs).get("annotations") or {}).get(key)
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        log.debug("cannot convert %r of annotation %s on replica set %s", v, key,
                  _md(rs).get("name"))
        return None


def desired_replicas_annotation(rs: Obj) -> int | None:
    return _int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)


def max_replicas_annotation(rs: Obj) -> int | None:
    return _int_annotation(rs, MAX_REPLICAS_ANNOTATION)


def set_new_replica_set_annotations(d: Obj, new_rs: Obj, new_revision: str, exists: bool,
                                    rev_history_limit_in_chars: int =
                                    MAX_REV_HISTORY_LENGTH_IN_CHARS) -> bool:
    """Copy the Deployment's annotations, raise the revision to `new_revision` (keeping
    the old one in revision-history when it rises, i.e. on a rollback), and set the
    replicas annotations on a ReplicaSet about to be created (SetNewReplicaSetAnnotations).
    `new_rs` is mutated; True if its annotations changed."""
    changed = copy_deployment_annotations_to_rs(d, new_rs)
    ann = _annotations(new_rs)
    old_revision = ann.get(REVISION_ANNOTATION)
    had_revision = old_revision is not None
    try:
        old_int = int(old_revision) if old_revision else 0
    except ValueError:
        log.info("updating replica set revision: old revision %r is not an int", old_revision)
        return False
    try:
        new_int = int(new_revision)
    except ValueError:
        log.info("updating replica set revision: new revision %r is not an int", new_revision)
        return False
    if old_int < new_int:
        ann[REVISION_ANNOTATION] = new_revision
        changed = True
    if had_revision and old_int < new_int:
        history = ann.get(REVISION_HISTORY_ANNOTATION) or ""
        old_revisions = history.split(",")
        if not old_revisions[0]:
            ann[REVISION_HISTORY_ANNOTATION] = old_revision
        else:
            total = len(history) + len(old_revision) + 1
            start = 0
            while total > rev_history_limit_in_chars and start < len(old_revisions):
                total -= len(old_revisions[start]) + 1
                start += 1
            if total <= rev_history_limit_in_chars:
                ann[REVISION_HISTORY_ANNOTATION] = ",".join(
                    old_revisions[start:] + [str(old_revision)])
            else:
                log.info("not appending revision: revision history length limit reached")
    if not exists and set_replicas_annotations(new_rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


def set_deployment_revision(d: Obj, rev: str) -> bool:
    ann = _annotations(d)
    if ann.get(REVISION_ANNOTATION) != rev:
        ann[REVISION_ANNOTATION] = rev
        return True
    return False


def set_from_replica_set_template(d: Obj, template: Obj) -> None:
    """The Deployment's template becomes the ReplicaSet's, minus the hash label."""
    t = copy.deepcopy(template)
    md = t.get("metadata") or {}
    labels = dict(md.get("labels") or {})
    labels.pop(DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY, None)
    if labels or "labels" in md:
        md["labels"] = labels
    t["metadata"] = md
    d.setdefault("spec", {})["template"] = t


def clone_and_add_label(labels: Obj | None, key: str, value: str) -> Obj:
    out = dict(labels or {})
    out[key] = value
    return out


def clone_selector_and_add_label(selector: Obj | None, key: str, value: str) -> Obj:
    sel = copy.deepcopy(selector or {})
    sel["matchLabels"] = clone_and_add_label(sel.get("matchLabels"), key, value)
    return sel


# -- scaling arithmetic -------------------------------------------------------------------------
def new_rs_new_replicas(d: Obj, all_rss: list[Obj | None], new_rs: Obj) -> int:
    """How far the new ReplicaSet may be scaled up now (NewRSNewReplicas): up to
    replicas + maxSurge pods in total, never beyond spec.replicas; Recreate: all."""
    st = strategy_type(d)
    if st == ROLLING_UPDATE:
        surge = scaled_value_from_int_or_percent(
            0 if _rolling(d).get("maxSurge") is None else _rolling(d).get("maxSurge"),
            replicas(d), True)
        current = replica_count(all_rss)
        max_total = replicas(d) + surge
        if current >= max_total:
            return rs_replicas(new_rs)
        scale_up = min(max_total - current, replicas(d) - rs_replicas(new_rs))
        return rs_replicas(new_rs) + scale_up
    if st == RECREATE:
        return replicas(d)
    raise ValueError(f"deployment type {st} isn't supported")


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    """The ReplicaSet runs all of the Deployment's replicas, all available."""
    if rs is None:
        return False
    desired = desired_replicas_annotation(rs)
    if desired is None:
        return False
    return rs_replicas(rs) == replicas(d) and desired == replicas(d) and \
        int(_status(rs).get("availableReplicas") or 0) == replicas(d)


def _replica_set_fraction(rs: Obj, d: Obj) -> int:
    """How many replicas `rs` should gain (or lose) to keep its share of the Deployment
    at the new size (getReplicaSetFraction)."""
    if replicas(d) == 0:
        return -rs_replicas(rs)
    deployment_max = replicas(d) + max_surge(d)
    before = max_replicas_annotation(rs)
    if not before:
        # Someone edited the annotation away: fall back to the current size.
        before = int(_status(d).get("replicas") or 0)
        if before == 0:
            return 0
    new_size = rs_replicas(rs) * deployment_max / before
    return go_round(new_size) - rs_replicas(rs)


def get_proportion(rs: Obj | None, d: Obj, to_add: int, added: int) -> int:
    """The share of `to_add` (positive: scaling up) `rs` takes, given `added` already
    distributed (GetProportion)."""
    if rs is None or rs_replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _replica_set_fraction(rs, d)
    allowed = to_add - added
    if to_add > 0:
        return min(fraction, allowed)
    return max(fraction, allowed)


# -- conditions ---------------------------------------------------------------------------------
def new_condition(type_: str, status: str, reason: str, message: str,
                  now: datetime | None = None) -> Obj:
    ts = now_rfc3339(now)
    return {"type": type_, "status": status, "lastUpdateTime": ts, "lastTransitionTime": ts,
            "reason": reason, "message": message}


def get_condition(status: Obj, type_: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return c  # type: ignore[no-any-return]
    return None


def set_condition(status: Obj, cond: Obj) -> None:
    """Set `cond` unless one of its type with the same status and reason exists; a
    status that does not change keeps its lastTransitionTime (SetDeploymentCondition)."""
    cur = get_condition(status, cond["type"])
    if cur is not None and cur.get("status") == cond.get("status") and \
            cur.get("reason") == cond.get("reason"):
        return
    cond = dict(cond)
    if cur is not None and cur.get("status") == cond.get("status"):
        cond["lastTransitionTime"] = cur.get("lastTransitionTime")
    status["conditions"] = [c for c in status.get("conditions") or []
                            if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: Obj, type_: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def rs_condition_to_deployment(cond: Obj) -> Obj:
    return {"type": cond.get("type"), "status": cond.get("status"),
            "lastUpdateTime": cond.get("lastTransitionTime"),
            "lastTransitionTime": cond.get("lastTransitionTime"),
            "reason": cond.get("reason"), "message": cond.get("message")}


def deployment_complete(d: Obj, new_status: Obj) -> bool:
    """Every replica updated and available, and the newest generation observed."""
    n = replicas(d)
    return int(new_status.get("updatedReplicas") or 0) == n and \
        int(new_status.get("replicas") or 0) == n and \
        int(new_status.get("availableReplicas") or 0) == n and \
        int(new_status.get("observedGeneration") or 0) >= int(_md(d).get("generation") or 0)


def deployment_progressing(d: Obj, new_status: Obj) -> bool:
    """More updated, ready or available pods than before, or fewer old ones."""
    old = _status(d)

    def g(st: Obj, f: str) -> int:
        return int(st.get(f) or 0)
    old_old = g(old, "replicas") - g(old, "updatedReplicas")
    new_old = g(new_status, "replicas") - g(new_status, "updatedReplicas")
    return g(new_status, "updatedReplicas") > g(old, "updatedReplicas") or \
        new_old < old_old or \
        g(new_status, "readyReplicas") > g(old, "readyReplicas") or \
        g(new_status, "availableReplicas") > g(old, "availableReplicas")


def deployment_timed_out(d: Obj, new_status: Obj, now: Callable[[], datetime] | None = None
                         ) -> bool:
    """No progress for progressDeadlineSeconds since the Progressing condition's
    lastUpdateTime (DeploymentTimedOut)."""
    if not has_progress_deadline(d):
        return False
    cond = get_condition(new_status, DEPLOYMENT_PROGRESSING)
    if cond is None:
        return False
    if cond.get("reason") == NEW_RS_AVAILABLE_REASON:
        return False
    if cond.get("reason") == TIMED_OUT_REASON:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    current = (now or (lambda: datetime.now(timezone.utc)))()
    return since.timestamp() + int(_spec(d)["progressDeadlineSeconds"]) < current.timestamp()

