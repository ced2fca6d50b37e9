"""Getting and renewing a node's certificates through the certificates API (client-go's
util/certificate/csr and certificate manager): create a CertificateSigningRequest, wait
on a watch until it is approved and issued (or Denied / Failed), and a manager that
requests a new certificate with a new key when 70–90 % (jittered) of the current one's
lifetime has passed, stores it and hands it to whoever uses it (the REST client for the
kubelet's client certificate, the kubelet server's TLS context for its serving one)."""
from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import random
from typing import Any, Awaitable, Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from pyk8s.client.rest import AlreadyExists, Expired, RESTClient, Unauthorized, resource_path
from pyk8s.kubelet.certificates import (CertificateStore, KeyPair, PrivateKey, Subject,
                                        csr_body, jittered_fraction, key_pem, make_csr,
                                        new_private_key, rotation_deadline, utcnow)

log = logging.getLogger("pyk8s.kubelet.certificates")

Obj = dict[str, Any]
CSR_PATH = resource_path("certificates.k8s.io", "v1", "certificatesigningrequests")
# Upstream waits 15 minutes for a requested certificate (certificateWaitTimeout).
CERTIFICATE_WAIT_TIMEOUT = 15 * 60.0


class CertificateRequestFailed(Exception):
    """The CSR was Denied, Failed, deleted or replaced: waiting longer will not help."""


def issued_certificate(csr: Obj) -> bytes | None:
    """The issued certificate (PEM) of an approved CSR, None while it is pending; raises
    CertificateRequestFailed for Denied / Failed (upstream's WaitForCertificate)."""
    st = csr.get("status") or {}
    approved = False
    for c in st.get("conditions") or []:
        kind = c.get("type")
        if kind in ("Denied", "Failed"):
            what = "denied" if kind == "Denied" else "failed"
            raise CertificateRequestFailed(
                f"certificate signing request {csr['metadata'].get('name')} {what}, reason: "
                f"{c.get('reason', '')}, message: {c.get('message', '')}")
        if kind == "Approved":
            approved = True
    if approved and st.get("certificate"):
        return base64.b64decode(st["certificate"])
    return None


def _request_compatible(existing: Obj, signer: str, key: PrivateKey, subject: Subject) -> str:
    """Why an existing CSR of our name cannot be reused ("" if it can): upstream's
    ensureCompatible (same subject and signer, signed by our key)."""
    spec = existing.get("spec") or {}
    if spec.get("signerName") != signer:
        return f"csr signerNames differ: {spec.get('signerName')!r} != {signer!r}"
    try:
        req = x509.load_pem_x509_csr(base64.b64decode(spec.get("request") or ""))
    except ValueError as e:
        return f"unable to parse csr: {e}"
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if req.public_key().public_bytes(der, pub) != key.public_key().public_bytes(der, pub):
        return "the csr was signed by another key"
    cns = [str(a.value) for a in req.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    if cns != [subject.common_name]:
        return f"csr subjects differ: {cns} != {[subject.common_name]}"
    return ""


async def create_csr(client: RESTClient, body: Obj, key: PrivateKey, subject: Subject) -> Obj:
    """Create the CSR; one of our name that exists already (a restarted bootstrap) is
    reused if it is the same request (client-go's RequestCertificate)."""
    try:
        return await client.create(CSR_PATH, body)
    except AlreadyExists:
        name = body["metadata"].get("name")
        if not name:
            raise
        existing = await client.get(f"{CSR_PATH}/{name}")
        why = _request_compatible(existing, body["spec"]["signerName"], key, subject)
        if why:
            raise CertificateRequestFailed(f"retrieved csr {name} is not compatible: {why}")
        log.info("csr %s for this node already exists, reusing it", name)
        return existing


class _Waiter:
    def __init__(self) -> None:
        self.future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.uid: str | None = None
        self.last: tuple[str, Obj] | None = None   # seen before the uid was known


class CSRWatcher:
    """Waits for CSRs over one list + watch: of one CSR (`name`: a field selector, as
    upstream) or of all (hollow nodes share one for their bootstrap requests). A request
    is expected (`expect(name)`) before it is created, so no event of it can be missed;
    the watch runs while someone waits (`keep_open`: until `close()`, so a shared
    watcher does not list every CSR again each time its waiters come and go)."""

    def __init__(self, client: RESTClient, name: str | None = None,
                 keep_open: bool = False) -> None:
        self.client = client
        self.params = {"fieldSelector": f"metadata.name={name}"} if name else None
        self.keep_open = keep_open
        self._waiters: dict[str, _Waiter] = {}
        self._task: asyncio.Task[None] | None = None

    def expect(self, name: str) -> None:
        if name not in self._waiters:
            self._waiters[name] = _Waiter()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="csr-watch")

    async def wait(self, name: str, uid: str, timeout: float = CERTIFICATE_WAIT_TIMEOUT
                   ) -> bytes:
        """The certificate of CSR `name` (uid `uid`) once issued."""
        self.expect(name)
        w = self._waiters[name]
        w.uid = uid
        if w.last is not None:
            self._resolve(w, *w.last)
        try:
            return await asyncio.wait_for(asyncio.shield(w.future), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"timed out waiting for certificate signing request {name} "
                               f"to be approved and issued") from None
        finally:
            await self.forget(name)

    async def forget(self, name: str) -> None:
        """Stop expecting `name`; the watch ends with the last one expected."""
        self._waiters.pop(name, None)
        if not self._waiters and not self.keep_open:
            await self.close()

    async def close(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _observe(self, kind: str, obj: Obj) -> None:
        w = self._waiters.get((obj.get("metadata") or {}).get("name", ""))
        if w is None or w.future.done():
            return
        if w.uid is None:
            w.last = (kind, obj)
            return
        self._resolve(w, kind, obj)

    @staticmethod
    def _resolve(w: _Waiter, kind: str, obj: Obj) -> None:
        name = obj["metadata"].get("name")
        try:
            if obj["metadata"].get("uid") != w.uid:
                raise CertificateRequestFailed(f"csr {name!r} changed UIDs")
            if kind == "DELETED":
                raise CertificateRequestFailed(f"csr {name!r} was deleted")
            cert = issued_certificate(obj)
        except CertificateRequestFailed as e:
            w.future.set_exception(e)
            return
        if cert is not None:
            w.future.set_result(cert)
        elif (obj.get("status") or {}).get("conditions"):
            log.info("certificate signing request %s is approved, waiting to be issued", name)

    async def _run(self) -> None:
        delay = 0.5
        while self._waiters or self.keep_open:
            try:
                lst = await self.client.list(CSR_PATH, self.params)
                for obj in lst.get("items") or []:
                    self._observe("ADDED", obj)
                rv = (lst.get("metadata") or {}).get("resourceVersion")
                delay = 0.5
                while self._waiters or self.keep_open:
                    async for ev in self.client.watch(CSR_PATH, rv, params=self.params,
                                                      timeout_seconds=300):
                        obj = ev.get("object") or {}
                        rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                        if ev.get("type") != "BOOKMARK":
                            self._observe(ev.get("type", ""), obj)
            except asyncio.CancelledError:
                raise
            except Expired:
                continue
            except Exception as e:
                log.warning("watching certificate signing requests: %s", e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


async def request_certificate(client: RESTClient, key: PrivateKey, subject: Subject,
                              signer: str, usages: list[str], *, name: str = "",
                              watcher: CSRWatcher | None = None,
                              timeout: float = CERTIFICATE_WAIT_TIMEOUT) -> bytes:
    """Create a CSR for `key` and wait until it is issued: the certificate's PEM."""
    body = csr_body(make_csr(key, subject), signer, usages, name=name)
    if watcher is not None and name:
        watcher.expect(name)
    try:
        csr = await create_csr(client, body, key, subject)
    except BaseException:
        if watcher is not None and name:
            await watcher.forget(name)
        raise
    md = csr["metadata"]
    log.info("created certificate signing request %s (signer %s)", md["name"], signer)
    w = watcher or CSRWatcher(client, md["name"])
    return await w.wait(md["name"], md["uid"], timeout)


OnUpdate = Callable[[KeyPair], "Awaitable[None] | None"]


class CertificateManager:
    """One certificate kept current (client-go's certificate manager): requested when
    there is none (or the one there no longer fits: wrong subject, SANs, CA), then renewed
    with a new key at a jittered 70–90 % of its lifetime; failures back off 2 s doubling
    to 5 min. `on_update` gets each new pair after it is stored."""

    def __init__(self, *, kind: str, store: CertificateStore, signer: str,
                 subject: Callable[[], Subject], usages: Callable[[PrivateKey], list[str]],
                 client: Callable[[], RESTClient], on_update: OnUpdate | None = None,
                 current: KeyPair | None = None, ca_pem: bytes | None = None,
                 fallback_client: Callable[[], RESTClient | None] | None = None,
                 received: datetime.datetime | None = None,
                 rng: random.Random | None = None) -> None:
        """`current`: the certificate in use (`received`: when, if it was just issued)."""
        self.kind = kind                # "client" / "serving", for logs
        self.store = store
        self.signer = signer
        self.subject = subject
        self.usages = usages
        self.client = client
        self.on_update = on_update
        self.ca_pem = ca_pem
        self.fallback_client = fallback_client
        self.rng = rng or random.Random()
        self.current: KeyPair | None = current
        self.rotations = 0
        self._deadline: datetime.datetime | None = None
        self._received = received
        self._wake = asyncio.Event()

    def fits(self, pair: KeyPair | None) -> bool:
        """Whether `pair` is usable as this manager's certificate."""
        if pair is None or pair.expired():
            return False
        subject = self.subject()
        if pair.common_name != subject.common_name or not pair.issued_by(self.ca_pem):
            return False
        if subject.dns_names or subject.ip_addresses:
            dns, ips = pair.sans()
            if not (set(subject.dns_names) <= dns and set(subject.ip_addresses) <= ips):
                return False
        return True

    def deadline(self) -> datetime.datetime:
        """When the current certificate is due for renewal (now if there is none)."""
        pair = self.current
        if not self.fits(pair):
            return utcnow()
        assert pair is not None
        if self._deadline is None:
            self._deadline = rotation_deadline(pair.not_before, pair.not_after,
                                               jittered_fraction(self.rng), self._received)
            log.info("%s certificate expires %s, rotation deadline %s", self.kind,
                     pair.not_after.isoformat(), self._deadline.isoformat())
        return self._deadline

    def renew_soon(self) -> None:
        """Re-check now (the subject changed, e.g. new node addresses)."""
        self._deadline = None
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 2.0
        while not stop.is_set():
            wait = (self.deadline() - utcnow()).total_seconds()
            if wait > 0:
                self._wake.clear()
                waits = [asyncio.ensure_future(stop.wait()),
                         asyncio.ensure_future(self._wake.wait())]
                try:
                    await asyncio.wait(waits, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for t in waits:
                        t.cancel()
                continue
            try:
                await self.rotate()
                backoff = 2.0
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.error("%s certificate rotation failed: %s; retrying in %.0f s",
                          self.kind, e, backoff)
                try:
                    await asyncio.wait_for(stop.wait(), backoff * (1 + 0.1 * self.rng.random()))
                except asyncio.TimeoutError:
                    pass
                backoff = min(backoff * 2, 300.0)

    async def rotate(self) -> KeyPair:
        """Request a certificate with a new key now; store it and hand it on."""
        key = new_private_key()
        client = self.client()
        expired = self.current is None or self.current.expired()
        if expired and self.fallback_client is not None:
            # A client certificate that expired cannot authenticate its own renewal:
            # bootstrap again, with the bootstrap credentials (as upstream's kubelet
            # restarting into bootstrap).
            client = self.fallback_client() or client
        try:
            cert = await request_certificate(client, key, self.subject(), self.signer,
                                             self.usages(key))
        except Unauthorized:
            fallback = self.fallback_client() if self.fallback_client else None
            if fallback is None or fallback is client:
                raise
            log.warning("%s certificate refused by the API server: bootstrapping again",
                        self.kind)
            cert = await request_certificate(fallback, key, self.subject(), self.signer,
                                             self.usages(key))
        pair = self.store.update(cert, key_pem(key))
        if not pair.has_usage(ExtendedKeyUsageOID.SERVER_AUTH if self.kind == "serving"
                              else ExtendedKeyUsageOID.CLIENT_AUTH):
            log.warning("the issued %s certificate lacks the %s usage", self.kind, self.kind)
        self.current = pair
        self._received = utcnow()
        self._deadline = None
        self.rotations += 1
        log.info("%s certificate rotated: %s, valid until %s", self.kind, pair.common_name,
                 pair.not_after.isoformat())
        if self.on_update is not None:
            result = self.on_update(pair)
            if asyncio.iscoroutine(result):
                await result
        return pair
