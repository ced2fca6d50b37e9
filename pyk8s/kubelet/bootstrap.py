"""Kubelet TLS bootstrapping (upstream's pkg/kubelet/certificate/bootstrap): a node's
client identity is a certificate for `system:node:<name>` (O `system:nodes`) in
`DATA_DIR/pki/kubelet-client-current.pem` with `DATA_DIR/kubelet.kubeconfig` pointing at
it. When there is no valid one, the bootstrap credentials (the node token, or a
`--bootstrap-kubeconfig`) create a CertificateSigningRequest for signer
`kubernetes.io/kube-apiserver-client-kubelet`, the cluster's approver and signer issue
it, and the kubelet runs with it; `NodeIdentity` then keeps it rotated and the REST
client presenting the current one."""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pyk8s.client.rest import ClientConfig, RESTClient
from pyk8s.kubelet.certificates import (CLIENT_SIGNER, CertificateStore, KeyPair, Subject,
                                        client_usages, digested_name, key_pem, load_key_pair,
                                        node_user, utcnow, write_private)
from pyk8s.kubelet.certmanager import (CERTIFICATE_WAIT_TIMEOUT, CertificateManager,
                                       CertificateRequestFailed, CSRWatcher,
                                       request_certificate)

log = logging.getLogger("pyk8s.kubelet.bootstrap")

CLIENT_PREFIX = "kubelet-client"


class BootstrapError(Exception):
    """Bootstrapping cannot succeed (no credentials, the CSR was denied or failed)."""


@dataclass
class NodeCredentials:
    """Where a node's client identity comes from and goes to."""
    kubeconfig: Path                  # the node's kubeconfig (default DATA_DIR/kubelet.kubeconfig)
    pki_dir: Path                     # DATA_DIR/pki
    bootstrap: ClientConfig | None    # bootstrap token credentials (None: none given)
    rotate: bool = True               # --rotate-certificates
    write_kubeconfig: bool = True     # hollow nodes keep their certificate only

    @property
    def store(self) -> CertificateStore:
        return CertificateStore(self.pki_dir, CLIENT_PREFIX)


def write_node_kubeconfig(path: Path, server: str, ca_data: bytes | None, insecure: bool,
                          pem_path: Path) -> None:
    """The node's kubeconfig (upstream's writeKubeconfigFromBootstrapping): the bootstrap
    config's cluster, the client certificate and key from one PEM file; mode 0600."""
    cluster: dict[str, Any] = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = base64.b64encode(ca_data).decode()
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    cfg = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": "default-cluster", "cluster": cluster}],
           "users": [{"name": "default-auth",
                      "user": {"client-certificate": str(pem_path),
                               "client-key": str(pem_path)}}],
           "contexts": [{"name": "default-context",
                         "context": {"cluster": "default-cluster", "user": "default-auth",
                                     "namespace": "default"}}],
           "current-context": "default-context", "preferences": {}}
    write_private(path, yaml.safe_dump(cfg, sort_keys=False).encode())


def kubeconfig_pair(path: Path) -> tuple[ClientConfig, KeyPair | None] | None:
    """The kubeconfig's client config and its client certificate (None: it has none, e.g.
    a token), or None when the file is missing or unreadable."""
    if not path.exists():
        return None
    try:
        config = ClientConfig.from_kubeconfig(path)
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        log.warning("unable to read the kubeconfig %s: %s", path, e)
        return None
    if not (config.client_cert_data and config.client_key_data):
        return config, None
    try:
        pair = load_key_pair(config.client_cert_data, config.client_key_data)
    except ValueError as e:
        log.warning("the client certificate of %s is unusable: %s", path, e)
        return None
    # One PEM file holds both: each field gets its own part.
    return dataclasses.replace(config, client_cert_data=pair.cert_pem,
                               client_key_data=pair.key_pem), pair


def usable(pair: KeyPair | None, node_name: str, ca_data: bytes | None) -> bool:
    """Whether `pair` is a current client certificate of this node from this cluster."""
    return (pair is not None and not pair.expired() and
            pair.common_name == node_user(node_name) and pair.issued_by(ca_data))


async def bootstrap_certificate(client: RESTClient, store: CertificateStore,
                                node_name: str, watcher: CSRWatcher | None = None,
                                timeout: float = CERTIFICATE_WAIT_TIMEOUT) -> KeyPair:
    """Request the node's client certificate with the bootstrap credentials: the CSR
    `node-csr-<hash>` of a key kept in the store until it is issued (a restart asks the
    same CSR again). Retries transient failures and time-outs (until cancelled); raises
    BootstrapError when the request is Denied or Failed."""
    key = store.pending_key()
    subject = Subject.node(node_name)
    usages = client_usages(key)
    name = digested_name(key.public_key(), subject, usages)
    delay = 1.0
    while True:
        try:
            cert = await request_certificate(client, key, subject, CLIENT_SIGNER, usages,
                                             name=name, watcher=watcher, timeout=timeout)
            pair = store.update(cert, key_pem(key))
            log.info("node %s: client certificate issued (%s, valid until %s)", node_name,
                     pair.common_name, pair.not_after.isoformat())
            return pair
        except CertificateRequestFailed as e:
            raise BootstrapError(f"node {node_name}: the client certificate request failed: "
                                 f"{e}") from None
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("node %s: requesting a client certificate: %s; retrying", node_name,
                        e or type(e).__name__)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


class NodeIdentity:
    """A node's REST client, authenticated with its client certificate, bootstrapped when
    needed and rotated (`run`) while the node runs."""

    def __init__(self, creds: NodeCredentials, node_name: str, *, user_agent: str,
                 client_kw: dict[str, Any] | None = None,
                 bootstrap_client: RESTClient | None = None,
                 watcher: CSRWatcher | None = None) -> None:
        self.creds = creds
        self.node_name = node_name
        self.user_agent = user_agent
        self.client_kw = dict(client_kw or {})
        self._bootstrap_client = bootstrap_client      # shared by hollow nodes
        self._own_bootstrap_client: RESTClient | None = None
        self.watcher = watcher
        self.client: RESTClient | None = None
        self.manager: CertificateManager | None = None
        self.bootstrapped = False     # whether start() had to request a certificate

    def bootstrap_client(self) -> RESTClient | None:
        if self._bootstrap_client is None and self.creds.bootstrap is not None:
            self._own_bootstrap_client = self._bootstrap_client = RESTClient(
                self.creds.bootstrap, user_agent=self.user_agent + " (bootstrap)")
        return self._bootstrap_client

    def _current(self) -> tuple[ClientConfig, KeyPair | None] | None:
        """The client config to use as it is, if the node has one."""
        if self.creds.write_kubeconfig:
            found = kubeconfig_pair(self.creds.kubeconfig)
        else:
            pair = self.creds.store.current()
            boot = self.creds.bootstrap
            found = (ClientConfig(server=boot.server, ca_data=boot.ca_data,
                                  insecure_skip_tls_verify=boot.insecure_skip_tls_verify,
                                  client_cert_data=pair.cert_pem, client_key_data=pair.key_pem),
                     pair) if pair is not None and boot is not None else None
        if found is None:
            return None
        config, pair = found
        if pair is None:   # a kubeconfig with other credentials: used as it is
            return found if self.creds.bootstrap is None else None
        if usable(pair, self.node_name, config.ca_data):
            return found
        log.info("node %s: the client certificate in %s is expired or not this node's",
                 self.node_name, self.creds.kubeconfig)
        return None

    async def start(self) -> RESTClient:
        """The node's client: from a valid certificate of an earlier run, else bootstrap
        (which waits until the certificate is issued: cancel it to give up)."""
        found = self._current()
        boot = self.creds.bootstrap
        if found is None and boot is not None and boot.server.startswith("http://"):
            # Plain HTTP (an --insecure-http server): no TLS, so no certificates at all.
            log.warning("node %s: plain HTTP to %s, no client certificate", self.node_name,
                        boot.server)
            found = (boot, None)
        if found is None:
            if boot is None:
                raise BootstrapError(
                    f"node {self.node_name}: no valid client certificate in "
                    f"{self.creds.kubeconfig} and no bootstrap credentials (--token, "
                    f"--token-file or --bootstrap-kubeconfig)")
            client = self.bootstrap_client()
            assert client is not None
            log.info("node %s: requesting a client certificate (bootstrap)", self.node_name)
            pair = await bootstrap_certificate(client, self.creds.store, self.node_name,
                                               watcher=self.watcher)
            self.bootstrapped = True
            if self.creds.write_kubeconfig:
                write_node_kubeconfig(self.creds.kubeconfig, boot.server, boot.ca_data,
                                      boot.insecure_skip_tls_verify,
                                      self.creds.store.current_path)
            config = ClientConfig(server=boot.server, ca_data=boot.ca_data,
                                  insecure_skip_tls_verify=boot.insecure_skip_tls_verify,
                                  client_cert_data=pair.cert_pem, client_key_data=pair.key_pem)
            found = (config, pair)
        config, pair = found
        self.client = RESTClient(config, user_agent=self.user_agent, **self.client_kw)
        if pair is not None and self.creds.rotate:
            self.manager = CertificateManager(
                kind="client", store=self.creds.store, signer=CLIENT_SIGNER,
                subject=lambda: Subject.node(self.node_name), usages=client_usages,
                client=lambda: self._client(), on_update=self._rotated, current=pair,
                ca_pem=config.ca_data, fallback_client=self.bootstrap_client,
                received=utcnow() if self.bootstrapped else None)
        return self.client

    def _client(self) -> RESTClient:
        assert self.client is not None
        return self.client

    def _rotated(self, pair: KeyPair) -> None:
        assert self.client is not None
        if self.creds.write_kubeconfig:
            c = self.client.config
            write_node_kubeconfig(self.creds.kubeconfig, c.server, c.ca_data,
                                  c.insecure_skip_tls_verify, self.creds.store.current_path)
        self.client.set_client_certificate(pair.cert_pem, pair.key_pem)

    async def run(self, stop: asyncio.Event) -> None:
        """Rotate the client certificate until `stop`."""
        if self.manager is not None:
            await self.manager.run(stop)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self._own_bootstrap_client is not None:
            await self._own_bootstrap_client.close()
