"""Job controller `sync` against a seeded fake; time through an injectable clock."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest

from pyk8s.client.events import FakeRecorder
from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.controllers import job_util as ju
from pyk8s.controllers.job import JobController
from pyk8s.controllers.ttlafterfinished import TTLAfterFinishedController
from tests.controllers.helpers import T0, observe_pods, record_delays, ts

Obj = dict[str, Any]
NS = "ns"
JOB_PATH = f"/apis/batch/v1/namespaces/{NS}/jobs"
POD_PATH = f"/api/v1/namespaces/{NS}/pods"


class Harness:
    def __init__(self, **kw: Any) -> None:
        self.now = T0
        self.client = FakeClient()
        self.recorder = FakeRecorder()
        self.factory = SharedInformerFactory(self.client)  # type: ignore[arg-type]
        self.ctrl = JobController(self.client, self.factory, self.recorder,
                                  clock=lambda: self.now, **kw)
        self.delays = record_delays(self.ctrl.queue)

    def add_job(self, name: str = "pi", *, selector: bool = True, **spec: Any) -> Obj:
        job: Obj = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                    "spec": {"parallelism": 1, "completions": 1, "backoffLimit": 6,
                             "completionMode": "NonIndexed", "suspend": False,
                             "template": {"metadata": {"labels": {"app": name}},
                                          "spec": {"restartPolicy": "Never", "containers": [
                                              {"name": "c", "image": "busybox"}]}}}}
        for k, v in spec.items():
            if v is None:
                job["spec"].pop(k, None)
            else:
                job["spec"][k] = v
        job = self.client.seed(JOB_PATH, job)
        uid = job["metadata"]["uid"]
        if selector:  # what the API server's Job strategy generates
            labels = {ju.CONTROLLER_UID_LABEL: uid, ju.JOB_NAME_LABEL: name,
                      "controller-uid": uid, "job-name": name}
            job["spec"]["selector"] = {"matchLabels": {ju.CONTROLLER_UID_LABEL: uid}}
            job["spec"]["template"]["metadata"]["labels"].update(labels)
        self.client.objects[("batch", "jobs", NS, name)] = copy.deepcopy(job)
        self.ctrl.job_informer.store.add(job)
        self.name = name
        return job

    @property
    def key(self) -> str:
        return f"{NS}/{self.name}"

    def job(self) -> Obj:
        return self.client.objects[("batch", "jobs", NS, self.name)]

    def status(self) -> Obj:
        return dict(self.job().get("status") or {})

    def refresh_job(self) -> None:
        self.ctrl.job_informer.store.add(copy.deepcopy(self.job()))

    def update_spec(self, **spec: Any) -> None:
        job = self.job()
        job["spec"].update(spec)
        job["metadata"]["resourceVersion"] = str(int(job["metadata"]["resourceVersion"]) + 1000)
        self.refresh_job()

    def pods(self) -> list[Obj]:
        return sorted(self.client.stored("", "pods", NS), key=lambda p: p["metadata"]["name"])

    def observe_pods(self) -> None:
        observe_pods(self.client, self.ctrl, NS, deep_copy=True)

    def set_pod(self, name: str, phase: str, exit_code: int | None = None, *,
                finished: datetime | None = None, **status: Any) -> None:
        pod = self.client.objects[("", "pods", NS, name)]
        st: Obj = {"phase": phase, **status}
        if exit_code is not None:
            st["containerStatuses"] = [{"name": "c", "restartCount": 0, "state": {
                "terminated": {"exitCode": exit_code,
                               "finishedAt": ts(finished or self.now)}}}]
        if phase == "Running":
            st["conditions"] = [{"type": "Ready", "status": "True"}]
        pod["status"] = st
        pod["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1000)

    def mark_deleted(self, name: str) -> None:
        pod = self.client.objects[("", "pods", NS, name)]
        pod["metadata"]["deletionTimestamp"] = ts(self.now)
        pod["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1000)

    async def sync(self, times: int = 1) -> None:
        for _ in range(times):
            self.refresh_job()
            self.observe_pods()
            await self.ctrl.sync(self.key)
            self.refresh_job()
            self.observe_pods()

    def condition(self, type_: str) -> Obj | None:
        return ju.find_condition(self.status().get("conditions"), type_)


async def test_creates_pods_with_tracking_finalizer_labels_and_owner() -> None:
    h = Harness()
    job = h.add_job(parallelism=2, completions=3)
    await h.sync()
    pods = h.pods()
    assert len(pods) == 2
    uid = job["metadata"]["uid"]
    for p in pods:
        md = p["metadata"]
        assert md["generateName"] == "pi-" and md["name"].startswith("pi-")
        assert md["finalizers"] == [ju.JOB_TRACKING_FINALIZER]
        assert md["labels"][ju.CONTROLLER_UID_LABEL] == uid
        assert md["labels"]["job-name"] == "pi" and md["labels"]["controller-uid"] == uid
        assert md["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job",
                                          "name": "pi", "uid": uid, "controller": True,
                                          "blockOwnerDeletion": True}]
    assert h.recorder.events == [f"Normal SuccessfulCreate Created pod: {p['metadata']['name']}"
                                 for p in h.client.stored("", "pods", NS)]
    st = h.status()
    assert st["active"] == 2 and st["ready"] == 0 and st["terminating"] == 0
    assert st["startTime"] == ts(T0) and st["uncountedTerminatedPods"] == {}
    assert "succeeded" not in st and "failed" not in st
    # Expectations: syncing again before the informer shows them creates nothing.
    await h.ctrl.sync(h.key)
    assert len(h.pods()) == 2


async def test_completes_counting_each_pod_once_through_uncounted() -> None:
    h = Harness()
    h.add_job(parallelism=2, completions=2)
    await h.sync()
    a, b = [p["metadata"]["name"] for p in h.pods()]
    h.set_pod(a, "Running")
    h.set_pod(b, "Running")
    await h.sync()
    assert h.status()["ready"] == 2
    h.set_pod(a, "Succeeded", 0)
    await h.sync()
    # First recorded as uncounted, then the finalizer goes, then it is counted.
    updates = [x.body["status"] for x in h.client.by_verb("update", "jobs")]
    assert any(u.get("uncountedTerminatedPods", {}).get("succeeded") for u in updates)
    st = h.status()
    assert st["succeeded"] == 1 and st["uncountedTerminatedPods"] == {} and st["active"] == 1
    assert not ju.has_tracking_finalizer(h.client.objects[("", "pods", NS, a)])
    assert len(h.pods()) == 2  # no replacement: one completion left, one pod running
    h.now += timedelta(seconds=30)
    h.set_pod(b, "Succeeded", 0)
    await h.sync(2)
    st = h.status()
    assert st["succeeded"] == 2 and "active" not in st
    types = [(c["type"], c["status"], c["reason"]) for c in st["conditions"]]
    assert types == [("SuccessCriteriaMet", "True", "CompletionsReached"),
                     ("Complete", "True", "CompletionsReached")]
    assert st["conditions"][1]["message"] == "Reached expected number of succeeded pods"
    assert st["completionTime"] == ts(h.now)
    assert h.recorder.events[-1] == "Normal Completed Job completed"
    # A finished Job is left alone; deleting its pods changes no count.
    for p in h.pods():
        del h.client.objects[("", "pods", NS, p["metadata"]["name"])]
    await h.sync()
    assert h.status()["succeeded"] == 2


async def test_work_queue_job_stops_creating_after_first_success() -> None:
    h = Harness()
    h.add_job(parallelism=3, completions=None)
    await h.sync()
    names = [p["metadata"]["name"] for p in h.pods()]
    assert len(names) == 3
    h.set_pod(names[0], "Succeeded", 0)
    await h.sync(2)
    assert len(h.pods()) == 3 and h.status()["active"] == 2 and h.condition("Complete") is None
    h.set_pod(names[1], "Succeeded", 0)
    h.set_pod(names[2], "Succeeded", 0)
    await h.sync(2)
    assert h.status()["succeeded"] == 3 and h.condition("Complete") is not None


async def test_indexed_job_names_env_hostname_and_completed_indexes() -> None:
    h = Harness()
    h.add_job("idx", parallelism=2, completions=5, completionMode="Indexed")
    await h.sync()
    pods = h.pods()
    assert [p["metadata"]["annotations"][ju.COMPLETION_INDEX_ANNOTATION] for p in pods] == ["0", "1"]
    for ix, p in enumerate(pods):
        assert p["metadata"]["generateName"] == f"idx-{ix}-"
        assert p["metadata"]["labels"][ju.COMPLETION_INDEX_ANNOTATION] == str(ix)
        assert p["spec"]["hostname"] == f"idx-{ix}"
        assert p["spec"]["containers"][0]["env"] == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {
            "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    done: list[str] = []
    for _ in range(6):
        for p in h.pods():
            if p["status"].get("phase") != "Succeeded" and p["metadata"]["name"] not in done \
                    and p["metadata"]["annotations"][ju.COMPLETION_INDEX_ANNOTATION] != "3":
                h.set_pod(p["metadata"]["name"], "Succeeded", 0)
                done.append(p["metadata"]["name"])
                break
        await h.sync(2)
    assert h.status()["completedIndexes"] == "0-2,4"
    assert h.status()["succeeded"] == 4 and h.condition("Complete") is None
    [three] = [p for p in h.pods() if p["status"].get("phase") != "Succeeded"]
    assert three["metadata"]["annotations"][ju.COMPLETION_INDEX_ANNOTATION] == "3"
    h.set_pod(three["metadata"]["name"], "Succeeded", 0)
    await h.sync(2)
    st = h.status()
    assert st["completedIndexes"] == "0-4" and st["succeeded"] == 5
    assert h.condition("Complete") is not None
    indexes = sorted(int(p["metadata"]["annotations"][ju.COMPLETION_INDEX_ANNOTATION])
                     for p in h.pods())
    assert indexes == [0, 1, 2, 3, 4]  # each index ran exactly once


async def test_indexed_duplicate_index_pod_is_deleted() -> None:
    h = Harness()
    h.add_job("idx", parallelism=1, completions=2, completionMode="Indexed")
    await h.sync()
    [p] = h.pods()
    dup = copy.deepcopy(p)
    dup["metadata"]["name"] = "idx-0-dup"
    h.client.seed(POD_PATH, dup)
    h.recorder.events.clear()
    await h.sync()
    assert len(h.pods()) == 1
    assert any(e.startswith("Normal SuccessfulDelete Deleted pod:") for e in h.recorder.events)


async def test_backoff_limit_with_exponential_recreation_backoff() -> None:
    h = Harness(backoff_base=10.0)
    h.add_job(backoffLimit=2)
    await h.sync()
    for attempt in range(3):
        [pod] = [p for p in h.pods() if p["status"].get("phase") != "Failed"]
        h.set_pod(pod["metadata"]["name"], "Failed", 1)
        h.delays.clear()
        await h.sync(2)
        if attempt < 2:
            assert h.status()["failed"] == attempt + 1
            # no new pod before the backoff (10 s, then 20 s) has passed
            assert len(h.pods()) == attempt + 1
            wait = 10.0 * 2 ** attempt
            assert h.delays and max(h.delays) == pytest.approx(wait)
            h.now += timedelta(seconds=wait + 1)
            await h.sync()
            assert len(h.pods()) == attempt + 2
    st = h.status()
    assert st["failed"] == 3
    conds = [(c["type"], c["reason"]) for c in st["conditions"]]
    assert conds == [("FailureTarget", "BackoffLimitExceeded"), ("Failed", "BackoffLimitExceeded")]
    assert st["conditions"][1]["message"] == "Job has reached the specified backoff limit"
    assert "completionTime" not in st
    assert h.recorder.events[-1] == \
        "Warning BackoffLimitExceeded Job has reached the specified backoff limit"


async def test_active_deadline_fails_and_deletes_active_pods() -> None:
    h = Harness()
    h.add_job(parallelism=2, completions=4, activeDeadlineSeconds=30)
    await h.sync()
    assert h.delays and h.delays[-1] == pytest.approx(30)
    for p in h.pods():
        h.set_pod(p["metadata"]["name"], "Running")
    h.now += timedelta(seconds=31)
    await h.sync()
    assert h.condition("FailureTarget")["reason"] == "DeadlineExceeded"  # type: ignore[index]
    assert h.condition("Failed") is None  # the pods are still terminating
    assert len(h.client.by_verb("delete", "pods")) == 2
    # The pods were deleted with their finalizers (FakeClient deletes at once: put them back
    # as terminating, the way the API server keeps them).
    await h.sync(2)
    st = h.status()
    assert h.condition("Failed")["reason"] == "DeadlineExceeded"  # type: ignore[index]
    assert h.condition("Failed")["message"] == "Job was active longer than specified deadline"  # type: ignore[index]
    assert "active" not in st


async def test_deleted_running_pod_counts_as_failed_and_is_replaced() -> None:
    h = Harness()
    h.add_job()
    await h.sync()
    [p] = h.pods()
    name = p["metadata"]["name"]
    h.set_pod(name, "Running")
    h.mark_deleted(name)
    await h.sync()
    st = h.status()
    assert st["failed"] == 1 and st["uncountedTerminatedPods"] == {}
    assert not ju.has_tracking_finalizer(h.client.objects[("", "pods", NS, name)])
    del h.client.objects[("", "pods", NS, name)]
    h.now += timedelta(seconds=11)
    await h.sync(2)
    assert h.status()["failed"] == 1  # not counted twice
    assert len(h.pods()) == 1 and h.pods()[0]["metadata"]["name"] != name


async def test_pod_failure_policy_fail_job_ignore_and_count() -> None:
    policy = {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In",
                                              "values": [42]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [42]}}]}
    h = Harness()
    h.add_job(podFailurePolicy=policy, backoffLimit=3)
    await h.sync()
    [p] = h.pods()
    h.set_pod(p["metadata"]["name"], "Failed", 1,
              conditions=[{"type": "DisruptionTarget", "status": "True"}])
    await h.sync(2)
    assert "failed" not in h.status()  # ignored: not counted against backoffLimit
    h.now += timedelta(seconds=11)  # (the re-creation backoff still applies)
    await h.sync()
    assert len(h.pods()) == 2
    [p2] = [p for p in h.pods() if p["status"]["phase"] != "Failed"]
    h.set_pod(p2["metadata"]["name"], "Failed", 3)
    await h.sync(2)
    assert h.status()["failed"] == 1  # counted
    h.now += timedelta(seconds=20)
    await h.sync()
    [p3] = [p for p in h.pods() if p["status"]["phase"] not in ("Failed",)]
    h.set_pod(p3["metadata"]["name"], "Failed", 42)
    await h.sync(2)
    failed = h.condition("Failed")
    assert failed is not None and failed["reason"] == "PodFailurePolicy"
    assert failed["message"] == (f"Container c for pod {NS}/{p3['metadata']['name']} failed with "
                                 "exit code 42 matching FailJob rule at index 0")
    assert h.condition("FailureTarget")["reason"] == "PodFailurePolicy"  # type: ignore[index]


async def test_fail_index_with_backoff_limit_per_index() -> None:
    policy = {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In",
                                                               "values": [7]}}]}
    h = Harness()
    h.add_job("pi", parallelism=2, completions=2, completionMode="Indexed",
              backoffLimitPerIndex=1, backoffLimit=2**31 - 1, podFailurePolicy=policy)
    await h.sync()
    p0, p1 = h.pods()
    h.set_pod(p0["metadata"]["name"], "Failed", 7)
    h.set_pod(p1["metadata"]["name"], "Succeeded", 0)
    await h.sync(2)
    st = h.status()
    assert st["failedIndexes"] == "0" and st["completedIndexes"] == "1"
    assert h.condition("Failed")["reason"] == "FailedIndexes"  # type: ignore[index]
    assert h.condition("Failed")["message"] == "Job has failed indexes"  # type: ignore[index]


async def test_suspend_deletes_active_pods_without_counting_and_resume_resets_start() -> None:
    h = Harness()
    h.add_job(parallelism=2, completions=2)
    await h.sync()
    for p in h.pods():
        h.set_pod(p["metadata"]["name"], "Running")
    await h.sync()
    h.update_spec(suspend=True)
    h.now += timedelta(seconds=5)
    await h.sync(2)
    st = h.status()
    assert h.pods() == [] and "failed" not in st and "active" not in st
    cond = h.condition("Suspended")
    assert cond is not None and (cond["status"], cond["reason"], cond["message"]) == (
        "True", "JobSuspended", "Job suspended")
    assert "Normal Suspended Job suspended" in h.recorder.events
    h.now += timedelta(seconds=60)
    h.update_spec(suspend=False)
    await h.sync()
    cond = h.condition("Suspended")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "JobResumed")
    assert h.status()["startTime"] == ts(h.now)
    assert "Normal Resumed Job resumed" in h.recorder.events
    assert len(h.pods()) == 2


async def test_created_suspended_has_no_start_time() -> None:
    h = Harness()
    h.add_job(suspend=True)
    await h.sync()
    assert h.pods() == [] and "startTime" not in h.status()
    assert h.condition("Suspended")["status"] == "True"  # type: ignore[index]


async def test_restart_on_failure_backoff_limit() -> None:
    h = Harness()
    job = h.add_job(backoffLimit=2)
    job = h.job()
    job["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    await h.sync()
    [p] = h.pods()
    h.set_pod(p["metadata"]["name"], "Running", containerStatuses=[
        {"name": "c", "restartCount": 2, "state": {"running": {}}}])
    await h.sync(2)
    assert h.condition("Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]


async def test_job_without_generated_selector_labels_and_claims_its_pods() -> None:
    h = Harness()
    job = h.add_job(selector=False, parallelism=1)
    await h.sync()
    [p] = h.pods()
    assert p["metadata"]["labels"][ju.CONTROLLER_UID_LABEL] == job["metadata"]["uid"]
    await h.sync()
    assert len(h.pods()) == 1 and h.status()["active"] == 1


async def test_orphan_pod_loses_its_finalizer() -> None:
    h = Harness()
    h.add_job()
    await h.sync()
    [p] = h.pods()
    job = h.ctrl.job_informer.store.delete(h.key)
    del h.client.objects[("batch", "jobs", NS, "pi")]
    h.ctrl.delete_job(job)  # type: ignore[arg-type]
    key = f"{NS}/{p['metadata']['name']}"
    assert len(h.ctrl.orphan_queue) == 1
    await h.ctrl.sync_orphan_pod(key)
    assert not ju.has_tracking_finalizer(h.pods()[0])


async def test_managed_by_another_controller_is_ignored() -> None:
    h = Harness()
    h.add_job(managedBy="example.com/other")
    await h.sync()
    assert h.pods() == [] and "status" not in h.job()


def test_intervals_and_backoff_helpers() -> None:
    iv = ju.Intervals.parse("0-2,4", 10)
    assert str(iv) == "0-2,4" and iv.total() == 4 and 4 in iv and 3 not in iv
    assert str(iv.with_indexes([3, 7])) == "0-4,7"
    assert str(ju.Intervals.parse("1-9", 5)) == "1-4"
    rec = ju.BackoffRecord(3, T0)
    assert rec.remaining(T0 + timedelta(seconds=5)) == pytest.approx(35)
    assert ju.BackoffRecord(12, T0).remaining(T0) == pytest.approx(360)
    assert ju.BackoffRecord(0, None).remaining(T0) == 0


# -- TTL after finished --------------------------------------------------------------------------
async def test_ttl_after_finished_deletes_expired_jobs_in_foreground() -> None:
    client = FakeClient()
    now = [T0]
    ctrl = TTLAfterFinishedController(client, SharedInformerFactory(client),  # type: ignore[arg-type]
                                      clock=lambda: now[0])
    delays = record_delays(ctrl.queue)
    job = client.seed(JOB_PATH, {"apiVersion": "batch/v1", "kind": "Job",
                                 "metadata": {"name": "done"},
                                 "spec": {"ttlSecondsAfterFinished": 100},
                                 "status": {"conditions": [{
                                     "type": "Complete", "status": "True",
                                     "lastTransitionTime": ts(T0)}]}})
    ctrl.job_informer.store.add(job)
    ctrl.add_job(job)
    assert len(ctrl.queue) == 1
    await ctrl.sync(f"{NS}/done")
    assert delays == [100.0] and not client.by_verb("delete")
    now[0] = T0 + timedelta(seconds=101)
    await ctrl.sync(f"{NS}/done")
    [d] = client.by_verb("delete", "jobs")
    assert d.body["propagationPolicy"] == "Foreground"
    assert d.body["preconditions"] == {"uid": job["metadata"]["uid"]}


def test_manager_registers_the_batch_controllers(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyk8s.controllers.manager import ALL_CONTROLLERS, ControllerManagerOptions
    assert {"job", "cronjob", "ttl-after-finished"} <= set(ALL_CONTROLLERS)
    o = ControllerManagerOptions()
    assert (o.concurrent_job_syncs, o.concurrent_cron_job_syncs) == (5, 5)
    assert o.job_backoff_base == 10.0 and o.cronjob_clock_offset == 0.0
    monkeypatch.setenv("PYK8S_JOB_BACKOFF_BASE", "0.5")
    assert ControllerManagerOptions().job_backoff_base == 0.5
