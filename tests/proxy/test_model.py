"""Services + EndpointSlices → service ports and the endpoints traffic may use."""
from __future__ import annotations

from typing import Any

from pyk8s.proxy.model import Endpoint, cluster_ips, service_ports, slice_endpoints


def svc(name: str, ports: list[dict[str, Any]], ns: str = "default",
        **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": "10.96.0.5", "ports": ports, **spec}}


def eps(service: str, endpoints: list[dict[str, Any]], ports: list[dict[str, Any]],
        ns: str = "default", name: str = "") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name or f"{service}-x",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports}


def ep(ip: str, node: str = "n1", **cond: Any) -> dict[str, Any]:
    return {"addresses": [ip], "nodeName": node, "conditions": cond}


def test_cluster_ips_skip_headless_external_name_and_junk() -> None:
    assert cluster_ips(svc("a", [])) == ("10.96.0.5",)
    assert cluster_ips({"spec": {"clusterIP": "None"}}) == ()
    assert cluster_ips({"spec": {"type": "ExternalName", "clusterIP": "10.0.0.1"}}) == ()
    assert cluster_ips({"spec": {"clusterIPs": ["10.0.0.1", "fd00::1"]}}) == ("10.0.0.1",
                                                                              "fd00::1")
    assert cluster_ips({"spec": {}}) == ()


def test_one_service_port_per_port_with_its_slice_port() -> None:
    s = svc("web", [{"name": "http", "port": 80}, {"name": "dns", "port": 53,
                                                   "protocol": "UDP"}])
    sl = eps("web", [ep("10.42.0.5"), ep("10.42.0.6", ready=False)],
             [{"name": "http", "port": 8080, "protocol": "TCP"},
              {"name": "dns", "port": 5353, "protocol": "UDP"}])
    ports = service_ports([s], [sl])
    assert [(p.key, p.protocol, p.port) for p in ports] == [
        ("default/web:dns", "UDP", 53), ("default/web:http", "TCP", 80)]
    http = ports[1]
    assert [e.address for e in http.endpoints] == ["10.42.0.5:8080", "10.42.0.6:8080"]
    assert [e.address for e in http.usable()] == ["10.42.0.5:8080"]
    assert [e.address for e in ports[0].usable()] == ["10.42.0.5:5353"]


def test_unnamed_port_key_and_unset_conditions_mean_ready() -> None:
    ports = service_ports([svc("a", [{"port": 80}])],
                          [eps("a", [{"addresses": ["10.1.0.1"]}], [{"port": 80}])])
    assert ports[0].key == "default/a"
    assert ports[0].usable() == [Endpoint("10.1.0.1", 80)]


def test_terminating_serving_endpoints_only_when_none_ready() -> None:
    s = svc("a", [{"port": 80}])
    term = ep("10.1.0.2", ready=False, serving=True, terminating=True)
    sl = eps("a", [term, ep("10.1.0.3", ready=False, serving=False, terminating=True)],
             [{"port": 80}])
    assert [e.ip for e in service_ports([s], [sl])[0].usable()] == ["10.1.0.2"]
    sl2 = eps("a", [term, ep("10.1.0.1")], [{"port": 80}])
    assert [e.ip for e in service_ports([s], [sl2])[0].usable()] == ["10.1.0.1"]


def test_endpoints_of_two_slices_deduplicated_and_other_services_ignored() -> None:
    s = svc("a", [{"port": 80}])
    one = eps("a", [ep("10.1.0.1"), ep("10.1.0.2")], [{"port": 80}], name="a-1")
    two = eps("a", [ep("10.1.0.2")], [{"port": 80}], name="a-2")
    other = eps("b", [ep("10.1.0.9")], [{"port": 80}])
    other_ns = eps("a", [ep("10.1.0.8")], [{"port": 80}], ns="x")
    got = service_ports([s], [one, two, other, other_ns])[0]
    assert [e.ip for e in got.endpoints] == ["10.1.0.1", "10.1.0.2"]


def test_traffic_policies_and_node_ports_and_affinity() -> None:
    s = svc("a", [{"port": 80, "nodePort": 30080}], type="NodePort",
            internalTrafficPolicy="Local", externalTrafficPolicy="Local",
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    sl = eps("a", [ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2")], [{"port": 80}])
    p = service_ports([s], [sl])[0]
    assert p.node_port == 30080 and p.affinity_seconds == 60
    assert [e.ip for e in p.cluster_endpoints("n2")] == ["10.1.0.2"]
    assert [e.ip for e in p.external_endpoints("n3")] == []
    plain = service_ports([svc("b", [{"port": 80, "nodePort": 30081}],
                               sessionAffinity="ClientIP")], [])[0]
    assert plain.node_port == 0          # a ClusterIP service has no node port
    assert plain.affinity_seconds == 10800


def test_slice_endpoints_skip_bad_addresses_and_fqdn_slices() -> None:
    sl = eps("a", [{"addresses": ["not-an-ip"]}, ep("10.1.0.1")], [{"port": 80}])
    fqdn = dict(eps("a", [{"addresses": ["example.com"]}], [{"port": 80}]),
                addressType="FQDN")
    assert [e.ip for e in slice_endpoints([sl, fqdn], "", "TCP")] == ["10.1.0.1"]
    assert slice_endpoints([sl], "", "UDP") == []
