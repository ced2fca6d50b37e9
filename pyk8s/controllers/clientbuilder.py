"""Which identity each controller talks to the API server with (upstream's
k8s.io/controller-manager/pkg/clientbuilder).

- `SimpleClientBuilder` (`--use-service-account-credentials=false`): every controller
  uses the manager's own ("root") client.
- `DynamicClientBuilder` (`--use-service-account-credentials`): controller `<name>` gets a
  client of its own that authenticates as the service account `kube-system/<name>`. The
  root client makes sure the service account exists (get, else create) and asks for its
  token through TokenRequest (`serviceaccounts/<name>/token`, one hour); the token is kept
  until 80% of its life has passed (at least 10 minutes of life are assumed, against
  clock skew), then the next request fetches a new one; a 401 drops it at once. The
  controller clients carry no client certificate (upstream's AnonymousClientConfig: with
  both, the server would see the manager's certificate). They share the root client's
  request budget (one `--kube-api-qps` / `--kube-api-burst` token bucket and one in-flight
  cap for the whole manager), unlike upstream where each client has its own bucket.

`SERVICE_ACCOUNTS` names the account of each controller: upstream's names (the
`system:controller:<name>` roles of the bootstrap policy are bound to them).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import datetime
from typing import Any, Callable, Protocol

from pyk8s.client.rest import (AlreadyExists, ApiError, ClientConfig, NotFound, RESTClient,
                               ServerError)

log = logging.getLogger("pyk8s.controllers.clientbuilder")

Obj = dict[str, Any]

NAMESPACE = "kube-system"
EXPIRATION_SECONDS = 3600          # upstream's defaultExpirationSeconds
LEEWAY_PERCENT = 20                # refresh when 20% of the token's life is left
MIN_LIFETIME = 600.0               # shorter lifetimes are taken as clock skew
FETCH_BACKOFF = (0.5, 1.0, 2.0)    # sleeps between the 4 tries of a token fetch

# --controllers name → the controller's service account (upstream's ClientOrDie names).
SERVICE_ACCOUNTS: dict[str, str] = {
    "garbagecollector": "generic-garbage-collector",
    "namespace": "namespace-controller",
    "replicaset": "replicaset-controller",
    "replicationcontroller": "replication-controller",
    "serviceaccount": "service-account-controller",
    "podgc": "pod-garbage-collector",
    "deployment": "deployment-controller",
    "endpoint": "endpoint-controller",
    "endpointslice": "endpointslice-controller",
    "endpointslicemirroring": "endpointslicemirroring-controller",
    "resourcequota": "resourcequota-controller",
    "nodelifecycle": "node-controller",
    "nodeipam": "node-controller",
    "job": "job-controller",
    "cronjob": "cronjob-controller",
    "ttl-after-finished": "ttl-after-finished-controller",
    "ttl": "ttl-controller",
    "disruption": "disruption-controller",
    "daemonset": "daemon-set-controller",
    "statefulset": "statefulset-controller",
    "persistentvolume-binder": "persistent-volume-binder",
    "persistentvolume-expander": "expand-controller",
    "pvc-protection": "pvc-protection-controller",
    "pv-protection": "pv-protection-controller",
    "csrsigning": "certificate-controller",
    "csrapproving": "certificate-controller",
    "csrcleaner": "certificate-controller",
    "clusterrole-aggregation": "clusterrole-aggregation-controller",
    "root-ca-cert-publisher": "root-ca-cert-publisher",
    "horizontalpodautoscaling": "horizontal-pod-autoscaler",
    "bootstrapsigner": "bootstrap-signer",
    "tokencleaner": "token-cleaner",
    "ephemeral-volume": "ephemeral-volume-controller",
}


def service_account_for(controller: str) -> str:
    """The service account of a controller; pyk8s-only controllers get
    `<name>-controller` (upstream's style)."""
    return SERVICE_ACCOUNTS.get(controller) or f"{controller}-controller"


def username(namespace: str, name: str) -> str:
    """`system:serviceaccount:<namespace>:<name>` (upstream's MakeUsername)."""
    return f"system:serviceaccount:{namespace}:{name}"


class ControllerClientBuilder(Protocol):
    def client(self, name: str) -> RESTClient:
        """The client controller service account `name` talks with."""
        ...

    async def close(self) -> None: ...


class SimpleClientBuilder:
    """Every controller talks with the root client (its identity is the manager's)."""

    def __init__(self, root: RESTClient) -> None:
        self.root = root

    def client(self, name: str) -> RESTClient:
        return self.root

    async def close(self) -> None:
        """The root client is its owner's to close."""


async def get_or_create_service_account(root: RESTClient, namespace: str, name: str) -> Obj:
    """Upstream's getOrCreateServiceAccount: get; if missing, make sure the namespace
    exists (errors tolerated: the root identity may not create namespaces), then create
    it (someone else's concurrent create: get it again)."""
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts"
    try:
        return await root.get(f"{path}/{name}")
    except NotFound:
        pass
    try:
        await root.get(f"/api/v1/namespaces/{namespace}")
    except NotFound:
        try:
            await root.create("/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        except ApiError as e:
            log.info("creating namespace %s for service account %s: %s", namespace, name, e)
    try:
        return await root.create(path, {"apiVersion": "v1", "kind": "ServiceAccount",
                                        "metadata": {"namespace": namespace, "name": name}})
    except AlreadyExists:
        return await root.get(f"{path}/{name}")


def _parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class ServiceAccountTokenSource:
    """Tokens of one service account, from TokenRequest through the root client; cached
    until `leeway_percent` of their lifetime is left (upstream's tokenSourceImpl behind
    a cached, resettable token source)."""

    def __init__(self, root: RESTClient, namespace: str, name: str, *,
                 expiration_seconds: int = EXPIRATION_SECONDS,
                 leeway_percent: int = LEEWAY_PERCENT,
                 clock: Callable[[], float] = time.time,
                 backoff: tuple[float, ...] = FETCH_BACKOFF) -> None:
        self.root = root
        self.namespace = namespace
        self.name = name
        self.expiration_seconds = expiration_seconds
        self.leeway_percent = leeway_percent
        self.clock = clock
        self.backoff = backoff
        self._token: str | None = None
        self._expiry = 0.0            # when the cached token is due for refresh
        self._lock = asyncio.Lock()
        self.fetches = 0

    @property
    def expiry(self) -> float:
        return self._expiry

    async def token(self) -> str:
        if self._token is not None and self.clock() < self._expiry:
            return self._token
        async with self._lock:
            if self._token is None or self.clock() >= self._expiry:
                self._token, self._expiry = await self._fetch()
            return self._token

    def reset(self) -> None:
        self._token = None

    async def _fetch(self) -> tuple[str, float]:
        path = (f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{self.name}/token")
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": self.expiration_seconds}}
        last: Exception | None = None
        for attempt in range(len(self.backoff) + 1):
            if attempt:
                await asyncio.sleep(self.backoff[attempt - 1])
            try:
                await get_or_create_service_account(self.root, self.namespace, self.name)
                tr = await self.root.create(path, body)
                status = tr.get("status") or {}
                token = str(status["token"])
                expires = _parse_time(str(status["expirationTimestamp"]))
            except asyncio.CancelledError:
                raise
            except (ApiError, OSError, asyncio.TimeoutError, KeyError, ValueError) as e:
                log.info("token for service account %s/%s: %s", self.namespace, self.name, e)
                last = e
                continue
            now = self.clock()
            lifetime = max(expires - now, MIN_LIFETIME)
            self.fetches += 1
            return token, now + lifetime - lifetime * self.leeway_percent / 100
        # A 503: callers treat it as passing (the workqueue retries, events are re-sent).
        raise ServerError(503, "ServiceUnavailable",
                          f"failed to get token for {self.namespace}/{self.name}: {last}")


class DynamicClientBuilder:
    """One client per controller service account, authenticated by its own tokens."""

    def __init__(self, root: RESTClient, *, namespace: str = NAMESPACE,
                 user_agent: str = "pyk8s-controller-manager",
                 expiration_seconds: int = EXPIRATION_SECONDS,
                 leeway_percent: int = LEEWAY_PERCENT) -> None:
        self.root = root
        self.namespace = namespace
        self.user_agent = user_agent
        self.expiration_seconds = expiration_seconds
        self.leeway_percent = leeway_percent
        # No credentials of the root's own: the token is the only one presented.
        self.config: ClientConfig = dataclasses.replace(
            root.config, token=None, client_cert_data=None, client_key_data=None)
        self._clients: dict[str, RESTClient] = {}
        self._primes: set[asyncio.Task[Any]] = set()

    def token_source(self, name: str) -> ServiceAccountTokenSource:
        return ServiceAccountTokenSource(self.root, self.namespace, name,
                                         expiration_seconds=self.expiration_seconds,
                                         leeway_percent=self.leeway_percent)

    def client(self, name: str) -> RESTClient:
        """The client of service account `name` (one per name). The account is made and
        its first token fetched at once in the background (upstream makes the account
        when the controller starts), so the first request rarely waits."""
        c = self._clients.get(name)
        if c is None:
            source = self.token_source(name)
            c = RESTClient(self.config, timeout=self.root.timeout,
                           user_agent=f"{self.user_agent}/{username(self.namespace, name)}",
                           token_source=source, throttle_with=self.root)
            self._clients[name] = c
            task = asyncio.get_running_loop().create_task(
                self._prime(source), name=f"token {self.namespace}/{name}")
            self._primes.add(task)
            task.add_done_callback(self._primes.discard)
        return c

    @staticmethod
    async def _prime(source: ServiceAccountTokenSource) -> None:
        try:
            await source.token()
        except ApiError as e:
            log.warning("%s", e.message)

    @property
    def clients(self) -> dict[str, RESTClient]:
        return dict(self._clients)

    async def close(self) -> None:
        for t in list(self._primes):
            t.cancel()
        await asyncio.gather(*self._primes, return_exceptions=True)
        for c in self._clients.values():
            await c.close()
        self._clients.clear()


__all__ = ["SERVICE_ACCOUNTS", "service_account_for", "SimpleClientBuilder",
           "DynamicClientBuilder", "ServiceAccountTokenSource", "ControllerClientBuilder",
           "get_or_create_service_account", "NAMESPACE"]
