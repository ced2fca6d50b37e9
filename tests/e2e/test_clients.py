"""The official `kubernetes` client and `kubernetes_asyncio` against a real server."""
from __future__ import annotations

from typing import Any

import kubernetes
import kubernetes_asyncio
import pytest
from kubernetes.client.rest import ApiException

from tests.conftest import ServerProcess


@pytest.fixture(scope="module")
def api_client(server: ServerProcess) -> Any:
    client = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
    yield client
    client.close()


def test_crud_with_typed_client(server: ServerProcess, api_client: Any) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    apps = kubernetes.client.AppsV1Api(api_client)
    core.create_namespace({"metadata": {"name": "py"}})
    cm = core.create_namespaced_config_map("py", {"metadata": {"name": "c1", "labels": {"k": "v"}},
                                                  "data": {"a": "1"}})
    assert cm.metadata.uid and cm.data == {"a": "1"}
    cm.data["b"] = "2"
    cm = core.replace_namespaced_config_map("c1", "py", cm)
    assert cm.data == {"a": "1", "b": "2"}
    cm = core.patch_namespaced_config_map("c1", "py", {"data": {"c": "3"}})
    assert cm.data["c"] == "3"
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("py", {"metadata": {"name": "c1"}})
    assert e.value.status == 409
    dep = apps.create_namespaced_deployment("py", {
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    assert dep.spec.replicas == 1 and dep.spec.template.spec.containers[0].image_pull_policy == "Always"
    scale = apps.patch_namespaced_deployment_scale("d", "py", {"spec": {"replicas": 3}})
    assert scale.spec.replicas == 3
    core.delete_namespaced_config_map("c1", "py")
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("c1", "py")
    assert e.value.status == 404


def test_selectors_and_pagination(server: ServerProcess, api_client: Any) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": "pg"}})
    for i in range(5):
        core.create_namespaced_config_map("pg", {"metadata": {"name": f"x{i}",
                                                              "labels": {"odd": str(i % 2)}}})
    assert [c.metadata.name for c in core.list_namespaced_config_map("pg", label_selector="odd=1").items] == ["x1", "x3"]
    names, token = [], None
    while True:
        page = core.list_namespaced_config_map("pg", limit=2, _continue=token)
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"x{i}" for i in range(5)]


def test_watch_resumes_from_list_rv(server: ServerProcess, api_client: Any) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": "wr"}})
    rv = core.list_namespaced_config_map("wr").metadata.resource_version
    core.create_namespaced_config_map("wr", {"metadata": {"name": "w"}})
    core.patch_namespaced_config_map("w", "wr", {"data": {"x": "y"}})
    core.delete_namespaced_config_map("w", "wr")
    seen = []
    w = kubernetes.watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, "wr", resource_version=rv, timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_watch_410_raises(tmp_path: Any) -> None:
    srv = ServerProcess(tmp_path, extra=["--watch-cache-size", "3"]).start()
    try:
        client = kubernetes.config.new_client_from_config(config_file=str(srv.kubeconfig))
        core = kubernetes.client.CoreV1Api(client)
        rv = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(8):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"o{i}"}})
        w = kubernetes.watch.Watch()
        with pytest.raises(ApiException) as e:
            for _ in w.stream(core.list_namespaced_config_map, "default", resource_version=rv,
                              timeout_seconds=5):
                pass
        assert e.value.status == 410
        client.close()
    finally:
        srv.stop()


async def test_asyncio_client(server: ServerProcess) -> None:
    async with kubernetes_asyncio.client.ApiClient(
            await _async_config(server)) as client:
        core = kubernetes_asyncio.client.CoreV1Api(client)
        await core.create_namespace({"metadata": {"name": "aio"}})
        await core.create_namespaced_config_map("aio", {"metadata": {"name": "a"}, "data": {"k": "v"}})
        lst = await core.list_namespaced_config_map("aio")
        assert [c.metadata.name for c in lst.items] == ["a"]
        rv = lst.metadata.resource_version
        await core.patch_namespaced_config_map("a", "aio", {"data": {"k": "w"}})
        await core.delete_namespaced_config_map("a", "aio")
        seen = []
        w = kubernetes_asyncio.watch.Watch()
        async with w.stream(core.list_namespaced_config_map, "aio", resource_version=rv,
                            timeout_seconds=5) as stream:
            async for ev in stream:
                seen.append(ev["type"])
                if len(seen) == 2:
                    w.stop()
        assert seen == ["MODIFIED", "DELETED"]
        with pytest.raises(kubernetes_asyncio.client.ApiException) as e:
            await core.read_namespaced_config_map("a", "aio")
        assert e.value.status == 404


async def _async_config(server: ServerProcess) -> Any:
    cfg = kubernetes_asyncio.client.Configuration()
    await kubernetes_asyncio.config.load_kube_config(config_file=str(server.kubeconfig),
                                                     client_configuration=cfg)
    return cfg
