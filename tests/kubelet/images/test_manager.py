"""imagePullPolicy semantics and shared pulls (ImageManager)."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest

from pyk8s.kubelet.images import (ImageManager, ImageNeverPullError, ImagePullError,
                                  ImageStore, InvalidImageName, RegistryClient)
from tests.kubelet.images.fakeregistry import FakeRegistry


@pytest.fixture
async def fake(busybox_layout: Path) -> AsyncIterator[FakeRegistry]:
    async with FakeRegistry(busybox_layout, aliases={"v1": "latest"}) as f:
        yield f


@pytest.fixture
async def manager(tmp_path: Path, fake: FakeRegistry) -> AsyncIterator[ImageManager]:
    store = ImageStore(tmp_path / "store")
    m = ImageManager(store, RegistryClient(store, insecure_registries={fake.host}))
    yield m
    await m.close()


async def test_never(manager: ImageManager, fake: FakeRegistry) -> None:
    with pytest.raises(ImageNeverPullError) as ei:
        await manager.ensure(fake.image(), "Never", [])
    assert str(ei.value) == (f'Container image "{fake.image()}" is not present with pull '
                             f'policy of Never')
    assert ei.value.reason == "ErrImageNeverPull"
    assert fake.counts["manifest"] == 0
    await manager.ensure(fake.image(), "IfNotPresent", [])
    rec, pulled, seconds, size = await manager.ensure(fake.image(), "Never", [])
    assert (pulled, seconds) == (False, 0.0) and size == rec.size > 0
    assert fake.counts["manifest"] == 1


async def test_if_not_present_and_always(manager: ImageManager, fake: FakeRegistry) -> None:
    image = fake.image("app", "v1")
    rec, pulled, seconds, size = await manager.ensure(image, "IfNotPresent", [])
    assert pulled and seconds > 0 and size == rec.size
    assert manager.present(image) and manager.present(f"{fake.host}/app:v1")
    assert not manager.present("Not/A:Valid:Ref")
    blobs = fake.counts["blob"]
    again = await manager.ensure(image, "IfNotPresent", [])
    assert again[1] is False and fake.counts["manifest"] == 1
    # Always: asks the registry again, fetches no known blob
    rec2, pulled2, _, _ = await manager.ensure(image, "Always", [])
    assert pulled2 and rec2.id == rec.id
    assert fake.counts["manifest"] == 2 and fake.counts["blob"] == blobs
    # the default policy: `latest` → Always; a tag → IfNotPresent
    await manager.ensure(fake.image("app", "latest"), "", [])
    await manager.ensure(fake.image("app", "latest"), "", [])
    assert fake.counts["manifest"] == 4
    await manager.ensure(image, "", [])
    assert fake.counts["manifest"] == 4


async def test_concurrent_ensures_share_one_pull(manager: ImageManager,
                                                 fake: FakeRegistry) -> None:
    results = await asyncio.gather(*[manager.ensure(fake.image(), "Always", [])
                                     for _ in range(5)])
    assert fake.counts["manifest"] == 1 and fake.counts["blob"] == 2
    assert len({r[0].id for r in results}) == 1 and all(r[1] for r in results)


async def test_errors_carry_reasons(manager: ImageManager, fake: FakeRegistry) -> None:
    with pytest.raises(InvalidImageName) as ei:
        await manager.ensure("UPPER:case", "IfNotPresent", [])
    assert ei.value.reason == "InvalidImageName"
    assert str(ei.value).startswith('couldn\'t parse image name "UPPER:case": ')
    with pytest.raises(ImagePullError) as ei2:
        await manager.ensure(fake.image("x", "missing-tag"), "IfNotPresent", [])
    assert ei2.value.reason == "ErrImagePull"
    assert str(ei2.value).endswith(f"{fake.image('x', 'missing-tag')}: not found")


async def test_cancelled_waiter_does_not_cancel_the_pull(tmp_path: Path,
                                                         busybox_layout: Path) -> None:
    async with FakeRegistry(busybox_layout) as fake:
        store = ImageStore(tmp_path / "s")
        m = ImageManager(store, RegistryClient(store, insecure_registries={fake.host}))
        try:
            first = asyncio.create_task(m.ensure(fake.image(), "Always", []))
            second = asyncio.create_task(m.ensure(fake.image(), "Always", []))
            await asyncio.sleep(0)
            first.cancel()
            rec, pulled, _, _ = await second
            assert pulled and store.get(fake.image()) is not None
        finally:
            await m.close()
