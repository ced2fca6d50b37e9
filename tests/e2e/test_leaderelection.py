"""Two `pyk8s controller-manager` processes against one `pyk8s server`: only the lease
holder acts; after `kill -9` of the leader the other takes over (shortened lease flags)."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

from tests.conftest import ROOT, ServerProcess

T = TypeVar("T")
LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager"
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 3.0, 2.0, 0.25


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class ControllerManager:
    def __init__(self, srv: ServerProcess, name: str) -> None:
        self.log_path = srv.data_dir / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pyk8s.cli.main", "controller-manager",
                 "--kubeconfig", str(srv.kubeconfig), "--leader-elect=true",
                 f"--leader-elect-lease-duration={LEASE_DURATION}s",
                 f"--leader-elect-renew-deadline={RENEW_DEADLINE}s",
                 f"--leader-elect-retry-period={int(RETRY_PERIOD * 1000)}ms"],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def identity(self) -> str | None:
        m = re.search(r"leader election as (\S+)", self.log())
        return m.group(1) if m else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def holder(srv: ServerProcess) -> str:
    r = srv.get(LEASE)
    return str(r.json()["spec"].get("holderIdentity") or "") if r.status == 200 else ""


def rs_manifest(replicas: int) -> str:
    return f"""\
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: le, namespace: default}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: le}}}}
  template:
    metadata: {{labels: {{app: le}}}}
    spec: {{containers: [{{name: c, image: nginx}}]}}
"""


def pod_count(srv: ServerProcess) -> int:
    return len(srv.get("/api/v1/namespaces/default/pods?labelSelector=app%3Dle").json()["items"])


def test_only_the_leader_acts_and_the_other_takes_over(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "srv").start()
    cms: list[ControllerManager] = []
    try:
        cms = [ControllerManager(srv, "cm-a"), ControllerManager(srv, "cm-b")]
        wait_for("identities", lambda: all(cm.identity for cm in cms))
        lead_id = wait_for("a leader", lambda: holder(srv))
        leader = next(cm for cm in cms if cm.identity == lead_id)
        follower = next(cm for cm in cms if cm is not leader)
        wait_for("the leader's controllers", lambda: "replicaset-controller: synced"
                 in leader.log())
        lease = srv.get(LEASE).json()["spec"]
        assert lease["leaseDurationSeconds"] == int(LEASE_DURATION)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", lease["renewTime"])
        srv.kubectl("apply", "-f", "-", input=rs_manifest(3))
        wait_for("3 pods", lambda: pod_count(srv) == 3)
        time.sleep(0.5)
        assert pod_count(srv) == 3
        assert "replicaset-controller: synced" not in follower.log()  # it never started
        transitions = srv.get(LEASE).json()["spec"].get("leaseTransitions", 0)

        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait()
        killed = time.monotonic()
        wait_for("the follower to take over", lambda: holder(srv) == follower.identity,
                 timeout=LEASE_DURATION + 5)
        took = time.monotonic() - killed
        print(f"takeover after kill -9: {took:.2f}s")
        # The follower waits a full lease from the last renewal it saw, then retries every
        # retry period (upstream's bound: lease duration + a retry period or two).
        assert took <= LEASE_DURATION + 2.5 * RETRY_PERIOD, took
        assert srv.get(LEASE).json()["spec"]["leaseTransitions"] == transitions + 1
        # The new leader acts.
        srv.kubectl("scale", "rs", "le", "--replicas=5")
        wait_for("5 pods", lambda: pod_count(srv) == 5)
        # A graceful stop releases the lease at once.
        follower.stop()
        assert follower.proc.returncode == 0, follower.log()[-2000:]
        assert holder(srv) == ""
    finally:
        for cm in cms:
            if cm.proc.poll() is None:
                cm.proc.kill()
                cm.proc.wait()
        srv.stop()
