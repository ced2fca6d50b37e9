"""Scaffolding shared by the controllers' unit tests that drive `sync` against a seeded
FakeClient: a fixed start time, RFC 3339 timestamps, a queue whose `add_after` only
records the delays, and pod events delivered through a controller's handlers as its
informer would."""
from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

Obj = dict[str, Any]

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def record_delays(queue: Any) -> list[float]:
    """Replace `queue.add_after` by a recorder of the delays asked for (nothing is queued);
    returns the list they are appended to."""
    delays: list[float] = []

    def add_after(key: str, delay: float) -> None:
        delays.append(delay)
    queue.add_after = add_after
    return delays


def observe_pods(client: Any, ctrl: Any, namespace: str, *, deep_copy: bool = False) -> None:
    """What the pod informer would deliver: the fake's pods in `namespace` into
    `ctrl.pod_informer`'s store, through `ctrl.add_pod` / `update_pod` / `delete_pod`
    (copies of the stored objects with `deep_copy`)."""
    store = ctrl.pod_informer.store
    current = {o["metadata"]["name"]: copy.deepcopy(o) if deep_copy else o
               for o in client.stored("", "pods", namespace)}
    for key in list(store.keys()):
        name = key.split("/", 1)[1]
        if name not in current:
            old = store.delete(key)
            ctrl.delete_pod(old)
    for name, pod in current.items():
        prev = store.add(pod)
        if prev is None:
            ctrl.add_pod(pod)
        elif prev["metadata"]["resourceVersion"] != pod["metadata"]["resourceVersion"]:
            ctrl.update_pod(prev, pod)
