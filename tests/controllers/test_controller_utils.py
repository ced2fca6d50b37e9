"""controller_utils' event handlers: a controller's own objects and its dependents."""
from __future__ import annotations

from typing import Any

from pyk8s.api.selectors import label_selector_from_dict
from pyk8s.client.informer import Store
from pyk8s.controllers.controller_utils import (ControllerEventHandlers, DependentEventHandlers,
                                                UIDTrackingControllerExpectations,
                                                controllers_selecting, resolve_controller_ref)

Obj = dict[str, Any]
NS = "ns"
READY = {"conditions": [{"type": "Ready", "status": "True"}]}


def owner(name: str, uid: str, min_ready: int = 0, **labels: str) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": NS, "uid": uid},
            "spec": {"minReadySeconds": min_ready,
                     "selector": {"matchLabels": labels} if labels else {}}}


def pod(name: str, rv: str = "1", ref: Obj | None = None, status: Obj | None = None,
        **labels: str) -> Obj:
    md: Obj = {"name": name, "namespace": NS, "resourceVersion": rv, "labels": labels}
    if ref is not None:
        md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                  "name": ref["metadata"]["name"],
                                  "uid": ref["metadata"]["uid"], "controller": True}]
    return {"metadata": md, "status": status or {}}


class Recorder:
    def __init__(self, **kw: Any) -> None:
        self.store = Store()
        self.web = owner("web", "u1", min_ready=5, app="web")
        self.other = owner("other", "u2", app="other")
        self.store.add(self.web)
        self.store.add(self.other)
        self.queued: list[str] = []
        self.after: list[tuple[str, float]] = []
        self.expectations = UIDTrackingControllerExpectations()
        self.handlers = DependentEventHandlers(
            lambda ns, ref: resolve_controller_ref(self.store, ns, ref, "ReplicaSet"),
            lambda o: controllers_selecting(self.store, o, lambda c: label_selector_from_dict(
                c["spec"].get("selector"))),
            lambda o: self.queued.append(o["metadata"]["name"]),
            expectations=self.expectations,
            enqueue_after=lambda o, d: self.after.append((o["metadata"]["name"], d)), **kw)


def test_resolve_and_select() -> None:
    r = Recorder()
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u1"}
    assert resolve_controller_ref(r.store, NS, ref, "ReplicaSet") is r.web
    assert resolve_controller_ref(r.store, NS, ref, "ReplicaSet", "apps") is r.web
    assert resolve_controller_ref(r.store, NS, ref, "ReplicaSet", "batch") is None
    assert resolve_controller_ref(r.store, NS, {**ref, "uid": "x"}, "ReplicaSet") is None
    assert resolve_controller_ref(r.store, NS, ref, "Job") is None
    assert resolve_controller_ref(r.store, NS, None, "ReplicaSet") is None
    sel = lambda c: label_selector_from_dict(c["spec"].get("selector"))  # noqa: E731
    assert controllers_selecting(r.store, pod("p", app="web"), sel) == [r.web]
    assert controllers_selecting(r.store, pod("p"), sel) == []


def test_dependent_add_and_delete() -> None:
    r = Recorder()
    r.expectations.expect_creations("ns/web", 1)
    r.handlers.on_add(pod("a", ref=r.web))
    assert r.queued == ["web"] and r.expectations.satisfied_expectations("ns/web")
    r.handlers.on_add(pod("orphan", app="other"))
    assert r.queued == ["web", "other"]
    r.expectations.expect_deletions("ns/web", ["ns/a"])
    r.handlers.on_delete(pod("a", ref=r.web))
    assert r.queued == ["web", "other", "web"]
    assert r.expectations.satisfied_expectations("ns/web")
    r.handlers.on_delete(pod("orphan", app="other"))  # no controller: nothing
    assert len(r.queued) == 3


def test_dependent_update() -> None:
    r = Recorder(min_ready_extra=1.0)
    old = pod("a", "1", ref=r.web, app="web")
    r.handlers.on_update(old, old)  # a resync
    assert r.queued == []
    r.handlers.on_update(old, pod("a", "2", ref=r.web, status=READY, app="web"))
    assert r.queued == ["web"] and r.after == [("web", 6.0)]
    # A changed controllerRef enqueues both; an orphaned pod its selecting controllers.
    r.queued.clear()
    r.handlers.on_update(old, pod("a", "3", ref=r.other, app="web"))
    assert r.queued == ["web", "other"]
    r.queued.clear()
    r.handlers.on_update(old, pod("a", "4", app="other"))
    assert r.queued == ["web", "other"]


def test_dependent_update_of_a_deleting_object() -> None:
    # A deletion (of the new object, and of the old one when relabelled), or, without
    # update_deleting, an ordinary update (the controllerRef changed: both controllers).
    for kw, want in (({}, ["web"]), ({"relabelled_deleting_old": True}, ["web", "other"]),
                     ({"update_deleting": False}, ["other", "web"])):
        r = Recorder(**kw)
        old = pod("a", "1", ref=r.other, app="other")
        cur = pod("a", "2", ref=r.web, app="web")
        cur["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:00Z"
        r.handlers.on_update(old, cur)
        assert r.queued == want, kw


def test_controller_events() -> None:
    queued: list[str] = []
    forgotten: list[str] = []
    h = ControllerEventHandlers(lambda o: queued.append(o["metadata"]["uid"]),
                                lambda o: forgotten.append(o["metadata"]["uid"]))
    a, a2 = owner("web", "u1"), owner("web", "u2")
    h.on_add(a)
    h.on_update(a, a)
    h.on_update(a, a2)  # replaced: the old one was deleted
    h.on_delete(a2)
    assert queued == ["u1", "u1", "u1", "u2", "u2"] and forgotten == ["u1", "u2"]
