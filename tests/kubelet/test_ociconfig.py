"""The OCI spec of a container: argv / env / user / capabilities / cgroup resources /
namespaces / mounts from the pod spec and the image config (ociconfig.py, pure)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyk8s.kubelet.runtimes import ociconfig as oc

Obj = dict[str, Any]


def inp(container: Obj | None = None, pod_spec: Obj | None = None,
        image: Obj | None = None, **kw: Any) -> oc.ContainerSpecInput:
    c = {"name": "main", "image": "busybox", **(container or {})}
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
           "spec": {"containers": [c], **(pod_spec or {})}}
    return oc.ContainerSpecInput(container=c, pod=pod, image_config={"Cmd": ["sh"]} if image is None else image,
                                 rootfs=kw.pop("rootfs", "/nonexistent"),
                                 cgroups_path="/pyk8s-n/podu1/c1", **kw)


@pytest.mark.parametrize("command,args,entry,cmd,want", [
    (None, None, ["/ep"], ["a"], ["/ep", "a"]),
    (["x"], None, ["/ep"], ["a"], ["x"]),
    (["x"], ["y"], ["/ep"], ["a"], ["x", "y"]),
    (None, ["y"], ["/ep"], ["a"], ["/ep", "y"]),
    (None, None, None, ["sh"], ["sh"]),
])
def test_argv_rules(command: Any, args: Any, entry: Any, cmd: Any, want: list[str]) -> None:
    i = inp(image={"Entrypoint": entry, "Cmd": cmd}, command=command, args=args)
    assert oc.build_spec(i)["process"]["args"] == want


def test_no_command_is_an_error() -> None:
    with pytest.raises(oc.UserError, match="no command specified"):
        oc.build_spec(inp(image={}))


def test_env_image_then_container_then_hostname() -> None:
    i = inp(image={"Env": ["PATH=/bin", "A=img", "B=img"], "Cmd": ["sh"]},
            env=[("A", "pod"), ("C", "3")], hostname="web-1")
    env = oc.build_spec(i)["process"]["env"]
    assert env == ["PATH=/bin", "A=pod", "B=img", "HOSTNAME=web-1", "C=3"]
    # No PATH in the image: the default one.
    assert f"PATH={oc.DEFAULT_PATH}" in oc.build_spec(inp())["process"]["env"]


def test_user_from_security_context_image_and_passwd(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nweb:x:33:44::/:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nstaff:x:50:\n")
    spec = oc.build_spec(inp(image={"User": "web", "Cmd": ["sh"]}, rootfs=str(tmp_path)))
    assert spec["process"]["user"] == {"uid": 33, "gid": 44}
    spec = oc.build_spec(inp(image={"User": "web:staff", "Cmd": ["sh"]},
                             rootfs=str(tmp_path)))
    assert spec["process"]["user"] == {"uid": 33, "gid": 50}
    spec = oc.build_spec(inp({"securityContext": {"runAsUser": 1000}},
                             {"securityContext": {"runAsGroup": 3000, "fsGroup": 2000,
                                                  "supplementalGroups": [5]}},
                             rootfs=str(tmp_path)))
    assert spec["process"]["user"] == {"uid": 1000, "gid": 3000, "additionalGids": [5, 2000]}
    with pytest.raises(oc.UserError, match="unable to find user nobody"):
        oc.build_spec(inp(image={"User": "nobody", "Cmd": ["sh"]}, rootfs=str(tmp_path)))
    with pytest.raises(oc.UserError, match="runAsNonRoot"):
        oc.build_spec(inp({"securityContext": {"runAsNonRoot": True}}, rootfs=str(tmp_path)))


def test_capabilities_add_drop_privileged_and_host_limit() -> None:
    caps = oc.build_spec(inp())["process"]["capabilities"]["bounding"]
    assert set(caps) == set(oc.DEFAULT_CAPS)
    sc = {"securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["KILL"]}}}
    caps = oc.build_spec(inp(sc))["process"]["capabilities"]["effective"]
    assert "CAP_NET_ADMIN" in caps and "CAP_KILL" not in caps
    sc = {"securityContext": {"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}}
    assert oc.build_spec(inp(sc))["process"]["capabilities"]["permitted"] == ["CAP_CHOWN"]
    host = frozenset(oc.DEFAULT_CAPS) | {"CAP_SYS_ADMIN"}
    spec = oc.build_spec(inp({"securityContext": {"privileged": True}}, host_caps=host))
    assert set(spec["process"]["capabilities"]["bounding"]) == host
    assert "maskedPaths" not in spec["linux"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


def test_resources_to_cgroups() -> None:
    spec = oc.build_spec(inp({"resources": {"requests": {"cpu": "250m"},
                                            "limits": {"cpu": "500m", "memory": "32Mi"}}}))
    res = spec["linux"]["resources"]
    assert res["memory"] == {"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024}
    assert res["cpu"] == {"shares": 256, "quota": 50000, "period": 100000}
    assert oc.build_spec(inp())["linux"]["resources"]["cpu"] == {"shares": 2}
    # Limits only: requests default to the limits (shares from the limit).
    res = oc.build_spec(inp({"resources": {"limits": {"cpu": "2"}}}))["linux"]["resources"]
    assert res["cpu"]["shares"] == 2048 and res["cpu"]["quota"] == 200000


def test_oom_score_adj_by_qos_clamped() -> None:
    guaranteed = {"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
    assert oc.qos_class(inp(guaranteed).pod) == "Guaranteed"
    assert oc.build_spec(inp(guaranteed, min_oom_score_adj=0))["process"]["oomScoreAdj"] == 0
    assert oc.build_spec(inp(guaranteed))["process"]["oomScoreAdj"] == -997
    assert oc.build_spec(inp())["process"]["oomScoreAdj"] == 1000
    burst = {"resources": {"requests": {"memory": "1Gi"}}}
    assert 2 < oc.build_spec(inp(burst))["process"]["oomScoreAdj"] < 1000


def test_namespaces_and_pod_files() -> None:
    sb = oc.PodSandboxPaths(net="/ns/net", ipc="/ns/ipc", uts="/ns/uts", hosts="/p/hosts",
                            resolv_conf="/p/resolv.conf", hostname="/p/hostname")
    spec = oc.build_spec(inp(sandbox=sb, mounts=[("/data", "/vol/data", True)],
                             termination_log="/b/tl"))
    ns = {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}
    assert ns == {"mount": None, "pid": None, "network": "/ns/net", "ipc": "/ns/ipc",
                  "uts": "/ns/uts"}
    dest = {m["destination"]: m for m in spec["mounts"]}
    assert dest["/etc/hosts"]["source"] == "/p/hosts"
    assert dest["/etc/resolv.conf"]["source"] == "/p/resolv.conf"
    assert dest["/dev/termination-log"]["source"] == "/b/tl"
    assert dest["/data"]["source"] == "/vol/data" and "ro" in dest["/data"]["options"]
    # hostNetwork / hostPID pods: the host's namespaces.
    spec = oc.build_spec(inp(pod_spec={"hostPID": True}, sandbox=oc.PodSandboxPaths()))
    assert [n["type"] for n in spec["linux"]["namespaces"]] == ["mount"]


def test_read_only_root_and_no_new_privileges() -> None:
    sc = {"securityContext": {"readOnlyRootFilesystem": True,
                              "allowPrivilegeEscalation": False}}
    spec = oc.build_spec(inp(sc))
    assert spec["root"]["readonly"] is True
    assert spec["process"]["noNewPrivileges"] is True


def test_host_bounding_caps(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapBnd:\t00000000000000c1\n")   # bits 0, 6, 7
    assert oc.host_bounding_caps(str(status)) == {"CAP_CHOWN", "CAP_SETGID", "CAP_SETUID"}


def test_tty_container_gets_a_terminal_and_term() -> None:
    spec = oc.build_spec(inp({"tty": True}))
    assert spec["process"]["terminal"] is True
    assert "TERM=xterm" in spec["process"]["env"]
    # The container's own TERM wins; no tty: no terminal, no TERM.
    assert "TERM=vt100" in oc.build_spec(inp({"tty": True}, env=[("TERM", "vt100")])
                                         )["process"]["env"]
    plain = oc.build_spec(inp())["process"]
    assert plain["terminal"] is False
    assert not any(e.startswith("TERM=") for e in plain["env"])
