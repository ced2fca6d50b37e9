"""ControllerRevisions: the template history of DaemonSets and StatefulSets, after upstream's
`pkg/controller/history/controller_history.go` (and the bits of the DaemonSet's
`update.go` they share).

Rules:

- a revision's `data` is the *template patch* of its parent: `{"spec": {"template":
  <template, "$patch": "replace">}}`, serialized as compact JSON with sorted keys (Go's
  `json.Marshal` of a map); applying it with a strategic merge patch restores the
  template (that is what `kubectl rollout undo` does);
- `hash_revision(data, probe)`: FNV-32 (FNV-1, not 1a, as upstream's `fnv.New32`) of those
  bytes, then the decimal collision count when given, rendered with `SafeEncodeString`;
  the revision is named `<parent>-<hash>` (the parent's name cut to 223 characters);
- `revision` numbers grow: a new revision is `max + 1`; a revision equal to the parent's
  template that is not the newest is *re-numbered* to `max + 1` (a rollback) instead of
  being created again;
- creation resolves name collisions with the parent's `status.collisionCount`: an existing
  revision of that name with the same data is reused, one with other data bumps the count
  and retries;
- histories are truncated to `spec.revisionHistoryLimit` (default 10), oldest first,
  never removing a revision that is still *live* (current / update revision, or the hash
  of a pod that still exists).
"""
from __future__ import annotations

import copy
import functools
import logging
from typing import Any, Iterable

import orjson

from pyk8s.api.meta import parse_time
from pyk8s.api.selectors import LabelSelector
from pyk8s.client.informer import controller_ref
from pyk8s.client.rest import AlreadyExists, resource_path
from pyk8s.controllers.controller_utils import new_controller_ref
from pyk8s.controllers.deployment_util import safe_encode_string

log = logging.getLogger("pyk8s.controllers.history")

Obj = dict[str, Any]

CONTROLLER_REVISION_HASH_LABEL = "controller.kubernetes.io/hash"
DEFAULT_REVISION_HISTORY_LIMIT = 10
MAX_PREFIX = 223

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def _md(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def fnv32(data: bytes, h: int = _FNV32_OFFSET) -> int:
    """FNV-1, 32 bits (Go's hash/fnv New32): multiply, then xor."""
    for b in data:
        h = ((h * _FNV32_PRIME) & 0xFFFFFFFF) ^ b
    return h


def canonical_json(value: Any) -> bytes:
    """Compact JSON with sorted keys: what Go's json.Marshal gives for a map."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def template_patch(parent: Obj) -> Obj:
    """The revision data of a DaemonSet / StatefulSet (upstream's getPatch)."""
    template = copy.deepcopy((parent.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def apply_revision_template(parent: Obj, revision: Obj) -> Obj:
    """A copy of `parent` whose template is the revision's (upstream's ApplyRevision: the
    strategic merge patch of `data`, which replaces `spec.template` whole)."""
    out = copy.deepcopy(parent)
    data = revision.get("data") or {}
    template = copy.deepcopy(((data.get("spec") or {}).get("template")) or {})
    template.pop("$patch", None)
    out.setdefault("spec", {})["template"] = template
    return out


def hash_revision(data: Any, probe: int | None = None) -> str:
    """upstream's HashControllerRevision."""
    h = fnv32(canonical_json(data))
    if probe is not None:
        h = fnv32(str(int(probe)).encode(), h)
    return safe_encode_string(str(h))


def revision_name(prefix: str, hash_: str) -> str:
    """upstream's ControllerRevisionName."""
    return f"{prefix[:MAX_PREFIX]}-{hash_}"


def new_controller_revision(parent: Obj, api_version: str, kind: str,
                            template_labels: Obj | None, data: Obj, revision: int,
                            collision_count: int | None) -> Obj:
    """upstream's NewControllerRevision: the template's labels plus
    `controller.kubernetes.io/hash`, a controller reference to the parent, the data and
    the revision number; named `<parent>-<hash>`."""
    labels = dict(template_labels or {})
    h = hash_revision(data, collision_count)
    labels[CONTROLLER_REVISION_HASH_LABEL] = h
    md = _md(parent)
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": revision_name(str(md.get("name")), h),
                         "namespace": md.get("namespace"), "labels": labels,
                         "ownerReferences": [new_controller_ref(parent, api_version, kind)]},
            "data": data, "revision": revision}


def revision_number(rev: Obj) -> int:
    return int(rev.get("revision") or 0)


def _created(rev: Obj) -> float:
    t = parse_time(_md(rev).get("creationTimestamp"))
    return t.timestamp() if t is not None else 0.0


def sort_revisions(revisions: Iterable[Obj]) -> list[Obj]:
    """By revision, then creation time, then name (upstream's byRevision)."""
    def cmp(a: Obj, b: Obj) -> int:
        ka = (revision_number(a), _created(a), str(_md(a).get("name")))
        kb = (revision_number(b), _created(b), str(_md(b).get("name")))
        return -1 if ka < kb else (1 if ka > kb else 0)
    return sorted(revisions, key=functools.cmp_to_key(cmp))


def equal_revision(a: Obj | None, b: Obj | None) -> bool:
    """Same data (upstream's EqualRevision; its hash-label shortcut never applies to
    safe-encoded hashes)."""
    if a is None or b is None:
        return a is b
    return canonical_json(a.get("data")) == canonical_json(b.get("data"))


def find_equal_revisions(revisions: Iterable[Obj], needle: Obj) -> list[Obj]:
    return [r for r in revisions if equal_revision(r, needle)]


def max_revision(revisions: Iterable[Obj]) -> int:
    return max((revision_number(r) for r in revisions), default=0)


def next_revision(revisions: list[Obj]) -> int:
    """One more than the last of the sorted `revisions` (1 for none)."""
    return revision_number(revisions[-1]) + 1 if revisions else 1


def revisions_to_truncate(revisions: list[Obj], live: set[str], limit: int) -> list[Obj]:
    """The non-live revisions beyond `limit`, oldest first (upstream's truncateHistory)."""
    history = [r for r in sort_revisions(revisions) if str(_md(r).get("name")) not in live]
    excess = len(history) - max(limit, 0)
    return history[:excess] if excess > 0 else []


def owned_revisions(revisions: Iterable[Obj], parent: Obj, selector: LabelSelector
                    ) -> list[Obj]:
    """Revisions matching the selector that the parent controls or nobody does (upstream's
    ListControllerRevisions)."""
    uid = _md(parent).get("uid")
    out = []
    for r in revisions:
        if not selector.matches(_md(r).get("labels")):
            continue
        ref = controller_ref(r)
        if ref is None or ref.get("uid") == uid:
            out.append(r)
    return out


def revisions_path(namespace: str, name: str | None = None) -> str:
    return resource_path("apps", "v1", "controllerrevisions", namespace, name)


class History:
    """Writes ControllerRevisions through the API (upstream's realHistory)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def create(self, parent: Obj, revision: Obj, collision_count: int
                     ) -> tuple[Obj, int]:
        """Create `revision` under `<parent>-<hash(data, collision_count)>`; an existing
        revision of that name with equal data is returned instead, one with other data
        bumps the collision count and retries. Returns (revision, collision count)."""
        ns = str(_md(parent).get("namespace") or "")
        while True:
            clone = copy.deepcopy(revision)
            clone["metadata"]["name"] = revision_name(
                str(_md(parent).get("name")), hash_revision(revision.get("data"),
                                                            collision_count))
            try:
                created = await self.client.create(revisions_path(ns), clone)
                return created, collision_count
            except AlreadyExists:
                exists = await self.client.get(revisions_path(ns, clone["metadata"]["name"]))
                if equal_revision(exists, clone):
                    return exists, collision_count
                collision_count += 1
                log.info("controllerrevision %s/%s collides; collisionCount %d", ns,
                         clone["metadata"]["name"], collision_count)

    async def update_revision(self, revision: Obj, number: int) -> Obj:
        """Re-number a revision (a rollback to an older template)."""
        if revision_number(revision) == number:
            return revision
        body = copy.deepcopy(revision)
        body["revision"] = number
        md = _md(revision)
        return await self.client.update(  # type: ignore[no-any-return]
            revisions_path(str(md.get("namespace")), str(md.get("name"))), body)

    async def delete(self, revision: Obj) -> None:
        md = _md(revision)
        await self.client.delete(revisions_path(str(md.get("namespace")),
                                                str(md.get("name"))))

    async def adopt(self, parent: Obj, api_version: str, kind: str, revision: Obj) -> Obj:
        """Make `parent` the revision's controller (upstream's AdoptControllerRevision)."""
        md = _md(revision)
        ref = new_controller_ref(parent, api_version, kind)
        refs = [r for r in md.get("ownerReferences") or [] if r.get("uid") != ref["uid"]]
        return await self.client.patch(  # type: ignore[no-any-return]
            revisions_path(str(md.get("namespace")), str(md.get("name"))),
            {"metadata": {"ownerReferences": refs + [ref], "uid": md.get("uid")}}, "merge")


def revision_dependent_path(obj: Obj) -> str:
    """ControllerRefManager's path function for ControllerRevisions."""
    md = _md(obj)
    return revisions_path(str(md.get("namespace")), str(md.get("name")))


__all__ = ["CONTROLLER_REVISION_HASH_LABEL", "DEFAULT_REVISION_HISTORY_LIMIT", "History",
           "template_patch", "apply_revision_template", "hash_revision", "revision_name",
           "new_controller_revision", "sort_revisions", "equal_revision",
           "find_equal_revisions", "max_revision", "next_revision", "revisions_to_truncate",
           "owned_revisions", "revision_number", "canonical_json", "fnv32",
           "revision_dependent_path", "revisions_path"]
