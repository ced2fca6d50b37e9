"""The informer: store and indexes, list + watch with resume, relist on 410, resync."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import aiohttp

from pyk8s.api.selectors import parse_label_selector
from pyk8s.client.informer import (CONTROLLER_UID_INDEX, LABEL_INDEX, NAMESPACE_INDEX,
                                   OWNER_UID_INDEX, BUILTIN_INDEXERS, SharedInformer,
                                   SharedInformerFactory, Store, handler_funcs, split_key)
from pyk8s.client.rest import Expired

Obj = dict[str, Any]


def obj(name: str, rv: str = "1", ns: str = "default", labels: dict[str, str] | None = None,
        owners: list[Obj] | None = None) -> Obj:
    md: Obj = {"name": name, "namespace": ns, "resourceVersion": rv, "uid": f"uid-{name}"}
    if labels:
        md["labels"] = labels
    if owners:
        md["ownerReferences"] = owners
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md}


def test_store_indexes_follow_changes() -> None:
    s = Store(BUILTIN_INDEXERS)
    owner = {"uid": "o1", "controller": True, "kind": "ReplicaSet", "name": "rs"}
    s.add(obj("a", labels={"app": "x"}, owners=[owner]))
    s.add(obj("b", ns="other", labels={"app": "y"}))
    assert [o["metadata"]["name"] for o in s.by_index(NAMESPACE_INDEX, "default")] == ["a"]
    assert s.index_keys(OWNER_UID_INDEX, "o1") == ["default/a"]
    assert s.index_keys(CONTROLLER_UID_INDEX, "o1") == ["default/a"]
    assert s.index_keys(LABEL_INDEX, "app=y") == ["other/b"]
    s.update(obj("a", rv="2", labels={"app": "z"}))
    assert s.index_keys(OWNER_UID_INDEX, "o1") == [] and s.index_keys(LABEL_INDEX, "app=x") == []
    assert s.index_keys(LABEL_INDEX, "app=z") == ["default/a"]
    assert [o["metadata"]["name"] for o in s.select("", parse_label_selector("app in (y,z)"))] \
        == ["a", "b"]
    assert s.select("default", parse_label_selector("app=y")) == []
    s.delete("default/a")
    assert s.index_values(NAMESPACE_INDEX) == ["other"]
    added, updated, deleted = s.replace([obj("b", ns="other", labels={"app": "y"}),
                                         obj("c")])
    assert [o["metadata"]["name"] for o in added] == ["c"]
    assert updated == [] and deleted == []
    assert split_key("ns/name") == ("ns", "name") and split_key("node1") == ("", "node1")


def test_store_add_indexers_later_indexes_existing() -> None:
    s = Store()
    s.add(obj("a", labels={"k": "v"}))
    s.add_indexers({LABEL_INDEX: BUILTIN_INDEXERS[LABEL_INDEX]})
    assert s.index_keys(LABEL_INDEX, "k=v") == ["default/a"]
    assert s.list_namespace("default")[0]["metadata"]["name"] == "a"


class ScriptedClient:
    """`list` answers from `lists`; each `watch` plays the next script (a list of events,
    or an exception to raise)."""

    def __init__(self, lists: list[Obj], watches: list[Any]) -> None:
        self.lists = lists
        self.watches = watches
        self.list_calls: list[dict[str, Any]] = []
        self.watch_rvs: list[str | None] = []
        self.exhausted = asyncio.Event()

    async def list(self, path: str, params: dict[str, Any] | None = None) -> Obj:
        self.list_calls.append(dict(params or {}))
        return self.lists.pop(0)

    async def watch(self, path: str, resource_version: str | None = None,
                    **kw: Any) -> AsyncIterator[Obj]:
        self.watch_rvs.append(resource_version)
        if not self.watches:
            self.exhausted.set()
            await asyncio.sleep(3600)
        script = self.watches.pop(0)
        if isinstance(script, BaseException):
            raise script
        for ev in script:
            if isinstance(ev, BaseException):
                raise ev
            yield ev


def page(items: list[Obj], rv: str, cont: str = "") -> Obj:
    md = {"resourceVersion": rv}
    if cont:
        md["continue"] = cont
    return {"kind": "ConfigMapList", "apiVersion": "v1", "metadata": md,
            "items": [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
                      for o in items]}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def on_add(self, o: Obj) -> None:
        self.events.append(("add", o["metadata"]["name"]))

    def on_update(self, old: Obj, new: Obj) -> None:
        self.events.append(("update", new["metadata"]["name"]))

    def on_delete(self, o: Obj) -> None:
        self.events.append(("delete", o["metadata"]["name"]))


async def test_list_watch_resume_bookmarks_and_relist_on_410() -> None:
    client = ScriptedClient(
        lists=[page([obj("a")], "10", cont="t1"), page([obj("b")], "10"),
               page([obj("a", rv="30"), obj("c", rv="25")], "31")],
        watches=[
            # a watch that ends normally after an event and a bookmark: resume from 20
            [{"type": "MODIFIED", "object": obj("a", rv="12")},
             {"type": "BOOKMARK", "object": {"kind": "ConfigMap",
                                             "metadata": {"resourceVersion": "20"}}}],
            # a cut stream: resume from the last RV seen (21)
            [{"type": "DELETED", "object": obj("b", rv="21")},
             aiohttp.ClientPayloadError("cut")],
            # too old: relist (b is gone, c is new, a changed)
            Expired(410, "Expired", "too old"),
        ])
    inf = SharedInformer(client, "/api/v1/configmaps", page_size=1, name="t")  # type: ignore[arg-type]
    rec = Recorder()
    inf.add_event_handler(rec)
    task = inf.start()
    await asyncio.wait_for(client.exhausted.wait(), 5.0)
    assert inf.has_synced()
    assert client.list_calls[0]["limit"] == 1 and client.list_calls[1]["continue"] == "t1"
    assert client.watch_rvs == ["10", "20", "21", "31"]
    assert rec.events == [("add", "a"), ("add", "b"), ("update", "a"), ("delete", "b"),
                          ("add", "c"), ("update", "a")]
    assert sorted(inf.store.keys()) == ["default/a", "default/c"]
    assert inf.store.get("default/a")["kind"] == "ConfigMap"  # filled in from the list kind
    assert inf.relists == 2
    # A handler added after the sync hears of everything in the store.
    late = Recorder()
    inf.add_event_handler(late)
    assert sorted(late.events) == [("add", "a"), ("add", "c")]
    await inf.stop()
    assert task.done()


async def test_resync_redelivers_as_updates() -> None:
    client = ScriptedClient(lists=[page([obj("a")], "5")], watches=[])
    inf = SharedInformer(client, "/api/v1/configmaps", resync_period=0.05)  # type: ignore[arg-type]
    seen: list[tuple[str, str]] = []
    inf.add_event_handler(handler_funcs(
        on_add=lambda o: seen.append(("add", o["metadata"]["name"])),
        on_update=lambda old, new: seen.append(("update", new["metadata"]["name"]))))
    inf.start()
    await asyncio.sleep(0.2)
    await inf.stop()
    assert seen[0] == ("add", "a") and seen.count(("update", "a")) >= 2


async def test_handler_errors_do_not_stop_the_informer() -> None:
    client = ScriptedClient(lists=[page([obj("a"), obj("b")], "5")], watches=[])
    inf = SharedInformer(client, "/api/v1/configmaps")  # type: ignore[arg-type]
    got: list[str] = []

    def bad(o: Obj) -> None:
        raise RuntimeError("handler bug")
    inf.add_event_handler(handler_funcs(on_add=bad))
    inf.add_event_handler(handler_funcs(on_add=lambda o: got.append(o["metadata"]["name"])))
    inf.start()
    assert await inf.wait_for_sync(2.0)
    await inf.stop()
    assert got == ["a", "b"]


async def test_factory_shares_informers_and_merges_indexers() -> None:
    client = ScriptedClient(lists=[page([], "1") for _ in range(3)], watches=[])
    f = SharedInformerFactory(client)  # type: ignore[arg-type]
    a = f.pods()
    b = f.pods(indexers={CONTROLLER_UID_INDEX: BUILTIN_INDEXERS[CONTROLLER_UID_INDEX]})
    assert a is b and a.path == "/api/v1/pods"
    assert f.nodes().path == "/api/v1/nodes"
    assert f.replica_sets().path == "/apis/apps/v1/replicasets"
    f.start()
    assert await f.wait_for_cache_sync(2.0)
    await f.stop()
