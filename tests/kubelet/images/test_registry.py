"""Pulls over the distribution API: a real docker-registry (the session's `registry`
fixture: OCI and Docker v2s2 manifests, indexes) and a small fake one on 127.0.0.1 (digest
lies, bearer tokens, Basic auth)."""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any, AsyncIterator

import orjson
import pytest

from pyk8s.kubelet.images import ImagePullError, ImageStore, RegistryClient
from pyk8s.kubelet.images.manifests import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from tests.images import build_busybox_image, layout_config_digest, layout_manifest_digest
from tests.kubelet.images.fakeregistry import FakeRegistry
from tests.registry import registry  # noqa: F401  (the session's local registry)


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def pull_secret(server: str, user: str, password: str) -> dict[str, Any]:
    cfg = {"auths": {server: {"username": user, "password": password,
                              "auth": b64(f"{user}:{password}")}}}
    return {"type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": b64(json.dumps(cfg))}}


@pytest.fixture
async def client(tmp_path: Path, registry: Any) -> AsyncIterator[RegistryClient]:  # noqa: F811
    c = RegistryClient(ImageStore(tmp_path / "store"), insecure_registries={registry.host})
    yield c
    await c.close()


@pytest.fixture
async def fake_client(tmp_path: Path) -> AsyncIterator[RegistryClient]:
    """A client for FakeRegistry instances (any 127.0.0.1 port is insecure: plain HTTP)."""
    c = RegistryClient(ImageStore(tmp_path / "fstore"))
    c.is_insecure = lambda ref: ref.domain.startswith("127.0.0.1:")  # type: ignore[method-assign]
    yield c
    await c.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the real registry -------------------------------------------------------------------
async def test_pull_oci_manifest(client: RegistryClient, registry: Any) -> None:  # noqa: F811
    rec = await client.pull(registry.image("busybox"))
    layout = registry.busybox_layout
    mdigest = layout_manifest_digest(layout)
    assert rec.id == layout_config_digest(layout)
    assert rec.manifest_digest == mdigest
    assert rec.repo_tags == [registry.image("busybox")]
    assert rec.repo_digests == [f"{registry.host}/busybox@{mdigest}"]
    assert rec.config["Cmd"] == ["sh"]
    assert orjson.loads(client.store.read_blob(mdigest))["mediaType"] == OCI_MANIFEST
    [layer] = client.store.layer_dirs(rec)
    assert (layer / "bin" / "busybox").is_file()
    assert os.readlink(layer / "bin" / "wget") == "busybox"
    assert client.store.get(registry.image("busybox")).id == rec.id  # type: ignore[union-attr]
    assert os.listdir(client.store.tmp_dir) == []


async def test_pull_docker_v2s2(client: RegistryClient, registry: Any) -> None:  # noqa: F811
    ref = registry.push(registry.busybox_layout, "busybox-v2s2", "v1", src_tag="latest",
                        format="v2s2")
    rec = await client.pull(ref)
    manifest = orjson.loads(client.store.read_blob(rec.manifest_digest))
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert rec.repo_tags == [ref]
    assert rec.config["Env"][0].startswith("PATH=")
    assert (client.store.layer_dirs(rec)[0] / "bin" / "busybox").is_file()


async def test_pull_through_index(client: RegistryClient, registry: Any,  # noqa: F811
                                  tmp_path: Path) -> None:
    amd = registry.busybox_layout
    arm = build_busybox_image(tmp_path / "arm", architecture="arm64")
    registry.push(amd, "multi", "amd64", src_tag="latest")
    registry.push(arm, "multi", "arm64", src_tag="latest")

    def desc(layout: Path, arch: str) -> dict[str, Any]:
        d = layout_manifest_digest(layout)
        size = (layout / "blobs" / "sha256" / d.split(":")[1]).stat().st_size
        return {"mediaType": OCI_MANIFEST, "digest": d, "size": size,
                "platform": {"architecture": arch, "os": "linux"}}
    arm_desc = desc(arm, "arm64")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [arm_desc, {**arm_desc, "platform": {
                 "architecture": "amd64", "os": "linux", "variant": "v3"}}, desc(amd, "amd64")]}
    idigest = registry.put_manifest("multi", "latest", index, OCI_INDEX)
    rec = await client.pull(registry.image("multi"))
    assert rec.architecture == "amd64"            # the variant-less amd64 entry
    assert rec.id == layout_config_digest(amd)
    assert rec.manifest_digest == idigest
    assert rec.repo_digests == [f"{registry.host}/multi@{idigest}"]
    assert rec.manifests == [idigest, layout_manifest_digest(amd)]

    # by digest, for another platform
    other = RegistryClient(client.store, insecure_registries={registry.host},
                           platform=("linux", "arm64", ""))
    try:
        rec2 = await other.pull(f"{registry.host}/multi@{idigest}")
    finally:
        await other.close()
    assert rec2.architecture == "arm64" and rec2.id == layout_config_digest(arm)
    assert rec2.repo_tags == []

    # a Docker manifest list without this platform
    listed = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {**arm_desc, "mediaType": OCI_MANIFEST}]}
    registry.put_manifest("multi", "armonly", listed, DOCKER_LIST)
    armonly = registry.image("multi", "armonly")
    with pytest.raises(ImagePullError) as ei:
        await client.pull(armonly)
    assert str(ei.value) == (f'failed to pull and unpack image "{armonly}": no match for '
                             f'platform in manifest: not found')


async def test_not_found_message(client: RegistryClient, registry: Any) -> None:  # noqa: F811
    ref = registry.image("nope")
    with pytest.raises(ImagePullError) as ei:
        await client.pull(f"{registry.host}/nope")
    assert str(ei.value) == (f'failed to pull and unpack image "{ref}": failed to resolve '
                             f'reference "{ref}": {ref}: not found')
    assert ei.value.reason == "ErrImagePull"


async def test_connection_refused_message(tmp_path: Path) -> None:
    host = f"127.0.0.1:{_free_port()}"
    c = RegistryClient(ImageStore(tmp_path / "s"), insecure_registries={host})
    try:
        with pytest.raises(ImagePullError) as ei:
            await c.pull(f"{host}/x")
    finally:
        await c.close()
    assert str(ei.value) == (
        f'failed to pull and unpack image "{host}/x:latest": failed to resolve reference '
        f'"{host}/x:latest": failed to do request: Get "http://{host}/v2/x/manifests/latest"'
        f': dial tcp {host}: connect: connection refused')


async def test_second_pull_reuses_layers(client: RegistryClient,
                                         registry: Any) -> None:  # noqa: F811
    rec = await client.pull(registry.image("busybox"))
    layer = client.store.layer_dirs(rec)[0]
    ino = layer.stat().st_ino
    blob_mtime = client.store.blob_path(rec.layers[0]).stat().st_mtime_ns
    again = await client.pull(registry.image("busybox"))
    assert again.id == rec.id
    assert layer.stat().st_ino == ino
    assert client.store.blob_path(rec.layers[0]).stat().st_mtime_ns == blob_mtime


# -- the fake registry -------------------------------------------------------------------
async def test_skips_known_blobs(fake_client: RegistryClient, busybox_layout: Path) -> None:
    async with FakeRegistry(busybox_layout) as fake:
        await fake_client.pull(fake.image("busybox"))
        assert fake.counts["blob"] == 2                 # config + one layer
        await fake_client.pull(fake.image("other-name"))
        assert fake.counts["blob"] == 2 and fake.counts["manifest"] == 2


async def test_corrupt_layer_is_discarded(fake_client: RegistryClient,
                                          busybox_layout: Path) -> None:
    manifest = orjson.loads((busybox_layout / "blobs" / "sha256" / layout_manifest_digest(
        busybox_layout).split(":")[1]).read_bytes())
    layer = manifest["layers"][0]["digest"]
    async with FakeRegistry(busybox_layout, corrupt_blobs={layer}) as fake:
        with pytest.raises(ImagePullError) as ei:
            await fake_client.pull(fake.image())
    msg = str(ei.value)
    assert msg.startswith(f'failed to pull and unpack image "{fake.image()}": failed to copy: '
                          f'unexpected commit digest sha256:')
    assert msg.endswith(f", expected {layer}: failed precondition")
    store = fake_client.store
    assert not store.has_blob(layer) and not store.has_layer(layer)
    assert os.listdir(store.tmp_dir) == [] and store.list() == []


async def test_lying_manifest_digest(fake_client: RegistryClient,
                                     busybox_layout: Path) -> None:
    async with FakeRegistry(busybox_layout, lie_manifest_digest=True) as fake:
        with pytest.raises(ImagePullError) as ei:
            await fake_client.pull(fake.image())
    assert "failed to copy: unexpected commit digest" in str(ei.value)
    assert fake_client.store.list() == []


async def test_bearer_anonymous_token_cached(fake_client: RegistryClient,
                                             busybox_layout: Path) -> None:
    async with FakeRegistry(busybox_layout, auth="bearer") as fake:
        rec = await fake_client.pull(fake.image())
        assert fake.counts["token"] == 1
        await fake_client.pull(fake.image())          # the cached token again
        assert fake.counts["token"] == 1
    assert rec.repo_tags == [fake.image()]


async def test_bearer_private_with_secret(fake_client: RegistryClient,
                                          busybox_layout: Path) -> None:
    async with FakeRegistry(busybox_layout, auth="bearer", private=True,
                            users={"alice": "s3cret"}) as fake:
        host, ref = fake.host, fake.image("team/app")
        with pytest.raises(ImagePullError) as ei:
            await fake_client.pull(ref)
        assert str(ei.value) == (
            f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": '
            f'pull access denied, repository does not exist or may require authorization: '
            f'server message: insufficient_scope: authorization failed')
        with pytest.raises(ImagePullError) as ei:
            await fake_client.pull(ref, [pull_secret(host, "alice", "wrong")])
        assert "failed to authorize: failed to fetch oauth token: unexpected status from " \
               f"GET request to http://{host}/token?" in str(ei.value)
        assert str(ei.value).endswith(": 401 Unauthorized")
        # the first matching secret fails, the second works (each is tried, as upstream)
        rec = await fake_client.pull(ref, [pull_secret(host, "alice", "wrong"),
                                           pull_secret(f"http://{host}", "alice", "s3cret")])
        assert rec.repo_tags == [ref]
        # secrets for another registry do not match: anonymous again
        with pytest.raises(ImagePullError):
            await fake_client.pull(fake.image("team/other"),
                                   [pull_secret("registry.example.com", "alice", "s3cret")])


async def test_basic_auth(fake_client: RegistryClient, busybox_layout: Path) -> None:
    async with FakeRegistry(busybox_layout, auth="basic", users={"bob": "pw"}) as fake:
        ref = fake.image()
        with pytest.raises(ImagePullError) as ei:
            await fake_client.pull(ref)
        assert str(ei.value) == (
            f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": '
            f'unexpected status from GET request to http://{fake.host}/v2/busybox/manifests/'
            f'latest: 401 Unauthorized')
        assert ei.value.auth
        rec = await fake_client.pull(ref, [pull_secret(fake.host, "bob", "pw")])
        assert (fake_client.store.layer_dirs(rec)[0] / "bin" / "busybox").is_file()


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem"), "-subj", "/CN=127.0.0.1", "-days", "1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    return ctx


async def test_insecure_registry_over_tls(tmp_path: Path, busybox_layout: Path,
                                          tls_context: ssl.SSLContext) -> None:
    async with FakeRegistry(busybox_layout, auth="bearer", ssl_context=tls_context) as fake:
        store = ImageStore(tmp_path / "s")
        secure = RegistryClient(store)
        try:
            with pytest.raises(ImagePullError) as ei:
                await secure.pull(fake.image())
        finally:
            await secure.close()
        assert (f'failed to do request: Get "https://{fake.host}/v2/busybox/manifests/latest"'
                f': tls: failed to verify certificate: x509: ') in str(ei.value)
        # listed as insecure: HTTPS without verification (not plain HTTP), token realm too
        insecure = RegistryClient(store, insecure_registries={f"https://{fake.host}/"})
        try:
            rec = await insecure.pull(fake.image())
        finally:
            await insecure.close()
        assert insecure._schemes[fake.host] == "https"
        assert fake.counts["token"] == 1 and rec.repo_tags == [fake.image()]


async def test_content_removed_during_pull_is_fetched_again(
        fake_client: RegistryClient, busybox_layout: Path) -> None:
    store = fake_client.store
    real_add = store.add_image
    calls = []

    def add_image(**kw: Any) -> Any:
        if not calls:           # GC / `image rm` removes the layer just before the record
            shutil.rmtree(store.layer_dir(kw["layers"][0]))
            os.unlink(store.blob_path(kw["layers"][0]))
        calls.append(kw)
        return real_add(**kw)
    store.add_image = add_image  # type: ignore[method-assign]
    async with FakeRegistry(busybox_layout) as fake:
        rec = await fake_client.pull(fake.image())
        assert len(calls) == 2 and fake.counts["manifest"] == 2
    assert store.has_layer(rec.layers[0]) and store.has_blob(rec.layers[0])
