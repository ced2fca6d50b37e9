"""`ClusterRecords` against hand-built stores: every record type, NXDOMAIN / NODATA, case."""
from __future__ import annotations

from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSLabel

from pyk8s.client.informer import Store
from pyk8s.dns.records import (SERVICE_INDEXERS, SLICE_INDEXERS, Answer, ClusterRecords,
                               reverse_ip)

Obj = dict[str, Any]
Z = "cluster.local"


def svc(name: str, ns: str = "default", ip: str | list[str] | None = "10.96.0.20",
        ports: list[Obj] | None = None, **spec: Any) -> Obj:
    s: Obj = {"ports": ports if ports is not None else
              [{"name": "http", "port": 80, "protocol": "TCP"},
               {"name": "dns", "port": 53, "protocol": "UDP"}], **spec}
    if isinstance(ip, list):
        s["clusterIP"], s["clusterIPs"] = ip[0], ip
    elif ip is not None:
        s["clusterIP"] = ip
    return {"metadata": {"name": name, "namespace": ns}, "spec": s}


def ep(*addresses: str, ready: bool | None = True, hostname: str | None = None) -> Obj:
    e: Obj = {"addresses": list(addresses)}
    if ready is not None:
        e["conditions"] = {"ready": ready}
    if hostname:
        e["hostname"] = hostname
    return e


def eslice(name: str, service: str, endpoints: list[Obj], ns: str = "default",
           ports: list[Obj] | None = None) -> Obj:
    return {"metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": ports if ports is not None else
            [{"name": "http", "port": 8080, "protocol": "TCP"}]}


class Cluster:
    def __init__(self, synced: bool = True) -> None:
        self.services = Store(SERVICE_INDEXERS)
        self.slices = Store(SLICE_INDEXERS)
        self.namespaces = Store()
        self.is_synced = synced
        for ns in ("default", "kube-system", "empty"):
            self.namespaces.add({"metadata": {"name": ns}})
        self.records = ClusterRecords(self.services, self.slices, self.namespaces, zone=Z,
                                      ttl=5, synced=lambda: self.is_synced,
                                      ns_ips=["10.96.0.10"])

    def ask(self, name: str, qtype: str = "A") -> Answer:
        ans = self.records.lookup(name, getattr(QTYPE, qtype))
        assert ans is not None, f"{name} {qtype} is not ours"
        return ans


def values(ans: Answer, qtype: str | None = None) -> list[str]:
    return sorted(str(r.rdata) for r in ans.answer
                  if qtype is None or r.rtype == getattr(QTYPE, qtype))


def assert_nxdomain(ans: Answer) -> None:
    assert ans.rcode == RCODE.NXDOMAIN and not ans.answer
    assert [QTYPE[r.rtype] for r in ans.authority] == ["SOA"]
    assert str(ans.authority[0].rname) == "cluster.local."


def assert_nodata(ans: Answer) -> None:
    assert ans.rcode == RCODE.NOERROR and not ans.answer
    assert [QTYPE[r.rtype] for r in ans.authority] == ["SOA"]


@pytest.fixture
def c() -> Cluster:
    c = Cluster()
    c.services.add(svc("web"))
    c.services.add(svc("dual", ip=["10.96.0.21", "fd00::21"]))
    c.services.add(svc("v6", ip="fd00::22"))
    c.services.add(svc("db", ip="None", ports=[{"name": "pg", "port": 5432}]))
    c.slices.add(eslice("db-1", "db", [ep("10.1.0.1", hostname="db-0"), ep("10.1.0.2"),
                                       ep("10.1.0.3", ready=False), ep("10.1.0.4", ready=None)],
                        ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    c.slices.add(eslice("web-1", "web", [ep("10.1.1.1"), ep("10.1.1.2", hostname="w0")]))
    c.services.add(svc("ext", ip=None, type="ExternalName", externalName="example.com."))
    c.services.add(svc("alias", ip=None, type="ExternalName",
                       externalName="web.default.svc.cluster.local"))
    c.services.add(svc("pending", ip=None))
    c.services.add(svc("lonely", ip="None"))
    return c


def test_cluster_ip_service(c: Cluster) -> None:
    ans = c.ask("web.default.svc.cluster.local.")
    assert ans.rcode == RCODE.NOERROR and values(ans) == ["10.96.0.20"]  # two ports, one A
    assert [r.ttl for r in ans.answer] == [5]
    assert str(ans.answer[0].rname) == "web.default.svc.cluster.local."
    assert_nodata(c.ask("web.default.svc.cluster.local.", "AAAA"))


def test_names_without_case_and_trailing_dot(c: Cluster) -> None:
    ans = c.ask("WeB.DeFault.SVC.Cluster.Local")
    assert values(ans) == ["10.96.0.20"]
    assert str(ans.answer[0].rname) == "WeB.DeFault.SVC.Cluster.Local."  # the question's case


def test_dual_stack_and_ipv6(c: Cluster) -> None:
    assert values(c.ask("dual.default.svc.cluster.local")) == ["10.96.0.21"]
    assert values(c.ask("dual.default.svc.cluster.local", "AAAA")) == ["fd00::21"]
    assert values(c.ask("v6.default.svc.cluster.local", "AAAA")) == ["fd00::22"]
    assert_nodata(c.ask("v6.default.svc.cluster.local", "A"))


def test_unknown_names_are_nxdomain_with_soa(c: Cluster) -> None:
    for name in ("nope.default.svc.cluster.local", "web.nons.svc.cluster.local",
                 "web.default.what.cluster.local", "a.b.c.web.default.svc.cluster.local",
                 "x.web.default.svc.cluster.local", "foo.cluster.local"):
        assert_nxdomain(c.ask(name))
        assert_nxdomain(c.ask(name, "TXT"))


def test_existing_names_of_other_types_are_nodata(c: Cluster) -> None:
    for qtype in ("TXT", "MX", "PTR", "CNAME", "SOA"):
        assert_nodata(c.ask("web.default.svc.cluster.local", qtype))
    assert_nodata(c.ask("default.svc.cluster.local"))  # a namespace
    assert_nodata(c.ask("empty.svc.cluster.local"))   # a namespace without Services
    assert_nodata(c.ask("svc.cluster.local"))
    assert_nodata(c.ask("pod.cluster.local"))
    assert_nodata(c.ask("pending.default.svc.cluster.local"))  # no ClusterIP yet
    assert_nxdomain(c.ask("nons.svc.cluster.local"))


def test_nxdomain_before_sync_is_servfail(c: Cluster) -> None:
    c.is_synced = False
    assert c.ask("nope.default.svc.cluster.local").rcode == RCODE.SERVFAIL
    assert values(c.ask("web.default.svc.cluster.local")) == ["10.96.0.20"]


def test_headless_service_answers_ready_endpoints(c: Cluster) -> None:
    ans = c.ask("db.default.svc.cluster.local")
    assert values(ans) == ["10.1.0.1", "10.1.0.2", "10.1.0.4"]  # ready unknown counts
    assert_nxdomain(c.ask("lonely.default.svc.cluster.local"))  # no ready endpoints
    # a slice of another namespace's same-named Service does not count
    c.slices.add(eslice("db-x", "db", [ep("10.9.9.9")], ns="kube-system"))
    assert "10.9.9.9" not in values(c.ask("db.default.svc.cluster.local"))


def test_endpoint_hostnames(c: Cluster) -> None:
    assert values(c.ask("db-0.db.default.svc.cluster.local")) == ["10.1.0.1"]
    assert values(c.ask("DB-0.db.default.svc.cluster.local")) == ["10.1.0.1"]
    assert values(c.ask("10-1-0-2.db.default.svc.cluster.local")) == ["10.1.0.2"]
    # an endpoint with a hostname is not found by its dashed address
    assert_nxdomain(c.ask("10-1-0-1.db.default.svc.cluster.local"))
    assert_nxdomain(c.ask("10-1-0-3.db.default.svc.cluster.local"))  # not ready
    # endpoint names work for ClusterIP Services too (CoreDNS)
    assert values(c.ask("w0.web.default.svc.cluster.local")) == ["10.1.1.2"]
    assert_nodata(c.ask("db-0.db.default.svc.cluster.local", "AAAA"))


def test_srv_cluster_ip_service(c: Cluster) -> None:
    ans = c.ask("_http._tcp.web.default.svc.cluster.local", "SRV")
    assert values(ans) == ["0 100 80 web.default.svc.cluster.local."]
    assert [(str(r.rname), str(r.rdata)) for r in ans.additional] == [
        ("web.default.svc.cluster.local.", "10.96.0.20")]
    assert values(c.ask("_DNS._UDP.web.default.svc.cluster.local", "SRV")) == [
        "0 100 53 web.default.svc.cluster.local."]
    assert values(c.ask("dns.udp.web.default.svc.cluster.local", "SRV")) == [
        "0 100 53 web.default.svc.cluster.local."]  # underscores are optional
    assert_nxdomain(c.ask("_http._udp.web.default.svc.cluster.local", "SRV"))
    assert_nxdomain(c.ask("_nope._tcp.web.default.svc.cluster.local", "SRV"))
    # the name without port and protocol: every port
    assert values(c.ask("web.default.svc.cluster.local", "SRV")) == [
        "0 50 53 web.default.svc.cluster.local.", "0 50 80 web.default.svc.cluster.local."]
    # an A query for the SRV name answers the address
    assert values(c.ask("_http._tcp.web.default.svc.cluster.local")) == ["10.96.0.20"]


def test_srv_headless_service(c: Cluster) -> None:
    ans = c.ask("_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert values(ans) == ["0 33 5432 10-1-0-2.db.default.svc.cluster.local.",
                           "0 33 5432 10-1-0-4.db.default.svc.cluster.local.",
                           "0 33 5432 db-0.db.default.svc.cluster.local."]
    assert sorted((str(r.rname), str(r.rdata)) for r in ans.additional) == [
        ("10-1-0-2.db.default.svc.cluster.local.", "10.1.0.2"),
        ("10-1-0-4.db.default.svc.cluster.local.", "10.1.0.4"),
        ("db-0.db.default.svc.cluster.local.", "10.1.0.1")]


def test_srv_of_dual_stack_service_has_both_glue_records(c: Cluster) -> None:
    ans = c.ask("_http._tcp.dual.default.svc.cluster.local", "SRV")
    assert values(ans) == ["0 100 80 dual.default.svc.cluster.local."]
    assert sorted(str(r.rdata) for r in ans.additional) == ["10.96.0.21", "fd00::21"]


def test_headless_service_without_ports_still_answers_a(c: Cluster) -> None:
    c.services.add(svc("bare", ip="None", ports=[]))
    c.slices.add(eslice("bare-1", "bare", [ep("10.1.2.1")], ports=[]))
    assert values(c.ask("bare.default.svc.cluster.local")) == ["10.1.2.1"]
    assert_nodata(c.ask("bare.default.svc.cluster.local", "SRV"))


def test_external_name(c: Cluster) -> None:
    ans = c.ask("ext.default.svc.cluster.local")
    assert [(QTYPE[r.rtype], str(r.rdata)) for r in ans.answer] == [("CNAME", "example.com.")]
    assert ans.chase == "example.com"  # the server resolves it upstream
    assert values(c.ask("ext.default.svc.cluster.local", "CNAME")) == ["example.com."]
    assert_nodata(c.ask("ext.default.svc.cluster.local", "SRV"))
    assert_nxdomain(c.ask("x.ext.default.svc.cluster.local"))


def test_external_name_in_the_zone_is_followed(c: Cluster) -> None:
    ans = c.ask("alias.default.svc.cluster.local")
    assert [(QTYPE[r.rtype], str(r.rdata)) for r in ans.answer] == [
        ("CNAME", "web.default.svc.cluster.local."), ("A", "10.96.0.20")]
    assert ans.chase is None
    # a CNAME loop ends
    c.services.add(svc("loop", ip=None, type="ExternalName",
                       externalName="loop.default.svc.cluster.local"))
    ans = c.ask("loop.default.svc.cluster.local")
    assert 1 < len(ans.answer) <= 10 and ans.rcode == RCODE.NOERROR


def test_pod_names(c: Cluster) -> None:
    assert values(c.ask("10-244-1-7.default.pod.cluster.local")) == ["10.244.1.7"]
    assert values(c.ask("fd00--7.default.pod.cluster.local", "AAAA")) == ["fd00::7"]
    assert_nodata(c.ask("10-244-1-7.default.pod.cluster.local", "AAAA"))
    assert_nxdomain(c.ask("10-244-1-7.nons.pod.cluster.local"))
    assert_nxdomain(c.ask("not-an-ip.default.pod.cluster.local"))
    assert_nxdomain(c.ask("1-2-3-400.default.pod.cluster.local"))
    assert_nxdomain(c.ask("x.10-244-1-7.default.pod.cluster.local"))
    assert_nodata(c.ask("default.pod.cluster.local"))


def test_apex_version_and_nameserver(c: Cluster) -> None:
    ans = c.ask("cluster.local", "SOA")
    assert [QTYPE[r.rtype] for r in ans.answer] == ["SOA"]
    assert str(ans.answer[0].rdata).startswith("ns.dns.cluster.local. hostmaster.cluster.local.")
    ans = c.ask("cluster.local", "NS")
    assert values(ans) == ["ns.dns.cluster.local."]
    assert [str(r.rdata) for r in ans.additional] == ["10.96.0.10"]
    assert values(c.ask("ns.dns.cluster.local")) == ["10.96.0.10"]
    assert_nodata(c.ask("cluster.local", "A"))
    ans = c.ask("dns-version.cluster.local", "TXT")
    assert values(ans) == ['"1.1.0"']


def test_reverse_lookups(c: Cluster) -> None:
    ans = c.ask("20.0.96.10.in-addr.arpa.", "PTR")
    assert values(ans) == ["web.default.svc.cluster.local."]
    assert values(c.ask("1.0.1.10.in-addr.arpa", "PTR")) == ["db-0.db.default.svc.cluster.local."]
    assert values(c.ask("2.0.1.10.IN-ADDR.ARPA", "PTR")) == [
        "10-1-0-2.db.default.svc.cluster.local."]
    v6 = ".".join(reversed("fd000000000000000000000000000021")) + ".ip6.arpa"
    assert values(c.ask(v6, "PTR")) == ["dual.default.svc.cluster.local."]
    # not ready, unknown or partial: not ours (forwarded upstream)
    for name in ("3.0.1.10.in-addr.arpa", "9.9.9.10.in-addr.arpa", "1.10.in-addr.arpa"):
        assert c.records.lookup(name, QTYPE.PTR) is None
    assert c.ask("20.0.96.10.in-addr.arpa.", "A").answer == []


def test_odd_labels_in_the_zone_are_nxdomain(c: Cluster) -> None:
    for labels in ((b"web.default", b"svc", b"cluster", b"local"),
                   (b"w\xc3\xa9b", b"default", b"svc", b"cluster", b"local")):
        ans = c.records.lookup(DNSLabel(labels), QTYPE.A)
        assert ans is not None
        assert_nxdomain(ans)
    odd_zone = (b"web", b"default", b"svc", b"cluster", b"local\x00")
    assert c.records.lookup(DNSLabel(odd_zone), QTYPE.A) is None  # not the zone at all


def test_names_outside_the_zone_are_not_ours(c: Cluster) -> None:
    for name in ("example.com", "cluster.local.example.com", "local", "."):
        assert c.records.lookup(name, QTYPE.A) is None


def test_other_zone_name() -> None:
    c = Cluster()
    c.records = ClusterRecords(c.services, c.slices, c.namespaces, zone="Corp.Example.")
    c.services.add(svc("web"))
    assert values(c.ask("web.default.svc.corp.example")) == ["10.96.0.20"]
    assert c.records.lookup("web.default.svc.cluster.local", QTYPE.A) is None


def test_services_and_slices_change(c: Cluster) -> None:
    c.services.delete("default/web")
    assert_nxdomain(c.ask("web.default.svc.cluster.local"))
    c.slices.delete("default/db-1")
    assert_nxdomain(c.ask("db.default.svc.cluster.local"))
    assert c.records.lookup("1.0.1.10.in-addr.arpa", QTYPE.PTR) is None


def test_reverse_ip() -> None:
    assert reverse_ip(["4", "3", "2", "1", "in-addr", "arpa"]) == "1.2.3.4"
    assert reverse_ip(["4", "3", "2", "in-addr", "arpa"]) is None
    assert reverse_ip(["x", "3", "2", "1", "in-addr", "arpa"]) is None
    assert reverse_ip(list("1" + "0" * 31) + ["ip6", "arpa"]) == "::1"
