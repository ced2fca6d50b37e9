"""The controller manager: runs the controllers against an API server, over HTTP only."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from pyk8s.client.rest import RESTClient
from pyk8s.controllers.garbagecollector import GarbageCollector
from pyk8s.controllers.namespace import NamespaceController

log = logging.getLogger("pyk8s.controllers.manager")


async def _supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a controller; if it fails, log and start it again after a backoff."""
    backoff = 1.0
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("controller %s failed; restarting in %.0fs", name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


async def run_controllers(kubeconfig_path: str, stop: asyncio.Event) -> None:
    """Run the garbage collector and the namespace controller until `stop` is set."""
    client = RESTClient.from_kubeconfig(kubeconfig_path, user_agent="pyk8s-controller-manager")
    controllers: dict[str, Callable[[], Awaitable[None]]] = {
        "garbagecollector": lambda: GarbageCollector(client).run(),
        "namespace": lambda: NamespaceController(client).run(),
    }
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(_supervise(n, f), name=f"controller-{n}")
             for n, f in controllers.items()]
    log.info("controller manager: started %s", ", ".join(controllers))
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        log.info("controller manager: stopped")
