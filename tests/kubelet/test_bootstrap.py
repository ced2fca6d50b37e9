"""TLS bootstrapping's decisions: the node kubeconfig (one PEM for certificate and key,
0600), when a stored certificate is used as it is (this node's, this cluster's, not
expired), and a node without one or any bootstrap credentials."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from pyk8s.client.rest import ClientConfig
from pyk8s.kubelet.bootstrap import (BootstrapError, NodeCredentials, NodeIdentity,
                                     bootstrap_certificate, kubeconfig_pair, usable,
                                     write_node_kubeconfig)
from pyk8s.kubelet.certificates import CertificateStore
from tests.kubelet.test_certmanager import CSRAPI


async def _issued(tmp_path: Path, api: CSRAPI, node: str = "n1") -> CertificateStore:
    store = CertificateStore(tmp_path / "pki", "kubelet-client")
    await bootstrap_certificate(api, store, node)  # type: ignore[arg-type]
    return store


async def test_node_kubeconfig_round_trip(tmp_path: Path) -> None:
    api = CSRAPI()
    store = await _issued(tmp_path, api)
    path = tmp_path / "kubelet.kubeconfig"
    write_node_kubeconfig(path, "https://127.0.0.1:6443", api.ca_pem, False, store.current_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = yaml.safe_load(path.read_text())
    assert cfg["current-context"] == "default-context"
    assert cfg["users"][0]["user"] == {"client-certificate": str(store.current_path),
                                       "client-key": str(store.current_path)}
    found = kubeconfig_pair(path)
    assert found is not None
    config, pair = found
    assert config.server == "https://127.0.0.1:6443" and config.ca_data == api.ca_pem
    assert pair is not None and pair.common_name == "system:node:n1"
    assert usable(pair, "n1", api.ca_pem)
    assert not usable(pair, "n2", api.ca_pem)                 # another node's
    assert not usable(pair, "n1", CSRAPI().ca_pem)            # another cluster's
    assert kubeconfig_pair(tmp_path / "missing") is None


async def test_short_lived_certificate_is_not_usable_once_expired(tmp_path: Path) -> None:
    api = CSRAPI(lifetime=-1.0)         # already expired when issued
    store = await _issued(tmp_path, api)
    pair = store.current()
    assert pair is not None and pair.expired()
    assert not usable(pair, "n1", api.ca_pem)


async def test_identity_reuses_a_valid_certificate(tmp_path: Path) -> None:
    api = CSRAPI()
    store = await _issued(tmp_path, api)
    path = tmp_path / "kubelet.kubeconfig"
    write_node_kubeconfig(path, "https://127.0.0.1:1", api.ca_pem, False, store.current_path)
    boot = ClientConfig(server="https://127.0.0.1:1", token="boot", ca_data=api.ca_pem)
    ident = NodeIdentity(NodeCredentials(path, tmp_path / "pki", boot), "n1", user_agent="t")
    client = await ident.start()      # no request: the server at :1 would refuse it
    assert not ident.bootstrapped
    assert client.config.client_cert_data == store.current().cert_pem  # type: ignore[union-attr]
    assert client.config.token is None
    assert ident.manager is not None and ident.manager.current is not None
    await ident.close()


async def test_identity_without_credentials(tmp_path: Path) -> None:
    ident = NodeIdentity(NodeCredentials(tmp_path / "kubelet.kubeconfig", tmp_path / "pki",
                                         None), "n1", user_agent="t")
    with pytest.raises(BootstrapError, match="no bootstrap credentials"):
        await ident.start()


async def test_a_token_kubeconfig_is_used_as_it_is(tmp_path: Path) -> None:
    """--kubeconfig with a token and no bootstrap credentials: no certificate, no
    rotation (upstream: no bootstrapping requested)."""
    path = tmp_path / "kc"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t0k"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x"}))
    ident = NodeIdentity(NodeCredentials(path, tmp_path / "pki", None), "n1", user_agent="t")
    client = await ident.start()
    assert client.config.token == "t0k" and ident.manager is None
    await ident.close()
