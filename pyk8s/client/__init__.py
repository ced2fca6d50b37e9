"""Clients of the Kubernetes API over HTTP (the controllers' only way to the server).

- `rest`: `RESTClient` (kubeconfig, TLS, bearer token, QPS/burst throttling) and typed errors.
- `workqueue`: `WorkQueue` (dedup, per-item exponential backoff, overall token bucket).
- `informer`: `SharedInformer` / `SharedInformerFactory` (list + watch, indexed `Store`).
- `leaderelection`: `LeaderElector` on coordination.k8s.io Leases.
- `events`: `EventBroadcaster` / `EventRecorder` (core/v1 Events, upstream's correlator).
- `fake`: `FakeClient`, an in-memory stand-in for unit tests.
"""
from pyk8s.client.rest import (AlreadyExists, APIResource, ApiError, BadRequest, ClientConfig,
                               Conflict, Expired, Forbidden, Invalid, NotFound, RESTClient,
                               ServerError, TooManyRequests, Unauthorized, error_from_status,
                               resource_path, server_preferred_resources)

__all__ = ["AlreadyExists", "APIResource", "ApiError", "BadRequest", "ClientConfig", "Conflict",
           "Expired", "Forbidden", "Invalid", "NotFound", "RESTClient", "ServerError",
           "TooManyRequests", "Unauthorized", "error_from_status", "resource_path",
           "server_preferred_resources"]
