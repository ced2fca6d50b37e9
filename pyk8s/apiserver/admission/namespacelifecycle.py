"""NamespaceLifecycle: no new content in a missing or terminating namespace, and the
system namespaces default / kube-system / kube-public may not be deleted (validating)."""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from pyk8s.apiserver.admission.chain import CREATE, DELETE, Attributes, Plugin, forbidden

IMMORTAL = ("default", "kube-system", "kube-public")


class NamespaceLifecycle(Plugin):
    name = "NamespaceLifecycle"
    validating = True

    def __init__(self, check_namespace: Callable[[str], Awaitable[None]],
                 namespaced: Callable[[Attributes], bool]) -> None:
        self.check_namespace = check_namespace
        self.namespaced = namespaced

    def handles(self, attrs: Attributes) -> bool:
        if attrs.operation == DELETE:
            return attrs.group == "" and attrs.resource == "namespaces"
        return attrs.operation == CREATE and not attrs.subresource and \
            bool(attrs.namespace) and self.namespaced(attrs)

    async def validate(self, attrs: Attributes) -> None:
        if attrs.operation == DELETE:
            if attrs.name in IMMORTAL:
                raise forbidden(attrs, "this namespace may not be deleted")
            return
        await self.check_namespace(attrs.namespace)


__all__ = ["NamespaceLifecycle", "Any"]
