"""`--authorization-mode Webhook`: decisions from a remote service, as upstream's
staging/src/k8s.io/apiserver/plugin/pkg/authorizer/webhook: a SubjectAccessReview
(authorization.k8s.io/v1) POSTed to the server a kubeconfig names
(`--authorization-webhook-config-file`), answers cached (allowed 5 min, denied 30 s). A
webhook that fails or can't be reached gives no opinion (the next authorizer decides), and
says so in the log."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import orjson

from pyk8s.apiserver.authz.attributes import Attributes, Decision
from pyk8s.client.rest import ClientConfig

log = logging.getLogger("pyk8s.apiserver.authz.webhook")
Obj = dict[str, Any]


def review_for(a: Attributes) -> Obj:
    spec: Obj = {"user": a.user.username, "groups": list(a.user.groups)}
    if a.user.uid:
        spec["uid"] = a.user.uid
    if a.user.extra:
        spec["extra"] = a.user.extra
    if a.resource_request:
        spec["resourceAttributes"] = {
            "namespace": a.namespace, "verb": a.verb, "group": a.api_group,
            "version": a.api_version, "resource": a.resource, "subresource": a.subresource,
            "name": a.name}
    else:
        spec["nonResourceAttributes"] = {"path": a.path, "verb": a.verb}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": spec}


class WebhookAuthorizer:
    def __init__(self, config: ClientConfig, authorized_ttl: float = 300.0,
                 unauthorized_ttl: float = 30.0, timeout: float = 30.0) -> None:
        self.config = config
        self.authorized_ttl = authorized_ttl
        self.unauthorized_ttl = unauthorized_ttl
        self.timeout = timeout
        self._cache: dict[bytes, tuple[float, Decision, str]] = {}
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config_file(cls, path: str, **kw: Any) -> "WebhookAuthorizer":
        return cls(ClientConfig.from_kubeconfig(path), **kw)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def authorize(self, a: Attributes) -> tuple[Decision, str]:
        review = review_for(a)
        key = orjson.dumps(review["spec"], option=orjson.OPT_SORT_KEYS)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        try:
            status = await self._post(review)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
            log.error("authorization webhook %s failed: %s", self.config.server, e)
            return Decision.NO_OPINION, f"webhook authorizer failed: {e}"
        reason = str(status.get("reason") or "")
        if status.get("allowed"):
            decision, ttl = Decision.ALLOW, self.authorized_ttl
        else:
            decision = Decision.DENY if status.get("denied") else Decision.NO_OPINION
            ttl = self.unauthorized_ttl
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[key] = (now + ttl, decision, reason)
        return decision, reason

    async def _post(self, review: Obj) -> Obj:
        if self._session is None:
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(ssl=self.config.ssl_context()))
        async with self._session.post(self.config.server, data=orjson.dumps(review)) as r:
            body = await r.read()
            if r.status >= 300:
                raise ValueError(f"HTTP {r.status}: {body[:200]!r}")
            return dict(orjson.loads(body).get("status") or {})
