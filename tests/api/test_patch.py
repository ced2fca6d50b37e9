"""JSON patch (RFC 6902), merge patch (RFC 7386) and strategic merge patch.

Expected strategic-merge-patch results (orders included) were checked against upstream's
implementation (`kubectl patch --local --type strategic`, kubectl 1.32).
"""
from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from pyk8s.api import schemas
from pyk8s.api.errors import ApiError
from pyk8s.api.patch import (
    JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, PatchError, PatchTestFailed,
    UnsupportedPatchType, apply_json_patch, apply_merge_patch, apply_patch,
    apply_strategic_merge_patch,
)

DEPLOYMENT = schemas.schema_for("apps", "v1", "Deployment")
SERVICE = schemas.schema_for("", "v1", "Service")
PDB = schemas.schema_for("policy", "v1", "PodDisruptionBudget")


def directive_keys(value: Any) -> list[str]:
    """Every `$`-prefixed key anywhere in `value`."""
    if isinstance(value, dict):
        return [k for k in value if k.startswith("$")] + [
            k for v in value.values() for k in directive_keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in directive_keys(v)]
    return []


# ============================================================================================
# RFC 6902 JSON Patch
# ============================================================================================

RFC6902_APPENDIX = [
    pytest.param({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
                 {"baz": "qux", "foo": "bar"}, id="A.1 add object member"),
    pytest.param({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
                 {"foo": ["bar", "qux", "baz"]}, id="A.2 add array element"),
    pytest.param({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}],
                 {"foo": "bar"}, id="A.3 remove object member"),
    pytest.param({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
                 {"foo": ["bar", "baz"]}, id="A.4 remove array element"),
    pytest.param({"baz": "qux", "foo": "bar"},
                 [{"op": "replace", "path": "/baz", "value": "boo"}],
                 {"baz": "boo", "foo": "bar"}, id="A.5 replace value"),
    pytest.param({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
                 [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
                 {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
                 id="A.6 move value"),
    pytest.param({"foo": ["all", "grass", "cows", "eat"]},
                 [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
                 {"foo": ["all", "cows", "eat", "grass"]}, id="A.7 move array element"),
    pytest.param({"baz": "qux", "foo": ["a", 2, "c"]},
                 [{"op": "test", "path": "/baz", "value": "qux"},
                  {"op": "test", "path": "/foo/1", "value": 2}],
                 {"baz": "qux", "foo": ["a", 2, "c"]}, id="A.8 test success"),
    pytest.param({"foo": "bar"},
                 [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
                 {"foo": "bar", "child": {"grandchild": {}}}, id="A.10 add nested member"),
    pytest.param({"foo": "bar"},
                 [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
                 {"foo": "bar", "baz": "qux"}, id="A.11 ignore unrecognized members"),
    pytest.param({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}],
                 {"/": 9, "~1": 10}, id="A.14 ~ escape ordering"),
    pytest.param({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
                 {"foo": ["bar", ["abc", "def"]]}, id="A.16 add array value"),
]


@pytest.mark.parametrize(("doc", "ops", "expected"), RFC6902_APPENDIX)
def test_json_patch_rfc6902_appendix(doc: Any, ops: list[Any], expected: Any) -> None:
    assert apply_json_patch(doc, ops) == expected


def test_json_patch_rfc6902_a9_test_error() -> None:
    with pytest.raises(PatchTestFailed) as info:
        apply_json_patch({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}])
    assert info.value.message == "testing value /baz failed: test failed"


def test_json_patch_rfc6902_a12_add_to_nonexistent_target() -> None:
    with pytest.raises(PatchError) as info:
        apply_json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}])
    assert info.value.message == ('add operation does not apply: doc is missing path: '
                                  '"/baz/bat": missing value')
    assert not isinstance(info.value, PatchTestFailed)


def test_json_patch_rfc6902_a15_string_is_not_number() -> None:
    with pytest.raises(PatchTestFailed):
        apply_json_patch({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}])


def test_json_patch_pointer_escapes() -> None:
    doc = {"metadata": {"annotations": {}}}
    ops = [{"op": "add", "path": "/metadata/annotations/example.com~1owner", "value": "me"},
           {"op": "add", "path": "/metadata/annotations/a~0b", "value": "tilde"},
           {"op": "copy", "from": "/metadata/annotations/a~0b", "path": "/metadata/x~01"}]
    assert apply_json_patch(doc, ops) == {"metadata": {
        "annotations": {"example.com/owner": "me", "a~b": "tilde"}, "x~1": "tilde"}}


def test_json_patch_array_indices() -> None:
    doc = {"items": ["a", "b", "c"]}
    assert apply_json_patch(doc, [{"op": "add", "path": "/items/-", "value": "d"}])["items"] \
        == ["a", "b", "c", "d"]
    assert apply_json_patch(doc, [{"op": "add", "path": "/items/3", "value": "d"}])["items"] \
        == ["a", "b", "c", "d"]
    assert apply_json_patch(doc, [{"op": "add", "path": "/items/0", "value": "z"}])["items"] \
        == ["z", "a", "b", "c"]
    # evanphx (and so the apiserver) accepts negative indices, counted from the end.
    assert apply_json_patch(doc, [{"op": "add", "path": "/items/-1", "value": "z"}])["items"] \
        == ["a", "b", "c", "z"]
    assert apply_json_patch(doc, [{"op": "remove", "path": "/items/-1"}])["items"] == ["a", "b"]
    assert apply_json_patch(doc, [{"op": "replace", "path": "/items/-3", "value": "A"}])[
        "items"] == ["A", "b", "c"]


@pytest.mark.parametrize(("ops", "message"), [
    ([{"op": "add", "path": "/items/4", "value": "x"}],
     "error in add for path: '/items/4': Unable to access invalid index: 4: invalid index "
     "referenced"),
    ([{"op": "add", "path": "/items/-5", "value": "x"}],
     "error in add for path: '/items/-5': Unable to access invalid index: -5: invalid index "
     "referenced"),
    ([{"op": "add", "path": "/items/x", "value": "x"}],
     "error in add for path: '/items/x': value was not a proper array index: 'x': "
     "strconv.Atoi: parsing \"x\": invalid syntax"),
    ([{"op": "remove", "path": "/items/3"}],
     "error in remove for path: '/items/3': Unable to access invalid index: 3: invalid index "
     "referenced"),
    ([{"op": "remove", "path": "/meta/nope"}],
     "error in remove for path: '/meta/nope': Unable to remove nonexistent key: nope: "
     "missing value"),
    ([{"op": "remove", "path": "/nope/x"}],
     'remove operation does not apply: doc is missing path: "/nope/x": missing value'),
    ([{"op": "replace", "path": "/meta/nope", "value": 1}],
     "replace operation does not apply: doc is missing key: /meta/nope: missing value"),
    ([{"op": "replace", "path": "/nope/x", "value": 1}],
     "replace operation does not apply: doc is missing path: /nope/x: missing value"),
    ([{"op": "move", "from": "/nope", "path": "/x"}],
     "error in move for path: '/nope': Unable to remove nonexistent key: nope: missing value"),
    ([{"op": "copy", "from": "/nope", "path": "/x"}],
     "copy operation does not apply: doc is missing from path: /nope: missing value"),
    ([{"op": "copy", "from": "/meta", "path": "/nope/x"}],
     "copy operation does not apply: doc is missing destination path: /nope/x: missing value"),
    ([{"op": "test", "path": "/nope/x", "value": 1}],
     "test operation does not apply: is missing path: /nope/x: missing value"),
    ([{"op": "frob", "path": "/x"}], "Unexpected kind: frob"),
    ([{"path": "/x"}], "Unexpected kind: unknown"),
    ([{"op": "add", "value": 1}], "add operation failed to decode path: missing value"),
    ([{"op": "add", "path": "/x"}], "add operation missing value field: missing value"),
    ([{"op": "add", "path": "x", "value": 1}],
     'add operation does not apply: doc is missing path: "x": missing value'),
    ([{"op": "add", "path": "/meta/name/x", "value": 1}],
     'add operation does not apply: doc is missing path: "/meta/name/x": missing value'),
])
def test_json_patch_errors(ops: list[Any], message: str) -> None:
    doc = {"items": ["a", "b", "c"], "meta": {"name": "n"}}
    with pytest.raises(PatchError) as info:
        apply_json_patch(doc, ops)
    assert info.value.message == message
    assert (info.value.code, info.value.reason) == (422, "Invalid")
    assert not isinstance(info.value, PatchTestFailed)


def test_json_patch_test_operation() -> None:
    doc = {"metadata": {"name": "web", "resourceVersion": "41", "labels": {"a": "1", "b": "2"}},
           "spec": {"replicas": 2, "paused": False}}
    ok = [{"op": "test", "path": "/metadata/resourceVersion", "value": "41"},
          {"op": "test", "path": "/metadata/labels", "value": {"b": "2", "a": "1"}},
          {"op": "test", "path": "/spec/paused", "value": False},
          {"op": "test", "path": "/metadata/missing", "value": None},  # evanphx: absent == null
          {"op": "test", "path": "", "value": doc}]
    assert apply_json_patch(doc, ok) == doc
    for path, value in [("/metadata/resourceVersion", "40"), ("/spec/replicas", "2"),
                        ("/spec/replicas", 2.0), ("/spec/paused", 0),
                        ("/metadata/labels", {"a": "1"}), ("/metadata/missing", "x")]:
        with pytest.raises(PatchTestFailed) as info:
            apply_json_patch(doc, [{"op": "test", "path": path, "value": value}])
        assert info.value.message == f"testing value {path} failed: test failed"
        assert (info.value.code, info.value.reason) == (422, "Invalid")


def test_json_patch_optimistic_lock_is_all_or_nothing() -> None:
    """kubectl-style `test` guard: a failure leaves nothing applied (and `doc` untouched)."""
    doc = {"metadata": {"name": "web", "resourceVersion": "7"}, "spec": {"replicas": 1}}
    before = copy.deepcopy(doc)
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 3},
           {"op": "test", "path": "/metadata/resourceVersion", "value": "6"}]
    with pytest.raises(PatchTestFailed):
        apply_json_patch(doc, ops)
    assert doc == before
    ops[1]["value"] = "7"
    assert apply_json_patch(doc, ops)["spec"] == {"replicas": 3}


def test_json_patch_does_not_mutate_or_alias_inputs() -> None:
    doc = {"spec": {"containers": [{"name": "a"}]}}
    value = {"name": "b", "env": []}
    ops = [{"op": "add", "path": "/spec/containers/-", "value": value},
           {"op": "copy", "from": "/spec/containers/0", "path": "/spec/first"}]
    doc_before, ops_before = copy.deepcopy(doc), copy.deepcopy(ops)
    result = apply_json_patch(doc, ops)
    assert doc == doc_before and ops == ops_before
    result["spec"]["containers"][1]["env"].append("x")
    result["spec"]["first"]["name"] = "changed"
    assert value == {"name": "b", "env": []}
    assert result["spec"]["containers"][0] == {"name": "a"}


def test_json_patch_move_and_root_replace() -> None:
    doc = {"a": {"b": 1}, "list": [1, 2, 3]}
    assert apply_json_patch(doc, [{"op": "move", "from": "/list/0", "path": "/list/-"}]) == \
        {"a": {"b": 1}, "list": [2, 3, 1]}
    assert apply_json_patch(doc, [{"op": "move", "from": "/a/b", "path": "/c"}]) == \
        {"a": {}, "list": [1, 2, 3], "c": 1}
    assert apply_json_patch(doc, [{"op": "replace", "path": "", "value": {"x": 1}}]) == {"x": 1}
    with pytest.raises(PatchError):
        apply_json_patch(doc, [{"op": "move", "from": "/a", "path": "/a/b/c"}])


def test_json_patch_malformed_documents_are_bad_requests() -> None:
    for ops in ({"op": "add", "path": "/a", "value": 1}, "x", None, [1]):
        with pytest.raises(PatchError) as info:
            apply_json_patch({}, ops)
        assert (info.value.code, info.value.reason) == (400, "BadRequest")


def test_json_patch_operation_limit() -> None:
    ops = [{"op": "test", "path": "/a", "value": 1}] * 10001
    with pytest.raises(PatchError) as info:
        apply_json_patch({"a": 1}, ops)
    assert info.value.code == 413
    assert info.value.message == ("The allowed maximum operations in a JSON patch is 10000, "
                                  "got 10001")


# ============================================================================================
# RFC 7386 JSON Merge Patch
# ============================================================================================

RFC7386_APPENDIX = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("doc", "patch", "expected"), RFC7386_APPENDIX)
def test_merge_patch_rfc7386_appendix(doc: Any, patch: Any, expected: Any) -> None:
    assert apply_merge_patch(doc, patch) == expected


def test_merge_patch_on_a_deployment() -> None:
    doc = deployment()
    patch = {"metadata": {"labels": {"tier": None, "track": "canary"}},
             "spec": {"replicas": 5, "strategy": None,
                      "template": {"spec": {"containers": [{"name": "app", "image": "v2"}]}}}}
    result = apply_merge_patch(doc, patch)
    assert result["metadata"]["labels"] == {"app": "web", "track": "canary"}
    assert result["spec"]["replicas"] == 5 and "strategy" not in result["spec"]
    # Lists are replaced wholesale: the sidecar and the app's env are gone.
    assert result["spec"]["template"]["spec"]["containers"] == [{"name": "app", "image": "v2"}]
    assert result["spec"]["selector"] == doc["spec"]["selector"]


def test_merge_patch_prunes_nulls_inside_new_values_like_evanphx() -> None:
    patch = {"spec": {"args": ["x", None, {"k": None, "j": 1}], "new": {"a": None, "b": 2}}}
    assert apply_merge_patch({"spec": {"args": ["old"]}}, patch) == \
        {"spec": {"args": ["x", None, {"j": 1}], "new": {"b": 2}}}


def test_merge_patch_does_not_mutate_inputs() -> None:
    doc, patch = {"a": {"b": 1, "c": [1]}}, {"a": {"b": None, "d": {"e": 1}}}
    doc_before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    result = apply_merge_patch(doc, patch)
    assert result == {"a": {"c": [1], "d": {"e": 1}}}
    result["a"]["d"]["e"] = 2
    result["a"]["c"].append(2)
    assert doc == doc_before and patch == patch_before


# ============================================================================================
# Strategic merge patch
# ============================================================================================

def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "fe"},
                     "finalizers": ["a.example.com/x", "b.example.com/y"]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "nginx:1.25",
                         "args": ["--port", "8080"],
                         "env": [{"name": "MODE", "value": "prod"},
                                 {"name": "LOG", "value": "info"}],
                         "ports": [{"containerPort": 8080, "name": "http"}],
                         "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                        {"name": "sidecar", "image": "busybox:1.36",
                         "command": ["sh", "-c", "sleep infinity"]},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}},
                                {"name": "config", "configMap": {"name": "web-config"}}],
                    "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                    "nodeSelector": {"disk": "ssd"},
                },
            },
        },
    }


def smp(patch: Any, doc: dict[str, Any] | None = None,
        schema: dict[str, Any] | None = DEPLOYMENT) -> dict[str, Any]:
    doc = deployment() if doc is None else doc
    before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    result = apply_strategic_merge_patch(doc, patch, schema)
    assert doc == before and patch == patch_before, "inputs must not be mutated"
    assert directive_keys(result) == [], "directives must not remain"
    return result


def pod_spec(patch: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": patch}}}


def containers(result: dict[str, Any]) -> list[dict[str, Any]]:
    return result["spec"]["template"]["spec"]["containers"]


def names(items: list[dict[str, Any]], key: str = "name") -> list[Any]:
    return [item[key] for item in items]


def test_smp_set_image_of_one_container_by_name() -> None:
    """`kubectl set image deployment/web app=nginx:1.27`."""
    result = smp(pod_spec({"containers": [{"name": "app", "image": "nginx:1.27"}]}))
    app, sidecar = containers(result)
    assert app == {**deployment()["spec"]["template"]["spec"]["containers"][0],
                   "image": "nginx:1.27"}
    assert sidecar == deployment()["spec"]["template"]["spec"]["containers"][1]
    # Everything else is untouched.
    expected = deployment()
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
    assert result == expected


def test_smp_env_vars_merge_by_name() -> None:
    patch = pod_spec({"containers": [{"name": "app", "env": [
        {"name": "LOG", "value": "debug"}, {"name": "FEATURE", "value": "on"}]}]})
    env = containers(smp(patch))[0]["env"]
    # LOG updated in place; FEATURE is new. Upstream places new items after the patch items
    # that precede them in the patch, so it follows LOG.
    assert env == [{"name": "MODE", "value": "prod"}, {"name": "LOG", "value": "debug"},
                   {"name": "FEATURE", "value": "on"}]


def test_smp_new_items_without_set_element_order_come_first() -> None:
    """Upstream quirk (`mergeSortedSlice`): an item the live list lacks is emitted before the
    live items, unless `$setElementOrder` says otherwise."""
    env = containers(smp(pod_spec({"containers": [
        {"name": "app", "env": [{"name": "NEW", "value": "1"}]}]})))[0]["env"]
    assert names(env) == ["NEW", "MODE", "LOG"]
    result = smp(pod_spec({"containers": [{"name": "logger", "image": "fluentbit"}]}))
    assert names(containers(result)) == ["logger", "app", "sidecar"]
    assert containers(result)[0] == {"name": "logger", "image": "fluentbit"}


def test_smp_delete_container_with_patch_delete() -> None:
    result = smp(pod_spec({"containers": [{"name": "sidecar", "$patch": "delete"}]}))
    assert names(containers(result)) == ["app"]
    # Deleting something absent is a no-op.
    assert smp(pod_spec({"containers": [{"name": "nope", "$patch": "delete"}]})) == deployment()


def test_smp_delete_env_var_and_mount_by_merge_key() -> None:
    result = smp(pod_spec({"containers": [{
        "name": "app",
        "env": [{"name": "MODE", "$patch": "delete"}],
        "volumeMounts": [{"mountPath": "/data", "$patch": "delete"}],
    }]}))
    app = containers(result)[0]
    assert app["env"] == [{"name": "LOG", "value": "info"}]
    assert app["volumeMounts"] == []


def test_smp_replace_whole_list_with_patch_replace_item() -> None:
    result = smp(pod_spec({"containers": [{"$patch": "replace"},
                                          {"name": "only", "image": "x", "args": None}]}))
    assert containers(result) == [{"name": "only", "image": "x"}]


def test_smp_set_element_order_reorders_and_places_new_items() -> None:
    result = smp(pod_spec({
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
        "containers": [{"name": "app", "image": "nginx:1.27"}],
    }))
    assert names(containers(result)) == ["sidecar", "app"]
    assert containers(result)[1]["image"] == "nginx:1.27"

    result = smp(pod_spec({
        "$setElementOrder/containers": [{"name": "app"}, {"name": "logger"},
                                        {"name": "sidecar"}],
        "containers": [{"name": "logger", "image": "fluentbit"}],
    }))
    assert names(containers(result)) == ["app", "logger", "sidecar"]


def test_smp_set_element_order_with_deletion_and_addition() -> None:
    """Upstream orders the live items by its (in-place modified) view of the live list, so
    the new item lands after the survivors here."""
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"] = [
        {"name": n, "image": n} for n in ["a", "g", "e", "c", "f"]]
    result = smp(pod_spec({
        "$setElementOrder/containers": [{"name": "b"}, {"name": "f"}],
        "containers": [{"name": "c", "$patch": "delete"}, {"name": "b", "image": "b"}],
    }), doc)
    assert names(containers(result)) == ["a", "g", "e", "b", "f"]


def test_smp_set_element_order_must_match_the_patch_list() -> None:
    with pytest.raises(PatchError) as info:
        smp(pod_spec({"$setElementOrder/containers": [{"name": "app"}],
                      "containers": [{"name": "sidecar"}, {"name": "app"}]}))
    assert info.value.message == (
        "The order in patch list:\n[map[name:sidecar] map[name:app]]\n doesn't match "
        "$setElementOrder list:\n[map[name:app]]")


def test_smp_empty_set_element_order_follows_gos_sort() -> None:
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"][0]["env"] = []
    result = smp(pod_spec({"containers": [{
        "name": "app", "$setElementOrder/env": [],
        "env": [{"name": "Z", "value": "1"}, {"name": "Y", "value": "2"}]}]}), doc)
    assert names(containers(result)[0]["env"]) == ["Y", "Z"]


def test_smp_retain_keys_switching_rolling_update_to_recreate() -> None:
    """What `kubectl apply` sends when the strategy changes to Recreate."""
    result = smp({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                                        "rollingUpdate": None}}})
    assert result["spec"]["strategy"] == {"type": "Recreate"}
    # Without $retainKeys the stale rollingUpdate would survive a plain merge.
    assert smp({"spec": {"strategy": {"type": "Recreate"}}})["spec"]["strategy"] == {
        "type": "Recreate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}


def test_smp_retain_keys_rejects_keys_it_does_not_list() -> None:
    with pytest.raises(PatchError) as info:
        smp({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                                   "rollingUpdate": {"maxSurge": 1}}}})
    assert (info.value.code, info.value.message) == (400, "invalid patch format of retainKeys")
    with pytest.raises(PatchError):
        smp({"spec": {"strategy": {"$retainKeys": "type"}}})


def test_smp_volume_source_switch_with_retain_keys() -> None:
    """kubectl apply, volume `data` changed from emptyDir to a configMap (`merge,retainKeys`)."""
    result = smp(pod_spec({
        "$setElementOrder/volumes": [{"name": "data"}, {"name": "config"}],
        "volumes": [{"$retainKeys": ["configMap", "name"], "name": "data",
                     "configMap": {"name": "data-cm"}, "emptyDir": None}],
    }))
    assert result["spec"]["template"]["spec"]["volumes"] == [
        {"name": "data", "configMap": {"name": "data-cm"}},
        {"name": "config", "configMap": {"name": "web-config"}}]


def test_smp_labels_null_removes_and_map_null_deletes() -> None:
    """`kubectl label deployment web tier- track=canary`."""
    result = smp({"metadata": {"labels": {"tier": None, "track": "canary"}}})
    assert result["metadata"]["labels"] == {"app": "web", "track": "canary"}
    assert "labels" not in smp({"metadata": {"labels": None}})["metadata"]
    assert "nope" not in smp({"metadata": {"labels": {"nope": None}}})["metadata"]["labels"]


def test_smp_rollout_restart() -> None:
    patch = {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"}}}}}
    result = smp(patch)
    assert result["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"}}
    again = smp({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2024-05-02T10:00:00Z"}}}}}, result)
    assert again["spec"]["template"]["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/restartedAt": "2024-05-02T10:00:00Z"}


def test_smp_lists_without_merge_strategy_are_replaced() -> None:
    result = smp(pod_spec({
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": None}],
        "containers": [{"name": "app", "args": ["--port", "9090"]}],
    }))
    spec = result["spec"]["template"]["spec"]
    assert spec["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert containers(result)[0]["args"] == ["--port", "9090"]


def test_smp_primitive_merge_list_finalizers() -> None:
    base = deployment()["metadata"]["finalizers"]
    # Union; the new item comes first (see test_smp_new_items_..._come_first).
    result = smp({"metadata": {"finalizers": ["c.example.com/z", "a.example.com/x"]}})
    assert result["metadata"]["finalizers"] == ["c.example.com/z", "a.example.com/x",
                                                "b.example.com/y"]
    result = smp({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/x",
                                                                       "absent"]}})
    assert result["metadata"]["finalizers"] == base[1:]
    # kubectl apply's shape: additions, deletions and the full order.
    result = smp({"metadata": {
        "$setElementOrder/finalizers": ["b.example.com/y", "c.example.com/z"],
        "finalizers": ["c.example.com/z"],
        "$deleteFromPrimitiveList/finalizers": ["a.example.com/x"]}})
    assert result["metadata"]["finalizers"] == ["b.example.com/y", "c.example.com/z"]


def test_smp_service_ports_merge_by_port() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "type": "ClusterIP", "ports": [
               {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
               {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]}}
    result = smp({"spec": {"ports": [{"port": 443, "targetPort": 9443}]}}, svc, SERVICE)
    assert result["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"name": "https", "port": 443, "targetPort": 9443, "protocol": "TCP"}]
    result = smp({"spec": {"ports": [{"port": 8080, "name": "alt"}]}}, svc, SERVICE)
    assert names(result["spec"]["ports"], "port") == [8080, 80, 443]
    result = smp({"spec": {"ports": [{"port": 80, "$patch": "delete"}]}}, svc, SERVICE)
    assert names(result["spec"]["ports"], "port") == [443]
    # Merge keys compare like Go values: the string "80" is not the number 80.
    result = smp({"spec": {"ports": [{"port": "80", "name": "str"}]}}, svc, SERVICE)
    assert names(result["spec"]["ports"], "port") == ["80", 80, 443]


def test_smp_patch_directive_on_maps() -> None:
    result = smp({"spec": {"template": {"metadata": {"labels": {"$patch": "replace",
                                                                "app": "web2"}}}}})
    assert result["spec"]["template"]["metadata"]["labels"] == {"app": "web2"}
    result = smp(pod_spec({"nodeSelector": {"$patch": "delete"}}))
    assert result["spec"]["template"]["spec"]["nodeSelector"] == {}
    result = smp({"spec": {"$patch": "replace", "replicas": 1, "selector": None}})
    assert result["spec"] == {"replicas": 1}


def test_smp_patch_directive_where_the_original_has_nothing_is_dropped() -> None:
    """Upstream (#117568) strips directives from values the original lacks: a map carrying
    `$patch` disappears, even `$patch: replace`."""
    result = smp({"spec": {"template": {"metadata": {
        "annotations": {"$patch": "replace", "a": "b"}}}}})
    assert "annotations" not in result["spec"]["template"]["metadata"]
    result = smp(pod_spec({"containers": [{
        "name": "new", "image": "x", "args": None,
        "env": [{"name": "A", "$patch": "delete"}, {"name": "B", "value": None}]}]}))
    assert containers(result)[0] == {"name": "new", "image": "x",
                                     "env": [{"name": "A"}, {"name": "B"}]}


def test_smp_replace_patch_strategy_from_schema() -> None:
    """`PodDisruptionBudgetSpec.selector` has `x-kubernetes-patch-strategy: replace`."""
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}
    result = smp({"spec": {"selector": {"matchLabels": {"tier": "fe"}}}}, pdb, PDB)
    assert result["spec"]["selector"] == {"matchLabels": {"tier": "fe"}}
    # A Deployment's selector has no strategy: it merges.
    result = smp({"spec": {"selector": {"matchLabels": {"tier": "fe"}}}})
    assert result["spec"]["selector"] == {"matchLabels": {"app": "web", "tier": "fe"}}


def test_smp_without_schema_behaves_like_a_merge_patch() -> None:
    doc = {"spec": {"items": [{"name": "a", "v": 1}], "m": {"x": 1, "y": 2}}}
    patch = {"spec": {"items": [{"name": "a", "w": 2}], "m": {"x": None, "z": 3}}}
    expected = {"spec": {"items": [{"name": "a", "w": 2}], "m": {"y": 2, "z": 3}}}
    assert smp(patch, doc, None) == expected == apply_merge_patch(doc, patch)
    # Fields the schema does not describe are treated the same way.
    dep = deployment()
    dep["spec"]["custom"] = {"items": [{"name": "a"}], "keep": True}
    result = smp({"spec": {"custom": {"items": [{"name": "b"}]}}}, dep)
    assert result["spec"]["custom"] == {"items": [{"name": "b"}], "keep": True}


def test_smp_type_changes_and_nulls() -> None:
    result = smp({"spec": {"replicas": None, "paused": True,
                           "template": {"spec": {"nodeSelector": "weird"}}}})
    assert "replicas" not in result["spec"] and result["spec"]["paused"] is True
    assert result["spec"]["template"]["spec"]["nodeSelector"] == "weird"
    # An empty merge list in the patch changes nothing (use `$patch: replace` to clear).
    assert smp(pod_spec({"containers": []})) == deployment()
    # A null patch is an empty patch.
    assert apply_strategic_merge_patch(deployment(), None, DEPLOYMENT) == deployment()


def test_smp_kubectl_client_side_apply_patch() -> None:
    """A three-way patch as `kubectl apply` computes it: new image, env var dropped and one
    added, replicas no longer managed, last-applied annotation updated."""
    last_applied = '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"}}'
    patch = {
        "metadata": {"annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": last_applied}},
        "spec": {
            "replicas": None,
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "containers": [{
                    "name": "app", "image": "nginx:1.27",
                    "$setElementOrder/env": [{"name": "MODE"}, {"name": "TRACE"}],
                    "env": [{"name": "TRACE", "value": "1"},
                            {"name": "LOG", "$patch": "delete"}],
                }],
            }},
        },
    }
    result = smp(patch)
    assert result["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/last-applied-configuration": last_applied}
    assert "replicas" not in result["spec"]
    app, sidecar = containers(result)
    assert app["image"] == "nginx:1.27"
    assert app["env"] == [{"name": "MODE", "value": "prod"}, {"name": "TRACE", "value": "1"}]
    assert sidecar == deployment()["spec"]["template"]["spec"]["containers"][1]


def test_smp_kubectl_apply_adding_a_container_keeps_declared_order() -> None:
    result = smp(pod_spec({
        "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"},
                                        {"name": "metrics"}],
        "containers": [{"name": "metrics", "image": "exporter", "ports": [
            {"containerPort": 9100}]}],
    }))
    assert names(containers(result)) == ["app", "sidecar", "metrics"]
    assert containers(result)[2]["ports"] == [{"containerPort": 9100}]


@pytest.mark.parametrize(("patch", "code", "message"), [
    (pod_spec({"containers": [{"image": "no-name"}]}), 500,
     "map: map[image:no-name] does not contain declared merge key: name"),
    (pod_spec({"containers": [{"name": "app", "$patch": "merge"}]}), 500,
     "merging lists cannot yet be specified in the patch"),
    (pod_spec({"containers": [{"name": "app", "$patch": "bogus"}]}), 500,
     "unknown patch type: bogus in map: map[$patch:bogus name:app]"),
    ({"metadata": {"labels": {"$patch": "merge", "a": "b"}}}, 500,
     "unknown patch type: merge in map: map[$patch:merge a:b]"),
    (pod_spec({"containers": [["x"]]}), 500,
     "list element types are not identical: [[map[args:[--port 8080] env:[map[name:MODE "
     "value:prod] map[name:LOG value:info]] image:nginx:1.25 name:app "
     "ports:[map[containerPort:8080 name:http]] volumeMounts:[map[mountPath:/data "
     "name:data]]] map[command:[sh -c sleep infinity] image:busybox:1.36 name:sidecar]] "
     "[[x]]]"),
    ({"metadata": {"$deleteFromPrimitiveListfinalizers": ["x"]}}, 400,
     "invalid patch format of primitive list"),
    ({"metadata": {"$setElementOrderfinalizers": ["x"]}}, 400,
     "invalid patch format of setElementOrder list"),
])
def test_smp_errors(patch: dict[str, Any], code: int, message: str) -> None:
    with pytest.raises(PatchError) as info:
        apply_strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert (info.value.code, info.value.message) == (code, message)


def test_smp_lists_of_lists_are_unprocessable() -> None:
    doc = {"spec": {"template": {"spec": {"containers": []}}}}
    with pytest.raises(PatchError) as info:
        apply_strategic_merge_patch(doc, pod_spec({"containers": [["x"]]}), DEPLOYMENT)
    assert (info.value.code, info.value.message) == (422, "lists of lists are not supported")


def test_smp_rejects_non_object_patches() -> None:
    for patch in ([], "x", 1):
        with pytest.raises(PatchError) as info:
            apply_strategic_merge_patch(deployment(), patch, DEPLOYMENT)
        assert info.value.code == 400


# ============================================================================================
# Dispatcher and errors
# ============================================================================================

def test_apply_patch_dispatches_on_content_type() -> None:
    doc = deployment()
    json_patch = b'[{"op": "replace", "path": "/spec/replicas", "value": 3}]'
    assert apply_patch(doc, json_patch, JSON_PATCH, DEPLOYMENT)["spec"]["replicas"] == 3
    merge = '{"spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}}'
    assert containers(apply_patch(doc, merge, MERGE_PATCH)) == [{"name": "x"}]
    result = apply_patch(doc, merge.encode(), STRATEGIC_MERGE_PATCH + "; charset=utf-8",
                         DEPLOYMENT)
    assert names(containers(result)) == ["x", "app", "sidecar"]
    decoded = {"metadata": {"labels": {"tier": None}}}
    assert apply_patch(doc, decoded, "Application/Merge-Patch+JSON")["metadata"]["labels"] \
        == {"app": "web"}
    assert doc == deployment()


def test_apply_patch_unsupported_type() -> None:
    for content_type in ("application/json", "application/apply-patch+yaml", ""):
        with pytest.raises(UnsupportedPatchType) as info:
            apply_patch({}, b"{}", content_type)
        assert info.value.code == 415
        assert info.value.message == (
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, "
            "application/strategic-merge-patch+json")


@pytest.mark.parametrize(("body", "content_type"), [
    (b"{not json", JSON_PATCH), (b"", MERGE_PATCH), (b"[1,", STRATEGIC_MERGE_PATCH),
    (b"null", MERGE_PATCH), (b"[]", MERGE_PATCH), (b'{"op": "add"}', JSON_PATCH),
])
def test_apply_patch_bad_bodies_are_bad_requests(body: bytes, content_type: str) -> None:
    with pytest.raises(PatchError) as info:
        apply_patch({"a": 1}, body, content_type, None)
    assert (info.value.code, info.value.reason) == (400, "BadRequest")


def test_patch_errors_are_api_errors() -> None:
    assert issubclass(PatchTestFailed, PatchError)
    assert issubclass(PatchError, ApiError) and issubclass(UnsupportedPatchType, ApiError)
    with pytest.raises(PatchTestFailed) as info:
        apply_patch({"metadata": {"resourceVersion": "2"}},
                    orjson.dumps([{"op": "test", "path": "/metadata/resourceVersion",
                                   "value": "1"}]), JSON_PATCH)
    status = info.value.status()
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["message"] == "testing value /metadata/resourceVersion failed: test failed"
