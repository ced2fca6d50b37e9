"""Two clusters side by side on one host (issue 19, point 3), each with its own bridge, pod
CIDR and service range: both serve their Services, and stopping one leaves the other's
Services working (its chains and jumps untouched). Traffic goes only to cluster IPs that
each cluster's proxy sends to pods on the test's own bridges."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from pyk8s.proxy.component import default_chain_prefix
from pyk8s.proxy.iptables import chains_in_save
from tests.conftest import ServerProcess, needs_root, wait_for
from tests.e2e.test_oci_runtime import http_get, oci_up
from tests.registry import registry  # noqa: F401  (the session's local registry)

pytestmark = needs_root


def _serve(up: ServerProcess, node: str, image: str) -> str:
    """An httpd pod answering /name with `node`, a Service in front; its cluster IP."""
    wait_for(f"node {node} Ready", lambda: " Ready " in up.kubectl(
        "get", "nodes", node, "--no-headers", check=False).stdout, timeout=30)
    up.kubectl("run", "web", f"--image={image}", "--labels=app=web", "--port=8080", "--",
               "sh", "-c", f"echo {node} > /var/www/name; exec httpd -f -p 8080 -h /var/www")
    up.kubectl("expose", "pod", "web", "--port=80", "--target-port=8080")
    try:
        wait_for("web Running", lambda: up.kubectl_json("get", "pod", "web")
                 .get("status", {}).get("phase") == "Running", timeout=60)
    except AssertionError as e:   # say why: the pod's events and the node's log
        raise AssertionError(f"{e}\n{up.kubectl('describe', 'pod', 'web').stdout}\n"
                             f"{up.log_path.read_text()[-4000:]}") from None
    return str(up.kubectl_json("get", "service", "web")["spec"]["clusterIP"])


def _answers(ip: str) -> str:
    try:
        return http_get(f"http://{ip}/name", timeout=2).strip()
    except OSError:
        return ""


def test_two_clusters_with_their_own_flags(registry: Any,  # noqa: F811
                                           tmp_path: Path) -> None:
    a, bridge_a = oci_up(tmp_path / "a", registry, "two-a")
    b, bridge_b = oci_up(tmp_path / "b", registry, "two-b")
    a.start(timeout=40)
    try:
        b.start(timeout=40)
        try:
            ip_a = _serve(a, "two-a", registry.image("busybox"))
            ip_b = _serve(b, "two-b", registry.image("busybox"))
            wait_for("a's service", lambda: _answers(ip_a) == "two-a", timeout=30)
            wait_for("b's service", lambda: _answers(ip_b) == "two-b", timeout=30)
            a.stop()
            save = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
            assert not chains_in_save(save, default_chain_prefix(bridge_a))
            assert chains_in_save(save, default_chain_prefix(bridge_b))
            assert _answers(ip_b) == "two-b"
        finally:
            b.stop()
    finally:
        a.stop()
