"""kubectl 1.32 and 1.33 send protobuf bodies from their typed clients; the server decodes
them into the objects upstream would create.

Each `kubectl create …` runs twice: with `--dry-run=client -o json` (the object kubectl
builds, as JSON) and for real; the stored object must contain everything the dry run
printed (the server adds defaults, uid, resourceVersion, clusterIP…). Endpoints that do not
exist yet (serviceaccounts/token, selfsubjectaccessreviews, pods/eviction) must answer a
clear 404 Status, not 415: decoding their bodies works (tests/api/test_protobuf.py).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pyk8s.api.protobuf import encode_object
from tests.conftest import ServerProcess

KUBECTLS = {v: f"/usr/lib/google-cloud-sdk/bin/kubectl.{v}" for v in ("1.32", "1.33")}
FIXTURES = Path(__file__).resolve().parent.parent / "api" / "protobuf_fixtures"
PROTOBUF = "application/vnd.kubernetes.protobuf"


# (kubectl arguments; {ns} and {v} (a per-version suffix) are filled in). Namespaced
# commands get `-n {ns}`.
CREATES: list[list[str]] = [
    ["create", "configmap", "cm1", "--from-literal=a=b", "--from-literal=c=d"],
    ["create", "secret", "generic", "s1", "--from-literal=pw=s3cr3t", "--from-literal=e="],
    ["create", "secret", "docker-registry", "reg1", "--docker-server=r.example.com",
     "--docker-username=u", "--docker-password=p", "--docker-email=u@example.com"],
    ["create", "serviceaccount", "sa1"],
    ["create", "service", "clusterip", "svc1", "--tcp=80:8080", "--tcp=443:https"],
    ["create", "service", "clusterip", "hl", "--clusterip=None"],
    ["create", "service", "nodeport", "np1", "--tcp=80:8080"],
    ["create", "service", "loadbalancer", "lb1", "--tcp=80"],
    ["create", "service", "externalname", "ex1", "--external-name=example.com"],
    ["create", "deployment", "web", "--image=nginx", "--replicas=3", "--port=80"],
    ["create", "deployment", "sleeper", "--image=busybox", "--replicas=0", "--",
     "sleep", "3600"],
    ["create", "cronjob", "cj1", "--image=busybox", "--schedule=*/5 * * * *",
     "--restart=OnFailure", "--", "date"],
    ["create", "job", "j1", "--image=busybox", "--", "echo", "hi"],
    ["create", "job", "j2", "--from=cronjob/cj1"],
    ["create", "role", "r1", "--verb=get,list,watch", "--resource=pods,deployments.apps",
     "--resource-name=a"],
    ["create", "rolebinding", "rb1", "--role=r1", "--user=alice", "--group=devs",
     "--serviceaccount={ns}:sa1"],
    ["create", "clusterrole", "cr1-{v}", "--verb=get,list", "--resource=nodes"],
    ["create", "clusterrole", "cr2-{v}", "--verb=get", "--non-resource-url=/healthz"],
    ["create", "clusterrolebinding", "crb1-{v}", "--clusterrole=cr1-{v}", "--user=bob",
     "--serviceaccount={ns}:sa1"],
    ["create", "quota", "q1", "--hard=cpu=500m,memory=1Gi,pods=2", "--scopes=NotBestEffort"],
    ["create", "priorityclass", "pc1-{v}", "--value=1000", "--description=high",
     "--preemption-policy=Never"],
    ["create", "poddisruptionbudget", "pdb1", "--selector=app=web", "--min-available=1"],
    ["create", "pdb", "pdb2", "--selector=app=web", "--max-unavailable=50%"],
    ["create", "ingress", "ing1", "--class=nginx", "--rule=foo.com/bar=svc1:80,tls=my-cert",
     "--default-backend=svc1:80"],
    ["autoscale", "deployment", "web", "--min=2", "--max=5", "--cpu-percent=80"],
]
CLUSTER_SCOPED = ("clusterrole", "clusterrolebinding", "priorityclass")
# What a command needs first (when tests of this module run apart, e.g. under xdist).
NEEDS = {"autoscale": next(c for c in CREATES if c[:3] == ["create", "deployment", "web"]),
         "j2": next(c for c in CREATES if c[:3] == ["create", "cronjob", "cj1"])}


def kubectl(server: ServerProcess, version: str, *args: str,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(server.data_dir))
    p = subprocess.run([KUBECTLS[version], "--kubeconfig", str(server.kubeconfig), *args],
                       capture_output=True, text=True, env=env, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"kubectl {version} {' '.join(args)} failed ({p.returncode}):\n"
                             f"{p.stdout}\n{p.stderr}")
    return p


def fill(args: list[str], ns: str, v: str) -> list[str]:
    out = [a.replace("{ns}", ns).replace("{v}", v) for a in args]
    if out[1] not in CLUSTER_SCOPED:
        out[1:1] = ["-n", ns]
    return out


def with_dry_run(args: list[str]) -> list[str]:
    cut = args.index("--") if "--" in args else len(args)
    return args[:cut] + ["--dry-run=client", "-o", "json"] + args[cut:]


def is_zero(value: Any) -> bool:
    """A Go zero value as json.Marshal prints it (`"status": {"loadBalancer": {}}`,
    `{"currentHealthy": 0, …}`): the server need not store it, absent means the same."""
    if isinstance(value, dict):
        return all(map(is_zero, value.values()))
    return value in (None, 0, "", False, [])


def assert_contains(expected: Any, actual: Any, path: str = "") -> None:
    """Everything kubectl built is in the stored object (which may hold more)."""
    if expected is None:
        assert actual in (None, [], {}), f"{path}: expected null, got {actual!r}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for k, v in expected.items():
            if is_zero(v) and k not in actual:
                continue
            assert k in actual, f"{path}.{k} missing from {actual!r}"
            assert_contains(v, actual[k], f"{path}.{k}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), \
            f"{path}: {actual!r} != {expected!r}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_contains(e, a, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


@pytest.fixture(scope="module", params=sorted(KUBECTLS))
def version_ns(request: pytest.FixtureRequest, server: ServerProcess) -> tuple[str, str]:
    version = request.param
    ns = "pb-" + version.replace(".", "")
    kubectl(server, version, "create", "namespace", ns)  # itself a protobuf POST
    return version, ns


def test_create_namespace(server: ServerProcess, version_ns: tuple[str, str]) -> None:
    version, ns = version_ns
    got = json.loads(kubectl(server, version, "get", "namespace", ns, "-o", "json").stdout)
    assert got["metadata"]["name"] == ns and got["status"]["phase"] == "Active"


@pytest.mark.parametrize("args", CREATES, ids=[" ".join(a[:3]) for a in CREATES])
def test_create_stores_what_kubectl_built(server: ServerProcess, version_ns: tuple[str, str],
                                          args: list[str]) -> None:
    version, ns = version_ns
    v = version.replace(".", "")
    for key, needed in NEEDS.items():
        if key in args:
            kubectl(server, version, *fill(needed, ns, v), check=False)  # may exist already
    argv = fill(args, ns, v)
    want = json.loads(kubectl(server, version, *with_dry_run(argv)).stdout)
    kubectl(server, version, *argv)
    kind = want["kind"].lower()
    group = want["apiVersion"].split("/")[0] if "/" in want["apiVersion"] else ""
    resource = f"{kind}.{want['apiVersion'].split('/')[1]}.{group}" if group else kind
    get = ["get", resource, want["metadata"]["name"], "-o", "json"]
    if args[1] not in CLUSTER_SCOPED:
        get[1:1] = ["-n", ns]
    got = json.loads(kubectl(server, version, *get).stdout)
    want["metadata"].pop("creationTimestamp")
    assert got["metadata"]["creationTimestamp"]
    assert_contains(want, got)


def test_create_token(server: ServerProcess, version_ns: tuple[str, str]) -> None:
    version, ns = version_ns
    kubectl(server, version, "create", "serviceaccount", "tok", "-n", ns)
    token = kubectl(server, version, "create", "token", "tok", "-n", ns, "--duration=1h").stdout.strip()
    assert server.get("/api", token=token).status == 200
    r = server.post(f"/api/v1/namespaces/{ns}/serviceaccounts/tok/token",
                    raw=(FIXTURES / version / "token.bin").read_bytes(), content_type=PROTOBUF)
    assert r.status == 201 and r.json()["status"]["token"], r


def test_auth_can_i(server: ServerProcess, version_ns: tuple[str, str]) -> None:
    version, ns = version_ns
    p = kubectl(server, version, "auth", "can-i", "list", "pods", "-n", ns)
    assert p.stdout.strip() == "yes"
    r = server.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                    raw=(FIXTURES / version / "auth-can-i.bin").read_bytes(),
                    content_type=PROTOBUF)
    assert r.status == 201 and r.json()["status"]["allowed"] is True, r


def test_eviction_is_a_clear_404(server: ServerProcess, version_ns: tuple[str, str]) -> None:
    _, ns = version_ns
    eviction = encode_object({"kind": "Eviction", "apiVersion": "policy/v1",
                              "metadata": {"name": "p", "namespace": ns},
                              "deleteOptions": {"gracePeriodSeconds": 0}})
    r = server.post(f"/api/v1/namespaces/{ns}/pods/p/eviction", raw=eviction,
                    content_type=PROTOBUF)
    assert r.status == 404 and r.json()["reason"] == "NotFound", r


def test_drain_deletes_with_protobuf_delete_options(server: ServerProcess,
                                                    version_ns: tuple[str, str]) -> None:
    """Without pods/eviction in discovery, drain DELETEs each pod with a protobuf
    DeleteOptions body; gracePeriodSeconds=0 is a set *int64 and deletes at once."""
    version, ns = version_ns
    node = f"node-{ns}"
    server.post("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                  "metadata": {"name": node}})
    r = server.post(f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "drained", "namespace": ns},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}})
    assert r.status == 201, r
    kubectl(server, version, "drain", node, "--force", "--grace-period=0", "--timeout=20s")
    assert server.get(f"/api/v1/namespaces/{ns}/pods/drained").status == 404
    assert server.get(f"/api/v1/nodes/{node}").json()["spec"]["unschedulable"] is True


def test_unknown_kind_is_415_naming_it(server: ServerProcess,
                                       version_ns: tuple[str, str]) -> None:
    _, ns = version_ns
    type_meta = b"\x0a\x0eexample.com/v1\x12\x06Widget"
    raw = b"k8s\x00\x0a" + bytes([len(type_meta)]) + type_meta + b"\x12\x00"
    r = server.post(f"/api/v1/namespaces/{ns}/configmaps", raw=raw, content_type=PROTOBUF)
    assert r.status == 415 and "Widget" in r.json()["message"], r


def test_protobuf_only_accept_is_406(server: ServerProcess,
                                     version_ns: tuple[str, str]) -> None:
    _, ns = version_ns
    r = server.get(f"/api/v1/namespaces/{ns}/configmaps", headers={"Accept": PROTOBUF})
    assert r.status == 406, r
