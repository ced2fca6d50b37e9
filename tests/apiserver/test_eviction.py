"""The pods/eviction decisions: pure rules, then `Eviction` against in-memory stores."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from pyk8s.api import errors
from pyk8s.apiserver import eviction as ev
from pyk8s.apiserver.app import APIServer
from pyk8s.registry.store import DeleteOptions

Obj = dict[str, Any]
NS = "default"
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


def pod(name: str = "p", phase: str = "Running", ready: bool = True, **md: Any) -> Obj:
    conds = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": {"name": name, "namespace": NS, "labels": {"app": "web"}, **md},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": phase, "conditions": conds}}


def pdb(name: str = "budget", allowed: int = 1, current: int = 3, desired: int = 2,
        generation: int = 1, observed: int = 1, selector: Obj | None = None,
        policy: str | None = None) -> Obj:
    spec: Obj = {"minAvailable": desired,
                 "selector": {"matchLabels": {"app": "web"}} if selector is None else selector}
    if policy:
        spec["unhealthyPodEvictionPolicy"] = policy
    return {"metadata": {"name": name, "namespace": NS, "generation": generation},
            "spec": spec,
            "status": {"disruptionsAllowed": allowed, "currentHealthy": current,
                       "desiredHealthy": desired, "expectedPods": 3,
                       "observedGeneration": observed}}


# -- pure rules -------------------------------------------------------------------------
def test_can_ignore_pdb_for_pending_terminal_and_terminating_pods() -> None:
    assert ev.can_ignore_pdb(pod(phase="Pending"))
    assert ev.can_ignore_pdb(pod(phase="Succeeded"))
    assert ev.can_ignore_pdb(pod(phase="Failed"))
    assert ev.can_ignore_pdb(pod(deletionTimestamp="2024-01-01T00:00:00Z"))
    assert not ev.can_ignore_pdb(pod())
    assert ev.should_enforce_resource_version(pod(phase="Pending"))
    assert not ev.should_enforce_resource_version(pod(phase="Failed"))


def test_matching_pdbs_skip_empty_invalid_and_other_namespaces() -> None:
    other = pdb("other")
    other["metadata"]["namespace"] = "elsewhere"
    bad = pdb("bad", selector={"matchExpressions": [{"key": "app", "operator": "Nope"}]})
    empty = pdb("empty", selector={})
    miss = pdb("miss", selector={"matchLabels": {"app": "db"}})
    hit = pdb("hit")
    assert [p["metadata"]["name"] for p in
            ev.matching_pdbs(pod(), [other, bad, empty, miss, hit])] == ["hit"]


def test_check_and_decrement_spends_one_and_records_the_pod() -> None:
    out = ev.check_and_decrement(pdb(allowed=1), "p", False, NOW)
    st = out["status"]
    assert st["disruptionsAllowed"] == 0
    assert st["disruptedPods"] == {"p": "2024-01-01T00:00:00Z"}
    cond = st["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == \
        ("DisruptionAllowed", "False", "InsufficientPods")
    dry = ev.check_and_decrement(pdb(allowed=2), "p", True, NOW)
    assert dry["status"]["disruptionsAllowed"] == 1 and "disruptedPods" not in dry["status"]


def test_check_and_decrement_refusals() -> None:
    with pytest.raises(errors.TooManyRequests) as e:
        ev.check_and_decrement(pdb(allowed=0, current=2, desired=2), "p", False, NOW)
    st = e.value.status()
    assert st["code"] == 429 and st["reason"] == "TooManyRequests"
    assert st["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert st["details"] == {"causes": [{
        "reason": "DisruptionBudget",
        "message": "The disruption budget budget needs 2 healthy pods and has 2 currently"}]}
    assert "Retry-After" not in e.value.headers
    with pytest.raises(errors.TooManyRequests) as e:
        ev.check_and_decrement(pdb(generation=2, observed=1), "p", False, NOW)
    assert e.value.status()["details"]["retryAfterSeconds"] == 10
    assert e.value.headers["Retry-After"] == "10"
    assert "still being processed" in e.value.status()["details"]["causes"][0]["message"]
    with pytest.raises(errors.Forbidden) as f:
        ev.check_and_decrement(pdb(allowed=-1), "p", False, NOW)
    assert f.value.message == ('poddisruptionbudget.policy "budget" is forbidden: pdb '
                               'disruptions allowed is negative')


def test_unhealthy_pods_bypass_the_budget_when_it_is_met_or_always_allowed() -> None:
    sick = pod(ready=False)
    assert ev.unhealthy_pod_bypasses_budget(sick, pdb(current=2, desired=2))
    assert not ev.unhealthy_pod_bypasses_budget(sick, pdb(current=1, desired=2))
    assert not ev.unhealthy_pod_bypasses_budget(sick, pdb(current=0, desired=0))
    assert ev.unhealthy_pod_bypasses_budget(sick, pdb(current=1, desired=2,
                                                      policy="AlwaysAllow"))
    assert not ev.unhealthy_pod_bypasses_budget(pod(), pdb(policy="AlwaysAllow"))


def test_propagate_dry_run() -> None:
    assert ev.propagate_dry_run(None, ["All"]) == {"dryRun": ["All"]}
    assert ev.propagate_dry_run({"gracePeriodSeconds": 0}, []) == {"gracePeriodSeconds": 0}
    assert ev.propagate_dry_run({"dryRun": ["All"]}, ["All"]) == {"dryRun": ["All"]}
    with pytest.raises(errors.ApiError) as e:
        ev.propagate_dry_run({"dryRun": ["All"]}, ["Other"])
    assert e.value.code == 500 and "reason" not in e.value.status()


def test_disruption_target_condition() -> None:
    p = pod()
    assert ev.disruption_target_condition(p, NOW)
    cond = p["status"]["conditions"][-1]
    assert cond["reason"] == "EvictionByEvictionAPI" and cond["message"] == \
        "Eviction API: evicting"
    assert not ev.disruption_target_condition(p, datetime.now(timezone.utc))


# -- against the stores -------------------------------------------------------------------


def stores(s: APIServer) -> tuple[Any, Any]:
    pods = s.catalogue.lookup("", "v1", "pods")
    pdbs = s.catalogue.lookup("policy", "v1", "poddisruptionbudgets")
    assert pods is not None and pdbs is not None
    return s.store(pods), s.store(pdbs)


async def seed_pod(s: APIServer, obj: Obj) -> Obj:
    pods, _ = stores(s)
    created, _ = await pods.create(NS, {k: v for k, v in obj.items() if k != "status"})
    status = obj["status"]
    out, _, _ = await pods.update(NS, obj["metadata"]["name"],
                                  lambda cur: {**cur, "status": status}, subresource="status")
    return out


async def seed_pdb(s: APIServer, obj: Obj) -> Obj:
    _, pdbs = stores(s)
    body = {k: v for k, v in obj.items() if k != "status"}
    body["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "generation"}
    created, _ = await pdbs.create(NS, body)
    status = dict(obj["status"])
    status["observedGeneration"] = created["metadata"]["generation"] - (
        obj["metadata"]["generation"] - obj["status"]["observedGeneration"])
    out, _, _ = await pdbs.update(NS, obj["metadata"]["name"],
                                  lambda cur: {**cur, "status": status}, subresource="status")
    return out


def evict(s: APIServer, name: str = "p", **opts: Any) -> ev.Eviction:
    pods, pdbs = stores(s)
    return ev.Eviction(pods, pdbs, NS, name, DeleteOptions.from_body(opts, {}))


async def test_evict_without_pdb_deletes_and_marks_the_pod(server: APIServer) -> None:
    await seed_pod(server, pod())
    assert await evict(server).run() == ev.success()
    pods, _ = stores(server)
    gone = await pods.get(NS, "p")   # graceful: still there, terminating
    assert gone["metadata"]["deletionTimestamp"]
    assert any(c["type"] == "DisruptionTarget" and c["status"] == "True"
               for c in gone["status"]["conditions"])


async def test_evict_spends_the_budget(server: APIServer) -> None:
    await seed_pod(server, pod())
    await seed_pdb(server, pdb(allowed=1))
    assert (await evict(server).run())["status"] == "Success"
    _, pdbs = stores(server)
    got = await pdbs.get(NS, "budget")
    assert got["status"]["disruptionsAllowed"] == 0
    assert list(got["status"]["disruptedPods"]) == ["p"]
    await seed_pod(server, pod("q"))
    with pytest.raises(errors.TooManyRequests):
        await evict(server, "q").run()
    pods, _ = stores(server)
    assert not (await pods.get(NS, "q"))["metadata"].get("deletionTimestamp")


async def test_evict_refuses_when_generation_not_observed(server: APIServer) -> None:
    await seed_pod(server, pod())
    await seed_pdb(server, pdb(allowed=1, generation=2, observed=1))
    with pytest.raises(errors.TooManyRequests) as e:
        await evict(server).run()
    assert e.value.status()["details"]["retryAfterSeconds"] == 10


async def test_evict_with_two_pdbs_is_an_internal_error(server: APIServer) -> None:
    await seed_pod(server, pod())
    await seed_pdb(server, pdb("a"))
    await seed_pdb(server, pdb("b"))
    with pytest.raises(errors.InternalError) as e:
        await evict(server).run()
    st = e.value.status()
    assert (st["code"], st["reason"], st["message"]) == (
        500, "InternalError", f"Internal error occurred: {ev.MULTIPLE_PDBS_MESSAGE}")
    assert st["details"]["causes"] == [{"message": ev.MULTIPLE_PDBS_MESSAGE}]
    pods, _ = stores(server)
    assert not (await pods.get(NS, "p"))["metadata"].get("deletionTimestamp")


async def test_pending_and_unhealthy_pods_skip_the_budget(server: APIServer) -> None:
    await seed_pod(server, pod("pending", phase="Pending", ready=False))
    await seed_pod(server, pod("sick", ready=False))
    await seed_pdb(server, pdb(allowed=0, current=2, desired=2))
    assert (await evict(server, "pending").run())["status"] == "Success"
    assert (await evict(server, "sick").run())["status"] == "Success"
    _, pdbs = stores(server)
    assert (await pdbs.get(NS, "budget"))["status"]["disruptionsAllowed"] == 0


async def test_unhealthy_pod_protected_when_budget_not_met(server: APIServer) -> None:
    await seed_pod(server, pod("sick", ready=False))
    await seed_pdb(server, pdb(allowed=0, current=1, desired=2))
    with pytest.raises(errors.TooManyRequests):
        await evict(server, "sick").run()


async def test_dry_run_changes_nothing(server: APIServer) -> None:
    await seed_pod(server, pod())
    await seed_pdb(server, pdb(allowed=1))
    assert (await evict(server, dryRun=["All"]).run())["status"] == "Success"
    pods, pdbs = stores(server)
    assert (await pdbs.get(NS, "budget"))["status"]["disruptionsAllowed"] == 1
    got = await pods.get(NS, "p")
    assert not got["metadata"].get("deletionTimestamp")
    assert not any(c["type"] == "DisruptionTarget" for c in got["status"]["conditions"])


async def test_preconditions_are_honoured(server: APIServer) -> None:
    await seed_pod(server, pod())
    with pytest.raises(errors.Conflict) as e:
        await evict(server, preconditions={"uid": "nope"}).run()
    assert "the UID in the precondition (nope) does not match" in e.value.message


async def test_missing_pod_is_not_found(server: APIServer) -> None:
    with pytest.raises(errors.NotFound):
        await evict(server, "ghost").run()
