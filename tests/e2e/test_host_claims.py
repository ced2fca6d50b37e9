"""Two clusters on one host (issue 19, point 3): a node refuses at once, with the flags to
change, a pod bridge another cluster's node holds, and reports a pod CIDR another node on
the host holds as its network not being ready; a claim dies with its holder (kill -9)."""
from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path

import pytest

from pyk8s.kubelet.network.hostclaims import remove_stale
from pyk8s.kubelet.network.overlay import remove_leftovers as remove_overlay_leftovers
from pyk8s.kubelet.runtimes.oci import oci_available
from tests.conftest import ServerProcess, needs, needs_root, wait_for

pytestmark = [needs_root, needs(not oci_available(), "the oci runtime is not available")]


def _up(d: Path, node: str, bridge: str, cidr: str) -> ServerProcess:
    services = f"10.{random.randint(1, 90)}.0.0/16"
    return ServerProcess(d, command="up", local_node=True,
                         extra=["--node-name", node, "--runtime", "oci", "--cni-bridge", bridge,
                                "--cluster-cidr", cidr, "--service-cluster-ip-range", services,
                                "--disable-dns", "--proxy-mode", "none"])


def _ready_condition(up: ServerProcess, node: str) -> dict[str, str]:
    """The node's Ready condition ({} while the Node, just registered, has none)."""
    n = up.kubectl_json("get", "node", node)
    return next((c for c in (n.get("status") or {}).get("conditions") or []
                 if c["type"] == "Ready"), {})


def test_a_second_cluster_on_the_same_bridge_or_pod_cidr_is_refused(tmp_path: Path) -> None:
    bridge = f"pk8c{uuid.uuid4().hex[:6]}"
    cidr = f"10.{random.randint(100, 250)}.0.0/16"
    a = _up(tmp_path / "a", "claims-a", bridge, cidr).start(timeout=40)
    try:
        wait_for("node a Ready", lambda: _ready_condition(a, "claims-a").get("status") == "True",
                 timeout=30)
        # the same bridge: `up` stops at once, saying which flags pick another
        b = _up(tmp_path / "b", "claims-b", bridge, f"10.{random.randint(100, 250)}.0.0/16")
        try:
            try:
                b.start(timeout=40)
            except RuntimeError:
                pass                                   # it may exit before /readyz
            assert b.proc is None or b.proc.wait(30) == 1
            log = b.log_path.read_text()
            assert f"the pod bridge {bridge} is in use by another pyk8s node" in log
            assert str((tmp_path / "a" / "agent").resolve()) in log   # who holds it
            assert "--cni-bridge" in log and "--cluster-cidr" in log
        finally:
            b.stop()
        # another bridge, the same pod CIDR: the node says why its network is not ready
        c = _up(tmp_path / "c", "claims-c", bridge + "x", cidr).start(timeout=40)
        try:
            def reported() -> bool:
                cond = _ready_condition(c, "claims-c")
                return cond.get("status") == "False" and "is in use by another pyk8s node" in \
                    cond.get("message", "") and "--cluster-cidr" in cond.get("message", "")
            wait_for("node c reports the taken pod CIDR", reported, timeout=30)
        finally:
            c.stop()
    finally:
        a.kill9()
    # a claim dies with its holder: the bridge is free again after a's kill -9
    d = _up(tmp_path / "a", "claims-a", bridge, cidr).start(timeout=40)
    try:
        wait_for("node a Ready again",
                 lambda: _ready_condition(d, "claims-a").get("status") == "True", timeout=40)
    finally:
        d.stop()
        # what a's kill -9 left and d did not take over (its overlay device and chains,
        # the host claims' files)
        asyncio.run(remove_overlay_leftovers(str((tmp_path / "a" / "agent").resolve())))
        remove_stale(str((tmp_path / "a" / "agent").resolve()))
