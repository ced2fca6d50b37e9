"""The resource quota controller: status.hard / status.used from the informers' objects."""
from __future__ import annotations

from typing import Any

from pyk8s.api import quota
from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.client.rest import NotFound
from pyk8s.controllers.resourcequota import ResourceQuotaController

Obj = dict[str, Any]


def harness() -> tuple[ResourceQuotaController, FakeClient]:
    client = FakeClient()
    return ResourceQuotaController(client, SharedInformerFactory(client)), client  # type: ignore[arg-type]


def add(c: ResourceQuotaController, client: FakeClient, plural: str, obj: Obj) -> Obj:
    stored = client.seed(f"/api/v1/namespaces/ns/{plural}", obj)
    inf = c.quotas if plural == "resourcequotas" else c.informers[("", plural)]
    inf.store.add(stored)
    return stored


def pod(name: str, cpu: str | None = None, **spec: Any) -> Obj:
    c: Obj = {"name": "c", "image": "x"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}, "limits": {"cpu": cpu, "memory": "1Gi"}}
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"containers": [c], **spec},
            "status": {"phase": "Running"}}


async def test_counts_and_compute_and_scopes() -> None:
    c, client = harness()
    add(c, client, "resourcequotas", {"metadata": {"name": "q", "namespace": "ns"}, "spec": {
        "hard": {"configmaps": "5", "pods": "10", "requests.cpu": "4", "count/secrets": "3"}}})
    add(c, client, "resourcequotas", {"metadata": {"name": "be", "namespace": "ns"}, "spec": {
        "hard": {"pods": "10"}, "scopes": ["BestEffort"]}})
    for i in range(2):
        add(c, client, "configmaps", {"metadata": {"name": f"c{i}", "namespace": "ns"}})
    add(c, client, "secrets", {"metadata": {"name": "s", "namespace": "ns"}})
    add(c, client, "pods", pod("a", "500m"))
    add(c, client, "pods", pod("b"))
    done = pod("done", "1")
    done["status"]["phase"] = "Succeeded"
    add(c, client, "pods", done)
    await c.sync("ns/q")
    await c.sync("ns/be")
    by_name = {o["metadata"]["name"]: o for o in client.stored("", "resourcequotas", "ns")}
    q = by_name["q"]
    assert q["status"]["hard"] == q["spec"]["hard"]
    assert q["status"]["used"] == {"configmaps": "2", "count/secrets": "1", "pods": "2",
                                   "requests.cpu": "500m"}
    assert by_name["be"]["status"]["used"] == {"pods": "1"}


def test_quota_evaluation_helpers() -> None:
    assert quota.resource_for("count/deployments.apps") == ("apps", "deployments")
    assert quota.resource_for("requests.memory") == ("", "pods")
    assert quota.format_quantity(quota.parse("1500m")) == "1500m"
    assert quota.format_quantity(quota.parse("2")) == "2"
    pc = {"spec": {"scopeSelector": {"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}}
    assert quota.quota_selects(pc, "", "pods", pod("x", priorityClassName="high"))
    assert not quota.quota_selects(pc, "", "pods", pod("x", priorityClassName="low"))
    assert not quota.quota_selects(pc, "", "configmaps", {"metadata": {}})
    term = {"spec": {"scopes": ["Terminating"]}}
    assert quota.quota_selects(term, "", "pods", pod("x", activeDeadlineSeconds=5))
    assert not quota.quota_selects(term, "", "pods", pod("x"))


async def test_counts_listed_through_the_api_and_unlistable_kept() -> None:
    c, client = harness()
    add(c, client, "resourcequotas", {"metadata": {"name": "q", "namespace": "ns"}, "spec": {
        "hard": {"count/deployments.apps": "3", "count/widgets.example.com": "3"}},
        "status": {"used": {"count/widgets.example.com": "2"}}})
    client.seed("/apis/apps/v1/namespaces/ns/deployments",
                {"metadata": {"name": "d", "namespace": "ns"}})
    get = client.get

    async def get_or_404(path: str, params: Any = None) -> Obj:
        if path == "/apis/example.com":
            raise NotFound(404, "NotFound", "the server could not find the requested resource")
        return await get(path, params)
    client.get = get_or_404  # type: ignore[method-assign]
    await c.sync("ns/q")
    q = client.stored("", "resourcequotas", "ns")[0]
    # the widgets' group is not served here: its usage stays as admission charged it
    assert q["status"]["used"] == {"count/deployments.apps": "1",
                                   "count/widgets.example.com": "2"}
