"""Pod volumes: upstream's AtomicWriter layout, the sources' payloads, the manager."""
from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

import pytest

from pyk8s.kubelet import crilog
from pyk8s.kubelet.volumes import VolumeError, VolumeManager
from pyk8s.kubelet.volumes.atomic_writer import DATA_DIR, FileProjection, write_payload
from tests.conftest import needs_root


def test_atomic_writer_layout(tmp_path: Path) -> None:
    d = tmp_path / "v"
    assert write_payload(d, {"a": FileProjection(b"1"), "dir/b": FileProjection(b"2", 0o600)})
    data = os.readlink(d / DATA_DIR)
    assert data.startswith("..") and (d / data).is_dir()
    assert os.readlink(d / "a") == "..data/a" and os.readlink(d / "dir") == "..data/dir"
    assert (d / "a").read_text() == "1" and (d / "dir" / "b").read_text() == "2"
    assert (d / "dir" / "b").stat().st_mode & 0o777 == 0o600
    assert not write_payload(d, {"a": FileProjection(b"1"),
                                 "dir/b": FileProjection(b"2", 0o600)})   # unchanged
    assert write_payload(d, {"a": FileProjection(b"new")})
    assert (d / "a").read_text() == "new" and not (d / "dir").exists()
    assert not (d / data).exists()                 # the old timestamped dir is gone
    names = sorted(p.name for p in d.iterdir())
    assert names == sorted([DATA_DIR, os.readlink(d / DATA_DIR), "a"])
    with pytest.raises(ValueError):
        write_payload(d, {"../x": FileProjection(b"")})


OBJS: dict[tuple[str, str, str], Any] = {
    ("configmap", "ns", "cm"): {"data": {"k1": "v1", "k2": "v2"}},
    ("secret", "ns", "s"): {"data": {"pw": base64.b64encode(b"x").decode()}},
}


async def getter(kind: str, ns: str, name: str) -> Any:
    return OBJS.get((kind, ns, name))


async def tokens(pod: Any, proj: Any) -> str:
    return "tok-" + pod["metadata"]["name"]


def pod(volumes: list[Any]) -> Any:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"a": "b"}},
            "spec": {"volumes": volumes, "containers": [{"name": "c", "resources": {
                "limits": {"memory": "1Gi"}}}]}}


def test_sources(tmp_path: Path) -> None:
    m = VolumeManager(tmp_path / "vols", getter, tokens, {"cpu": "2"})
    host = tmp_path / "host"
    host.mkdir()
    p = pod([
        {"name": "cm", "configMap": {"name": "cm", "items": [{"key": "k2", "path": "sub/f",
                                                              "mode": 0o400}]}},
        {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o440}},
        {"name": "opt", "configMap": {"name": "none", "optional": True}},
        {"name": "dw", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c",
                                                 "resource": "limits.memory",
                                                 "divisor": "1Mi"}}]}},
        {"name": "pj", "projected": {"sources": [
            {"configMap": {"name": "cm"}}, {"secret": {"name": "s"}},
            {"serviceAccountToken": {"path": "token"}}]}},
        {"name": "ed", "emptyDir": {}},
        {"name": "hp", "hostPath": {"path": str(host / "new"), "type": "DirectoryOrCreate"}},
    ])
    paths = asyncio.run(m.setup(p))
    v = Path(paths["cm"])
    assert (v / "sub" / "f").read_text() == "v2" and not (v / "k1").exists()
    assert (v / "sub" / "f").stat().st_mode & 0o777 == 0o400
    assert (Path(paths["sec"]) / "pw").read_text() == "x"
    assert (Path(paths["sec"]) / "pw").stat().st_mode & 0o777 == 0o440
    assert list(Path(paths["opt"]).glob("[!.]*")) == []
    dw = Path(paths["dw"])
    assert (dw / "labels").read_text() == 'a="b"' and (dw / "name").read_text() == "p"
    assert (dw / "mem").read_text() == "1024"
    pj = Path(paths["pj"])
    assert [(pj / f).read_text() for f in ("k1", "pw", "token")] == ["v1", "x", "tok-p"]
    assert Path(paths["ed"]).is_dir() and paths["hp"] == str(host / "new")
    assert (host / "new").is_dir()
    assert m.mounts(p, {"name": "c", "volumeMounts": [
        {"name": "cm", "mountPath": "/etc/cm", "readOnly": True}]}) == [
        ("/etc/cm", paths["cm"], True)]

    OBJS[("configmap", "ns", "cm")] = {"data": {"k1": "v1", "k2": "changed"}}
    try:
        asyncio.run(m.refresh(p))
        assert (v / "sub" / "f").read_text() == "changed"
    finally:
        OBJS[("configmap", "ns", "cm")] = {"data": {"k1": "v1", "k2": "v2"}}
    m.teardown("u1")
    assert not (tmp_path / "vols" / "u1").exists() and (host / "new").is_dir()


@pytest.mark.parametrize("vol,message", [
    ({"configMap": {"name": "x"}}, 'configmap "x" not found'),
    ({"secret": {"secretName": "y"}}, 'secret "y" not found'),
    ({"configMap": {"name": "cm", "items": [{"key": "zz", "path": "p"}]}},
     "configmap references non-existent config key: zz"),
    ({"hostPath": {"path": "/nonexistent-pyk8s", "type": "Directory"}},
     "hostPath type check failed: /nonexistent-pyk8s is not a directory"),
])
def test_errors(tmp_path: Path, vol: Any, message: str) -> None:
    m = VolumeManager(tmp_path, getter, tokens)
    with pytest.raises(VolumeError) as e:
        asyncio.run(m.setup(pod([{"name": "v", **vol}])))
    assert str(e.value) == f'MountVolume.SetUp failed for volume "v" : {message}'


def test_process_runtime_needs_root_for_mounts(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from pyk8s.kubelet.runtime import ContainerConfig, CreateContainerError
    from pyk8s.kubelet.runtimes.process import ProcessRuntime
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    rt = ProcessRuntime(tmp_path)
    cfg = ContainerConfig(argv=["true"], mounts=[("/data", str(tmp_path), False)])
    with pytest.raises(CreateContainerError) as e:
        asyncio.run(rt.create_container("u1", {"name": "c"}, config=cfg))
    assert "needs root for volume mounts" in str(e.value)
    assert e.value.reason == "CreateContainerError"
    # Without mounts it is fine.
    asyncio.run(rt.create_container("u1", {"name": "c"}, config=ContainerConfig(argv=["true"])))


@needs_root
def test_launcher_mounts(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("content\n")
    stage = tmp_path / "stage"
    stage.mkdir()
    target = "/etc/pyk8s-unit-launcher/x"
    spec = {"argv": ["sh", "-c", f"cat {target}/f; touch {target}/g || echo RO; "
                                 f"cat {tmp_path}/src/f"],
            "env": {"PATH": "/usr/bin:/bin"}, "stage": str(stage),
            "mounts": [[target, str(src), True]]}
    out = subprocess.run([sys.executable, "-m", "pyk8s.kubelet.runtimes.launcher",
                          json.dumps(spec)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["content", "RO", "content"]
    assert not Path("/etc/pyk8s-unit-launcher").exists()
    assert list(stage.iterdir()) == [] and not (src / "g").exists()
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()


@needs_root
def test_process_runtime_mounts_and_exec(tmp_path: Path) -> None:
    from pyk8s.kubelet.runtime import ContainerConfig
    from pyk8s.kubelet.runtimes.process import ProcessRuntime
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("mounted\n")
    stage = tmp_path / "stage"
    stage.mkdir()
    target = "/etc/pyk8s-unit-exec/cfg"

    async def main() -> None:
        rt = ProcessRuntime(tmp_path / "data")
        cfg = ContainerConfig(argv=["sh", "-c", f"cat {target}/f; sleep 30"],
                              env=[("A", "1")], mounts=[(target, str(src), True)],
                              stage_dir=str(stage))
        cid = await rt.create_container("u1", {"name": "c"}, config=cfg)
        await rt.start_container(cid)
        log = rt.log_path("u1", "c", 0)
        for _ in range(100):
            if "mounted" in crilog.read_output(log):
                break
            await asyncio.sleep(0.05)
        assert crilog.read_output(log) == "mounted\n"
        code, out = await rt.exec_sync(cid, ["sh", "-c", f"cat {target}/f; echo $A"], 10)
        assert (code, out) == (0, b"mounted\n1\n")
        await rt.kill_container(cid, 1)
        assert rt.pod_containers("u1")[0].state == "exited"

    asyncio.run(main())
    assert not Path("/etc/pyk8s-unit-exec").exists()
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()
