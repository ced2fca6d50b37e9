"""One identity per control-plane component in a real `pyk8s up` (authorization Node,RBAC):
the controller manager and the scheduler run with their own client certificates
(DATA_DIR/controller-manager.kubeconfig, DATA_DIR/scheduler.kubeconfig), and each
controller writes with its own service account kube-system/<name>: taking the
replicaset-controller's binding away stops pod creation (forbidden as that account),
giving it back resumes it, while the Deployment controller keeps working. A standalone
`pyk8s controller-manager` uses its kubeconfig's identity, with or without
--use-service-account-credentials."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from pyk8s.cli.identities import CONTROLLER_MANAGER_USER, ensure_component_kubeconfig
from tests.conftest import KUBECTL, ROOT, ServerProcess, wait_for

NS = "default"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("pyk8s-identities"), command="up",
                        ready_log="controller manager: started").start(timeout=40)
    try:
        yield srv
    finally:
        srv.stop()


def kubectl_as(srv: ServerProcess, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(srv.data_dir))
    env.pop("KUBECONFIG", None)
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, env=env, timeout=60)


def pods_of(srv: ServerProcess, app: str) -> list[Any]:
    return srv.kubectl_json("get", "pods", "-n", NS, "-l", f"app={app}")["items"]


def deployment(name: str, replicas: int) -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})


def test_component_kubeconfigs(up: ServerProcess) -> None:
    for file, user in (("scheduler.kubeconfig", "system:kube-scheduler"),
                       ("controller-manager.kubeconfig", "system:kube-controller-manager")):
        path = up.data_dir / file
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        who = kubectl_as(up, path, "auth", "whoami", "-o", "json")
        assert who.returncode == 0, who.stderr
        info = yaml.safe_load(who.stdout)["status"]["userInfo"]
        assert info["username"] == user
        assert info["groups"] == ["system:authenticated"]              # no O: no group
    sched = up.data_dir / "scheduler.kubeconfig"
    no = kubectl_as(up, sched, "auth", "can-i", "list", "secrets")
    assert (no.returncode, no.stdout.strip()) == (1, "no")
    yes = kubectl_as(up, sched, "auth", "can-i", "create", "pods", "--subresource=binding")
    assert yes.stdout.strip() == "yes", yes
    cm = up.data_dir / "controller-manager.kubeconfig"
    # The manager itself only lists / watches (its informers) and provisions accounts.
    assert kubectl_as(up, cm, "auth", "can-i", "create", "pods").stdout.strip() == "no"
    assert kubectl_as(up, cm, "auth", "can-i", "create",
                      "serviceaccounts/token", "-n", "kube-system").stdout.strip() == "yes"


def test_controllers_write_as_their_service_accounts(up: ServerProcess) -> None:
    accounts = {sa["metadata"]["name"] for sa in up.kubectl_json(
        "get", "serviceaccounts", "-n", "kube-system")["items"]}
    assert {"replicaset-controller", "deployment-controller", "generic-garbage-collector",
            "namespace-controller", "endpointslice-controller", "job-controller",
            "daemon-set-controller", "node-controller", "certificate-controller",
            "persistent-volume-binder"} <= accounts, accounts
    up.kubectl("apply", "-f", "-", input=deployment("web", 2))
    wait_for("2 pods", lambda: len(pods_of(up, "web")) == 2, timeout=20)
    events = up.kubectl_json("get", "events", "-n", NS)["items"]
    sources = {(e["reason"], (e.get("source") or {}).get("component")) for e in events}
    assert ("ScalingReplicaSet", "deployment-controller") in sources, sources
    assert ("SuccessfulCreate", "replicaset-controller") in sources, sources

    # Without its binding the ReplicaSet controller may not create pods: its writes are
    # its own account's, not the manager's nor the admin's.
    binding = up.kubectl_json("get", "clusterrolebinding",
                              "system:controller:replicaset-controller")
    up.kubectl("delete", "clusterrolebinding", "system:controller:replicaset-controller")
    up.kubectl("scale", "deployment/web", "-n", NS, "--replicas=3")
    # The Deployment controller (its own account, still bound) resizes the ReplicaSet.
    wait_for("ReplicaSet scaled to 3", lambda: [
        rs["spec"]["replicas"] for rs in up.kubectl_json(
            "get", "replicasets", "-n", NS, "-l", "app=web")["items"]] == [3], timeout=20)
    denied = ('forbidden: User "system:serviceaccount:kube-system:replicaset-controller" '
              'cannot create resource "pods"')
    wait_for("the ReplicaSet controller refused", lambda: denied in up.log_path.read_text(),
             timeout=20)
    assert len(pods_of(up, "web")) == 2

    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        binding["metadata"].pop(key, None)
    up.kubectl("apply", "-f", "-", input=yaml.safe_dump(binding))
    wait_for("the third pod", lambda: len(pods_of(up, "web")) == 3, timeout=40)


def test_restart_keeps_the_certificates(up: ServerProcess) -> None:
    cm = up.data_dir / "controller-manager.kubeconfig"
    sched = up.data_dir / "scheduler.kubeconfig"
    before = cm.read_text()
    sched.unlink()
    up.stop()
    up.start(timeout=40)
    wait_for("scheduler.kubeconfig", sched.exists)         # missing: issued again
    assert cm.read_text() == before                        # still good: kept
    who = kubectl_as(up, sched, "auth", "whoami", "-o", "json")
    assert yaml.safe_load(who.stdout)["status"]["userInfo"]["username"] == \
        "system:kube-scheduler"


def test_standalone_controller_manager_identities(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """`pyk8s controller-manager --kubeconfig K`: K's identity (here kubeadm's
    system:kube-controller-manager), which may not create pods itself; with
    --use-service-account-credentials the ReplicaSet controller creates them as
    kube-system/replicaset-controller."""
    # --v 3: the request log shows which identity asked for which token
    srv = ServerProcess(tmp_path_factory.mktemp("pyk8s-cm-identity"), extra=["--v", "3"]).start()
    tls = srv.data_dir / "tls"
    kubeconfig = ensure_component_kubeconfig(srv.data_dir / "cm.kubeconfig", srv.url,
                                             tls / "ca.crt", tls / "ca.key",
                                             CONTROLLER_MANAGER_USER)
    cm_log = srv.data_dir / "controller-manager.log"

    def start(*flags: str) -> subprocess.Popen[bytes]:
        with open(cm_log, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "pyk8s.cli.main", "controller-manager", "--kubeconfig",
                 str(kubeconfig), "--controllers", "replicaset,deployment", *flags],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    cm = start()
    try:
        srv.kubectl("apply", "-f", "-", input=deployment("solo", 1))
        denied = ('forbidden: User "system:kube-controller-manager" cannot create resource '
                  '"replicasets"')
        wait_for("the manager's own identity refused", lambda: denied in
                 srv.log_path.read_text(), timeout=20)
        cm.terminate()
        assert cm.wait(10) == 0, cm_log.read_text()[-2000:]
        cm = start("--use-service-account-credentials")
        wait_for("a pod created by the ReplicaSet controller",
                 lambda: len(pods_of(srv, "solo")) == 1, timeout=30)
        log = srv.log_path.read_text()
        assert "POST /api/v1/namespaces/kube-system/serviceaccounts/replicaset-controller/" \
               "token 201" in log
        cm.terminate()
        assert cm.wait(10) == 0, cm_log.read_text()[-2000:]
    finally:
        if cm.poll() is None:
            cm.kill()
            cm.wait()
        srv.stop()
