from pyk8s.scheduler.framework import (FitError, num_feasible_nodes_to_find, pod_requests,
                                       default_normalize)
from pyk8s.scheduler.config import SchedulerConfig, parse_config
from tests.scheduler.helpers import node, on, pod


def test_pod_requests_init_containers_and_overhead():
    spec = {"containers": [{"resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                           {"resources": {"requests": {"cpu": "200m"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "1", "memory": "100Mi"}}},
                               {"restartPolicy": "Always",
                                "resources": {"requests": {"cpu": "50m"}}}],
            "overhead": {"cpu": "10m", "memory": "1Mi"}}
    r = pod_requests(spec)
    # containers 300m + sidecar 50m = 350m; init max 1000m → 1000m; + overhead 10m
    assert r["cpu"] == 1010
    assert r["memory"] == (1 << 30) + (1 << 20)


def test_non_zero_requests():
    assert pod("p").non_zero == (100, 200 * 1024 * 1024)
    assert pod("p", cpu="1").requests.milli_cpu == 1000


def test_num_feasible_nodes():
    assert num_feasible_nodes_to_find(50) == 50
    assert num_feasible_nodes_to_find(500) == 500 * 46 // 100
    assert num_feasible_nodes_to_find(5000) == 500       # 10%
    assert num_feasible_nodes_to_find(6000) == 300       # 5% floor
    assert num_feasible_nodes_to_find(1000, 100) == 1000
    assert num_feasible_nodes_to_find(150, 10) == 100


def test_default_normalize():
    s = [0, 5, 10]
    default_normalize(s)
    assert s == [0, 50, 100]
    s = [0, 0]
    default_normalize(s, reverse=True)
    assert s == [100, 100]


def test_fit_error_message():
    fw = SchedulerConfig().frameworks()["default-scheduler"]
    nodes = [node(f"n{i}", cpu="1") for i in range(3)]
    try:
        fw.schedule(pod("big", cpu="2"), nodes)
    except FitError as e:
        assert e.message() == "0/3 nodes are available: 3 Insufficient cpu."
    else:
        raise AssertionError("expected FitError")


def test_schedule_prefers_least_allocated():
    fw = SchedulerConfig().frameworks()["default-scheduler"]
    busy = on(node("busy"), pod("x", cpu="3", memory="20Gi"))
    free = node("free")
    for _ in range(5):
        n, _ = fw.schedule(pod("p", cpu="500m", memory="1Gi"), [busy, free])
        assert n.name == "free"


def test_config_profiles_and_weights():
    cfg = parse_config({
        "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
        "percentageOfNodesToScore": 30,
        "profiles": [
            {"schedulerName": "default-scheduler"},
            {"schedulerName": "packer",
             "plugins": {"score": {"disabled": [{"name": "*"}],
                                   "enabled": [{"name": "NodeResourcesFit", "weight": 5}]},
                         "filter": {"disabled": [{"name": "TaintToleration"}]}},
             "pluginConfig": [{"name": "NodeResourcesFit",
                               "args": {"scoringStrategy": {"type": "MostAllocated"}}}]}]})
    fws = cfg.frameworks()
    assert set(fws) == {"default-scheduler", "packer"}
    packer = fws["packer"]
    assert [(p.name, w) for p, w in packer.scorers] == [("NodeResourcesFit", 5)]
    assert "TaintToleration" not in [p.name for p in packer.filters]
    assert packer.percentage == 30
    busy = on(node("busy"), pod("x", cpu="3", memory="20Gi"))
    for _ in range(5):
        n, _ = packer.schedule(pod("p", cpu="500m", memory="1Gi"), [busy, node("free")])
        assert n.name == "busy"
    d = fws["default-scheduler"]
    assert [(p.name, w) for p, w in d.scorers][:3] == [
        ("TaintToleration", 3), ("NodeAffinity", 2), ("NodeResourcesFit", 1)]


def test_load_config_file(tmp_path):
    from pyk8s.scheduler.config import ConfigError, load_config
    f = tmp_path / "sched.yaml"
    f.write_text("""
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: my-scheduler
  plugins:
    multiPoint:
      disabled: [{name: PodTopologySpread}]
    score:
      enabled: [{name: ImageLocality, weight: 7}]
""")
    fw = load_config(str(f)).frameworks()["my-scheduler"]
    assert "PodTopologySpread" not in [p.name for p in fw.filters]
    assert ("ImageLocality", 7) in [(p.name, w) for p, w in fw.scorers]
    assert "PodTopologySpread" not in [p.name for p, _ in fw.scorers]
    f.write_text("kind: KubeSchedulerConfiguration\nprofiles:\n- plugins:\n"
                 "    filter:\n      enabled: [{name: NoSuchPlugin}]\n")
    try:
        load_config(str(f))
        raise AssertionError("unknown plugin accepted")
    except ConfigError as e:
        assert "NoSuchPlugin" in str(e)
