"""Which node store `pyk8s image` works on (by default `make up`'s local node, `.pyk8s/agent`),
what `ls` prints (crictl's columns) and `rm` refusing images a container runs."""
from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pyk8s.cli.image import (NodeStoreError, _latest_hint, _rows, _table, human_size,
                             node_name_of, resolve_node_store)
from pyk8s.kubelet.images import ImageRecord, ImageStore
from pyk8s.kubelet.images.inuse import containers_using_images, write_image_use
from tests.images import layout_config_digest

ROOT = Path(__file__).resolve().parents[3]


def pyk8s(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "image", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=60, env=env)


def node_cert(agent: Path, cn: str) -> None:
    """A client certificate as the node's bootstrap leaves it in pki/."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (agent / "pki").mkdir(parents=True)
    (agent / "pki" / "kubelet-client-current.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))


def test_default_is_the_local_node_of_up_here(tmp_path: Path) -> None:
    agent = tmp_path / ".pyk8s" / "agent"
    agent.mkdir(parents=True)
    node = resolve_node_store(None, cwd=tmp_path)
    assert node.images == agent / "images" and node.node_name == ""
    node_cert(agent, "system:node:box-1")
    assert resolve_node_store(None, cwd=tmp_path).node_name == "box-1"
    assert node.describe() == f"node, image store {agent / 'images'}"
    assert resolve_node_store(None, cwd=tmp_path).describe() == \
        f'node "box-1", image store {agent / "images"}'
    # --data-dir of an up dir, relative or absolute, is the same node
    assert resolve_node_store(".pyk8s", cwd=tmp_path).images == agent / "images"
    assert resolve_node_store(str(tmp_path / ".pyk8s")).images == agent / "images"
    # an agent's data dir is its own store
    (agent / "kubelet.kubeconfig").write_text("{}")
    assert resolve_node_store(str(agent)).images == agent / "images"


def test_node_name_needs_a_node_certificate(tmp_path: Path) -> None:
    assert node_name_of(tmp_path) == ""
    node_cert(tmp_path, "kube-apiserver-kubelet-client")
    assert node_name_of(tmp_path) == ""


def test_missing_default_store_is_an_error_naming_data_dir(tmp_path: Path) -> None:
    with pytest.raises(NodeStoreError) as e:
        resolve_node_store(None, cwd=tmp_path)
    assert str(tmp_path / ".pyk8s" / "agent") in str(e.value)
    assert "make up" in str(e.value) and "--data-dir DIR" in str(e.value)
    (tmp_path / ".pyk8s-agent").mkdir()
    with pytest.raises(NodeStoreError, match="--data-dir .pyk8s-agent"):
        resolve_node_store(None, cwd=tmp_path)
    # an up dir whose local node was disabled has no store either
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "kubeconfig.yaml").write_text("{}")
    with pytest.raises(NodeStoreError, match="without a local node"):
        resolve_node_store("srv", cwd=tmp_path, create=True)
    # ls / rm on a dir that holds no store; an import may seed a new agent dir
    with pytest.raises(NodeStoreError, match="no image store"):
        resolve_node_store("fresh", cwd=tmp_path)
    assert resolve_node_store("fresh", cwd=tmp_path, create=True).images == \
        tmp_path / "fresh" / "images"


def test_cli_without_a_node_fails_and_creates_nothing(tmp_path: Path,
                                                      busybox_archive: Path) -> None:
    for args in (("import", str(busybox_archive)), ("ls",), ("rm", "busybox")):
        r = pyk8s(tmp_path, *args)
        assert r.returncode == 1, (args, r.stdout)
        assert f"no local node at {tmp_path / '.pyk8s' / 'agent'}" in r.stderr
        assert "--data-dir" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_imports_into_up_node_by_default(tmp_path: Path, busybox_layout: Path) -> None:
    agent = tmp_path / ".pyk8s" / "agent"
    agent.mkdir(parents=True)
    node_cert(agent, "system:node:box-1")
    r = pyk8s(tmp_path, "import", "--name", "busybox", str(busybox_layout))
    assert r.returncode == 0, r.stderr
    image_id = layout_config_digest(busybox_layout)
    assert r.stdout.splitlines() == [
        f"imported docker.io/library/busybox:latest {image_id}",
        f'into node "box-1", image store {agent / "images"}']
    # `latest`: pods default to imagePullPolicy Always, which would pull instead
    assert "imagePullPolicy: IfNotPresent" in r.stderr
    assert ImageStore(agent / "images").get("busybox") is not None
    r = pyk8s(tmp_path, "ls")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split()[:3] == ["docker.io/library/busybox", "latest",
                                                    image_id[7:20]]
    r = pyk8s(tmp_path, "rm", "busybox")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "Deleted: docker.io/library/busybox:latest"
    assert ImageStore(agent / "images").list() == []


def test_latest_hint() -> None:
    assert _latest_hint(["docker.io/library/busybox:1.36"]) == ""
    assert "docker.io/library/busybox:latest" in _latest_hint(
        ["docker.io/x/y:1", "docker.io/library/busybox:latest"])
    assert _latest_hint([]) == ""


def _rec(hexchar: str, tags: list[str], digests: list[str] = (), size: int = 1_234_567
         ) -> ImageRecord:
    return ImageRecord(id="sha256:" + hexchar * 64, manifest_digest="sha256:" + "f" * 64,
                       repo_tags=tags, repo_digests=list(digests), size=size)


def test_ls_rows_as_crictl_images() -> None:
    recs = [_rec("a", ["docker.io/library/busybox:1.36", "docker.io/library/busybox:latest"],
                 ["docker.io/library/busybox@sha256:" + "b" * 64]),
            _rec("c", [], ["registry.local:5000/app@sha256:" + "d" * 64], size=999),
            _rec("e", [], size=2_160_000_000)]
    rows = _rows(recs, digests=False)
    assert rows == [
        ["IMAGE", "TAG", "IMAGE ID", "SIZE"],
        ["docker.io/library/busybox", "1.36", "a" * 13, "1.23MB"],
        ["docker.io/library/busybox", "latest", "a" * 13, "1.23MB"],
        ["registry.local:5000/app", "<none>", "c" * 13, "999B"],
        ["<none>", "<none>", "e" * 13, "2.16GB"]]
    assert _rows(recs, digests=True)[0] == ["IMAGE", "TAG", "DIGEST", "IMAGE ID", "SIZE"]
    assert _rows(recs, digests=True)[1][2] == "b" * 13
    assert _rows(recs, digests=True)[4][2] == "<none>"
    lines = _table(rows).splitlines()
    # tabwriter: each column as wide as its longest cell + 3, at least 20
    width = len("docker.io/library/busybox") + 3
    assert lines[0] == "IMAGE".ljust(width) + "TAG".ljust(20) + "IMAGE ID".ljust(20) + "SIZE"
    assert lines[1] == ("docker.io/library/busybox".ljust(width) + "1.36".ljust(20)
                        + ("a" * 13).ljust(20) + "1.23MB")
    assert _table(_rows([], False)) == "IMAGE".ljust(20) + "TAG".ljust(20) + \
        "IMAGE ID".ljust(20) + "SIZE\n"
    assert human_size(999_500) == "1e+03kB"    # Go's %.3g, as crictl prints it


def test_rm_refuses_an_image_a_container_runs(tmp_path: Path, busybox_layout: Path,
                                              busybox_archive: Path) -> None:
    agent = tmp_path / ".pyk8s" / "agent"
    store = ImageStore(agent / "images")
    [bb] = store.import_archive(busybox_layout, "busybox:1.36")
    [other] = store.import_archive(busybox_archive)
    # two names of one image (same layout): removing either removes the image
    assert bb.id == other.id
    bundle = agent / "containers" / ("9" * 64)
    bundle.mkdir(parents=True)
    write_image_use(bundle, image_id=bb.id, image="busybox:1.36", pod_uid="uid-1",
                    container="main")
    [use] = containers_using_images(agent / "containers")
    assert (use.image_id, use.pod_uid, use.container) == (bb.id, "uid-1", "main")
    r = pyk8s(tmp_path, "rm", "busybox:1.36")
    assert r.returncode == 1
    assert (f'image "busybox:1.36" ({bb.id[7:20]}) is in use by container {"9" * 13} '
            f'("main" of pod uid uid-1): delete the pod first') in r.stderr
    assert store.get("busybox:1.36") is not None
    # the container gone (its bundle removed on exit), the image goes
    (bundle / "image.json").unlink()
    bundle.rmdir()
    r = pyk8s(tmp_path, "rm", "busybox:1.36", "nope")
    assert r.returncode == 1 and "no such image 'nope'" in r.stderr
    assert "Deleted: docker.io/library/busybox:1.36" in r.stdout.splitlines()
    assert store.list() == []
