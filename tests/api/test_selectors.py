"""Label and field selectors: grammar, matching, canonical strings and upstream errors."""
from __future__ import annotations

import pytest

from pyk8s.api.errors import BadRequest
from pyk8s.api.selectors import (
    FieldRequirement, FieldSelector, LabelSelector, Operator, Requirement, SelectorError,
    convert_field_selector, escape_field_value, label_selector_from_dict,
    label_selector_from_set, label_value_errors, object_fields, parse_field_selector,
    parse_label_selector, qualified_name_errors, selector_dict_to_string,
    unescape_field_value, validate_field_selector,
)

KEY_CHARSET = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
               "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
               "or '123-abc', regex used for validation is "
               "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
VALUE_CHARSET = ("a valid label must be an empty string or consist of alphanumeric characters, "
                 "'-', '_' or '.', and must start and end with an alphanumeric character "
                 "(e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                 "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def label_error(selector: str) -> str:
    with pytest.raises(SelectorError) as info:
        parse_label_selector(selector)
    return info.value.message


# --------------------------------------------------------------------------------------
# label selectors: parsing and matching
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("selector, labels, expected", [
    # equality
    ("a=b", {"a": "b"}, True),
    ("a=b", {"a": "c"}, False),
    ("a=b", {}, False),
    ("a==b", {"a": "b"}, True),
    ("a==b", {"a": "c"}, False),
    ("a!=b", {"a": "c"}, True),
    ("a!=b", {"a": "b"}, False),
    ("a!=b", {}, True),  # a missing key satisfies !=
    ("a=", {"a": ""}, True),
    ("a=", {}, False),
    ("a==", {"a": ""}, True),
    # sets
    ("a in (b,c)", {"a": "c"}, True),
    ("a in (b,c)", {"a": "d"}, False),
    ("a in (b,c)", {}, False),
    ("a notin (b,c)", {"a": "d"}, True),
    ("a notin (b,c)", {"a": "b"}, False),
    ("a notin (b,c)", {}, True),  # a missing key satisfies notin
    ("a in ()", {"a": ""}, True),  # "()" is the set holding ""
    ("a in (,b)", {"a": ""}, True),
    ("a in (b,,c)", {"a": ""}, True),
    ("a in (b,c)", {"a": ""}, False),
    # existence
    ("a", {"a": ""}, True),
    ("a", {"b": "a"}, False),
    ("!a", {"b": "a"}, True),
    ("!a", {"a": "x"}, False),
    # integers
    ("a>1", {"a": "2"}, True),
    ("a>1", {"a": "1"}, False),
    ("a>1", {"a": "x"}, False),  # unparsable label values never match
    ("a>1", {}, False),
    ("a<10", {"a": "9"}, True),
    ("a<10", {"a": "-3"}, True),
    ("a<10", {"a": "10"}, False),
    # conjunction and whitespace
    ("a=b,c in (d),!e", {"a": "b", "c": "d"}, True),
    ("a=b,c in (d),!e", {"a": "b", "c": "d", "e": ""}, False),
    ("  a = b ,\tc  notin(d)\n", {"a": "b", "c": "x"}, True),
    # keywords are plain values where values are expected
    ("in in (in,notin)", {"in": "notin"}, True),
    # prefixed keys
    ("app.kubernetes.io/name=web", {"app.kubernetes.io/name": "web"}, True),
    ("app.kubernetes.io/name=web", {"name": "web"}, False),
    # the empty selector
    ("", {}, True),
    ("", {"a": "b"}, True),
    ("  ", {"a": "b"}, True),
])
def test_parse_and_match(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector).matches(labels) is expected


def test_matches_none_labels() -> None:
    assert parse_label_selector("").matches(None)
    assert parse_label_selector("!a").matches(None)
    assert not parse_label_selector("a").matches(None)


@pytest.mark.parametrize("selector, canonical", [
    ("", ""),
    ("a", "a"),
    ("!a", "!a"),
    ("a=b", "a=b"),
    ("a==b", "a==b"),
    ("a!=b", "a!=b"),
    ("a=", "a="),
    ("a>1", "a>1"),
    ("a<1", "a<1"),
    ("a in (c,b,b)", "a in (b,c)"),
    ("a notin(b)", "a notin (b)"),
    ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
    ("z=1, a=2, m", "a=2,m,z=1"),  # sorted by key
    (" app.kubernetes.io/name = web ", "app.kubernetes.io/name=web"),
])
def test_canonical_string_round_trips(selector: str, canonical: str) -> None:
    sel = parse_label_selector(selector)
    assert str(sel) == canonical
    again = parse_label_selector(canonical)
    assert again == sel
    assert str(again) == canonical


def test_parsed_requirements() -> None:
    sel = parse_label_selector("b notin (y,x),a")
    assert sel.requirements == (
        Requirement("a", Operator.EXISTS),
        Requirement("b", Operator.NOT_IN, ("x", "y")),
    )


def test_empty_and_requires_exact_match() -> None:
    assert parse_label_selector("").empty
    assert not parse_label_selector("a").empty
    sel = parse_label_selector("a=1,b in (2),c in (3,4),d!=5")
    assert sel.requires_exact_match("a") == "1"
    assert sel.requires_exact_match("b") == "2"
    assert sel.requires_exact_match("c") is None
    assert sel.requires_exact_match("d") is None
    assert sel.requires_exact_match("zz") is None


# --------------------------------------------------------------------------------------
# label selectors: errors
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("selector, message", [
    ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("=b", "found '=', expected: !, identifier, or 'end of string'"),
    ("a===", "unable to parse requirement: found '=', expected: identifier"),
    ("a=b=c", "found '=', expected: ',' or 'end of string'"),
    ("a in", "unable to parse requirement: found '' expected: '('"),
    ("a in b", "unable to parse requirement: found 'b' expected: '('"),
    ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
    ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
    ("a in (b,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a,", "found '', expected: identifier after ','"),
    ("a,,b", "found ',', expected: identifier after ','"),
    (",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    ("!!a", "unable to parse requirement: found '!', expected: identifier"),
    ("a>=1", "unable to parse requirement: found '=', expected: identifier"),
    ("a>x", "unable to parse requirement: values[0]: Invalid value: \"x\": "
            "for 'Gt', 'Lt' operators, the value must be an integer"),
    ("a<99999999999999999999", "unable to parse requirement: values[0]: Invalid value: "
     "\"99999999999999999999\": for 'Gt', 'Lt' operators, the value must be an integer"),
])
def test_syntax_errors(selector: str, message: str) -> None:
    assert label_error(selector) == message


def test_error_is_a_bad_request() -> None:
    with pytest.raises(BadRequest) as info:
        parse_label_selector("a in (b")
    assert info.value.code == 400
    assert info.value.reason == "BadRequest"
    assert info.value.status()["message"] == "unable to parse requirement: found '', expected: ',' or ')'"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("selector, message", [
    ("-a", f"<nil>: Invalid value: \"-a\": {KEY_CHARSET}"),
    ("a-=b", f"<nil>: Invalid value: \"a-\": {KEY_CHARSET}"),
    ("Ex.com/a", "<nil>: Invalid value: \"Ex.com/a\": prefix part a lowercase RFC 1123 subdomain"
     " must consist of lower case alphanumeric characters, '-' or '.', and must start and end"
     " with an alphanumeric character (e.g. 'example.com', regex used for validation is"
     " '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
    ("/a", "<nil>: Invalid value: \"/a\": prefix part must be non-empty"),
    ("a/", f"<nil>: Invalid value: \"a/\": name part must be non-empty; {KEY_CHARSET}"),
    ("a" * 64, f"<nil>: Invalid value: \"{'a' * 64}\": name part must be no more than 63 characters"),
    ("a/b/c", "<nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric "
     "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
     "'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
     "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and "
     "'/' (e.g. 'example.com/MyName')"),
    ("a=-b", f"values[0][a]: Invalid value: \"-b\": {VALUE_CHARSET}"),
    # values are indexed after sorting: ["b_", "ok"]
    ("a in (ok,b_)", f"values[0][a]: Invalid value: \"b_\": {VALUE_CHARSET}"),
    (f"a={'v' * 64}", f"values[0][a]: Invalid value: \"{'v' * 64}\": must be no more than 63 characters"),
    ("a>-x", "[values[0]: Invalid value: \"-x\": for 'Gt', 'Lt' operators, the value must be an "
     f"integer, values[0][a]: Invalid value: \"-x\": {VALUE_CHARSET}]"),
])
def test_invalid_keys_and_values(selector: str, message: str) -> None:
    assert label_error(selector) == "unable to parse requirement: " + message


def test_valid_key_and_value_edge_cases() -> None:
    assert qualified_name_errors("a") == []
    assert qualified_name_errors("A_b.C-9") == []
    assert qualified_name_errors("example.com/" + "n" * 63) == []
    assert qualified_name_errors(("a" * 63 + ".") * 3 + "a" * 61 + "/x") == []  # 253 prefix
    assert qualified_name_errors(("a" * 63 + ".") * 3 + "a" * 62 + "/x") == [
        "prefix part must be no more than 253 characters"]
    assert label_value_errors("") == []
    assert label_value_errors("v" * 63) == []
    assert label_value_errors("a.b_c-D") == []


# --------------------------------------------------------------------------------------
# label selectors: metav1.LabelSelector object form
# --------------------------------------------------------------------------------------

def test_dict_selector_matching_and_string() -> None:
    sel = label_selector_from_dict({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["b", "a"]},
            {"key": "env", "operator": "NotIn", "values": ["prod"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "team", "operator": "Exists"},
        ],
    })
    # sorted by key, not by rendering
    assert str(sel) == "app=web,!canary,env notin (prod),team,tier in (a,b)"
    assert sel.matches({"app": "web", "tier": "a", "team": "x"})
    assert sel.matches({"app": "web", "tier": "b", "team": "x", "env": "dev"})
    assert not sel.matches({"app": "web", "tier": "c", "team": "x"})
    assert not sel.matches({"app": "web", "tier": "a", "team": "x", "canary": "1"})
    assert not sel.matches({"app": "web", "tier": "a", "team": "x", "env": "prod"})
    assert not sel.matches({"app": "web", "tier": "a"})


@pytest.mark.parametrize("sel, expected", [
    ({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["b", "a"]}]}, "app=web,tier in (a,b)"),
    ({"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2"),
    ({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, "x"),
    ({}, ""),
    ({"matchLabels": {}, "matchExpressions": []}, ""),
    ({"matchLabels": None}, ""),
    (None, ""),
])
def test_selector_dict_to_string(sel: dict | None, expected: str) -> None:
    assert selector_dict_to_string(sel) == expected


def test_dict_selector_empty_selects_everything_none_selects_nothing() -> None:
    everything = label_selector_from_dict({})
    assert everything.empty and everything.matches({}) and everything.matches({"a": "b"})
    nothing = label_selector_from_dict(None)
    assert not nothing.empty
    assert not nothing.matches({}) and not nothing.matches({"a": "b"})
    assert nothing == LabelSelector.nothing() and everything == LabelSelector.everything()


@pytest.mark.parametrize("sel, message", [
    ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
     "\"Gt\" is not a valid label selector operator"),
    ({"matchExpressions": [{"key": "a", "operator": "in", "values": ["1"]}]},
     "\"in\" is not a valid label selector operator"),
    ({"matchExpressions": [{"key": "a", "operator": "In"}]},
     "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]},
     "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x", "y"]}]},
     "values: Invalid value: []string{\"x\", \"y\"}: values set must be empty for exists and "
     "does not exist"),
    ({"matchLabels": {"-a": "b"}}, f"key: Invalid value: \"-a\": {KEY_CHARSET}"),
    ({"matchLabels": {"a": "b c"}}, f"values[0][a]: Invalid value: \"b c\": {VALUE_CHARSET}"),
    ({"matchExpressions": [{"key": "-a", "operator": "DoesNotExist", "values": ["x"]}]},
     f"[key: Invalid value: \"-a\": {KEY_CHARSET}, values: Invalid value: []string{{\"x\"}}: "
     "values set must be empty for exists and does not exist]"),
])
def test_dict_selector_errors(sel: dict, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        label_selector_from_dict(sel)
    assert info.value.message == message


def test_label_selector_from_set() -> None:
    sel = label_selector_from_set({"b": "2", "a": "1"})
    assert str(sel) == "a=1,b=2"
    assert sel.matches({"a": "1", "b": "2", "c": "3"}) and not sel.matches({"a": "1"})
    assert label_selector_from_set({}).empty and label_selector_from_set(None).empty


# --------------------------------------------------------------------------------------
# field selectors
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("selector, fields, expected", [
    ("spec.nodeName=n1", {"spec.nodeName": "n1"}, True),
    ("spec.nodeName==n1", {"spec.nodeName": "n1"}, True),
    ("spec.nodeName=n1", {"spec.nodeName": "n2"}, False),
    ("spec.nodeName!=n1", {"spec.nodeName": "n2"}, True),
    ("spec.nodeName!=n1", {"spec.nodeName": "n1"}, False),
    ("spec.nodeName=", {}, True),  # a missing field reads as ""
    ("spec.nodeName!=", {}, False),
    ("spec.nodeName!=", {"spec.nodeName": "n1"}, True),
    ("status.phase!=Succeeded,status.phase!=Failed", {"status.phase": "Running"}, True),
    ("status.phase!=Succeeded,status.phase!=Failed", {"status.phase": "Failed"}, False),
    ("a=1,b=2", {"a": "1", "b": "2"}, True),
    ("a=1,b=2", {"a": "1", "b": "3"}, False),
    (r"a=x\,y", {"a": "x,y"}, True),
    (r"a=x\=y", {"a": "x=y"}, True),
    (r"a=x\\y", {"a": "x\\y"}, True),
    ("", {"a": "1"}, True),
    (",,", {"a": "1"}, True),
    ("=", {"a": "1"}, True),  # an empty field and value is dropped
])
def test_field_parse_and_match(selector: str, fields: dict[str, str], expected: bool) -> None:
    assert parse_field_selector(selector).matches(fields) is expected


@pytest.mark.parametrize("selector, requirements, canonical", [
    ("a=b", [("a", "=", "b")], "a=b"),
    ("a==b", [("a", "=", "b")], "a=b"),
    ("a!=b", [("a", "!=", "b")], "a!=b"),
    ("b=1,a!=2", [("a", "!=", "2"), ("b", "=", "1")], "a!=2,b=1"),
    (r"a=x\,y\=z\\w", [("a", "=", "x,y=z\\w")], r"a=x\,y\=z\\w"),
    ("a=", [("a", "=", "")], "a="),
    ("=b", [("", "=", "b")], "=b"),  # upstream parses it; conversion rejects the field
    ("a=!b", [("a", "=", "!b")], "a=!b"),
    (" a = b ", [(" a ", "=", " b ")], " a = b "),  # no whitespace trimming upstream
    ("", [], ""),
])
def test_field_requirements_and_string(selector: str, requirements: list[tuple[str, str, str]],
                                       canonical: str) -> None:
    sel = parse_field_selector(selector)
    assert sel.requirements == tuple(FieldRequirement(*r) for r in requirements)
    assert [tuple(r) for r in sel.requirements] == requirements
    assert str(sel) == canonical
    assert parse_field_selector(canonical) == sel


@pytest.mark.parametrize("selector, message", [
    ("abc", "invalid selector: 'abc'; can't understand 'abc'"),
    ("a=1,abc", "invalid selector: 'a=1,abc'; can't understand 'abc'"),
    ("a=b=c", "invalid field selector: unescaped character in value: 61"),
    (r"a=b\c", r"invalid field selector: invalid escape sequence: \c"),
    ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
])
def test_field_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_field_selector(selector)
    assert info.value.message == message
    assert info.value.code == 400


def test_field_selector_helpers() -> None:
    assert escape_field_value("a,b=c\\d") == r"a\,b\=c\\d"
    assert unescape_field_value(escape_field_value("a,b=c\\d")) == "a,b=c\\d"
    sel = parse_field_selector("metadata.name=x,spec.a!=y")
    assert sel.requires_exact_match("metadata.name") == "x"
    assert sel.requires_exact_match("spec.a") is None
    assert not sel.empty and parse_field_selector("").empty
    assert FieldSelector.everything().matches({})


# --------------------------------------------------------------------------------------
# per-kind field labels
# --------------------------------------------------------------------------------------

POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "p1", "namespace": "ns1"},
    "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
             "serviceAccountName": "sa", "hostNetwork": True},
    "status": {"phase": "Running", "podIP": "10.0.0.9",
               "podIPs": [{"ip": "10.0.0.9"}, {"ip": "fd00::9"}]},
}

EVENT = {
    "apiVersion": "v1", "kind": "Event",
    "metadata": {"name": "e1", "namespace": "y"},
    "involvedObject": {"kind": "Pod", "namespace": "y", "name": "x", "uid": "u",
                       "apiVersion": "v1", "resourceVersion": "7",
                       "fieldPath": "spec.containers{c}"},
    "reason": "Scheduled", "type": "Normal", "source": {"component": "scheduler"},
    "reportingComponent": "default-scheduler",
}


def test_pod_fields() -> None:
    assert object_fields("", "Pod", POD) == {
        "metadata.name": "p1", "metadata.namespace": "ns1",
        "spec.nodeName": "n1", "spec.restartPolicy": "Always",
        "spec.schedulerName": "default-scheduler", "spec.serviceAccountName": "sa",
        "spec.hostNetwork": "true", "status.phase": "Running", "status.podIP": "10.0.0.9",
        "status.nominatedNodeName": "",
    }


def test_pod_fields_defaults() -> None:
    fields = object_fields("", "Pod", {"metadata": {"name": "p"}})
    assert fields["spec.hostNetwork"] == "false"
    assert fields["spec.nodeName"] == "" and fields["status.podIP"] == ""
    assert fields["metadata.namespace"] == ""


@pytest.mark.parametrize("selector, expected", [
    ("spec.nodeName=n1", True),
    ("spec.nodeName=n2", False),
    ("spec.nodeName=", False),
    ("spec.host=n1", True),  # legacy alias
    ("status.phase!=Succeeded,status.phase!=Failed", True),
    ("status.phase=Running,metadata.namespace=ns1,metadata.name=p1", True),
    ("spec.hostNetwork=true", True),
    ("spec.hostNetwork=false", False),
    ("status.podIP=10.0.0.9", True),
    ("status.podIPs=10.0.0.9", False),  # accepted, but never set upstream
    ("status.nominatedNodeName=", True),
    ("spec.restartPolicy=Always,spec.schedulerName=default-scheduler,"
     "spec.serviceAccountName=sa", True),
])
def test_pod_selectors(selector: str, expected: bool) -> None:
    sel = convert_field_selector("", "Pod", selector)
    assert sel.matches(object_fields("", "Pod", POD)) is expected


@pytest.mark.parametrize("selector, expected", [
    ("involvedObject.name=x,involvedObject.namespace=y,involvedObject.kind=Pod,"
     "involvedObject.uid=u", True),
    ("involvedObject.name=x,involvedObject.kind=Node", False),
    ("involvedObject.apiVersion=v1,involvedObject.resourceVersion=7", True),
    (r"involvedObject.fieldPath=spec.containers{c}", True),
    ("reason=Scheduled,type=Normal", True),
    ("type=Warning", False),
    ("source=scheduler", True),
    ("reportingComponent=default-scheduler", True),
    ("metadata.name=e1,metadata.namespace=y", True),
])
def test_core_event_selectors(selector: str, expected: bool) -> None:
    sel = convert_field_selector("", "Event", selector)
    assert sel.matches(object_fields("", "Event", EVENT)) is expected


def test_event_source_falls_back_to_reporting_component() -> None:
    event = {**EVENT, "source": {}}
    assert object_fields("", "Event", event)["source"] == "default-scheduler"


def test_events_k8s_io_selectors() -> None:
    new_style = {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "e1", "namespace": "y"},
        "regarding": {"kind": "Pod", "namespace": "y", "name": "x", "uid": "u"},
        "reason": "Scheduled", "type": "Normal", "reportingController": "ctl",
    }
    fields = object_fields("events.k8s.io", "Event", new_style)
    assert fields["involvedObject.name"] == "x" and fields["reportingComponent"] == "ctl"
    assert fields["source"] == "ctl"
    sel = convert_field_selector("events.k8s.io", "Event",
                                 "regarding.name=x,regarding.kind=Pod,reportingController=ctl")
    assert str(sel) == "involvedObject.kind=Pod,involvedObject.name=x,reportingComponent=ctl"
    assert sel.matches(fields)
    # objects stored in the core shape are read the same way
    assert convert_field_selector("events.k8s.io", "Event", "regarding.name=x").matches(
        object_fields("events.k8s.io", "Event", EVENT))
    with pytest.raises(SelectorError, match="^field label not supported: involvedObject.name$"):
        validate_field_selector("events.k8s.io", "Event", "involvedObject.name=x")


@pytest.mark.parametrize("group, kind, obj, expected", [
    ("", "Secret", {"metadata": {"name": "s", "namespace": "n"}, "type": "Opaque"},
     {"metadata.name": "s", "metadata.namespace": "n", "type": "Opaque"}),
    ("", "Namespace", {"metadata": {"name": "n"}, "status": {"phase": "Terminating"}},
     {"metadata.name": "n", "status.phase": "Terminating", "name": "n"}),
    ("", "Node", {"metadata": {"name": "n"}, "spec": {"unschedulable": True}},
     {"metadata.name": "n", "spec.unschedulable": "true"}),
    ("", "Node", {"metadata": {"name": "n"}},
     {"metadata.name": "n", "spec.unschedulable": "false"}),
    ("", "ReplicationController", {"metadata": {"name": "r", "namespace": "n"},
                                   "status": {"replicas": 3}},
     {"metadata.name": "r", "metadata.namespace": "n", "status.replicas": "3"}),
    ("apps", "ReplicaSet", {"metadata": {"name": "r", "namespace": "n"}},
     {"metadata.name": "r", "metadata.namespace": "n", "status.replicas": "0"}),
    ("batch", "Job", {"metadata": {"name": "j", "namespace": "n"}, "status": {"succeeded": 2}},
     {"metadata.name": "j", "metadata.namespace": "n", "status.successful": "2"}),
    ("", "Service", {"metadata": {"name": "s", "namespace": "n"},
                     "spec": {"clusterIP": "10.96.0.1", "type": "ClusterIP"}},
     {"metadata.name": "s", "metadata.namespace": "n", "spec.clusterIP": "10.96.0.1",
      "spec.type": "ClusterIP"}),
    ("certificates.k8s.io", "CertificateSigningRequest",
     {"metadata": {"name": "c"}, "spec": {"signerName": "example.com/s"}},
     {"metadata.name": "c", "spec.signerName": "example.com/s"}),
    ("", "ConfigMap", {"metadata": {"name": "c", "namespace": "n"}, "data": {"a": "b"}},
     {"metadata.name": "c", "metadata.namespace": "n"}),
    ("rbac.authorization.k8s.io", "ClusterRole", {"metadata": {"name": "c"}},
     {"metadata.name": "c"}),
])
def test_object_fields_per_kind(group: str, kind: str, obj: dict,
                                expected: dict[str, str]) -> None:
    assert object_fields(group, kind, obj) == expected


@pytest.mark.parametrize("group, kind, selector", [
    ("", "Pod", "spec.nodeName=a,spec.restartPolicy=Always,spec.schedulerName=s,"
                "spec.serviceAccountName=x,spec.hostNetwork=true,status.phase=Running,"
                "status.podIP=1.2.3.4,status.podIPs=1.2.3.4,status.nominatedNodeName=n,"
                "spec.host=a,metadata.name=p,metadata.namespace=n"),
    ("", "Event", "involvedObject.kind=Pod,involvedObject.namespace=y,involvedObject.name=x,"
                  "involvedObject.uid=u,involvedObject.apiVersion=v1,"
                  "involvedObject.resourceVersion=1,involvedObject.fieldPath=f,reason=r,"
                  "reportingComponent=c,source=s,type=Normal,metadata.name=e,"
                  "metadata.namespace=y"),
    ("events.k8s.io", "Event", "regarding.kind=Pod,regarding.namespace=y,regarding.name=x,"
                               "regarding.uid=u,regarding.apiVersion=v1,"
                               "regarding.resourceVersion=1,regarding.fieldPath=f,reason=r,"
                               "reportingController=c,source=s,type=Normal,metadata.name=e,"
                               "metadata.namespace=y"),
    ("", "Secret", "type=Opaque,metadata.name=s,metadata.namespace=n"),
    ("", "Namespace", "status.phase=Active,metadata.name=n"),
    ("", "Node", "spec.unschedulable=true,metadata.name=n"),
    ("", "ReplicationController", "status.replicas=1,metadata.name=r,metadata.namespace=n"),
    ("", "Service", "spec.clusterIP=None,spec.type=ClusterIP,metadata.name=s,"
                    "metadata.namespace=n"),
    ("batch", "Job", "status.successful=1,metadata.name=j,metadata.namespace=n"),
    ("certificates.k8s.io", "CertificateSigningRequest", "spec.signerName=x,metadata.name=c"),
    ("apps", "Deployment", "metadata.name=d,metadata.namespace=n"),
    ("", "ConfigMap", "metadata.name=c,metadata.namespace=n"),
    ("", "ConfigMap", ""),
])
def test_supported_fields_validate(group: str, kind: str, selector: str) -> None:
    validate_field_selector(group, kind, selector)
    validate_field_selector(group, kind, parse_field_selector(selector))


@pytest.mark.parametrize("group, kind, selector, message", [
    ("", "Pod", "spec.foo=1", "field label not supported: spec.foo"),
    ("", "Pod", "status.phase=Running,spec.containers=x",
     "field label not supported: spec.containers"),
    ("", "Pod", "=b", "field label not supported: "),
    ("", "Node", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("", "Namespace", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("", "Event", "regarding.name=x", "field label not supported: regarding.name"),
    ("", "Secret", "data.x=1", "field label not supported: data.x"),
    ("", "Service", "spec.ports=1", "field label not supported: spec.ports"),
    ("batch", "Job", "status.failed=1", "field label \"status.failed\" not supported for Job"),
    # kinds without a conversion func (all of apps, CRDs, ...) only know metadata
    ("apps", "ReplicaSet", "status.replicas=0",
     "\"status.replicas\" is not a known field selector: only \"metadata.name\", "
     "\"metadata.namespace\""),
    ("apps", "Deployment", "spec.paused=true",
     "\"spec.paused\" is not a known field selector: only \"metadata.name\", "
     "\"metadata.namespace\""),
    ("", "ConfigMap", "data=x",
     "\"data\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""),
    ("", "Pod", "abc", "invalid selector: 'abc'; can't understand 'abc'"),
])
def test_unsupported_field_errors(group: str, kind: str, selector: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        validate_field_selector(group, kind, selector)
    assert info.value.message == message
    assert info.value.code == 400


def test_convert_rewrites_aliases() -> None:
    assert str(convert_field_selector("", "Pod", "spec.host=n1")) == "spec.nodeName=n1"
    assert convert_field_selector("", "Pod", "").empty
    sel = convert_field_selector("", "Pod", parse_field_selector("status.phase=Running"))
    assert sel.requirements == (FieldRequirement("status.phase", "=", "Running"),)
