"""Requesting certificates through the certificates API (against an in-memory CSR API with
a signer): waiting on a watch until issued, Denied / Failed, a restarted bootstrap
reusing its CSR, many requests over one watch (hollow nodes), rotation by the manager,
and the REST client taking a rotated certificate."""
from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import itertools
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Mapping

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pyk8s.client.rest import AlreadyExists, ClientConfig, NotFound, RESTClient
from pyk8s.kubelet.bootstrap import bootstrap_certificate
from pyk8s.kubelet.certificates import (CLIENT_SIGNER, CertificateStore, Subject,
                                        client_usages, key_pem, load_key_pair, make_csr,
                                        new_private_key)
from pyk8s.kubelet.certmanager import (CertificateManager, CertificateRequestFailed,
                                       CSRWatcher, issued_certificate, request_certificate)

UTC = datetime.timezone.utc
Obj = dict[str, Any]


class CSRAPI:
    """CertificateSigningRequests in memory: create / get / list / watch, and a signer
    that approves and issues (or denies) each new request after `delay` seconds."""

    def __init__(self, deny: bool = False, lifetime: float = 3600.0,
                 delay: float = 0.01) -> None:
        self.objects: dict[str, Obj] = {}
        self.watchers: list[asyncio.Queue[Obj]] = []
        self.rv = itertools.count(1)
        self.deny = deny
        self.lifetime = lifetime
        self.delay = delay
        self.lists = self.watches = 0
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
        now = datetime.datetime.now(UTC)
        self.ca_key = key
        self.ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(1)
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .sign(key, hashes.SHA256()))
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ca_pem(self) -> bytes:
        return self.ca.public_bytes(serialization.Encoding.PEM)

    def _emit(self, kind: str, obj: Obj) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self.rv))
        for q in self.watchers:
            q.put_nowait({"type": kind, "object": copy.deepcopy(obj)})

    async def create(self, path: str, body: Obj, params: Any = None) -> Obj:
        obj = copy.deepcopy(body)
        md = obj["metadata"]
        if not md.get("name"):
            md["name"] = md.pop("generateName") + uuid.uuid4().hex[:5]
        if md["name"] in self.objects:
            raise AlreadyExists(409, "AlreadyExists", "exists")
        md["uid"] = str(uuid.uuid4())
        self.objects[md["name"]] = obj
        self._emit("ADDED", obj)
        t = asyncio.create_task(self._sign(md["name"]))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return copy.deepcopy(obj)

    async def _sign(self, name: str) -> None:
        await asyncio.sleep(self.delay)
        obj = self.objects[name]
        if self.deny:
            obj["status"] = {"conditions": [{"type": "Denied", "reason": "NotMine",
                                             "message": "go away"}]}
            self._emit("MODIFIED", obj)
            return
        obj["status"] = {"conditions": [{"type": "Approved", "reason": "AutoApproved"}]}
        self._emit("MODIFIED", obj)
        await asyncio.sleep(self.delay)
        req = x509.load_pem_x509_csr(base64.b64decode(obj["spec"]["request"]))
        now = datetime.datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(req.subject)
                .issuer_name(self.ca.subject).public_key(req.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(seconds=self.lifetime))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(self.ca_key, hashes.SHA256()))
        obj["status"]["certificate"] = base64.b64encode(
            cert.public_bytes(serialization.Encoding.PEM)).decode()
        self._emit("MODIFIED", obj)

    async def get(self, path: str, params: Any = None) -> Obj:
        name = path.rsplit("/", 1)[1]
        if name not in self.objects:
            raise NotFound(404, "NotFound", name)
        return copy.deepcopy(self.objects[name])

    async def list(self, path: str, params: Mapping[str, Any] | None = None) -> Obj:
        self.lists += 1
        sel = (params or {}).get("fieldSelector", "")
        items = [copy.deepcopy(o) for n, o in self.objects.items()
                 if not sel or sel == f"metadata.name={n}"]
        return {"items": items, "metadata": {"resourceVersion": str(next(self.rv))}}

    async def watch(self, path: str, rv: str | None = None, *, params: Any = None,
                    timeout_seconds: int | None = None) -> AsyncIterator[Obj]:
        self.watches += 1
        sel = (params or {}).get("fieldSelector", "")
        q: asyncio.Queue[Obj] = asyncio.Queue()
        self.watchers.append(q)
        try:
            while True:
                ev = await q.get()
                if not sel or sel == f"metadata.name={ev['object']['metadata']['name']}":
                    yield ev
        finally:
            self.watchers.remove(q)


def test_issued_certificate_states() -> None:
    csr: Obj = {"metadata": {"name": "c"}, "status": {}}
    assert issued_certificate(csr) is None
    csr["status"] = {"conditions": [{"type": "Approved"}]}
    assert issued_certificate(csr) is None                   # approved, not yet issued
    csr["status"]["certificate"] = base64.b64encode(b"PEM").decode()
    assert issued_certificate(csr) == b"PEM"
    for kind, word in (("Denied", "denied"), ("Failed", "failed")):
        bad = {"metadata": {"name": "c"},
               "status": {"conditions": [{"type": kind, "reason": "R", "message": "M"}]}}
        with pytest.raises(CertificateRequestFailed,
                           match=f"request c {word}, reason: R, message: M"):
            issued_certificate(bad)


async def test_request_waits_until_issued() -> None:
    api = CSRAPI(delay=0.05)
    key = new_private_key()
    cert = await request_certificate(api, key, Subject.node("n1"),  # type: ignore[arg-type]
                                     CLIENT_SIGNER, client_usages(key), timeout=5)
    pair = load_key_pair(cert, key_pem(key))
    assert pair.common_name == "system:node:n1"
    [csr] = api.objects.values()
    assert csr["metadata"]["name"].startswith("csr-")      # generateName, as client-go
    assert csr["spec"]["usages"] == ["digital signature", "client auth"]
    assert not api.watchers                                 # the watch ended


async def test_denied_request_fails() -> None:
    api = CSRAPI(deny=True)
    key = new_private_key()
    with pytest.raises(CertificateRequestFailed, match="denied, reason: NotMine"):
        await request_certificate(api, key, Subject.node("n1"),  # type: ignore[arg-type]
                                  CLIENT_SIGNER, client_usages(key), timeout=5)


async def test_request_times_out() -> None:
    api = CSRAPI(delay=10)
    key = new_private_key()
    with pytest.raises(TimeoutError, match="to be approved and issued"):
        await request_certificate(api, key, Subject.node("n1"),  # type: ignore[arg-type]
                                  CLIENT_SIGNER, client_usages(key), timeout=0.1)


async def test_restarted_bootstrap_reuses_its_csr(tmp_path: Path) -> None:
    api = CSRAPI(delay=10)          # nobody approves during the first run
    store = CertificateStore(tmp_path, "kubelet-client")
    first = asyncio.create_task(bootstrap_certificate(api, store, "n1"))  # type: ignore[arg-type]
    while not api.objects:
        await asyncio.sleep(0.01)
    first.cancel()                   # the agent stops while waiting
    await asyncio.gather(first, return_exceptions=True)
    [name] = api.objects
    assert name.startswith("node-csr-")
    api.delay = 0.01
    await api._sign(name)            # approved and issued while the agent was down
    pair = await bootstrap_certificate(api, store, "n1")  # type: ignore[arg-type]
    assert list(api.objects) == [name]                     # the same CSR, no new one
    assert pair.common_name == "system:node:n1"
    assert store.current() is not None and not store.pending_key_path.exists()


async def test_a_foreign_csr_of_our_name_is_not_taken(tmp_path: Path) -> None:
    api = CSRAPI(delay=10)
    store = CertificateStore(tmp_path, "kubelet-client")
    key = store.pending_key()
    from pyk8s.kubelet.certificates import digested_name
    name = digested_name(key.public_key(), Subject.node("n1"), client_usages(key))
    other = new_private_key()
    await api.create("", {"metadata": {"name": name},
                          "spec": {"signerName": CLIENT_SIGNER, "usages": [],
                                   "request": base64.b64encode(
                                       make_csr(other, Subject.node("n1"))).decode()}})
    with pytest.raises(Exception, match="not compatible: the csr was signed by another key"):
        await bootstrap_certificate(api, store, "n1")  # type: ignore[arg-type]


async def test_many_requests_share_one_watch(tmp_path: Path) -> None:
    api = CSRAPI()
    watcher = CSRWatcher(api, keep_open=True)  # type: ignore[arg-type]

    async def node(i: int) -> Any:
        await asyncio.sleep(i * 0.005)      # staggered: waiters come and go
        return await bootstrap_certificate(
            api, CertificateStore(tmp_path / f"n{i}", "kubelet-client"),  # type: ignore[arg-type]
            f"n{i}", watcher=watcher)
    pairs = await asyncio.gather(*(node(i) for i in range(50)))
    assert sorted(p.common_name for p in pairs) == sorted(f"system:node:n{i}" for i in range(50))
    assert api.watches == 1 and api.lists == 1
    assert len({p.cert.serial_number for p in pairs}) == 50
    await watcher.close()
    assert not api.watchers


async def test_manager_rotates_with_a_new_key(tmp_path: Path) -> None:
    api = CSRAPI(lifetime=1.0)
    store = CertificateStore(tmp_path, "kubelet-client")
    first = await bootstrap_certificate(api, store, "n1")  # type: ignore[arg-type]
    updates: list[Any] = []
    mgr = CertificateManager(kind="client", store=store, signer=CLIENT_SIGNER,
                             subject=lambda: Subject.node("n1"), usages=client_usages,
                             client=lambda: api, on_update=updates.append,  # type: ignore[arg-type,return-value]
                             current=first, ca_pem=api.ca_pem)
    # Loaded as it is, a backdated 1 s certificate is due at once (upstream's arithmetic).
    assert mgr.deadline() <= datetime.datetime.now(UTC)
    stop = asyncio.Event()
    task = asyncio.create_task(mgr.run(stop))
    try:
        async with asyncio.timeout(10):
            while len(updates) < 2:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    a, b = updates[:2]
    assert a.cert.serial_number != first.cert.serial_number != b.cert.serial_number
    assert a.key.private_numbers() != first.key.private_numbers()
    assert store.current() is not None and store.current().cert == mgr.current.cert  # type: ignore[union-attr]
    # A fresh certificate is renewed 70–90 % into its life counted from its arrival.
    renewals = [o for o in api.objects.values() if o["metadata"]["name"].startswith("csr-")]
    assert len(renewals) >= 2


async def test_manager_rejects_a_certificate_of_another_cluster(tmp_path: Path) -> None:
    api, other = CSRAPI(), CSRAPI()
    store = CertificateStore(tmp_path, "kubelet-client")
    pair = await bootstrap_certificate(other, store, "n1")  # type: ignore[arg-type]
    mgr = CertificateManager(kind="client", store=store, signer=CLIENT_SIGNER,
                             subject=lambda: Subject.node("n1"), usages=client_usages,
                             client=lambda: api, current=pair, ca_pem=api.ca_pem)  # type: ignore[arg-type,return-value]
    assert not mgr.fits(pair)
    assert mgr.fits(await bootstrap_certificate(api, CertificateStore(tmp_path / "b", "k"),  # type: ignore[arg-type]
                                                "n1"))
    assert not CertificateManager(kind="client", store=store, signer=CLIENT_SIGNER,
                                  subject=lambda: Subject.node("n2"), usages=client_usages,
                                  client=lambda: api).fits(pair)  # type: ignore[arg-type,return-value]


async def test_rest_client_takes_a_rotated_certificate(tmp_path: Path) -> None:
    api = CSRAPI()
    store = CertificateStore(tmp_path, "kubelet-client")
    one = await bootstrap_certificate(api, store, "n1")  # type: ignore[arg-type]
    client = RESTClient(ClientConfig(server="https://127.0.0.1:1", ca_data=api.ca_pem,
                                     client_cert_data=one.cert_pem,
                                     client_key_data=one.key_pem))
    old = client.session
    two = await bootstrap_certificate(api, CertificateStore(tmp_path / "2", "k"),  # type: ignore[arg-type]
                                      "n1")
    client.set_client_certificate(two.cert_pem, two.key_pem, grace=0.05)
    assert client.config.client_cert_data == two.cert_pem
    new = client.session
    assert new is not old and not old.closed                # in-flight requests may finish
    await asyncio.sleep(0.2)
    assert old.closed and not new.closed                    # then the old one goes
    await client.close()
