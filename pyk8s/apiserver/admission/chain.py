"""The admission chain: mutating plugins in order, then validating plugins in order.

The store calls `admit` after defaulting and before the strategy's preparation and
validation, and `validate` after the strategy's validation, just before storage (as
upstream's `createValidation` / `updateValidation` callbacks). Deletes run `validate` only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyk8s.api import errors

Obj = dict[str, Any]

CREATE, UPDATE, DELETE, CONNECT = "CREATE", "UPDATE", "DELETE", "CONNECT"


@dataclass
class Attributes:
    """What a plugin knows of a request (upstream's admission.Attributes)."""
    operation: str
    group: str
    version: str
    resource: str
    kind: str
    namespace: str
    name: str
    object: Obj | None
    old_object: Obj | None = None
    subresource: str = ""
    user: Any = None  # authn.UserInfo, None when unauthenticated
    dry_run: bool = False
    options: Obj = field(default_factory=dict)
    # set by mutating plugins whose changes need defaulting again (webhooks: the store
    # re-defaults the object); built-in plugins write defaulted values themselves
    mutated: bool = False

    @property
    def group_resource(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


def forbidden(attrs: Attributes, why: str) -> errors.Forbidden:
    """Upstream's admission error: `<resource> "<name>" is forbidden: <why>`."""
    name = attrs.name
    msg = f'{attrs.group_resource} "{name}" is forbidden: {why}' if name else \
        f"{attrs.group_resource} is forbidden: {why}"
    details: Obj = {"kind": attrs.resource}
    if name:
        details["name"] = name
    if attrs.group:
        details["group"] = attrs.group
    return errors.Forbidden(msg, details=details)


class Plugin:
    """A plugin: override `admit` (mutating) and/or `validate` (validating)."""
    name = "Plugin"
    mutating = False
    validating = False

    def handles(self, attrs: Attributes) -> bool:
        return True

    async def admit(self, attrs: Attributes) -> None:
        """Mutate `attrs.object` in place (or replace it)."""

    async def validate(self, attrs: Attributes) -> None:
        """Raise an ApiError to reject the request."""


class Chain:
    def __init__(self, plugins: list[Plugin] | None = None) -> None:
        self.plugins: list[Plugin] = list(plugins or [])

    def add(self, plugin: Plugin) -> None:
        self.plugins.append(plugin)

    def get(self, name: str) -> Plugin | None:
        return next((p for p in self.plugins if p.name == name), None)

    async def admit(self, attrs: Attributes) -> None:
        for p in self.plugins:
            if p.mutating and p.handles(attrs):
                await p.admit(attrs)

    async def validate(self, attrs: Attributes) -> None:
        for p in self.plugins:
            if p.validating and p.handles(attrs):
                await p.validate(attrs)
