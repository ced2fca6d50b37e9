"""A small fake cluster for the DaemonSet / StatefulSet controllers' unit tests: a
FakeClient, the controller's informers fed from it through the controller's handlers (as
a watch would), and a pretend kubelet / scheduler that binds and runs pods."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from pyk8s.client.events import FakeRecorder
from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformer, SharedInformerFactory

Obj = dict[str, Any]
NS = "ns"


def ts(seconds_ago: float = 0) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class FakeCluster:
    def __init__(self) -> None:
        self.client = FakeClient()
        self.recorder = FakeRecorder()
        self.factory = SharedInformerFactory(self.client)  # type: ignore[arg-type]

    def feed(self, informer: SharedInformer, group: str, resource: str) -> None:
        """Deliver the fake's current `resource` objects to `informer`'s handlers."""
        store = informer.store
        current = {(o["metadata"].get("namespace") or "", o["metadata"]["name"]): o
                   for o in self.client.stored(group, resource)}
        for key in list(store.keys()):
            ns, _, name = key.rpartition("/")
            if (ns, name) not in current:
                old = store.delete(key)
                if old is not None:
                    informer._dispatch_delete(old)
        for obj in current.values():
            prev = store.add(obj)
            if prev is None:
                informer._dispatch_add(obj)
            elif prev["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
                informer._dispatch_update(prev, obj)

    def seed(self, path: str, obj: Obj) -> Obj:
        return self.client.seed(path, obj)

    def stored(self, group: str, resource: str) -> list[Obj]:
        return sorted(self.client.stored(group, resource, NS),
                      key=lambda o: o["metadata"]["name"])

    def pod(self, name: str) -> Obj:
        return self.client.objects[("", "pods", NS, name)]

    def run_pod(self, name: str, *, ready: bool = True, ready_since: float = 100,
                node: str | None = None, phase: str = "Running") -> None:
        """What the scheduler and a kubelet would do: bind, run, report Ready."""
        pod = self.pod(name)
        if node:
            pod["spec"]["nodeName"] = node
        st: Obj = {"phase": phase}
        if ready and phase == "Running":
            st["conditions"] = [{"type": "Ready", "status": "True",
                                 "lastTransitionTime": ts(ready_since)}]
        pod["status"] = st
        pod["metadata"]["resourceVersion"] = str(next(self.client._rv))

    def delete_pod(self, name: str) -> None:
        del self.client.objects[("", "pods", NS, name)]

    def terminate_pod(self, name: str) -> None:
        pod = self.pod(name)
        pod["metadata"]["deletionTimestamp"] = ts()
        pod["metadata"]["resourceVersion"] = str(next(self.client._rv))

    def events(self, reason: str | None = None) -> list[str]:
        return [e for e in self.recorder.events if reason is None or f" {reason} " in e]
