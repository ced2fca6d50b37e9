"""The container environment (envvars.py): envFrom, env value / valueFrom, `$(VAR)`
expansion of env and argv, upstream's errors for what is missing."""
from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from pyk8s.kubelet.envvars import (ContainerConfigError, container_argv, expand,
                                   make_environment, pod_field, resource_value)

OBJS: dict[tuple[str, str, str], Any] = {
    ("configmap", "ns", "cm"): {"data": {"A": "a", "B": "b"}},
    ("secret", "ns", "sec"): {"data": {"PW": base64.b64encode(b"s3cret").decode()}},
}


async def getter(kind: str, ns: str, name: str) -> Any:
    return OBJS.get((kind, ns, name))


POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                    "labels": {"app": "x"}, "annotations": {"note": "hi"}},
       "spec": {"nodeName": "n1", "serviceAccountName": "sa",
                "containers": [{"name": "c", "resources": {
                    "requests": {"cpu": "250m", "memory": "64Mi"},
                    "limits": {"memory": "128Mi"}}}]},
       "status": {"podIPs": [{"ip": "10.0.0.5"}], "podIP": "10.0.0.5"}}


def env_of(ctr: dict[str, Any]) -> dict[str, str]:
    return dict(asyncio.run(make_environment(POD, {"name": "c", **ctr}, getter, "10.0.0.5",
                                             "192.168.0.1", {"cpu": "8", "memory": "16Gi"})))


def test_values_and_expansion() -> None:
    env = env_of({"env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "$(X)-$(Z)"},
                          {"name": "E", "value": "$$(X)"}]})
    assert env == {"X": "1", "Y": "1-$(Z)", "E": "$(X)"}
    assert container_argv({"command": ["echo", "$(X)"], "args": ["$(Y)"]}, env) == \
        ["echo", "1", "1-$(Z)"]
    assert expand("$(A)", {"A": "v"}) == "v"


def test_config_map_secret_refs_and_env_from() -> None:
    env = env_of({"envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                              {"secretRef": {"name": "sec"}},
                              {"configMapRef": {"name": "nope", "optional": True}}],
                  "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm",
                                                                          "key": "B"}}},
                          {"name": "S", "valueFrom": {"secretKeyRef": {"name": "sec",
                                                                       "key": "PW"}}},
                          {"name": "O", "valueFrom": {"secretKeyRef": {
                              "name": "sec", "key": "missing", "optional": True}}},
                          {"name": "U", "value": "$(CM_A)$(S)"}]})
    assert env == {"CM_A": "a", "CM_B": "b", "PW": "s3cret", "K": "b", "S": "s3cret",
                   "U": "as3cret"}


@pytest.mark.parametrize("ctr,message", [
    ({"envFrom": [{"configMapRef": {"name": "x"}}]}, 'configmap "x" not found'),
    ({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]},
     'secret "gone" not found'),
    ({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]},
     "couldn't find key k in ConfigMap ns/cm"),
    ({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}}]},
     "couldn't find key k in Secret ns/sec"),
])
def test_missing(ctr: dict[str, Any], message: str) -> None:
    with pytest.raises(ContainerConfigError) as e:
        env_of(ctr)
    assert str(e.value) == message and e.value.reason == "CreateContainerConfigError"


def test_field_refs() -> None:
    def ref(p: str) -> dict[str, Any]:
        return {"name": p, "valueFrom": {"fieldRef": {"fieldPath": p}}}
    paths = ["metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels['app']",
             "metadata.annotations['note']", "spec.nodeName", "spec.serviceAccountName",
             "status.hostIP", "status.podIP", "status.podIPs"]
    env = env_of({"env": [ref(p) for p in paths]})
    assert [env[p] for p in paths] == ["p", "ns", "u1", "x", "hi", "n1", "sa", "192.168.0.1",
                                       "10.0.0.5", "10.0.0.5"]
    assert pod_field(POD, "metadata.labels", allow_maps=True) == 'app="x"'


def test_resource_field_refs() -> None:
    alloc = {"cpu": "8", "memory": "16Gi"}
    assert resource_value(POD, {"resource": "requests.cpu", "divisor": "1m"}, "c", alloc) == "250"
    assert resource_value(POD, {"resource": "requests.cpu"}, "c", alloc) == "1"   # ceil
    assert resource_value(POD, {"resource": "limits.cpu"}, "c", alloc) == "8"     # allocatable
    assert resource_value(POD, {"resource": "limits.memory", "divisor": "1Mi"}, "c",
                          alloc) == "128"
    assert resource_value(POD, {"resource": "requests.memory"}, "c", alloc) == str(64 << 20)
    env = env_of({"env": [{"name": "M", "valueFrom": {"resourceFieldRef": {
        "resource": "limits.memory", "divisor": "1Mi"}}}]})
    assert env == {"M": "128"}


def test_waiting_status_of_a_container_not_created() -> None:
    from pyk8s.kubelet.podworkers import build_pod_status
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    st = build_pod_status(pod, [], "10.0.0.2", "10.0.0.1", "2026-01-01T00:00:00Z",
                          {"c": ("CreateContainerConfigError", 'configmap "x" not found')})
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"] == {"waiting": {
        "reason": "CreateContainerConfigError", "message": 'configmap "x" not found'}}
