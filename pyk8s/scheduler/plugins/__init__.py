"""The in-tree plugins, one per module, by upstream's names."""
from __future__ import annotations

from pyk8s.scheduler.framework import Plugin
from pyk8s.scheduler.plugins.balanced_allocation import NodeResourcesBalancedAllocation
from pyk8s.scheduler.plugins.image_locality import ImageLocality
from pyk8s.scheduler.plugins.inter_pod_affinity import InterPodAffinity
from pyk8s.scheduler.plugins.node_affinity import NodeAffinity
from pyk8s.scheduler.plugins.node_name import NodeName
from pyk8s.scheduler.plugins.node_ports import NodePorts
from pyk8s.scheduler.plugins.node_resources_fit import NodeResourcesFit
from pyk8s.scheduler.plugins.node_unschedulable import NodeUnschedulable
from pyk8s.scheduler.plugins.pod_topology_spread import PodTopologySpread
from pyk8s.scheduler.plugins.taint_toleration import TaintToleration
from pyk8s.scheduler.plugins.volume_binding import VolumeBinding

REGISTRY: dict[str, type[Plugin]] = {p.name: p for p in (
    NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit,
    PodTopologySpread, InterPodAffinity, NodeResourcesBalancedAllocation, ImageLocality,
    VolumeBinding)}

# Upstream's default profile (v1.32): filters in this order, scores with these weights.
DEFAULT_FILTERS = ("NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity",
                   "NodePorts", "NodeResourcesFit", "VolumeBinding", "PodTopologySpread",
                   "InterPodAffinity")
DEFAULT_SCORES = (("TaintToleration", 3), ("NodeAffinity", 2), ("NodeResourcesFit", 1),
                  ("PodTopologySpread", 2), ("InterPodAffinity", 2),
                  ("NodeResourcesBalancedAllocation", 1), ("ImageLocality", 1))

__all__ = ["REGISTRY", "DEFAULT_FILTERS", "DEFAULT_SCORES"]
