"""CronJob controller `sync` against a seeded fake. Time is driven through the injectable
clock: minutes pass without sleeping."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pyk8s.client.events import FakeRecorder
from pyk8s.client.fake import FakeClient
from pyk8s.client.informer import SharedInformerFactory
from pyk8s.controllers import cronjob_util as cu
from pyk8s.controllers.cronjob import CronJobController
from tests.controllers.helpers import T0, record_delays, ts

Obj = dict[str, Any]
NS = "ns"
CJ_PATH = f"/apis/batch/v1/namespaces/{NS}/cronjobs"
JOB_PATH = f"/apis/batch/v1/namespaces/{NS}/jobs"


class Harness:
    def __init__(self) -> None:
        self.now = T0
        self.client = FakeClient()
        self.recorder = FakeRecorder()
        self.ctrl = CronJobController(self.client, SharedInformerFactory(self.client),  # type: ignore[arg-type]
                                      self.recorder, clock=lambda: self.now)
        self.delays = record_delays(self.ctrl.queue)

    def add(self, name: str = "cj", schedule: str = "* * * * *", created: datetime = T0,
            **spec: Any) -> Obj:
        cj: Obj = {"apiVersion": "batch/v1", "kind": "CronJob",
                   "metadata": {"name": name, "creationTimestamp": ts(created)},
                   "spec": {"schedule": schedule, "concurrencyPolicy": "Allow",
                            "suspend": False, "successfulJobsHistoryLimit": 3,
                            "failedJobsHistoryLimit": 1,
                            "jobTemplate": {"metadata": {"labels": {"l": "v"},
                                                         "annotations": {"a": "b"}},
                                            "spec": {"template": {"spec": {
                                                "restartPolicy": "Never",
                                                "containers": [{"name": "c",
                                                                "image": "busybox"}]}}}}}}
        cj["spec"].update(spec)
        self.name = name
        cj = self.client.seed(CJ_PATH, cj)
        self.ctrl.cj_informer.store.add(cj)
        return cj

    def cj(self) -> Obj:
        return self.client.objects[("batch", "cronjobs", NS, self.name)]

    def jobs(self) -> list[Obj]:
        return sorted(self.client.stored("batch", "jobs", NS), key=lambda j: j["metadata"]["name"])

    def refresh(self) -> None:
        self.ctrl.cj_informer.store.add(copy.deepcopy(self.cj()))
        store = self.ctrl.job_informer.store
        for k in list(store.keys()):
            store.delete(k)
        for j in self.jobs():
            store.add(copy.deepcopy(j))

    async def sync(self) -> None:
        self.refresh()
        await self.ctrl.sync(f"{NS}/{self.name}")
        self.refresh()

    def finish(self, job_name: str, type_: str = "Complete", at: datetime | None = None) -> None:
        job = self.client.objects[("batch", "jobs", NS, job_name)]
        at = at or self.now
        job["status"] = {"startTime": job.get("status", {}).get("startTime") or ts(at),
                         "conditions": [{"type": type_, "status": "True",
                                         "lastTransitionTime": ts(at)}]}
        if type_ == "Complete":
            job["status"]["completionTime"] = ts(at)
        job["metadata"]["resourceVersion"] = str(int(job["metadata"]["resourceVersion"]) + 1000)

    def active(self) -> list[str]:
        return [r["name"] for r in (self.cj().get("status") or {}).get("active") or []]


def test_schedule_parsing() -> None:
    at = datetime(2024, 1, 1, 0, 30, 15, tzinfo=timezone.utc)
    assert cu.parse_schedule("*/5 * * * *").next(at) == datetime(2024, 1, 1, 0, 35, tzinfo=timezone.utc)
    assert cu.parse_schedule("@hourly").next(at) == datetime(2024, 1, 1, 1, 0, tzinfo=timezone.utc)
    assert cu.parse_schedule("@every 90s").next(at) == at + timedelta(seconds=90)
    # 09:00 in New York is 14:00 UTC in January
    nyc = cu.parse_schedule("TZ=America/New_York 0 9 * * *")
    assert nyc.next(at) == datetime(2024, 1, 1, 14, 0, tzinfo=timezone.utc)
    for bad in ("* * * *", "61 * * * *", "@fortnightly", "TZ=Nowhere/Land * * * * *"):
        with pytest.raises(ValueError):
            cu.parse_schedule(bad)
    assert cu.format_schedule({"spec": {"schedule": "0 * * * *", "timeZone": "Europe/Paris"}}) \
        == "TZ=Europe/Paris 0 * * * *"


def test_most_recent_schedule_time_counts_missed() -> None:
    cj = {"metadata": {"creationTimestamp": ts(T0)}, "spec": {}}
    sched = cu.parse_schedule("* * * * *")
    m = cu.most_recent_schedule_time(cj, T0 + timedelta(seconds=30), sched, False)
    assert m.most_recent is None and m.count == 0
    m = cu.most_recent_schedule_time(cj, T0 + timedelta(minutes=5, seconds=3), sched, False)
    assert m.most_recent == T0 + timedelta(minutes=5) and m.count == 5
    cj["spec"]["startingDeadlineSeconds"] = 90
    m = cu.most_recent_schedule_time(cj, T0 + timedelta(minutes=5, seconds=3), sched, True)
    assert m.count == 2


async def test_creates_job_when_due_and_requeues_for_the_next() -> None:
    h = Harness()
    cj = h.add(timeZone="Europe/Paris")
    await h.sync()
    assert h.jobs() == [] and h.delays[-1] == pytest.approx(60.1)
    h.now = T0 + timedelta(minutes=1, seconds=2)
    await h.sync()
    [job] = h.jobs()
    scheduled = T0 + timedelta(minutes=1)
    assert job["metadata"]["name"] == f"cj-{int(scheduled.timestamp()) // 60}"
    assert job["metadata"]["labels"] == {"l": "v"}
    assert job["metadata"]["annotations"] == {
        "a": "b", cu.SCHEDULED_TIMESTAMP_ANNOTATION: "2024-05-01T14:01:00+02:00"}
    assert job["metadata"]["ownerReferences"] == [{
        "apiVersion": "batch/v1", "kind": "CronJob", "name": "cj",
        "uid": cj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"
    st = h.cj()["status"]
    assert st["lastScheduleTime"] == ts(scheduled)
    assert st["active"] == [{"kind": "Job", "namespace": NS, "name": job["metadata"]["name"],
                             "uid": job["metadata"]["uid"], "apiVersion": "batch/v1",
                             "resourceVersion": job["metadata"]["resourceVersion"]}]
    assert h.recorder.events == [f"Normal SuccessfulCreate Created job {job['metadata']['name']}"]
    assert h.delays[-1] == pytest.approx(58.1)
    await h.sync()  # the same scheduled time is not processed twice
    assert len(h.jobs()) == 1


async def test_forbid_never_overlaps_over_many_minutes() -> None:
    h = Harness()
    h.add(concurrencyPolicy="Forbid")
    running: str | None = None
    for minute in range(1, 11):
        h.now = T0 + timedelta(minutes=minute, seconds=1)
        if minute in (4, 8) and running:   # the running Job ends at minutes 4 and 8
            h.finish(running)
        await h.sync()
        unfinished = [j for j in h.jobs() if not j.get("status", {}).get("conditions")]
        assert len(unfinished) <= 1, f"overlap at minute {minute}"
        running = unfinished[0]["metadata"]["name"] if unfinished else None
        assert h.active() == ([running] if running else [])
    # Jobs started at minutes 1, 4 (after the first finished) and 8.
    assert len(h.jobs()) == 3
    assert h.recorder.events.count(
        "Normal JobAlreadyActive Not starting job because prior execution is running and "
        "concurrency policy is Forbid") == 7  # minutes 2-3, 5-7, 9-10
    assert sum(e.startswith("Normal SawCompletedJob Saw completed job: ") and
               e.endswith("condition: Complete") for e in h.recorder.events) == 2


async def test_allow_overlaps_and_replace_deletes_the_running_job() -> None:
    h = Harness()
    h.add(concurrencyPolicy="Replace")
    h.now = T0 + timedelta(minutes=1, seconds=1)
    await h.sync()
    [first] = h.jobs()
    h.now = T0 + timedelta(minutes=2, seconds=1)
    await h.sync()
    [second] = h.jobs()
    assert second["metadata"]["name"] != first["metadata"]["name"]
    [d] = h.client.by_verb("delete", "jobs")
    assert d.body["propagationPolicy"] == "Background"
    assert f"Normal SuccessfulDelete Deleted job {first['metadata']['name']}" in h.recorder.events
    assert h.active() == [second["metadata"]["name"]]
    h2 = Harness()
    h2.add()
    for m in (1, 2):
        h2.now = T0 + timedelta(minutes=m, seconds=1)
        await h2.sync()
    assert len(h2.jobs()) == 2 and len(h2.active()) == 2


async def test_starting_deadline_misses_and_suspend_skips() -> None:
    h = Harness()
    h.add(schedule="0 * * * *", startingDeadlineSeconds=10)
    h.now = T0 + timedelta(minutes=30)
    await h.sync()
    assert h.jobs() == []
    h.now = T0 + timedelta(hours=1, seconds=30)
    await h.sync()  # 13:00 is more than 10 s ago: skipped, as upstream
    assert h.jobs() == [] and h.delays[-1] == pytest.approx(3570.1)
    h.now = T0 + timedelta(hours=2, seconds=5)
    await h.sync()
    assert len(h.jobs()) == 1
    h2 = Harness()
    h2.add(suspend=True)
    h2.now = T0 + timedelta(minutes=5)
    await h2.sync()
    assert h2.jobs() == [] and h2.recorder.events == []


async def test_too_many_missed_start_times_warns_but_starts_the_latest() -> None:
    h = Harness()
    h.add()
    h.now = T0 + timedelta(minutes=150, seconds=1)
    await h.sync()
    assert h.recorder.events[0] == ("Warning TooManyMissedTimes too many missed start times: "
                                    "150. Set or decrease .spec.startingDeadlineSeconds or "
                                    "check clock skew")
    [job] = h.jobs()
    assert job["metadata"]["name"] == f"cj-{int((T0 + timedelta(minutes=150)).timestamp()) // 60}"


async def test_history_limits_and_last_successful_time() -> None:
    h = Harness()
    h.add(successfulJobsHistoryLimit=1, failedJobsHistoryLimit=1)
    names = []
    for m in range(1, 5):
        h.now = T0 + timedelta(minutes=m, seconds=1)
        await h.sync()
        name = h.jobs()[-1]["metadata"]["name"]
        names.append(name)
        h.finish(name, "Complete" if m != 2 else "Failed", at=h.now + timedelta(seconds=5))
    h.now += timedelta(seconds=10)
    await h.sync()
    left = [j["metadata"]["name"] for j in h.jobs()]
    assert left == [names[1], names[3]]  # the newest success and the one failure
    deleted = [e for e in h.recorder.events if e.startswith("Normal SuccessfulDelete")]
    assert len(deleted) == 2
    # As upstream, a Job leaving status.active updates lastSuccessfulTime on the next sync.
    assert h.cj()["status"]["lastSuccessfulTime"] == ts(T0 + timedelta(minutes=3, seconds=6))
    await h.sync()
    assert h.cj()["status"]["lastSuccessfulTime"] == ts(T0 + timedelta(minutes=4, seconds=6))


async def test_missing_active_job_is_dropped_from_status() -> None:
    h = Harness()
    h.add()
    h.now = T0 + timedelta(minutes=1, seconds=1)
    await h.sync()
    [job] = h.jobs()
    del h.client.objects[("batch", "jobs", NS, job["metadata"]["name"])]
    await h.sync()
    assert h.active() == []
    assert f"Normal MissingJob Active job went missing: {job['metadata']['name']}" in h.recorder.events
