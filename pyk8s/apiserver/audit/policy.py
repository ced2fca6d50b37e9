"""Audit policies (audit.k8s.io/v1 and v1beta1 `Policy`): loading, validation and matching.

As upstream's k8s.io/apiserver/pkg/audit/policy: the first rule matching a request decides
its level, omitted stages (the rule's and the policy's) and whether managedFields are
dropped; no matching rule means level None. A policy that does not decode or validate is
an error with upstream's messages (the server refuses to start).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pyk8s.api.names import name_is_dns_subdomain
from pyk8s.apiserver.authz.attributes import RequestAttributes
from pyk8s.apiserver.authz.rbac import resource_entry_matches, url_matches

API_VERSIONS = ("audit.k8s.io/v1", "audit.k8s.io/v1beta1")


class Level(enum.IntEnum):
    """Audit levels, ordered: each records what the one below does and more."""
    NONE = 0
    METADATA = 1
    REQUEST = 2
    REQUEST_RESPONSE = 3

    @property
    def api_name(self) -> str:
        return _LEVEL_NAMES[self]


_LEVEL_NAMES = {Level.NONE: "None", Level.METADATA: "Metadata", Level.REQUEST: "Request",
                Level.REQUEST_RESPONSE: "RequestResponse"}
_LEVELS_BY_NAME = {v: k for k, v in _LEVEL_NAMES.items()}

STAGE_REQUEST_RECEIVED = "RequestReceived"
STAGE_RESPONSE_STARTED = "ResponseStarted"
STAGE_RESPONSE_COMPLETE = "ResponseComplete"
STAGE_PANIC = "Panic"
STAGES = (STAGE_REQUEST_RECEIVED, STAGE_RESPONSE_STARTED, STAGE_RESPONSE_COMPLETE, STAGE_PANIC)


class PolicyError(ValueError):
    """A policy file that cannot be read, decoded or validated."""


@dataclass(frozen=True)
class RequestAuditConfig:
    """What the policy says about one request."""
    level: Level
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False


@dataclass(frozen=True)
class GroupResources:
    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()

    def matches(self, resource: str, subresource: str, name: str) -> bool:
        """`*` every resource and subresource, `pods/log`, `*/scale`, `pods/*`; an empty
        list every resource of the group (the group is compared by the caller)."""
        if not self.resources:
            return True
        if self.resource_names and name not in self.resource_names:
            return False
        combined = f"{resource}/{subresource}" if subresource else resource
        # RBAC's `*`, `res/sub` and `*/sub`; and `res/*`, which RBAC does not have.
        return any(resource_entry_matches(res, combined, subresource) or
                   (res.endswith("/*") and res[:-2] == resource) for res in self.resources)


@dataclass(frozen=True)
class PolicyRule:
    level: Level
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool | None = None

    def matches(self, a: RequestAttributes) -> bool:
        user = a.user
        if self.users and (user is None or user.username not in self.users):
            return False
        if self.user_groups and (user is None or
                                 not any(g in self.user_groups for g in user.groups)):
            return False
        if self.verbs and a.verb not in self.verbs:
            return False
        if self.namespaces or self.resources:
            return self._matches_resource(a)
        if self.non_resource_urls:
            # RBAC's matching: validation leaves `*` only at a URL's end, so trimming one
            # `*` is upstream's pathMatches trimming them all.
            return not a.resource_request and any(
                url_matches(spec, a.path) for spec in self.non_resource_urls)
        return True

    def _matches_resource(self, a: RequestAttributes) -> bool:
        if not a.resource_request:
            return False
        # Cluster-scoped resources have the namespace "".
        if self.namespaces and a.namespace not in self.namespaces:
            return False
        if not self.resources:
            return True
        return any(gr.group == a.api_group and gr.matches(a.resource, a.subresource, a.name)
                   for gr in self.resources)


class Policy:
    """A loaded policy: `evaluate` gives the first matching rule's config, else None."""

    def __init__(self, rules: list[PolicyRule], omit_stages: frozenset[str] = frozenset(),
                 omit_managed_fields: bool = False) -> None:
        self.rules = tuple(rules)
        self.omit_stages = omit_stages
        self.omit_managed_fields = omit_managed_fields
        # The policy's omitted stages are added to every rule's (upstream's NewChecker).
        self._configs = tuple(
            RequestAuditConfig(r.level, r.omit_stages | omit_stages,
                               omit_managed_fields if r.omit_managed_fields is None
                               else r.omit_managed_fields)
            for r in self.rules)
        self._default = RequestAuditConfig(Level.NONE, omit_stages, omit_managed_fields)

    def evaluate(self, a: RequestAttributes) -> RequestAuditConfig:
        for rule, config in zip(self.rules, self._configs):
            if rule.matches(a):
                return config
        return self._default


# -- loading -----------------------------------------------------------------------------

def load_policy_file(path: str | Path) -> Policy:
    """Upstream's LoadPolicyFromFile."""
    if not str(path):
        raise PolicyError("file path not specified")
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise PolicyError(f'failed to read file path "{path}": {e}') from None
    try:
        return load_policy(data)
    except PolicyError as e:
        raise PolicyError(f"{e}: from file {path}") from None


def load_policy(data: bytes) -> Policy:
    """A Policy from YAML or JSON bytes; PolicyError with upstream's messages."""
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as e:
        raise PolicyError(f"failed decoding: error converting YAML to JSON: {e}") from None
    if not isinstance(doc, dict) or not doc.get("kind"):
        snippet = data.decode(errors="replace")
        raise PolicyError(f"failed decoding: Object 'Kind' is missing in '{snippet}'")
    api_version, kind = doc.get("apiVersion") or "", doc["kind"]
    if api_version not in API_VERSIONS or kind != "Policy":
        raise PolicyError(f'failed decoding: no kind "{kind}" is registered for version '
                          f'"{api_version}" in scheme "pkg/audit/scheme.go"')
    raw_rules = _typed(doc.get("rules"), list, "Policy.rules", "[]v1.PolicyRule") or []
    omit_stages = _strings(doc.get("omitStages"), "Policy.omitStages", "[]v1.Stage")
    omit_managed = _typed(doc.get("omitManagedFields"), bool, "Policy.omitManagedFields",
                          "bool") or False
    problems = _invalid_stages(omit_stages, "omitStages")
    rules = []
    for i, raw in enumerate(raw_rules):
        rule, rule_problems = _rule(raw, f"rules[{i}]")
        problems.extend(rule_problems)
        rules.append(rule)
    if problems:
        raise PolicyError(problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]")
    if not rules:
        raise PolicyError("loaded illegal policy with 0 rules")
    return Policy(rules, frozenset(omit_stages), omit_managed)


_GO_TYPES = {list: "array", dict: "object", str: "string", bool: "bool", int: "number",
             float: "number"}


def _typed(value: Any, want: type, field: str, go_type: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
        got = _GO_TYPES.get(type(value), "value")
        raise PolicyError(f"failed decoding: json: cannot unmarshal {got} into Go struct "
                          f"field {field} of type {go_type}")
    return value


def _strings(value: Any, field: str, go_type: str = "[]string") -> list[str]:
    items = _typed(value, list, field, go_type) or []
    for item in items:
        _typed(item, str, field, "string")
    return list(items)


def _invalid_stages(stages: list[str], path: str) -> list[str]:
    return [f'{path}[{i}]: Invalid value: "{s}": allowed stages are ' + ",".join(STAGES)
            for i, s in enumerate(stages) if s not in STAGES]


def _go_strings(values: list[str]) -> str:
    """A []string as Go's %#v prints it in field errors."""
    return "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"


def _rule(raw: Any, path: str) -> tuple[PolicyRule, list[str]]:
    raw = _typed(raw, dict, "Policy.rules", "v1.PolicyRule")
    problems: list[str] = []
    level_name = _typed(raw.get("level"), str, "PolicyRule.rules.level", "v1.Level") or ""
    level = _LEVELS_BY_NAME.get(level_name)
    if not level_name:
        problems.append(f"{path}.level: Required value")
    elif level is None:
        supported = ", ".join(f'"{n}"' for n in _LEVEL_NAMES.values())
        problems.append(f'{path}.level: Unsupported value: "{level_name}": supported values: '
                        f"{supported}")
    urls = _strings(raw.get("nonResourceURLs"), "PolicyRule.rules.nonResourceURLs")
    for i, url in enumerate(urls):
        if url == "*":
            continue
        if not url.startswith("/"):
            problems.append(f'{path}.nonResourceURLs[{i}]: Invalid value: "{url}": '
                            "non-resource URL rules must begin with a '/' character")
        if url and "*" in url[:-1]:
            problems.append(f'{path}.nonResourceURLs[{i}]: Invalid value: "{url}": '
                            "non-resource URL wildcards '*' must be the final character of "
                            "the rule")
    resources = []
    for gr in _typed(raw.get("resources"), list, "PolicyRule.rules.resources",
                     "[]v1.GroupResources") or []:
        gr = _typed(gr, dict, "PolicyRule.rules.resources", "v1.GroupResources")
        group = _typed(gr.get("group"), str, "GroupResources.rules.resources.group",
                       "string") or ""
        names = _strings(gr.get("resourceNames"), "GroupResources.rules.resources.resourceNames")
        res = _strings(gr.get("resources"), "GroupResources.rules.resources.resources")
        if group:
            msgs = name_is_dns_subdomain(group)
            if msgs:
                problems.append(f'{path}.resources.group: Invalid value: "{group}": '
                                + ",".join(msgs))
        if names and not res:
            problems.append(f"{path}.resources.resourceNames: Invalid value: "
                            f"{_go_strings(names)}: using resourceNames requires at least one "
                            "resource")
        resources.append(GroupResources(group, tuple(res), tuple(names)))
    stages = _strings(raw.get("omitStages"), "PolicyRule.rules.omitStages", "[]v1.Stage")
    problems.extend(_invalid_stages(stages, f"{path}.omitStages"))
    namespaces = _strings(raw.get("namespaces"), "PolicyRule.rules.namespaces")
    if urls and (resources or namespaces):
        problems.append(f"{path}.nonResourceURLs: Invalid value: {_go_strings(urls)}: rules "
                        "cannot apply to both regular resources and non-resource URLs")
    rule = PolicyRule(
        level=level if level is not None else Level.NONE,
        users=tuple(_strings(raw.get("users"), "PolicyRule.rules.users")),
        user_groups=tuple(_strings(raw.get("userGroups"), "PolicyRule.rules.userGroups")),
        verbs=tuple(_strings(raw.get("verbs"), "PolicyRule.rules.verbs")),
        resources=tuple(resources), namespaces=tuple(namespaces),
        non_resource_urls=tuple(urls), omit_stages=frozenset(stages),
        omit_managed_fields=_typed(raw.get("omitManagedFields"), bool,
                                   "PolicyRule.rules.omitManagedFields", "bool"))
    return rule, problems
