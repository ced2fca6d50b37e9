"""The audit log of a real `pyk8s server` (--audit-policy-file, --audit-log-*), driven by
real kubectl: levels, stages, users, status codes, secrets kept out, rotation."""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ROOT, ServerProcess, wait_for

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
# kubectl's discovery and health checks: not interesting here.
- level: None
  nonResourceURLs: ["/api", "/api/*", "/apis", "/apis/*", "/openapi/*", "/version",
                    "/healthz*", "/readyz*", "/livez*"]
# The admin's lists are dropped; its gets are not.
- level: None
  users: ["system:admin"]
  verbs: ["list"]
- level: RequestResponse
  namespaces: ["rr"]
  resources:
  - group: ""
    resources: ["configmaps"]
- level: Metadata
"""


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    d = tmp_path_factory.mktemp("pyk8s-audit")
    policy = d / "policy.yaml"
    policy.write_text(POLICY)
    log = d / "logs" / "audit.log"
    srv = ServerProcess(d, extra=["--audit-policy-file", str(policy),
                                  "--audit-log-path", str(log)]).start()
    try:
        yield srv, log
    finally:
        srv.stop()


def events_for(log: Path, **match: Any) -> list[dict[str, Any]]:
    out = []
    for ev in read_events(log):
        ref = ev.get("objectRef") or {}
        if all((ref.get(k[4:]) if k.startswith("ref_") else ev.get(k)) == v
               for k, v in match.items()):
            out.append(ev)
    return out


def test_kubectl_create_is_one_complete_event(audited: tuple[ServerProcess, Path]) -> None:
    srv, log = audited
    srv.kubectl("create", "configmap", "x", "--from-literal=a=b")
    events = events_for(log, verb="create", ref_resource="configmaps", ref_name="x")
    assert [e["stage"] for e in events] == ["ResponseComplete"], events
    ev = events[0]
    assert ev["level"] == "Metadata"
    assert ev["user"]["username"] == "system:admin"
    assert "system:masters" in ev["user"]["groups"]
    assert ev["objectRef"] == {"resource": "configmaps", "namespace": "default", "name": "x",
                               "apiVersion": "v1"}
    assert ev["responseStatus"] == {"metadata": {}, "code": 201}
    assert ev["requestURI"].startswith("/api/v1/namespaces/default/configmaps?")
    assert ev["userAgent"].startswith("kubectl")
    assert ev["sourceIPs"] == ["127.0.0.1"]
    assert "requestObject" not in ev and "responseObject" not in ev
    # Its RequestReceived event (same audit ID) knew the URL only.
    received = [e for e in read_events(log)
                if e["auditID"] == ev["auditID"] and e["stage"] == "RequestReceived"]
    assert len(received) == 1 and "name" not in received[0]["objectRef"]


def test_secret_data_stays_out_of_the_log(audited: tuple[ServerProcess, Path]) -> None:
    srv, log = audited
    srv.kubectl("create", "secret", "generic", "s", "--from-literal=password=hunter2")
    events = events_for(log, verb="create", ref_resource="secrets", ref_name="s",
                        stage="ResponseComplete")
    assert len(events) == 1 and events[0]["responseStatus"]["code"] == 201
    srv.kubectl("get", "secret", "s", "-o", "yaml")  # a Metadata-level get of it too
    assert events_for(log, verb="get", ref_resource="secrets", ref_name="s")
    text = log.read_text()
    assert "hunter2" not in text
    assert base64.b64encode(b"hunter2").decode() not in text


def test_request_response_rule_records_objects(audited: tuple[ServerProcess, Path]) -> None:
    srv, log = audited
    srv.kubectl("create", "namespace", "rr")
    srv.kubectl("-n", "rr", "create", "configmap", "big", "--from-literal=k=v")
    ev = events_for(log, verb="create", ref_resource="configmaps", ref_namespace="rr",
                    stage="ResponseComplete")[0]
    assert ev["level"] == "RequestResponse"
    assert ev["requestObject"]["kind"] == "ConfigMap"
    assert ev["requestObject"]["data"] == {"k": "v"}
    assert "uid" not in ev["requestObject"]["metadata"]
    assert ev["responseObject"]["data"] == {"k": "v"}
    assert ev["responseObject"]["metadata"]["uid"]
    assert ev["responseObject"]["metadata"]["resourceVersion"]
    # The namespace itself was created at Metadata level: no objects.
    ns = events_for(log, verb="create", ref_resource="namespaces", stage="ResponseComplete")
    assert ns and "requestObject" not in ns[-1] and ns[-1]["objectRef"]["name"] == "rr"


def test_none_rule_drops_a_users_verb(audited: tuple[ServerProcess, Path]) -> None:
    srv, log = audited
    srv.kubectl("create", "configmap", "listed", "--from-literal=a=b")
    before = len(read_events(log))
    srv.kubectl("get", "configmaps")  # system:admin's list: None
    srv.kubectl("get", "configmap", "listed")  # a get: Metadata
    new = read_events(log)[before:]
    assert not [e for e in new if e["verb"] == "list"], new
    gets = [e for e in new if e["verb"] == "get" and
            e.get("objectRef", {}).get("name") == "listed"]
    assert [e["stage"] for e in gets] == ["RequestReceived", "ResponseComplete"]
    # Discovery (non-resource URLs) is dropped by its None rule.
    assert not [e for e in new if "objectRef" not in e]


def test_not_found_and_conflict_codes(audited: tuple[ServerProcess, Path]) -> None:
    srv, log = audited
    p = srv.kubectl("get", "configmap", "nope", check=False)
    assert p.returncode != 0 and "NotFound" in p.stderr
    ev = events_for(log, verb="get", ref_name="nope", stage="ResponseComplete")[-1]
    assert ev["responseStatus"]["code"] == 404
    assert ev["responseStatus"]["reason"] == "NotFound"
    assert ev["responseStatus"]["message"] == 'configmaps "nope" not found'
    srv.kubectl("create", "configmap", "twice")
    p = srv.kubectl("create", "configmap", "twice", check=False)
    assert p.returncode != 0 and "already exists" in p.stderr
    events = events_for(log, verb="create", ref_name="twice", stage="ResponseComplete")
    assert [e["responseStatus"]["code"] for e in events] == [201, 409]
    assert events[1]["responseStatus"]["reason"] == "AlreadyExists"


def test_watch_is_long_running(audited: tuple[ServerProcess, Path]) -> None:
    srv, log = audited
    r = srv.get("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1")
    assert r.status == 200
    audit_id = r.headers["Audit-Id"]
    events = wait_for("the watch's ResponseComplete", lambda: (
        evs if len(evs := [e for e in read_events(log) if e["auditID"] == audit_id]) == 3
        else None))
    assert [e["stage"] for e in events] == ["RequestReceived", "ResponseStarted",
                                            "ResponseComplete"]
    assert events[0]["verb"] == "watch"
    assert [e["responseStatus"]["code"] for e in events[1:]] == [200, 200]


def test_failed_authentication_is_audited(audited: tuple[ServerProcess, Path]) -> None:
    srv, log = audited
    r = srv.get("/api/v1/namespaces/default/pods", token="not-a-token")
    assert r.status == 401
    events = [e for e in read_events(log) if e["auditID"] == r.headers["Audit-Id"]]
    assert len(events) == 1
    assert events[0]["stage"] == "ResponseStarted" and events[0]["user"] == {}
    assert events[0]["responseStatus"]["code"] == 401


def test_invalid_policy_refuses_to_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- users: [a]\n")
    p = subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "server", "--data-dir",
                        str(tmp_path / "d"), "--audit-policy-file", str(bad),
                        "--audit-log-path", str(tmp_path / "audit.log")],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1
    assert f"Error: loading audit policy file: rules[0].level: Required value: from file " \
           f"{bad}" in p.stderr, p.stderr
    assert not (tmp_path / "d" / "kubeconfig.yaml").exists()


def test_rotation_by_size_keeps_max_backups(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: "
                      "[RequestReceived]\nrules:\n- level: None\n  nonResourceURLs: ['*']\n"
                      "- level: RequestResponse\n")
    log = tmp_path / "audit" / "audit.log"
    srv = ServerProcess(tmp_path / "d", extra=[
        "--audit-policy-file", str(policy), "--audit-log-path", str(log),
        "--audit-log-maxsize", "1", "--audit-log-maxbackup", "2"]).start()
    try:
        value = "v" * 90_000  # each create's event carries it twice (request, response)
        for i in range(30):
            r = srv.post("/api/v1/namespaces/default/configmaps",
                         {"metadata": {"name": f"big-{i}"}, "data": {"k": value}})
            assert r.status == 201, r
    finally:
        srv.stop()
    names = sorted(p.name for p in log.parent.iterdir())
    backups = [n for n in names if n != "audit.log"]
    assert len(backups) == 2, names
    assert all(re.fullmatch(r"audit-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}\.log", n)
               for n in backups), backups
    kept: list[dict[str, Any]] = []
    for n in backups + ["audit.log"]:
        f = log.parent / n
        assert f.stat().st_size <= 1024 * 1024
        assert oct(f.stat().st_mode & 0o777) == "0o600"
        kept.extend(read_events(f))
    created = [e["objectRef"]["name"] for e in kept if e["verb"] == "create"]
    # The newest events are all there, in order, ending with the last create.
    assert created == [f"big-{i}" for i in range(30 - len(created), 30)]
    assert 10 <= len(created) < 30


def test_exec_and_logs_on_up_are_long_running(tmp_path: Path) -> None:
    """`pyk8s up` takes the flags too; exec (WebSocket, 101) and logs get ResponseStarted."""
    from tests.e2e.test_agent import AgentProcess
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"
                      "  resources: [{group: '', resources: [pods/exec, pods/log]}]\n")
    log = tmp_path / "audit.log"
    up = ServerProcess(tmp_path, command="up", ready_log="deployment-controller: synced",
                       extra=["--audit-policy-file", str(policy), "--audit-log-path",
                              str(log)]).start(timeout=40)
    agent = None
    try:
        agent = AgentProcess(up, tmp_path, "--node-name", "audit-1", "--runtime",
                             "process").start()
        wait_for("node Ready", lambda: " Ready " in up.kubectl(
            "get", "nodes", "audit-1", "--no-headers", check=False).stdout, timeout=30)
        up.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sh"},
            "spec": {"nodeName": "audit-1", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "busybox", "command": [
                         "sh", "-c", "echo started; exec sleep 3600"]}]}}))
        wait_for("pod Running", lambda: up.kubectl_json("get", "pod", "sh").get(
            "status", {}).get("phase") == "Running", timeout=30)
        wait_for("its log", lambda: "started" in up.kubectl("logs", "sh", check=False).stdout)
        assert up.kubectl("exec", "sh", "--", "echo", "hi").stdout == "hi\n"
    finally:
        if agent is not None:
            agent.stop()
        up.stop()
    events = read_events(log)
    for sub, code in (("exec", 101), ("log", 200)):
        mine = [e for e in events if e["objectRef"].get("subresource") == sub]
        assert mine, events
        last = [e for e in mine if e["auditID"] == mine[-1]["auditID"]]
        assert [(e["stage"], e.get("responseStatus", {}).get("code")) for e in last] == [
            ("RequestReceived", None), ("ResponseStarted", code),
            ("ResponseComplete", code)], last
        assert last[0]["verb"] == "get"  # kubectl's WebSocket upgrade is a GET
