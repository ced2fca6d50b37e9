"""An in-process API server on memory storage, for the admission and eviction tests, with
the `default` service accounts the controller manager would create (the ServiceAccount
admission plugin rejects pods whose account does not exist)."""
from __future__ import annotations

from typing import AsyncIterator

import pytest

from pyk8s.apiserver.app import APIServer, ServerConfig
from pyk8s.storage.memory import MemoryStorage


async def create_default_service_accounts(s: APIServer) -> None:
    info = s.catalogue.lookup("", "v1", "serviceaccounts")
    assert info is not None
    for ns in ("default", "kube-system", "kube-public"):
        await s.store(info).create(ns, {"metadata": {"name": "default"}})


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    s = APIServer(MemoryStorage(), ServerConfig(compaction_interval=0))
    await s.start()
    await create_default_service_accounts(s)
    try:
        yield s
    finally:
        await s.stop()
