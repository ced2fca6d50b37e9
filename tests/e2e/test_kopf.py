"""A real kopf operator (the PyPI package) against a real pyk8s server.

The operator runs in a subprocess with the server's kubeconfig (`--standalone`: no peering
CRDs); its handlers write marker files, so the test sees create / update / delete ran, and
reads the status patches and the finalizer through the API.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.conftest import ServerProcess


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {
        "group": "stable.example.com", "scope": "Namespaced",
        "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab",
                  "shortNames": ["ct"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {
                        "cronSpec": {"type": "string"}, "replicas": {"type": "integer"}}},
                    "status": {"type": "object",
                               "x-kubernetes-preserve-unknown-fields": True}}}}}]}}

OPERATOR = textwrap.dedent('''
    import os, pathlib
    import kopf

    OUT = pathlib.Path(os.environ["KOPF_OUT"])

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_):
        settings.watching.server_timeout = 10
        settings.watching.client_timeout = 15
        settings.persistence.finalizer = "example.com/kopf-finalizer"

    @kopf.on.create("stable.example.com", "v1", "crontabs")
    def on_create(spec, name, patch, **_):
        (OUT / f"created-{name}").write_text(str(spec.get("cronSpec")))
        patch.status["phase"] = "Created"
        return {"message": f"created {name}"}

    @kopf.on.update("stable.example.com", "v1", "crontabs")
    def on_update(spec, name, patch, **_):
        (OUT / f"updated-{name}").write_text(str(spec.get("cronSpec")))
        patch.status["phase"] = "Updated"

    @kopf.on.delete("stable.example.com", "v1", "crontabs")
    def on_delete(name, **_):
        (OUT / f"deleted-{name}").write_text("bye")
''')

BASE = "/apis/stable.example.com/v1/namespaces/default/crontabs"


def wait_until(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def operator(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[ServerProcess, Path]]:
    r = server.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD)
    assert r.status == 201, r
    wait_until(lambda: server.get(BASE).status == 200, 2.0, "the CRD to be served")
    work = tmp_path_factory.mktemp("kopf")
    out = work / "out"
    out.mkdir()
    (work / "op.py").write_text(OPERATOR)
    log = open(work / "kopf.log", "wb")
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig), KOPF_OUT=str(out),
               HOME=str(work))
    proc = subprocess.Popen([sys.executable, "-m", "kopf", "run", "--standalone",
                             "--namespace", "default", "--verbose", str(work / "op.py")],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    try:
        wait_until(lambda: proc.poll() is not None or
                   b"Resuming the watch" in (work / "kopf.log").read_bytes() or
                   b"Starting the watch-stream" in (work / "kopf.log").read_bytes(),
                   30.0, "kopf to start watching")
        assert proc.poll() is None, (work / "kopf.log").read_text()[-3000:]
        yield server, out
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        print((work / "kopf.log").read_text()[-5000:])


def test_kopf_create_update_delete(operator: tuple[ServerProcess, Path]) -> None:
    server, out = operator
    cr = {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
          "metadata": {"name": "job1"}, "spec": {"cronSpec": "*/1", "replicas": 1}}
    assert server.post(BASE, cr).status == 201
    wait_until(lambda: (out / "created-job1").exists(), 20.0, "the create handler")
    assert (out / "created-job1").read_text() == "*/1"

    def status() -> dict[str, Any]:
        return server.get(BASE + "/job1").json()
    obj = wait_until(lambda: (s := status()).get("status", {}).get("on_create") and s,
                     20.0, "the create handler's result in status")
    assert obj["status"]["on_create"] == {"message": "created job1"}
    assert obj["status"]["phase"] == "Created"
    assert "example.com/kopf-finalizer" in obj["metadata"]["finalizers"]

    r = server.patch(BASE + "/job1", {"spec": {"cronSpec": "*/2"}},
                     "application/merge-patch+json")
    assert r.status == 200
    wait_until(lambda: (out / "updated-job1").exists(), 20.0, "the update handler")
    assert (out / "updated-job1").read_text() == "*/2"
    wait_until(lambda: status().get("status", {}).get("phase") == "Updated", 20.0,
               "the update's status patch")

    r = server.delete(BASE + "/job1")
    assert r.status in (200, 202)
    wait_until(lambda: (out / "deleted-job1").exists(), 20.0, "the delete handler")
    wait_until(lambda: server.get(BASE + "/job1").status == 404, 20.0,
               "kopf to remove its finalizer")
