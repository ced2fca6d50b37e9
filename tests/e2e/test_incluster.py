"""In-cluster API access (issue 19, point 2): a pod of a real `pyk8s up` (oci runtime)
runs the official Python client with `config.load_incluster_config()`: it finds the API
server through the `kubernetes` Service (KUBERNETES_SERVICE_HOST / _PORT, the proxy's
rules to the advertised address) and authenticates with the projected
`kube-api-access-*` volume the ServiceAccount admission plugin injected (bound token,
kube-root-ca.crt, namespace). RBAC decides: 403 for the bare `default` account, the list
once a ClusterRoleBinding grants `view`.

The cluster advertises the gateway address of its own pod bridge (not the host's primary
address: tests send no traffic there) and listens on all addresses so that the address
answers. The container runs the test suite's own Python and client library, bind-mounted
read-only from the host into the busybox image."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, needs_root, wait_for
from tests.e2e.test_oci_runtime import apply, pod, running_oci_node
from tests.registry import registry  # noqa: F401  (the session's local registry)

pytestmark = needs_root

NODE = "incluster-1"

CLIENT_SCRIPT = """
import os
from kubernetes import client, config
config.load_incluster_config()
d = "/var/run/secrets/kubernetes.io/serviceaccount"
print("FILES", sorted(f for f in os.listdir(d) if not f.startswith("..")))
print("NAMESPACE", open(d + "/namespace").read())
print("HOST", os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
try:
    names = [n.metadata.name for n in client.CoreV1Api().list_namespace().items]
    print("NAMESPACES", ",".join(sorted(names)))
except client.ApiException as e:
    print("STATUS", e.status, e.reason, json.loads(e.body)["message"])
"""


def _host_python_mounts() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """hostPath volumes (and their mounts) that make this test run's Python, its venv and
    the host's shared libraries visible, read-only, at the same paths in the container."""
    paths = {"/usr/lib": ["/usr/lib", "/lib"], "/usr/lib64": ["/lib64"],
             sys.base_prefix: [sys.base_prefix], sys.prefix: [sys.prefix]}
    volumes, mounts = [], []
    for i, (host, targets) in enumerate(paths.items()):
        if not Path(host).is_dir():
            continue
        volumes.append({"name": f"host{i}", "hostPath": {"path": host, "type": "Directory"}})
        mounts += [{"name": f"host{i}", "mountPath": t, "readOnly": True} for t in targets]
    return volumes, mounts


@pytest.fixture(scope="module")
def cluster(registry: Any, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
            ) -> Iterator[tuple[ServerProcess, Any]]:
    octet = random.randint(100, 250)
    gateway = f"10.{octet}.0.1"     # the node's first /24's gateway on the pod bridge
    with running_oci_node(tmp_path_factory.mktemp("pyk8s-incluster"), registry, NODE,
                          "--cluster-cidr", f"10.{octet}.0.0/16", "--bind", "0.0.0.0",
                          "--advertise-address", gateway, "--node-ip", "127.0.0.1") as up:
        yield up, registry


def _run_client(up: ServerProcess, image: str, name: str) -> str:
    volumes, mounts = _host_python_mounts()
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "restartPolicy": "Never", "volumes": volumes,
        "containers": [{"name": "client", "image": image, "volumeMounts": mounts,
                        "command": [f"{sys.prefix}/bin/python3", "-c",
                                    "import json\n" + CLIENT_SCRIPT]}]}})
    wait_for(f"pod {name} to finish", lambda: pod(up, name).get("status", {}).get("phase")
             in ("Succeeded", "Failed"), timeout=60)
    out = up.kubectl("logs", name).stdout
    assert pod(up, name)["status"]["phase"] == "Succeeded", out
    return out


def test_pod_spec_gets_the_api_access_volume(cluster: tuple[ServerProcess, Any]) -> None:
    up, _ = cluster
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
               "spec": {"containers": [{"name": "c", "image": "nowhere/none:1"}]}})
    spec = pod(up, "plain")["spec"]
    [vol] = spec["volumes"]
    assert vol["name"].startswith("kube-api-access-")
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": vol["name"], "readOnly": True,
         "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    # the endpoint pods reach: the advertised address and the API server's port
    eps = json.loads(up.kubectl("get", "endpoints", "kubernetes", "-o", "json").stdout)
    [subset] = eps["subsets"]
    assert subset["ports"][0]["port"] == up.port and subset["addresses"][0]["ip"].endswith(".1")
    # an account that does not exist: upstream's refusal
    p = up.kubectl("run", "ghost", "--image=nowhere/none:1", "--overrides",
                   json.dumps({"spec": {"serviceAccountName": "ghost"}}), check=False)
    assert p.returncode != 0 and ('pods "ghost" is forbidden: error looking up service '
                                  'account default/ghost: serviceaccount "ghost" not found'
                                  in p.stderr), p.stderr
    up.kubectl("delete", "pod", "plain", "--wait=false")


def test_incluster_python_client_follows_rbac(cluster: tuple[ServerProcess, Any]) -> None:
    up, reg = cluster
    image = reg.image("busybox")
    out = _run_client(up, image, "client-denied")
    assert "FILES ['ca.crt', 'namespace', 'token']" in out, out
    assert "NAMESPACE default" in out, out
    assert ('STATUS 403 Forbidden namespaces is forbidden: User '
            '"system:serviceaccount:default:default" cannot list resource "namespaces" in '
            'API group "" at the cluster scope') in out, out
    up.kubectl("create", "clusterrolebinding", "default-view", "--clusterrole=view",
               "--serviceaccount=default:default")
    out = _run_client(up, image, "client-allowed")
    listed = next(line for line in out.splitlines() if line.startswith("NAMESPACES"))
    assert {"default", "kube-system", "kube-public"} <= set(listed.split()[1].split(",")), out
