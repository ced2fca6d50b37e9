"""What the controller manager hands each controller: its client and its event recorder,
both speaking with the controller's own identity (upstream's ControllerContext).

Upstream builds one event broadcaster per controller, writing through that controller's
client; here one `EventBroadcaster` per distinct client (so with
`--use-service-account-credentials` one per service account, else one for the whole
manager), each with its own queue and writer task.
"""
from __future__ import annotations

import asyncio

from pyk8s.client.events import EventBroadcaster, EventRecorder
from pyk8s.client.rest import RESTClient
from pyk8s.controllers.clientbuilder import ControllerClientBuilder


class ControllerContext:
    def __init__(self, builder: ControllerClientBuilder) -> None:
        self.builder = builder
        self._broadcasters: dict[int, EventBroadcaster] = {}   # id(client) → its broadcaster
        self._started = False

    def client(self, service_account: str) -> RESTClient:
        """The client of the controller whose service account is `service_account`."""
        return self.builder.client(service_account)

    def recorder(self, service_account: str, component: str) -> EventRecorder:
        """An event recorder for `component` writing with `service_account`'s client."""
        client = self.client(service_account)
        b = self._broadcasters.get(id(client))
        if b is None:
            b = self._broadcasters[id(client)] = EventBroadcaster(client)
            if self._started:
                b.start()
        return b.new_recorder(component)

    def start(self) -> None:
        self._started = True
        for b in self._broadcasters.values():
            b.start()

    async def shutdown(self, timeout: float = 1.0) -> None:
        """Write what is queued (for at most `timeout` seconds), stop the broadcasters
        and close the controllers' own clients."""
        await asyncio.gather(*(b.shutdown(timeout=timeout)
                               for b in self._broadcasters.values()))
        self._broadcasters.clear()
        await self.builder.close()


__all__ = ["ControllerContext"]
