"""RBAC escalation prevention, as upstream's pkg/registry/rbac/{role,clusterrole,rolebinding,
clusterrolebinding}/policybased: a user may write a Role / ClusterRole only with rules they
hold, and bind only roles whose rules they hold, unless they may `escalate` / `bind` (or are
in system:masters). It wraps the admission chain of the four RBAC stores and checks before
admission, as upstream's storage does before its own create / update."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from pyk8s.api import errors
from pyk8s.apiserver.authn import UserInfo
from pyk8s.apiserver.authz.attributes import Attributes, Decision
from pyk8s.apiserver.authz.rbac import RBAC_GROUP, compact_string, covers

if TYPE_CHECKING:
    from pyk8s.apiserver.app import APIServer

Obj = dict[str, Any]
_ROLES = ("roles", "clusterroles")
_BINDINGS = ("rolebindings", "clusterrolebindings")
# Setting an aggregationRule gathers anything: it needs `*` on everything.
_FULL_AUTHORITY = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
                   {"verbs": ["*"], "nonResourceURLs": ["*"]}]


class EscalationGuard:
    """An admission chain for the RBAC stores: the escalation check, then `inner`."""

    def __init__(self, inner: Any, server: "APIServer") -> None:
        self.inner = inner
        self.server = server

    async def admit(self, attrs: Any) -> None:
        if attrs.operation in ("CREATE", "UPDATE") and not attrs.subresource and \
                attrs.user is not None and attrs.object is not None:
            await self.check(attrs)
        await self.inner.admit(attrs)

    async def validate(self, attrs: Any) -> None:
        await self.inner.validate(attrs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # -- the checks ---------------------------------------------------------------------------
    async def check(self, attrs: Any) -> None:
        user: UserInfo = attrs.user
        if "system:masters" in user.groups or self.server.authorizer is None:
            return
        obj, old = attrs.object, attrs.old_object
        if attrs.resource in _ROLES:
            await self._check_role(attrs, user, obj, old)
        elif attrs.resource in _BINDINGS:
            await self._check_binding(attrs, user, obj, old)

    async def _allowed(self, a: Attributes) -> bool:
        assert self.server.authorizer is not None
        decision, _ = await self.server.authorizer.authorize(a)
        return decision == Decision.ALLOW

    async def _check_role(self, attrs: Any, user: UserInfo, obj: Obj, old: Obj | None) -> None:
        if await self._allowed(Attributes(user, "escalate", api_group=RBAC_GROUP,
                                          api_version="*", resource=attrs.resource,
                                          name=attrs.name, namespace=attrs.namespace)):
            return
        if obj.get("aggregationRule") and (old is None or
                                           old.get("aggregationRule") != obj["aggregationRule"]):
            ok, _ = covers(self.server.rbac.rule_objects(user, attrs.namespace), _FULL_AUTHORITY)
            if not ok:
                raise _forbidden(attrs, "must have cluster-admin privileges to use the "
                                        "aggregationRule")
        rules = list(obj.get("rules") or [])
        if old is not None and _same(old.get("rules") or [], rules):
            return
        self._confirm_no_escalation(attrs, user, rules)

    async def _check_binding(self, attrs: Any, user: UserInfo, obj: Obj,
                             old: Obj | None) -> None:
        ref = obj.get("roleRef") or {}
        if old is not None and _same(old.get("roleRef"), ref) and \
                _same(old.get("subjects"), obj.get("subjects")):
            return  # only metadata changed (e.g. the garbage collector's finalizers)
        role_resource = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
        if await self._allowed(Attributes(user, "bind", api_group=RBAC_GROUP,
                                          resource=role_resource, name=ref.get("name", ""),
                                          namespace=attrs.namespace)):
            return
        self._confirm_no_escalation(attrs, user, self._role_rules(ref, attrs.namespace))

    def _role_rules(self, ref: Obj, namespace: str) -> list[Obj]:
        server = self.server
        plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
        info = server.catalogue.lookup(RBAC_GROUP, "v1", plural)
        assert info is not None
        key = info.key(namespace if plural == "roles" else None, ref.get("name", ""))
        role = server.cache.resource(info.storage_prefix).objects.get(key)
        if role is None:
            raise errors.NotFound.of(RBAC_GROUP, plural, ref.get("name", ""))
        return list(role.get("rules") or [])

    def _confirm_no_escalation(self, attrs: Any, user: UserInfo, rules: list[Obj]) -> None:
        """Upstream's ConfirmNoEscalation, with its message."""
        ok, missing = covers(self.server.rbac.rule_objects(user, attrs.namespace), rules)
        if ok:
            return
        lines = sorted({compact_string(r) for r in _compact(missing)})
        groups = "[" + " ".join(f'"{g}"' for g in user.groups) + "]"
        raise _forbidden(attrs, f'user "{user.username}" (groups={groups}) is attempting to '
                                "grant RBAC permissions not currently held:\n" +
                                "\n".join(lines))


def _same(a: Any, b: Any) -> bool:
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def _compact(rules: list[Obj]) -> list[Obj]:
    """Upstream's CompactRules: simple resource rules (one group, one resource, no names)
    that differ only in verbs are merged."""
    merged: dict[tuple[str, str], Obj] = {}
    out: list[Obj] = []
    for r in rules:
        groups, resources = r.get("apiGroups") or [], r.get("resources") or []
        if len(groups) == 1 and len(resources) == 1 and not r.get("resourceNames") and \
                not r.get("nonResourceURLs"):
            key = (groups[0], resources[0])
            if key in merged:
                merged[key]["verbs"].extend(v for v in r["verbs"]
                                            if v not in merged[key]["verbs"])
                continue
            merged[key] = {"verbs": list(r["verbs"]), "apiGroups": groups,
                           "resources": resources}
            out.append(merged[key])
        else:
            out.append(r)
    return out


def _forbidden(attrs: Any, why: str) -> errors.Forbidden:
    name = attrs.name
    qualified = f"{attrs.resource}.{RBAC_GROUP}"
    head = f'{qualified} "{name}" is forbidden' if name else f"{qualified} is forbidden"
    details: Obj = {"group": RBAC_GROUP, "kind": attrs.resource}
    if name:
        details = {"name": name, **details}
    return errors.Forbidden(f"{head}: {why}", details=details)
