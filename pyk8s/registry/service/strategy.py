"""The Service strategy, as upstream's `pkg/registry/core/service/strategy.go` plus the
service REST's `patchAllocatedValues` (pure, no I/O).

Rules:

* defaulting leaves `ipFamilies` unset when the client named none: the allocation infers
  them from the cluster IPs, or gives the family of the primary service range (upstream's
  initIPFamilyFields), so an IPv6 range gets IPv6 Services.
* update keeps what the server allocated when the client leaves it out (a PUT without
  `clusterIP` / `nodePort` / `healthCheckNodePort` keeps the current values while the type
  still uses them; node ports are matched by port name; `ipFamilies` follow unchanged
  cluster IPs).
* update drops the fields the new type no longer uses, when the client left them as they
  were (upstream dropTypeDependentFields): cluster IPs and IP families when switching to
  ExternalName, node ports when switching away from NodePort / LoadBalancer, the health
  check node port, allocateLoadBalancerNodePorts, loadBalancerClass, externalTrafficPolicy,
  and the load balancer status when the type is no longer LoadBalancer.
"""
from __future__ import annotations

from typing import Any

from pyk8s.registry.service.alloc import (needs_cluster_ip, needs_health_check, needs_node_ports,
                                          node_ports_of)
from pyk8s.registry.strategy import Strategy

Obj = dict[str, Any]


def _spec(svc: Obj) -> Obj:
    spec = svc.get("spec")
    return spec if isinstance(spec, dict) else {}


def _ports(svc: Obj) -> list[Obj]:
    return [p for p in (_spec(svc).get("ports") or []) if isinstance(p, dict)]


def patch_allocated_values(new: Obj, old: Obj) -> None:
    """Upstream patchAllocatedValues: allocated values a client did not send are kept."""
    ns, os_ = _spec(new), _spec(old)
    if needs_cluster_ip(old) and needs_cluster_ip(new):
        if not ns.get("clusterIP") and os_.get("clusterIP"):
            ns["clusterIP"] = os_["clusterIP"]
        if not ns.get("clusterIPs") and os_.get("clusterIPs"):
            ns["clusterIPs"] = list(os_["clusterIPs"])
        if not ns.get("ipFamilies") and os_.get("ipFamilies") and \
                ns.get("clusterIPs") == os_.get("clusterIPs"):
            ns["ipFamilies"] = list(os_["ipFamilies"])   # what the allocation would infer
    if needs_node_ports(old) and needs_node_ports(new):
        used = set(node_ports_of(old)) & set(node_ports_of(new))
        by_name = {str(p.get("name") or ""): p.get("nodePort") for p in _ports(old)}
        for p in _ports(new):
            if not p.get("nodePort"):
                v = by_name.get(str(p.get("name") or ""))
                if v and v not in used:
                    p["nodePort"] = v
    if needs_health_check(old) and needs_health_check(new):
        if not ns.get("healthCheckNodePort") and os_.get("healthCheckNodePort"):
            ns["healthCheckNodePort"] = os_["healthCheckNodePort"]


def drop_type_dependent_fields(new: Obj, old: Obj) -> None:
    """Upstream dropTypeDependentFields (spec part; the status part is in the strategy)."""
    ns, os_ = _spec(new), _spec(old)
    if needs_cluster_ip(old) and not needs_cluster_ip(new):
        if ns.get("clusterIP") == os_.get("clusterIP") and \
                (ns.get("clusterIPs") or []) == (os_.get("clusterIPs") or []):
            ns.pop("clusterIP", None)
            ns.pop("clusterIPs", None)
        if (ns.get("ipFamilies") or []) == (os_.get("ipFamilies") or []):
            ns.pop("ipFamilies", None)
        if ns.get("ipFamilyPolicy") == os_.get("ipFamilyPolicy"):
            ns.pop("ipFamilyPolicy", None)
    if needs_node_ports(old) and not needs_node_ports(new) and \
            set(node_ports_of(old)) >= set(node_ports_of(new)):
        for p in _ports(new):
            p.pop("nodePort", None)
    if needs_health_check(old) and not needs_health_check(new) and \
            ns.get("healthCheckNodePort") == os_.get("healthCheckNodePort"):
        ns.pop("healthCheckNodePort", None)
    was_lb, is_lb = os_.get("type") == "LoadBalancer", ns.get("type") == "LoadBalancer"
    if was_lb and not is_lb:
        if ns.get("allocateLoadBalancerNodePorts") is not None and \
                ns.get("allocateLoadBalancerNodePorts") == os_.get("allocateLoadBalancerNodePorts"):
            ns.pop("allocateLoadBalancerNodePorts", None)
        if ns.get("loadBalancerClass") == os_.get("loadBalancerClass"):
            ns.pop("loadBalancerClass", None)
    if needs_node_ports(old) and not needs_node_ports(new) and \
            ns.get("externalTrafficPolicy") == os_.get("externalTrafficPolicy"):
        ns.pop("externalTrafficPolicy", None)


class ServiceStrategy(Strategy):
    """Services: the module's rules on top of the generic strategy."""

    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        named = isinstance(spec, dict) and bool(spec.get("ipFamilies"))
        super().default(obj)
        if not named:  # families the client did not name are the allocation's to infer
            _spec(obj).pop("ipFamilies", None)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        patch_allocated_values(new, old)
        drop_type_dependent_fields(new, old)
        super().prepare_for_update(new, old)
        status = new.get("status")
        if _spec(new).get("type") != "LoadBalancer" and isinstance(status, dict) and \
                status.get("loadBalancer"):
            status["loadBalancer"] = {}
