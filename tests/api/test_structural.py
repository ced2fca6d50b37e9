"""Structural-schema validation, pruning and defaulting of custom resources."""
from __future__ import annotations

from pyk8s.api import structural

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 2, "maxLength": 5,
                         "pattern": "^[a-z]+$"},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "ratio": {"type": "number"},
                "enabled": {"type": "boolean", "default": True},
                "mode": {"type": "string", "enum": ["A", "B"]},
                "port": {"x-kubernetes-int-or-string": True},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                         "properties": {"n": {"type": "integer"}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "items": {"type": "array", "maxItems": 2,
                          "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "properties": {
                              "name": {"type": "string"},
                              "size": {"type": "integer", "default": 5}}}},
                "set": {"type": "array", "x-kubernetes-list-type": "set",
                        "items": {"type": "string"}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "properties": {"spec": {"type": "object"}}},
                "nullable": {"type": "string", "nullable": True},
            },
        },
    },
}


def _fields(obj: dict) -> dict[str, str]:
    return {c["field"]: c["message"] for c in structural.validate(obj, SCHEMA)}


def test_valid_object() -> None:
    obj = {"spec": {"name": "ab", "replicas": 3, "ratio": 1, "port": "http",
                    "items": [{"name": "a"}], "set": ["x", "y"], "nullable": None,
                    "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}}}
    assert structural.validate(obj, SCHEMA) == []


def test_type_errors_with_upstream_messages() -> None:
    f = _fields({"spec": {"name": "ab", "replicas": "three", "enabled": "yes", "ratio": "x",
                          "port": 1.5}})
    assert f["spec.replicas"] == ('Invalid value: "string": spec.replicas in body must be of '
                                  'type integer: "string"')
    assert f["spec.enabled"].endswith('must be of type boolean: "string"')
    assert "spec.ratio" in f
    assert "integer-or-string" in f["spec.port"]


def test_constraints() -> None:
    f = _fields({"spec": {"name": "ABCDEFG", "replicas": 11, "mode": "C",
                          "items": [{"name": "a"}, {"name": "a"}, {"name": "b"}],
                          "set": ["x", "x"], "template": {"spec": {}}}})
    assert f["spec.name"].startswith("Too long") or "should match" in f["spec.name"]
    assert "less than or equal to 10" in f["spec.replicas"]
    assert f["spec.mode"] == 'Unsupported value: "C": supported values: "A", "B"'
    assert f["spec.items"].startswith("Too many: 3")
    assert f["spec.items[1]"].startswith("Duplicate value")
    assert f["spec.set[1]"] == 'Duplicate value: "x"'
    assert f["spec.template.apiVersion"].startswith("Required value")
    assert _fields({"spec": {}})["spec.name"] == "Required value"
    assert "at least 2 chars" in _fields({"spec": {"name": "a"}})["spec.name"]


def test_prune() -> None:
    obj = {"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "top": 1,
           "spec": {"name": "ab", "bogus": 1, "free": {"n": 1, "anything": [1]},
                    "labels": {"a": "b"}, "items": [{"name": "a", "junk": 1}],
                    "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {},
                                 "spec": {"x": 1}, "other": 2}}}
    unknown = structural.prune(obj, SCHEMA)
    assert unknown == ["top", "spec.bogus", "spec.items[0].junk", "spec.template.spec.x",
                       "spec.template.other"]
    assert obj["spec"]["free"] == {"n": 1, "anything": [1]}
    assert obj["spec"]["labels"] == {"a": "b"}
    assert obj["metadata"] == {"name": "n"}
    # A preserve-unknown-fields root keeps everything.
    free = {"spec": {"a": 1}, "b": 2}
    assert structural.prune(free, {"type": "object",
                                   "x-kubernetes-preserve-unknown-fields": True}) == []
    assert free == {"spec": {"a": 1}, "b": 2}


def test_default() -> None:
    obj = {"spec": {"name": "ab", "items": [{"name": "a"}, {"name": "b", "size": 1}]}}
    structural.default(obj, SCHEMA)
    assert obj["spec"]["replicas"] == 1 and obj["spec"]["enabled"] is True
    assert [i["size"] for i in obj["spec"]["items"]] == [5, 1]
    # Defaults are copies.
    a, b = {"spec": {"name": "x"}}, {"spec": {"name": "y"}}
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "name": {"type": "string"}, "d": {"type": "object", "default": {"k": []}}}}}}
    structural.default(a, schema)
    structural.default(b, schema)
    a["spec"]["d"]["k"].append(1)
    assert b["spec"]["d"] == {"k": []}


def test_check_structural() -> None:
    assert structural.check_structural({"type": "object", "properties": {
        "a": {"type": "string"}}}, "s") == []
    errs = structural.check_structural({"type": "object", "properties": {"a": {}}}, "s")
    assert errs[0]["field"] == "s.properties[a].type"


CEL_SCHEMA = {
    "type": "object",
    "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.minReplicas <= self.replicas", "message": "replicas must be >= min"},
            {"rule": "!has(self.name) || self.name.startsWith('x-')"},
            {"rule": "self.replicas >= oldSelf.replicas", "message": "cannot scale down",
             "fieldPath": ".replicas"},
            {"rule": "self.tags.all(t, size(t) < 4)"},
        ],
        "properties": {"replicas": {"type": "integer"}, "minReplicas": {"type": "integer"},
                       "name": {"type": "string"},
                       "tags": {"type": "array", "items": {"type": "string"}, "default": []}}}},
}


def test_cel_rules() -> None:
    def check(spec: dict, old: dict | None = None) -> list[tuple[str, str]]:
        obj = {"spec": spec}
        structural.default(obj, CEL_SCHEMA)
        o = None
        if old is not None:
            o = {"spec": old}
            structural.default(o, CEL_SCHEMA)
        return [(c["field"], c["message"]) for c in structural.validate(obj, CEL_SCHEMA, o)]
    assert check({"replicas": 2, "minReplicas": 1, "name": "x-a", "tags": ["a"]}) == []
    assert check({"replicas": 1, "minReplicas": 2}) == [
        ("spec", 'Invalid value: "object": replicas must be >= min')]
    assert check({"replicas": 2, "minReplicas": 1, "name": "bad"}) == [
        ("spec", "Invalid value: \"object\": failed rule: !has(self.name) || "
                 "self.name.startsWith('x-')")]
    assert check({"replicas": 2, "minReplicas": 1}, {"replicas": 3, "minReplicas": 1}) == [
        ("spec.replicas", 'Invalid value: "object": cannot scale down')]
    assert check({"replicas": 2, "minReplicas": 1, "tags": ["long-tag"]})[0][1].endswith(
        "failed rule: self.tags.all(t, size(t) < 4)")
    assert "no such key" in check({"replicas": 2})[0][1]
