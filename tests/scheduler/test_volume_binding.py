"""VolumeBinding: claims must exist, be bound (or wait for their first consumer), and a
bound PV's node affinity limits the nodes."""
from __future__ import annotations

from typing import Any

from pyk8s.scheduler.framework import SKIP, UNRESOLVABLE, CycleState
from pyk8s.scheduler.plugins import DEFAULT_FILTERS
from pyk8s.scheduler.plugins.volume_binding import (NODE_CONFLICT, UNBOUND_IMMEDIATE,
                                                    VolumeBinding, VolumeListers, claim_names)
from tests.scheduler.helpers import node, pod

Obj = dict[str, Any]


def claim(name: str, volume: str = "", cls: str = "", deleting: bool = False) -> Obj:
    md: Obj = {"name": name, "namespace": "default"}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": md, "spec": {"volumeName": volume, "storageClassName": cls},
            "status": {"phase": "Bound" if volume else "Pending"}}


def plugin(claims: list[Obj], volumes: list[Obj] = (), classes: list[Obj] = ()
           ) -> VolumeBinding:
    p = VolumeBinding()
    p.listers = VolumeListers(
        claim=lambda ns, n: next((c for c in claims if c["metadata"]["name"] == n), None),
        volume=lambda n: next((v for v in volumes if v["metadata"]["name"] == n), None),
        storage_class=lambda n: next((c for c in classes if c["metadata"]["name"] == n),
                                     None))
    return p


def using(*claims: str, **extra: Any) -> Any:
    vols = [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
            for i, c in enumerate(claims)]
    return pod("p", volumes=vols + list(extra.get("volumes", [])))


def run(p: VolumeBinding, pi: Any, n: Any = None) -> Any:
    n = n or node("n1")
    st = CycleState()
    pre = p.pre_filter(st, pi, [n])
    return pre if pre is not None else p.filter(st, pi, n)


def test_in_the_default_profile_after_resources_fit() -> None:
    i = DEFAULT_FILTERS.index("VolumeBinding")
    assert DEFAULT_FILTERS[i - 1] == "NodeResourcesFit"


def test_pods_without_claims_skip() -> None:
    assert run(plugin([]), pod("p")).code == SKIP
    assert run(VolumeBinding(), using("c")).code == SKIP       # no listers: pass


def test_missing_terminating_and_unbound_immediate_claims_are_unresolvable() -> None:
    st = run(plugin([]), using("data"))
    assert (st.code, st.reasons) == (UNRESOLVABLE, ('persistentvolumeclaim "data" not found',))
    st = run(plugin([claim("data", "pv1", deleting=True)]), using("data"))
    assert st.reasons == ('persistentvolumeclaim "data" is being deleted',)
    immediate = {"metadata": {"name": "fast"}, "volumeBindingMode": "Immediate"}
    for c in (claim("data"), claim("data", cls="fast"), claim("data", cls="unknown")):
        st = run(plugin([c], classes=[immediate]), using("data"))
        assert (st.code, st.reasons) == (UNRESOLVABLE, (UNBOUND_IMMEDIATE,))


def test_wait_for_first_consumer_and_bound_claims_fit() -> None:
    wffc = {"metadata": {"name": "lazy"}, "volumeBindingMode": "WaitForFirstConsumer"}
    pv = {"metadata": {"name": "pv1"}, "spec": {}}
    p = plugin([claim("a", cls="lazy"), claim("b", "pv1")], [pv], [wffc])
    assert run(p, using("a", "b")).code == SKIP


def test_bound_volume_node_affinity() -> None:
    pv = {"metadata": {"name": "pv1"}, "spec": {"nodeAffinity": {"required": {
        "nodeSelectorTerms": [{"matchExpressions": [{
            "key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}}
    p = plugin([claim("data", "pv1")], [pv])
    assert run(p, using("data"), node("n1")) is None
    st = run(p, using("data"), node("n2"))
    assert (st.code, st.reasons) == (UNRESOLVABLE, (NODE_CONFLICT,))


def test_ephemeral_volumes_name_their_claims() -> None:
    pi = using("a", volumes=[{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}}])
    assert claim_names(pi) == ["a", "p-scratch"]
