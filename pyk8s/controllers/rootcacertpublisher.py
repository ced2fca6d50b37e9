"""The root CA certificate publisher: a ConfigMap `kube-root-ca.crt` in every namespace
whose `ca.crt` is the CA bundle that verifies the API server (upstream's
`pkg/controller/certificates/rootcacertpublisher`). Pods read it through projected
service account volumes to trust `kubernetes.default.svc`; the controller re-creates the
ConfigMap when deleted and restores its data and description when edited."""
from __future__ import annotations

import asyncio
import copy
import logging
from pathlib import Path
from typing import Any

from cryptography import x509

from pyk8s.client.informer import SharedInformerFactory, handler_funcs
from pyk8s.client.rest import ApiError, NotFound
from pyk8s.client.workqueue import WorkQueue, run_workers

log = logging.getLogger("pyk8s.controllers.rootcacertpublisher")

Obj = dict[str, Any]

ROOT_CA_CERT_CONFIG_MAP_NAME = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using "
               "internal endpoints such as the internal service IP or kubernetes.default.svc. "
               "No other usage is guaranteed across distributions of Kubernetes clusters.")


def read_root_ca(path: str) -> bytes:
    """The PEM bundle of `--root-ca-file`, which must hold at least one certificate
    (upstream's readCA); ValueError with upstream's message otherwise."""
    try:
        data = Path(path).read_bytes()
        x509.load_pem_x509_certificates(data)   # ValueError without a certificate
    except (OSError, ValueError) as e:
        raise ValueError(f"error parsing root-ca-file at {path}: {e}") from e
    return data


class RootCACertPublisher:
    """Keeps `kube-root-ca.crt` (data `{"ca.crt": root_ca}`, the description annotation)
    in every namespace. Keys of the queue are namespace names."""

    def __init__(self, client: Any, factory: SharedInformerFactory, root_ca: bytes, *,
                 workers: int = 1) -> None:
        self.client = client
        self.root_ca = root_ca.decode()
        self.workers = workers
        self.queue: WorkQueue[str] = WorkQueue("root_ca_cert_publisher")
        self.ns_informer = factory.namespaces()
        # Only the published ConfigMaps: upstream watches all, a name selector keeps the
        # cache small (the handlers look at no other).
        self.cm_informer = factory.config_maps(
            field_selector=f"metadata.name={ROOT_CA_CERT_CONFIG_MAP_NAME}")
        self._ns_handler = handler_funcs(on_add=self._namespace_added,
                                         on_update=self._namespace_updated)
        self._cm_handler = handler_funcs(on_update=lambda old, new: self._config_map_changed(new),
                                         on_delete=self._config_map_changed)
        self.ns_informer.add_event_handler(self._ns_handler)
        self.cm_informer.add_event_handler(self._cm_handler)

    def _namespace_added(self, ns: Obj) -> None:
        self.queue.add(str((ns.get("metadata") or {}).get("name")))

    def _namespace_updated(self, old: Obj, new: Obj) -> None:
        """Only active namespaces: a terminating one gets no new ConfigMap."""
        if (new.get("status") or {}).get("phase") == "Active":
            self._namespace_added(new)

    def _config_map_changed(self, cm: Obj) -> None:
        md = cm.get("metadata") or {}
        if md.get("name") == ROOT_CA_CERT_CONFIG_MAP_NAME and md.get("namespace"):
            self.queue.add(str(md["namespace"]))

    async def run(self) -> None:
        log.info("Starting root CA cert publisher controller")
        try:
            await asyncio.gather(self.ns_informer.synced.wait(), self.cm_informer.synced.wait())
            await run_workers(self.queue, self.sync, self.workers, name="root-ca-cert-publisher")
        finally:
            self.queue.shutdown()
            self.ns_informer.remove_event_handler(self._ns_handler)
            self.cm_informer.remove_event_handler(self._cm_handler)
            log.info("Shutting down root CA cert publisher controller")

    async def sync(self, namespace: str) -> None:
        """Create the ConfigMap when the cache has none, else update it when its data or
        its description differ from what is published."""
        path = f"/api/v1/namespaces/{namespace}/configmaps"
        cm = self.cm_informer.store.get(f"{namespace}/{ROOT_CA_CERT_CONFIG_MAP_NAME}")
        data = {"ca.crt": self.root_ca}
        if cm is None:
            try:
                await self.client.create(path, {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CA_CERT_CONFIG_MAP_NAME,
                                 "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                    "data": data})
            except NotFound:
                pass  # the namespace is gone: nothing to retry
            except ApiError as e:
                if not e.has_cause("NamespaceTerminating"):
                    raise
            return
        md = cm.get("metadata") or {}
        if cm.get("data") == data and (md.get("annotations") or {}).get(DESCRIPTION_ANNOTATION):
            return
        cm = copy.deepcopy(cm)   # never modify the cache's object
        cm["data"] = data
        cm["metadata"].setdefault("annotations", {})[DESCRIPTION_ANNOTATION] = DESCRIPTION
        await self.client.update(f"{path}/{ROOT_CA_CERT_CONFIG_MAP_NAME}", cm)


__all__ = ["RootCACertPublisher", "read_root_ca", "ROOT_CA_CERT_CONFIG_MAP_NAME",
           "DESCRIPTION_ANNOTATION", "DESCRIPTION"]
