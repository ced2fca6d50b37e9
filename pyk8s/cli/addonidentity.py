"""The identities of what runs beside a kubelet: the service proxy is `system:kube-proxy`
(upstream's kube-proxy user, bound to `system:node-proxier`), the cluster DNS server is the
`kube-system/kube-dns` service account's user (bound to `system:kube-dns` and pyk8s's
`pyk8s:cluster-dns` roles) — never the node's own identity, as upstream and k3s.

The node asks for each one's client certificate through a CertificateSigningRequest for
`kubernetes.io/kube-apiserver-client`, which pyk8s's csrapproving approves for nodes and
these two subjects only; the certificate is kept in the node's pki dir
(`<prefix>-current.pem`), reused across restarts and rotated before it expires.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from pyk8s.client.rest import RESTClient
from pyk8s.kubelet.certificates import CertificateStore, KeyPair, Subject, client_usages
from pyk8s.kubelet.certmanager import CertificateManager

log = logging.getLogger("pyk8s.cli.addonidentity")

API_SERVER_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
PROXY = Subject("system:kube-proxy", ())
DNS = Subject("system:serviceaccount:kube-system:kube-dns",
              ("system:serviceaccounts", "system:serviceaccounts:kube-system"))


@dataclass
class AddonIdentity:
    """One add-on's REST client and the manager keeping its certificate current."""
    client: RESTClient
    manager: CertificateManager | None

    async def run(self, stop: asyncio.Event) -> None:
        if self.manager is not None:
            await self.manager.run(stop)

    async def close(self) -> None:
        await self.client.close()


async def addon_identity(node_client: RESTClient, pki_dir: Path | None, prefix: str,
                         subject: Subject, *, user_agent: str) -> AddonIdentity:
    """The add-on's client, once its certificate is there (requested by the node now if
    the store has none that fits; this waits for its approval and issue). A node without
    a client certificate (plain HTTP tests, a kubeconfig with a token) shares its
    credentials: there is nothing to ask with."""
    config = node_client.config
    if pki_dir is None or not (config.client_cert_data and config.client_key_data):
        log.warning("%s runs with the node's credentials (the node has no client "
                    "certificate to ask for its own)", subject.common_name)
        return AddonIdentity(RESTClient(dataclasses.replace(config), user_agent=user_agent),
                             None)
    store = CertificateStore(pki_dir, prefix)
    holder: list[RESTClient] = []

    def on_update(pair: KeyPair) -> None:
        if holder:
            holder[0].set_client_certificate(pair.cert_pem, pair.key_pem)

    manager = CertificateManager(kind=prefix, store=store, signer=API_SERVER_CLIENT_SIGNER,
                                 subject=lambda: subject, usages=client_usages,
                                 client=lambda: node_client, on_update=on_update,
                                 current=store.current(), ca_pem=config.ca_data)
    pair = manager.current
    if not manager.fits(pair):
        log.info("requesting the client certificate of %s", subject.common_name)
        delay = 1.0
        while True:
            try:
                pair = await manager.rotate()
                break
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("requesting the client certificate of %s: %s; retrying",
                            subject.common_name, e or type(e).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
    assert pair is not None
    client = RESTClient(dataclasses.replace(config, token=None, client_cert_data=pair.cert_pem,
                                            client_key_data=pair.key_pem),
                        user_agent=user_agent)
    holder.append(client)
    return AddonIdentity(client, manager)
