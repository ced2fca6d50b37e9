"""pyk8s.api.pruning: unknown fields are removed and reported as strict decoding does."""
from __future__ import annotations

import copy

import pytest

from pyk8s.api.catalogue import BUILTIN
from pyk8s.api.pruning import prune_unknown_fields


def _deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"any/key": "v"}, "annotations": {"a": "b"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}],
                         "resources": {"limits": {"cpu": "1", "example.com/gpu": 1}}},
                        {"name": "b", "image": "busybox", "env": [{"name": "X", "value": "1"}]},
                    ],
                    "nodeSelector": {"disk": "ssd"},
                },
            },
        },
        "status": {"replicas": 2},
    }


def test_known_object_is_untouched() -> None:
    obj = _deployment()
    before = copy.deepcopy(obj)
    assert prune_unknown_fields("apps", "v1", "Deployment", obj) == []
    assert obj == before


def test_nested_unknown_fields_are_removed_and_reported_in_document_order() -> None:
    obj = _deployment()
    obj["spec"]["foo"] = 1
    obj["metadata"]["bogus"] = True
    obj["spec"]["template"]["spec"]["containers"][1]["imagePullPolicyX"] = "Always"
    obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostname"] = "x"
    obj["spec"]["template"]["spec"]["containers"][1]["env"][0]["valueFromm"] = {}
    obj["spec"]["strategy"]["rollingUpdate"]["maxSurgeX"] = None
    obj["status"]["extra"] = {"deep": [1]}
    obj["topLevel"] = 1
    unknown = prune_unknown_fields("apps", "v1", "Deployment", obj)
    assert unknown == [
        "metadata.bogus",
        "spec.strategy.rollingUpdate.maxSurgeX",
        "spec.template.spec.containers[0].ports[0].hostname",
        "spec.template.spec.containers[1].env[0].valueFromm",
        "spec.template.spec.containers[1].imagePullPolicyX",
        "spec.foo",
        "status.extra",
        "topLevel",
    ]
    assert obj == _deployment()


def test_init_containers_volumes_and_probes() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
        "initContainers": [{"name": "i", "image": "x", "restartPolicyy": "Always"}],
        "containers": [{"name": "c", "image": "x",
                        "livenessProbe": {"httpGet": {"port": "http", "pathh": "/"}},
                        "volumeMounts": [{"name": "v", "mountPath": "/v", "hostPath": "/x"}]}],
        "volumes": [{"name": "v", "configMap": {"name": "c", "items": [
            {"key": "k", "path": "p", "extra": 1}]}}],
    }}
    assert prune_unknown_fields("", "v1", "Pod", pod) == [
        "spec.initContainers[0].restartPolicyy",
        "spec.containers[0].livenessProbe.httpGet.pathh",
        "spec.containers[0].volumeMounts[0].hostPath",
        "spec.volumes[0].configMap.items[0].extra",
    ]
    assert pod["spec"]["containers"][0]["livenessProbe"] == {"httpGet": {"port": "http"}}


def test_maps_and_free_form_objects_accept_anything() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
          "data": {"any key": "v", "other": "w"}, "binaryData": {"b": "AA=="}}
    assert prune_unknown_fields("", "v1", "ConfigMap", cm) == []
    rev = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"},
           "revision": 1, "data": {"spec": {"anything": {"goes": [1, 2]}}}}
    assert prune_unknown_fields("apps", "v1", "ControllerRevision", rev) == []
    assert rev["data"] == {"spec": {"anything": {"goes": [1, 2]}}}
    managed = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "managedFields": [
        {"manager": "kubectl", "fieldsV1": {"f:data": {"f:x": {}}}, "fieldsV2": 1}]}}
    assert prune_unknown_fields("", "v1", "Secret", managed) == [
        "metadata.managedFields[0].fieldsV2"]


def test_map_values_with_object_schemas_are_walked() -> None:
    # ResourceQuota hard is map[string]Quantity; a Pod's overhead too: scalars stay as they are.
    rq = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
          "spec": {"hard": {"pods": "10", "requests.cpu": 4}}}
    assert prune_unknown_fields("", "v1", "ResourceQuota", rq) == []


def test_values_of_unexpected_types_are_left_alone() -> None:
    obj = _deployment()
    obj["spec"]["template"]["spec"]["containers"] = "not a list"
    obj["spec"]["selector"] = ["not", "an", "object"]
    assert prune_unknown_fields("apps", "v1", "Deployment", obj) == []
    assert obj["spec"]["template"]["spec"]["containers"] == "not a list"


def test_unknown_kinds_are_not_pruned() -> None:
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"anything": 1}}
    assert prune_unknown_fields("example.com", "v1", "Widget", widget) == []
    assert widget == {"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"anything": 1}}
    assert prune_unknown_fields("apps", "v9", "Deployment", _deployment()) == []


@pytest.mark.parametrize("info", BUILTIN, ids=lambda r: f"{r.group or 'core'}/{r.version}/{r.kind}")
def test_every_served_kind_is_pruned(info) -> None:
    obj = {"apiVersion": info.api_version, "kind": info.kind, "metadata": {"name": "x"},
           "notAField": 1}
    assert prune_unknown_fields(info.group, info.version, info.kind, obj) == ["notAField"]
    assert obj == {"apiVersion": info.api_version, "kind": info.kind, "metadata": {"name": "x"}}


def test_autoscaling_versions_have_their_own_fields() -> None:
    v1 = {"spec": {"targetCPUUtilizationPercentage": 50, "metrics": []}}
    assert prune_unknown_fields("autoscaling", "v1", "HorizontalPodAutoscaler", v1) == [
        "spec.metrics"]
    v2 = {"spec": {"targetCPUUtilizationPercentage": 50, "metrics": []}}
    assert prune_unknown_fields("autoscaling", "v2", "HorizontalPodAutoscaler", v2) == [
        "spec.targetCPUUtilizationPercentage"]
