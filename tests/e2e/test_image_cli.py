"""Getting an image onto a node without a registry (issue 19): `pyk8s up` with the oci
runtime in a `.pyk8s` data dir, as `make up` runs it; `tools/build_test_image.py` writes a
busybox archive, `pyk8s image import` run beside `.pyk8s` (no --data-dir) loads it into
that node, `pyk8s image ls` lists it, the README's `kubectl create deployment` and a pod with
imagePullPolicy Never run it, `pyk8s image rm` refuses it while they run and removes an
unused image. The node's only registry is unreachable: nothing is pulled."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import needs_root, wait_for
from tests.e2e.test_oci_runtime import _node_state, apply, oci_up, pod, pods
from tests.images import build_busybox_image, write_oci_archive

pytestmark = needs_root

ROOT = Path(__file__).resolve().parents[2]
NODE = "img-1"


def image_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "image", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120, env=env)


def listed(cwd: Path) -> list[list[str]]:
    r = image_cli(cwd, "ls")
    assert r.returncode == 0, r.stderr
    return [line.split() for line in r.stdout.splitlines()[1:]]


def test_import_ls_run_rm_on_the_local_node_of_up(tmp_path_factory: pytest.TempPathFactory
                                                  ) -> None:
    here = tmp_path_factory.mktemp("image-cli")
    data = here / ".pyk8s"
    nowhere = SimpleNamespace(host="127.0.0.1:9")      # the discard port: no registry
    up, bridge = oci_up(data, nowhere, NODE)
    try:
        up.start(timeout=40)
        wait_for("node Ready", lambda: " Ready " in up.kubectl(
            "get", "nodes", NODE, "--no-headers", check=False).stdout, timeout=30)
        store = data / "agent" / "images"

        # the README's way: the tool writes the archive, `pyk8s image import` loads it
        tar = here / "busybox.tar"
        r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_test_image.py"),
                            str(tar), "--name", "busybox:local"], capture_output=True,
                           text=True, cwd=here, timeout=120)
        assert r.returncode == 0, r.stderr
        r = image_cli(here, "import", str(tar))
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1] == f'into node "{NODE}", image store {store}'
        assert "imported docker.io/library/busybox:local sha256:" in r.stdout
        spare_layout = build_busybox_image(here / "spare", extra_files={"/spare": b"1\n"})
        write_oci_archive(spare_layout, here / "spare.tar", ref_name="example.com/spare:v1")
        r = image_cli(here, "import", str(here / "spare.tar"))
        assert r.returncode == 0, r.stderr
        rows = listed(here)
        assert [row[:2] for row in rows] == [["docker.io/library/busybox", "local"],
                                            ["example.com/spare", "v1"]]
        assert all(len(row[2]) == 13 and row[3].endswith("MB") for row in rows)

        # a non-latest tag: kubectl create deployment's pods default to IfNotPresent
        up.kubectl("create", "deployment", "hello", "--image=busybox:local", "--",
                   "sleep", "3600")
        apply(up, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "never"},
                   "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                       "name": "main", "image": "busybox:local",
                       "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}})
        wait_for("both Running", lambda: pod(up, "never").get("status", {}).get("phase")
                 == "Running" and [p["status"].get("phase") for p in
                                   pods(up, "app=hello")] == ["Running"], timeout=60)
        [hello] = pods(up, "app=hello")
        assert hello["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
        reasons = {e["reason"] for e in up.kubectl_json(
            "get", "events", "-o", "json")["items"]}
        assert "Pulling" not in reasons and "Failed" not in reasons

        # rm: the running image is refused, the unused one goes
        r = image_cli(here, "rm", "busybox:local", "example.com/spare:v1")
        assert r.returncode == 1
        assert 'image "busybox:local"' in r.stderr and "is in use by container" in r.stderr
        assert r.stdout.splitlines()[0] == "Deleted: example.com/spare:v1"
        assert [row[:2] for row in listed(here)] == [["docker.io/library/busybox", "local"]]

        up.kubectl("delete", "deployment", "hello")
        up.kubectl("delete", "pod", "never", "--wait=true")
        wait_for("hello's pod gone", lambda: not pods(up, "app=hello"), timeout=60)
        wait_for("busybox:local removed", lambda: image_cli(
            here, "rm", "busybox:local").returncode == 0, timeout=30)
        assert listed(here) == []
    finally:
        up.stop()
    left = _node_state(data / "agent", bridge, stopped=True, node=NODE)
    assert not left, left
