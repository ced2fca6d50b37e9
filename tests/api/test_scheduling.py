"""pyk8s.api.scheduling: node selector terms, required node affinity, taints and
tolerations."""
from __future__ import annotations

import pytest

from pyk8s.api.scheduling import (find_untolerated_taint, node_selector_requirement_matches,
                                  node_selector_term_matches, required_node_affinity_matches,
                                  required_node_selector_terms, toleration_tolerates_taint,
                                  tolerations_tolerate_taint)


@pytest.mark.parametrize("req,labels,want", [
    ({"key": "a", "operator": "In", "values": ["1", "2"]}, {"a": "2"}, True),
    ({"key": "a", "operator": "In", "values": ["1"]}, {}, False),
    ({"key": "a", "operator": "NotIn", "values": ["1"]}, {}, True),
    ({"key": "a", "operator": "NotIn", "values": ["1"]}, {"a": "1"}, False),
    ({"key": "a", "operator": "Exists"}, {"a": ""}, True),
    ({"key": "a", "operator": "DoesNotExist"}, {"a": ""}, False),
    ({"key": "a", "operator": "Gt", "values": ["3"]}, {"a": "4"}, True),
    ({"key": "a", "operator": "Gt", "values": ["3"]}, {"a": "x"}, False),
    ({"key": "a", "operator": "Lt", "values": ["3"]}, {"a": "2"}, True),
    ({"key": "a", "operator": "Lt", "values": ["3", "4"]}, {"a": "2"}, False),
    ({"key": "a", "operator": "Bogus"}, {"a": "2"}, False),
])
def test_requirement(req, labels, want) -> None:
    assert node_selector_requirement_matches(req, labels) is want


def test_term() -> None:
    assert not node_selector_term_matches({}, {"a": "1"}, "n1")
    name_in = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    assert node_selector_term_matches(name_in, {}, "n1")
    assert not node_selector_term_matches(name_in, {}, "n2")
    both = {"matchExpressions": [{"key": "a", "operator": "Exists"}], **name_in}
    assert node_selector_term_matches(both, {"a": "1"}, "n1")
    assert not node_selector_term_matches(both, {}, "n1")
    # Another field key: as an absent key, or never with name_field_only.
    other = {"matchFields": [{"key": "spec.x", "operator": "NotIn", "values": ["v"]}]}
    assert node_selector_term_matches(other, {}, "n1")
    assert not node_selector_term_matches(other, {}, "n1", name_field_only=True)


def test_required_affinity() -> None:
    assert required_node_selector_terms({}) is None
    assert required_node_affinity_matches({}, {}, "n1")
    assert not required_node_affinity_matches({"nodeSelector": {"a": "1"}}, {}, "n1")
    spec = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "In",
                                                     "values": ["1"]}]},
                              {"matchExpressions": [{"key": "b", "operator": "Exists"}]}]}}}}
    assert len(required_node_selector_terms(spec) or []) == 2
    assert required_node_affinity_matches(spec, {"b": ""}, "n1")
    assert not required_node_affinity_matches(spec, {"a": "2"}, "n1")
    empty = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}}
    assert required_node_selector_terms(empty) == []
    assert not required_node_affinity_matches(empty, {}, "n1")


def test_tolerations() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    assert toleration_tolerates_taint({"operator": "Exists"}, taint)
    assert toleration_tolerates_taint({"key": "k", "value": "v"}, taint)
    assert not toleration_tolerates_taint({"key": "k", "value": "w"}, taint)
    assert not toleration_tolerates_taint({"key": "k", "operator": "Exists",
                                           "effect": "NoExecute"}, taint)
    assert not toleration_tolerates_taint({"key": "k", "operator": "Bogus"}, taint)
    assert tolerations_tolerate_taint([{"key": "x"}, {"key": "k", "value": "v"}], taint)
    soft = {"key": "s", "effect": "PreferNoSchedule"}
    assert find_untolerated_taint([soft, taint], []) is soft
    assert find_untolerated_taint([soft, taint], [], ("NoSchedule", "NoExecute")) is taint
    assert find_untolerated_taint([soft, taint], [{"operator": "Exists"}]) is None
