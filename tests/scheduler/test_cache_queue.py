import asyncio

from pyk8s.scheduler.cache import Cache
from pyk8s.scheduler.config import SchedulerConfig
from pyk8s.scheduler.framework import PodInfo
from pyk8s.scheduler.plugins.pod_topology_spread import constraints, count_domains
from pyk8s.scheduler.preemption import PDBs, preempt
from pyk8s.scheduler.framework import FitError
from pyk8s.scheduler.queue import SchedulingQueue
from tests.scheduler.helpers import node, on, pod


def node_obj(name, zone, cpu="4"):
    alloc = {"cpu": cpu, "memory": "32Gi", "pods": "110"}
    return {"metadata": {"name": name, "labels": {"zone": zone, "kubernetes.io/hostname": name}},
            "spec": {}, "status": {"allocatable": alloc}}


def test_assume_counts_before_bind_and_forget():
    c = Cache()
    c.add_node(node_obj("n", "a", cpu="1"))
    fw = SchedulerConfig().frameworks()["default-scheduler"]
    p1 = pod("p1", cpu="600m")
    n, _ = fw.schedule(p1, c.snapshot().nodes)
    c.assume(p1, n.name)
    assert c.is_assumed("default/p1")
    try:
        fw.schedule(pod("p2", cpu="600m"), c.snapshot().nodes)
        raise AssertionError("the assumed pod must count")
    except FitError as e:
        assert e.message() == "0/1 nodes are available: 1 Insufficient cpu."
    c.forget("default/p1")
    assert fw.schedule(pod("p2", cpu="600m"), c.snapshot().nodes)[0].name == "n"
    # Confirmation by the informer replaces the assumed state.
    c.assume(p1, "n")
    bound = PodInfo({**p1.pod, "spec": {**p1.pod["spec"], "nodeName": "n"}})
    c.add_pod(bound)
    assert not c.is_assumed("default/p1")
    c.remove_pod("default/p1")
    assert not c.nodes["n"].pods


def test_incremental_topology_counts_match_full_count():
    c = Cache()
    for i in range(6):
        c.add_node(node_obj(f"n{i}", "abc"[i % 3]))
    fw = SchedulerConfig().frameworks()["default-scheduler"]
    tsc = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "w"}}}]
    placed = []
    for i in range(9):
        p = pod(f"w{i}", cpu="100m", labels={"app": "w"}, topologySpreadConstraints=tsc)
        snap = c.snapshot()
        n, _ = fw.schedule(p, snap.nodes, None, snap)
        c.assume(p, n.name)
        placed.append(n.labels["zone"])
        cons = constraints(p, "DoNotSchedule")
        assert count_domains(p, cons, snap.nodes, snap) == count_domains(p, cons, snap.nodes)
    assert sorted(placed) == sorted("abc" * 3)
    c.remove_pod("default/w0")
    snap = c.snapshot()
    p = pod("x", labels={"app": "w"}, topologySpreadConstraints=tsc)
    cons = constraints(p, "DoNotSchedule")
    assert count_domains(p, cons, snap.nodes, snap) == count_domains(p, cons, snap.nodes)


def test_queue_order_backoff_and_moves():
    now = [100.0]
    q = SchedulingQueue(clock=lambda: now[0])
    q.add(pod("low", priority=1))
    q.add(pod("high", priority=10))
    a = q.pop_nowait()
    assert a.name == "high"
    q.add_unschedulable(a, q.scheduling_cycle)
    assert "default/high" in q.unschedulable
    b = q.pop_nowait()
    assert b.name == "low" and q.pop_nowait() is None
    # A cluster event moves the unschedulable pod to backoff (1 s after its attempt).
    q.move_all_to_active_or_backoff("NodeAdd")
    assert "default/high" in q.backoff
    q.flush()
    assert q.pop_nowait() is None
    now[0] += 1.0
    q.flush()
    assert q.pop_nowait().name == "high"
    # A move request during the cycle sends the failed pod to backoff, not unschedulable.
    q.add(pod("c"))
    c = q.pop_nowait()
    cycle = q.scheduling_cycle
    q.move_all_to_active_or_backoff("NodeAdd")
    q.add_unschedulable(c, cycle)
    assert "default/c" in q.backoff
    # Deleted while in flight: dropped.
    q.add(pod("d"))
    d = q.pop_nowait()
    q.delete(d.key)
    q.add_unschedulable(d, q.scheduling_cycle)
    assert len(q) == 1


def test_queue_pop_waits():
    async def go():
        q = SchedulingQueue()
        t = asyncio.ensure_future(q.pop())
        await asyncio.sleep(0.01)
        assert not t.done()
        q.add(pod("p"))
        return (await asyncio.wait_for(t, 1)).name
    assert asyncio.run(go()) == "p"


def test_preemption_picks_lowest_priority_and_respects_pdb():
    fw = SchedulerConfig().frameworks()["default-scheduler"]
    a = on(node("a", cpu="1"), pod("a-mid", cpu="800m", priority=5))
    b = on(node("b", cpu="1"), pod("b-low", cpu="800m", priority=1, labels={"app": "db"}))
    c = on(node("c", cpu="1"), pod("c-high", cpu="800m", priority=100))
    nodes = [a, b, c]
    hi = pod("hi", cpu="800m", priority=50)
    try:
        fw.schedule(hi, nodes)
    except FitError as e:
        err = e
    cand, msg = preempt(fw, hi, nodes, err, PDBs([]))
    assert cand.node == "b" and [v.name for v in cand.victims] == ["b-low"]
    # A PDB protecting b-low (no disruptions allowed) makes a the better candidate.
    pdb = {"metadata": {"namespace": "default"},
           "spec": {"selector": {"matchLabels": {"app": "db"}}},
           "status": {"disruptionsAllowed": 0}}
    cand, _ = preempt(fw, hi, nodes, err, PDBs([pdb]))
    assert cand.node == "a" and cand.pdb_violations == 0
    # Only the victims needed are taken: the small pod is reprieved.
    d = on(node("d", cpu="2"), pod("d-big", cpu="1", priority=1), pod("d-small", cpu="200m",
                                                                       priority=1))
    big = pod("big", cpu="1500m", priority=50)
    try:
        fw.schedule(big, [d])
    except FitError as e:
        err = e
    cand, _ = preempt(fw, big, [d], err, PDBs([]))
    assert [v.name for v in cand.victims] == ["d-big"]
    never = pod("n", cpu="800m", priority=50, preemptionPolicy="Never")
    assert preempt(fw, never, nodes, err, PDBs([]))[0] is None
    nothing = pod("z", cpu="800m", priority=0)
    cand, msg = preempt(fw, nothing, nodes, err, PDBs([]))
    assert cand is None and msg == ("preemption: 0/3 nodes are available: "
                                    "3 No preemption victims found for incoming pod.")


def test_cache_tallies_keep_taints_and_unschedulable_checked():
    c = Cache()
    fw = SchedulerConfig().frameworks()["default-scheduler"]
    t = node_obj("t", "a")
    t["spec"] = {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}
    u = node_obj("u", "a")
    u["spec"] = {"unschedulable": True}
    c.add_node(t)
    c.add_node(u)
    snap = c.snapshot()
    try:
        fw.schedule(pod("p"), snap.nodes, None, snap)
        raise AssertionError("must not fit")
    except FitError as e:
        assert e.message() == ("0/2 nodes are available: 1 node(s) had untolerated taint "
                               "{k: v}, 1 node(s) were unschedulable.")
    t["spec"] = {}
    c.update_node(t)
    assert c.nodes_with_taints == 0 and c.nodes_unschedulable == 1
    snap = c.snapshot()
    assert fw.schedule(pod("p"), snap.nodes, None, snap)[0].name == "t"
    c.remove_node(u)
    assert c.nodes_unschedulable == 0


def test_incremental_inter_pod_affinity_state_matches_full_scan():
    from pyk8s.scheduler.plugins.inter_pod_affinity import _pre_filter_state
    c = Cache()
    for i in range(6):
        c.add_node(node_obj(f"n{i}", "abc"[i % 3]))
    fw = SchedulerConfig().frameworks()["default-scheduler"]
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "w"}}, "topologyKey": "zone"}]}}
    placed = []
    for i in range(3):
        p = pod(f"w{i}", labels={"app": "w"}, affinity=anti)
        snap = c.snapshot()
        n, _ = fw.schedule(p, snap.nodes, None, snap)
        c.assume(p, n.name)
        placed.append(n.labels["zone"])
        nxt = pod("next", labels={"app": "w"}, affinity=anti)
        inc = _pre_filter_state(nxt, snap.nodes, snap)
        full = _pre_filter_state(nxt, snap.nodes)
        assert inc == full
    assert sorted(placed) == ["a", "b", "c"]
    snap = c.snapshot()
    try:
        fw.schedule(pod("w9", labels={"app": "w"}, affinity=anti), snap.nodes, None, snap)
        raise AssertionError("no zone left")
    except FitError as e:
        assert "6 node(s) didn't satisfy existing pods anti-affinity rules" in e.message()
    c.remove_pod("default/w0")
    snap = c.snapshot()
    n, _ = fw.schedule(pod("w9", labels={"app": "w"}, affinity=anti), snap.nodes, None, snap)
    assert n.labels["zone"] == placed[0]


def test_nominated_pods_hold_their_node_and_try_it_first():
    fw = SchedulerConfig().frameworks()["default-scheduler"]
    a, b = node("a", cpu="1"), node("b", cpu="1")
    hi = pod("hi", cpu="800m", priority=100)
    # Another pod of lower priority must not take the room nominated to `hi` on a.
    lo = pod("lo", cpu="800m", priority=1)
    for _ in range(5):
        assert fw.schedule(lo, [a, b], {"a": [hi]})[0].name == "b"
    # A nominated pod goes to its nominated node when it fits there.
    hi.pod["status"] = {"nominatedNodeName": "b"}
    for _ in range(5):
        assert fw.schedule(hi, [a, b], {"b": [hi]})[0].name == "b"
