"""What the certificate controllers share (upstream's pkg/controller/certificates and the
CSR helpers of pkg/apis/certificates).

- The CertificateSigningRequest helpers: `parse_csr` (spec.request → an x509 request;
  `csr_request` of a CSR object, upstream's "unable to parse csr" error), approval
  conditions, and the shapes of kubelet CSRs (`validate_kubelet_client_csr`,
  `validate_kubelet_serving_csr`, upstream's error texts).
- `CertificateController`: upstream's certificate controller skeleton. A CSR informer
  enqueues every added / updated / deleted CSR's name; workers hand a copy of each CSR that
  has no certificate yet to the controller's handler. A failing handler (an
  `IgnorableError` too: a SubjectAccessReview that said no) is retried with the queue's
  rate limiter (5 ms doubling to 1000 s), as upstream.
"""
from __future__ import annotations

import base64
import copy
import logging
from typing import Any, Awaitable, Callable, Iterable

from cryptography import x509
from cryptography.x509.oid import NameOID

from pyk8s.api import meta
from pyk8s.client.informer import EventHandlerFuncs, SharedInformerFactory, object_key
from pyk8s.client.workqueue import WorkQueue, run_workers

log = logging.getLogger("pyk8s.controllers.certificates")

Obj = dict[str, Any]

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"

# The signers built into Kubernetes (certificates.k8s.io/v1 constants).
KUBE_APISERVER_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
KUBE_APISERVER_CLIENT_KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN_SIGNER = "kubernetes.io/legacy-unknown"

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"


class InvalidCSR(ValueError):
    """spec.request is not a PEM CERTIFICATE REQUEST."""


class IgnorableError(Exception):
    """An expected failure (retried with backoff, as any other)."""


def csr_path(name: str, subresource: str = "") -> str:
    return f"{CSR_PATH}/{name}" + (f"/{subresource}" if subresource else "")


# -- spec.request -----------------------------------------------------------------------------
def parse_csr(request: str | bytes) -> x509.CertificateSigningRequest:
    """The request of a CSR: `spec.request` as the API carries it (base64 of PEM), or the
    PEM itself. The first PEM block must be a CERTIFICATE REQUEST (upstream's ParseCSR)."""
    pem = request.encode() if isinstance(request, str) else request
    if b"-----BEGIN" not in pem:
        try:
            pem = base64.b64decode(pem, validate=True)
        except ValueError:
            raise InvalidCSR("PEM block type must be CERTIFICATE REQUEST") from None
    start = pem.find(b"-----BEGIN ")
    if start < 0 or not pem[start:].startswith(b"-----BEGIN CERTIFICATE REQUEST-----"):
        raise InvalidCSR("PEM block type must be CERTIFICATE REQUEST")
    try:
        return x509.load_pem_x509_csr(pem[start:])
    except ValueError as e:
        raise InvalidCSR(str(e)) from None


def csr_request(csr: Obj, error: type[Exception] = ValueError) -> x509.CertificateSigningRequest:
    """The request of a CSR object; one that does not parse raises `error` with upstream's
    message (`unable to parse csr "<name>": …`)."""
    try:
        return parse_csr((csr.get("spec") or {}).get("request") or "")
    except ValueError as e:
        raise error(f'unable to parse csr "{csr["metadata"]["name"]}": {e}') from None


def common_name(name: x509.Name) -> str:
    """The subject's CN (Go's pkix.Name keeps the last one)."""
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[-1].value) if cns else ""


def organizations(name: x509.Name) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def subject_alt_names(req: x509.CertificateSigningRequest | x509.Certificate
                      ) -> tuple[list[str], list[str], list[str], list[str]]:
    """(DNS names, IP addresses, email addresses, URIs) of the subjectAltName extension."""
    try:
        san = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], [], [], []
    return (list(san.get_values_for_type(x509.DNSName)),
            [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
            list(san.get_values_for_type(x509.RFC822Name)),
            list(san.get_values_for_type(x509.UniformResourceIdentifier)))


# -- conditions -------------------------------------------------------------------------------
def conditions(csr: Obj) -> list[Obj]:
    return list(((csr.get("status") or {}).get("conditions")) or [])


def approval_condition(csr: Obj) -> tuple[bool, bool]:
    """(approved, denied): whether an Approved / Denied condition is present."""
    types = {c.get("type") for c in conditions(csr)}
    return "Approved" in types, "Denied" in types


def is_approved(csr: Obj) -> bool:
    approved, denied = approval_condition(csr)
    return approved and not denied


def has_true_condition(csr: Obj, condition_type: str) -> bool:
    return any(c.get("type") == condition_type and c.get("status") == "True"
               for c in conditions(csr))


def add_condition(csr: Obj, condition_type: str, reason: str, message: str) -> None:
    """Append a True condition stamped now (the CSR is the controller's own copy)."""
    now = meta.rfc3339()
    csr.setdefault("status", {}).setdefault("conditions", []).append({
        "type": condition_type, "status": "True", "reason": reason, "message": message,
        "lastUpdateTime": now, "lastTransitionTime": now})


def has_certificate(csr: Obj) -> bool:
    return bool((csr.get("status") or {}).get("certificate"))


# -- kubelet CSR shapes (pkg/apis/certificates/helpers.go) ------------------------------------
KUBELET_CLIENT_USAGES = frozenset({"digital signature", "key encipherment", "client auth"})
KUBELET_CLIENT_USAGES_NO_RSA = frozenset({"digital signature", "client auth"})
KUBELET_SERVING_USAGES = frozenset({"digital signature", "key encipherment", "server auth"})
KUBELET_SERVING_USAGES_NO_RSA = frozenset({"digital signature", "server auth"})


def _go_list(values: Iterable[str]) -> str:
    """fmt's %v of a sorted []string."""
    return "[" + " ".join(sorted(values)) + "]"


def validate_kubelet_client_csr(req: x509.CertificateSigningRequest,
                                usages: Iterable[str]) -> str | None:
    """Why `req` is not a kubelet client certificate request, or None (upstream's
    ValidateKubeletClientCSR: O exactly system:nodes, no SANs, CN system:node:<name>,
    usages digital signature + client auth (+ key encipherment))."""
    if organizations(req.subject) != [NODES_GROUP]:
        return "subject organization is not system:nodes"
    dns, ips, emails, uris = subject_alt_names(req)
    if dns:
        return "DNS subjectAltNames are not allowed"
    if emails:
        return "Email subjectAltNames are not allowed"
    if ips:
        return "IP subjectAltNames are not allowed"
    if uris:
        return "URI subjectAltNames are not allowed"
    if not common_name(req.subject).startswith(NODE_USER_PREFIX):
        return "subject common name does not begin with system:node:"
    if set(usages) not in (KUBELET_CLIENT_USAGES, KUBELET_CLIENT_USAGES_NO_RSA):
        return f"usages did not match {_go_list(KUBELET_CLIENT_USAGES)}"
    return None


def validate_kubelet_serving_csr(req: x509.CertificateSigningRequest,
                                 usages: Iterable[str]) -> str | None:
    """Why `req` is not a kubelet serving certificate request, or None (upstream's
    ValidateKubeletServingCSR: O exactly system:nodes, DNS and / or IP SANs only, usages
    digital signature + server auth (+ key encipherment), CN system:node:<name>)."""
    if organizations(req.subject) != [NODES_GROUP]:
        return "subject organization is not system:nodes"
    dns, ips, emails, uris = subject_alt_names(req)
    if not dns and not ips:
        return "DNS or IP subjectAltName is required"
    if emails:
        return "Email subjectAltNames are not allowed"
    if uris:
        return "URI subjectAltNames are not allowed"
    if set(usages) not in (KUBELET_SERVING_USAGES, KUBELET_SERVING_USAGES_NO_RSA):
        return f"usages did not match {_go_list(KUBELET_SERVING_USAGES)}"
    if not common_name(req.subject).startswith(NODE_USER_PREFIX):
        return "subject common name does not begin with system:node:"
    return None


def validate_kube_apiserver_client_usages(usages: Iterable[str]) -> str | None:
    """The kube-apiserver-client signer's rule: client auth required, digital signature and
    key encipherment allowed, nothing else."""
    has_client_auth = False
    for u in usages:
        if u == "client auth":
            has_client_auth = True
        elif u not in ("digital signature", "key encipherment"):
            return f"invalid usage for client certificate: {u}"
    if not has_client_auth:
        return "missing required usage for client certificate: client auth"
    return None


# -- the controller skeleton ------------------------------------------------------------------
Handler = Callable[[Obj], Awaitable[None]]


class CertificateController:
    """Upstream's CertificateController: CSR informer → queue → `handler(copy of the CSR)`
    for CSRs without a certificate."""

    def __init__(self, name: str, factory: SharedInformerFactory, handler: Handler, *,
                 workers: int = 5) -> None:
        self.name = name
        self.handler = handler
        self.workers = workers
        self.queue: WorkQueue[str] = WorkQueue(name)
        self.csr_informer = factory.informer("certificates.k8s.io", "v1",
                                             "certificatesigningrequests", namespaced=False)
        self._handlers = EventHandlerFuncs(self.enqueue, lambda _old, new: self.enqueue(new),
                                           self.enqueue)
        self.csr_informer.add_event_handler(self._handlers)

    def enqueue(self, csr: Obj) -> None:
        self.queue.add(object_key(csr))

    async def run(self) -> None:
        try:
            await self.csr_informer.synced.wait()
            log.info("%s: synced", self.name)
            await run_workers(self.queue, self.sync, self.workers, name=self.name)
        finally:
            self.queue.shutdown()
            self.csr_informer.remove_event_handler(self._handlers)

    async def sync(self, key: str) -> None:
        csr = self.csr_informer.store.get(key)
        if csr is None or has_certificate(csr):
            return
        await self.handler(copy.deepcopy(csr))


__all__ = ["CertificateController", "parse_csr", "csr_request", "InvalidCSR", "IgnorableError",
           "validate_kubelet_client_csr", "validate_kubelet_serving_csr",
           "validate_kube_apiserver_client_usages", "approval_condition", "is_approved",
           "has_true_condition", "add_condition", "csr_path", "common_name", "organizations",
           "subject_alt_names", "KUBE_APISERVER_CLIENT_SIGNER",
           "KUBE_APISERVER_CLIENT_KUBELET_SIGNER", "KUBELET_SERVING_SIGNER",
           "LEGACY_UNKNOWN_SIGNER"]
