"""Bootstrap data (pyk8s/apiserver/bootstrapdata.py): the CA, service-account key and tokens
several API servers share, sealed with the cluster token in a real etcd member."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest
from cryptography import x509

from pyk8s.apiserver.bootstrapdata import (KEY, SHARED_FILES, TOKEN_FILE, BootstrapError,
                                           given_token, seal, share_bootstrap_data, unseal)
from pyk8s.apiserver.certs import ensure_credentials
from pyk8s.storage.etcd import EtcdStorage
from tests.conftest import needs
from tests.etcd_cluster import EtcdCluster, etcd_available

pytestmark = needs(not etcd_available(), "needs etcd (apt-get install etcd-server)")


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with EtcdCluster(1) as c:
        yield c


@pytest.fixture
async def storage(etcd: EtcdCluster) -> AsyncIterator[EtcdStorage]:
    s = await EtcdStorage.open(etcd.endpoints, wait=10)
    try:
        await s.delete(KEY)
    except Exception:
        pass
    try:
        yield s
    finally:
        await s.close()


def shared(d: Path) -> dict[str, bytes]:
    return {p: (d / p).read_bytes() for p in SHARED_FILES}


def issuer_ok(d: Path) -> bool:
    ca = x509.load_pem_x509_certificate((d / "tls" / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((d / "tls" / "server.crt").read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:
        return False


def test_sealed_with_the_token_only() -> None:
    files = {p: f"content of {p}".encode() for p in SHARED_FILES}
    value = seal(files, "s3cret")
    assert b"content of" not in value
    assert unseal(value, "s3cret") == files
    with pytest.raises(BootstrapError, match="sealed with another token"):
        unseal(value, "other")
    with pytest.raises(BootstrapError, match="unknown format"):
        unseal(b"{}", "s3cret")
    with pytest.raises(BootstrapError, match="malformed"):
        unseal(b"not json", "s3cret")


async def test_servers_starting_together_share_one_set(storage: EtcdStorage,
                                                       tmp_path: Path) -> None:
    dirs = [tmp_path / f"s{i}" for i in range(3)]
    await asyncio.gather(*(share_bootstrap_data(storage, d, "tok") for d in dirs))
    first = shared(dirs[0])
    assert all(shared(d) == first for d in dirs[1:])
    assert unseal((await storage.get(KEY)).value, "tok") == first
    for d in dirs:
        assert (d / TOKEN_FILE).read_text() == "tok\n"
        assert (d / "tls" / "ca.key").stat().st_mode & 0o077 == 0
        creds = ensure_credentials(d, ["192.0.2.7"])   # its own serving certificate
        assert issuer_ok(d) and creds.admin_token == first["token"].decode().strip()


async def test_a_server_with_its_own_ca_joins(storage: EtcdStorage, tmp_path: Path) -> None:
    first, joiner = tmp_path / "first", tmp_path / "joiner"
    await share_bootstrap_data(storage, first, None)      # no token: one is made
    token = given_token(first, None, None)
    assert token and (first / TOKEN_FILE).exists()
    ensure_credentials(joiner)                             # a cluster of its own so far
    old_server_cert = (joiner / "tls" / "server.crt").read_bytes()
    with pytest.raises(BootstrapError, match="sealed with another token"):
        await share_bootstrap_data(storage, joiner, "not-the-token")
    await share_bootstrap_data(storage, joiner,
                               given_token(joiner, None, str(first / TOKEN_FILE)))
    assert shared(joiner) == shared(first)
    assert not (joiner / "tls" / "server.crt").exists()   # the old CA's: issued again
    ensure_credentials(joiner)
    assert issuer_ok(joiner) and (joiner / "tls" / "server.crt").read_bytes() != \
        old_server_cert
    # A restart needs no token: DATA_DIR/server-token has it.
    assert given_token(joiner, None, None) == token
    await share_bootstrap_data(storage, joiner, token)
    assert shared(joiner) == shared(first)


async def test_without_a_token_a_server_keeps_its_own(storage: EtcdStorage,
                                                      tmp_path: Path) -> None:
    """An independent server on an etcd that holds another's data (no token given): it
    runs with its own CA and tokens, as before bootstrap data existed."""
    await share_bootstrap_data(storage, tmp_path / "a", "tok")
    await share_bootstrap_data(storage, tmp_path / "b", None)
    assert shared(tmp_path / "b")["tls/ca.crt"] != shared(tmp_path / "a")["tls/ca.crt"]
    assert not (tmp_path / "b" / TOKEN_FILE).exists()
