"""An in-process API server on memory storage, for the admission and eviction tests."""
from __future__ import annotations

from typing import AsyncIterator

import pytest

from pyk8s.apiserver.app import APIServer, ServerConfig
from pyk8s.storage.memory import MemoryStorage


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    s = APIServer(MemoryStorage(), ServerConfig(compaction_interval=0))
    await s.start()
    try:
        yield s
    finally:
        await s.stop()
