"""Pure node-placement predicates shared by the scheduler, the kubelet's admission, the
DaemonSet controller and the node lifecycle controller (upstream's
`k8s.io/component-helpers/scheduling/corev1` and `nodeaffinity`, and the
`Toleration.ToleratesTaint` / `FindMatchingUntoleratedTaint` helpers). No I/O.

- `node_selector_requirement_matches(req, values_by_key)`: one NodeSelectorRequirement
  (In, NotIn, Exists, DoesNotExist, Gt, Lt; Gt / Lt compare integers, one value).
- `node_selector_term_matches(term, labels, node_name)`: a NodeSelectorTerm, all of its
  `matchExpressions` on the node's labels and its `matchFields` on `metadata.name`; an
  empty term matches nothing.
- `required_node_affinity_matches(pod_spec, labels, node_name)`: GetRequiredNodeAffinity
  (pod).Match(node): `nodeSelector` and the required terms (ORed).
- `toleration_tolerates_taint`, `tolerations_tolerate_taint`, `find_untolerated_taint`.
"""
from __future__ import annotations

from typing import Any, Iterable

Obj = dict[str, Any]

OBJECT_NAME_FIELD = "metadata.name"


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


# -- node affinity ------------------------------------------------------------------------------
def node_selector_requirement_matches(req: Obj, values_by_key: Obj) -> bool:
    """One NodeSelectorRequirement against `values_by_key` (a node's labels or fields)."""
    key, op = req.get("key"), req.get("operator")
    values = req.get("values") or []
    has = key in values_by_key
    v = values_by_key.get(key)
    if op == "In":
        return has and v in values
    if op == "NotIn":
        return not has or v not in values
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt"):
        if not has or len(values) != 1:
            return False
        a, b = _int(v), _int(values[0])
        if a is None or b is None:
            return False
        return a > b if op == "Gt" else a < b
    return False


def node_selector_term_matches(term: Obj, labels: Obj, node_name: Any, *,
                               name_field_only: bool = False) -> bool:
    """A NodeSelectorTerm: all its expressions and fields match (an empty term matches
    none). The only field is `metadata.name`; a requirement on another field key is
    evaluated as on an absent key, or never matches with `name_field_only` (the DaemonSet
    controller's reading)."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    for e in exprs:
        if not node_selector_requirement_matches(e, labels):
            return False
    if fields:
        name_fields = {OBJECT_NAME_FIELD: node_name}
        for f in fields:
            if name_field_only and f.get("key") != OBJECT_NAME_FIELD:
                return False
            if not node_selector_requirement_matches(f, name_fields):
                return False
    return True


def required_node_selector_terms(pod_spec: Obj) -> list[Obj] | None:
    """The required node affinity's terms; None when the pod has no required affinity."""
    na = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    if req is None:
        return None
    return req.get("nodeSelectorTerms") or []


def required_node_affinity_matches(pod_spec: Obj, labels: Obj, node_name: Any, *,
                                   name_field_only: bool = False) -> bool:
    """nodeaffinity.GetRequiredNodeAffinity(pod).Match(node): `nodeSelector` and the
    required terms (ORed)."""
    sel = pod_spec.get("nodeSelector")
    if sel:
        for k, v in sel.items():
            if labels.get(k) != v:
                return False
    terms = required_node_selector_terms(pod_spec)
    if terms is not None:
        return any(node_selector_term_matches(t, labels, node_name,
                                              name_field_only=name_field_only)
                   for t in terms)
    return True


# -- taints and tolerations ---------------------------------------------------------------------
def toleration_tolerates_taint(toleration: Obj, taint: Obj) -> bool:
    """Upstream's Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def tolerations_tolerate_taint(tolerations: Iterable[Obj], taint: Obj) -> bool:
    """Upstream's TolerationsTolerateTaint: one of `tolerations` tolerates `taint`."""
    return any(toleration_tolerates_taint(t, taint) for t in tolerations)


def find_untolerated_taint(taints: Iterable[Obj], tolerations: list[Obj],
                           effects: tuple[str, ...] | None = None) -> Obj | None:
    """FindMatchingUntoleratedTaint: the first taint (of `effects`, when given) that no
    toleration tolerates, or None."""
    for taint in taints:
        if effects is not None and taint.get("effect") not in effects:
            continue
        if not tolerations_tolerate_taint(tolerations, taint):
            return taint
    return None


__all__ = ["OBJECT_NAME_FIELD", "node_selector_requirement_matches",
           "node_selector_term_matches", "required_node_selector_terms",
           "required_node_affinity_matches", "toleration_tolerates_taint",
           "tolerations_tolerate_taint", "find_untolerated_taint"]
