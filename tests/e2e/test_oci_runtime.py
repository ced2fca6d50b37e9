"""Real containers (issue 7's acceptance): `pyk8s up` whose local node runs the oci runtime
(runc, CNI bridge + host-local + portmap, overlayfs rootfs, cgroups), pulling a busybox
image the test suite built and pushed to a local docker-registry on 127.0.0.1. Traffic
goes only to loopback and to pod IPs on the test's own bridge."""
from __future__ import annotations

import contextlib
import json
import os
import pty
import random
import re
import select
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyk8s.netpol.rules import chain_prefix
from pyk8s.proxy.component import default_chain_prefix
from pyk8s.proxy.iptables import chains_in_save
from tests.conftest import ServerProcess, needs_root, wait_for
from tests.registry import registry  # noqa: F401  (the session's local registry)

pytestmark = needs_root

NODE = "oci-1"


def _unique_net() -> tuple[str, str, str]:
    """A bridge name, a cluster CIDR and a service range of this test module's own
    (parallel workers each run their own cluster, proxy rules included, on this host)."""
    return (f"pk8e{uuid.uuid4().hex[:6]}", f"10.{random.randint(100, 250)}.0.0/16",
            f"10.{random.randint(1, 90)}.0.0/16")


def oci_up(d: Path, registry: Any, node: str, *extra: str) -> tuple[ServerProcess, str]:
    """`pyk8s up` (not started) whose node `node` runs the oci runtime on a network of its
    own, pulling from the local `registry`; and its bridge's name."""
    bridge, cidr, services = _unique_net()
    return ServerProcess(d, command="up", ready_log="deployment-controller: synced",
                         local_node=True,
                         extra=["--node-name", node, "--runtime", "oci",
                                "--insecure-registry", registry.host, "--cni-bridge", bridge,
                                "--cluster-cidr", cidr, "--service-cluster-ip-range",
                                services, "--container-restart-backoff", "1", *extra]), bridge


@contextlib.contextmanager
def running_oci_node(d: Path, registry: Any, node: str, *extra: str) -> Iterator[ServerProcess]:
    """`oci_up` started with its node Ready; once stopped, nothing of the node is left."""
    up, bridge = oci_up(d, registry, node, *extra)
    try:
        up.start(timeout=40)
        wait_for("node Ready", lambda: " Ready " in up.kubectl(
            "get", "nodes", node, "--no-headers", check=False).stdout, timeout=30)
        yield up
    finally:
        up.stop()
    left = _node_state(d / "agent", bridge, stopped=True, node=node)
    assert not left, left


@pytest.fixture(scope="module")
def oci(registry: Any, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
        ) -> Iterator[tuple[ServerProcess, Any]]:
    with running_oci_node(tmp_path_factory.mktemp("pyk8s-oci"), registry, NODE,
                          "--pod-max-pids", "200") as up:
        yield up, registry


def _node_state(agent: Path, bridge: str, stopped: bool = False,
                node: str = NODE) -> list[str]:
    """What pods leave on a node once they are gone: pinned namespaces, veths on the
    bridge, host-local IP allocations, CNI cache entries, mounts (rootfs overlays,
    namespace files), runc containers, pod cgroups and pod directories; once the node has
    `stopped`, also the bridge, any mount under its data dir, its proxy's iptables
    chains and its network policy's chains and ipsets."""
    out: list[str] = []
    out += [f"sandbox {p.name}" for p in _entries(agent / "sandboxes")]
    out += [f"veth {p.name}" for p in _entries(Path(f"/sys/class/net/{bridge}/brif"))]
    if stopped and Path(f"/sys/class/net/{bridge}").exists():
        out.append(f"bridge {bridge}")
    ipam = agent / "cni" / "ipam"
    out += [f"ip {p.name}" for p in ipam.rglob("*") if p.is_file()
            and p.name not in ("lock",) and not p.name.startswith("last_reserved_ip")]
    cache = agent / "cni" / "cache"
    out += [f"cni-cache {p.name}" for p in cache.rglob("*") if p.is_file()]
    mounts = [line.split()[4] for line in
              Path("/proc/self/mountinfo").read_text().splitlines()]
    out += [f"mount {m}" for m in mounts if m.startswith(str(agent) + "/")
            and (stopped or m != str(agent / "sandboxes"))]
    runc = subprocess.run(["runc", "--root", str(agent / "runc"), "list", "-q"],
                          capture_output=True, text=True).stdout.split()
    out += [f"runc {c}" for c in runc]
    out += [f"cgroup {p}" for p in _pod_cgroups(node)]
    out += [f"pod dir {p.name}" for p in _entries(agent / "pods")]
    if stopped:   # the node's proxy and network policy: iptables chains, ipsets
        save = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        prefix = default_chain_prefix(bridge)
        out += [f"iptables chain {c}" for c in chains_in_save(save, prefix)]
        out += [f"iptables chain {c}" for c in chains_in_save(save, chain_prefix(prefix))]
        sets = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True).stdout
        out += [f"ipset {s}" for s in sets.split() if s.startswith(chain_prefix(prefix) + "-")]
    return out


def _entries(d: Path) -> list[Path]:
    return list(d.iterdir()) if d.is_dir() else []


def _pod_cgroups(node: str = NODE) -> list[Path]:
    """The node's pod cgroups in every hierarchy (v1 controllers, a hybrid host's
    `unified`, or v2)."""
    root = Path("/sys/fs/cgroup")
    return [*root.glob(f"pyk8s-{node}/pod*"), *root.glob(f"*/pyk8s-{node}/pod*")]


def pods(up: ServerProcess, selector: str) -> list[dict[str, Any]]:
    return up.kubectl_json("get", "pods", "-l", selector, "-o", "json")["items"]


def pod(up: ServerProcess, name: str) -> dict[str, Any]:
    return up.kubectl_json("get", "pod", name, "-o", "json")


def apply(up: ServerProcess, obj: dict[str, Any]) -> None:
    up.kubectl("apply", "-f", "-", input=json.dumps(obj))


def events(up: ServerProcess, name: str) -> list[dict[str, Any]]:
    return up.kubectl_json("get", "events", "--field-selector",
                           f"involvedObject.name={name}", "-o", "json")["items"]


def http_get(url: str, timeout: float = 3.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:   # pod IPs on our bridge only
        return r.read().decode()


def _pod_spec(image: str, **extra: Any) -> dict[str, Any]:
    return {"terminationGracePeriodSeconds": 1, **extra,
            "containers": extra.pop("containers", None) or [{"name": "main", "image": image}]}


def test_deployment_of_httpd_pods_ready_and_answering(oci: Any) -> None:
    up, reg = oci
    image = reg.image("busybox")
    apply(up, {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web"},
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                            "terminationGracePeriodSeconds": 1,
                            "containers": [{
                                "name": "httpd", "image": image,
                                "command": ["sh", "-c",
                                            "hostname > /var/www/name; "
                                            "exec httpd -f -p 80 -h /var/www"],
                                "ports": [{"containerPort": 80}],
                                "readinessProbe": {"httpGet": {"path": "/name", "port": 80},
                                                   "periodSeconds": 1}}]}}}})
    ready = wait_for("3 ready replicas", lambda: (
        up.kubectl_json("get", "deployment", "web", "-o", "json").get("status", {})
        .get("readyReplicas") == 3), timeout=60)
    assert ready
    items = pods(up, "app=web")
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in items}
    assert len(set(ips.values())) == 3
    for name, ip in ips.items():
        # Each pod answers on its own IP, from the node, with its own hostname.
        assert http_get(f"http://{ip}/name").strip() == name
    cs = items[0]["status"]["containerStatuses"][0]
    assert cs["containerID"].startswith("containerd://")
    assert cs["imageID"].startswith(f"{reg.host}/busybox@sha256:")
    reasons = {e["reason"] for e in events(up, items[0]["metadata"]["name"])}
    assert {"Scheduled", "Pulled", "Created", "Started"} <= reasons, reasons
    # The node lists its images (digest and tag) and its OS, as upstream's kubelet does.
    # (with the next node status update, every 10 s)
    def node_images() -> list[str]:
        status = up.kubectl_json("get", "node", NODE, "-o", "json")["status"]
        return [n for i in status.get("images", []) for n in i["names"]]
    names = wait_for("the image in the Node's status", lambda: (
        lambda ns: cs["imageID"] in ns and image in ns and ns)(node_images()), timeout=25)
    assert cs["imageID"] in names
    status = up.kubectl_json("get", "node", NODE, "-o", "json")["status"]
    assert status["nodeInfo"]["osImage"] != "pyk8s hollow node"
    up.kubectl("delete", "deployment", "web")


def test_two_containers_talk_over_localhost(oci: Any) -> None:
    up, reg = oci
    image = reg.image("busybox")
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "duo"},
               "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                   {"name": "server", "image": image,
                    "command": ["sh", "-c", "echo from-server > /tmp/i; "
                                "exec httpd -f -p 8080 -h /tmp"]},
                   {"name": "client", "image": image,
                    "command": ["sh", "-c", "until timeout 2 wget -qO- "
                                "http://127.0.0.1:8080/i; do sleep 0.2; done; sleep 3600"]}]}})
    wait_for("client got the server's page", lambda: "from-server" in up.kubectl(
        "logs", "duo", "-c", "client", check=False).stdout, timeout=60)
    # Same pod: one network namespace and one hostname.
    out = up.kubectl("exec", "duo", "-c", "client", "--", "hostname").stdout.strip()
    assert out == "duo"
    up.kubectl("delete", "pod", "duo", "--wait=false")


def test_memory_hog_is_oomkilled_and_restarted(oci: Any) -> None:
    up, reg = oci
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hog"},
               "spec": _pod_spec(reg.image("busybox"), containers=[{
                   "name": "hog", "image": reg.image("busybox"),
                   "command": ["sh", "-c", "x=a; while true; do x=$x$x; done"],
                   "resources": {"limits": {"memory": "32Mi"}}}])})

    def oom_restarted() -> dict[str, Any] | None:
        cs = (pod(up, "hog").get("status", {}).get("containerStatuses") or [{}])[0]
        term = (cs.get("lastState") or {}).get("terminated") or {}
        return cs if cs.get("restartCount", 0) >= 1 and term.get("reason") == "OOMKilled" \
            else None
    cs = wait_for("OOMKilled, restarted", oom_restarted, timeout=60)
    assert cs["lastState"]["terminated"]["exitCode"] == 137
    up.kubectl("delete", "pod", "hog", "--wait=false")


def test_readiness_probe_gates_ready(oci: Any) -> None:
    up, reg = oci
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gate"},
               "spec": _pod_spec(reg.image("busybox"), containers=[{
                   "name": "main", "image": reg.image("busybox"),
                   "command": ["sleep", "3600"],
                   "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]},
                                      "periodSeconds": 1}}])})
    wait_for("Running", lambda: pod(up, "gate").get("status", {}).get("phase") == "Running",
             timeout=60)
    time.sleep(2)
    conds = {c["type"]: c["status"] for c in pod(up, "gate")["status"]["conditions"]}
    assert conds["Ready"] == "False"
    up.kubectl("exec", "gate", "--", "touch", "/tmp/ready")
    wait_for("Ready", lambda: {c["type"]: c["status"] for c in pod(up, "gate")["status"]
                               ["conditions"]}["Ready"] == "True", timeout=20)
    up.kubectl("delete", "pod", "gate", "--wait=false")


def test_kubectl_exec_it_shell(oci: Any) -> None:
    up, reg = oci
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell"},
               "spec": _pod_spec(reg.image("busybox"), containers=[{
                   "name": "main", "image": reg.image("busybox"),
                   "command": ["sleep", "3600"]}])})
    wait_for("Running", lambda: pod(up, "shell").get("status", {}).get("phase") == "Running",
             timeout=60)
    master, slave = pty.openpty()
    env = {**os.environ, "KUBECONFIG": str(up.kubeconfig)}
    proc = subprocess.Popen(["kubectl", "exec", "-it", "shell", "--", "sh"], stdin=slave,
                            stdout=slave, stderr=slave, env=env, close_fds=True,
                            start_new_session=True)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 30
        sent = False
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    break
                if not data:
                    break
                out += data
            if not sent and (b"#" in out or time.monotonic() > deadline - 25):
                os.write(master, b"echo tty=$(tty) answer=$((6*7)); cat /etc/hostname\n")
                os.write(master, b"exit 3\n")
                sent = True
            if proc.poll() is not None and not r:
                break
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = out.decode(errors="replace")
    assert "answer=42" in text, text
    assert re.search(r"tty=/dev/pts/\d+", text), text
    assert "shell" in text
    assert proc.returncode == 3, text
    up.kubectl("delete", "pod", "shell", "--wait=false")


def test_pod_with_an_orphaned_exec_is_deleted(oci: Any) -> None:
    """`kubectl exec -i` killed while its command runs: the exec'd process outlives its
    `runc exec` and is re-parented to the node (the subreaper), which must reap it —
    else the container's init, SIGKILLed, can never finish exiting (the kernel waits for
    every process of the pid namespace) and the pod is never deleted."""
    up, reg = oci
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphaned"},
               "spec": {**_pod_spec(reg.image("busybox"), containers=[{
                   "name": "main", "image": reg.image("busybox"),
                   "command": ["sleep", "3600"]}]), "terminationGracePeriodSeconds": 1}})
    wait_for("Running", lambda: pod(up, "orphaned").get("status", {}).get("phase")
             == "Running", timeout=60)
    env = {**os.environ, "KUBECONFIG": str(up.kubeconfig)}
    client = subprocess.Popen(["kubectl", "exec", "-i", "orphaned", "--", "sleep", "1000"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for("the exec running", lambda: "sleep 1000" in up.kubectl(
            "exec", "orphaned", "--", "ps").stdout, timeout=20)
    finally:
        client.kill()                                  # kill -9 of the client
        client.wait(timeout=10)
    up.kubectl("delete", "pod", "orphaned", "--timeout=30s")
    assert not up.kubectl("get", "pod", "orphaned", "--ignore-not-found").stdout


def test_wrong_image_err_image_pull_then_backoff(oci: Any) -> None:
    up, reg = oci
    image = f"{reg.host}/no-such-image:v1"
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "noimg"},
               "spec": _pod_spec(image)})

    def waiting_reasons() -> set[str]:
        cs = (pod(up, "noimg").get("status", {}).get("containerStatuses") or [{}])[0]
        return {((cs.get("state") or {}).get("waiting") or {}).get("reason", "")}
    seen: set[str] = set()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not {"ErrImagePull", "ImagePullBackOff"} <= seen:
        seen |= waiting_reasons()
        time.sleep(0.2)
    assert {"ErrImagePull", "ImagePullBackOff"} <= seen, seen
    evs = events(up, "noimg")
    msgs = [(e["reason"], e["message"]) for e in evs]
    assert any(r == "Failed" and m.startswith(f'Failed to pull image "{image}"')
               and "not found" in m for r, m in msgs), msgs
    assert ("Failed", "Error: ErrImagePull") in msgs, msgs
    assert any(r == "BackOff" and m == f'Back-off pulling image "{image}"' for r, m in msgs)
    assert pod(up, "noimg")["status"]["phase"] == "Pending"
    up.kubectl("delete", "pod", "noimg", "--wait=false")


def test_create_delete_cycles_leave_nothing_behind(oci: Any) -> None:
    """100 pods, 25 at a time: each gets a sandbox, an IP and a running container, then
    is deleted; the node is left as it was."""
    up, reg = oci
    agent = up.data_dir / "agent"
    bridge = next(a for a in zip(up.extra, up.extra[1:]) if a[0] == "--cni-bridge")[1]
    image = reg.image("busybox")
    for batch in range(4):
        items = [{"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": f"cycle-{batch}-{i}", "labels": {"cycle": "yes"}},
                  "spec": _pod_spec(image, containers=[{
                      "name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                      "command": ["sleep", "3600"]}])} for i in range(25)]
        apply(up, {"apiVersion": "v1", "kind": "List", "items": items})
        running = wait_for("25 pods Running with IPs", lambda: (lambda ps: len(ps) == 25 and all(
            p.get("status", {}).get("phase") == "Running" and p["status"].get("podIP")
            for p in ps) and ps)(pods(up, "cycle=yes")), timeout=90)
        assert len({p["status"]["podIP"] for p in running}) == 25
        if batch == 0:   # what the check below looks for is there while the pods run
            state = _node_state(agent, bridge)
            for kind in ("sandbox", "veth", "ip", "cni-cache", "mount", "runc", "cgroup",
                         "pod dir"):
                assert sum(x.startswith(kind + " ") for x in state) >= 25, (kind, state)
        up.kubectl("delete", "pods", "-l", "cycle=yes", "--wait=true", "--timeout=90s")
    try:
        wait_for("the node clean again", lambda: not _node_state(agent, bridge), timeout=30)
    except AssertionError:
        raise AssertionError(f"left behind: {_node_state(agent, bridge)}") from None


def test_security_context_resources_volumes_and_host_network(oci: Any) -> None:
    """What a container sees: its user, a read-only root, its cgroup limits, a ConfigMap
    volume and env; a hostNetwork pod shares the node's network and reports its IP."""
    up, reg = oci
    image = reg.image("busybox")
    up.kubectl("create", "configmap", "conf", "--from-literal=greeting=hello")
    script = ("echo uid=$(id -u) gid=$(id -g); touch /x 2>/dev/null && echo rootfs=rw "
              "|| echo rootfs=ro; touch /tmp/ok && echo tmp=rw; "
              "echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); "
              "echo quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us); "
              "echo greeting=$(cat /etc/conf/greeting) env=$GREETING; sleep 3600")
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sec"},
               "spec": _pod_spec(image, volumes=[
                   {"name": "conf", "configMap": {"name": "conf"}},
                   {"name": "tmp", "emptyDir": {}}], containers=[{
                       "name": "main", "image": image, "command": ["sh", "-c", script],
                       "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {
                           "name": "conf", "key": "greeting"}}}],
                       "securityContext": {"runAsUser": 1000, "runAsGroup": 3000,
                                           "readOnlyRootFilesystem": True},
                       "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                       "volumeMounts": [{"name": "conf", "mountPath": "/etc/conf"},
                                        {"name": "tmp", "mountPath": "/tmp"}]}])})
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hostnet"},
               "spec": _pod_spec(image, hostNetwork=True, containers=[{
                   "name": "main", "image": image, "command": ["sleep", "3600"]}])})
    logs = wait_for("the report", lambda: (lambda t: "greeting=" in t and t)(up.kubectl(
        "logs", "sec", check=False).stdout), timeout=60)
    assert "uid=1000 gid=3000" in logs
    assert "rootfs=ro" in logs and "tmp=rw" in logs
    assert f"mem={64 * 1024 * 1024}" in logs
    assert "quota=50000" in logs
    assert "greeting=hello env=hello" in logs
    # --pod-max-pids caps the pod cgroup its containers share
    from pyk8s.kubelet import cgroups
    uid = pod(up, "sec")["metadata"]["uid"]
    assert cgroups.pids_max(f"/pyk8s-{NODE}/pod{uid}") == 200
    wait_for("hostnet Running", lambda: pod(up, "hostnet").get("status", {}).get("phase")
             == "Running", timeout=60)
    st = pod(up, "hostnet")["status"]
    assert st["podIP"] == st["hostIP"]
    out = up.kubectl("exec", "hostnet", "--", "hostname").stdout.strip()
    assert out == os.uname().nodename
    up.kubectl("delete", "pod", "sec", "hostnet", "--wait=false")


def test_imported_image_runs_with_never_and_host_port_answers(
        oci: Any, tmp_path: Path) -> None:
    """`pyk8s image import` into the running node's store (the `up` data dir), a pod of
    it with imagePullPolicy Never, its hostPort reached on the node through portmap."""
    up, _ = oci
    from tests.images import build_busybox_image
    from tests.kubelet.network.conftest import free_host_port
    layout = build_busybox_image(tmp_path / "layout", extra_files={
        "/www/index.html": b"imported\n"})
    r = subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "image", "import",
                        "--data-dir", str(up.data_dir), "--name", "local/web:v1",
                        str(layout)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "docker.io/local/web:v1" in r.stdout, r.stderr
    port = free_host_port()
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "imported"},
               "spec": _pod_spec("local/web:v1", containers=[{
                   "name": "web", "image": "local/web:v1", "imagePullPolicy": "Never",
                   "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                   "ports": [{"containerPort": 8080, "hostPort": port}]}])})
    wait_for("Running", lambda: pod(up, "imported").get("status", {}).get("phase")
             == "Running", timeout=60)
    assert wait_for("the hostPort answers", lambda: _try_get(
        f"http://127.0.0.1:{port}/index.html"), timeout=20) == "imported\n"
    up.kubectl("delete", "pod", "imported", "--wait=true")
    # teardown removed the port mapping with the pod
    assert not _try_get(f"http://127.0.0.1:{port}/index.html")


def _try_get(url: str) -> str | None:
    try:
        return http_get(url, timeout=1.0)
    except OSError:
        return None


def test_container_stats_from_cgroups(oci: Any) -> None:
    """/stats/summary and /metrics/resource through the API server's nodes/proxy carry
    the containers' own cgroup figures."""
    up, reg = oci
    apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "busy"},
               "spec": _pod_spec(reg.image("busybox"), containers=[{
                   "name": "main", "image": reg.image("busybox"),
                   "command": ["sh", "-c", "while true; do :; done"]}])})
    wait_for("Running", lambda: pod(up, "busy").get("status", {}).get("phase") == "Running",
             timeout=60)

    def container() -> dict[str, Any] | None:
        s = json.loads(up.kubectl("get", "--raw",
                                  f"/api/v1/nodes/{NODE}/proxy/stats/summary").stdout)
        for p in s["pods"]:
            if p["podRef"]["name"] == "busy" and p["containers"] and \
                    p["containers"][0].get("cpu", {}).get("usageNanoCores"):
                return p["containers"][0] | {"pod": p}
        return None
    c = wait_for("the busy container's figures", container, timeout=20)
    assert c["name"] == "main"
    assert c["cpu"]["usageNanoCores"] > 100_000_000        # a busy loop: > 0.1 core
    assert c["memory"]["workingSetBytes"] > 0
    assert c["pod"]["memory"]["workingSetBytes"] >= c["memory"]["workingSetBytes"]
    text = up.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics/resource").stdout
    assert re.search(r'container_memory_working_set_bytes\{container="main",'
                     r'namespace="default",pod="busy"\} [1-9]', text), text
    up.kubectl("delete", "pod", "busy", "--wait=false")
