"""Controllers: components that reach the API server only over HTTP (`pyk8s.client`).

Each controller follows upstream's pattern: shared informers (`pyk8s.client.informer`) feed
event handlers that only enqueue keys on a `WorkQueue`; workers run a level-triggered
`sync(key)` that reads the informers' caches and writes through the REST client.
Helpers shared by the workload controllers (controller references, expectations, pod
readiness, slow-start batches) are in `pyk8s.controllers.controller_utils`.
"""
from pyk8s.client.informer import (EventHandler, SharedInformer, metadata_only,  # noqa: F401
                                   object_key)
from pyk8s.client.workqueue import ShutDown, WorkQueue  # noqa: F401

__all__ = ["WorkQueue", "ShutDown", "EventHandler", "SharedInformer", "object_key",
           "metadata_only"]
