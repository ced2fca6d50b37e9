"""ResourceQuota (validating), as upstream's `plugin/pkg/admission/resourcequota`: a create
in a namespace with quotas is checked against each quota's `status.hard` / `status.used`,
and admitted usage is charged to `status.used` at once (optimistic concurrency on the
quota: a concurrent charge makes this one re-check). The quota controller recomputes
`status.used` from the objects (deletes, missed charges)."""
from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

from pyk8s.api import errors, quota
from pyk8s.apiserver.admission.chain import CREATE, UPDATE, Attributes, Plugin, forbidden
from pyk8s.storage import interface as st
from pyk8s.watch.cache import decode

Obj = dict[str, Any]


class ResourceQuota(Plugin):
    name = "ResourceQuota"
    validating = True

    def __init__(self, server: Any) -> None:
        self.server = server

    def handles(self, attrs: Attributes) -> bool:
        return attrs.operation in (CREATE, UPDATE) and not attrs.subresource and \
            bool(attrs.namespace) and attrs.object is not None

    def _info(self) -> Any:
        return self.server.catalogue.lookup("", "v1", "resourcequotas")

    async def validate(self, attrs: Attributes) -> None:
        info = self._info()
        quotas = await self.server.list_objects("", "v1", "resourcequotas", attrs.namespace)
        if not quotas:
            return
        obj = attrs.object
        assert obj is not None
        delta = quota.usage(attrs.group, attrs.resource, obj)
        if attrs.operation == UPDATE:
            # upstream charges only what an update increases (pod resize, PVC growth,
            # service type changes)
            prev = quota.usage(attrs.group, attrs.resource, attrs.old_object or {})
            delta = {k: v - prev.get(k, Fraction(0)) for k, v in delta.items()
                     if v > prev.get(k, Fraction(0))}
        if not delta:
            return
        for q in quotas:
            if not quota.quota_selects(q, attrs.group, attrs.resource, obj):
                continue
            hard_spec = (q.get("spec") or {}).get("hard") or {}
            if not any(r in hard_spec for r in delta):
                continue
            if attrs.dry_run:
                _check(attrs, q, delta)
                continue
            await self._charge(attrs, info, q["metadata"]["name"], delta)

    async def _charge(self, attrs: Attributes, info: Any, name: str,
                      delta: dict[str, Fraction]) -> None:
        store = self.server.store(info)
        key = info.key(attrs.namespace, name)

        def fn(kv: st.KeyValue) -> bytes | None:
            q = decode(kv.value, kv.mod_revision)
            used = _check(attrs, q, delta)
            if not used:
                return None
            new = copy.deepcopy(q)
            status = new.setdefault("status", {})
            status["used"] = dict(sorted({**(status.get("used") or {}), **used}.items()))
            return store._encode(new)

        try:
            await self.server.storage.guaranteed_update(key, fn)
        except st.KeyNotFound:
            return  # the quota went away meanwhile


def _check(attrs: Attributes, q: Obj, delta: dict[str, Fraction]) -> dict[str, str]:
    """The quota's new `used` values for the charged resources; raise 403 when over."""
    name = q["metadata"]["name"]
    hard_spec = (q.get("spec") or {}).get("hard") or {}
    status = q.get("status") or {}
    hard = status.get("hard") or {}
    used = status.get("used") or {}
    charged = sorted(r for r in delta if r in hard_spec)
    unknown = [r for r in charged if r not in hard or r not in used]
    if unknown:
        raise forbidden(attrs, f"status unknown for quota: {name}, resources: "
                               f"{', '.join(unknown)}")
    over = [r for r in charged if quota.parse(used[r]) + delta[r] > quota.parse(hard[r])]
    if over:
        def join(vals: dict[str, Any]) -> str:
            return ",".join(f"{r}={vals[r]}" for r in over)
        requested = {r: quota.format_quantity(delta[r]) for r in over}
        raise forbidden(attrs, f"exceeded quota: {name}, requested: {join(requested)}, "
                               f"used: {join(used)}, limited: {join(hard)}")
    return {r: quota.format_quantity(quota.parse(used[r]) + delta[r]) for r in charged}


__all__ = ["ResourceQuota", "errors"]
