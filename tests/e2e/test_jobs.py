"""Jobs and CronJobs in a real `pyk8s up` whose local node runs the fake runtime (the pod
annotation `pyk8s.io/fake-exit-code` makes containers exit with that code), driven by real
kubectl. The Job backoff base and the CronJob clock come from the controller manager's
environment hooks (PYK8S_JOB_BACKOFF_BASE, PYK8S_CRONJOB_CLOCK_OFFSET) so nothing waits
for real backoffs or minutes."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ServerProcess, wait_for

NS = "default"
INDEX = "batch.kubernetes.io/job-completion-index"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data: Path = tmp_path_factory.mktemp("pyk8s-jobs")
    up = ServerProcess(data, command="up", ready_log="job-controller: synced", local_node=True,
                       extra=["--node-name", "jobs-1", "--runtime", "fake"])
    saved = {k: os.environ.get(k) for k in ("PYK8S_JOB_BACKOFF_BASE",
                                            "PYK8S_CRONJOB_CLOCK_OFFSET")}
    # A 0.2 s pod re-creation backoff; the CronJob controller 61 s ahead, so a schedule of
    # every minute is already due when a CronJob is created.
    os.environ["PYK8S_JOB_BACKOFF_BASE"] = "0.2"
    os.environ["PYK8S_CRONJOB_CLOCK_OFFSET"] = "61"
    try:
        up.start(timeout=40)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        def node_ready() -> bool:
            r = up.get("/api/v1/nodes/jobs-1")  # 404 until the kubelet has its certificate
            return r.status == 200 and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (r.json().get("status") or {}).get("conditions") or [])
        wait_for("node Ready", node_ready, timeout=30)
        yield up
    finally:
        up.stop()


def job_yaml(name: str, *, exit_code: int, extra_spec: str = "") -> str:
    return f"""\
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}, namespace: {NS}}}
spec:
{extra_spec}  template:
    metadata: {{annotations: {{pyk8s.io/fake-exit-code: "{exit_code}"}}}}
    spec:
      restartPolicy: Never
      containers: [{{name: main, image: busybox}}]
"""


def job(c: ServerProcess, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = c.get(f"/apis/batch/v1/namespaces/{NS}/jobs/{name}").json()
    return obj


def job_pods(c: ServerProcess, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = c.get(
        f"/api/v1/namespaces/{NS}/pods?labelSelector=batch.kubernetes.io%2Fjob-name%3D{name}"
    ).json()["items"]
    return items


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_ and cond["status"] == "True":
            return dict(cond)
    return None


def test_indexed_job_completes_each_index_once(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=job_yaml(
        "idx", exit_code=0,
        extra_spec="  completions: 5\n  parallelism: 2\n  completionMode: Indexed\n"))
    out = cluster.kubectl("wait", "--for=condition=complete", "job/idx", "-n", NS,
                          "--timeout=40s", timeout=60).stdout
    assert "job.batch/idx condition met" in out
    j = job(cluster, "idx")
    st = j["status"]
    assert st["completedIndexes"] == "0-4" and st["succeeded"] == 5
    assert st.get("failed", 0) == 0 and st["uncountedTerminatedPods"] == {}
    assert condition(j, "SuccessCriteriaMet") and st["completionTime"]
    # The API server generated the selector and the template's labels (upstream's
    # generateSelector): the controller uid selects exactly this Job's pods.
    uid = j["metadata"]["uid"]
    assert j["spec"]["selector"]["matchLabels"] == {"batch.kubernetes.io/controller-uid": uid}
    tmpl = j["spec"]["template"]["metadata"]["labels"]
    assert tmpl["batch.kubernetes.io/job-name"] == tmpl["job-name"] == "idx"
    assert tmpl["batch.kubernetes.io/controller-uid"] == tmpl["controller-uid"] == uid
    pods = job_pods(cluster, "idx")
    indexes = sorted(int(p["metadata"]["annotations"][INDEX]) for p in pods)
    assert indexes == [0, 1, 2, 3, 4]
    for p in pods:
        ix = p["metadata"]["annotations"][INDEX]
        assert p["metadata"]["name"].startswith(f"idx-{ix}-")
        assert p["spec"]["hostname"] == f"idx-{ix}"
        assert p["status"]["phase"] == "Succeeded"
        assert "batch.kubernetes.io/job-tracking" not in (p["metadata"].get("finalizers") or [])


def test_failing_job_stops_at_backoff_limit(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=job_yaml(
        "fails", exit_code=3, extra_spec="  backoffLimit: 2\n"))
    j = wait_for("Failed", lambda: condition(x := job(cluster, "fails"), "Failed") and x,
                 timeout=40)
    failed = condition(j, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert condition(j, "FailureTarget") is not None
    assert j["status"]["failed"] == 3 and j["status"].get("active", 0) == 0
    assert len(job_pods(cluster, "fails")) == 3
    events = cluster.get(f"/api/v1/namespaces/{NS}/events?fieldSelector="
                         "involvedObject.name%3Dfails").json()["items"]
    reasons = {e["reason"] for e in events}
    assert {"SuccessfulCreate", "BackoffLimitExceeded"} <= reasons


def test_cronjob_starts_a_job_and_create_job_from_cronjob(cluster: ServerProcess) -> None:
    cluster.kubectl("apply", "-f", "-", input=f"""\
apiVersion: batch/v1
kind: CronJob
metadata: {{name: tick, namespace: {NS}}}
spec:
  schedule: "* * * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        metadata: {{annotations: {{pyk8s.io/fake-exit-code: "0"}}}}
        spec:
          restartPolicy: Never
          containers: [{{name: main, image: busybox}}]
""")
    cj = wait_for("scheduled job", lambda: (x := cluster.get(
        f"/apis/batch/v1/namespaces/{NS}/cronjobs/tick").json()).get("status", {}).get(
        "lastScheduleTime") and x, timeout=20)
    jobs = cluster.get(f"/apis/batch/v1/namespaces/{NS}/jobs").json()["items"]
    # (a minute boundary during the test may have started one more: take the first)
    scheduled = min((j for j in jobs if j["metadata"]["name"].startswith("tick-")),
                    key=lambda j: j["metadata"]["name"])
    assert scheduled["metadata"]["annotations"][
        "batch.kubernetes.io/cronjob-scheduled-timestamp"].endswith("Z")
    ref = scheduled["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
        "CronJob", "tick", cj["metadata"]["uid"], True)
    cluster.kubectl("create", "job", "manual", "--from=cronjob/tick", "-n", NS)
    out = cluster.kubectl("wait", "--for=condition=complete", "job/manual", "-n", NS,
                          "--timeout=30s", timeout=45).stdout
    assert "condition met" in out
    manual = job(cluster, "manual")
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert manual["status"]["succeeded"] == 1
