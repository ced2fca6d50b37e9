"""The authorizer chain (`--authorization-mode`): the first Allow or Deny wins, as
upstream's union authorizer; AlwaysAllow and AlwaysDeny."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyk8s.apiserver.authn import UserInfo
from pyk8s.apiserver.authz.attributes import (Attributes, Authorizer, Decision,
                                              NonResourceRule, ResourceRule)

if TYPE_CHECKING:
    from pyk8s.apiserver.app import APIServer

MODES = ("AlwaysAllow", "AlwaysDeny", "Node", "RBAC", "Webhook")


class AlwaysAllow:
    async def authorize(self, a: Attributes) -> tuple[Decision, str]:
        return Decision.ALLOW, ""

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[
            list[ResourceRule], list[NonResourceRule], bool, str]:
        return [ResourceRule(["*"], ["*"], ["*"])], [NonResourceRule(["*"], ["*"])], False, ""


class AlwaysDeny:
    async def authorize(self, a: Attributes) -> tuple[Decision, str]:
        return Decision.NO_OPINION, "Everything is forbidden."

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[
            list[ResourceRule], list[NonResourceRule], bool, str]:
        return [], [], False, ""


class Union:
    def __init__(self, authorizers: list[Authorizer]) -> None:
        self.authorizers = authorizers

    async def authorize(self, a: Attributes) -> tuple[Decision, str]:
        reasons: list[str] = []
        for authz in self.authorizers:
            decision, reason = await authz.authorize(a)
            if decision != Decision.NO_OPINION:
                return decision, reason
            if reason:
                reasons.append(reason)
        return Decision.NO_OPINION, "\n".join(reasons)

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[
            list[ResourceRule], list[NonResourceRule], bool, str]:
        """What SelfSubjectRulesReview shows: every authorizer's rules that can list them
        (upstream's union rule resolver); one that cannot (a webhook) makes it incomplete."""
        resource: list[ResourceRule] = []
        non_resource: list[NonResourceRule] = []
        incomplete, errors = False, []
        for authz in self.authorizers:
            if isinstance(authz, PrivilegedGroups):
                continue
            resolve = getattr(authz, "rules_for", None)
            if resolve is None:
                incomplete = True
                continue
            r, nr, inc, err = resolve(user, namespace)
            resource += r
            non_resource += nr
            incomplete = incomplete or inc
            if err:
                errors.append(err)
        return resource, non_resource, incomplete, "\n".join(errors)

    async def start(self) -> None:
        """Start the authorizers that keep state (the Node authorizer's graph)."""
        for authz in self.authorizers:
            start = getattr(authz, "start", None)
            if start is not None:
                await start()

    async def close(self) -> None:
        for authz in self.authorizers:
            close = getattr(authz, "close", None)
            if close is not None:
                await close()


def parse_modes(value: str) -> list[str]:
    """`--authorization-mode`'s comma-separated list, validated as upstream."""
    modes = [m.strip() for m in value.split(",") if m.strip()]
    if not modes:
        raise ValueError("at least one authorization-mode must be passed")
    for m in modes:
        if m not in MODES:
            raise ValueError(f"authorization-mode {m!r} is not a valid mode")
    if len(set(modes)) != len(modes):
        raise ValueError(f"authorization-mode {value!r} has mode specified more than once")
    return modes


class PrivilegedGroups:
    """Upstream's first authorizer whatever the modes: members of `system:masters` may do
    everything."""
    GROUPS = ("system:masters",)

    async def authorize(self, a: Attributes) -> tuple[Decision, str]:
        if any(g in self.GROUPS for g in a.user.groups):
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, ""


def build_authorizer(server: "APIServer", modes: list[str]) -> Union:
    """The chain for `--authorization-mode`, behind the privileged-groups authorizer."""
    chain: list[Authorizer] = [PrivilegedGroups()]
    for mode in modes:
        if mode == "AlwaysAllow":
            chain.append(AlwaysAllow())
        elif mode == "AlwaysDeny":
            chain.append(AlwaysDeny())
        elif mode == "RBAC":
            chain.append(server.rbac)
        elif mode == "Node":
            from pyk8s.apiserver.authz.node import NodeAuthorizer
            chain.append(NodeAuthorizer(server))
        elif mode == "Webhook":
            from pyk8s.apiserver.authz.webhook import WebhookAuthorizer
            chain.append(WebhookAuthorizer.from_config_file(
                server.config.authorization_webhook_config_file,
                authorized_ttl=server.config.authorization_webhook_cache_authorized_ttl,
                unauthorized_ttl=server.config.authorization_webhook_cache_unauthorized_ttl))
    return Union(chain)
