"""Priority admission: pods get spec.priority / preemptionPolicy from their PriorityClass;
one global default; the system classes exist from the start."""
from __future__ import annotations

from typing import Any

import pytest

from pyk8s.api import errors
from pyk8s.apiserver.admission.priority import default_priority_class
from pyk8s.apiserver.app import APIServer

Obj = dict[str, Any]


def store(s: APIServer, group: str, plural: str) -> Any:
    info = s.catalogue.lookup(group, "v1", plural)
    assert info is not None
    return s.store(info)


def pc(name: str, value: int, **extra: Any) -> Obj:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value, **extra}


def pod(name: str, **spec: Any) -> Obj:
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


async def create_pod(s: APIServer, p: Obj) -> Obj:
    obj, _ = await store(s, "", "pods").create("default", p)
    return obj


def test_lowest_global_default_wins() -> None:
    a, b, c = pc("a", 10, globalDefault=True), pc("b", 5, globalDefault=True), pc("c", 1)
    assert default_priority_class([a, b, c]) is b
    assert default_priority_class([c]) is None


async def test_system_classes_exist(server: APIServer) -> None:
    names = {o["metadata"]["name"]: o["value"] for o in await server.list_objects(
        "scheduling.k8s.io", "v1", "priorityclasses", None)}
    assert names == {"system-node-critical": 2_000_001_000,
                     "system-cluster-critical": 2_000_000_000}
    obj = await create_pod(server, pod("critical", priorityClassName="system-node-critical"))
    assert obj["spec"]["priority"] == 2_000_001_000
    assert obj["spec"]["preemptionPolicy"] == "PreemptLowerPriority"


async def test_pod_priority_from_its_class(server: APIServer) -> None:
    obj = await create_pod(server, pod("plain"))
    assert obj["spec"]["priority"] == 0                     # no default class
    assert obj["spec"]["preemptionPolicy"] == "PreemptLowerPriority"
    assert "priorityClassName" not in obj["spec"]
    classes = store(server, "scheduling.k8s.io", "priorityclasses")
    await classes.create(None, pc("high", 1000, preemptionPolicy="Never"))
    await server.cache.consistent_rev()
    obj = await create_pod(server, pod("high", priorityClassName="high"))
    assert (obj["spec"]["priority"], obj["spec"]["preemptionPolicy"]) == (1000, "Never")
    obj = await create_pod(server, pod("same", priorityClassName="high", priority=1000))
    assert obj["spec"]["priority"] == 1000                   # the computed value: allowed
    with pytest.raises(errors.Forbidden) as e:
        await create_pod(server, pod("missing", priorityClassName="nope"))
    assert e.value.message == 'pods "missing" is forbidden: no PriorityClass with name ' \
                              'nope was found'
    with pytest.raises(errors.Forbidden) as e:
        await create_pod(server, pod("set", priority=7))
    assert "the integer value of priority (7) must not be provided in pod spec; priority " \
           "admission controller computed 0 from the given PriorityClass name" in e.value.message
    with pytest.raises(errors.Forbidden) as e:
        await create_pod(server, pod("policy", priorityClassName="high",
                                     preemptionPolicy="PreemptLowerPriority"))
    assert "the string value of PreemptionPolicy (PreemptLowerPriority) must not be " \
           "provided in pod spec; priority admission controller computed Never" \
           in e.value.message


async def test_global_default_applies_and_is_unique(server: APIServer) -> None:
    classes = store(server, "scheduling.k8s.io", "priorityclasses")
    await classes.create(None, pc("normal", 100, globalDefault=True))
    await server.cache.consistent_rev()
    obj = await create_pod(server, pod("defaulted"))
    assert obj["spec"]["priorityClassName"] == "normal"
    assert obj["spec"]["priority"] == 100
    with pytest.raises(errors.Forbidden) as e:
        await classes.create(None, pc("other", 5, globalDefault=True))
    assert "PriorityClass normal is already marked as default. Only one default can exist" \
        in e.value.message
    current = await classes.get(None, "normal")
    current["description"] = "the default"
    await classes.update(None, "normal", lambda _: current)  # the default itself: allowed


async def test_update_keeps_the_priority(server: APIServer) -> None:
    obj = await create_pod(server, pod("kept"))
    body = {k: v for k, v in obj.items() if k != "status"}
    body["spec"] = {k: v for k, v in obj["spec"].items()
                    if k not in ("priority", "preemptionPolicy")}
    body["metadata"] = dict(obj["metadata"], labels={"a": "b"})
    pods = store(server, "", "pods")
    updated, _, _ = await pods.update("default", "kept", lambda _: body)
    assert updated["spec"]["priority"] == 0
    assert updated["spec"]["preemptionPolicy"] == "PreemptLowerPriority"
    assert updated["metadata"]["labels"] == {"a": "b"}
