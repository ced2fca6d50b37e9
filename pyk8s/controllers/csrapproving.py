"""The CSR approving controller, `csrapproving` (upstream's
pkg/controller/certificates/approver/sarapprove.go), plus pyk8s's kubelet serving approver.

Kubelet client certificates (upstream's rules): a pending CSR (no Approved / Denied
condition, no certificate) for `kubernetes.io/kube-apiserver-client-kubelet` whose request
has the kubelet client shape (CN `system:node:<name>`, O exactly `system:nodes`, no SANs,
usages digital signature + client auth (+ key encipherment)) is approved when its requester
(spec.username / uid / groups / extra, which the API server recorded) may

- `create certificatesigningrequests/selfnodeclient` — when the CN is the requester's own
  user name (a node renewing its certificate), or else
- `create certificatesigningrequests/nodeclient` (a bootstrap identity asking for a new
  node's certificate),

each asked with a SubjectAccessReview POSTed to the API server. Approval goes through
`certificatesigningrequests/<name>/approval`: condition Approved, reason `AutoApproved`,
upstream's messages. A review that says no is retried with backoff (RBAC may allow it
later), as upstream.

Kubelet serving certificates — pyk8s's approver, not upstream's (upstream leaves
`kubernetes.io/kubelet-serving` CSRs to the admin or third-party approvers): a pending
kubelet-serving CSR is approved when its requester is the node itself (spec.username
`system:node:<name>` = the CN, in group `system:nodes`), the request has the kubelet
serving shape (O exactly `system:nodes`, DNS / IP SANs only) and every SAN is the node's:
DNS names among the node name and its Hostname / InternalDNS / ExternalDNS addresses, IPs
among its InternalIP / ExternalIP addresses (so a node cannot obtain a certificate for
another name, e.g. the API server's). A CSR of a node not registered yet, or whose
addresses do not cover the SANs yet, waits: changes of the Node re-queue it.

Node add-on identities — pyk8s's too (k3s hands its agents a kube-proxy certificate the
same way): the service proxy and the cluster DNS server run beside every kubelet, each with
its own identity. A node (`system:node:<name>` in `system:nodes`) may get, through
`kubernetes.io/kube-apiserver-client`, exactly these client certificates (no SANs, client
auth usages): CN `system:kube-proxy` with no O (bound to `system:node-proxier` by the
bootstrap policy) and CN `system:serviceaccount:kube-system:kube-dns` with O
`system:serviceaccounts`, `system:serviceaccounts:kube-system` (the kube-dns service
account's user, bound to `system:kube-dns`).
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any, Callable

from cryptography import x509

from pyk8s.client.informer import EventHandlerFuncs, SharedInformerFactory
from pyk8s.controllers.certificates import (
    KUBE_APISERVER_CLIENT_KUBELET_SIGNER, KUBE_APISERVER_CLIENT_SIGNER, KUBELET_SERVING_SIGNER,
    NODE_USER_PREFIX, NODES_GROUP, CertificateController, IgnorableError, approval_condition,
    common_name, csr_path, csr_request, has_certificate, organizations, subject_alt_names,
    validate_kube_apiserver_client_usages, validate_kubelet_client_csr,
    validate_kubelet_serving_csr)

log = logging.getLogger("pyk8s.controllers.csrapproving")

Obj = dict[str, Any]
COMPONENT = "csrapproving"
SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

SELF_NODE_CLIENT_MESSAGE = "Auto approving self kubelet client certificate after " \
                           "SubjectAccessReview."
NODE_CLIENT_MESSAGE = "Auto approving kubelet client certificate after SubjectAccessReview."
KUBELET_SERVING_MESSAGE = "Auto approving kubelet serving certificate of the requesting node."
NODE_ADDON_MESSAGE = "Auto approving node add-on client certificate of the requesting node."
# The identities of what runs beside a kubelet: CN → the exact O list.
NODE_ADDON_SUBJECTS: dict[str, tuple[str, ...]] = {
    "system:kube-proxy": (),
    "system:serviceaccount:kube-system:kube-dns": (
        "system:serviceaccounts", "system:serviceaccounts:kube-system"),
}


def node_addon_problem(csr: Obj, req: x509.CertificateSigningRequest) -> str | None:
    """Why a kube-apiserver-client CSR is not a node's request for one of its add-ons'
    identities (None: it is)."""
    spec = csr.get("spec") or {}
    username = spec.get("username") or ""
    if not username.startswith(NODE_USER_PREFIX) or NODES_GROUP not in (spec.get("groups") or []):
        return "the requester is not a node"
    cn = common_name(req.subject)
    if cn not in NODE_ADDON_SUBJECTS:
        return f'"{cn}" is not a node add-on identity'
    if tuple(sorted(organizations(req.subject))) != tuple(sorted(NODE_ADDON_SUBJECTS[cn])):
        return f'the organizations of "{cn}" must be {list(NODE_ADDON_SUBJECTS[cn])}'
    dns, ips, emails, uris = subject_alt_names(req)
    if dns or ips or emails or uris:
        return "subject alternative names are not allowed"
    return validate_kube_apiserver_client_usages(spec.get("usages") or [])


@dataclass(frozen=True)
class Recognizer:
    """A kind of CSR the approver knows, and the permission its requester needs."""
    recognize: Callable[[Obj, x509.CertificateSigningRequest], bool]
    subresource: str   # of certificatesigningrequests, verb create
    message: str


def is_node_client_cert(csr: Obj, req: x509.CertificateSigningRequest) -> bool:
    spec = csr.get("spec") or {}
    return spec.get("signerName") == KUBE_APISERVER_CLIENT_KUBELET_SIGNER and \
        validate_kubelet_client_csr(req, spec.get("usages") or []) is None


def is_self_node_client_cert(csr: Obj, req: x509.CertificateSigningRequest) -> bool:
    if (csr.get("spec") or {}).get("username") != common_name(req.subject):
        return False
    return is_node_client_cert(csr, req)


RECOGNIZERS = (
    Recognizer(is_self_node_client_cert, "selfnodeclient", SELF_NODE_CLIENT_MESSAGE),
    Recognizer(is_node_client_cert, "nodeclient", NODE_CLIENT_MESSAGE),
)


def subject_access_review(csr: Obj, subresource: str) -> Obj:
    """The SubjectAccessReview asking whether the CSR's requester may create
    certificatesigningrequests/<subresource>."""
    spec = csr.get("spec") or {}
    review: Obj = {"user": spec.get("username") or "", "groups": list(spec.get("groups") or []),
                   "resourceAttributes": {"group": "certificates.k8s.io",
                                          "resource": "certificatesigningrequests",
                                          "verb": "create", "subresource": subresource}}
    if spec.get("uid"):
        review["uid"] = spec["uid"]
    if spec.get("extra"):
        review["extra"] = {k: list(v) for k, v in spec["extra"].items()}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": review}


def serving_requester_problem(csr: Obj, req: x509.CertificateSigningRequest) -> str | None:
    """Why a kubelet-serving CSR is not a node's request for its own serving certificate
    of the kubelet serving shape (None: it is)."""
    spec = csr.get("spec") or {}
    problem = validate_kubelet_serving_csr(req, spec.get("usages") or [])
    if problem is not None:
        return problem
    username = spec.get("username") or ""
    if not username.startswith(NODE_USER_PREFIX) or common_name(req.subject) != username or \
            NODES_GROUP not in (spec.get("groups") or []):
        return "the requester is not the node the certificate names"
    return None


def serving_address_problem(req: x509.CertificateSigningRequest, node_name: str,
                            node: Obj | None) -> str | None:
    """Why the SANs of a kubelet serving request are not all the node's (None: they are)."""
    if node is None:
        return f'node "{node_name}" is not registered'
    addresses = ((node.get("status") or {}).get("addresses")) or []
    names = {node_name} | {a.get("address") for a in addresses
                           if a.get("type") in ("Hostname", "InternalDNS", "ExternalDNS")}
    ips = set()
    for a in addresses:
        if a.get("type") in ("InternalIP", "ExternalIP"):
            try:
                ips.add(ipaddress.ip_address(a.get("address") or ""))
            except ValueError:
                pass
    dns, req_ips, _, _ = subject_alt_names(req)
    for d in dns:
        if d not in names:
            return f'DNS name "{d}" is not an address of node "{node_name}"'
    for ip in req_ips:
        if ipaddress.ip_address(ip) not in ips:
            return f'IP address "{ip}" is not an address of node "{node_name}"'
    return None


class CSRApprovingController:
    """See the module docstring."""

    def __init__(self, client: Any, factory: SharedInformerFactory, *,
                 workers: int = 5) -> None:
        self.client = client
        self.controller = CertificateController(COMPONENT, factory, self.handle, workers=workers)
        self.node_informer = factory.nodes()
        self._node_handlers = EventHandlerFuncs(self.node_changed,
                                                lambda _old, new: self.node_changed(new), None)
        self.node_informer.add_event_handler(self._node_handlers)

    async def run(self) -> None:
        try:
            await self.node_informer.synced.wait()
            await self.controller.run()
        finally:
            self.node_informer.remove_event_handler(self._node_handlers)

    async def sync(self, key: str) -> None:
        await self.controller.sync(key)

    def node_changed(self, node: Obj) -> None:
        """A Node appeared or changed: its pending serving CSRs may be approvable now."""
        user = NODE_USER_PREFIX + str((node.get("metadata") or {}).get("name"))
        for csr in self.controller.csr_informer.store.list():
            spec = csr.get("spec") or {}
            if spec.get("signerName") == KUBELET_SERVING_SIGNER and \
                    spec.get("username") == user and not has_certificate(csr) and \
                    approval_condition(csr) == (False, False):
                self.controller.enqueue(csr)

    async def handle(self, csr: Obj) -> None:
        if has_certificate(csr) or any(approval_condition(csr)):
            return
        spec = csr.get("spec") or {}
        signer = spec.get("signerName")
        if signer not in (KUBE_APISERVER_CLIENT_KUBELET_SIGNER, KUBELET_SERVING_SIGNER,
                          KUBE_APISERVER_CLIENT_SIGNER):
            return
        name = csr["metadata"]["name"]
        req = csr_request(csr)
        if signer == KUBELET_SERVING_SIGNER:
            await self._handle_serving(csr, req)
            return
        if signer == KUBE_APISERVER_CLIENT_SIGNER:
            problem = node_addon_problem(csr, req)
            if problem is None:
                await self.approve(csr, NODE_ADDON_MESSAGE)
            return  # anything else is the admin's to approve
        tried = []
        for r in RECOGNIZERS:
            if not r.recognize(csr, req):
                continue
            tried.append(r.subresource)
            if await self.authorize(csr, r.subresource):
                await self.approve(csr, r.message)
                return
        if tried:
            raise IgnorableError(f'recognized csr "{name}" as [{" ".join(tried)}] but subject '
                                 "access review was not approved")

    async def _handle_serving(self, csr: Obj, req: x509.CertificateSigningRequest) -> None:
        name = csr["metadata"]["name"]
        problem = serving_requester_problem(csr, req)
        if problem is not None:
            log.info("%s: leaving kubelet serving CSR %s to the admin: %s", COMPONENT, name,
                     problem)
            return
        node_name = csr["spec"]["username"][len(NODE_USER_PREFIX):]
        problem = serving_address_problem(req, node_name, self.node_informer.store.get(node_name))
        if problem is not None:
            # The Node or its addresses may come: retried, and re-queued by Node events.
            raise IgnorableError(f'kubelet serving csr "{name}" not approved yet: {problem}')
        await self.approve(csr, KUBELET_SERVING_MESSAGE)

    async def authorize(self, csr: Obj, subresource: str) -> bool:
        review = await self.client.create(SAR_PATH, subject_access_review(csr, subresource))
        return bool(((review or {}).get("status") or {}).get("allowed"))

    async def approve(self, csr: Obj, message: str) -> None:
        csr.setdefault("status", {}).setdefault("conditions", []).append({
            "type": "Approved", "status": "True", "reason": "AutoApproved",
            "message": message})
        await self.client.update(csr_path(csr["metadata"]["name"], "approval"), csr)
        log.info("%s: approved CSR %s: %s", COMPONENT, csr["metadata"]["name"], message)


__all__ = ["CSRApprovingController", "subject_access_review", "serving_requester_problem",
           "serving_address_problem", "node_addon_problem", "is_node_client_cert", "is_self_node_client_cert",
           "RECOGNIZERS", "SAR_PATH"]
