"""Field ownership and server-side apply (pyk8s.api.managedfields) against upstream's behaviour:
structured-merge-diff v4 and the 1.32 apiserver field manager."""
from __future__ import annotations

import copy
import json

import pytest

from pyk8s.api import defaults, schemas
from pyk8s.api import managedfields as mf
from pyk8s.api.errors import ApiError, BadRequest
from pyk8s.api.managedfields import ApplyConflict, FieldSet

DEPLOY = schemas.schema_for("apps", "v1", "Deployment")
CM = schemas.schema_for("", "v1", "ConfigMap")
SVC = schemas.schema_for("", "v1", "Service")
POD = schemas.schema_for("", "v1", "Pod")

T0, T1, T2, T3 = ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z",
                  "2024-01-04T00:00:00Z")


def dumps(v) -> str:
    """The compact JSON the apiserver writes (Go keeps FieldsV1 bytes as they are)."""
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def kubectl_create_deployment() -> dict:
    """What `kubectl create deployment nginx --image=nginx` POSTs, after upstream defaulting."""
    obj = {"kind": "Deployment", "apiVersion": "apps/v1",
           "metadata": {"name": "nginx", "namespace": "default", "creationTimestamp": None,
                        "labels": {"app": "nginx"}},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nginx"}},
                    "template": {"metadata": {"creationTimestamp": None,
                                              "labels": {"app": "nginx"}},
                                 "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                                          "resources": {}}]}},
                    "strategy": {}},
           "status": {}}
    defaults.apply_defaults("apps", "v1", "Deployment", obj)
    obj["metadata"].update(uid="9f2e6b1a", creationTimestamp=T0, resourceVersion="1",
                           generation=1)
    return obj


# The managedFields a 1.32 cluster records for `kubectl create deployment nginx --image=nginx`
KUBECTL_CREATE_FIELDS = (
    '{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:progressDeadlineSeconds":{},'
    '"f:replicas":{},"f:revisionHistoryLimit":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":'
    '{".":{},"f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}},"f:template":{"f:metadata":'
    '{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"nginx\\"}":'
    '{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{},'
    '"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},'
    '"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},'
    '"f:terminationGracePeriodSeconds":{}}}}}')

# `kubectl apply --server-side` of the Deployment example of the Kubernetes docs
NGINX_APPLY = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "nginx-deployment", "namespace": "default", "labels": {"app": "nginx"}},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "nginx"}},
             "template": {"metadata": {"labels": {"app": "nginx"}},
                          "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2",
                                                   "ports": [{"containerPort": 80}]}]}}},
}
NGINX_APPLY_FIELDS = (
    '{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},'
    '"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":'
    '{"k:{\\"name\\":\\"nginx\\"}":{".":{},"f:image":{},"f:name":{},"f:ports":'
    '{"k:{\\"containerPort\\":80,\\"protocol\\":\\"TCP\\"}":{".":{},"f:containerPort":{}}}}}}}}}')


def update(live, new, manager, now=T1, *, schema=DEPLOY, api_version="apps/v1", **kw):
    """Run an update and return `new` carrying the managedFields it would be stored with."""
    out = copy.deepcopy(new)
    out["metadata"]["managedFields"] = mf.update_managed_fields(
        live, new, manager, now=now, schema=schema, api_version=api_version, **kw)
    if live is not None:
        out["metadata"]["resourceVersion"] = str(int(live["metadata"].get("resourceVersion",
                                                                           "1")) + 1)
    return out


def ssa(live, cfg, manager="kubectl", now=T1, *, force=False, schema=DEPLOY,
        api_version="apps/v1", **kw):
    return mf.apply(live, cfg, manager, force=force, schema=schema, now=now,
                    api_version=api_version, **kw)


def stored(obj, group="apps", kind="Deployment"):
    """What the registry would store after an apply creates the object."""
    obj = copy.deepcopy(obj)
    defaults.apply_defaults(group, "v1", kind, obj)
    obj["metadata"].setdefault("uid", "uid-1")
    obj["metadata"].setdefault("creationTimestamp", T0)
    obj["metadata"].setdefault("resourceVersion", "1")
    return obj


def entries(obj):
    return {(e["manager"], e["operation"], e.get("subresource", "")): e
            for e in obj["metadata"].get("managedFields", [])}


def owned(obj, manager, operation=None, subresource=""):
    for e in obj["metadata"].get("managedFields", []):
        if e["manager"] == manager and (operation is None or e["operation"] == operation) \
                and e.get("subresource", "") == subresource:
            return FieldSet.from_fields_v1(e["fieldsV1"]).paths()
    return None


# =============================================================================================
# FieldsV1 encoding
# =============================================================================================

class TestFieldsV1:
    @pytest.mark.parametrize("text", [
        KUBECTL_CREATE_FIELDS,
        NGINX_APPLY_FIELDS,
        # a Service as the kube-apiserver records its own `kubernetes` Service
        '{"f:metadata":{"f:labels":{".":{},"f:component":{},"f:provider":{}}},"f:spec":'
        '{"f:clusterIP":{},"f:ipFamilyPolicy":{},"f:ports":{".":{},"k:{\\"port\\":443,'
        '\\"protocol\\":\\"TCP\\"}":{".":{},"f:name":{},"f:port":{},"f:protocol":{},'
        '"f:targetPort":{}}},"f:sessionAffinity":{},"f:type":{}}}',
        # the deployment controller's status entry
        '{"f:status":{"f:availableReplicas":{},"f:conditions":{".":{},"k:{\\"type\\":'
        '\\"Available\\"}":{".":{},"f:lastTransitionTime":{},"f:lastUpdateTime":{},'
        '"f:message":{},"f:reason":{},"f:status":{},"f:type":{}}},"f:observedGeneration":{}}}',
        # structured-merge-diff's golden serialization (fields < keys < values < indices)
        '{"f:aaa":{},"f:aab":{},"f:aac":{},"f:aad":{},"f:aae":{},"f:aaf":{},"k:{\\"name\\":'
        '\\"first\\"}":{},"k:{\\"name\\":\\"second\\"}":{},"k:{\\"port\\":443,\\"protocol\\":'
        '\\"tcp\\"}":{},"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":{},"v:1":{},"v:2":{},'
        '"v:3":{},"v:\\"aa\\"":{},"v:\\"ab\\"":{},"v:true":{},"i:1":{},"i:2":{},"i:3":{},'
        '"i:4":{}}',
        '{"f:aaa":{"k:{\\"name\\":\\"second\\"}":{"v:3":{"f:aab":{}}},"v:3":{},"v:true":{}},'
        '"f:aab":{"f:aaa":{},"f:aaf":{"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":'
        '{"k:{\\"port\\":443,\\"protocol\\":\\"tcp\\"}":{}}},"k:{\\"name\\":\\"first\\"}":{}},'
        '"i:1":{"i:3":{"f:aaf":{}}},"i:2":{"f:aae":{},"k:{\\"port\\":443,\\"protocol\\":'
        '\\"tcp\\"}":{"v:1":{}}}}',
    ])
    def test_round_trip_is_byte_exact(self, text):
        fs = FieldSet.from_fields_v1(json.loads(text))
        assert dumps(fs.to_fields_v1()) == text

    def test_members_and_children(self):
        fs = FieldSet.from_fields_v1(json.loads(KUBECTL_CREATE_FIELDS))
        assert ("f:metadata", "f:labels") in fs  # ".": the map itself is owned
        assert ("f:metadata", "f:labels", "f:app") in fs
        assert ("f:spec",) not in fs  # only a parent
        assert ("f:spec", "f:selector") in fs  # atomic: one leaf
        item = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"nginx"}')
        assert item in fs and item + ("f:image",) in fs
        assert len(fs) == 24

    def test_canonical_output_from_sloppy_input(self):
        sloppy = {"f:spec": {"f:ports": {'k:{"protocol": "TCP", "port": 80}': {"f:port": {},
                                                                             ".": {}}}},
                  "f:metadata": {"f:labels": {"f:b": {}, ".": {}, "f:a": {}}}}
        assert dumps(FieldSet.from_fields_v1(sloppy).to_fields_v1()) == (
            '{"f:metadata":{"f:labels":{".":{},"f:a":{},"f:b":{}}},"f:spec":{"f:ports":'
            '{"k:{\\"port\\":80,\\"protocol\\":\\"TCP\\"}":{".":{},"f:port":{}}}}}')

    def test_values_and_keys_sort_by_value_not_text(self):
        fs = FieldSet([("f:ports", 'k:{"port":443}'), ("f:ports", 'k:{"port":80}'),
                       ("f:s", 'v:"b"'), ("f:s", "v:10"), ("f:s", "v:9"), ("f:s", "v:false"),
                       ("f:s", "v:null")])
        out = fs.to_fields_v1()
        assert list(out["f:ports"]) == ['k:{"port":80}', 'k:{"port":443}']
        assert list(out["f:s"]) == ["v:9", "v:10", 'v:"b"', "v:false", "v:null"]

    def test_unknown_element_types_are_dropped(self):
        assert FieldSet.from_fields_v1({"f:aaa": {}, "r:aab": {}}).to_fields_v1() == {"f:aaa": {}}

    @pytest.mark.parametrize("bad", [{"x": {}}, {"fx": {}}, {"k:{nope": {}}, {"i:x": {}},
                                     {"f:a": "notanobject"}, []])
    def test_malformed(self, bad):
        with pytest.raises(ValueError):
            FieldSet.from_fields_v1(bad)

    def test_empty(self):
        assert FieldSet.from_fields_v1({}) == FieldSet()
        assert FieldSet().to_fields_v1() == {}

    def test_html_characters_escaped_like_go(self):
        fs = FieldSet.from_fields_v1({"f:data": {'k:{"name":"a<b>&c"}': {}}})
        assert list(fs.to_fields_v1()["f:data"]) == ['k:{"name":"a\\u003cb\\u003e\\u0026c"}']
        assert fs == FieldSet.from_fields_v1(fs.to_fields_v1())
        pod = {"spec": {"containers": [{"name": "a<b>&c"}]}}
        assert ("f:spec", "f:containers", 'k:{"name":"a\\u003cb\\u003e\\u0026c"}') \
            in mf.fieldset_of(pod, POD)

    def test_set_algebra(self):
        a = FieldSet([("f:a",), ("f:a", "f:b"), ("f:c",)])
        b = FieldSet([("f:a",)])
        assert isinstance(a | b, FieldSet) and isinstance(a - b, FieldSet)
        assert a - b == {("f:a", "f:b"), ("f:c",)}
        assert a & b == {("f:a",)}
        assert a.union(b) == a and a.intersection(b) == b
        assert a.recursive_difference(b) == {("f:c",)}


class TestPaths:
    def test_path_strings(self):
        assert mf.path_string(("f:spec", "f:replicas")) == ".spec.replicas"
        assert mf.path_string(("f:spec", "f:template", "f:spec", "f:containers",
                               'k:{"name":"nginx"}', "f:image")) \
            == '.spec.template.spec.containers[name="nginx"].image'
        assert mf.path_string(("f:metadata", "f:labels", "f:app")) == ".metadata.labels.app"
        assert mf.path_string(("f:ports", 'k:{"containerPort":80,"protocol":"TCP"}')) \
            == '.ports[containerPort=80,protocol="TCP"]'
        assert mf.path_string(("f:metadata", "f:finalizers", 'v:"kubernetes"')) \
            == '.metadata.finalizers[="kubernetes"]'
        assert mf.path_string(("f:x", "i:3")) == ".x[3]"

    def test_iteration_order_is_upstreams(self):
        fs = FieldSet([("f:spec", "f:template", "f:spec", "f:x"), ("f:spec", "f:replicas"),
                       ("f:metadata", "f:labels", "f:app"), ("f:spec", "f:template")])
        assert fs.paths() == [".metadata.labels.app", ".spec.replicas", ".spec.template",
                              ".spec.template.spec.x"]


class TestFieldsetOf:
    def test_deployment(self):
        fs = fieldset = mf.fieldset_of(NGINX_APPLY, DEPLOY)
        assert dumps(fieldset.to_fields_v1()) == NGINX_APPLY_FIELDS
        assert ("f:metadata", "f:name") not in fs and ("f:apiVersion",) not in fs
        full = mf.fieldset_of(NGINX_APPLY, DEPLOY, strip_meta=False)
        assert {("f:apiVersion",), ("f:kind",), ("f:metadata", "f:name")} <= full

    def test_atomic_lists_maps_null_and_empty(self):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"nodeSelector": {"disk": "ssd"}, "securityContext": {},
                        "containers": [{"name": "c", "args": ["a", "b"], "resources": {},
                                        "livenessProbe": None}]}}
        paths = mf.fieldset_of(pod, POD).paths()
        c = '.spec.containers[name="c"]'
        assert paths == [".spec.nodeSelector", ".spec.securityContext", c, c + ".args",
                         c + ".livenessProbe", c + ".name", c + ".resources"]

    def test_without_schema_maps_are_granular_lists_atomic(self):
        cr = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
              "spec": {"size": 3, "tags": ["a", "b"], "nested": {"x": 1}}}
        assert mf.fieldset_of(cr, None).paths() == [
            ".spec", ".spec.nested", ".spec.size", ".spec.tags", ".spec.nested.x"]


# =============================================================================================
# Updates (create / update / patch)
# =============================================================================================

class TestUpdate:
    def test_kubectl_create_deployment(self):
        obj = kubectl_create_deployment()
        got = mf.update_managed_fields(None, obj, "kubectl-create", now=T0, schema=DEPLOY,
                                       api_version="apps/v1")
        assert len(got) == 1
        assert {k: v for k, v in got[0].items() if k != "fieldsV1"} == {
            "manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1",
            "time": T0, "fieldsType": "FieldsV1"}
        assert list(got[0]) == ["manager", "operation", "apiVersion", "time", "fieldsType",
                                "fieldsV1"]
        assert dumps(got[0]["fieldsV1"]) == KUBECTL_CREATE_FIELDS

    def test_create_records_new_maps_and_lists_as_wholes(self):
        # `.metadata.annotations` and `.spec.ports` are omitempty in Go: absent before the
        # create, so they are owned themselves ("."); `.spec` is not.
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "s", "namespace": "default",
                            "annotations": {"a": "b"}},
               "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                        "type": "ClusterIP"}}
        got = mf.update_managed_fields(None, svc, "m", now=T0, schema=SVC, api_version="v1")
        assert dumps(got[0]["fieldsV1"]) == (
            '{"f:metadata":{"f:annotations":{".":{},"f:a":{}}},"f:spec":{"f:ports":{".":{},'
            '"k:{\\"port\\":80,\\"protocol\\":\\"TCP\\"}":{".":{},"f:port":{},"f:protocol":{},'
            '"f:targetPort":{}}},"f:type":{}}}')

    def test_ownership_moves_to_the_writer_of_a_changed_field(self):
        live = update(None, kubectl_create_deployment(), "kubectl-create", T0)
        new = copy.deepcopy(live)
        new["spec"]["replicas"] = 5
        out = update(live, new, "kubectl-edit", T1)
        assert owned(out, "kubectl-edit") == [".spec.replicas"]
        assert ".spec.replicas" not in owned(out, "kubectl-create")
        e = entries(out)
        assert e["kubectl-create", "Update", ""]["time"] == T0  # losing fields keeps the time
        assert e["kubectl-edit", "Update", ""]["time"] == T1
        assert [x["manager"] for x in out["metadata"]["managedFields"]] == ["kubectl-create",
                                                                          "kubectl-edit"]

    def test_setting_a_field_to_its_current_value_takes_nothing(self):
        live = update(None, kubectl_create_deployment(), "kubectl-create", T0)
        new = copy.deepcopy(live)
        out = update(live, new, "kubectl-edit", T1)
        assert out["metadata"]["managedFields"] == live["metadata"]["managedFields"]

    def test_removed_fields_are_released(self):
        live = update(None, kubectl_create_deployment(), "kubectl-create", T0)
        new = copy.deepcopy(live)
        del new["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"]
        del new["metadata"]["labels"]
        out = update(live, new, "kubectl-edit", T1)
        assert "kubectl-edit" not in {e["manager"] for e in out["metadata"]["managedFields"]}
        paths = owned(out, "kubectl-create")
        assert ".metadata.labels" not in paths and ".metadata.labels.app" not in paths
        assert not any(p.endswith(".imagePullPolicy") for p in paths)
        assert entries(out)["kubectl-create", "Update", ""]["time"] == T0

    def test_go_zero_values_are_not_changes(self):
        # A container's `resources` is a struct: Go always renders it, so dropping `{}` from
        # the JSON changes nothing; `paused: false` is omitempty: the same as absent.
        live = update(None, kubectl_create_deployment(), "kubectl-create", T0)
        new = copy.deepcopy(live)
        del new["spec"]["template"]["spec"]["containers"][0]["resources"]
        new["spec"]["paused"] = False
        new["spec"]["template"]["spec"]["containers"][0]["ports"] = []
        out = update(live, new, "kubectl-edit", T1)
        assert out["metadata"]["managedFields"] == live["metadata"]["managedFields"]

    def test_added_list_item_and_map_entry(self):
        live = update(None, kubectl_create_deployment(), "kubectl-create", T0)
        new = copy.deepcopy(live)
        new["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox"})
        new["metadata"]["labels"]["tier"] = "web"
        out = update(live, new, "m", T1)
        # `resources` too: the new container's Go struct renders it as `{}`
        assert owned(out, "m") == [".metadata.labels.tier",
                                   '.spec.template.spec.containers[name="side"]',
                                   '.spec.template.spec.containers[name="side"].image',
                                   '.spec.template.spec.containers[name="side"].name',
                                   '.spec.template.spec.containers[name="side"].resources']

    def test_writer_keeps_previous_fields_and_time_only_changes_with_new_fields(self):
        live = update(None, kubectl_create_deployment(), "kubectl-create", T0)
        a = copy.deepcopy(live)
        a["spec"]["replicas"] = 2
        a = update(live, a, "scaler", T1)
        b = copy.deepcopy(a)
        b["spec"]["paused"] = True
        b = update(a, b, "scaler", T2)
        assert owned(b, "scaler") == [".spec.paused", ".spec.replicas"]
        assert entries(b)["scaler", "Update", ""]["time"] == T2
        c = copy.deepcopy(b)
        del c["spec"]["paused"]
        c = update(b, c, "scaler", T3)
        assert owned(c, "scaler") == [".spec.replicas"]
        assert entries(c)["scaler", "Update", ""]["time"] == T2

    def test_entries_are_per_api_version_and_subresource(self):
        live = update(None, kubectl_create_deployment(), "m", T0)
        new = copy.deepcopy(live)
        new["status"] = {"replicas": 1}
        out = update(live, new, "m", T1, subresource="status", reset_paths=[("spec",)])
        assert set(entries(out)) == {("m", "Update", ""), ("m", "Update", "status")}
        assert owned(out, "m", subresource="status") == [".status.replicas"]
        assert entries(out)["m", "Update", "status"]["subresource"] == "status"

    def test_reset_fields_are_not_recorded(self):
        live = update(None, kubectl_create_deployment(), "kubectl-create", T0,
                      reset_paths=[("status",)])
        new = copy.deepcopy(live)
        new["status"] = {"replicas": 3}
        out = update(live, new, "client", T1, reset_paths=[("status",)])
        assert "client" not in {e["manager"] for e in out["metadata"]["managedFields"]}

    def test_request_managed_fields(self):
        live = update(None, kubectl_create_deployment(), "kubectl-create", T0)
        base = copy.deepcopy(live)
        base["spec"]["replicas"] = 4
        base = update(live, base, "scaler", T1)
        # omitted: live's are kept
        new = copy.deepcopy(base)
        del new["metadata"]["managedFields"]
        new["metadata"]["labels"]["x"] = "y"
        out = update(base, new, "edit", T2)
        assert {e["manager"] for e in out["metadata"]["managedFields"]} == {
            "kubectl-create", "scaler", "edit"}
        # sent changed: taken as given (here the client dropped the scaler's entry)
        new = copy.deepcopy(base)
        new["metadata"]["managedFields"] = [e for e in base["metadata"]["managedFields"]
                                            if e["manager"] != "scaler"]
        out = update(base, new, "edit", T2)
        assert {e["manager"] for e in out["metadata"]["managedFields"]} == {"kubectl-create"}
        # [] and [{}] reset them; an existing object without managedFields is not tracked
        for reset in ([], [{}]):
            new = copy.deepcopy(base)
            new["metadata"]["managedFields"] = reset
            new["spec"]["replicas"] = 9
            assert mf.update_managed_fields(base, new, "edit", now=T2, schema=DEPLOY,
                                            api_version="apps/v1") == []
        # undecodable ones are ignored in favour of live's
        new = copy.deepcopy(base)
        new["metadata"]["managedFields"] = [{"manager": "x", "operation": "Bogus"}]
        out = update(base, new, "edit", T2)
        assert {e["manager"] for e in out["metadata"]["managedFields"]} == {
            "kubectl-create", "scaler"}
        # a subresource write never takes them from the request
        new = copy.deepcopy(base)
        new["metadata"]["managedFields"] = []
        new["status"] = {"replicas": 1}
        out = update(base, new, "kcm", T2, subresource="status", reset_paths=[("spec",)])
        assert {e["manager"] for e in out["metadata"]["managedFields"]} == {
            "kubectl-create", "scaler", "kcm"}

    def test_create_with_client_managed_fields(self):
        # They are the starting point, but a create changes every field of the object: the
        # creator takes them all, other entries keep only fields the object does not have.
        obj = kubectl_create_deployment()
        obj["metadata"]["managedFields"] = [{
            "manager": "importer", "operation": "Apply", "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {},
                                                              "f:paused": {}}}}]
        got = mf.update_managed_fields(None, obj, "kubectl-create", now=T0, schema=DEPLOY,
                                       api_version="apps/v1")
        assert [(e["manager"], e["operation"]) for e in got] == [("importer", "Apply"),
                                                                 ("kubectl-create", "Update")]
        assert got[0]["fieldsV1"] == {"f:spec": {"f:paused": {}}}
        assert dumps(got[1]["fieldsV1"]) == KUBECTL_CREATE_FIELDS

    def test_untracked_object_stays_untracked(self):
        live = kubectl_create_deployment()
        new = copy.deepcopy(live)
        new["spec"]["replicas"] = 2
        assert mf.update_managed_fields(live, new, "m", now=T1, schema=DEPLOY,
                                        api_version="apps/v1") == []

    def test_metadata_only_changes_record_nothing(self):
        live = update(None, kubectl_create_deployment(), "c", T0)
        new = copy.deepcopy(live)
        new["metadata"]["resourceVersion"] = "77"
        new["metadata"]["generation"] = 5
        assert mf.update_managed_fields(live, new, "m", now=T1, schema=DEPLOY,
                                        api_version="apps/v1") \
            == live["metadata"]["managedFields"]

    def test_unknown_manager_name(self):
        got = mf.update_managed_fields(None, kubectl_create_deployment(), "", now=T0,
                                       schema=DEPLOY, api_version="apps/v1")
        assert got[0]["manager"] == "unknown"

    def test_at_most_ten_update_managers(self):
        obj = update(None, kubectl_create_deployment(), "creator", "2024-01-01T00:00:00Z")
        for i in range(11):
            new = copy.deepcopy(obj)
            new["metadata"]["labels"][f"l{i}"] = "v"
            obj = update(obj, new, f"m{i:02d}", f"2024-02-{i + 1:02d}T00:00:00Z")
        managers = [e["manager"] for e in obj["metadata"]["managedFields"]]
        assert len(managers) == 10 and "ancient-changes" in managers
        assert "creator" not in managers and "m00" not in managers and "m01" not in managers
        ancient = owned(obj, "ancient-changes")
        assert ".metadata.labels.l0" in ancient and ".spec.replicas" in ancient
        assert entries(obj)["ancient-changes", "Update", ""]["time"] == "2024-02-02T00:00:00Z"

    def test_failure_drops_managed_fields(self):
        live = update(None, kubectl_create_deployment(), "c", T0)
        new = copy.deepcopy(live)
        new["spec"]["template"]["spec"]["containers"].append("not-a-container")
        assert mf.update_managed_fields(live, new, "m", now=T1, schema=DEPLOY,
                                        api_version="apps/v1") == []

    def test_sets(self):
        ns = schemas.schema_for("", "v1", "Namespace")
        obj = {"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "n", "finalizers": ["a"]}}
        obj["metadata"]["managedFields"] = mf.update_managed_fields(
            None, obj, "c", now=T0, schema=ns, api_version="v1")
        obj["metadata"]["uid"] = "u"
        new = copy.deepcopy(obj)
        new["metadata"]["finalizers"] = ["a", "b"]
        new = update(obj, new, "d", T1, schema=ns, api_version="v1")
        assert owned(new, "c") == [".metadata.finalizers", '.metadata.finalizers[="a"]']
        assert owned(new, "d") == ['.metadata.finalizers[="b"]']

    def test_atomic_list_changes_as_a_whole(self):
        live = update(None, kubectl_create_deployment(), "c", T0)
        live["spec"]["template"]["spec"]["containers"][0]["args"] = ["a"]
        live = update(None, live, "c", T0)
        new = copy.deepcopy(live)
        new["spec"]["template"]["spec"]["containers"][0]["args"] = ["a", "b"]
        out = update(live, new, "d", T1)
        assert owned(out, "d") == ['.spec.template.spec.containers[name="nginx"].args']
        assert '.spec.template.spec.containers[name="nginx"].args' not in owned(out, "c")

    def test_custom_resource_without_schema(self):
        cr = {"apiVersion": "example.com/v1", "kind": "Widget",
              "metadata": {"name": "w", "namespace": "d"}, "spec": {"size": 1}}
        got = mf.update_managed_fields(None, cr, "c", now=T0, schema=None,
                                       api_version="example.com/v1")
        assert dumps(got[0]["fieldsV1"]) == '{"f:spec":{".":{},"f:size":{}}}'
        cr["metadata"].update(uid="u", managedFields=got)
        new = copy.deepcopy(cr)
        new["spec"]["tags"] = ["x"]
        out = update(cr, new, "d", T1, schema=None, api_version="example.com/v1")
        assert owned(out, "d") == [".spec.tags"]

    def test_rejects_apply(self):
        with pytest.raises(ValueError):
            mf.update_managed_fields(None, {}, "m", operation="Apply", now=T0, schema=None,
                                     api_version="v1")

    def test_inputs_not_mutated(self):
        live = update(None, kubectl_create_deployment(), "c", T0)
        new = copy.deepcopy(live)
        new["spec"]["replicas"] = 7
        snapshot = (copy.deepcopy(live), copy.deepcopy(new))
        mf.update_managed_fields(live, new, "m", now=T1, schema=DEPLOY, api_version="apps/v1")
        assert (live, new) == snapshot


# =============================================================================================
# Server-side apply
# =============================================================================================

class TestApply:
    def test_create(self):
        obj = ssa(None, NGINX_APPLY, now=T0)
        (entry,) = obj["metadata"]["managedFields"]
        assert {k: v for k, v in entry.items() if k != "fieldsV1"} == {
            "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T0,
            "fieldsType": "FieldsV1"}
        assert dumps(entry["fieldsV1"]) == NGINX_APPLY_FIELDS
        assert obj["spec"] == NGINX_APPLY["spec"]

    def test_reapply_is_a_no_op(self):
        live = stored(ssa(None, NGINX_APPLY, now=T0))
        again = ssa(live, NGINX_APPLY, now=T1)
        assert again == live
        assert again is not live

    def test_reapply_with_a_change_updates_value_and_time(self):
        live = stored(ssa(None, NGINX_APPLY, now=T0))
        cfg = copy.deepcopy(NGINX_APPLY)
        cfg["spec"]["replicas"] = 5
        out = ssa(live, cfg, now=T1)
        assert out["spec"]["replicas"] == 5
        assert entries(out)["kubectl", "Apply", ""]["time"] == T1
        # defaulted fields nobody applied stay
        assert out["spec"]["revisionHistoryLimit"] == 10

    def test_fields_dropped_from_the_config_are_removed(self):
        live = stored(ssa(None, NGINX_APPLY, now=T0))
        cfg = copy.deepcopy(NGINX_APPLY)
        del cfg["spec"]["template"]["spec"]["containers"][0]["ports"]
        del cfg["spec"]["replicas"]
        out = ssa(live, cfg, now=T1)
        container = out["spec"]["template"]["spec"]["containers"][0]
        assert "ports" not in container and "replicas" not in out["spec"]
        assert container["imagePullPolicy"] == "IfNotPresent"  # never applied: kept
        assert ".spec.replicas" not in owned(out, "kubectl")

    def test_dropped_fields_another_manager_owns_stay(self):
        live = stored(ssa(None, NGINX_APPLY, now=T0))
        other = {"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": "nginx-deployment", "namespace": "default"},
                 "spec": {"replicas": 3}}
        live = ssa(live, other, "other", now=T1)
        assert owned(live, "other") == [".spec.replicas"]  # same value: shared
        assert ".spec.replicas" in owned(live, "kubectl")
        cfg = copy.deepcopy(NGINX_APPLY)
        del cfg["spec"]["replicas"]
        out = ssa(live, cfg, now=T2)
        assert out["spec"]["replicas"] == 3
        assert ".spec.replicas" not in owned(out, "kubectl")
        assert owned(out, "other") == [".spec.replicas"]

    def test_dropped_fields_an_updater_owns_stay(self):
        live = stored(ssa(None, NGINX_APPLY, now=T0))
        new = copy.deepcopy(live)
        new["metadata"]["labels"]["app"] = "web"
        live = update(live, new, "labeler", T1)
        cfg = copy.deepcopy(NGINX_APPLY)
        del cfg["metadata"]["labels"]
        out = ssa(live, cfg, now=T2)
        assert out["metadata"]["labels"] == {"app": "web"}

    def test_conflict_with_another_applier(self):
        live = stored(ssa(None, NGINX_APPLY, now=T0))
        cfg = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "nginx-deployment", "namespace": "default"},
               "spec": {"replicas": 1}}
        with pytest.raises(ApplyConflict) as info:
            ssa(live, cfg, "hpa-ish", now=T1)
        err = info.value
        assert err.code == 409 and err.reason == "Conflict"
        assert err.message() == err.message == \
            'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas'
        assert err.causes() == [{"reason": "FieldManagerConflict",
                                 "message": 'conflict with "kubectl"',
                                 "field": ".spec.replicas"}]
        assert err.status() == {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": err.message, "reason": "Conflict",
            "details": {"causes": err.causes()}, "code": 409}
        assert err.managers() == ["kubectl"]

    def test_conflict_with_an_updater_and_several_fields(self):
        live = stored(ssa(None, NGINX_APPLY, now=T0))
        new = copy.deepcopy(live)
        new["spec"]["replicas"] = 9
        new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:9"
        live = update(live, new, "kubectl-edit", T1)
        cfg = copy.deepcopy(NGINX_APPLY)
        cfg["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
        with pytest.raises(ApplyConflict) as info:
            ssa(live, cfg, now=T2)
        assert info.value.message == (
            'Apply failed with 2 conflicts: conflicts with "kubectl-edit" using apps/v1:\n'
            '- .spec.replicas\n'
            '- .spec.template.spec.containers[name="nginx"].image')
        assert [c["field"] for c in info.value.causes()] == [
            ".spec.replicas", '.spec.template.spec.containers[name="nginx"].image']
        assert info.value.causes()[0]["message"] == 'conflict with "kubectl-edit" using apps/v1'

    def test_conflict_messages_group_by_manager(self):
        err = ApplyConflict([('{"manager":"b","operation":"Apply"}', ".x"),
                             ('{"manager":"a","operation":"Update","apiVersion":"v1",'
                              '"subresource":"status"}', ".status.y"),
                             ('{"manager":"b","operation":"Apply"}', ".z")])
        # grouped by manager identifier (the JSON), sorted
        assert err.message == (
            'Apply failed with 3 conflicts: conflicts with "a" with subresource "status" '
            'using v1:\n- .status.y\nconflicts with "b":\n- .x\n- .z')

    def test_force_moves_ownership(self):
        live = stored(ssa(None, NGINX_APPLY, now=T0))
        new = copy.deepcopy(live)
        new["spec"]["replicas"] = 9
        live = update(live, new, "kubectl-edit", T1)
        out = ssa(live, NGINX_APPLY, now=T2, force=True)
        assert out["spec"]["replicas"] == 3
        assert ".spec.replicas" in owned(out, "kubectl")
        assert "kubectl-edit" not in {e["manager"] for e in out["metadata"]["managedFields"]}

    def test_equal_values_are_shared_not_conflicts(self):
        live = stored(ssa(None, NGINX_APPLY, now=T0))
        out = ssa(live, NGINX_APPLY, "second", now=T1)
        assert owned(out, "second") == owned(out, "kubectl")
        # the object did not change, so the new applier's entry has no time (upstream 127938)
        assert "time" not in entries(out)["second", "Apply", ""]
        cfg = copy.deepcopy(NGINX_APPLY)
        cfg["spec"]["replicas"] = 4
        with pytest.raises(ApplyConflict) as info:
            ssa(out, cfg, "second", now=T2)
        assert info.value.message == \
            'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas'

    def test_containers_merge_by_name(self):
        live = stored(ssa(None, NGINX_APPLY, now=T0))
        side = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "nginx-deployment", "namespace": "default"},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "sidecar", "image": "busybox"}]}}}}
        live = stored(ssa(live, side, "injector", now=T1))
        names = [c["name"] for c in live["spec"]["template"]["spec"]["containers"]]
        assert names == ["nginx", "sidecar"]
        cfg = copy.deepcopy(NGINX_APPLY)
        cfg["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.25"
        out = ssa(live, cfg, now=T2)
        containers = out["spec"]["template"]["spec"]["containers"]
        assert [(c["name"], c["image"]) for c in containers] == [("nginx", "nginx:1.25"),
                                                                 ("sidecar", "busybox")]
        assert '.spec.template.spec.containers[name="sidecar"]' in owned(out, "injector")
        # the config's order wins for the items it lists, others keep their place
        cfg2 = copy.deepcopy(NGINX_APPLY)
        cfg2["spec"]["template"]["spec"]["containers"].insert(
            0, {"name": "init-ish", "image": "alpine"})
        out2 = ssa(live, cfg2, now=T2)
        assert [c["name"] for c in out2["spec"]["template"]["spec"]["containers"]] == [
            "init-ish", "nginx", "sidecar"]

    def test_ports_merge_by_container_port_and_protocol(self):
        cfg = copy.deepcopy(NGINX_APPLY)
        cfg["spec"]["template"]["spec"]["containers"][0]["ports"] = [
            {"containerPort": 53, "protocol": "UDP", "name": "dns"}]
        live = stored(ssa(None, cfg, now=T0))
        other = {"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": "nginx-deployment", "namespace": "default"},
                 "spec": {"template": {"spec": {"containers": [{"name": "nginx", "ports": [
                     {"containerPort": 53, "name": "dns-tcp"}]}]}}}}
        out = ssa(live, other, "other", now=T1)
        ports = out["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert ports == [{"containerPort": 53, "protocol": "UDP", "name": "dns"},
                         {"containerPort": 53, "name": "dns-tcp"}]
        assert owned(out, "other") == [
            '.spec.template.spec.containers[name="nginx"]',
            '.spec.template.spec.containers[name="nginx"].name',
            '.spec.template.spec.containers[name="nginx"].ports[containerPort=53,'
            'protocol="TCP"]',
            '.spec.template.spec.containers[name="nginx"].ports[containerPort=53,'
            'protocol="TCP"].containerPort',
            '.spec.template.spec.containers[name="nginx"].ports[containerPort=53,'
            'protocol="TCP"].name']

    def test_sets_union_and_removal(self):
        cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "c", "namespace": "d", "finalizers": ["a.example/one"]}}
        live = stored(ssa(None, cm, "one", schema=CM, api_version="v1", now=T0), "", "ConfigMap")
        cm2 = copy.deepcopy(cm)
        cm2["metadata"]["finalizers"] = ["b.example/two"]
        live = ssa(live, cm2, "two", schema=CM, api_version="v1", now=T1)
        assert live["metadata"]["finalizers"] == ["a.example/one", "b.example/two"]
        assert owned(live, "two") == ['.metadata.finalizers[="b.example/two"]']
        cm1 = copy.deepcopy(cm)
        del cm1["metadata"]["finalizers"]
        out = ssa(live, cm1, "one", schema=CM, api_version="v1", now=T2)
        assert out["metadata"]["finalizers"] == ["b.example/two"]

    def test_atomic_lists_are_replaced_and_conflict_as_a_whole(self):
        cfg = copy.deepcopy(NGINX_APPLY)
        cfg["spec"]["template"]["spec"]["containers"][0]["args"] = ["-a", "-b"]
        live = stored(ssa(None, cfg, now=T0))
        assert '.spec.template.spec.containers[name="nginx"].args' in owned(live, "kubectl")
        other = {"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": "nginx-deployment", "namespace": "default"},
                 "spec": {"template": {"spec": {"containers": [
                     {"name": "nginx", "args": ["-c"]}]}}}}
        with pytest.raises(ApplyConflict) as info:
            ssa(live, other, "other", now=T1)
        assert [c["field"] for c in info.value.causes()] == [
            '.spec.template.spec.containers[name="nginx"].args']
        out = ssa(live, other, "other", now=T1, force=True)
        assert out["spec"]["template"]["spec"]["containers"][0]["args"] == ["-c"]

    def test_maps_merge_key_by_key(self):
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"},
              "data": {"a": "1"}}
        live = stored(ssa(None, cm, "one", schema=CM, api_version="v1", now=T0), "", "ConfigMap")
        cm2 = copy.deepcopy(cm)
        cm2["data"] = {"b": "2"}
        out = ssa(live, cm2, "two", schema=CM, api_version="v1", now=T1)
        assert out["data"] == {"a": "1", "b": "2"}
        assert dumps(entries(out)["two", "Apply", ""]["fieldsV1"]) == '{"f:data":{"f:b":{}}}'

    def test_client_side_apply_upgrade(self):
        cfg = copy.deepcopy(NGINX_APPLY)
        last = copy.deepcopy(cfg)
        last["metadata"]["annotations"] = {}
        annotation = json.dumps(last, separators=(",", ":"), sort_keys=True) + "\n"
        created = copy.deepcopy(cfg)
        created["metadata"]["annotations"] = {mf.LAST_APPLIED_ANNOTATION: annotation}
        defaults.apply_defaults("apps", "v1", "Deployment", created)
        created["metadata"]["managedFields"] = mf.update_managed_fields(
            None, created, "kubectl-client-side-apply", now=T0, schema=DEPLOY,
            api_version="apps/v1")
        live = stored(created)
        # same values: shared with the client-side apply manager, no conflict
        out = ssa(live, cfg, now=T1)
        assert owned(out, "kubectl") == owned(ssa(None, cfg, now=T1), "kubectl")
        assert ".spec.replicas" in owned(out, "kubectl-client-side-apply")
        # a changed value: `kubectl` may take over what the last-applied annotation records
        cfg2 = copy.deepcopy(cfg)
        cfg2["spec"]["replicas"] = 5
        out2 = ssa(live, cfg2, now=T2)
        assert out2["spec"]["replicas"] == 5
        assert ".spec.replicas" not in owned(out2, "kubectl-client-side-apply")
        assert json.loads(out2["metadata"]["annotations"][mf.LAST_APPLIED_ANNOTATION]) == cfg2
        assert out2["metadata"]["annotations"][mf.LAST_APPLIED_ANNOTATION].endswith("}\n")
        # another manager gets the conflict
        with pytest.raises(ApplyConflict) as info:
            ssa(live, cfg2, "other", now=T2)
        assert info.value.message == ('Apply failed with 1 conflict: conflict with '
                                      '"kubectl-client-side-apply" using apps/v1: .spec.replicas')
        # once the live value differs from the annotation, kubectl gets the conflict too
        drifted = copy.deepcopy(live)
        drifted["spec"]["replicas"] = 7
        drifted = update(live, drifted, "kubectl-client-side-apply", T1)
        with pytest.raises(ApplyConflict):
            ssa(drifted, cfg2, now=T2)

    def test_object_without_managed_fields(self):
        live = stored(copy.deepcopy(NGINX_APPLY))
        live["spec"]["replicas"] = 2
        with pytest.raises(ApplyConflict) as info:
            ssa(live, NGINX_APPLY, now=T1)
        assert info.value.message == ('Apply failed with 1 conflict: conflict with '
                                      '"before-first-apply" using apps/v1: .spec.replicas')
        out = ssa(live, NGINX_APPLY, now=T1, force=True)
        assert {e["manager"] for e in out["metadata"]["managedFields"]} == {
            "before-first-apply", "kubectl"}

    def test_apply_to_status_subresource(self):
        live = stored(ssa(None, NGINX_APPLY, now=T0))
        cfg = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "nginx-deployment", "namespace": "default"},
               "status": {"replicas": 3}}
        out = ssa(live, cfg, "ctrl", now=T1, subresource="status",
                  reset_paths=[("spec",), ("metadata", "labels")])
        assert entries(out)["ctrl", "Apply", "status"]["subresource"] == "status"
        assert owned(out, "ctrl", subresource="status") == [".status.replicas"]

    def test_custom_resource_without_schema(self):
        cr = {"apiVersion": "example.com/v1", "kind": "Widget",
              "metadata": {"name": "w", "namespace": "d"},
              "spec": {"size": 1, "tags": ["a"], "nested": {"x": 1}}}
        obj = ssa(None, cr, "a", schema=None, api_version="example.com/v1", now=T0)
        assert dumps(obj["metadata"]["managedFields"][0]["fieldsV1"]) == (
            '{"f:spec":{".":{},"f:nested":{".":{},"f:x":{}},"f:size":{},"f:tags":{}}}')
        obj["metadata"]["uid"] = "u"
        cr2 = copy.deepcopy(cr)
        cr2["spec"] = {"size": 1}
        out = ssa(obj, cr2, "a", schema=None, api_version="example.com/v1", now=T1)
        assert out["spec"] == {"size": 1}

    def test_bad_requests(self):
        cfg = copy.deepcopy(NGINX_APPLY)
        cfg["kind"] = "StatefulSet"
        with pytest.raises(BadRequest) as info:
            ssa(None, cfg)
        assert info.value.message == "invalid object type: apps/v1, Kind=StatefulSet"
        cfg = copy.deepcopy(NGINX_APPLY)
        cfg["apiVersion"] = "apps/v1beta1"
        with pytest.raises(BadRequest) as info:
            ssa(None, cfg)
        assert info.value.message == "invalid object type: apps/v1beta1, Kind=Deployment"
        cfg = copy.deepcopy(NGINX_APPLY)
        cfg["metadata"]["managedFields"] = []
        with pytest.raises(BadRequest) as info:
            ssa(None, cfg)
        assert info.value.message == "metadata.managedFields must be nil"
        with pytest.raises(BadRequest) as info:
            ssa(None, {"apiVersion": "v2", "kind": "Widget"}, schema=None, api_version="v1")
        assert info.value.message == ("Incorrect version specified in apply patch. Specified "
                                      "patch version: v2, expected: v1")

    def test_configs_that_do_not_fit_the_schema(self):
        cfg = copy.deepcopy(NGINX_APPLY)
        cfg["spec"]["topologyKeys"] = ["x"]
        with pytest.raises(ApiError) as info:
            ssa(None, cfg)
        assert info.value.code == 500
        assert info.value.message == (
            "failed to create typed patch object (default/nginx-deployment; apps/v1, "
            "Kind=Deployment): .spec.topologyKeys: field not declared in schema")
        assert "reason" not in info.value.status()
        cfg = copy.deepcopy(NGINX_APPLY)
        cfg["spec"]["template"]["spec"]["containers"].append({"name": "nginx", "image": "x"})
        with pytest.raises(ApiError) as info:
            ssa(None, cfg)
        assert info.value.message.endswith(
            '.spec.template.spec.containers: duplicate entries for key [name="nginx"]')
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
               "spec": {"ports": [{"protocol": "TCP"}]}}
        with pytest.raises(ApiError) as info:
            ssa(None, svc, schema=SVC, api_version="v1")
        assert info.value.message == (
            "failed to create typed patch object (/s; /v1, Kind=Service): .spec.ports: element "
            '0: associative list with keys has an element that omits key field "port" (and '
            "doesn't have default value)")

    def test_inputs_not_mutated(self):
        live = stored(ssa(None, NGINX_APPLY, now=T0))
        cfg = copy.deepcopy(NGINX_APPLY)
        cfg["spec"]["replicas"] = 6
        snapshot = (copy.deepcopy(live), copy.deepcopy(cfg))
        out = ssa(live, cfg, now=T1)
        out["spec"]["template"]["spec"]["containers"][0]["image"] = "mutated"
        assert (live, cfg) == snapshot


def test_update_after_apply_keeps_the_apply_entry_first():
    live = stored(ssa(None, NGINX_APPLY, now=T1))
    new = copy.deepcopy(live)
    new["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    out = update(live, new, "kube-controller-manager", T0)
    assert [(e["manager"], e["operation"]) for e in out["metadata"]["managedFields"]] == [
        ("kubectl", "Apply"), ("kube-controller-manager", "Update")]


def test_keys_of_items_follow_the_go_shape():
    # `protocol: ""` is omitempty in Go: absent, so the key takes its default "TCP"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "d"},
           "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}
    svc["metadata"]["managedFields"] = mf.update_managed_fields(
        None, svc, "c", now=T0, schema=SVC, api_version="v1")
    svc["metadata"]["uid"] = "u"
    new = copy.deepcopy(svc)
    new["spec"]["ports"][0]["protocol"] = ""
    out = update(svc, new, "d", T1, schema=SVC, api_version="v1")
    assert owned(out, "c") == ['.spec.ports', '.spec.ports[port=80,protocol="TCP"]',
                               '.spec.ports[port=80,protocol="TCP"].port',
                               '.spec.ports[port=80,protocol="TCP"].targetPort']
    assert owned(out, "d") is None


# =============================================================================================
# The fast paths (editing encoded entries) agree with plain set algebra
# =============================================================================================

def test_encoded_edits_match_set_algebra():
    import random
    rnd = random.Random(7)
    elems = ["f:a", "f:b", "f:c", 'k:{"name":"x"}', 'k:{"name":"y"}', "v:1", 'v:"s"', "i:0"]

    def rpath():
        return tuple(rnd.choice(elems) for _ in range(rnd.randint(1, 4)))

    for _ in range(3000):
        base = FieldSet(rpath() for _ in range(rnd.randint(0, 12)))
        enc = base.to_fields_v1()
        snapshot = dumps(enc)
        drop = {rpath() for _ in range(rnd.randint(0, 3))} | set(
            rnd.sample(sorted(base), min(len(base), rnd.randint(0, 3))))
        add = {rpath() for _ in range(rnd.randint(0, 4))}
        assert dumps(mf._v1_remove(enc, drop)) == dumps((base - drop).to_fields_v1())
        assert dumps(mf._v1_add(enc, add)) == dumps((base | add).to_fields_v1())
        assert dumps(enc) == snapshot


def _respelled(entries):
    """The same managedFields spelled differently (an element type decoding drops, "." last):
    equal as sets, different as JSON, so the update decodes them instead of editing live's
    encoding."""
    def move_dot(d):
        out = {k: move_dot(v) for k, v in d.items() if k != "."}
        if "." in d:
            out["."] = {}
        return out
    return [dict(e, fieldsV1=dict(move_dot(e["fieldsV1"]), **{"r:unknown": {}}))
            for e in entries]


def test_updates_match_the_decoding_path():
    import random
    rnd = random.Random(3)
    obj = update(None, kubectl_create_deployment(), "kubectl-create", T0,
                 reset_paths=[("status",)])
    managers = ["a", "b", "c", "kubectl-create"]
    for step in range(300):
        new = copy.deepcopy(obj)
        spec = new["spec"]["template"]["spec"]
        for _ in range(rnd.randint(1, 3)):
            op = rnd.randrange(7)
            if op == 0:
                new["spec"]["replicas"] = rnd.randint(0, 3)
            elif op == 1:
                new["metadata"]["labels"][rnd.choice("xyz")] = rnd.choice("pq")
            elif op == 2 and len(new["metadata"]["labels"]) > 1:
                del new["metadata"]["labels"][rnd.choice(sorted(new["metadata"]["labels"]))]
            elif op == 3:
                name = rnd.choice(["side", "more"])
                if not any(c["name"] == name for c in spec["containers"]):
                    spec["containers"].append({"name": name, "image": "i", "resources": {}})
            elif op == 4 and len(spec["containers"]) > 1:
                spec["containers"].pop()
            elif op == 5:
                c = rnd.choice(spec["containers"])
                c.setdefault("env", []).append({"name": f"E{step}", "value": "v"})
            elif op == 6:
                c = rnd.choice(spec["containers"])
                c.pop("env", None)
        manager = rnd.choice(managers)
        fast = mf.update_managed_fields(obj, new, manager, now=f"2024-02-01T00:{step // 60:02d}:"
                                        f"{step % 60:02d}Z", schema=DEPLOY, api_version="apps/v1")
        slow_new = copy.deepcopy(new)
        slow_new["metadata"]["managedFields"] = _respelled(obj["metadata"]["managedFields"])
        slow = mf.update_managed_fields(obj, slow_new, manager,
                                        now=f"2024-02-01T00:{step // 60:02d}:{step % 60:02d}Z",
                                        schema=DEPLOY, api_version="apps/v1")
        assert dumps(fast) == dumps(slow)
        decoded = [k for k, e in mf._decode(slow_new["metadata"]["managedFields"],
                                              trusted=False).items() if not e.encoded_only()]
        assert len(decoded) == len(slow_new["metadata"]["managedFields"])
        new["metadata"]["managedFields"] = fast
        obj = new
    assert len(obj["metadata"]["managedFields"]) > 1
