"""The API server side of Services against real `pyk8s server` processes: cluster IPs and
node ports for every Service type, upstream's 422 texts for taken or out-of-range values,
values freed on delete and type changes, allocations kept across a restart and never handed
out twice by two API servers on one etcd, the `default/kubernetes` Service with its
endpoints, and real kubectl."""
from __future__ import annotations

import ipaddress
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import Response, ServerProcess, needs, wait_for
from tests.etcd_cluster import EtcdCluster, etcd_available

ADVERTISE = "192.0.2.10"   # TEST-NET-1: published, never dialled
SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/12")
MERGE = "application/merge-patch+json"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path_factory.mktemp("svc-api"),
                      extra=["--advertise-address", ADVERTISE]).start()
    try:
        yield s
    finally:
        s.stop()


def namespace(s: ServerProcess) -> str:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    assert s.post("/api/v1/namespaces", {"metadata": {"name": name}}).status == 201
    return name


def svc(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("ports", [{"port": 80}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def create(s: ServerProcess, ns: str, name: str, **spec: Any) -> Response:
    return s.post(f"/api/v1/namespaces/{ns}/services", svc(name, **spec))


def created(s: ServerProcess, ns: str, name: str, **spec: Any) -> dict[str, Any]:
    r = create(s, ns, name, **spec)
    assert r.status == 201, r
    return dict(r.json())


def message(r: Response) -> str:
    assert r.status == 422 and r.json()["reason"] == "Invalid", r
    return str(r.json()["message"])


def test_kubernetes_service_and_endpoints(srv: ServerProcess) -> None:
    k = srv.get("/api/v1/namespaces/default/services/kubernetes").json()
    assert k["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    assert (k["spec"]["clusterIP"], k["spec"]["clusterIPs"]) == ("10.96.0.1", ["10.96.0.1"])
    assert k["spec"]["ports"] == [{"name": "https", "protocol": "TCP", "port": 443,
                                   "targetPort": srv.port}]
    ep = srv.get("/api/v1/namespaces/default/endpoints/kubernetes").json()
    assert ep["subsets"] == [{"addresses": [{"ip": ADVERTISE}], "ports": [
        {"name": "https", "port": srv.port, "protocol": "TCP"}]}]
    slices = srv.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
                     "?labelSelector=kubernetes.io/service-name=kubernetes").json()["items"]
    assert [(x["metadata"]["name"], x["addressType"], x["endpoints"][0]["addresses"],
             x["ports"][0]["port"]) for x in slices] == [
        ("kubernetes", "IPv4", [ADVERTISE], srv.port)]
    out = srv.kubectl("get", "svc", "kubernetes", "-n", "default").stdout.split("\n")
    assert out[1].split()[:5] == ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    assert f"{ADVERTISE}:{srv.port}" in srv.kubectl("get", "endpoints", "kubernetes").stdout


def test_every_type_gets_what_it_needs(srv: ServerProcess) -> None:
    ns = namespace(srv)
    cip = created(srv, ns, "cip", selector={"app": "x"})
    assert ipaddress.ip_address(cip["spec"]["clusterIP"]) in SERVICE_RANGE
    assert cip["spec"]["clusterIPs"] == [cip["spec"]["clusterIP"]]
    np = created(srv, ns, "np", type="NodePort")
    assert 30000 <= np["spec"]["ports"][0]["nodePort"] <= 32767
    lb = created(srv, ns, "lb", type="LoadBalancer")
    assert lb["spec"]["ports"][0]["nodePort"] and lb["spec"]["allocateLoadBalancerNodePorts"]
    assert not (lb.get("status") or {}).get("loadBalancer", {}).get("ingress")   # pending
    headless = created(srv, ns, "headless", clusterIP="None", selector={"app": "x"})
    assert headless["spec"]["clusterIPs"] == ["None"]
    ext = created(srv, ns, "ext", type="ExternalName", externalName="db.example.com",
                  ports=[])
    assert "clusterIP" not in ext["spec"] and "nodePort" not in json.dumps(ext["spec"])
    ips = [x["spec"]["clusterIP"] for x in (cip, np, lb)] + ["10.96.0.1"]
    assert len(set(ips)) == 4
    # What the server stores is what a GET and a list return.
    got = srv.get(f"/api/v1/namespaces/{ns}/services/np").json()
    assert got["spec"]["ports"][0]["nodePort"] == np["spec"]["ports"][0]["nodePort"]
    listed = srv.get(f"/api/v1/namespaces/{ns}/services").json()["items"]
    assert sorted(x["metadata"]["name"] for x in listed) == ["cip", "ext", "headless", "lb",
                                                              "np"]


def test_conflicts_are_422_with_upstreams_texts(srv: ServerProcess) -> None:
    ns = namespace(srv)
    created(srv, ns, "a", clusterIP="10.96.0.40", type="NodePort",
            ports=[{"port": 80, "nodePort": 30080}])
    assert message(create(srv, ns, "b", clusterIP="1.2.3.4")) == (
        'Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"1.2.3.4"}: failed '
        "to allocate IP 1.2.3.4: the provided IP (1.2.3.4) is not in the valid range. The "
        "range of valid IPs is 10.96.0.0/12")
    r = create(srv, ns, "b", clusterIP="10.96.0.40")
    assert message(r) == ('Service "b" is invalid: spec.clusterIPs: Invalid value: '
                          '[]string{"10.96.0.40"}: failed to allocate IP 10.96.0.40: provided '
                          "IP is already allocated")
    assert r.json()["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec.clusterIPs",
        "message": 'Invalid value: []string{"10.96.0.40"}: failed to allocate IP 10.96.0.40: '
                   "provided IP is already allocated"}]
    assert message(create(srv, ns, "b", type="NodePort",
                          ports=[{"port": 80, "nodePort": 30080}])) == (
        'Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is '
        "already allocated")
    assert message(create(srv, ns, "b", type="NodePort",
                          ports=[{"port": 80, "nodePort": 29999}])) == (
        'Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 29999: provided port is '
        "not in the valid range. The range of valid ports is 30000-32767")
    # kubectl shows the same text.
    p = srv.kubectl("create", "service", "clusterip", "c", "-n", ns, "--clusterip=1.1.1.1",
                    "--tcp=80:80", check=False)
    assert p.returncode != 0 and "failed to allocate IP 1.1.1.1: the provided IP (1.1.1.1) " \
        "is not in the valid range. The range of valid IPs is 10.96.0.0/12" in p.stderr


def test_delete_frees_and_dry_run_keeps_nothing(srv: ServerProcess) -> None:
    ns = namespace(srv)
    body = svc("x", clusterIP="10.96.0.41", type="NodePort",
               ports=[{"port": 80, "nodePort": 30081}])
    r = srv.post(f"/api/v1/namespaces/{ns}/services?dryRun=All", body)
    assert r.status == 201 and r.json()["spec"]["clusterIP"] == "10.96.0.41"
    created(srv, ns, "x", clusterIP="10.96.0.41", type="NodePort",
            ports=[{"port": 80, "nodePort": 30081}])
    assert srv.delete(f"/api/v1/namespaces/{ns}/services/x").status == 200
    created(srv, ns, "y", clusterIP="10.96.0.41", type="NodePort",
            ports=[{"port": 80, "nodePort": 30081}])
    # A delete of the collection frees each Service's values.
    assert srv.delete(f"/api/v1/namespaces/{ns}/services?labelSelector=").status == 200
    held = svc("z", clusterIP="10.96.0.41")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    assert srv.post(f"/api/v1/namespaces/{ns}/services", held).status == 201
    # With a finalizer the delete only marks it: the IP stays taken until the update that
    # clears the finalizer removes the Service.
    assert srv.delete(f"/api/v1/namespaces/{ns}/services/z").status == 202
    assert "already allocated" in message(create(srv, ns, "w", clusterIP="10.96.0.41"))
    r = srv.patch(f"/api/v1/namespaces/{ns}/services/z", {"metadata": {"finalizers": None}},
                  MERGE)
    assert r.status == 200, r
    assert srv.get(f"/api/v1/namespaces/{ns}/services/z").status == 404
    created(srv, ns, "w", clusterIP="10.96.0.41")


def test_type_changes_free_and_allocate(srv: ServerProcess) -> None:
    ns = namespace(srv)
    path = f"/api/v1/namespaces/{ns}/services/t"
    a = created(srv, ns, "t", type="NodePort", ports=[{"port": 80, "nodePort": 30082}])
    ip = a["spec"]["clusterIP"]
    r = srv.patch(path, {"spec": {"type": "ClusterIP"}}, MERGE)
    assert r.status == 200, r
    assert "nodePort" not in r.json()["spec"]["ports"][0]
    created(srv, ns, "u", type="NodePort", ports=[{"port": 80, "nodePort": 30082}])
    r = srv.patch(path, {"spec": {"type": "ExternalName", "externalName": "example.com"}},
                  MERGE)
    assert r.status == 200 and "clusterIP" not in r.json()["spec"], r
    created(srv, ns, "v", clusterIP=ip)
    r = srv.patch(path, {"spec": {"type": "ClusterIP", "externalName": None}}, MERGE)
    assert r.status == 200, r
    new_ip = r.json()["spec"]["clusterIP"]
    assert new_ip != ip and ipaddress.ip_address(new_ip) in SERVICE_RANGE
    r = srv.patch(path, {"spec": {"type": "NodePort"}}, MERGE)
    assert r.status == 200 and r.json()["spec"]["ports"][0]["nodePort"], r
    # A PUT of the object without its allocated values keeps them.
    cur = srv.get(path).json()
    body = json.loads(json.dumps(cur))
    del body["spec"]["clusterIP"], body["spec"]["clusterIPs"]
    del body["spec"]["ports"][0]["nodePort"]
    r = srv.put(path, body)
    assert r.status == 200 and r.json()["spec"]["clusterIP"] == new_ip, r
    assert r.json()["spec"]["ports"][0]["nodePort"] == cur["spec"]["ports"][0]["nodePort"]


def test_kubectl_create_and_get(srv: ServerProcess) -> None:
    ns = namespace(srv)
    srv.kubectl("create", "service", "nodeport", "x", "-n", ns, "--tcp=80:8080")
    s = srv.kubectl_json("get", "svc", "x", "-n", ns)
    ip, port = s["spec"]["clusterIP"], s["spec"]["ports"][0]["nodePort"]
    assert ipaddress.ip_address(ip) in SERVICE_RANGE and 30000 <= port <= 32767
    assert s["spec"]["ports"][0]["targetPort"] == 8080
    out = srv.kubectl("get", "svc", "-n", ns).stdout.split("\n")
    assert out[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert out[1].split()[:5] == ["x", "NodePort", ip, "<none>", f"80:{port}/TCP"]
    srv.kubectl("create", "service", "loadbalancer", "lb", "-n", ns, "--tcp=443:8443")
    out = srv.kubectl("get", "svc", "lb", "-n", ns).stdout.split("\n")
    assert out[1].split()[1:4:2] == ["LoadBalancer", "<pending>"]
    srv.kubectl("delete", "svc", "x", "-n", ns)
    srv.kubectl("create", "service", "nodeport", "x2", "-n", ns, "--tcp=80:8080",
                f"--node-port={port}")


def test_restart_keeps_allocations(tmp_path: Path) -> None:
    s = ServerProcess(tmp_path / "restart", extra=["--service-cluster-ip-range",
                                                   "10.200.0.0/27"]).start()
    try:
        ns = namespace(s)
        first = [created(s, ns, f"a{i}", type="NodePort") for i in range(10)]
        k = s.get("/api/v1/namespaces/default/services/kubernetes").json()
        assert k["spec"]["clusterIP"] == "10.200.0.1"
        s.stop()
        s.start()
        assert s.get("/api/v1/namespaces/default/services/kubernetes").json()[
            "metadata"]["uid"] == k["metadata"]["uid"]
        taken = first[0]["spec"]["clusterIP"]
        assert "provided IP is already allocated" in message(create(s, ns, "dup",
                                                                    clusterIP=taken))
        # The /27 has 30 addresses: 1 for kubernetes, 10 above; 19 more fit, not 20.
        second = [created(s, ns, f"b{i}") for i in range(19)]
        ips = [x["spec"]["clusterIP"] for x in first + second] + ["10.200.0.1"]
        assert len(set(ips)) == 30
        r = create(s, ns, "full")
        assert r.status == 500 and r.json()["message"] == (
            "Internal error occurred: failed to allocate a serviceIP: range is full"), r
        ports = [x["spec"]["ports"][0]["nodePort"] for x in first]
        assert len(set(ports)) == 10
    finally:
        s.stop()


@needs(not etcd_available(), "etcd (etcd-server) is not installed")
def test_two_api_servers_on_one_etcd_never_share_a_value(tmp_path: Path) -> None:
    with EtcdCluster(1) as etcd:
        extra = ["--etcd-servers", etcd.endpoints, "--advertise-address", ADVERTISE]
        a = ServerProcess(tmp_path / "a", storage="etcd", extra=extra)
        b = ServerProcess(tmp_path / "b", storage="etcd", extra=extra)
        try:
            a.start()
            b.start()
            ns = namespace(a)
            wait_for("namespace on b", lambda: b.get(f"/api/v1/namespaces/{ns}").status == 200)

            def make(i: int) -> Response:
                s = a if i % 2 else b
                return create(s, ns, f"s{i}", type="NodePort")
            with ThreadPoolExecutor(16) as pool:
                results = list(pool.map(make, range(50)))
            assert all(r.status == 201 for r in results), [r for r in results
                                                           if r.status != 201][:3]
            ips = [r.json()["spec"]["clusterIP"] for r in results]
            ports = [r.json()["spec"]["ports"][0]["nodePort"] for r in results]
            assert len(set(ips)) == 50 and "10.96.0.1" not in ips
            assert len(set(ports)) == 50
            # A value taken through one server is taken for the other.
            assert "provided IP is already allocated" in message(
                create(b, ns, "dup", clusterIP=ips[1]))
            # One kubernetes Service; each server added itself to its endpoints.
            k = b.get("/api/v1/namespaces/default/services/kubernetes").json()
            assert k["spec"]["clusterIP"] == "10.96.0.1"
            ep = b.get("/api/v1/namespaces/default/endpoints/kubernetes").json()
            assert sorted(sub["ports"][0]["port"] for sub in ep["subsets"]) == sorted(
                [a.port, b.port])
            # Deleting through one server frees the value for the other.
            assert a.delete(f"/api/v1/namespaces/{ns}/services/s1").status == 200
            created(b, ns, "reuse", clusterIP=ips[1])
        finally:
            a.stop()
            b.stop()
