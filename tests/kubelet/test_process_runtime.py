"""The process runtime's pure parts ($(VAR) expansion, env), the crash-loop back-off, pod
phases, restart statuses, and the runtime itself on short real processes."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pyk8s.kubelet import crilog
from pyk8s.kubelet.podworkers import (Backoff, build_pod_status, crash_loop_message,
                                      go_duration, pod_phase)
from pyk8s.kubelet.runtime import ContainerConfig, ContainerStatus, CreateContainerError
from pyk8s.kubelet.runtimes.process import (ProcessRuntime, container_argv, container_env,
                                            expand)


def test_expand() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$(C)", env) == "$(C)"            # undefined: kept
    assert expand("$$(A)", env) == "$(A)"           # escaped
    assert expand("$$", env) == "$"
    assert expand("a$b", env) == "a$b"
    assert expand("$(A", env) == "$(A"              # unterminated
    assert expand("x$", env) == "x$"
    assert expand("$()", env) == "$()"


def test_env_and_argv() -> None:
    ctr = {"name": "c", "command": ["sh", "-c"], "args": ["echo $(GREETING) $(POD)"],
           "env": [{"name": "WHO", "value": "world"},
                   {"name": "GREETING", "value": "hello-$(WHO)"},
                   {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                   {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                   {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    env = container_env(ctr, {"metadata.name": "p1", "status.podIP": "10.0.0.2"})
    assert env == {"WHO": "world", "GREETING": "hello-world", "POD": "p1", "IP": "10.0.0.2"}
    assert container_argv(ctr, env) == ["sh", "-c", "echo hello-world p1"]


def test_backoff() -> None:
    b = Backoff(10, 300)
    k = "u/c"
    # First exit: no entry, restart at once; the entry starts at 10 s.
    assert not b.in_backoff_since(k, 100.0, 100.0)
    b.next(k, 100.0)
    assert b.get(k) == 10
    # Second exit: in back-off for 10 s after it.
    assert b.in_backoff_since(k, 105.0, 110.0)
    assert not b.in_backoff_since(k, 105.0, 115.0)
    b.next(k, 105.0)
    assert b.get(k) == 20
    for _ in range(10):
        b.next(k, 106.0)
    assert b.get(k) == 300                           # capped at 5 min
    # An exit more than 10 min after the last update starts over.
    assert not b.in_backoff_since(k, 106.0 + 601, 106.0 + 602)
    b.next(k, 106.0 + 601)
    assert b.get(k) == 10
    b.forget("u/")
    assert b.get(k) == 0


def test_go_duration_and_message() -> None:
    assert [go_duration(s) for s in (10, 20, 40, 80, 160, 300, 1.5, 0.5, 3600)] == [
        "10s", "20s", "40s", "1m20s", "2m40s", "5m0s", "1.5s", "500ms", "1h0m0s"]
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"}}
    assert crash_loop_message(10, "c", pod) == \
        "back-off 10s restarting failed container=c pod=p_ns(u-1)"


def _st(state: str, code: int = 0, last: int | None = None) -> dict:
    s: dict = {"state": {}, "lastState": {}}
    if state == "running":
        s["state"] = {"running": {}}
    elif state == "terminated":
        s["state"] = {"terminated": {"exitCode": code}}
    else:
        s["state"] = {"waiting": {"reason": "x"}}
    if last is not None:
        s["lastState"] = {"terminated": {"exitCode": last}}
    return s


def test_pod_phase() -> None:
    never, always, onf = ({"restartPolicy": p} for p in ("Never", "Always", "OnFailure"))
    assert pod_phase(never, [], [_st("running")]) == "Running"
    assert pod_phase(never, [], [_st("waiting")]) == "Pending"
    assert pod_phase(never, [], [_st("terminated", 0)]) == "Succeeded"
    assert pod_phase(never, [], [_st("terminated", 3)]) == "Failed"
    assert pod_phase(never, [], [_st("terminated", 0), _st("running")]) == "Running"
    assert pod_phase(never, [], [_st("terminated", 0), _st("terminated", 1)]) == "Failed"
    assert pod_phase(always, [], [_st("terminated", 0)]) == "Running"
    assert pod_phase(always, [], [_st("waiting", last=1)]) == "Running"   # crash loop
    assert pod_phase(onf, [], [_st("terminated", 0)]) == "Succeeded"
    assert pod_phase(onf, [], [_st("terminated", 1)]) == "Running"
    assert pod_phase({}, [], [_st("terminated", 0)]) == "Running"          # default Always
    # Init containers.
    assert pod_phase(never, [_st("running")], [_st("waiting")]) == "Pending"
    assert pod_phase(never, [_st("terminated", 2)], [_st("waiting")]) == "Failed"
    assert pod_phase(always, [_st("terminated", 2)], [_st("waiting")]) == "Pending"
    assert pod_phase(always, [_st("waiting", last=2)], [_st("waiting")]) == "Pending"
    assert pod_phase(never, [_st("terminated", 0)], [_st("running")]) == "Running"


def _pod(**spec: object) -> dict:
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "x"}], **spec},
            "status": {"phase": "Pending"}}


def test_restart_statuses() -> None:
    first = ContainerStatus(name="c", image="x", image_id="", container_id="process://1",
                            state="exited", started_at="T0", finished_at="T1", exit_code=1,
                            reason="Error")
    second = ContainerStatus(name="c", image="x", image_id="", container_id="process://2",
                             state="exited", started_at="T2", finished_at="T3", exit_code=1,
                             reason="Error", restart_count=1)
    msg = ("CrashLoopBackOff", "back-off 10s restarting failed container=c pod=p_default(u1)")
    st = build_pod_status(_pod(), [first, second], "10.0.0.2", "127.0.0.1", "T4",
                          waiting={"c": msg})
    (cs,) = st["containerStatuses"]
    assert cs["state"] == {"waiting": {"reason": msg[0], "message": msg[1]}}
    assert cs["lastState"]["terminated"]["containerID"] == "process://2"
    assert cs["restartCount"] == 1 and not cs["ready"]
    assert st["phase"] == "Running"
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "ContainersNotReady"
    # Running again: lastState is the previous instance.
    third = ContainerStatus(name="c", image="x", image_id="", container_id="process://3",
                            state="running", started_at="T5", restart_count=2)
    st = build_pod_status(_pod(), [first, second, third], "10.0.0.2", "127.0.0.1", "T6")
    (cs,) = st["containerStatuses"]
    assert cs["state"] == {"running": {"startedAt": "T5"}} and cs["restartCount"] == 2
    assert cs["lastState"]["terminated"]["exitCode"] == 1 and cs["ready"]
    # Never: terminated, the pod Failed, Ready False / PodCompleted.
    st = build_pod_status(_pod(restartPolicy="Never"), [first], "10.0.0.2", "127.0.0.1", "T")
    assert st["phase"] == "Failed"
    (cs,) = st["containerStatuses"]
    assert cs["state"]["terminated"]["reason"] == "Error" and cs["lastState"] == {}
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Ready"]["reason"] == conds["ContainersReady"]["reason"] == "PodCompleted"
    # Init containers not done: main containers wait in PodInitializing.
    init = ContainerStatus(name="i", image="x", image_id="", container_id="process://4",
                           state="running", init=True)
    st = build_pod_status(_pod(initContainers=[{"name": "i", "image": "x"}]), [init],
                          "10.0.0.2", "127.0.0.1", "T")
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"


def group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` lives (zombies do not count)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_process_runtime(tmp_path: Path) -> None:
    async def main() -> None:
        rt = ProcessRuntime(tmp_path)
        exits: list[str] = []
        rt.on_exit = exits.append
        pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {}}
        rt.set_pod(pod, "10.0.0.9")
        ok = await rt.create_container("u1", {
            "name": "ok", "command": ["sh", "-c", "echo $(MSG) $POD_IP; pwd; exit 3"],
            "env": [{"name": "MSG", "value": "hi"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {
                        "fieldPath": "status.podIP"}}}],
            "workingDir": str(tmp_path)})
        await rt.start_container(ok)
        for _ in range(200):
            if exits:
                break
            await asyncio.sleep(0.02)
        (st,) = rt.pod_containers("u1")
        assert st.state == "exited" and st.exit_code == 3 and st.reason == "Error"
        assert st.container_id == f"process://{ok}" and st.finished_time > 0
        path = tmp_path / "pods" / "u1" / "ok" / "0.log"
        assert crilog.read_output(path) == f"hi 10.0.0.9\n{tmp_path}\n"
        # The file holds CRI records: `<time> stdout F <line>`.
        for line in path.read_text().splitlines():
            assert line.split(" ", 1)[1].startswith("stdout F "), line
        # The restart is a new instance with restart count 1 and its own log file.
        again = await rt.create_container("u1", {"name": "ok", "command": ["true"]})
        await rt.start_container(again)
        assert [c.restart_count for c in rt.pod_containers("u1")] == [0, 1]
        # No command (no images): StartError, exit code 128.
        bad = await rt.create_container("u1", {"name": "bad", "image": "nginx"})
        await rt.start_container(bad)
        st = rt.pod_containers("u1")[-1]
        assert (st.state, st.exit_code, st.reason, st.image) == (
            "exited", 128, "StartError", "nginx")
        # SIGTERM to the group: the shell and its child go.
        sl = await rt.create_container("u1", {"name": "sl",
                                              "command": ["sh", "-c", "sleep 30; true"]})
        await rt.start_container(sl)
        pid = rt._containers[sl].proc.pid  # type: ignore[union-attr]
        await rt.kill_container(sl, 5)
        st = rt.pod_containers("u1")[-1]
        assert st.state == "exited" and st.exit_code == 143
        for _ in range(100):   # the orphaned `sleep` is reaped by init: allow a moment
            if not group_alive(pid):
                break
            await asyncio.sleep(0.02)
        assert not group_alive(pid)
        # SIGTERM ignored: SIGKILL after the grace period.
        tr = await rt.create_container("u1", {"name": "tr", "command": [
            "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"]})
        await rt.start_container(tr)
        path = tmp_path / "pods" / "u1" / "tr" / "0.log"
        for _ in range(200):
            if "ready" in crilog.read_output(path):
                break
            await asyncio.sleep(0.02)
        await rt.kill_container(tr, 0.3)
        assert rt.pod_containers("u1")[-1].exit_code == 137
        # shutdown stops what still runs.
        last = await rt.create_container("u1", {"name": "z", "command": ["sleep", "30"]})
        await rt.start_container(last)
        await rt.shutdown()
        assert rt.pod_containers("u1")[-1].state == "exited"
        await rt.remove_pod("u1")
        assert rt.pod_containers("u1") == []

    asyncio.run(main())


def test_without_root_the_token_volume_is_left_out(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root: no mount namespace, so the token volume every pod gets is skipped with a
    FailedMount warning (the pod still runs); any other volume fails the container."""
    monkeypatch.setattr("pyk8s.kubelet.runtimes.process.os.geteuid", lambda: 1000)
    rt = ProcessRuntime(tmp_path)
    token = ("/var/run/secrets/kubernetes.io/serviceaccount", str(tmp_path / "tok"), True)
    data = ("/data", str(tmp_path / "data"), False)

    async def run() -> None:
        cid = await rt.create_container("u1", {"name": "c", "command": ["true"]},
                                        config=ContainerConfig(argv=["true"], mounts=[token]))
        assert rt._containers[cid].config.mounts == []
        [(uid, reason, message)] = rt.warnings
        assert (uid, reason) == ("u1", "FailedMount") and "needs root" in message
        with pytest.raises(CreateContainerError, match="needs root for volume mounts"):
            await rt.create_container("u1", {"name": "d", "command": ["true"]},
                                      config=ContainerConfig(argv=["true"],
                                                             mounts=[token, data]))

    asyncio.run(run())
