"""Endpoints and EndpointSlices from Services × pods in a real `pyk8s up`, with real
kubectl. `FakeKubelet` (tests/e2e/fake_kubelet.py) binds the pods to a node and marks them
Running / Ready with an IP, as a scheduler and a kubelet would."""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterator, TypeVar

import pytest

from tests.conftest import ServerProcess
from tests.e2e.fake_kubelet import FakeKubelet, create_node

T = TypeVar("T")
NS = "ep-e2e"
NODE = "node-1"
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    up = ServerProcess(tmp_path_factory.mktemp("pyk8s-ep"), command="up",
                       ready_log="endpointslice-controller: synced").start(timeout=40)
    try:
        up.kubectl("create", "namespace", NS)
        create_node(up, NODE, zone="zone-a")
        yield up
    finally:
        up.stop()


@pytest.fixture
def kubelet(cluster: ServerProcess) -> Iterator[FakeKubelet]:
    with FakeKubelet(cluster, NS, node=NODE) as k:
        yield k


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            v = fn()
        except (KeyError, IndexError, TypeError) as e:
            v, last = None, e
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} ({last!r})")
        time.sleep(0.05)


def pod(name: str, app: str, port_name: str = "web", port: int = 8080) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "nginx",
                                 "ports": [{"name": port_name, "containerPort": port}]}]}})


def service(name: str, app: str | None, *, publish: bool = False,
            ports: list[dict[str, Any]] | None = None, labels: dict[str, str] | None = None
            ) -> str:
    spec: dict[str, Any] = {"ports": ports or [{"name": "http", "port": 80,
                                                "targetPort": "web"}]}
    if app is not None:
        spec["selector"] = {"app": app}
    if publish:
        spec["publishNotReadyAddresses"] = True
    md: dict[str, Any] = {"name": name, "namespace": NS}
    if labels:
        md["labels"] = labels
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": md, "spec": spec})


def endpoints(c: ServerProcess, name: str) -> dict[str, Any] | None:
    r = c.get(f"/api/v1/namespaces/{NS}/endpoints/{name}")
    return r.json() if r.status == 200 else None


def slices(c: ServerProcess, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = c.get(
        f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices?labelSelector="
        f"kubernetes.io%2Fservice-name%3D{name}").json()["items"]
    return items


def addresses(ep: dict[str, Any] | None, key: str = "addresses") -> dict[str, int]:
    """{pod name: port} of the ready (or not ready) addresses."""
    out = {}
    for ss in (ep or {}).get("subsets") or []:
        for a in ss.get(key) or []:
            for p in ss.get("ports") or [{"port": 0}]:
                out[a["targetRef"]["name"]] = p["port"]
    return out


def slice_endpoints(c: ServerProcess, name: str) -> dict[str, dict[str, Any]]:
    return {e["targetRef"]["name"]: e for s in slices(c, name) for e in s.get("endpoints") or []}


def test_endpoints_follow_readiness_with_named_ports(cluster: ServerProcess,
                                                     kubelet: FakeKubelet) -> None:
    cluster.kubectl("apply", "-f", "-", input=service("web", "web", labels={"tier": "front"}))
    cluster.kubectl("apply", "-f", "-", input=pod("web-a", "web", port=8080))
    cluster.kubectl("apply", "-f", "-", input=pod("web-b", "web", port=9090))
    cluster.kubectl("apply", "-f", "-", input=pod("web-c", "web", port_name="other"))
    ep = wait_for("2 ready addresses", lambda: (e := endpoints(cluster, "web")) and
                  addresses(e) == {"web-a": 8080, "web-b": 9090} and e)
    assert ep["metadata"]["labels"] == {"tier": "front"}
    subsets = ep["subsets"]
    assert len(subsets) == 2  # one per distinct port
    for ss in subsets:
        [addr] = ss["addresses"]
        assert addr["ip"] == kubelet.ip_of(addr["targetRef"]["name"])
        assert addr["nodeName"] == NODE
        assert addr["targetRef"]["kind"] == "Pod" and addr["targetRef"]["namespace"] == NS
        [port] = ss["ports"]
        assert (port["name"], port["protocol"]) == ("http", "TCP")
    out = cluster.kubectl("get", "endpoints", "web", "-n", NS).stdout
    ips = sorted(f"{kubelet.ip_of(n)}:{p}" for n, p in (("web-a", 8080), ("web-b", 9090)))
    assert all(ip in out for ip in ips), out
    # EndpointSlices: one per port set, managed by the controller, owned by the Service.
    svc = cluster.get(f"/api/v1/namespaces/{NS}/services/web").json()
    # web-c lacks the named port: left out of the Endpoints, but (as upstream) in a slice
    # of its own, without ports.
    ss = wait_for("3 slices", lambda: (s := slices(cluster, "web")) and len(s) == 3 and
                  all(x.get("endpoints") for x in s) and s)
    [portless] = [s for s in ss if not s.get("ports")]
    assert [e["targetRef"]["name"] for e in portless["endpoints"]] == ["web-c"]
    for s in ss:
        if s is portless:
            continue
        md = s["metadata"]
        assert md["name"].startswith("web-")
        assert md["labels"] == {SERVICE_NAME: "web", MANAGED_BY:
                                "endpointslice-controller.k8s.io", "tier": "front"}
        assert md["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                          "uid": svc["metadata"]["uid"], "controller": True,
                                          "blockOwnerDeletion": True}]
        assert s["addressType"] == "IPv4"
        [e] = s["endpoints"]
        [p] = s["ports"]
        assert (p["name"], p["protocol"], p["port"]) == \
            ("http", "TCP", {"web-a": 8080, "web-b": 9090}[e["targetRef"]["name"]])
        assert e["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert e["nodeName"] == NODE and e["zone"] == "zone-a"
        assert e["addresses"] == [kubelet.ip_of(e["targetRef"]["name"])]
    # A pod that stops being ready moves to notReadyAddresses.
    kubelet.set_ready("web-a", False)
    ep = wait_for("web-a not ready", lambda: (e := endpoints(cluster, "web")) and
                  addresses(e, "notReadyAddresses") == {"web-a": 8080} and e)
    assert addresses(ep) == {"web-b": 9090}
    e = wait_for("the slice to follow", lambda: (x := slice_endpoints(cluster, "web")["web-a"])
                 and not x["conditions"]["ready"] and x)
    assert e["conditions"] == {"ready": False, "serving": False, "terminating": False}
    kubelet.set_ready("web-a", True)
    wait_for("web-a ready again", lambda: addresses(endpoints(cluster, "web")) ==
             {"web-a": 8080, "web-b": 9090})
    # A pod changing labels leaves the Service.
    cluster.kubectl("label", "pod", "web-b", "-n", NS, "app=elsewhere", "--overwrite")
    wait_for("web-b gone", lambda: addresses(endpoints(cluster, "web")) == {"web-a": 8080})
    wait_for("its slice gone", lambda: set(slice_endpoints(cluster, "web")) == {"web-a", "web-c"}
             and len(slices(cluster, "web")) == 2)


def test_terminating_pods_and_publish_not_ready_addresses(cluster: ServerProcess,
                                                          kubelet: FakeKubelet) -> None:
    cluster.kubectl("apply", "-f", "-", input=service("strict", "term"))
    cluster.kubectl("apply", "-f", "-", input=service("all", "term", publish=True))
    for name in ("term-a", "term-b"):
        cluster.kubectl("apply", "-f", "-", input=pod(name, "term"))
    wait_for("both ready", lambda: addresses(endpoints(cluster, "strict")) ==
             {"term-a": 8080, "term-b": 8080})
    kubelet.hold_terminating()
    cluster.kubectl("delete", "pod", "term-a", "-n", NS, "--wait=false")
    wait_for("term-a terminating", lambda: cluster.get(
        f"/api/v1/namespaces/{NS}/pods/term-a").json()["metadata"].get("deletionTimestamp"))
    wait_for("strict drops term-a", lambda: (e := endpoints(cluster, "strict")) and
             addresses(e) == {"term-b": 8080} and not addresses(e, "notReadyAddresses"))
    e = wait_for("the slice says terminating",
                 lambda: (x := slice_endpoints(cluster, "strict")["term-a"]) and
                 x["conditions"]["terminating"] and x)
    assert e["conditions"] == {"ready": False, "serving": True, "terminating": True}
    # publishNotReadyAddresses keeps it, ready.
    wait_for("all keeps term-a", lambda: addresses(endpoints(cluster, "all")) ==
             {"term-a": 8080, "term-b": 8080})
    e = wait_for("all's slice", lambda: (x := slice_endpoints(cluster, "all")["term-a"])
                 ["conditions"]["terminating"] and x)
    assert e["conditions"] == {"ready": True, "serving": True, "terminating": True}
    # A not-ready pod is a ready address with publishNotReadyAddresses.
    kubelet.set_ready("term-b", False)
    wait_for("strict: term-b not ready", lambda: addresses(
        endpoints(cluster, "strict"), "notReadyAddresses") == {"term-b": 8080})
    assert addresses(endpoints(cluster, "all")) == {"term-a": 8080, "term-b": 8080}
    kubelet.hold_terminating(False)
    wait_for("term-a gone", lambda: "term-a" not in slice_endpoints(cluster, "all") and
             addresses(endpoints(cluster, "all")) == {"term-b": 8080})


def test_service_without_selector_is_left_alone(cluster: ServerProcess,
                                                kubelet: FakeKubelet) -> None:
    cluster.kubectl("apply", "-f", "-", input=service(
        "external", None, ports=[{"name": "db", "port": 5432}]))
    manual = {"apiVersion": "v1", "kind": "Endpoints",
              "metadata": {"name": "external", "namespace": NS},
              "subsets": [{"addresses": [{"ip": "192.0.2.10"}],
                           "ports": [{"name": "db", "port": 5432}]}]}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manual))
    cluster.kubectl("apply", "-f", "-", input=pod("ext-pod", "external"))
    time.sleep(1.0)
    ep = endpoints(cluster, "external")
    assert ep is not None
    assert ep["subsets"] == [{"addresses": [{"ip": "192.0.2.10"}],
                              "ports": [{"name": "db", "port": 5432, "protocol": "TCP"}]}]
    assert slices(cluster, "external") == []


def test_headless_service_and_placeholder_slice(cluster: ServerProcess,
                                                kubelet: FakeKubelet) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "headless", "namespace": NS},
        "spec": {"clusterIP": "None", "selector": {"app": "nobody"}}}))
    # No pods: an empty Endpoints object and an empty placeholder slice.
    ep = wait_for("the Endpoints", lambda: endpoints(cluster, "headless"))
    assert not ep.get("subsets")
    assert ep["metadata"]["labels"] == {"service.kubernetes.io/headless": ""}
    [s] = wait_for("the placeholder", lambda: slices(cluster, "headless"))
    assert s["addressType"] == "IPv4"  # the Service's ipFamilies
    assert not s.get("endpoints") and not s.get("ports")
    assert s["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    # A headless Service without ports lists its pods' addresses alone.
    cluster.kubectl("apply", "-f", "-", input=pod("lonely", "nobody"))
    wait_for("the address", lambda: (e := endpoints(cluster, "headless")) and
             [a["targetRef"]["name"] for a in e["subsets"][0]["addresses"]] == ["lonely"] and
             "ports" not in e["subsets"][0])
    [s] = wait_for("the slice", lambda: (x := slices(cluster, "headless")) and
                   x[0].get("endpoints") and x)
    assert s["ports"] == [] or "ports" not in s
    assert [e["targetRef"]["name"] for e in s["endpoints"]] == ["lonely"]


def test_deleting_the_service_removes_endpoints_and_slices(cluster: ServerProcess,
                                                           kubelet: FakeKubelet) -> None:
    cluster.kubectl("apply", "-f", "-", input=service("brief", "brief"))
    cluster.kubectl("apply", "-f", "-", input=pod("brief-a", "brief"))
    wait_for("an address", lambda: addresses(endpoints(cluster, "brief")) == {"brief-a": 8080})
    wait_for("a slice", lambda: slice_endpoints(cluster, "brief"))
    cluster.kubectl("delete", "service", "brief", "-n", NS)
    wait_for("Endpoints and slices gone", lambda: endpoints(cluster, "brief") is None and
             not slices(cluster, "brief"))
