"""The kubelet's image manager: upstream's imagePullPolicy over the store and the registry.

- `Always`: resolve the manifest from the registry every time (cheap when the image is
  there: known blobs are not fetched again);
- `IfNotPresent`: the local image when the reference is present, else pull;
- `Never`: the local image, else ImageNeverPullError (reason ErrImageNeverPull, upstream's
  message `Container image "X" is not present with pull policy of Never`).
An empty policy defaults as the API server does: `Always` for a `latest` or missing tag
without digest, else `IfNotPresent`. Concurrent ensure() calls for one image (and the same
credentials) share one pull.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, Iterable

from pyk8s.kubelet.images.credentials import as_credentials, lookup
from pyk8s.kubelet.images.errors import ImageNeverPullError, ImagePullError
from pyk8s.kubelet.images.reference import DEFAULT_TAG, Reference, parse_reference
from pyk8s.kubelet.images.registry import RegistryClient
from pyk8s.kubelet.images.store import ImageRecord, ImageStore

POLICIES = ("Always", "IfNotPresent", "Never")


def default_pull_policy(ref: Reference) -> str:
    """The API server's default: Always for `:latest` (or no tag) without a digest."""
    if ref.digest:
        return "IfNotPresent"
    return "Always" if (ref.tag or DEFAULT_TAG) == DEFAULT_TAG else "IfNotPresent"


class ImageManager:
    def __init__(self, store: ImageStore, registry: RegistryClient) -> None:
        self.store = store
        self.registry = registry
        self._pulls: dict[tuple[str, str], asyncio.Task[ImageRecord]] = {}

    def get(self, image: str) -> ImageRecord | None:
        return self.store.get(image)

    def present(self, image: str) -> bool:
        """Whether `image` (a reference) is in the store; False for invalid references."""
        try:
            ref = parse_reference(image)
        except ValueError:
            return False
        return self.store.get(ref.normalized()) is not None

    async def ensure(self, image: str, policy: str = "",
                     pull_secrets: Iterable[dict[str, Any]] = ()
                     ) -> tuple[ImageRecord, bool, float, int]:
        """The image by `policy`: (record, pulled, pull seconds, image size in bytes).
        Raises InvalidImageName, ImageNeverPullError or ImagePullError (each with its
        `reason`)."""
        ref = parse_reference(image)
        policy = policy or default_pull_policy(ref)
        if policy not in POLICIES:
            raise ImagePullError(f'unknown imagePullPolicy "{policy}" for image "{image}"')
        if policy != "Always":
            rec = self.store.get(ref.normalized())
            if rec is not None:
                return rec, False, 0.0, rec.size
            if policy == "Never":
                raise ImageNeverPullError(image)
        t0 = time.monotonic()
        rec = await self.pull(ref, pull_secrets)
        return rec, True, time.monotonic() - t0, rec.size

    async def pull(self, image: str | Reference,
                   pull_secrets: Iterable[dict[str, Any]] = ()) -> ImageRecord:
        """Pull now (joining a pull of the same image and credentials in progress)."""
        ref = image if isinstance(image, Reference) else parse_reference(image)
        creds = lookup(as_credentials(pull_secrets), ref.name)
        who = hashlib.sha256(repr([(c.server, c.username, c.password, c.registry_token)
                                   for c in creds]).encode()).hexdigest()
        key = (ref.normalized(), who)
        task = self._pulls.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self.registry.pull(ref, creds))
            self._pulls[key] = task
            task.add_done_callback(lambda t, k=key: self._done(k, t))
        return await asyncio.shield(task)

    def _done(self, key: tuple[str, str], task: asyncio.Task[ImageRecord]) -> None:
        if self._pulls.get(key) is task:
            del self._pulls[key]
        if not task.cancelled():
            task.exception()   # retrieved: no "never retrieved" warning when all left

    async def gc(self, in_use: set[str], **kw: Any) -> tuple[list[str], int]:
        """ImageStore.gc in a thread (it deletes layer trees)."""
        return await asyncio.to_thread(self.store.gc, in_use, **kw)

    async def close(self) -> None:
        for t in list(self._pulls.values()):
            t.cancel()
        await self.registry.close()
