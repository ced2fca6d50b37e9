"""The service account controller: a `default` ServiceAccount in every active namespace,
re-created when deleted (upstream's `pkg/controller/serviceaccount`)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from pyk8s.client.informer import SharedInformerFactory, handler_funcs
from pyk8s.client.rest import AlreadyExists, ApiError
from pyk8s.client.workqueue import WorkQueue, run_workers

log = logging.getLogger("pyk8s.controllers.serviceaccount")

Obj = dict[str, Any]

DEFAULT_SERVICE_ACCOUNTS = ("default",)


class ServiceAccountsController:
    def __init__(self, client: Any, factory: SharedInformerFactory, *,
                 service_accounts: tuple[str, ...] = DEFAULT_SERVICE_ACCOUNTS,
                 workers: int = 1) -> None:
        self.client = client
        self.service_accounts = service_accounts
        self.workers = workers
        self.queue: WorkQueue[str] = WorkQueue("serviceaccount")
        self.ns_informer = factory.namespaces()
        self.sa_informer = factory.service_accounts()
        self._ns_handler = handler_funcs(on_add=self._namespace_changed,
                                         on_update=lambda old, new: self._namespace_changed(new))
        self._sa_handler = handler_funcs(on_delete=self._service_account_deleted)
        self.ns_informer.add_event_handler(self._ns_handler)
        self.sa_informer.add_event_handler(self._sa_handler)

    def _namespace_changed(self, ns: Obj) -> None:
        self.queue.add(str((ns.get("metadata") or {}).get("name")))

    def _service_account_deleted(self, sa: Obj) -> None:
        md = sa.get("metadata") or {}
        if md.get("name") in self.service_accounts and md.get("namespace"):
            self.queue.add(str(md["namespace"]))

    async def run(self) -> None:
        try:
            await asyncio.gather(self.ns_informer.synced.wait(), self.sa_informer.synced.wait())
            log.info("serviceaccount controller: synced")
            await run_workers(self.queue, self.sync, self.workers, name="serviceaccount")
        finally:
            self.queue.shutdown()
            self.ns_informer.remove_event_handler(self._ns_handler)
            self.sa_informer.remove_event_handler(self._sa_handler)

    async def sync(self, namespace: str) -> None:
        ns = self.ns_informer.store.get(namespace)
        if ns is None:
            return
        if (ns.get("status") or {}).get("phase") != "Active" or \
                (ns.get("metadata") or {}).get("deletionTimestamp"):
            return  # never create in a terminating namespace
        for name in self.service_accounts:
            if self.sa_informer.store.get(f"{namespace}/{name}") is not None:
                continue
            try:
                await self.client.create(f"/api/v1/namespaces/{namespace}/serviceaccounts",
                                         {"apiVersion": "v1", "kind": "ServiceAccount",
                                          "metadata": {"name": name}})
                log.debug("created service account %s/%s", namespace, name)
            except AlreadyExists:
                pass
            except ApiError as e:
                if e.has_cause("NamespaceTerminating"):
                    continue
                raise


__all__ = ["ServiceAccountsController"]
