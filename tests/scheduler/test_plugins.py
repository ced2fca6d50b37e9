"""One group of tests per plugin: pure functions over PodInfo / NodeInfo."""
from pyk8s.scheduler.framework import UNRESOLVABLE, UNSCHEDULABLE, SKIP, CycleState
from pyk8s.scheduler.plugins.balanced_allocation import NodeResourcesBalancedAllocation
from pyk8s.scheduler.plugins.image_locality import ImageLocality
from pyk8s.scheduler.plugins.inter_pod_affinity import InterPodAffinity
from pyk8s.scheduler.plugins.node_affinity import NodeAffinity
from pyk8s.scheduler.plugins.node_name import NodeName
from pyk8s.scheduler.plugins.node_ports import NodePorts
from pyk8s.scheduler.plugins.node_resources_fit import NodeResourcesFit
from pyk8s.scheduler.plugins.node_unschedulable import NodeUnschedulable
from pyk8s.scheduler.plugins.pod_topology_spread import PodTopologySpread
from pyk8s.scheduler.plugins.taint_toleration import TaintToleration
from tests.scheduler.helpers import node, on, pod


def run_filter(plugin, p, n, nodes=None):
    st = CycleState()
    pre = plugin.pre_filter(st, p, nodes or [n])
    if pre is not None:
        return pre
    return plugin.filter(st, p, n)


def run_scores(plugin, p, nodes):
    st = CycleState()
    if not plugin.pre_score(st, p, nodes):
        return None
    s = [plugin.score(st, p, n) for n in nodes]
    plugin.normalize(st, p, s)
    return s


# -- NodeUnschedulable / NodeName / NodePorts ----------------------------------------------------
def test_node_unschedulable():
    pl = NodeUnschedulable()
    n = node("n", unschedulable=True)
    st = run_filter(pl, pod("p"), n)
    assert st.code == UNRESOLVABLE and st.reasons == ("node(s) were unschedulable",)
    tol = pod("t", tolerations=[{"key": "node.kubernetes.io/unschedulable",
                                 "operator": "Exists", "effect": "NoSchedule"}])
    assert run_filter(pl, tol, n) is None
    assert run_filter(pl, pod("p"), node("m")) is None


def test_node_name():
    pl = NodeName()
    assert run_filter(pl, pod("p"), node("a")).code == SKIP
    p = pod("p", nodeName="b")
    assert run_filter(pl, p, node("a")).reasons == ("node(s) didn't match the requested node name",)
    assert run_filter(pl, p, node("b")) is None


def test_node_ports():
    pl = NodePorts()
    used = on(node("n"), pod("a", ports=[{"containerPort": 80, "hostPort": 8080}]))
    p = pod("p", ports=[{"containerPort": 80, "hostPort": 8080}])
    assert run_filter(pl, p, used).code == UNSCHEDULABLE
    assert run_filter(pl, pod("q", ports=[{"containerPort": 80, "hostPort": 8081}]), used) is None
    assert run_filter(pl, pod("q", ports=[{"containerPort": 80, "hostPort": 8080,
                                           "protocol": "UDP"}]), used) is None
    assert run_filter(pl, pod("r"), used).code == SKIP


# -- NodeResourcesFit ---------------------------------------------------------------------------
def test_fit_filter():
    pl = NodeResourcesFit()
    n = on(node("n", cpu="2", memory="4Gi", pods=3), pod("a", cpu="1500m", memory="1Gi"))
    assert run_filter(pl, pod("p", cpu="500m"), n) is None
    st = run_filter(pl, pod("p", cpu="600m", memory="4Gi"), n)
    assert st.reasons == ("Insufficient cpu", "Insufficient memory")
    on(n, pod("b"), pod("c"))
    assert run_filter(pl, pod("p"), n).reasons == ("Too many pods",)


def test_fit_extended_and_ephemeral():
    pl = NodeResourcesFit()
    n = node("n", extra={"example.com/gpu": "1", "ephemeral-storage": "1Gi"})
    assert run_filter(pl, pod("p", extended={"example.com/gpu": "1"}), n) is None
    assert run_filter(pl, pod("p", extended={"example.com/gpu": "2"}), n).reasons == \
        ("Insufficient example.com/gpu",)
    assert run_filter(pl, pod("p", extended={"ephemeral-storage": "2Gi"}), n).reasons == \
        ("Insufficient ephemeral-storage",)
    assert run_filter(pl, pod("p", extended={"example.com/gpu": "1"}), node("m")).reasons == \
        ("Insufficient example.com/gpu",)


def test_fit_init_containers_and_overhead():
    pl = NodeResourcesFit()
    n = node("n", cpu="1")
    p = pod("p", cpu="100m", initContainers=[{"name": "i", "resources": {"requests": {"cpu": "2"}}}])
    assert run_filter(pl, p, n).reasons == ("Insufficient cpu",)
    p = pod("p", cpu="950m", overhead={"cpu": "100m"})
    assert run_filter(pl, p, n).reasons == ("Insufficient cpu",)


def test_least_and_most_allocated():
    a = on(node("a"), pod("x", cpu="2", memory="16Gi"))
    b = node("b")
    p = pod("p", cpu="1", memory="8Gi")
    least = NodeResourcesFit()
    sa, sb = least.score({}, p, a), least.score({}, p, b)
    assert sb > sa
    assert sb == ((4000 - 1000) * 100 // 4000 + (32 - 8) * 100 // 32) // 2
    most = NodeResourcesFit({"scoringStrategy": {"type": "MostAllocated"}})
    assert most.score({}, p, a) > most.score({}, p, b)


def test_balanced_allocation():
    pl = NodeResourcesBalancedAllocation()
    p = pod("p", cpu="1", memory="8Gi")     # 25% / 25%
    assert pl.score({}, p, node("n")) == 100
    p = pod("p", cpu="2", memory="1Gi")     # 50% / ~3%
    assert pl.score({}, p, node("n")) < 80


# -- NodeAffinity -------------------------------------------------------------------------------
def test_node_selector_and_required_affinity():
    pl = NodeAffinity()
    ssd = node("a", labels={"disk": "ssd", "gen": "5"})
    hdd = node("b", labels={"disk": "hdd", "gen": "3"})
    p = pod("p", nodeSelector={"disk": "ssd"})
    assert run_filter(pl, p, ssd) is None
    assert run_filter(pl, p, hdd).reasons == ("node(s) didn't match Pod's node affinity/selector",)
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "gen", "operator": "Gt",
                                                     "values": ["4"]}]},
                              {"matchFields": [{"key": "metadata.name", "operator": "In",
                                                "values": ["c"]}]}]}}}
    p = pod("p", affinity=aff)
    assert run_filter(pl, p, ssd) is None
    assert run_filter(pl, p, hdd) is not None
    assert run_filter(pl, p, node("c")) is None
    assert run_filter(pl, pod("q"), hdd).code == SKIP


def test_node_affinity_preferred_score():
    pl = NodeAffinity()
    aff = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["z1"]}]}},
        {"weight": 30, "preference": {"matchExpressions": [
            {"key": "disk", "operator": "Exists"}]}}]}}
    nodes = [node("a", labels={"zone": "z1"}), node("b", labels={"disk": "x"}),
             node("c", labels={"zone": "z1", "disk": "y"}), node("d")]
    assert run_scores(pl, pod("p", affinity=aff), nodes) == [25, 75, 100, 0]
    assert run_scores(pl, pod("q"), nodes) is None


# -- TaintToleration ----------------------------------------------------------------------------
def test_taints_filter():
    pl = TaintToleration()
    n = node("n", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    st = run_filter(pl, pod("p"), n)
    assert st.code == UNRESOLVABLE
    assert st.reasons == ("node(s) had untolerated taint {dedicated: gpu}",)
    ok = pod("p", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu",
                                "effect": "NoSchedule"}])
    assert run_filter(pl, ok, n) is None
    assert run_filter(pl, pod("p", tolerations=[{"operator": "Exists"}]), n) is None
    wrong = pod("p", tolerations=[{"key": "dedicated", "value": "cpu"}])
    assert run_filter(pl, wrong, n) is not None
    soft = node("s", taints=[{"key": "k", "effect": "PreferNoSchedule"}])
    assert run_filter(pl, pod("p"), soft) is None


def test_taints_score():
    pl = TaintToleration()
    nodes = [node("a"), node("b", taints=[{"key": "k", "effect": "PreferNoSchedule"}]),
             node("c", taints=[{"key": "k", "effect": "PreferNoSchedule"},
                               {"key": "l", "effect": "PreferNoSchedule"}])]
    assert run_scores(pl, pod("p"), nodes) == [100, 50, 0]
    tol = pod("p", tolerations=[{"key": "k", "operator": "Exists", "effect": "PreferNoSchedule"}])
    assert run_scores(pl, tol, nodes) == [100, 100, 0]


# -- ImageLocality ------------------------------------------------------------------------------
def test_image_locality():
    pl = ImageLocality()
    img = [{"names": ["registry/app:1"], "sizeBytes": 500 * 1024 * 1024}]
    nodes = [node("a", images=img), node("b")]
    s = run_scores(pl, pod("p", image="registry/app:1"), nodes)
    assert s[0] > 0 and s[1] == 0
    assert run_scores(pl, pod("p", image="other"), nodes) is None


# -- InterPodAffinity ---------------------------------------------------------------------------
def zone_nodes():
    return [node("a1", labels={"zone": "a"}), node("a2", labels={"zone": "a"}),
            node("b1", labels={"zone": "b"})]


def term(labels, key="zone"):
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key}


def test_required_pod_affinity():
    pl = InterPodAffinity()
    nodes = zone_nodes()
    on(nodes[0], pod("db", labels={"app": "db"}))
    p = pod("web", affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "db"})]}})
    res = [run_filter(pl, p, n, nodes) for n in nodes]
    assert res[0] is None and res[1] is None
    assert res[2].reasons == ("node(s) didn't match pod affinity rules",)
    # Bootstrap: nothing matches anywhere, the pod matches its own term → allowed.
    empty = zone_nodes()
    first = pod("w", labels={"app": "web"}, affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "web"})]}})
    assert all(run_filter(pl, first, n, empty) is None for n in empty)


def test_required_pod_anti_affinity_both_ways():
    pl = InterPodAffinity()
    nodes = zone_nodes()
    on(nodes[0], pod("w1", labels={"app": "web"}))
    p = pod("w2", labels={"app": "web"}, affinity={"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "web"})]}})
    res = [run_filter(pl, p, n, nodes) for n in nodes]
    assert res[0].reasons == ("node(s) didn't match pod anti-affinity rules",)
    assert res[1] is not None and res[2] is None
    # An existing pod's anti-affinity keeps matching pods away.
    nodes = zone_nodes()
    on(nodes[2], pod("loner", affinity={"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "web"})]}}))
    q = pod("w", labels={"app": "web"})
    assert run_filter(pl, q, nodes[2], nodes).reasons == \
        ("node(s) didn't satisfy existing pods anti-affinity rules",)
    assert run_filter(pl, q, nodes[0], nodes) is None
    assert run_filter(pl, pod("x"), nodes[0], zone_nodes()).code == SKIP


def test_preferred_pod_affinity_score():
    pl = InterPodAffinity()
    nodes = zone_nodes()
    on(nodes[2], pod("db", labels={"app": "db"}))
    p = pod("web", affinity={"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "podAffinityTerm": term({"app": "db"})}]}})
    assert run_scores(pl, p, nodes) == [0, 0, 100]
    anti = pod("web", affinity={"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": term({"app": "db"})}]}})
    assert run_scores(pl, anti, nodes) == [100, 100, 0]


# -- PodTopologySpread --------------------------------------------------------------------------
def spread(when="DoNotSchedule", skew=1, key="zone"):
    return [{"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when,
             "labelSelector": {"matchLabels": {"app": "web"}}}]


def test_topology_spread_filter():
    pl = PodTopologySpread()
    nodes = zone_nodes()
    on(nodes[0], pod("w1", labels={"app": "web"}))
    p = pod("w2", labels={"app": "web"}, topologySpreadConstraints=spread())
    res = [run_filter(pl, p, n, nodes) for n in nodes]
    assert res[0].reasons == ("node(s) didn't match pod topology spread constraints",)
    assert res[1] is not None
    assert res[2] is None
    nolabel = node("x")
    st = run_filter(pl, p, nolabel, nodes + [nolabel])
    assert st.code == UNRESOLVABLE
    # maxSkew 2 allows zone a again.
    p2 = pod("w2", labels={"app": "web"}, topologySpreadConstraints=spread(skew=2))
    assert run_filter(pl, p2, nodes[0], nodes) is None


def test_topology_spread_score():
    pl = PodTopologySpread()
    nodes = zone_nodes()
    on(nodes[0], pod("w1", labels={"app": "web"}), pod("w3", labels={"app": "web"}))
    p = pod("w2", labels={"app": "web"}, topologySpreadConstraints=spread("ScheduleAnyway"))
    s = run_scores(pl, p, nodes)
    assert s[2] == 100 and s[0] < s[2]
    assert run_scores(pl, pod("q"), nodes) is None
