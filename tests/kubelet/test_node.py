"""Node status building, condition transitions and the post-on-change rule."""
from __future__ import annotations

from pathlib import Path

from pyk8s.kubelet.node import (NODE_STATUS_MAX_IMAGES, NodeConfig, NodeHealth,
                                NodeResources, build_conditions, build_node,
                                build_node_status, host_os_image, node_images,
                                read_meminfo_bytes, should_post, status_changed)

GI = 1024 ** 3


def cfg() -> NodeConfig:
    return NodeConfig(name="n1", node_ip="127.0.0.1",
                      resources=NodeResources(cpu=4, memory_bytes=8 * GI,
                                              ephemeral_bytes=100 * GI),
                      runtime_version="fake://0.1")


def test_capacity_and_allocatable() -> None:
    st = build_node_status(cfg(), None, NodeHealth(), "2026-01-01T00:00:00Z")
    assert st["capacity"] == {"cpu": "4", "memory": "8388608Ki", "pods": "110",
                              "ephemeral-storage": "104857600Ki", "hugepages-1Gi": "0",
                              "hugepages-2Mi": "0"}
    # evictionHard memory.available<100Mi and nodefs.available<10%, as upstream.
    assert st["allocatable"]["memory"] == f"{8 * 1024 * 1024 - 100 * 1024}Ki"
    assert st["allocatable"]["ephemeral-storage"] == str(int(100 * GI * 0.9))
    assert st["allocatable"]["cpu"] == "4" and st["allocatable"]["pods"] == "110"
    assert st["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"},
                               {"type": "Hostname", "address": "n1"}]
    info = st["nodeInfo"]
    assert (info["kubeletVersion"], info["operatingSystem"], info["architecture"],
            info["containerRuntimeVersion"]) == ("v1.32.0", "linux", "amd64", "fake://0.1")


def test_meminfo() -> None:
    assert read_meminfo_bytes() > 0


def test_conditions_upstream_reasons() -> None:
    conds = build_conditions(None, NodeHealth(), "T0")
    assert [(c["type"], c["status"], c["reason"]) for c in conds] == [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady")]
    assert conds[3]["message"] == "kubelet is posting ready status"
    assert all(c["lastHeartbeatTime"] == "T0" == c["lastTransitionTime"] for c in conds)


def test_condition_transitions_keep_or_move_transition_time() -> None:
    c0 = build_conditions(None, NodeHealth(), "T0")
    c1 = build_conditions(c0, NodeHealth(), "T1")
    assert all(c["lastTransitionTime"] == "T0" and c["lastHeartbeatTime"] == "T1" for c in c1)
    c2 = build_conditions(c1, NodeHealth(runtime_ready=False, memory_pressure=True), "T2")
    by = {c["type"]: c for c in c2}
    assert by["Ready"]["status"] == "False" and by["Ready"]["reason"] == "KubeletNotReady"
    assert by["Ready"]["lastTransitionTime"] == "T2"
    assert by["MemoryPressure"]["status"] == "True"
    assert by["MemoryPressure"]["reason"] == "KubeletHasInsufficientMemory"
    assert by["DiskPressure"]["lastTransitionTime"] == "T0"


def test_post_on_change_or_report_frequency() -> None:
    s0 = build_node_status(cfg(), None, NodeHealth(), "T0")
    assert should_post(None, s0, None, 0.0)
    s1 = build_node_status(cfg(), s0, NodeHealth(), "T1")  # only heartbeats moved
    assert not status_changed(s0, s1)
    assert not should_post(s0, s1, 0.0, 299.0)
    assert should_post(s0, s1, 0.0, 300.0)  # nodeStatusReportFrequency: 5 min
    s2 = build_node_status(cfg(), s1, NodeHealth(disk_pressure=True), "T2")
    assert status_changed(s1, s2) and should_post(s1, s2, 0.0, 1.0)


def test_build_node_labels() -> None:
    n = build_node(cfg(), NodeHealth(), "T0")
    assert n["metadata"]["labels"]["kubernetes.io/hostname"] == "n1"
    assert n["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    assert n["status"]["conditions"][-1]["type"] == "Ready"


def test_node_images_biggest_first_digests_then_tags_at_most_50() -> None:
    from types import SimpleNamespace as R
    records = [R(id=f"sha256:{i:064x}", size=i * 10, repo_digests=[f"r/x{i}@sha256:{i:064x}"],
                 repo_tags=[f"r/x{i}:v1"]) for i in range(60)]
    records.append(R(id="sha256:" + "f" * 64, size=10**9, repo_digests=[], repo_tags=[]))
    images = node_images(records)
    assert len(images) == NODE_STATUS_MAX_IMAGES == 50
    assert images[0] == {"names": [f"r/x59@sha256:{59:064x}", "r/x59:v1"], "sizeBytes": 590}
    assert [i["sizeBytes"] for i in images] == sorted((i["sizeBytes"] for i in images),
                                                      reverse=True)


def test_host_os_image(tmp_path: Path) -> None:
    f = tmp_path / "os-release"
    f.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    assert host_os_image(str(f)) == "Debian GNU/Linux 12 (bookworm)"
    assert host_os_image(str(tmp_path / "missing")) == "Linux"


def test_status_lists_images_only_when_given() -> None:
    health = NodeHealth()
    assert "images" not in build_node_status(cfg(), None, health, "2026-01-01T00:00:00Z")
    with_images = build_node_status(cfg(), None, health, "2026-01-01T00:00:00Z",
                                    images=[{"names": ["a"], "sizeBytes": 1}])
    assert with_images["images"] == [{"names": ["a"], "sizeBytes": 1}]
    assert status_changed(build_node_status(cfg(), None, health, "2026-01-01T00:00:00Z",
                                            images=[]), with_images)
