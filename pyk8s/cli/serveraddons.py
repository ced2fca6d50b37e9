"""What `pyk8s up` puts into its cluster at start, with the admin's credentials, as k3s's
server applies its bundled manifests: the default StorageClass `local-path`, served by the
persistentvolume-binder's built-in local-path provisioner (the controllers' own roles may
not create StorageClasses, as upstream's)."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from pyk8s.client.rest import ApiError, RESTClient
from pyk8s.controllers.persistentvolume import ensure_default_storage_class

log = logging.getLogger("pyk8s.cli.serveraddons")


async def deploy_server_addons(admin_kubeconfig: Path, stop: asyncio.Event,
                               retry: float = 1.0) -> None:
    """Create what is missing; retried until it succeeds or `stop` is set."""
    async with RESTClient.from_kubeconfig(admin_kubeconfig,
                                          user_agent="pyk8s-up/addons") as client:
        while not stop.is_set():
            try:
                await ensure_default_storage_class(client)
                return
            except (ApiError, OSError, asyncio.TimeoutError) as e:
                log.warning("server addons: %s; retrying", e)
            try:
                await asyncio.wait_for(stop.wait(), retry)
            except asyncio.TimeoutError:
                pass


__all__ = ["deploy_server_addons"]
