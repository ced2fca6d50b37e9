"""Reconciliation of the RBAC bootstrap policy at every API server start, as upstream's
rbac/bootstrap-roles post-start hook (pkg/registry/rbac/rest/storage_rbac.go) with
k8s.io/component-helpers/auth/rbac/reconciliation.

Missing objects are created. An existing one whose annotation
`rbac.authorization.kubernetes.io/autoupdate` is not "false" gets what it lacks, and
nothing is taken away: missing labels and annotations (the object's own values win),
missing permissions (the uncovered atomic rules are appended, as upstream's `Covers`
reports them), missing aggregationRule selectors, missing binding subjects. A binding
whose roleRef differs (roleRef is immutable) is deleted (uid precondition) and created
again. Writes go through the server's stores as the admin; AlreadyExists, Conflict and
NotFound (another API server reconciling the same storage) re-read and try again, and an
object that needs nothing is not written, so a second start writes nothing.
"""
from __future__ import annotations

import copy
import enum
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from pyk8s.api import errors
from pyk8s.api.catalogue import ResourceInfo
from pyk8s.apiserver.authn import ADMIN
from pyk8s.apiserver.authz.bootstrappolicy import (AUTOUPDATE_ANNOTATION, RBAC_GROUP,
                                                   Policy, bootstrap_policy)
from pyk8s.apiserver.authz.rbac import covers
from pyk8s.registry.store import DeleteOptions, Store

if TYPE_CHECKING:
    from pyk8s.apiserver.app import APIServer

log = logging.getLogger("pyk8s.apiserver.authz.reconcile")

Obj = dict[str, Any]

# The field manager of these writes (upstream's loopback client is "kube-apiserver").
FIELD_MANAGER = "kube-apiserver"
_ATTEMPTS = 5


class Operation(enum.Enum):
    NONE = "none"
    CREATE = "create"
    UPDATE = "update"
    RECREATE = "recreate"


@dataclass
class RoleResult:
    """What reconciling one Role / ClusterRole comes to (upstream's
    ReconcileClusterRoleResult)."""
    operation: Operation
    role: Obj
    protected: bool = False
    missing_rules: list[Obj] = field(default_factory=list)
    missing_selectors: list[Obj] = field(default_factory=list)


@dataclass
class BindingResult:
    """What reconciling one RoleBinding / ClusterRoleBinding comes to."""
    operation: Operation
    binding: Obj
    protected: bool = False
    missing_subjects: list[Obj] = field(default_factory=list)


# -- the pure part ----------------------------------------------------------------------------
def is_protected(obj: Obj) -> bool:
    """Annotated `rbac.authorization.kubernetes.io/autoupdate: "false"`: left alone."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get(AUTOUPDATE_ANNOTATION) == "false"


def _merge_metadata(result: Obj, existing: Obj, expected: Obj) -> bool:
    """Expected labels and annotations under the existing ones (existing values win);
    whether that changed anything."""
    changed = False
    md, old_md, want_md = result["metadata"], existing.get("metadata") or {}, \
        expected.get("metadata") or {}
    for f in ("annotations", "labels"):
        merged = {**(want_md.get(f) or {}), **(old_md.get(f) or {})}
        if merged != (old_md.get(f) or {}):
            md[f] = merged
            changed = True
    return changed


def _selector_key(selector: Obj) -> Obj:
    """A label selector without its empty parts (nil and empty compare equal upstream)."""
    return {k: v for k, v in (selector or {}).items() if v}


def _missing_selectors(owner: Obj | None, wanted: Obj | None) -> list[Obj]:
    """The clusterRoleSelectors of aggregationRule `wanted` that `owner` lacks."""
    if wanted is None:
        return []
    have = [_selector_key(s) for s in ((owner or {}).get("clusterRoleSelectors") or [])]
    return [s for s in (wanted.get("clusterRoleSelectors") or [])
            if _selector_key(s) not in have]


def reconcile_role(existing: Obj, expected: Obj) -> RoleResult:
    """Upstream's computeReconciledRole, union mode (nothing is ever removed)."""
    result = RoleResult(Operation.NONE, copy.deepcopy(existing),
                        protected=is_protected(existing))
    role = result.role
    if _merge_metadata(role, existing, expected):
        result.operation = Operation.UPDATE
    _, result.missing_rules = covers(list(existing.get("rules") or []),
                                     list(expected.get("rules") or []))
    if result.missing_rules:
        role["rules"] = list(role.get("rules") or []) + result.missing_rules
        result.operation = Operation.UPDATE
    want_agg, have_agg = expected.get("aggregationRule"), existing.get("aggregationRule")
    if want_agg is None and have_agg is not None:
        # Not an aggregated role (any more): its aggregation goes.
        role.pop("aggregationRule", None)
        result.operation = Operation.UPDATE
    else:
        result.missing_selectors = _missing_selectors(have_agg, want_agg)
        if result.missing_selectors:
            agg = role.setdefault("aggregationRule", {})
            agg["clusterRoleSelectors"] = list(agg.get("clusterRoleSelectors") or []) + \
                copy.deepcopy(result.missing_selectors)
            result.operation = Operation.UPDATE
    return result


def _subject_key(subject: Obj) -> tuple[str, str, str, str]:
    return (subject.get("kind") or "", subject.get("apiGroup") or "",
            subject.get("name") or "", subject.get("namespace") or "")


def _role_ref_key(ref: Obj | None) -> tuple[str, str, str]:
    ref = ref or {}
    return ref.get("apiGroup") or "", ref.get("kind") or "", ref.get("name") or ""


def reconcile_binding(existing: Obj, expected: Obj) -> BindingResult:
    """Upstream's computeReconciledRoleBinding, union mode: a different roleRef means
    delete and create again; otherwise missing subjects are appended."""
    protected = is_protected(existing)
    if _role_ref_key(existing.get("roleRef")) != _role_ref_key(expected.get("roleRef")):
        return BindingResult(Operation.RECREATE, copy.deepcopy(expected), protected,
                             list(expected.get("subjects") or []))
    result = BindingResult(Operation.NONE, copy.deepcopy(existing), protected)
    binding = result.binding
    if _merge_metadata(binding, existing, expected):
        result.operation = Operation.UPDATE
    have = {_subject_key(s) for s in existing.get("subjects") or []}
    result.missing_subjects = [copy.deepcopy(s) for s in expected.get("subjects") or []
                               if _subject_key(s) not in have]
    if result.missing_subjects:
        binding["subjects"] = list(binding.get("subjects") or []) + result.missing_subjects
        result.operation = Operation.UPDATE
    return result


# -- against the stores -----------------------------------------------------------------------
@dataclass
class _Tally:
    created: int = 0
    updated: int = 0
    recreated: int = 0
    protected: int = 0
    failed: int = 0


def _describe(obj: Obj) -> str:
    md = obj["metadata"]
    ns = f"{md['namespace']}/" if md.get("namespace") else ""
    return f"{obj['kind'].lower()}.{RBAC_GROUP}/{ns}{md['name']}"


class _Reconciler:
    def __init__(self, server: "APIServer") -> None:
        self.server = server
        self.tally = _Tally()

    def _store(self, plural: str) -> Store:
        info = self.server.catalogue.lookup(RBAC_GROUP, "v1", plural)
        assert info is not None, plural
        return self.server.store(info)

    def _cached(self, store: Store, namespace: str | None, name: str) -> Obj | None:
        """The object as the (caught up) watch cache has it, or None."""
        info: ResourceInfo = store.info
        return self.server.cache.resource(info.storage_prefix).objects.get(
            info.key(namespace, name))

    @staticmethod
    async def _read(store: Store, namespace: str | None, name: str) -> Obj | None:
        try:
            return await store.get(namespace, name)
        except errors.NotFound:
            return None

    async def _create(self, store: Store, namespace: str | None, obj: Obj) -> bool:
        """Create; False when it exists already (someone else was faster)."""
        try:
            await store.create(namespace, copy.deepcopy(obj), user=ADMIN,
                               manager=FIELD_MANAGER)
        except errors.AlreadyExists:
            return False
        return True

    async def _ensure(self, store: Store, expected: Obj,
                      complete: Callable[[Obj], Awaitable[bool]]) -> None:
        """Create `expected` when it is missing, else `complete` the existing object: True
        when done; False, Conflict or NotFound when it changed meanwhile (optimistic
        concurrency on the version read), and the next attempt starts from a new read."""
        md = expected["metadata"]
        ns, name = md.get("namespace"), md["name"]
        existing = self._cached(store, ns, name)
        for _ in range(_ATTEMPTS):
            if existing is None:
                if await self._create(store, ns, expected):
                    self.tally.created += 1
                    log.debug("created %s", _describe(expected))
                    return
            else:
                try:
                    if await complete(existing):
                        return
                except (errors.Conflict, errors.NotFound):
                    pass
            existing = await self._read(store, ns, name)
        raise errors.Conflict(f"{_describe(expected)}: exceeded maximum attempts")

    async def ensure_role(self, store: Store, expected: Obj) -> None:
        md = expected["metadata"]
        ns, name = md.get("namespace"), md["name"]

        async def complete(existing: Obj) -> bool:
            result = reconcile_role(existing, expected)
            if result.operation is Operation.NONE:
                return True
            if result.protected:
                self.tally.protected += 1
                if result.missing_rules:
                    log.warning("skipped reconcile-protected %s with missing permissions: %s",
                                _describe(expected), result.missing_rules)
                return True
            await store.update(ns, name, lambda _cur, r=result.role: copy.deepcopy(r),
                               user=ADMIN, manager=FIELD_MANAGER)
            self.tally.updated += 1
            log.debug("updated %s with additional permissions: %s", _describe(expected),
                      result.missing_rules)
            return True

        await self._ensure(store, expected, complete)

    async def ensure_binding(self, store: Store, expected: Obj) -> None:
        md = expected["metadata"]
        ns, name = md.get("namespace"), md["name"]

        async def complete(existing: Obj) -> bool:
            result = reconcile_binding(existing, expected)
            if result.operation is Operation.NONE:
                return True
            if result.protected:
                self.tally.protected += 1
                if result.missing_subjects or result.operation is Operation.RECREATE:
                    log.warning("skipped reconcile-protected %s with missing subjects: %s",
                                _describe(expected), result.missing_subjects)
                return True
            if result.operation is Operation.RECREATE:
                uid = existing["metadata"].get("uid")
                await store.delete(ns, name, DeleteOptions(
                    preconditions={"uid": uid} if uid else {}), user=ADMIN)
                if not await self._create(store, ns, result.binding):
                    return False
                self.tally.recreated += 1
                log.info("recreated %s: its roleRef was not %s", _describe(expected),
                         expected["roleRef"])
                return True
            await store.update(ns, name, lambda _cur, b=result.binding: copy.deepcopy(b),
                               user=ADMIN, manager=FIELD_MANAGER)
            self.tally.updated += 1
            log.debug("updated %s with additional subjects: %s", _describe(expected),
                      result.missing_subjects)
            return True

        await self._ensure(store, expected, complete)

    async def ensure_namespace(self, name: str) -> None:
        info = self.server.catalogue.lookup("", "v1", "namespaces")
        assert info is not None
        if self.server.cache.resource(info.storage_prefix).objects.get(info.key(None, name)):
            return
        try:
            await self.server.store(info).create(None, {"metadata": {"name": name}},
                                                 user=ADMIN, manager=FIELD_MANAGER)
        except errors.AlreadyExists:
            pass

    async def _each(self, ensure: Any, store: Store, objs: list[Obj]) -> None:
        for obj in objs:
            try:
                await ensure(store, obj)
            except errors.ApiError as e:
                # As upstream: log, and go on with the rest.
                self.tally.failed += 1
                log.error("unable to reconcile %s: %s", _describe(obj), e)

    async def run(self, policy: Policy) -> None:
        await self.server.cache.consistent_rev()
        await self._each(self.ensure_role, self._store("clusterroles"), policy.cluster_roles)
        await self._each(self.ensure_binding, self._store("clusterrolebindings"),
                         policy.cluster_role_bindings)
        for ns in sorted(set(policy.roles) | set(policy.role_bindings)):
            await self.ensure_namespace(ns)
            await self._each(self.ensure_role, self._store("roles"), policy.roles.get(ns, []))
            await self._each(self.ensure_binding, self._store("rolebindings"),
                             policy.role_bindings.get(ns, []))


async def reconcile_bootstrap_policy(server: "APIServer", policy: Policy | None = None) -> None:
    """Create or complete the bootstrap policy (`policy`: the default one) through
    `server`'s stores. Errors on single objects are logged; storage trouble raises."""
    r = _Reconciler(server)
    await r.run(policy or bootstrap_policy())
    t = r.tally
    if t.created or t.updated or t.recreated or t.failed:
        log.info("rbac bootstrap policy: %d created, %d updated, %d recreated, %d failed, "
                 "%d reconcile-protected", t.created, t.updated, t.recreated, t.failed,
                 t.protected)


__all__ = ["reconcile_bootstrap_policy", "reconcile_role", "reconcile_binding",
           "RoleResult", "BindingResult", "Operation", "is_protected", "FIELD_MANAGER"]
