"""Audit policies: loading, validation errors as upstream's, and rule matching."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyk8s.apiserver.audit.policy import (Level, PolicyError, RequestAttributes,
                                          load_policy, load_policy_file)
from pyk8s.apiserver.authn import UserInfo

ALICE = UserInfo("alice", groups=("devs", "system:authenticated"))
ADMIN = UserInfo("system:admin", groups=("system:masters", "system:authenticated"))


def res(user: UserInfo | None, verb: str, resource: str, namespace: str = "default",
        name: str = "", subresource: str = "", group: str = "") -> RequestAttributes:
    return RequestAttributes(user, verb, True, namespace=namespace, api_group=group,
                             api_version="v1", resource=resource, subresource=subresource,
                             name=name)


def nonres(user: UserInfo | None, path: str, verb: str = "get") -> RequestAttributes:
    return RequestAttributes(user, verb, False, path=path)


def policy(rules: str, head: str = "") -> str:
    return f"apiVersion: audit.k8s.io/v1\nkind: Policy\n{head}rules:\n{rules}"


def test_first_matching_rule_wins_and_no_match_is_none() -> None:
    p = load_policy(policy("""
- level: None
  users: ["system:kube-proxy"]
  verbs: ["watch"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["configmaps"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets", "configmaps"]
""").encode())
    proxy = UserInfo("system:kube-proxy")
    assert p.evaluate(res(proxy, "watch", "configmaps")).level == Level.NONE
    assert p.evaluate(res(proxy, "list", "configmaps")).level == Level.REQUEST_RESPONSE
    assert p.evaluate(res(ALICE, "get", "secrets")).level == Level.METADATA
    assert p.evaluate(res(ALICE, "get", "pods")).level == Level.NONE
    assert p.evaluate(nonres(ALICE, "/healthz")).level == Level.NONE


def test_users_groups_and_verbs() -> None:
    p = load_policy(policy("""
- level: Request
  users: ["alice"]
  verbs: ["create", "update"]
- level: Metadata
  userGroups: ["system:masters"]
""").encode())
    assert p.evaluate(res(ALICE, "create", "pods")).level == Level.REQUEST
    assert p.evaluate(res(ALICE, "get", "pods")).level == Level.NONE
    assert p.evaluate(res(ADMIN, "create", "pods")).level == Level.METADATA
    # No user (a failed authentication) matches no users / userGroups rule.
    assert p.evaluate(res(None, "create", "pods")).level == Level.NONE


def test_resources_subresources_wildcards_and_names() -> None:
    p = load_policy(policy("""
- level: RequestResponse
  resources:
  - group: ""
    resources: ["pods/log"]
- level: Request
  resources:
  - group: "apps"
    resources: ["*/scale"]
- level: Metadata
  resources:
  - group: ""
    resources: ["configmaps"]
    resourceNames: ["special"]
  - group: "batch"
    resources: ["jobs/*"]
  - group: "rbac.authorization.k8s.io"
    resources: ["*"]
  - group: "storage.k8s.io"
""").encode())
    assert p.evaluate(res(ALICE, "get", "pods", name="p", subresource="log")).level == \
        Level.REQUEST_RESPONSE
    assert p.evaluate(res(ALICE, "get", "pods", name="p")).level == Level.NONE
    assert p.evaluate(res(ALICE, "update", "deployments", name="d", subresource="scale",
                          group="apps")).level == Level.REQUEST
    assert p.evaluate(res(ALICE, "update", "deployments", name="d",
                          group="apps")).level == Level.NONE
    assert p.evaluate(res(ALICE, "get", "configmaps", name="special")).level == Level.METADATA
    assert p.evaluate(res(ALICE, "get", "configmaps", name="other")).level == Level.NONE
    assert p.evaluate(res(ALICE, "get", "configmaps")).level == Level.NONE  # a list
    assert p.evaluate(res(ALICE, "get", "jobs", name="j", subresource="status",
                          group="batch")).level == Level.METADATA
    assert p.evaluate(res(ALICE, "get", "jobs", name="j", group="batch")).level == \
        Level.METADATA  # upstream's `jobs/*` also matches the resource itself
    assert p.evaluate(res(ALICE, "get", "roles", name="r", subresource="x",
                          group="rbac.authorization.k8s.io")).level == Level.METADATA
    # A group with no resources: every resource of the group.
    assert p.evaluate(res(ALICE, "list", "storageclasses", namespace="",
                          group="storage.k8s.io")).level == Level.METADATA
    assert p.evaluate(res(ALICE, "list", "pods", group="")).level == Level.NONE


def test_namespaces_and_non_resource_urls() -> None:
    p = load_policy(policy("""
- level: Metadata
  namespaces: [""]
- level: Request
  namespaces: ["kube-system"]
- level: RequestResponse
  nonResourceURLs: ["/healthz*", "/version"]
""").encode())
    assert p.evaluate(res(ALICE, "list", "nodes", namespace="")).level == Level.METADATA
    assert p.evaluate(res(ALICE, "list", "pods", namespace="kube-system")).level == \
        Level.REQUEST
    assert p.evaluate(res(ALICE, "list", "pods", namespace="default")).level == Level.NONE
    assert p.evaluate(nonres(ALICE, "/healthz")).level == Level.REQUEST_RESPONSE
    assert p.evaluate(nonres(ALICE, "/healthz/etcd")).level == Level.REQUEST_RESPONSE
    assert p.evaluate(nonres(ALICE, "/version")).level == Level.REQUEST_RESPONSE
    assert p.evaluate(nonres(ALICE, "/versions")).level == Level.NONE
    # A namespaces rule never matches a non-resource request.
    assert p.evaluate(nonres(ALICE, "/api")).level == Level.NONE


def test_catch_all_and_star_url() -> None:
    p = load_policy(policy("""
- level: Request
  nonResourceURLs: ["*"]
- level: Metadata
""").encode())
    assert p.evaluate(nonres(None, "/anything")).level == Level.REQUEST
    assert p.evaluate(res(None, "get", "pods")).level == Level.METADATA


def test_omit_stages_union_and_managed_fields() -> None:
    p = load_policy(policy("""
- level: Metadata
  users: ["alice"]
  omitStages: ["ResponseStarted"]
  omitManagedFields: false
- level: Request
""", head="omitStages: [RequestReceived]\nomitManagedFields: true\n").encode())
    a = p.evaluate(res(ALICE, "get", "pods"))
    assert a.omit_stages == {"RequestReceived", "ResponseStarted"}
    assert a.omit_managed_fields is False
    b = p.evaluate(res(ADMIN, "get", "pods"))
    assert b.level == Level.REQUEST and b.omit_stages == {"RequestReceived"}
    assert b.omit_managed_fields is True
    # No matching rule: None, with the policy's own stages.
    p2 = load_policy(policy("- level: Metadata\n  users: [bob]\n",
                            head="omitStages: [Panic]\n").encode())
    none = p2.evaluate(res(ALICE, "get", "pods"))
    assert none.level == Level.NONE and none.omit_stages == {"Panic"}


def test_json_v1beta1_and_file(tmp_path: Path) -> None:
    f = tmp_path / "policy.json"
    f.write_text('{"apiVersion": "audit.k8s.io/v1beta1", "kind": "Policy", '
                 '"rules": [{"level": "Metadata"}]}')
    p = load_policy_file(f)
    assert p.evaluate(nonres(ALICE, "/api")).level == Level.METADATA


@pytest.mark.parametrize("text, message", [
    (policy("- users: [a]\n"), "rules[0].level: Required value"),
    (policy("- level: Everything\n"),
     'rules[0].level: Unsupported value: "Everything": supported values: "None", '
     '"Metadata", "Request", "RequestResponse"'),
    (policy("- level: Metadata\n  omitStages: [Sometimes]\n"),
     'rules[0].omitStages[0]: Invalid value: "Sometimes": allowed stages are '
     "RequestReceived,ResponseStarted,ResponseComplete,Panic"),
    (policy("- level: Metadata\n", head="omitStages: [Never]\n"),
     'omitStages[0]: Invalid value: "Never": allowed stages are '
     "RequestReceived,ResponseStarted,ResponseComplete,Panic"),
    (policy("- level: Metadata\n  nonResourceURLs: [healthz]\n"),
     "rules[0].nonResourceURLs[0]: Invalid value: \"healthz\": non-resource URL rules must "
     "begin with a '/' character"),
    (policy("- level: Metadata\n  nonResourceURLs: [\"/a*/b\"]\n"),
     "rules[0].nonResourceURLs[0]: Invalid value: \"/a*/b\": non-resource URL wildcards "
     "'*' must be the final character of the rule"),
    (policy("- level: Metadata\n  nonResourceURLs: [/api]\n  namespaces: [default]\n"),
     'rules[0].nonResourceURLs: Invalid value: []string{"/api"}: rules cannot apply to '
     "both regular resources and non-resource URLs"),
    (policy("- level: Metadata\n  resources: [{group: '', resourceNames: [x]}]\n"),
     'rules[0].resources.resourceNames: Invalid value: []string{"x"}: using resourceNames '
     "requires at least one resource"),
    (policy("- level: Metadata\n  resources: [{group: 'Apps/v1'}]\n"),
     'rules[0].resources.group: Invalid value: "Apps/v1": a lowercase RFC 1123 subdomain'),
    ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n",
     "loaded illegal policy with 0 rules"),
    ("apiVersion: audit.k8s.io/v1\nkind: Policy\n", "loaded illegal policy with 0 rules"),
    ("apiVersion: v1\nkind: ConfigMap\n",
     'failed decoding: no kind "ConfigMap" is registered for version "v1"'),
    ("rules: []\n", "failed decoding: Object 'Kind' is missing in 'rules: []"),
    (policy("- level: Metadata\n  users: alice\n"),
     "failed decoding: json: cannot unmarshal string into Go struct field "
     "PolicyRule.rules.users of type []string"),
    ("{not yaml", "failed decoding: error converting YAML to JSON"),
])
def test_invalid_policies(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as e:
        load_policy(text.encode())
    assert str(e.value).startswith(message), str(e.value)


def test_several_errors_are_listed() -> None:
    with pytest.raises(PolicyError) as e:
        load_policy(policy("- level: Bad\n- users: [a]\n").encode())
    msg = str(e.value)
    assert msg.startswith('[rules[0].level: Unsupported value: "Bad"'), msg
    assert msg.endswith("rules[1].level: Required value]"), msg


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match='failed to read file path ".*missing.yaml"'):
        load_policy_file(tmp_path / "missing.yaml")
    f = tmp_path / "p.yaml"
    f.write_text(policy("- level: Loud\n"))
    with pytest.raises(PolicyError) as e:
        load_policy_file(f)
    assert str(e.value).endswith(f": from file {f}")
